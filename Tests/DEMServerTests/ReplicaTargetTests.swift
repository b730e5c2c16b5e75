import AsyncHTTPClient
import DEMCore
import Foundation
import Logging
import NIOCore
import Testing

@testable import DEMServer

@Suite(
    "replicas on PostgreSQL: one manages each target",
    .enabled(if: TestPostgres.available, Comment(rawValue: TestPostgres.unavailable))
)
struct ReplicaTargetTests {
    static let open = "nqn.2024-01.io.dem.test:replica-target"
    static func replicaHost(_ n: Int) -> String {
        "nqn.2014-08.org.nvmexpress:uuid:5e1ca000-0000-4000-8000-00000000000\(n)"
    }

    /// A dem replica on `location` (in process, ports chosen by the system, probing every second: a lease of 3 s).
    static func replica(
        _ n: Int,
        location: PostgresLocation,
        directory: String
    ) async throws -> (application: DEMApplication, task: Task<Void, any Error>) {
        var options = DEMOptions(
            uniqueNQN: "nqn.2014-08.org.nvmexpress:uuid:5e1ca000-0000-4000-8000-0000000000d\(n)",
            dataDirectory: directory + "/r\(n)"
        )
        options.port = 0
        options.apiPort = 0
        options.mdns = false
        options.postgres = location
        options.hostNQN = replicaHost(n)
        options.probeInterval = .seconds(1)
        var logger = Logger(label: "replica-\(n)")
        logger.logLevel = .warning
        let application = try await DEMApplication.build(options: options, logger: logger, signals: [])
        return (application, Task { try await application.serviceGroup.run() })
    }

    @Test(
        "a local target is read by one replica at a time and both serve its entries; when that one stops, the other takes over"
    )
    func oneManagerPerTarget() async throws {
        let directory = temporaryDirectory("dem-replica-target")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        // The target: a dem whose discovery controller serves one entry from a file.
        try """
        {"entries": [{"subnqn": "\(Self.open)", "trtype": "tcp", "adrfam": "ipv4", "traddr": "192.0.2.7", "trsvcid": "4421", "portid": 2}]}
        """.write(toFile: directory + "/entries.json", atomically: true, encoding: .utf8)
        var targetOptions = DEMOptions(
            uniqueNQN: "nqn.2014-08.org.nvmexpress:uuid:5e1ca000-0000-4000-8000-0000000000ff",
            dataDirectory: directory + "/target"
        )
        targetOptions.port = 0
        targetOptions.apiPort = 0
        targetOptions.mdns = false
        targetOptions.entriesPath = directory + "/entries.json"
        var targetLogger = Logger(label: "target-dc")
        targetLogger.logLevel = .warning
        let target = try await DEMApplication.build(options: targetOptions, logger: targetLogger, signals: [])
        let targetTask = Task { try await target.serviceGroup.run() }
        let dcPort = target.listeners.boundAddresses[0].port

        let location = try TestPostgres.database()
        let a = try await Self.replica(1, location: location, directory: directory)
        let b = try await Self.replica(2, location: location, directory: directory)
        try await a.application.service.change(.created, path: "/target/local") { fabric throws(ModelError) in
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
            try fabric.addSubsystem(target: "local", FabricSubsystem(nqn: Self.open))
        }
        @Sendable func serves(_ application: DEMApplication) -> Bool {
            application.catalog.discoveryLogPage(hostNQN: TestHosts.a).entries.contains {
                $0.subsystemNQN == Self.open && $0.transportServiceIdentifier == "4421"
            }
        }
        // Both serve the entry read from the target.
        #expect(try await eventually(10) { serves(a.application) && serves(b.application) })
        #expect(a.application.monitor.status("local")?.harvested == 1)
        #expect(b.application.monitor.status("local")?.harvested == 1)
        // Only one of them read it: the target saw one replica's host NQN, for several probes.
        try await Task.sleep(for: .seconds(1))
        let replicas = [Self.replicaHost(1), Self.replicaHost(2)]
        let readers = Set(target.service.seenHosts.map(\.nqn)).intersection(replicas)
        #expect(readers.count == 1, "\(readers)")
        let managerIsA = readers.first == Self.replicaHost(1)
        let (manager, other) = managerIsA ? (a, b) : (b, a)
        let otherHost = managerIsA ? Self.replicaHost(2) : Self.replicaHost(1)

        // The manager stops: the other takes the target over, reads it and serves it still.
        await manager.application.serviceGroup.triggerGracefulShutdown()
        try await manager.task.value
        #expect(try await eventually(10) { target.service.seenHosts.contains { $0.nqn == otherHost } })
        #expect(serves(other.application))
        #expect(other.application.monitor.status("local")?.state == .reachable)

        await other.application.serviceGroup.triggerGracefulShutdown()
        try await other.task.value
        await target.serviceGroup.triggerGracefulShutdown()
        try await targetTask.value
    }

    @Test("a target's lease: taken when free, kept by its holder, taken by another only once it has run out")
    func leases() throws {
        let store = try PostgresFabricStore(try TestPostgres.database())
        #expect(try store.claimTarget("t1", owner: "a", seconds: 0.5))
        #expect(try !store.claimTarget("t1", owner: "b", seconds: 0.5))
        #expect(try store.claimTarget("t1", owner: "a", seconds: 0.5))
        #expect(try store.targetManager("t1") == "a")
        Thread.sleep(forTimeInterval: 0.7)
        #expect(try store.targetManager("t1") == nil)
        #expect(try store.claimTarget("t1", owner: "b", seconds: 10))
        try store.releaseTargets(owner: "b")
        #expect(try store.claimTarget("t1", owner: "a", seconds: 10))
        try store.shareTargetOutcome("t1", owner: "a", body: "{}")
        #expect(try store.targetOutcome("t1")?.owner == "a")
    }
}

@Suite(
    "replicas on PostgreSQL as processes: durability",
    .enabled(if: TestPostgres.available, Comment(rawValue: TestPostgres.unavailable)),
    .serialized
)
struct ReplicaDurabilityTests {
    @Test(
        "8 writers over three replicas, one killed (SIGKILL) at the 1,000th acknowledged write: after its restart every acknowledged write is on every replica, and all three list the same model"
    )
    func killOneReplicaDuringWrites() async throws {
        let location = try TestPostgres.database()
        guard let passwordFile = ProcessInfo.processInfo.environment["DEM_TEST_POSTGRES_PASSWORD_FILE"] else {
            throw TestFailure(TestPostgres.unavailable)
        }
        let store = ["--store", location.url, "--store-password-file", passwordFile, "--no-mdns"]
        let directory = temporaryDirectory("dem-replicas")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var replicas: [DEMProcess] = []
        for n in 0..<3 {
            replicas.append(try await DEMProcess.start(dataDirectory: directory + "/r\(n)", extraArguments: store))
        }
        let client = HTTPClient.shared
        let state = MutationState()
        let killAt = 1_000
        let writers = replicas
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<8 {
                let replica = writers[worker % 3]
                group.addTask {
                    while !state.killed.load(ordering: .relaxed) {
                        let alias = "h\(state.next.add(1, ordering: .relaxed).newValue)"
                        guard
                            let response = try? await client.execute(
                                replica.request(.PUT, "/host", body: #"{"Alias":"\#(alias)"}"#),
                                timeout: .seconds(10)
                            )
                        else { continue }
                        _ = try? await response.body.collect(upTo: 1 << 16)
                        guard response.status == .created else { continue }
                        let count = state.acknowledged.withLock { list in
                            list.append(alias)
                            return list.count
                        }
                        if count == killAt, !state.killed.exchange(true, ordering: .relaxed) {
                            // Mid-stream: the other writers have requests in flight.
                            writers[0].kill(SIGKILL)
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        _ = try await replicas[0].waitForExit()
        let acknowledged = Set(state.acknowledged.withLock { $0 })
        #expect(acknowledged.count >= killAt)
        replicas[0] = try await DEMProcess.start(dataDirectory: directory + "/r0", extraArguments: store)

        func hosts(_ replica: DEMProcess) async throws -> [String] {
            let response = try await client.execute(replica.request(.GET, "/host"), timeout: .seconds(10))
            let body = try await response.body.collect(upTo: 1 << 24)
            return try JSONDecoder().decode([String: [String]].self, from: Data(buffer: body))["Hosts"] ?? []
        }
        func export(_ replica: DEMProcess) async throws -> String {
            let response = try await client.execute(replica.request(.GET, "/dem/config"), timeout: .seconds(10))
            return String(buffer: try await response.body.collect(upTo: 1 << 24))
        }
        // The replicas that ran on take in the last writes within moments.
        let deadline = ContinuousClock.now + .seconds(10)
        var lists: [[String]] = []
        repeat {
            lists = []
            for replica in replicas { lists.append(try await hosts(replica)) }
            if Set(lists.map { $0.sorted() }).count == 1 { break }
            try await Task.sleep(for: .milliseconds(100))
        } while ContinuousClock.now < deadline
        for (n, listed) in lists.enumerated() {
            let missing = acknowledged.subtracting(listed)
            #expect(missing.isEmpty, "replica \(n): acknowledged but missing: \(missing.sorted().prefix(10))")
        }
        let exports = try await [export(replicas[0]), export(replicas[1]), export(replicas[2])]
        #expect(Set(exports).count == 1, "the replicas' exports differ")
        for replica in replicas {
            replica.kill(SIGTERM)
            #expect(try await replica.waitForExit() == 0)
        }
    }
}
