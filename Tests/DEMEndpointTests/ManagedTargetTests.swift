import AsyncHTTPClient
import DEMCore
import DEMEndpoint
import DEMServer
import Foundation
import Logging
import Testing

// dem and dem-em, both in this process, over real sockets on 127.0.0.1. dem-em's nvmet root is
// a temporary folder standing in for configfs (configfs needs root and the nvmet module; the
// real configfs is proven by the `endpoint` scenario of scripts/interop).

/// The channel dem manages a target's dem-em over.
enum ManagementChannel: String, Sendable, CaseIterable, CustomTestStringConvertible {
    case outOfBand
    case inBand

    var testDescription: String { self == .outOfBand ? "out-of-band (HTTP)" : "in-band (NVMe/TCP)" }
}

/// A dem-em on a folder, with its API on a free port, and its in-band channel on another.
final class RunningEndpoint: Sendable {
    let application: EndpointApplication
    let port: Int
    let inBandPort: Int
    let nvmetRoot: String
    let runTask: Task<Void, any Error>

    static func start(
        directory: String,
        credentialPath: String,
        alias: String = "t1",
        allowedHosts: [String] = []
    ) async throws -> RunningEndpoint {
        let root = directory + "/nvmet"
        for folder in ["ports", "subsystems", "hosts"] {
            try FileManager.default.createDirectory(atPath: root + "/" + folder, withIntermediateDirectories: true)
        }
        var options = EndpointOptions(dataDirectory: directory + "/em", credentialPath: credentialPath)
        options.nvmetRoot = root
        options.sysfsRoot = directory + "/sys"
        options.apiAddress = "127.0.0.1"
        options.apiPort = 0
        options.alias = alias
        options.inBand.address = "127.0.0.1"
        options.inBand.port = 0
        options.inBand.allowedHosts = allowedHosts
        var logger = Logger(label: "dem-em-test")
        logger.logLevel = .warning
        let application = try EndpointApplication.build(options: options, logger: logger, signals: [])
        let task = Task { try await application.serviceGroup.run() }
        let port = await application.apiAddress.port()
        let inBandPort = await application.inBandPort.port()
        return RunningEndpoint(
            application: application,
            port: port,
            inBandPort: inBandPort,
            nvmetRoot: root,
            runTask: task
        )
    }

    private init(
        application: EndpointApplication,
        port: Int,
        inBandPort: Int,
        nvmetRoot: String,
        runTask: Task<Void, any Error>
    ) {
        self.application = application
        self.port = port
        self.inBandPort = inBandPort
        self.nvmetRoot = nvmetRoot
        self.runTask = runTask
    }

    /// How dem reaches it over `channel`: its mode and Interface.
    func interface(_ channel: ManagementChannel) -> (ManagementMode, ManagementInterface) {
        switch channel {
        case .outOfBand:
            (.outOfBand, ManagementInterface(family: "ipv4", address: "127.0.0.1", port: port))
        case .inBand:
            (
                .inBand,
                ManagementInterface(
                    transportType: "tcp",
                    addressFamily: "ipv4",
                    transportAddress: "127.0.0.1",
                    transportServiceIdentifier: inBandPort
                )
            )
        }
    }

    func stop() async throws {
        await application.serviceGroup.triggerGracefulShutdown()
        try await runTask.value
    }

    func attribute(_ path: String) -> String? {
        (try? String(contentsOfFile: nvmetRoot + "/" + path, encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// A dem with no entries file, its data in `directory`.
final class RunningManager: Sendable {
    let application: DEMApplication
    let runTask: Task<Void, any Error>

    static func start(
        directory: String,
        credentialPath: String? = nil,
        policy: UnreachablePolicy = .withdraw,
        unreachableAfter: Duration = .zero
    ) async throws -> RunningManager {
        var options = DEMOptions(
            uniqueNQN: "nqn.2014-08.org.nvmexpress:uuid:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f1",
            dataDirectory: directory
        )
        options.port = 0
        options.apiPort = 0
        options.fabricCredentialPath = credentialPath
        options.probeInterval = .milliseconds(200)
        options.targetTimeout = .seconds(2)
        options.coalescing = .milliseconds(10)
        options.unreachablePolicy = policy
        options.unreachableAfter = unreachableAfter
        var logger = Logger(label: "dem-test")
        logger.logLevel = .warning
        let application = try await DEMApplication.build(options: options, logger: logger, signals: [])
        let task = Task { try await application.serviceGroup.run() }
        return RunningManager(application: application, runTask: task)
    }

    private init(application: DEMApplication, runTask: Task<Void, any Error>) {
        self.application = application
        self.runTask = runTask
    }

    func stop() async throws {
        await application.serviceGroup.triggerGracefulShutdown()
        try await runTask.value
    }

    func change(_ body: @escaping @Sendable (inout Fabric) throws(ModelError) -> Void) async throws {
        try await application.service.change(.updated, path: "/test", body)
    }

    /// The SUBNQNs of NVM subsystem entries host `hostNQN` is served.
    func served(to hostNQN: String) -> Set<String> {
        application.feed.flush()
        let page = application.catalog.discoveryLogPage(hostNQN: hostNQN)
        return Set(page.entries.filter { $0.subsystemType == .nvm }.map(\.subsystemNQN))
    }

    func state(_ alias: String) -> TargetStatus.State? { application.monitor.status(alias)?.state }

    /// The body of `GET path` on dem's REST API, with the admin token.
    func get(_ path: String) async throws -> String {
        let token = try String(contentsOfFile: application.adminToken.path, encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(await application.apiAddress.port())\(path)")
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 1 << 20)
        return String(buffer: body)
    }
}

func temporaryDirectory() throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("dem-em-test-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// Waits up to `seconds` for `condition`, polling; for what happens asynchronously.
func eventually(_ seconds: Double = 10, _ condition: @Sendable () async throws -> Bool) async throws -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(25))
    }
    return try await condition()
}

@Suite("dem managing targets through dem-em, and reading local ones")
struct ManagedTargetTests {
    static let host = "nqn.2014-08.org.nvmexpress:uuid:aaaaaaaa-0000-4000-8000-00000000000a"
    static let other = "nqn.2014-08.org.nvmexpress:uuid:bbbbbbbb-0000-4000-8000-00000000000b"
    static let open = "nqn.2024-01.io.dem.test:open"
    static let restricted = "nqn.2024-01.io.dem.test:restricted"

    /// t1 (managed through `endpoint` over `channel`) with port 1, an open subsystem with a
    /// null_blk namespace and a restricted one for host h1.
    static func describe(_ dem: RunningManager, _ endpoint: RunningEndpoint, _ channel: ManagementChannel) async throws
    {
        let (mode, interface) = endpoint.interface(channel)
        try await dem.change { fabric throws(ModelError) in
            try fabric.addTarget(FabricTarget(alias: "t1", managementMode: mode, interface: interface))
            try fabric.setPort(
                target: "t1",
                FabricPort(portID: 1, transportType: "tcp", addressFamily: "ipv4", transportAddress: "192.0.2.1")
            )
            try fabric.addSubsystem(
                target: "t1",
                FabricSubsystem(
                    nqn: open,
                    allowAnyHost: true,
                    namespaces: [FabricNamespace(namespaceID: 1, devicePath: "/dev/nullb0")]
                )
            )
            try fabric.addSubsystem(target: "t1", FabricSubsystem(nqn: restricted, allowAnyHost: false))
            try fabric.addHost(FabricHost(alias: "h1", nqn: host))
            _ = try fabric.allowHost(target: "t1", subsystem: restricted, host: "h1")
        }
    }

    @Test(
        "a host's DH-HMAC-CHAP keys reach nvmet's hosts/<nqn> through dem-em, sealed on the way; a new key follows",
        arguments: ManagementChannel.allCases
    )
    func hostKeysReachNvmet(channel: ManagementChannel) async throws {
        let directory = try temporaryDirectory()
        let dem = try await RunningManager.start(directory: directory + "/dem")
        let endpoint = try await RunningEndpoint.start(
            directory: directory + "/target",
            credentialPath: directory + "/dem/fabric.key"
        )
        try await Self.describe(dem, endpoint, channel)
        let key = try DHCHAPSecret.generate()
        let controller = try DHCHAPSecret.generate()
        _ = try await dem.application.service.setHostKey(
            "h1",
            HostKey(secret: key.text, controllerSecret: controller.text, hash: "sha512", group: "ffdhe3072")
        )
        let path = "hosts/\(Self.host)"
        // dem-em writes the host's attributes one after the other, the controller key last.
        #expect(
            try await eventually {
                endpoint.attribute("\(path)/dhchap_key") == key.text
                    && endpoint.attribute("\(path)/dhchap_ctrl_key") == controller.text
            }
        )
        #expect(endpoint.attribute("\(path)/dhchap_hash") == "hmac(sha512)")
        #expect(endpoint.attribute("\(path)/dhchap_dhgroup") == "ffdhe3072")
        // dem-em keeps the desired state with the keys sealed only.
        let stored = try String(
            contentsOfFile: (endpoint.nvmetRoot as NSString).deletingLastPathComponent + "/em/desired.json",
            encoding: .utf8
        )
        #expect(stored.contains("DEMSEAL-1:"))
        #expect(!stored.contains(String(key.text.dropFirst(10).prefix(20))))
        let rotated = try DHCHAPSecret.generate()
        _ = try await dem.application.service.setHostKey(
            "h1",
            HostKey(secret: rotated.text, hash: "sha512", group: "ffdhe3072")
        )
        #expect(try await eventually { endpoint.attribute("\(path)/dhchap_key") == rotated.text })
        try await endpoint.stop()
        try await dem.stop()
    }

    @Test(
        "a subsystem reaches configfs, is served once dem-em confirms it, withdrawn when dem-em stops, back when it returns",
        arguments: ManagementChannel.allCases
    )
    func pushConfirmWithdrawReturn(channel: ManagementChannel) async throws {
        let directory = try temporaryDirectory()
        let dem = try await RunningManager.start(directory: directory + "/dem")
        let key = directory + "/dem/fabric.key"
        let endpoint = try await RunningEndpoint.start(directory: directory + "/target", credentialPath: key)
        try await Self.describe(dem, endpoint, channel)

        #expect(try await eventually { dem.served(to: Self.host) == [Self.open, Self.restricted] })
        #expect(dem.served(to: Self.other) == [Self.open])
        #expect(dem.state("t1") == .reachable)
        // The kernel target's tree, as dem-em wrote it.
        #expect(endpoint.attribute("subsystems/\(Self.open)/namespaces/1/device_path") == "/dev/nullb0")
        #expect(endpoint.attribute("subsystems/\(Self.open)/namespaces/1/enable") == "1")
        #expect(endpoint.attribute("subsystems/\(Self.open)/attr_allow_any_host") == "1")
        #expect(endpoint.attribute("subsystems/\(Self.restricted)/attr_allow_any_host") == "0")
        #expect(endpoint.attribute("ports/1/addr_traddr") == "192.0.2.1")
        let linkTarget = try FileManager.default.destinationOfSymbolicLink(
            atPath: endpoint.nvmetRoot + "/subsystems/\(Self.restricted)/allowed_hosts/\(Self.host)"
        )
        #expect(linkTarget.hasSuffix("hosts/\(Self.host)"))
        #expect(FileManager.default.fileExists(atPath: endpoint.nvmetRoot + "/ports/1/subsystems/\(Self.open)"))

        // dem-em stops: t1 is unreachable and its entries are withdrawn; /events says so, and
        // /metrics.
        let (events, cancel) = dem.application.service.subscribe()
        try await endpoint.stop()
        #expect(try await eventually { dem.state("t1") == .unreachable })
        #expect(try await eventually { dem.served(to: Self.host).isEmpty })
        #expect(
            dem.application.monitor.status("t1")?.lastError?.contains("unreachable") == true,
            "\(dem.application.monitor.status("t1")?.lastError ?? "")"
        )
        var iterator = events.makeAsyncIterator()
        var paths: [String] = []
        while let event = await iterator.next() {
            paths.append(event.path)
            if event.path == "/target/t1/status" { break }
        }
        cancel()
        #expect(paths.last == "/target/t1/status")
        let metrics = try await dem.get("/metrics")
        #expect(metrics.contains(#"dem_target_state{target="t1",state="unreachable"} 1"#), "\(metrics)")
        #expect(metrics.contains(#"dem_targets{state="unreachable"} 1"#))
        #expect(metrics.contains(#"dem_target_entries_served{target="t1"} 0"#))

        // It comes back (a new port: dem learns it as when dem-em joins); entries return.
        let restarted = try await RunningEndpoint.start(directory: directory + "/target", credentialPath: key)
        let (_, interface) = restarted.interface(channel)
        try await dem.change { fabric throws(ModelError) in
            try fabric.updateTarget("t1", .init(interface: interface))
        }
        #expect(try await eventually { dem.served(to: Self.host) == [Self.open, Self.restricted] })
        #expect(dem.state("t1") == .reachable)

        // Deleting the subsystem in dem removes it from the kernel target and from the pages.
        try await dem.change { fabric throws(ModelError) in try fabric.deleteSubsystem(target: "t1", nqn: Self.open) }
        #expect(try await eventually { dem.served(to: Self.other).isEmpty })
        let root = restarted.nvmetRoot
        #expect(try await eventually { !FileManager.default.fileExists(atPath: root + "/subsystems/\(Self.open)") })
        #expect(!FileManager.default.fileExists(atPath: root + "/ports/1/subsystems/\(Self.open)"))
        try await restarted.stop()
        try await dem.stop()
    }

    @Test(
        "a target that was answering keeps its state and entries while it fails for less than --unreachable-after",
        arguments: ManagementChannel.allCases
    )
    func grace(channel: ManagementChannel) async throws {
        let directory = try temporaryDirectory()
        let dem = try await RunningManager.start(directory: directory + "/dem", unreachableAfter: .seconds(60))
        let endpoint = try await RunningEndpoint.start(
            directory: directory + "/target",
            credentialPath: directory + "/dem/fabric.key"
        )
        try await Self.describe(dem, endpoint, channel)
        #expect(try await eventually { dem.served(to: Self.host) == [Self.open, Self.restricted] })
        try await endpoint.stop()
        // Probes fail (every 200 ms) and say so, but the state and the entries stay.
        #expect(try await eventually { dem.application.monitor.status("t1")?.lastError != nil })
        try await Task.sleep(for: .seconds(1))
        #expect(dem.state("t1") == .reachable, "\(String(describing: dem.application.monitor.status("t1")))")
        #expect(dem.served(to: Self.host) == [Self.open, Self.restricted])
        try await dem.stop()
    }

    @Test(
        "a dem-em with another credential is refused (401, DH-HMAC-CHAP fails), the target is unreachable and serves nothing",
        arguments: ManagementChannel.allCases
    )
    func wrongCredential(channel: ManagementChannel) async throws {
        let directory = try temporaryDirectory()
        let dem = try await RunningManager.start(directory: directory + "/dem")
        let otherKey = directory + "/other.key"
        _ = try FabricCredential.ensure(path: otherKey)
        let endpoint = try await RunningEndpoint.start(directory: directory + "/target", credentialPath: otherKey)
        try await Self.describe(dem, endpoint, channel)
        #expect(try await eventually { dem.state("t1") == .unreachable })
        let error = dem.application.monitor.status("t1")?.lastError ?? ""
        #expect(
            error.contains(channel == .outOfBand ? "401" : "the fabric credentials of dem and dem-em differ"),
            "\(error)"
        )
        #expect(dem.served(to: Self.host).isEmpty)
        #expect(!FileManager.default.fileExists(atPath: endpoint.nvmetRoot + "/subsystems/\(Self.open)"))
        try await endpoint.stop()
        try await dem.stop()
    }

    @Test(
        "dem-em joins: the target is created as OutOfBandMgmt with its address and inventory, and shows joined/reachable"
    )
    func join() async throws {
        let directory = try temporaryDirectory()
        let dem = try await RunningManager.start(directory: directory + "/dem")
        let apiPort = await dem.application.apiAddress.port()
        let key = directory + "/dem/fabric.key"
        let root = directory + "/target/nvmet"
        for folder in ["ports", "subsystems", "hosts"] {
            try FileManager.default.createDirectory(atPath: root + "/" + folder, withIntermediateDirectories: true)
        }
        var options = EndpointOptions(dataDirectory: directory + "/target/em", credentialPath: key)
        options.nvmetRoot = root
        options.sysfsRoot = directory + "/target/sys"
        options.apiAddress = "127.0.0.1"
        options.apiPort = 0
        options.joinURL = "http://127.0.0.1:\(apiPort)"
        options.alias = "joined-target"
        var logger = Logger(label: "dem-em-test")
        logger.logLevel = .warning
        let application = try EndpointApplication.build(options: options, logger: logger, signals: [])
        let task = Task { try await application.serviceGroup.run() }
        let endpointPort = await application.apiAddress.port()
        #expect(try await eventually { (try? dem.application.service.fabric.target("joined-target")) != nil })
        let target = try dem.application.service.fabric.target("joined-target")
        #expect(target.managementMode == .outOfBand)
        #expect(target.interface?.address == "127.0.0.1")
        #expect(target.interface?.port == endpointPort)
        #expect(try await eventually { dem.state("joined-target") == .reachable })
        #expect(dem.application.monitor.status("joined-target")?.joined == true)
        // dem knows what the target's dem-em drives (the folder standing in for configfs here).
        #expect(dem.application.monitor.status("joined-target")?.backend?.name == "nvmet")
        #expect(dem.application.monitor.status("joined-target")?.backend?.location?.isEmpty == false)
        await application.serviceGroup.triggerGracefulShutdown()
        try await task.value
        try await dem.stop()
    }

    @Test(
        "a local target: dem reads its discovery controller and serves the entries of subsystems the model defines, to the hosts allowed"
    )
    func localHarvest() async throws {
        let directory = try temporaryDirectory()
        // The "target": another dem serving a discovery controller from an entries file (as a
        // kernel target's nvmet would serve its own).
        let entries = """
            {"entries": [
              {"subnqn": "\(Self.open)", "trtype": "tcp", "adrfam": "ipv4", "traddr": "192.0.2.7", "trsvcid": "4421", "portid": 2},
              {"subnqn": "nqn.2024-01.io.dem.test:not-in-the-model", "trtype": "tcp", "adrfam": "ipv4", "traddr": "192.0.2.7", "trsvcid": "4421", "portid": 2}
            ]}
            """
        try entries.write(toFile: directory + "/entries.json", atomically: true, encoding: .utf8)
        var targetOptions = DEMOptions(
            uniqueNQN: "nqn.2014-08.org.nvmexpress:uuid:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f2",
            dataDirectory: directory + "/target"
        )
        targetOptions.port = 0
        targetOptions.apiPort = 0
        targetOptions.entriesPath = directory + "/entries.json"
        var logger = Logger(label: "target-dc")
        logger.logLevel = .warning
        let targetDC = try await DEMApplication.build(options: targetOptions, logger: logger, signals: [])
        let targetTask = Task { try await targetDC.serviceGroup.run() }
        let dcPort = targetDC.listeners.boundAddresses[0].port

        let dem = try await RunningManager.start(directory: directory + "/dem")
        try await dem.change { fabric throws(ModelError) in
            try fabric.addTarget(
                FabricTarget(
                    alias: "local",
                    interface: ManagementInterface(
                        transportType: "tcp",
                        addressFamily: "ipv4",
                        transportAddress: "127.0.0.1",
                        transportServiceIdentifier: dcPort
                    )
                )
            )
            try fabric.addSubsystem(target: "local", FabricSubsystem(nqn: Self.open, allowAnyHost: false))
            try fabric.addHost(FabricHost(alias: "h1", nqn: Self.host))
            _ = try fabric.allowHost(target: "local", subsystem: Self.open, host: "h1")
        }
        #expect(try await eventually { dem.served(to: Self.host) == [Self.open] })
        #expect(dem.served(to: Self.other).isEmpty)
        #expect(dem.state("local") == .reachable, "\(dem.application.monitor.status("local")?.lastError ?? "")")
        #expect(dem.application.monitor.status("local")?.harvested == 2)
        // The entry served is the target's own (its address and port), not one made from the model.
        let page = dem.application.catalog.discoveryLogPage(hostNQN: Self.host)
        let entry = try #require(page.entries.first { $0.subsystemNQN == Self.open })
        #expect(entry.transportAddress == "192.0.2.7")
        #expect(entry.transportServiceIdentifier == "4421")

        // The target's discovery controller goes away: unreachable, entries withdrawn.
        await targetDC.serviceGroup.triggerGracefulShutdown()
        try await targetTask.value
        _ = await dem.application.monitor.refresh("local")
        #expect(try await eventually { dem.state("local") == .unreachable })
        #expect(try await eventually { dem.served(to: Self.host).isEmpty })
        try await dem.stop()
    }
}
