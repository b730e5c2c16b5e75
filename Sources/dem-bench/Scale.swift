import DEMCore
import DEMServer
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// `dem-bench scale`: dem's model and discovery catalog with many hosts and subsystems, in this
/// process (no sockets): building and storing the model, serving one host's page, and bringing
/// every connected host's view up to date after one change.
enum ScaleBenchmark {
    struct Settings {
        var hosts: Int
        var subsystems: Int
        var targets: Int
        /// Every `restrictedEvery`-th subsystem has an access list instead of AllowAnyHost.
        var restrictedEvery: Int
        var groupTargets: Int
        var groupHosts: Int
        var repeats: Int
        var samples: Int
        var servePrivate: Int
    }

    /// The benchmark's fabric, with the hosts it picks as examples.
    struct Scenario {
        var fabric: Fabric
        var restrictedSubsystems: Int
        var aclHosts: Set<Int>
        var groupHosts: Set<Int>
        var ungroupedTargets: [String]

        /// Hosts that see only the entries every host sees (no access list, no group).
        var plainHosts: [Int] {
            (0..<fabric.hosts.count).filter { !aclHosts.contains($0) && !groupHosts.contains($0) }
        }
        /// Hosts on at least one access list (their own page), not in the group.
        var privateHosts: [Int] { aclHosts.subtracting(groupHosts).sorted() }
    }

    static func hostAlias(_ index: Int) -> String { "host-" + padded(index, 5) }
    static func targetAlias(_ index: Int) -> String { "tgt-" + padded(index, 3) }

    static func padded(_ value: Int, _ width: Int) -> String {
        let text = String(value)
        return String(repeating: "0", count: max(0, width - text.count)) + text
    }

    /// Builds the fabric through the model's checked API (as the REST API would, one call at a time).
    static func makeScenario(_ settings: Settings) throws -> Scenario {
        var fabric = Fabric()
        for index in 0..<settings.hosts {
            try fabric.addHost(FabricHost(alias: hostAlias(index), nqn: benchHostNQN(index + 1)))
        }
        // A small deterministic generator for the access lists.
        var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next(_ bound: Int) -> Int {
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((seed >> 33) % UInt64(bound))
        }
        var aclHosts = Set<Int>()
        var restricted = 0
        var subsystem = 0
        for t in 0..<settings.targets {
            let count = settings.subsystems / settings.targets + (t < settings.subsystems % settings.targets ? 1 : 0)
            var target = FabricTarget(
                alias: targetAlias(t),
                ports: [
                    FabricPort(
                        portID: 1,
                        transportType: "tcp",
                        addressFamily: "ipv4",
                        transportAddress: "10.1.\(t / 250).\(t % 250 + 1)"
                    )
                ]
            )
            for s in 0..<count {
                var entry = FabricSubsystem(nqn: "nqn.2024-01.io.dem.scale:\(targetAlias(t))-ss-\(padded(s, 5))")
                if subsystem % settings.restrictedEvery == settings.restrictedEvery - 1 {
                    entry.allowAnyHost = false
                    var acl = Set<Int>()
                    for _ in 0..<(1 + next(3)) { acl.insert(next(settings.hosts)) }
                    entry.hosts = acl.sorted().map(hostAlias)
                    if t >= settings.groupTargets { aclHosts.formUnion(acl) }
                    restricted += 1
                }
                target.subsystems.append(entry)
                subsystem += 1
            }
            try fabric.addTarget(target)
        }
        var groupHosts = Set<Int>()
        if settings.groupTargets > 0, settings.groupHosts > 0 {
            try fabric.addGroup("rack-a")
            for t in 0..<settings.groupTargets { try fabric.addGroupMember(group: "rack-a", target: targetAlias(t)) }
            let stride = max(1, settings.hosts / settings.groupHosts)
            for index in Swift.stride(from: 0, to: settings.hosts, by: stride).prefix(settings.groupHosts) {
                try fabric.addGroupMember(group: "rack-a", host: hostAlias(index))
                groupHosts.insert(index)
            }
        }
        return Scenario(
            fabric: fabric,
            restrictedSubsystems: restricted,
            aclHosts: aclHosts,
            groupHosts: groupHosts,
            ungroupedTargets: (settings.groupTargets..<settings.targets).map(targetAlias)
        )
    }

    /// Seconds `body` takes.
    static func time<T>(_ body: () throws -> T) rethrows -> (T, Double) {
        let start = ContinuousClock.now
        let value = try body()
        return (value, start.duration(to: .now).seconds)
    }

    /// Milliseconds, with fewer decimals the longer it is.
    static func ms(_ seconds: Double) -> String {
        let milliseconds = seconds * 1000
        if milliseconds >= 100 { return fmt(milliseconds, 0) }
        if milliseconds >= 1 { return fmt(milliseconds, 2) }
        return fmt(milliseconds, 3)
    }

    static func hostContext(_ index: Int) -> DiscoveryHostContext {
        DiscoveryHostContext(
            hostNQN: benchHostNQN(index + 1),
            hostIdentifier: [],
            subsystemNQN: DEMCore.wellKnownDiscoveryNQN,
            localAddress: "127.0.0.1"
        )
    }

    static func run(_ settings: Settings) async throws {
        var logger = Logger(label: "dem-bench.scale")
        logger.logLevel = .error
        let cpuStart = ProcFS.cpuSeconds()
        let machineStart = ProcFS.machineCPU()

        say("### Scale: \(settings.hosts) hosts and \(settings.subsystems) subsystems, in process")
        say()

        // (a) The model, and the store.
        note("building the model")
        let (scenario, buildSeconds) = try time { try makeScenario(settings) }
        let fabric = scenario.fabric
        let (entries, entriesSeconds) = time { DiscoveryModelFeed.sourceEntries(fabric) }
        let anyHostEntries = entries.filter { $0.access == .anyHost }.count
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try SQLiteFabricStore(path: directory + "/dem.sqlite")
        note("storing it")
        let (_, storeSeconds) = try time { try store.commit(from: Fabric(), to: fabric) }
        let (loaded, loadSeconds) = try time { try store.loadFabric() }
        guard loaded == fabric else { throw BenchError("the stored model differs from the one built") }
        let databaseBytes = fileSize(directory + "/dem.sqlite") + fileSize(directory + "/dem.sqlite-wal")

        let plain = scenario.plainHosts
        let privateHosts = scenario.privateHosts
        let group = scenario.groupHosts.sorted()
        guard plain.count >= 2 * settings.samples + 2, !privateHosts.isEmpty else {
            throw BenchError("the scenario has too few hosts of each kind; use more hosts")
        }

        sayJoined(
            "- model: \(fabric.hosts.count) hosts (each with a HOSTNQN), \(fabric.targets.count) targets with one TCP port each, ",
            "\(settings.subsystems) subsystems (every \(settings.restrictedEvery)th has an access list of 1–3 hosts ",
            "instead of AllowAnyHost: \(scenario.restrictedSubsystems)), group `rack-a` with \(settings.groupTargets) ",
            "targets and \(group.count) hosts (a grouped target is seen only by the group's hosts)"
        )
        sayJoined(
            "- discovery entries: \(entries.count) (\(anyHostEntries) for any host); hosts by view: ",
            "\(plain.count) see only the shared entries, \(privateHosts.count) are on access lists (their own page), ",
            "\(group.count) are in the group"
        )
        say(
            "- machine: \(System.coreCount) cores (\(cpuModel())), Linux \(kernelRelease()); store in \(directory) (\(fileSystemType(directory)))"
        )
        say()
        say("| step | time |")
        say("|---|---:|")
        say(
            "| build the model through `Fabric`'s checked calls (addHost, addTarget, addGroupMember) | \(ms(buildSeconds)) ms |"
        )
        say("| `DiscoveryModelFeed.sourceEntries` (the model's discovery entries) | \(ms(entriesSeconds)) ms |")
        say(
            "| store it: `SQLiteFabricStore.commit` from empty, one transaction (\(databaseBytes / 1024) KiB) | \(ms(storeSeconds)) ms |"
        )
        say("| load it back: `SQLiteFabricStore.loadFabric` | \(ms(loadSeconds)) ms |")

        // (b) One host's page.
        let catalog = DiscoveryCatalog(
            uniqueNQN: "nqn.2014-08.org.nvmexpress:uuid:0000be9c-0000-4000-8000-00000000beef",
            listeners: [DiscoveryListenerAddress(address: "127.0.0.1", port: 8009)]
        )
        let (_, loadCatalogSeconds) = time { catalog.update(entries: entries, from: .store) }
        say(
            "| load the catalog: `DiscoveryCatalog.update(entries:from: .store)`, no host connected | \(ms(loadCatalogSeconds)) ms |"
        )
        say()

        note("one host's page")
        func page(_ host: Int) -> (ByteBuffer, Double) { time { catalog.discoveryLogPage(for: hostContext(host)) } }
        let (firstPage, firstSeconds) = page(plain[0])
        var plainCold: [Double] = []
        for host in plain[1...settings.samples] { plainCold.append(page(host).1) }
        var privateCold: [Double] = []
        var privatePages: [ByteBuffer] = []
        for host in privateHosts.prefix(settings.samples) {
            let (bytes, seconds) = page(host)
            privateCold.append(seconds)
            privatePages.append(bytes)
        }
        var groupCold: [Double] = []
        for host in group.prefix(settings.samples) { groupCold.append(page(host).1) }
        var warm: [Double] = []
        for _ in 0..<(settings.samples * 10) { warm.append(page(plain[1]).1) }
        var privateWarm: [Double] = []
        for _ in 0..<(settings.samples * 10) { privateWarm.append(page(privateHosts[0]).1) }
        // The reference: encoding the same page once, from its entries.
        let plainView = catalog.discoveryLogPage(hostNQN: benchHostNQN(plain[0] + 1), localAddress: "127.0.0.1")
        var encodes: [Double] = []
        var encoded = ByteBuffer()
        for _ in 0..<2 { encoded = plainView.encoded() }
        for _ in 0..<5 {
            let (bytes, seconds) = time { plainView.encoded() }
            encoded = bytes
            encodes.append(seconds)
        }
        guard encoded == firstPage else { throw BenchError("the catalog's page differs from the encoded entries") }
        let encodeSeconds = medianOf(encodes)
        let privateBytes = privatePages.first?.readableBytes ?? 0
        sayJoined(
            "One host's page: `DiscoveryCatalog.discoveryLogPage(for:)` (what the discovery controller calls for each Get Log Page). ",
            "A host's page has \(plainView.entries.count) entries (\(firstPage.readableBytes / 1024) KiB); ",
            "*cold* is a host whose view is not cached yet, *warm* one asked again. Medians over \(settings.samples) hosts ",
            "(warm: \(settings.samples * 10) calls). The reference is encoding the same page once from its entries ",
            "(`DiscoveryLogPage.encoded()`): \(ms(encodeSeconds)) ms."
        )
        say()
        say("| host | time | ÷ encoding the page once |")
        say("|---|---:|---:|")
        say(
            "| the first host (cold, encodes the page every such host shares) | \(ms(firstSeconds)) ms | \(fmt(firstSeconds / encodeSeconds, 2)) |"
        )
        say(
            "| another host that sees only the shared entries (cold, shares that page) | \(ms(medianOf(plainCold))) ms | \(fmt(medianOf(plainCold) / encodeSeconds, 3)) |"
        )
        say(
            "| a host on an access list (cold, its own page of \(privateBytes / 1024) KiB) | \(ms(medianOf(privateCold))) ms | \(fmt(medianOf(privateCold) / encodeSeconds, 2)) |"
        )
        say(
            "| a host in the group (cold; the group's hosts share a page, which the first one asked made) | \(ms(medianOf(groupCold))) ms | \(fmt(medianOf(groupCold) / encodeSeconds, 2)) |"
        )
        say(
            "| a host that sees only the shared entries (warm) | \(ms(medianOf(warm))) ms | \(fmt(medianOf(warm) / encodeSeconds, 4)) |"
        )
        say(
            "| a host on an access list (warm) | \(ms(medianOf(privateWarm))) ms | \(fmt(medianOf(privateWarm) / encodeSeconds, 4)) |"
        )
        say()
        privatePages = []

        // (c) Every host connected; one change.
        note("registering \(settings.hosts) connected hosts")
        let notices = SharedCounter()
        let (_, registerSeconds) = time {
            for host in 0..<settings.hosts {
                _ = catalog.controllerCreated(hostContext(host)) { notices.next() }
            }
        }
        guard catalog.registeredControllerCount == settings.hosts else { throw BenchError("registration failed") }

        // Changes go through FabricService (model check, durable commit) as the REST API's do;
        // what it publishes is fed to the catalog at once (dem's feed waits 50 ms for more).
        let timings = SharedBox<[Double]>([0, 0, 0])
        let service = try FabricService(store: store, logger: logger) { fabric in
            let (sourceEntries, entriesSeconds) = time { DiscoveryModelFeed.sourceEntries(fabric) }
            let (notified, updateSeconds) = time { catalog.update(entries: sourceEntries, from: .store) }
            timings.value = [entriesSeconds, updateSeconds, Double(notified)]
        }
        guard service.fabric == fabric else { throw BenchError("FabricService loaded a different model") }

        struct Change {
            var name: String
            var expected: Int
            var rows: [ChangeTiming] = []
        }
        var serial = 0
        func change(
            _ name: String,
            _ body: @escaping @Sendable (inout Fabric) throws(ModelError) -> Void
        ) async throws
            -> ChangeTiming
        {
            notices.reset()
            timings.value = [0, 0, 0]
            let start = ContinuousClock.now
            do {
                try await service.change(.created, path: name, body)
            } catch {
                throw BenchError("the change \(name) failed: \(error)")
            }
            let total = start.duration(to: .now).seconds
            let measured = timings.value
            return ChangeTiming(
                total: total,
                entries: measured[0],
                update: measured[1],
                notified: Int(measured[2]),
                notices: notices.value
            )
        }
        let plainTarget = scenario.ungroupedTargets.last!
        func addShared() async throws -> ChangeTiming {
            serial += 1
            let nqn = "nqn.2024-01.io.dem.scale:added-any-\(serial)"
            return try await change("/target/\(plainTarget)/subsystem/\(nqn)") { fabric throws(ModelError) in
                try fabric.addSubsystem(target: plainTarget, FabricSubsystem(nqn: nqn, allowAnyHost: true))
            }
        }
        func addRestricted(for host: Int) async throws -> ChangeTiming {
            serial += 1
            let nqn = "nqn.2024-01.io.dem.scale:added-acl-\(serial)"
            let alias = hostAlias(host)
            return try await change("/target/\(plainTarget)/subsystem/\(nqn)") { fabric throws(ModelError) in
                try fabric.addSubsystem(
                    target: plainTarget,
                    FabricSubsystem(nqn: nqn, allowAnyHost: false, hosts: [alias])
                )
            }
        }
        note("the first change after registering (every view computed)")
        let first = try await addRestricted(for: plain[plain.count - 1])
        var changes = [
            Change(name: "add one AllowAnyHost subsystem", expected: settings.hosts),
            Change(name: "add one subsystem with a 1-host access list", expected: 1),
        ]
        for round in 0..<settings.repeats {
            note("change round \(round + 1)/\(settings.repeats)")
            let shared = try await addShared()
            changes[0].rows.append(shared)
            let restricted = try await addRestricted(for: plain[plain.count - 2 - round])
            changes[1].rows.append(restricted)
        }

        // What the notified hosts then do: read their page (the shared one once, each own one).
        let plainNotified = plain.count
        let (_, servePlainSeconds) = time {
            for host in plain { _ = catalog.discoveryLogPage(for: hostContext(host)) }
        }
        let serveCount = min(settings.servePrivate, privateHosts.count)
        let (_, servePrivateSeconds) = time {
            for host in privateHosts.prefix(serveCount) { _ = catalog.discoveryLogPage(for: hostContext(host)) }
        }
        let perPrivate = serveCount > 0 ? servePrivateSeconds / Double(serveCount) : .nan

        sayJoined(
            "Every host connected: all \(settings.hosts) hosts registered as connected discovery controllers ",
            "(`controllerCreated(_:onChange:)` with a counting closure, \(ms(registerSeconds)) ms for all; their pages not read). ",
            "A change is made through `FabricService.change` (model check, SQLite commit as the store makes it: WAL, synchronous=FULL); ",
            "what it publishes goes at once to `DiscoveryModelFeed.sourceEntries` and `DiscoveryCatalog.update(entries:from: .store)`, ",
            "which decides every connected host's view (entries and GENCTR) and calls onChange for each host whose view changed. ",
            "**Time to all views current** = sourceEntries + update (the catalog's part); the whole change adds the ",
            "model check and the commit. The reference is encoding one host's page once (\(ms(encodeSeconds)) ms). ",
            "The first change after registering computed all \(settings.hosts) views: ",
            "\(ms(first.entries + first.update)) ms (sourceEntries \(ms(first.entries)) ms, update \(ms(first.update)) ms), ",
            "\(first.notified) notified."
        )
        say()
        say(
            "| change | **time to all views current** (each) | ÷ encoding one page | sourceEntries | update | whole change incl. commit | hosts notified (onChange calls) | expected |"
        )
        say("|---|---:|---:|---:|---:|---:|---:|---:|")
        for change in changes {
            let current = change.rows.map { $0.entries + $0.update }
            let each = current.map { ms($0) }.joined(separator: ", ")
            let notified = Set(change.rows.map(\.notified)).sorted().map(String.init).joined(separator: "/")
            let calls = Set(change.rows.map(\.notices)).sorted().map(String.init).joined(separator: "/")
            sayJoined(
                "| \(change.name) | **\(ms(medianOf(current))) ms** (\(each)) | \(fmt(medianOf(current) / encodeSeconds, 2)) | ",
                "\(ms(medianOf(change.rows.map(\.entries)))) ms | \(ms(medianOf(change.rows.map(\.update)))) ms | ",
                "\(ms(medianOf(change.rows.map(\.total)))) ms | \(notified) (\(calls)) | \(change.expected) |"
            )
        }
        say()
        sayJoined(
            "Then each notified host reads its page. The \(plainNotified) hosts that see only the shared entries share one page: ",
            "serving it to all of them once took \(ms(servePlainSeconds)) ms (the first call makes it). ",
            "A host with its own page gets its own: \(ms(perPrivate)) ms each (\(serveCount) served), so about ",
            "\(fmt(perPrivate * Double(privateHosts.count), 1)) s of CPU for all \(privateHosts.count) hosts on access lists, ",
            "each page \(privateBytes / 1024) KiB, held while the host's view lasts ",
            "(\(fmt(Double(privateBytes) * Double(privateHosts.count) / Double(1 << 30), 1)) GiB for all of them)."
        )
        say()
        try await zoning(
            settings,
            scenario: scenario,
            service: service,
            catalog: catalog,
            notices: notices,
            timings: timings
        )

        let cpu = ProcFS.cpuSeconds() - cpuStart
        let machine = ProcFS.machineCPU()
        let machineSeconds = machine.total - machineStart.total
        let otherSeconds = (machine.busy - machineStart.busy) - cpu
        let other = machineSeconds > 0 ? max(0, otherSeconds / machineSeconds) : Double.nan
        sayJoined(
            "dem-bench: \(fmt(cpu, 1)) s of CPU, VmRSS \((ProcFS.residentKiB(getpid()) ?? 0) / 1024) MiB, ",
            "peak \((ProcFS.peakResidentKiB(getpid()) ?? 0) / 1024) MiB; other load¹ meanwhile \(fmt(other * 100, 0)) %."
        )
        say()
    }
}

extension ScaleBenchmark {
    /// (d) Zoning with every host connected: `zones` zones of `hosts / zones` hosts each and one
    /// subsystem nobody else may use; the dry run (per host, the entries gained and lost) and the
    /// activation (model check, commit, every view decided, the notices), in dem's CPU time.
    static func zoning(
        _ settings: Settings,
        scenario: Scenario,
        service: FabricService,
        catalog: DiscoveryCatalog,
        notices: SharedCounter,
        timings: SharedBox<[Double]>
    ) async throws {
        let zones = max(1, settings.hosts / 10)
        let perZone = settings.hosts / zones
        let target = scenario.ungroupedTargets.first!
        note("zoning: \(zones) zones of \(perZone) hosts")
        @Sendable func nqn(_ zone: Int) -> String { "nqn.2024-01.io.dem.scale:zoned-\(zone)" }
        do {
            try await service.change(.created, path: "/zoning/setup") { fabric throws(ModelError) in
                for zone in 0..<zones {
                    try fabric.addSubsystem(target: target, FabricSubsystem(nqn: nqn(zone), allowAnyHost: false))
                    let name = "z" + padded(zone, 4)
                    for member in 0..<perZone {
                        try fabric.addZoneMember(
                            group: "rack",
                            zone: name,
                            FabricZoneMember(kind: .host, nqn: benchHostNQN(zone * perZone + member + 1))
                        )
                    }
                    try fabric.addZoneMember(
                        group: "rack",
                        zone: name,
                        FabricZoneMember(kind: .subsystem, nqn: nqn(zone))
                    )
                }
            }
        } catch {
            throw BenchError("configuring the zones failed: \(error)")
        }
        let configured = service.fabric
        let cpuBeforeDiff = ProcFS.cpuSeconds()
        let (changes, diffSeconds) = time { configured.zoningChanges() }
        let diffCPU = ProcFS.cpuSeconds() - cpuBeforeDiff
        let gained = changes.reduce(0) { $0 + $1.gained.count }
        guard changes.count == zones * perZone, changes.allSatisfy({ $0.gained.count == 1 && $0.lost.isEmpty }) else {
            throw BenchError(
                "the dry run named \(changes.count) hosts, expected \(zones * perZone) each gaining one entry"
            )
        }
        notices.reset()
        timings.value = [0, 0, 0]
        let cpuBeforeActivation = ProcFS.cpuSeconds()
        let start = ContinuousClock.now
        do {
            try await service.change(.updated, path: "/zoning/active") { fabric throws(ModelError) in
                fabric.activateZoning()
            }
        } catch {
            throw BenchError("activating the zones failed: \(error)")
        }
        let activationSeconds = start.duration(to: .now).seconds
        let activationCPU = ProcFS.cpuSeconds() - cpuBeforeActivation
        let measured = timings.value
        guard notices.value == zones * perZone else {
            throw BenchError("activation notified \(notices.value) hosts, expected \(zones * perZone)")
        }
        let sample = catalog.discoveryLogPage(hostNQN: benchHostNQN(1), localAddress: "127.0.0.1")
        guard sample.entries.contains(where: { $0.subsystemNQN == nqn(0) }) else {
            throw BenchError("a zoned host's page does not list its zone's subsystem")
        }
        sayJoined(
            "Zoning, every host still connected: \(zones) zones in zone group `rack`, each with \(perZone) hosts and one ",
            "subsystem nobody may use otherwise (so each host gains one entry). The dry run is `Fabric.zoningChanges()` ",
            "(per host, the entries gained and lost); the activation is `FabricService.change` making the configured ",
            "zoning active, with the catalog update that decides every view and calls onChange (the notices). ",
            "CPU is this process's (user + system) over the step; the goal is under 1 s of dem CPU for the diff and the notices."
        )
        say()
        say("| step | wall | CPU | result |")
        say("|---|---:|---:|---|")
        say(
            "| dry run: per-host diff | \(ms(diffSeconds)) ms | \(ms(diffCPU)) ms | \(changes.count) hosts, \(gained) entries gained |"
        )
        sayJoined(
            "| activation: check, commit, sourceEntries (\(ms(measured[0])) ms), catalog update (\(ms(measured[1])) ms) | ",
            "\(ms(activationSeconds)) ms | \(ms(activationCPU)) ms | \(Int(measured[2])) hosts notified (\(notices.value) onChange calls) |"
        )
        say(
            "| **dry run + activation, dem CPU** | | **\(ms(diffCPU + activationCPU)) ms** | ÷ the 1 s goal: \(fmt((diffCPU + activationCPU) / 1.0, 2)) |"
        )
        say()
    }
}

/// One change's times, in seconds.
struct ChangeTiming {
    /// The whole `FabricService.change`: model check, commit, and the two below.
    var total: Double
    /// `DiscoveryModelFeed.sourceEntries`.
    var entries: Double
    /// `DiscoveryCatalog.update`.
    var update: Double
    /// What update returned.
    var notified: Int
    /// onChange calls counted.
    var notices: Int
}

/// The file system type of `path` (from /proc/mounts, longest mount point that prefixes it).
func fileSystemType(_ path: String) -> String {
    guard let text = try? String(contentsOfFile: "/proc/mounts", encoding: .utf8) else { return "?" }
    var best: (length: Int, type: String) = (-1, "?")
    for line in text.split(separator: "\n") {
        let fields = line.split(separator: " ")
        guard fields.count >= 3 else { continue }
        let mount = String(fields[1])
        let prefix = mount.hasSuffix("/") ? mount : mount + "/"
        if path == mount || path.hasPrefix(prefix) || mount == "/", mount.count > best.length {
            best = (mount.count, "\(fields[2]) on \(fields[0])")
        }
    }
    return best.type
}

/// The size of the file at `path`, 0 when there is none.
func fileSize(_ path: String) -> Int {
    ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? 0
}
