import DEMCore
import DEMServer
import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// Real persistent discovery connections spread over dem processes that share one database.
extension ReplicasBenchmark {
    struct SocketFanOut {
        /// Seconds from the change's start until each host held the new page.
        var held: [Double]
        var failures: Int
        var firstFailure: String?
        var openSeconds: Double
    }

    /// `connections` persistent discovery connections (a host NQN each, an Asynchronous Event
    /// Request parked) spread round robin over `replicas` dem processes on one fresh database;
    /// one change (a subsystem any host may use) is committed to the database by this process,
    /// as another replica's REST API would: the time until each host was notified, read its
    /// page and holds the new one.
    func socketFanOut(replicas: Int, connections: Int, group: any EventLoopGroup) async throws -> SocketFanOut {
        let location = try database()
        let writer = try FabricService(store: PostgresFabricStore(location), logger: logger) { _ in }
        try await writer.change(.created, path: "/target/t1") { fabric throws(ModelError) in fabric = Self.target }
        let executable = try demExecutable(nil)
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var processes: [ChildProcess] = []
        defer { for process in processes { process.stop() } }
        var ports: [Int] = []
        for replica in 1...replicas {
            let port = try freeLoopbackPort()
            var arguments = [
                "--address", "127.0.0.1", "--port", String(port), "--data-dir", directory + "/r\(replica)",
                "--api-port", "0", "--log-level", "warning", "--no-mdns", "--store", location.url,
                // The model's target is not there: its subsystems stay listed.
                "--unreachable", "keep",
                // Every simulated host comes from 127.0.0.1: lift the per-source limits.
                "--max-connections", "16384", "--max-connections-per-source", "16384",
            ]
            if let passwordFile { arguments += ["--store-password-file", passwordFile] }
            let process = try ChildProcess(
                name: "dem-r\(replica)",
                executable: executable,
                arguments: arguments,
                logPath: directory + "/dem-r\(replica).log"
            )
            processes.append(process)
            // One after the other: the first keeps the discovery NQN the others take.
            try await waitForListener(port: port, child: process, timeout: 30, group: group)
            ports.append(port)
        }
        // The replicas list each other (heartbeats every 2 s) before the connections are made.
        try await Task.sleep(for: .seconds(replicas > 1 ? 5 : 1))

        note("opening \(connections) persistent connections over \(replicas) dem process(es)")
        let openStart = ContinuousClock.now
        var opened: [IdleConnection] = []
        var failures = 0
        var firstFailure: String?
        await withTaskGroup(of: Result<IdleConnection, any Error>.self) { tasks in
            var next = 0
            func add() {
                let index = next
                let port = ports[index % ports.count]
                tasks.addTask {
                    await IdleBenchmark.open(index: index, port: port, kato: 0, shared: false, group: group)
                }
                next += 1
            }
            while next < min(64, connections) { add() }
            while let result = await tasks.next() {
                switch result {
                case .success(let connection): opened.append(connection)
                case .failure(let error):
                    failures += 1
                    if firstFailure == nil { firstFailure = "\(error)" }
                }
                if next < connections { add() }
            }
        }
        let openSeconds = openStart.duration(to: .now).seconds
        guard !opened.isEmpty else { throw BenchError("no connection opened: \(firstFailure ?? "?")") }
        try await Task.sleep(for: .seconds(1))

        let collector = FanOutCollector(count: opened.count)
        for (index, connection) in opened.enumerated() {
            let expected = connection.entryCount + 1
            connection.event.whenComplete { result in
                if case .failure(let error) = result {
                    collector.fail("\(error)")
                    return
                }
                let client = connection.client
                Task {
                    do {
                        let page = try await client.readDiscoveryLogPage()
                        guard page.entries.count == expected else {
                            throw BenchError("\(page.entries.count) entries after the change, not \(expected)")
                        }
                        collector.held(index, at: ContinuousClock.now)
                    } catch {
                        collector.fail("\(error)")
                    }
                }
            }
        }
        note("one change committed to the database")
        let nqn = "nqn.2024-01.io.dem.bench:socket-fan-out"
        collector.start.withLock { $0 = ContinuousClock.now }
        try await writer.change(.created, path: "/target/t1/subsystem/\(nqn)") { fabric throws(ModelError) in
            try fabric.addSubsystem(target: "t1", FabricSubsystem(nqn: nqn))
        }
        let deadline = ContinuousClock.now + .seconds(60)
        while collector.done.load(ordering: .relaxed) < opened.count, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        for connection in opened { await connection.client.connection.close() }
        let times = collector.times.withLock { $0.compactMap { $0 } }
        let errors = collector.failures.withLock { $0 }
        return SocketFanOut(
            held: times,
            failures: failures + (opened.count - times.count),
            firstFailure: firstFailure ?? errors.first,
            openSeconds: openSeconds
        )
    }
}

/// When each host held the new page (seconds from the change's start), and what failed.
private final class FanOutCollector: Sendable {
    let start = Mutex<ContinuousClock.Instant?>(nil)
    let times: Mutex<[Double?]>
    let failures = Mutex<[String]>([])
    let done = Atomic<Int>(0)

    init(count: Int) { times = Mutex(Array(repeating: nil, count: count)) }

    func held(_ index: Int, at instant: ContinuousClock.Instant) {
        if let start = start.withLock({ $0 }) {
            times.withLock { $0[index] = start.duration(to: instant).seconds }
        }
        done.add(1, ordering: .relaxed)
    }

    func fail(_ reason: String) {
        failures.withLock { $0.append(reason) }
        done.add(1, ordering: .relaxed)
    }
}
