import ArgumentParser
import AsyncHTTPClient
import DEMCore
import Foundation
import NIOCore
import NIOPosix

struct Authentication: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "auth",
        abstract:
            "Discovery sessions with DH-HMAC-CHAP (null group and ffdhe2048) beside unauthenticated ones, against one dem."
    )

    @Option(parsing: .upToNextOption, help: "Concurrent clients; several values run one after the other.")
    var clients: [Int] = [1, 16]

    @Option(help: "Measured seconds per kind and client count (split over the rounds).")
    var duration: Double = 6

    @Option(help: "Rounds of the three kinds back to back per client count.")
    var rounds: Int = 6

    @Option(help: "Unmeasured seconds before each round.")
    var warmup: Double = 0.3

    @Option(help: "The dem executable (default: dem next to dem-bench).")
    var dem: String?

    @Option(help: "Give up after this many seconds in all.")
    var timeout: Double = 900

    func validate() throws {
        guard !clients.isEmpty, clients.allSatisfy({ $0 >= 1 && $0 <= 256 }) else {
            throw ValidationError("--clients must be 1...256")
        }
        guard duration > 0, rounds >= 1, warmup >= 0 else { throw ValidationError("bad --duration/--rounds/--warmup") }
    }

    func run() async throws {
        installSignalCleanup()
        startWatchdog(seconds: timeout, what: "dem-bench auth")
        do {
            try await AuthenticationBenchmark.run(self)
        } catch {
            stopAllChildren()
            throw error
        }
    }
}

/// `dem-bench auth`: the same discovery session (connect, read the page, close) by hosts without
/// a key, by hosts that authenticate with the null DH group, and by hosts that authenticate with
/// ffdhe2048 (SHA-256, one-way), run back to back against one dem; the server CPU a session
/// costs more with authentication is the CPU per authentication.
enum AuthenticationBenchmark {
    struct Kind {
        var name: String
        var group: String?
        /// Bench host numbers start here (plus the client task's number).
        var firstHost: Int
    }

    static let kinds = [
        Kind(name: "no key", group: nil, firstHost: 0x1000),
        Kind(name: "DH-HMAC-CHAP null", group: "null", firstHost: 0x2000),
        Kind(name: "DH-HMAC-CHAP ffdhe2048", group: "ffdhe2048", firstHost: 0x3000),
    ]

    static func run(_ settings: Authentication) async throws {
        _ = raiseOpenFileLimit()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        let launched = try await launchDEM(executable: settings.dem, entries: 8, group: group)
        let dem = launched.process
        defer { dem.stop() }
        let apiPort = try await ManagementBenchmark.restPort(of: dem, timeout: 30)
        let tokenPath = launched.directory + "/data/admin.token"
        guard let tokenData = FileManager.default.contents(atPath: tokenPath) else {
            throw BenchError("no admin token at \(tokenPath)")
        }
        let token = String(decoding: tokenData, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let http = HTTPClient(eventLoopGroupProvider: .shared(group))

        // The hosts of the two authenticated kinds, each with a key dem generates.
        let most = settings.clients.max() ?? 1
        var keys: [Int: DHCHAPSecret] = [:]
        for kind in kinds {
            guard let dhGroup = kind.group else { continue }
            for task in 1...most {
                let number = kind.firstHost + task
                let alias = "bench-\(number)"
                _ = try await call(
                    http,
                    apiPort,
                    token,
                    "PUT",
                    "/host",
                    #"{"Alias":"\#(alias)","HOSTNQN":"\#(benchHostNQN(number))"}"#
                )
                let answer = try await call(
                    http,
                    apiPort,
                    token,
                    "PUT",
                    "/host/\(alias)/dhchap",
                    #"{"Secret":"generate","Hash":"sha256","DHGroup":"\#(dhGroup)"}"#
                )
                guard let text = try JSONValue(parsing: Array(answer.readableBytesView))["Secret"]?.stringValue else {
                    throw BenchError("PUT /host/\(alias)/dhchap gave no secret")
                }
                keys[number] = try DHCHAPSecret(parsing: text)
            }
        }
        let sharedKeys = keys
        let target = BenchTarget(name: "dem", port: launched.port, process: dem)

        say("### Discovery sessions with DH-HMAC-CHAP beside sessions without")
        say()
        say("- machine: \(System.coreCount) cores (\(cpuModel())), Linux \(kernelRelease()); everything on 127.0.0.1")
        say(
            "- dem: `\(launched.executable)` (pid \(dem.pid)); `--auth optional`; hosts with a key have one that dem generated (32 bytes, SHA-256)"
        )
        say(
            "- a session is DiscoveryClient.connect (ICReq, Connect, [Negotiate, Challenge, Reply, Success1], Property Get CAP, "
                + "Property Set CC.EN, Property Get CSTS, Identify), readDiscoveryLogPage, close; each client task is one host NQN; "
                + "the three kinds run back to back, \(settings.rounds) rounds of \(fmt(settings.duration / Double(settings.rounds))) s each "
                + "(after \(fmt(settings.warmup)) s of warm-up), the order rotating per round"
        )
        say(
            "- the host side is DEMCore's DHCHAPHostExchange in dem-bench (OpenSSL's FFDHE); the controller side is dem's"
        )
        say()
        say(
            "| clients | kind | sessions/s | p50 ms | p99 ms | server CPU µs/session | client CPU µs/session | errors |"
        )
        say("|---:|---|---:|---:|---:|---:|---:|---:|")
        var summaries: [String] = []
        for clients in settings.clients {
            var results = Array(repeating: LoadResult(), count: kinds.count)
            for round in 0..<settings.rounds {
                for offset in 0..<kinds.count {
                    let index = (round + offset) % kinds.count
                    let kind = kinds[index]
                    note("\(clients) clients, round \(round + 1)/\(settings.rounds): \(kind.name)")
                    let result = await SessionLoad.run(
                        target: target,
                        clients: clients,
                        seconds: settings.duration / Double(settings.rounds),
                        warmup: settings.warmup,
                        options: { task in
                            let number = kind.firstHost + task
                            var options = benchClientOptions(host: number)
                            options.hostKey = sharedKeys[number]
                            return options
                        },
                        group: group
                    )
                    results[index].add(result)
                }
            }
            for (index, kind) in kinds.enumerated() {
                let result = results[index]
                let latency = LatencySummary(result.latenciesMilliseconds)
                say(
                    "| \(clients) | \(kind.name) | \(fmt(result.sessionsPerSecond, 0)) | \(fmt(latency.p50, 2)) | "
                        + "\(fmt(latency.p99, 2)) | \(fmt(result.serverCPUMicrosecondsPerSession, 0)) | "
                        + "\(fmt(result.clientCPUMicrosecondsPerSession, 0)) | \(result.errors) |"
                )
                if let error = result.firstError { note("\(kind.name), \(clients) clients, first error: \(error)") }
            }
            let plain = results[0]
            for index in 1..<kinds.count {
                let result = results[index]
                summaries.append(
                    "- \(clients) clients, \(kinds[index].name): "
                        + "\(fmt(result.sessionsPerSecond / plain.sessionsPerSecond, 2))× the sessions/s of unauthenticated ones; "
                        + "p50 \(fmt(LatencySummary(result.latenciesMilliseconds).p50 / LatencySummary(plain.latenciesMilliseconds).p50, 2))×; "
                        + "dem's CPU per authentication \(fmt(result.serverCPUMicrosecondsPerSession - plain.serverCPUMicrosecondsPerSession, 0)) µs "
                        + "(server CPU per session \(fmt(result.serverCPUMicrosecondsPerSession, 0)) µs vs \(fmt(plain.serverCPUMicrosecondsPerSession, 0)) µs)"
                )
            }
        }
        say()
        for line in summaries { say(line) }
        try? await http.shutdown()
        try? await group.shutdownGracefully()
        try? FileManager.default.removeItem(atPath: launched.directory)
    }

    /// A REST call that must answer 2xx; returns the body.
    static func call(
        _ http: HTTPClient,
        _ port: Int,
        _ token: String,
        _ method: String,
        _ path: String,
        _ body: String
    ) async throws -> ByteBuffer {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
        request.method = .init(rawValue: method)
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: body))
        let response = try await http.execute(request, timeout: .seconds(30))
        let answer = try await response.body.collect(upTo: 1 << 20)
        guard (200..<300).contains(response.status.code) else {
            throw BenchError("\(method) \(path) answered \(response.status.code): \(String(buffer: answer))")
        }
        return answer
    }
}
