import AsyncHTTPClient
import DEMServer
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import Synchronization
import Testing

/// The real `dem` executable (built next to the test bundle), run as a process with its own data
/// directory: for what only a process can show — a SIGKILL, a restart.
final class DEMProcess: Sendable {
    let process: Process
    let dataDirectory: String
    let logPath: String
    let apiPort: Int
    let token: String
    /// Whether the API serves TLS (dem's default), with the fabric CA of its data directory.
    let tls: Bool

    /// The first discovery port in the log ("discovery controller listening … port=N").
    var discoveryPort: Int? {
        let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        for line in log.split(separator: "\n") where line.contains("discovery controller listening") {
            if let range = line.range(of: " port=") {
                return Int(line[range.upperBound...].prefix { $0.isNumber })
            }
        }
        return nil
    }

    /// Another executable built beside dem (dem-dm, dem-ac, dem-em).
    static func sibling(_ name: String) -> String {
        URL(fileURLWithPath: executable).deletingLastPathComponent().appendingPathComponent(name).path
    }

    static var executable: String {
        let runner =
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var directory = URL(fileURLWithPath: runner).deletingLastPathComponent()
        // The runner may sit inside a .xctest bundle.
        while !FileManager.default.isExecutableFile(atPath: directory.appendingPathComponent("dem").path),
            directory.path != "/"
        {
            directory = directory.deletingLastPathComponent()
        }
        return directory.appendingPathComponent("dem").path
    }

    static func start(dataDirectory: String, extraArguments: [String] = []) async throws -> DEMProcess {
        let executable = executable
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw TestFailure(
                "no dem executable next to the tests (\(executable)); build with `swift build --build-tests`"
            )
        }
        let logPath = dataDirectory + "-dem-\(UUID().uuidString.prefix(8)).log"
        guard FileManager.default.createFile(atPath: logPath, contents: nil) else {
            throw TestFailure("cannot create \(logPath)")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments =
            [
                "serve", "--data-dir", dataDirectory, "--port", "0", "--api-port", "0", "--log-level", "info",
            ] + extraArguments
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        // The API port is in the "REST API listening" line.
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            let tls = log.contains("url=https://127.0.0.1:")
            if let range = log.range(of: tls ? "url=https://127.0.0.1:" : "url=http://127.0.0.1:") {
                let digits = log[range.upperBound...].prefix { $0.isNumber }
                if let port = Int(digits) {
                    let token = try String(contentsOfFile: dataDirectory + "/admin.token", encoding: .utf8)
                        .trimmingCharacters(in: .whitespacesAndNewlines)
                    return DEMProcess(
                        process: process,
                        dataDirectory: dataDirectory,
                        logPath: logPath,
                        apiPort: port,
                        token: token,
                        tls: tls
                    )
                }
            }
            guard process.isRunning else { throw TestFailure("dem exited at start: \(log)") }
            try await Task.sleep(for: .milliseconds(50))
        }
        process.terminate()
        throw TestFailure("dem did not report its API port within 30 s")
    }

    private init(process: Process, dataDirectory: String, logPath: String, apiPort: Int, token: String, tls: Bool) {
        self.tls = tls
        self.process = process
        self.dataDirectory = dataDirectory
        self.logPath = logPath
        self.apiPort = apiPort
        self.token = token
    }

    func request(_ method: HTTPMethod, _ path: String, body: String? = nil) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: "\(tls ? "https" : "http")://127.0.0.1:\(apiPort)\(path)")
        if tls {
            // dem's certificate, verified with the CA dem made in its data directory.
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.trustRoots = .file(dataDirectory + "/fabric-ca.pem")
            request.tlsConfiguration = configuration
        }
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body))
        }
        return request
    }

    func kill(_ signal: Int32) {
        Foundation.kill(process.processIdentifier, signal)
    }

    func waitForExit(seconds: Double = 20) async throws -> Int32 {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while process.isRunning {
            guard ContinuousClock.now < deadline else { throw TestFailure("dem did not exit within \(seconds) s") }
            try await Task.sleep(for: .milliseconds(20))
        }
        return process.terminationStatus
    }
}

/// What the mutation workers share.
final class MutationState: Sendable {
    let acknowledged = Mutex<[String]>([])
    let next = Atomic<Int>(0)
    let killed = Atomic<Bool>(false)
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

@Suite("dem as a process: durability and events", .serialized)
struct DurabilityTests {
    @Test(
        "SIGKILL in the middle of 1,000+ acknowledged mutations: every one is there after a restart, and the database is intact"
    )
    func killDuringMutations() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dem-kill-\(UUID().uuidString)")
            .path
        let client = HTTPClient.shared
        let dem = try await DEMProcess.start(dataDirectory: directory)
        let state = MutationState()
        let killAt = 1_000
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    while !state.killed.load(ordering: .relaxed) {
                        let index = state.next.add(1, ordering: .relaxed).newValue
                        let alias = "h\(index)"
                        let body =
                            #"{"Alias":"\#(alias)","HOSTNQN":"nqn.2014-08.org.nvmexpress:uuid:\#(UUID().uuidString.lowercased())"}"#
                        guard
                            let response = try? await client.execute(
                                dem.request(.PUT, "/host", body: body),
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
                            // Mid-stream: the other workers have requests in flight.
                            dem.kill(SIGKILL)
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        _ = try await dem.waitForExit()
        let acked = state.acknowledged.withLock { $0 }
        #expect(acked.count >= killAt)

        let restarted = try await DEMProcess.start(dataDirectory: directory)
        let response = try await client.execute(restarted.request(.GET, "/host"), timeout: .seconds(10))
        #expect(response.status == .ok)
        let body = try await response.body.collect(upTo: 1 << 24)
        let listed = try JSONDecoder().decode([String: [String]].self, from: Data(buffer: body))["Hosts"] ?? []
        let missing = Set(acked).subtracting(listed)
        #expect(missing.isEmpty, "acknowledged but lost: \(missing.sorted().prefix(10))")
        restarted.kill(SIGTERM)
        #expect(try await restarted.waitForExit() == 0)

        let store = try SQLiteFabricStore(path: directory + "/dem.sqlite")
        #expect(try store.integrityCheck() == "ok")
        #expect(try store.loadFabric().hosts.count == listed.count)
    }

    @Test("GET /events streams each change as a server-sent event; SIGTERM ends it and dem exits 0")
    func eventStream() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dem-events-\(UUID().uuidString)")
            .path
        let client = HTTPClient.shared
        let dem = try await DEMProcess.start(dataDirectory: directory)
        let response = try await client.execute(dem.request(.GET, "/events"), timeout: .seconds(30))
        #expect(response.status == .ok)
        #expect(response.headers["Content-Type"].first == "text/event-stream")
        let created = try await client.execute(dem.request(.POST, "/target/t1"), timeout: .seconds(10))
        #expect(created.status == .created)
        var text = ""
        for try await chunk in response.body {
            text += String(buffer: chunk)
            if text.contains("event: created") && text.contains("\n\n") && text.hasSuffix("\n\n") { break }
        }
        #expect(text.contains("id: 1\nevent: created\ndata: {"))
        #expect(text.contains(#""path":"\/target\/t1""#) || text.contains(#""path":"/target/t1""#))
        dem.kill(SIGTERM)
        #expect(try await dem.waitForExit() == 0)
    }
}
