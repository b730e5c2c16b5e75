import DEMCore
import DEMServer
import Foundation
import Testing

// Connection floods against the real `dem` executable, at the default limit of 1,024 open
// files (`ulimit -n 1024` for dem's process): thousands of idle and half-open connections on
// the discovery port and on the REST API, from one source and then from many (127.0.0.0/8 is all
// loopback on Linux), while a normal host (127.0.0.1) keeps discovering and asking /health.

/// Raw client sockets for a flood, held by a helper process (python3): each connects from a
/// source address and, when a partial request is given, every second one sends those bytes (the
/// beginning of an ICReq or of an HTTP request) and nothing more.
///
/// The thousands of descriptors live in the helper, not in the test process: with descriptors
/// above 1,024 in use, Foundation's Process (its CFSocket manager selects on them) stops noticing
/// that the programs other tests run have exited, and those tests wait for ever.
final class FloodSockets: @unchecked Sendable {
    private let process = Process()
    private let input = Pipe()
    private let output = Pipe()

    static let helper = """
        import os, resource, socket, sys
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        held, pending = [], []
        for line in sys.stdin:
            words = line.split()
            if words[0] == "open":
                count, port, sources = int(words[1]), int(words[2]), words[4].split(",")
                partial = b"" if words[3] == "-" else bytes.fromhex(words[3])
                opened = 0
                for index in range(count):
                    try:
                        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                        s.setblocking(False)
                        s.bind((sources[index % len(sources)], 0))
                        s.connect_ex(("127.0.0.1", port))
                    except OSError:
                        break
                    held.append(s)
                    opened += 1
                    if partial and index % 2 == 1:
                        pending.append((s, partial))
                print("opened", opened, flush=True)
            elif words[0] == "send":
                for s, data in pending:
                    try:
                        s.send(data)
                    except OSError:
                        pass
                pending = []
                print("sent", flush=True)
            elif words[0] == "close":
                for s in held:
                    s.close()
                held = []
                print("closed", flush=True)
        """

    init() throws {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", Self.helper]
        process.standardInput = input
        process.standardOutput = output
        try process.run()
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    /// Sends `command` to the helper and waits for its answer line (on a thread of its own).
    private func ask(_ command: String) async -> String {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread { [input, output] in
                input.fileHandleForWriting.write(Data((command + "\n").utf8))
                var line = Data()
                while true {
                    let byte = output.fileHandleForReading.readData(ofLength: 1)
                    if byte.isEmpty || byte == Data("\n".utf8) { break }
                    line.append(byte)
                }
                continuation.resume(returning: String(decoding: line, as: UTF8.self))
            }
        }
    }

    /// Opens `count` connections to `port`, from `sources` in turn; the helper's answer.
    @discardableResult
    func open(count: Int, sources: [String], port: Int, partial: [UInt8]?) async -> String {
        let hex = (partial ?? []).map { String(format: "%02x", $0) }.joined()
        return await ask("open \(count) \(port) \(hex.isEmpty ? "-" : hex) \(sources.joined(separator: ","))")
    }

    /// Sends the partial requests of the connections that have connected by now.
    func sendPartials() async { _ = await ask("send") }

    func closeAll() async {
        _ = await ask("close")
        try? input.fileHandleForWriting.close()
    }
}

/// One HTTP/1.1 GET on a new connection from 127.0.0.1, with a deadline: the status, or nil.
///
/// The blocking socket calls (up to the deadline for the connect and again for the answer, while
/// dem's API is flooded) run on a thread of their own: on Swift concurrency's few threads they
/// would stall every other test running meanwhile.
func httpGet(port: Int, path: String, token: String? = nil, seconds: Int = 5) async -> (status: Int, body: String)? {
    var request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    if let token { request += "Authorization: Bearer \(token)\r\n" }
    request += "\r\n"
    guard let text = await rawHTTPExchange(port: port, sending: request, seconds: seconds),
        text.hasPrefix("HTTP/1.1 "), let status = Int(text.dropFirst(9).prefix(3))
    else { return nil }
    let body = text.range(of: "\r\n\r\n").map { String(text[$0.upperBound...]) } ?? ""
    return (status, body)
}

/// Sends `request` as it is to 127.0.0.1:`port` and returns everything read until the server
/// closes (or `seconds` pass without a byte); nil if it cannot connect or send. Blocks on a
/// thread of its own, not on Swift concurrency's.
func rawHTTPExchange(port: Int, sending request: String, seconds: Int = 5) async -> String? {
    await withCheckedContinuation { continuation in
        Thread.detachNewThread {
            continuation.resume(returning: blockingExchange(port: port, request: request, seconds: seconds))
        }
    }
}

private func blockingExchange(port: Int, request: String, seconds: Int) -> String? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var timeout = timeval(tv_sec: seconds, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var remote = sockaddr_in()
    remote.sin_family = sa_family_t(AF_INET)
    remote.sin_addr.s_addr = inet_addr("127.0.0.1")
    remote.sin_port = UInt16(port).bigEndian
    let connected = withUnsafePointer(to: &remote) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    guard connected == 0 else { return nil }
    guard Array(request.utf8).withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) > 0
    else { return nil }
    var response: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if count <= 0 { break }
        response += buffer[0..<count]
    }
    return String(decoding: response, as: UTF8.self)
}

/// The value of series `name` with label `port` in a Prometheus text.
func metric(_ text: String, _ name: String, port: String) -> Int? {
    let prefix = "\(name){port=\"\(port)\"} "
    return text.split(separator: "\n").first { $0.hasPrefix(prefix) }.flatMap { Int($0.dropFirst(prefix.count)) }
}

@Suite("connection floods at the default descriptor limit", .serialized)
struct FloodTests {
    @Test(
        "thousands of idle and half-open connections on both ports: a normal host keeps discovering, the API keeps answering, stalled connections are closed and counted"
    )
    func flood() async throws {
        // The flood needs descriptors on this side: several thousand sockets.
        let mine = DescriptorLimit.raise()
        let perPort = min(3000, max(0, (mine.soft - 1000) / 4))
        try #require(perPort >= 1500, "this process may open only \(mine.soft) files; the flood needs about 7,000")

        let directory = temporaryDirectory("dem-flood")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let discoveryPort = try TakenPort().freed()
        let apiPort = try TakenPort().freed()
        let logPath = directory + "/dem.log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        // The default limit of a plain shell, a container, a unit without LimitNOFILE.
        process.arguments = [
            "-c",
            "ulimit -n 1024 && exec \"$0\" \"$@\"", DEMProcess.executable,
            "--data-dir", directory + "/data", "--port", "\(discoveryPort)", "--api-port", "\(apiPort)",
            "--setup-timeout", "2", "--http-timeout", "2", "--log-level", "info",
            // The flood speaks HTTP on raw sockets; TLS is checked in TLSTests.
            "--insecure-http",
        ]
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        try #require(try await eventually(20) { await httpGet(port: apiPort, path: "/health")?.status == 200 })
        let token = try String(contentsOfFile: directory + "/data/admin.token", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)

        // A normal host, connected before the flood, with a persistent discovery connection.
        let options = {
            var options = DiscoveryClientOptions(hostNQN: TestHosts.a, hostIdentifier: Array(repeating: 7, count: 16))
            options.keepAliveTimeout = 30_000
            options.commandTimeout = .seconds(5)
            options.connectTimeout = .seconds(5)
            return options
        }()
        let persistent = try await DiscoveryClient.connect(host: "127.0.0.1", port: discoveryPort, options: options)
        let icreq: [UInt8] = [0x00, 0x00, 0x80, 0x00, 0x80, 0x00, 0x00, 0x00]  // an ICReq's first 8 bytes
        let httpStart = Array("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".utf8)

        // 1. One source opens thousands: its per-source limits refuse most, and a normal host
        // connecting anew is served at once.
        let one = try FloodSockets()
        await one.open(count: perPort, sources: ["127.0.0.10"], port: discoveryPort, partial: icreq)
        await one.open(count: perPort, sources: ["127.0.0.10"], port: apiPort, partial: httpStart)
        try await Task.sleep(for: .milliseconds(300))
        await one.sendPartials()
        for _ in 0..<5 {
            let fresh = try await DiscoveryClient.connect(host: "127.0.0.1", port: discoveryPort, options: options)
            let page = try await fresh.readDiscoveryLogPage()
            #expect(page.entries.count >= 1)
            await fresh.close()
            #expect(await httpGet(port: apiPort, path: "/health")?.status == 200)
            #expect(try await persistent.readDiscoveryLogPage().entries.count >= 1)
            try await Task.sleep(for: .milliseconds(200))
        }

        // 2. Many sources (40 addresses) open thousands more: the totals fill, the established
        // host keeps discovering, and once the stalled connections time out new ones are served.
        let many = try FloodSockets()
        let sources = (20..<60).map { "127.0.0.\($0)" }
        await many.open(count: perPort, sources: sources, port: discoveryPort, partial: icreq)
        await many.open(count: perPort, sources: sources, port: apiPort, partial: httpStart)
        try await Task.sleep(for: .milliseconds(300))
        await many.sendPartials()
        for _ in 0..<10 {
            #expect(try await persistent.readDiscoveryLogPage().entries.count >= 1)
            try await Task.sleep(for: .milliseconds(200))
        }
        // Setup and HTTP timeouts are 2 s: within a few seconds a new host is served again.
        #expect(
            try await eventually(10) {
                guard
                    let fresh = try? await DiscoveryClient.connect(
                        host: "127.0.0.1",
                        port: discoveryPort,
                        options: options
                    )
                else { return false }
                defer { Task { await fresh.close() } }
                return (try? await fresh.readDiscoveryLogPage()) != nil
            }
        )
        #expect(try await eventually(10) { await httpGet(port: apiPort, path: "/health")?.status == 200 })
        #expect(process.isRunning)

        // /metrics counts what happened, and the stalled connections are gone.
        let metrics = try #require(await httpGet(port: apiPort, path: "/metrics", token: token)?.body)
        #expect(metric(metrics, "dem_connections_refused_total", port: "discovery") ?? 0 > 0, "\(metrics)")
        #expect(metric(metrics, "dem_connections_refused_total", port: "REST API") ?? 0 > 0)
        #expect(metric(metrics, "dem_connections_timed_out_total", port: "discovery") ?? 0 > 0)
        #expect(metric(metrics, "dem_connections_timed_out_total", port: "REST API") ?? 0 > 0)
        #expect(metric(metrics, "dem_connections_limit", port: "discovery") ?? Int.max < 1024)
        #expect(metrics.contains("dem_descriptor_limit 1024"))
        await one.closeAll()
        await many.closeAll()
        #expect(
            try await eventually(10) {
                let text = await httpGet(port: apiPort, path: "/metrics", token: token)?.body ?? ""
                return (metric(text, "dem_connections_open", port: "discovery") ?? 99) <= 2
            }
        )
        await persistent.close()
        let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        #expect(log.contains("refusing connections"), "the refusals are logged")
        #expect(log.contains("descriptor-limit=1024"))
        kill(process.processIdentifier, SIGTERM)
        #expect(try await eventually(20) { !process.isRunning })
        #expect(process.terminationStatus == 0)
    }
}

@Suite("slow HTTP peers", .serialized)
struct SlowHTTPTests {
    @Test("a request whose headers or body stop coming is closed after --http-timeout; an /events stream is not")
    func slowRequests() async throws {
        let directory = temporaryDirectory("dem-slow")
        let dem = try await DEMProcess.start(
            dataDirectory: directory,
            // HTTP on raw sockets; TLS's own stalls are checked in TLSTests.
            extraArguments: ["--http-timeout", "1", "--insecure-http"]
        )
        defer { dem.kill(SIGKILL) }
        func open() -> Int32 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var remote = sockaddr_in()
            remote.sin_family = sa_family_t(AF_INET)
            remote.sin_addr.s_addr = inet_addr("127.0.0.1")
            remote.sin_port = UInt16(dem.apiPort).bigEndian
            _ = withUnsafePointer(to: &remote) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            return fd
        }
        func write(_ fd: Int32, _ text: String) {
            _ = Array(text.utf8).withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }
        /// Reads until the peer closes (0), or the 5 s receive timeout (-1): what came, and how.
        func drain(_ fd: Int32) -> (text: String, closed: Bool) {
            var bytes: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if count == 0 { return (String(decoding: bytes, as: UTF8.self), true) }
                if count < 0 { return (String(decoding: bytes, as: UTF8.self), false) }
                bytes += buffer[0..<count]
            }
        }
        // Headers that never end.
        let headers = open()
        write(headers, "GET /health HTTP/1.1\r\nHost: x\r\n")
        let start = ContinuousClock.now
        #expect(drain(headers).closed)
        #expect(ContinuousClock.now - start < .seconds(4))
        close(headers)
        // A body that stops half way.
        let body = open()
        write(
            body,
            "PUT /host/h1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(dem.token)\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"HOSTNQN\": "
        )
        let (answer, closed) = drain(body)
        #expect(closed)
        #expect(!answer.contains("201"), "the half body was not taken for a request")
        close(body)
        // A connection that says nothing.
        let idle = open()
        #expect(drain(idle).closed)
        close(idle)
        // An event stream lives on past the timeout.
        let events = open()
        write(events, "GET /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(dem.token)\r\n\r\n")
        try await Task.sleep(for: .seconds(2))
        var pending = pollfd(fd: events, events: Int16(POLLIN), revents: 0)
        _ = poll(&pending, 1, 0)
        var peek = [UInt8](repeating: 0, count: 4096)
        let got = peek.withUnsafeMutableBytes { recv(events, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        #expect(got > 0, "the stream's headers came")
        let more = peek.withUnsafeMutableBytes { recv(events, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        #expect(more != 0, "still open 2 s later (0 would be a close)")
        close(events)
    }
}

extension TakenPort {
    /// The port, given back: free for dem to bind (nothing else takes it in the meantime on a
    /// test machine).
    func freed() -> Int {
        close()
        return port
    }
}
