import ArgumentParser
import DEMCore
import DEMServer
import Foundation
import Logging
import NIOCore
import NIOPosix

/// `dem-bench replicas`: dem's fabric service on PostgreSQL (several replicas on one database)
/// beside SQLite, in this process (no sockets but PostgreSQL's): durable changes per second,
/// the time from a change acknowledged on one replica to another replica's change notice, and
/// the time until many connected hosts spread over 1 or 3 replicas are notified; then the
/// same fan-out with sockets and dem processes (``ReplicasBenchmark/socketFanOut(replicas:connections:group:)``).
struct Replicas: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "dem replicas on one PostgreSQL database beside dem on SQLite, in process: durable changes per second, change propagation between replicas, and the notices to many connected hosts over 1 and 3 replicas; then many persistent connections over 1 and 3 dem processes."
    )

    @Option(help: "A PostgreSQL server's URL (postgres://USER@HOST:PORT/postgres): fresh databases are made on it.")
    var postgres: String

    @Option(name: .customLong("password-file"), help: "The file holding its password.")
    var passwordFile: String?

    @Option(help: "Changes per store and concurrency.")
    var changes: Int = 400

    @Option(parsing: .upToNextOption, help: "Concurrent changes (tasks).")
    var concurrency: [Int] = [1, 16, 64]

    @Option(help: "Changes whose propagation to the other replica is timed.")
    var propagations: Int = 200

    @Option(help: "Connected hosts for the notice fan-out.")
    var hosts: Int = 10_000

    @Option(help: "How many times the fan-out is measured.")
    var repeats: Int = 5

    @Option(
        name: .customLong("socket-connections"),
        help: "Persistent discovery connections over 1, then 3 dem processes (0: not measured)."
    )
    var socketConnections: Int = 10_000

    func run() async throws {
        let password = try passwordFile.map {
            guard let data = FileManager.default.contents(atPath: $0) else {
                throw ValidationError("--password-file \($0): cannot read it")
            }
            return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)
        }
        let server = try PostgresLocation(url: postgres, password: password)
        var logger = Logger(label: "dem-bench")
        logger.logLevel = .error
        let bench = ReplicasBenchmark(server: server, passwordFile: passwordFile, logger: logger)
        try await bench.run(
            changes: changes,
            concurrency: concurrency,
            propagations: propagations,
            hosts: hosts,
            repeats: repeats,
            socketConnections: socketConnections
        )
    }
}

struct ReplicasBenchmark {
    let server: PostgresLocation
    /// The server's password file, for the dem processes.
    let passwordFile: String?
    let logger: Logger

    func database() throws -> PostgresLocation {
        try PostgresFabricStore.createDatabase(
            "dem_bench_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: ""),
            server: server
        )
    }

    func sqlite() throws -> SQLiteFabricStore {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dem-bench-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return try SQLiteFabricStore(path: directory.appendingPathComponent("dem.sqlite").path)
    }

    func run(
        changes: Int,
        concurrency: [Int],
        propagations: Int,
        hosts: Int,
        repeats: Int,
        socketConnections: Int
    ) async throws {
        say("### Replicas on PostgreSQL")
        say()
        say(
            "In process, through `FabricService` (model check, durable commit, publication) as the REST API's changes go; PostgreSQL 15 (Debian's, a throwaway cluster on this machine, `fsync` and `synchronous_commit` on, over TCP on 127.0.0.1) beside SQLite (WAL, `synchronous = FULL`) on the same disk, measured side by side in one run."
        )
        say()
        say("| concurrent changes | SQLite changes/s | PostgreSQL changes/s | PostgreSQL ÷ SQLite |")
        say("|---:|---:|---:|---:|")
        for tasks in concurrency {
            note("durable changes at concurrency \(tasks)")
            let onSQLite = try await changesPerSecond(store: try sqlite(), tasks: tasks, count: changes)
            let onPostgres = try await changesPerSecond(
                store: try PostgresFabricStore(try database()),
                tasks: tasks,
                count: changes
            )
            say("| \(tasks) | \(fmt(onSQLite, 0)) | \(fmt(onPostgres, 0)) | \(fmt(onPostgres / onSQLite, 2)) |")
        }
        say()
        say(
            "A service commits one change at a time (each is checked against the model it lands on), so concurrency queues changes rather than overlapping their commits; with several replicas, each commits its own."
        )
        say()

        note("propagation of \(propagations) changes between two replicas")
        let latencies = try await propagation(count: propagations)
        let summary = LatencySummary(latencies)
        say(
            "| change acknowledged on replica A → replica B's change notice to a connected host (\(summary.count) changes) | p50 | p99 | max |"
        )
        say("|---|---:|---:|---:|")
        say(
            "| LISTEN/NOTIFY, B reads the model, its discovery catalog updates (the page's GENCTR read from the store) | \(ScaleBenchmark.ms(summary.p50)) ms | \(ScaleBenchmark.ms(summary.p99)) ms | \(ScaleBenchmark.ms(summary.max)) ms |"
        )
        say()

        note("\(hosts) connected hosts on 1 replica, then over 3")
        let one = try await fanOut(replicas: 1, hosts: hosts, repeats: repeats)
        let three = try await fanOut(replicas: 3, hosts: hosts, repeats: repeats)
        say(
            "| \(hosts) connected hosts, one change (a subsystem every host may use) | until every host is notified (median of \(repeats)) | each run |"
        )
        say("|---|---:|---|")
        say(
            "| 1 replica (\(hosts) hosts) | \(ScaleBenchmark.ms(medianOf(one))) ms | \(one.map { ScaleBenchmark.ms($0) }.joined(separator: ", ")) |"
        )
        say(
            "| 3 replicas (\(hosts / 3)–\(hosts - 2 * (hosts / 3)) hosts each), the change made on the first | \(ScaleBenchmark.ms(medianOf(three))) ms | \(three.map { ScaleBenchmark.ms($0) }.joined(separator: ", ")) |"
        )
        say()
        say(
            "The fan-out is timed from the start of the change to the last host's notice; each replica's catalog is fed at once (dem's feed coalesces for 50 ms more). The 3 replicas run in this one process on its 2 cores, so they share the CPU that separate machines would not."
        )
        say()
        if socketConnections > 0 { try await socketFanOuts(socketConnections) }
    }

    /// The fan-out over real sockets and dem processes, on 1 then 3 of them.
    func socketFanOuts(_ connections: Int) async throws {
        let openFiles = raiseOpenFileLimit()
        guard openFiles >= connections + 200 else {
            throw BenchError(
                "RLIMIT_NOFILE is \(openFiles) (hard limit); \(connections) connections need more (ulimit -Hn)"
            )
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: NIOCore.System.coreCount)
        say(
            "| \(connections) persistent discovery connections (sockets, a host NQN each), one change committed to the database | hosts holding the new page | p50 | p99 | last |"
        )
        say("|---|---:|---:|---:|---:|")
        for replicas in [1, 3] {
            let result = try await socketFanOut(replicas: replicas, connections: connections, group: group)
            let summary = LatencySummary(result.held)
            let spread =
                replicas == 1
                ? "1 dem process"
                : "\(replicas) dem processes (\(connections / replicas)–\((connections + replicas - 1) / replicas) connections each)"
            say(
                "| \(spread) | \(result.held.count) of \(connections) | \(ScaleBenchmark.ms(summary.p50)) ms | \(ScaleBenchmark.ms(summary.p99)) ms | \(ScaleBenchmark.ms(summary.max)) ms |"
            )
            if result.failures > 0 { note("\(result.failures) failed; first: \(result.firstFailure ?? "?")") }
        }
        try? await group.shutdownGracefully()
        say()
        say(
            "dem processes (`dem serve --store postgres://…`, release build) on 127.0.0.1, started one after the other on a fresh database; the connections are opened round robin over them (each reads its page and parks an Asynchronous Event Request) by dem-bench in its own process, and the change is committed to the database by dem-bench as another replica's REST API would commit it. Each time runs from the start of that commit until the host has read its page again and it lists the new subsystem: the NOTIFY, each dem reading the model, its feed (which coalesces for 50 ms), the page's GENCTR from the database, the change notices and the page reads. All of it shares this machine's 2 cores."
        )
        say()
    }

    /// Durable changes per second: `count` hosts added by `tasks` concurrent tasks.
    func changesPerSecond(store: any FabricStore, tasks: Int, count: Int) async throws -> Double {
        let service = try FabricService(store: store, logger: logger) { _ in }
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<tasks {
                group.addTask {
                    var index = worker
                    while index < count {
                        let alias = "h\(index)"
                        try await service.change(.created, path: "/host/\(alias)") { fabric throws(ModelError) in
                            try fabric.addHost(FabricHost(alias: alias, nqn: nil))
                        }
                        index += tasks
                    }
                }
            }
            try await group.waitForAll()
        }
        guard service.fabric.hosts.count == count else { throw BenchError("changes lost") }
        return Double(count) / start.duration(to: .now).seconds
    }

    /// A catalog fed by `service`'s publications at once (no coalescing), its pages' GENCTRs
    /// from `store` as dem's are with replicas.
    func catalog(_ nqn: String, store: PostgresFabricStore) -> DiscoveryCatalog {
        let catalog = DiscoveryCatalog(uniqueNQN: nqn, listeners: [])
        catalog.useStoredGenerations(store, logger: logger)
        return catalog
    }

    static let target: Fabric = {
        var fabric = Fabric()
        try? fabric.addTarget(
            FabricTarget(
                alias: "t1",
                ports: [
                    FabricPort(portID: 1, transportType: "tcp", addressFamily: "ipv4", transportAddress: "10.9.0.1")
                ]
            )
        )
        return fabric
    }()

    /// The time from each change acknowledged on replica A to replica B's notice to a host.
    func propagation(count: Int) async throws -> [Double] {
        let location = try database()
        let a = try FabricService(store: PostgresFabricStore(location), logger: logger) { _ in }
        try await a.change(.created, path: "/target/t1") { fabric throws(ModelError) in fabric = Self.target }
        let storeB = try PostgresFabricStore(location)
        let catalogB = catalog("nqn.2014-08.org.nvmexpress:uuid:0000be9c-0000-4000-8000-0000000000b0", store: storeB)
        let b = try FabricService(store: storeB, logger: logger) { fabric in
            catalogB.update(entries: DiscoveryModelFeed.sourceEntries(fabric), from: .store)
        }
        let noticed = SharedBox<[ContinuousClock.Instant]>([])
        _ = catalogB.controllerCreated(ScaleBenchmark.hostContext(0)) {
            let now = ContinuousClock.now
            noticed.value = noticed.value + [now]
        }
        let stop = b.follow(storeB)
        defer { stop() }
        try await Task.sleep(for: .milliseconds(500))
        var latencies: [Double] = []
        for index in 0..<count {
            let nqn = "nqn.2024-01.io.dem.bench:propagation-\(index)"
            try await a.change(.created, path: "/target/t1/subsystem/\(nqn)") { fabric throws(ModelError) in
                try fabric.addSubsystem(target: "t1", FabricSubsystem(nqn: nqn))
            }
            let acknowledged = ContinuousClock.now
            let deadline = acknowledged + .seconds(10)
            while noticed.value.count <= index, ContinuousClock.now < deadline {
                try await Task.sleep(for: .microseconds(100))
            }
            guard noticed.value.count > index else { throw BenchError("replica B gave no notice within 10 s") }
            latencies.append(acknowledged.duration(to: noticed.value[index]).seconds)
        }
        return latencies
    }

    /// The time from a change on the first of `replicas` replicas to the last notice of
    /// `hosts` connected hosts spread over them, `repeats` times.
    func fanOut(replicas: Int, hosts: Int, repeats: Int) async throws -> [Double] {
        let location = try database()
        let notices = SharedCounter()
        var services: [FabricService] = []
        var stops: [@Sendable () -> Void] = []
        defer { for stop in stops { stop() } }
        for replica in 0..<replicas {
            let store = try PostgresFabricStore(location)
            let catalog = catalog(
                "nqn.2014-08.org.nvmexpress:uuid:0000be9c-0000-4000-8000-00000000c0d\(replica)",
                store: store
            )
            let service = try FabricService(store: store, logger: logger) { fabric in
                catalog.update(entries: DiscoveryModelFeed.sourceEntries(fabric), from: .store)
            }
            for host in stride(from: replica, to: hosts, by: replicas) {
                _ = catalog.controllerCreated(ScaleBenchmark.hostContext(host)) { notices.next() }
            }
            if replica > 0 { stops.append(service.follow(store)) }
            services.append(service)
        }
        try await services[0].change(.created, path: "/target/t1") { fabric throws(ModelError) in
            fabric = Self.target
        }
        try await Task.sleep(for: .milliseconds(500))
        var times: [Double] = []
        for run in 0..<repeats {
            notices.reset()
            let nqn = "nqn.2024-01.io.dem.bench:fan-out-\(run)"
            let start = ContinuousClock.now
            try await services[0].change(.created, path: "/target/t1/subsystem/\(nqn)") { fabric throws(ModelError) in
                try fabric.addSubsystem(target: "t1", FabricSubsystem(nqn: nqn))
            }
            let deadline = start + .seconds(30)
            while notices.value < hosts, ContinuousClock.now < deadline {
                try await Task.sleep(for: .microseconds(200))
            }
            guard notices.value >= hosts else {
                throw BenchError("only \(notices.value) of \(hosts) hosts notified within 30 s")
            }
            times.append(start.duration(to: .now).seconds)
        }
        return times
    }
}
