import AsyncHTTPClient
import DEMCore
import DEMServer
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// What one kind of REST request did at one concurrency, over one or more rounds.
struct RESTResult {
    var requests = 0
    var errors = 0
    var firstError: String?
    var seconds = 0.0
    var latenciesMilliseconds: [Double] = []
    var serverCPUSeconds = 0.0
    var clientCPUSeconds = 0.0
    var otherCPUSeconds = 0.0
    var machineSeconds = 0.0
    var responseBytes = 0

    var perSecond: Double { seconds > 0 ? Double(requests) / seconds : .nan }
    var serverCPUMicroseconds: Double { requests > 0 ? serverCPUSeconds * 1e6 / Double(requests) : .nan }
    var clientCPUMicroseconds: Double { requests > 0 ? clientCPUSeconds * 1e6 / Double(requests) : .nan }
    var otherLoad: Double { machineSeconds > 0 ? max(0, otherCPUSeconds / machineSeconds) : .nan }

    mutating func add(_ other: RESTResult) {
        requests += other.requests
        errors += other.errors
        firstError = firstError ?? other.firstError
        seconds += other.seconds
        latenciesMilliseconds += other.latenciesMilliseconds
        serverCPUSeconds += other.serverCPUSeconds
        clientCPUSeconds += other.clientCPUSeconds
        otherCPUSeconds += other.otherCPUSeconds
        machineSeconds += other.machineSeconds
        responseBytes = max(responseBytes, other.responseBytes)
    }
}

/// `dem-bench management`: dem's REST API, reads and durable mutations, against GET /health.
enum ManagementBenchmark {
    struct Settings {
        var concurrencies: [Int]
        var duration: Double
        var rounds: Int
        var warmup: Double
        var targets: Int
        var subsystemsPerTarget: Int
        var hosts: Int
        var storeSeconds: Double
        var demPath: String?
    }

    /// One kind of request the benchmark sends.
    struct Kind: Sendable {
        var name: String
        var label: String
        var expected: Set<UInt>
        /// Whether the model is put back to the seed after each measurement (so that the hosts
        /// created do not pile up over the run).
        var resetAfter = false
        /// The request for client task `task`, its `serial`-th (unique across tasks).
        var make: @Sendable (_ task: Int, _ serial: Int) -> HTTPClientRequest
    }

    static func run(_ settings: Settings) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        let launched = try await launchDEM(executable: settings.demPath, entries: 0, group: group)
        let dem = launched.process
        defer { dem.stop() }
        let apiPort = try await restPort(of: dem, timeout: 30)
        let tokenPath = launched.directory + "/data/admin.token"
        guard let tokenData = FileManager.default.contents(atPath: tokenPath) else {
            throw BenchError("no admin token at \(tokenPath)")
        }
        let token = String(decoding: tokenData, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let base = "http://127.0.0.1:\(apiPort)"

        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(
            idleTimeout: .seconds(60),
            concurrentHTTP1ConnectionsPerHostSoftLimit: max(8, settings.concurrencies.max() ?? 8)
        )
        configuration.timeout = HTTPClient.Configuration.Timeout(connect: .seconds(10), read: .seconds(60))
        configuration.redirectConfiguration = .disallow
        let client = HTTPClient(eventLoopGroupProvider: .shared(group), configuration: configuration)
        do {
            try await measure(
                settings,
                client: client,
                base: base,
                token: token,
                dem: dem,
                demPath: launched.executable,
                directory: launched.directory
            )
        } catch {
            try? await client.shutdown()
            dem.stop()
            try? FileManager.default.removeItem(atPath: launched.directory)
            throw error
        }
        try? await client.shutdown()
        dem.stop()
        try? await group.shutdownGracefully()
        try? FileManager.default.removeItem(atPath: launched.directory)
    }

    /// The seeded model: `targets` targets, each with one TCP port and `subsystemsPerTarget`
    /// subsystems any host may use, and `hosts` hosts.
    static func seedFabric(targets: Int, subsystemsPerTarget: Int, hosts: Int) throws -> Fabric {
        var fabric = Fabric()
        for index in 0..<hosts {
            try fabric.addHost(
                FabricHost(
                    alias: "seed-host-\(ScaleBenchmark.padded(index, 4))",
                    nqn: benchHostNQN(0x5EED_0000 + index)
                )
            )
        }
        for t in 0..<targets {
            try fabric.addTarget(
                FabricTarget(
                    alias: seedTarget(t),
                    ports: [
                        FabricPort(
                            portID: 1,
                            transportType: "tcp",
                            addressFamily: "ipv4",
                            transportAddress: "10.2.0.\(t + 1)"
                        )
                    ],
                    subsystems: (0..<subsystemsPerTarget).map { s in
                        FabricSubsystem(
                            nqn: "nqn.2024-01.io.dem.bench:\(seedTarget(t))-ss\(s)",
                            serial: "SN\(t)x\(s)",
                            model: "dem-bench",
                            namespaces: [FabricNamespace(namespaceID: 1, deviceID: s, deviceNamespaceID: 1)]
                        )
                    }
                )
            )
        }
        return fabric
    }

    static func seedTarget(_ index: Int) -> String { "bench-t" + ScaleBenchmark.padded(index, 2) }

    static func measure(
        _ settings: Settings,
        client: HTTPClient,
        base: String,
        token: String,
        dem: ChildProcess,
        demPath: String,
        directory: String
    ) async throws {
        let seed = try seedFabric(
            targets: settings.targets,
            subsystemsPerTarget: settings.subsystemsPerTarget,
            hosts: settings.hosts
        )
        let authorization = "Bearer \(token)"
        let request: @Sendable (String, String, String?) -> HTTPClientRequest = { method, path, body in
            var request = HTTPClientRequest(url: base + path)
            request.method = .init(rawValue: method)
            request.headers.add(name: "Authorization", value: authorization)
            request.headers.add(name: "Accept", value: "application/json")
            if let body {
                request.headers.add(name: "Content-Type", value: "application/json")
                request.body = .bytes(ByteBuffer(string: body))
            }
            return request
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let seedJSON = String(decoding: try encoder.encode(seed), as: UTF8.self)
        let (status, _) = try await execute(client, request("PUT", "/dem/config", seedJSON))
        guard status == 200 else { throw BenchError("PUT /dem/config answered \(status)") }
        let (readStatus, readBytes) = try await execute(client, request("GET", "/target/\(seedTarget(0))", nil))
        guard readStatus == 200 else { throw BenchError("GET /target answered \(readStatus)") }

        let targets = settings.targets
        let ports = SharedCounter()
        let kinds: [Kind] = [
            Kind(name: "GET /health", label: "floor", expected: [200]) { _, _ in
                var health = HTTPClientRequest(url: base + "/health")
                health.headers.add(name: "Accept", value: "application/json")
                return health
            },
            Kind(name: "GET /target/<t>", label: "read", expected: [200]) { task, _ in
                request("GET", "/target/\(seedTarget(task % targets))", nil)
            },
            Kind(name: "PUT /host (new host)", label: "mutation", expected: [201], resetAfter: true) { task, serial in
                request(
                    "PUT",
                    "/host",
                    "{\"Alias\":\"m-\(serial)\",\"HOSTNQN\":\"\(benchHostNQN(0x7000_0000 + serial))\"}"
                )
            },
            Kind(name: "PUT /target/<t>/portid/1 (new TRSVCID)", label: "mutation", expected: [200]) { task, _ in
                // A TRSVCID the port does not have yet, so that every request changes the model
                // (and the discovery entries).
                let service = 1024 + ports.next() % 60_000
                return request(
                    "PUT",
                    "/target/\(seedTarget(task % targets))/portid/1",
                    "{\"TRTYPE\":\"tcp\",\"ADRFAM\":\"ipv4\",\"TRADDR\":\"10.2.0.\(task % targets + 1)\",\"TRSVCID\":\(service)}"
                )
            },
        ]

        say("### REST API: reads and durable mutations against GET /health")
        say()
        sayJoined(
            "- machine: \(System.coreCount) cores (\(cpuModel())), Linux \(kernelRelease()); everything on 127.0.0.1; ",
            "dem's data directory on \(fileSystemType(directory))"
        )
        sayJoined(
            "- dem: `\(demPath)` (pid \(dem.pid)), REST API on \(base) (Hummingbird, \(System.coreCount) event loops), ",
            "log level info (dem logs each change); SQLite store in WAL mode, synchronous=FULL on the writer (every commit synced: see ² below)"
        )
        sayJoined(
            "- model: \(settings.targets) targets, each with one TCP port and \(settings.subsystemsPerTarget) subsystems ",
            "with one namespace, \(settings.hosts) hosts (loaded with one PUT /dem/config); ",
            "GET /target/<t> answers \(readBytes) bytes of JSON"
        )
        sayJoined(
            "- load: dem-bench in its own process, AsyncHTTPClient with one HTTP/1.1 keep-alive connection per concurrent ",
            "task; each task sends its requests back to back. Requests: GET /health (the floor: same server, ",
            "no token check, no model), GET /target/<t> (bearer token, the model read and encoded), PUT /host with a ",
            "new alias and HOSTNQN each time (a durable commit), PUT /target/<t>/portid/1 with a new TRSVCID each ",
            "time (a durable commit that changes discovery entries, so the catalog is updated too)"
        )
        sayJoined(
            "- per concurrency: \(settings.rounds) rounds; a round runs the four kinds back to back (the order rotates), ",
            "the model put back to the seed (PUT /dem/config) after each PUT /host run so that hosts do not pile up, ",
            "\(fmt(settings.duration / Double(settings.rounds), 2)) s each after \(fmt(settings.warmup, 2)) s of warm-up"
        )
        say()

        var all: [(concurrency: Int, results: [RESTResult], ratios: [[Double]])] = []
        var serial = 0
        for concurrency in settings.concurrencies {
            var results = Array(repeating: RESTResult(), count: kinds.count)
            // Per round, floor requests/s ÷ this kind's requests/s (the time per request relative
            // to the floor's), for each kind.
            var ratios = Array(repeating: [Double](), count: kinds.count)
            for round in 0..<settings.rounds {
                var roundResults = Array(repeating: RESTResult(), count: kinds.count)
                for step in 0..<kinds.count {
                    let index = (step + round) % kinds.count
                    note("\(concurrency) concurrent, round \(round + 1)/\(settings.rounds): \(kinds[index].name)")
                    roundResults[index] = await load(
                        client: client,
                        kind: kinds[index],
                        concurrency: concurrency,
                        seconds: settings.duration / Double(settings.rounds),
                        warmup: settings.warmup,
                        server: dem.pid,
                        serial: &serial
                    )
                    if kinds[index].resetAfter {
                        // The hosts the run added are removed: a replacement that removes says so.
                        let (status, _) = try await execute(client, request("PUT", "/dem/config?replace=1", seedJSON))
                        guard status == 200 else { throw BenchError("PUT /dem/config answered \(status)") }
                    }
                }
                for index in kinds.indices {
                    results[index].add(roundResults[index])
                    ratios[index].append(roundResults[0].perSecond / roundResults[index].perSecond)
                }
            }
            all.append((concurrency, results, ratios))
        }

        say(
            "| concurrency | request | requests/s | p50 ms | p99 ms | server CPU µs/request | client CPU µs/request | other load¹ | errors |"
        )
        say("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
        for row in all {
            for (index, kind) in kinds.enumerated() {
                let result = row.results[index]
                let latency = LatencySummary(result.latenciesMilliseconds)
                sayJoined(
                    "| \(row.concurrency) | \(kind.name) | \(fmt(result.perSecond, 0)) | \(fmt(latency.p50, 2)) | ",
                    "\(fmt(latency.p99, 2)) | \(fmt(result.serverCPUMicroseconds, 0)) | \(fmt(result.clientCPUMicroseconds, 0)) | ",
                    "\(fmt(result.otherLoad * 100, 0)) % | \(result.errors) |"
                )
                if let error = result.firstError {
                    note("\(kind.name), \(row.concurrency) concurrent, first error: \(error)")
                }
            }
        }
        say()
        sayJoined(
            "¹ the share of the machine's CPU time used by anything but dem-bench and dem (other processes, hypervisor ",
            "steal), from /proc/stat; above a few % the numbers are disturbed."
        )
        say()
        sayJoined(
            "Ratios to the floor, side by side in each round: the time per request, floor requests/s ÷ this kind's ",
            "requests/s, per round and then the median over the rounds (each round in brackets); and dem's CPU per request ÷ the floor's."
        )
        say()
        var header = "| concurrency |"
        var rule = "|---:|"
        for kind in kinds.dropFirst() {
            header += " \(kind.name) ÷ GET /health: time per request | server CPU |"
            rule += "---:|---:|"
        }
        say(header)
        say(rule)
        for row in all {
            var line = "| \(row.concurrency) |"
            for index in kinds.indices.dropFirst() {
                let each = row.ratios[index].map { fmt($0, 2) }.joined(separator: ", ")
                let cpu = row.results[index].serverCPUMicroseconds / row.results[0].serverCPUMicroseconds
                line += " **\(fmt(medianOf(row.ratios[index]), 2))** (\(each)) | \(fmt(cpu, 2)) |"
            }
            say(line)
        }
        say()

        // The context: what one durable commit costs on this machine.
        try await storeContext(settings, seed: seed, directory: directory)
    }

    /// fsync, fdatasync, SQLiteFabricStore commits and FabricService changes, in this process,
    /// on the file system of dem's data directory.
    static func storeContext(_ settings: Settings, seed: Fabric, directory: String) async throws {
        let seconds = settings.storeSeconds
        note("fsync and store commits in process")
        let path = directory + "/fsync-probe"
        let overwrite = try syncRate(path: path, seconds: seconds / 3, append: false, data: true)
        let appendData = try syncRate(path: path, seconds: seconds / 3, append: true, data: true)
        let append = try syncRate(path: path, seconds: seconds / 3, append: true, data: false)
        try? FileManager.default.removeItem(atPath: path)
        let raw = try SQLiteProbe.measure(directory: directory, seconds: seconds)

        let storeDirectory = directory + "/store-probe"
        try FileManager.default.createDirectory(atPath: storeDirectory, withIntermediateDirectories: true)
        let store = try SQLiteFabricStore(path: storeDirectory + "/dem.sqlite")
        try store.commit(from: Fabric(), to: seed)
        // Commits alternately add a host and delete it again, so that the model keeps its size.
        var withHost = seed
        try withHost.addHost(FabricHost(alias: "probe-host", nqn: benchHostNQN(0x6000_0000)))
        var commits: [Double] = []
        let commitCPU = ProcFS.cpuSeconds()
        let deadline = ContinuousClock.now + .seconds(seconds)
        var index = 0
        while ContinuousClock.now < deadline {
            let (from, to) = index % 2 == 0 ? (seed, withHost) : (withHost, seed)
            index += 1
            let start = ContinuousClock.now
            try store.commit(from: from, to: to)
            commits.append(start.duration(to: .now).seconds)
        }
        if index % 2 == 1 { try store.commit(from: withHost, to: seed) }
        let commitCPUPer = (ProcFS.cpuSeconds() - commitCPU) / Double(max(1, commits.count))

        var logger = Logger(label: "dem-bench.management")
        logger.logLevel = .error
        let service = try FabricService(store: store, logger: logger) { _ in }
        index = 0
        var changes: [Double] = []
        let changeDeadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < changeDeadline {
            let adding = index % 2 == 0
            index += 1
            let start = ContinuousClock.now
            do {
                try await service.change(adding ? .created : .deleted, path: "/host/probe-host") {
                    fabric throws(ModelError) in
                    if adding {
                        try fabric.addHost(FabricHost(alias: "probe-host", nqn: benchHostNQN(0x6000_0000)))
                    } else {
                        try fabric.deleteHost("probe-host")
                    }
                }
            } catch {
                throw BenchError("FabricService.change failed: \(error)")
            }
            changes.append(start.duration(to: .now).seconds)
        }
        try? FileManager.default.removeItem(atPath: storeDirectory)

        let commitSummary = LatencySummary(commits.map { $0 * 1000 })
        let changeSummary = LatencySummary(changes.map { $0 * 1000 })
        sayJoined(
            "The cost of durability on this machine, in dem-bench's process, on the same file system, one at a time ",
            "(\(fmt(seconds / 3, 2)) s for each sync probe, \(fmt(seconds, 1)) s for the commits and for the changes):"
        )
        say()
        say("| operation | per second | p50 ms | p99 ms |")
        say("|---|---:|---:|---:|")
        for (name, probe) in [
            (
                "rewrite the same 4 KiB + fdatasync",
                overwrite
            ),
            ("append 4 KiB + fdatasync", appendData),
            ("append 4 KiB + fsync", append),
        ] {
            say(
                "| \(name) | \(fmt(probe.perSecond, 0)) | \(fmt(probe.latency.p50, 2)) | \(fmt(probe.latency.p99, 2)) |"
            )
        }
        for probe in raw {
            sayJoined(
                "| SQLite alone (libsqlite3, no GRDB): insert or delete one row, WAL, synchronous=\(probe.mode) | ",
                "\(fmt(probe.perSecond, 0)) | \(fmt(probe.latency.p50, 2)) | \(fmt(probe.latency.p99, 2)) |"
            )
        }
        sayJoined(
            "| `SQLiteFabricStore.commit` adding or deleting one host (synchronous FULL²; \(fmt(commitCPUPer * 1e6, 0)) µs CPU each) | ",
            "\(fmt(Double(commits.count) / seconds, 0)) | \(fmt(commitSummary.p50, 2)) | \(fmt(commitSummary.p99, 2)) |"
        )
        sayJoined(
            "| `FabricService.change` adding or deleting one host (model check + that commit, no HTTP) | ",
            "\(fmt(Double(changes.count) / seconds, 0)) | \(fmt(changeSummary.p50, 2)) | \(fmt(changeSummary.p99, 2)) |"
        )
        say()
        sayJoined(
            "² GRDB's DatabasePool sets the writer to `PRAGMA synchronous = NORMAL` when it turns WAL on; ",
            "`SQLiteFabricStore` sets it back to FULL after opening the pool and checks it, so every acknowledged ",
            "commit is synced (it survives a crash of the machine, not only of dem). ",
            "The SQLite-alone rows show what syncing each commit costs here."
        )
        say()
    }

    /// Writes 4 KiB (appended, or over the first 4 KiB) and syncs (fdatasync or fsync), back to
    /// back, for `seconds`.
    static func syncRate(
        path: String,
        seconds: Double,
        append: Bool,
        data: Bool
    ) throws -> (perSecond: Double, latency: LatencySummary) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { throw BenchError("cannot open \(path)") }
        defer { close(fd) }
        let block = [UInt8](repeating: 0xA5, count: 4096)
        if !append {
            // The block exists (and is on disk) before it is rewritten.
            _ = block.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            fsync(fd)
        }
        var latencies: [Double] = []
        let start = ContinuousClock.now
        let deadline = start + .seconds(seconds)
        while ContinuousClock.now < deadline {
            let began = ContinuousClock.now
            let written = block.withUnsafeBytes {
                append ? write(fd, $0.baseAddress, $0.count) : pwrite(fd, $0.baseAddress, $0.count, 0)
            }
            guard written == block.count else { throw BenchError("write to \(path) failed") }
            guard (data ? fdatasync(fd) : fsync(fd)) == 0 else { throw BenchError("fsync of \(path) failed") }
            latencies.append(began.duration(to: .now).seconds * 1000)
        }
        return (Double(latencies.count) / start.duration(to: .now).seconds, LatencySummary(latencies))
    }

    /// Sends one request; the status and the body's size.
    static func execute(_ client: HTTPClient, _ request: HTTPClientRequest) async throws -> (UInt, Int) {
        let response = try await client.execute(request, timeout: .seconds(60))
        let body = try await response.body.collect(upTo: 16 << 20)
        return (response.status.code, body.readableBytes)
    }

    /// `concurrency` tasks send `kind` back to back for `seconds` (after `warmup` seconds not counted).
    static func load(
        client: HTTPClient,
        kind: Kind,
        concurrency: Int,
        seconds: Double,
        warmup: Double,
        server: pid_t,
        serial: inout Int
    ) async -> RESTResult {
        if warmup > 0 {
            _ = await measure(
                client: client,
                kind: kind,
                concurrency: concurrency,
                seconds: warmup,
                server: server,
                serial: &serial
            )
        }
        return await measure(
            client: client,
            kind: kind,
            concurrency: concurrency,
            seconds: seconds,
            server: server,
            serial: &serial
        )
    }

    private static func measure(
        client: HTTPClient,
        kind: Kind,
        concurrency: Int,
        seconds: Double,
        server: pid_t,
        serial: inout Int
    ) async -> RESTResult {
        // Request numbers unique across tasks and runs (fresh aliases for the mutations).
        let counter = SharedCounter()
        let base = serial
        let serverCPUBefore = ProcFS.cpuSeconds(server)
        let clientCPUBefore = ProcFS.cpuSeconds()
        let machineBefore = ProcFS.machineCPU()
        let start = ContinuousClock.now
        let deadline = start + .seconds(seconds)
        var result = await withTaskGroup(of: RESTResult.self) { tasks in
            for task in 0..<concurrency {
                tasks.addTask {
                    var local = RESTResult()
                    local.latenciesMilliseconds.reserveCapacity(Int(seconds * 4000 / Double(concurrency)) + 16)
                    while ContinuousClock.now < deadline {
                        let number = base + counter.next()
                        let began = ContinuousClock.now
                        do {
                            let (status, bytes) = try await execute(client, kind.make(task, number))
                            if kind.expected.contains(status) {
                                local.latenciesMilliseconds.append(began.duration(to: .now).seconds * 1000)
                                local.requests += 1
                                local.responseBytes = bytes
                            } else {
                                local.errors += 1
                                if local.firstError == nil { local.firstError = "HTTP \(status)" }
                            }
                        } catch {
                            local.errors += 1
                            if local.firstError == nil { local.firstError = "\(error)" }
                            try? await Task.sleep(for: .milliseconds(10))
                        }
                    }
                    return local
                }
            }
            var total = RESTResult()
            for await local in tasks { total.add(local) }
            return total
        }
        serial = base + counter.value + 1
        result.seconds = start.duration(to: .now).seconds
        result.serverCPUSeconds = ProcFS.cpuSeconds(server) - serverCPUBefore
        result.clientCPUSeconds = ProcFS.cpuSeconds() - clientCPUBefore
        let machineAfter = ProcFS.machineCPU()
        result.machineSeconds = machineAfter.total - machineBefore.total
        result.otherCPUSeconds =
            (machineAfter.busy - machineBefore.busy) - result.serverCPUSeconds - result.clientCPUSeconds
        return result
    }

    /// dem's REST API port, from its log line "REST API listening" (url=http://127.0.0.1:PORT).
    static func restPort(of dem: ChildProcess, timeout: Double) async throws -> Int {
        let deadline = ContinuousClock.now + .seconds(timeout)
        while ContinuousClock.now < deadline {
            guard dem.isRunning else { throw BenchError("dem exited:\n\(dem.logTail())") }
            if let data = FileManager.default.contents(atPath: dem.logPath) {
                for line in String(decoding: data, as: UTF8.self).split(separator: "\n")
                where line.contains("REST API listening") {
                    if let range = line.range(of: "url=http://127.0.0.1:") {
                        let digits = line[range.upperBound...].prefix { $0.isNumber }
                        if let port = Int(digits) { return port }
                    }
                }
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw BenchError("dem did not log \"REST API listening\" within \(Int(timeout)) s:\n\(dem.logTail())")
    }
}

/// A counter shared by tasks and closures.
final class SharedCounter: Sendable {
    private let atomic = Atomic<Int>(0)

    /// Adds one; returns the new value.
    @discardableResult
    func next() -> Int { atomic.add(1, ordering: .relaxed).newValue }

    var value: Int { atomic.load(ordering: .relaxed) }

    func reset() { atomic.store(0, ordering: .relaxed) }
}

/// A value shared by tasks and closures, behind a lock.
final class SharedBox<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    init(_ value: Value) { mutex = Mutex(value) }

    var value: Value {
        get { mutex.withLock { $0 } }
        set { mutex.withLock { $0 = newValue } }
    }
}
