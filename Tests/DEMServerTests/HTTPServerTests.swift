import DEMCore
import DEMHTTP
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Testing

/// The HTTP server dem and dem-em serve their APIs with, over real sockets, with a router of
/// its own (the APIs' routes are tested through their routers elsewhere).
@Suite("dem's HTTP server")
struct HTTPServerTests {
    /// Runs an HTTPServer on a free port with a few routes, and `body` with the port.
    func withServer(
        gate: ConnectionGate? = nil,
        _ body: @Sendable (Int, ServiceGroup) async throws -> Void
    ) async throws {
        let router = Router(context: BasicRequestContext.self)
        router.get("/a") { _, _ in "a" }
        router.get("/slow") { _, _ in
            try await Task.sleep(for: .milliseconds(1500))
            return "slow"
        }
        router.put("/body") { request, _ in
            let body = try await request.body.collect(upTo: 16)
            return "\(body.readableBytes) bytes"
        }
        // Where a route runs: a route that does not wait runs on the connection's event loop.
        router.get("/where") { _, _ in
            MultiThreadedEventLoopGroup.currentEventLoop != nil ? "event loop" : "elsewhere"
        }
        let bound = BoundPort()
        let server = HTTPServer(
            responder: router.buildResponder(),
            configuration: .init(
                address: "127.0.0.1",
                port: 0,
                serverName: "test",
                maximumBodySize: 16,
                gate: gate,
                requestTimeout: .seconds(5)
            ),
            logger: Logger(label: "http-server-test"),
            onServerRunning: { channel in bound.bound(channel.localAddress?.port ?? 0) }
        )
        let group = ServiceGroup(services: [server], logger: Logger(label: "http-server-test"))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            let port = await bound.port()
            do {
                try await body(port, group)
            } catch {
                await group.triggerGracefulShutdown()
                throw error
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    /// The status lines' version and code of a raw exchange, in order ("HTTP/1.1 200").
    func statusLines(_ text: String) -> [String] {
        text.matches(of: /HTTP\/1\.[01] [0-9]{3} [A-Za-z ]+\r\n/).map { String(text[$0.range].prefix(12)) }
    }

    @Test("pipelined requests are answered in order; HTTP/1.0 and Connection: close end the connection")
    func pipelining() async throws {
        try await withServer { port, _ in
            let text = try #require(
                await rawHTTPExchange(
                    port: port,
                    sending: "GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                        + "GET /where HTTP/1.0\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                )
            )
            // The exchange ends because the server closed after the HTTP/1.0 request: the last
            // request is not answered.
            #expect(statusLines(text) == ["HTTP/1.1 200", "HTTP/1.1 200", "HTTP/1.0 200"])
            let slow = try #require(text.range(of: "slow"))
            let a = try #require(text.range(of: "\r\n\r\na"))
            #expect(slow.lowerBound < a.lowerBound)
            #expect(text.contains("event loop"))
            #expect(text.contains("Server: test"))
            let closing = try #require(
                await rawHTTPExchange(
                    port: port,
                    sending: "GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                )
            )
            #expect(statusLines(closing) == ["HTTP/1.1 200"])
            #expect(closing.lowercased().contains("connection: close"))
        }
    }

    @Test("a request that is not HTTP gets 400 and the connection is closed; the server serves on")
    func badRequest() async throws {
        try await withServer { port, _ in
            let text = try #require(await rawHTTPExchange(port: port, sending: "HELLO\r\n\r\n"))
            #expect(statusLines(text) == ["HTTP/1.1 400"])
            #expect(text.contains("\"status\":400"))
            let again = try #require(await httpGet(port: port, path: "/a"))
            #expect(again.status == 200 && again.body == "a")
        }
    }

    @Test("a body larger than the limit is a 413 from the route's own collect; one within it is read whole")
    func bodyLimit() async throws {
        try await withServer { port, _ in
            let small = try #require(
                await rawHTTPExchange(
                    port: port,
                    sending: "PUT /body HTTP/1.1\r\nHost: x\r\nContent-Length: 16\r\nConnection: close\r\n\r\n"
                        + String(repeating: "b", count: 16)
                )
            )
            #expect(small.hasSuffix("16 bytes"))
            let big = String(repeating: "b", count: 100_000)
            let large = try #require(
                await rawHTTPExchange(
                    port: port,
                    sending: "PUT /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                        + "\(String(big.utf8.count, radix: 16))\r\n\(big)\r\n0\r\n\r\n"
                )
            )
            #expect(statusLines(large) == ["HTTP/1.1 413"])
        }
    }

    @Test("a second server on the port fails to start, as any bind to a port in use does")
    func portInUse() async throws {
        try await withServer { port, _ in
            let router = Router(context: BasicRequestContext.self)
            let second = HTTPServer(
                responder: router.buildResponder(),
                configuration: .init(address: "127.0.0.1", port: port, serverName: "second"),
                logger: Logger(label: "http-server-test")
            )
            await #expect(throws: (any Error).self) { try await second.run() }
            let still = try #require(await httpGet(port: port, path: "/a"))
            #expect(still.status == 200)
        }
    }

    @Test("graceful shutdown lets a response under way finish, then the server stops")
    func gracefulShutdown() async throws {
        try await withServer { port, group in
            async let slow = rawHTTPExchange(port: port, sending: "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            // The request must be under way (read and answering) first, also on a loaded machine.
            try await Task.sleep(for: .milliseconds(600))
            await group.triggerGracefulShutdown()
            let text = try #require(await slow)
            // Answered, and closed after the answer although the request kept the connection.
            #expect(statusLines(text) == ["HTTP/1.1 200"])
            #expect(text.hasSuffix("slow"))
        }
    }

    @Test("connections beyond the gate's limit are closed at once and counted")
    func gate() async throws {
        let gate = ConnectionGate(
            name: "test",
            limits: ConnectionLimits(total: 1, perSource: 1),
            logger: Logger(label: "http-server-test")
        )
        try await withServer(gate: gate) { port, _ in
            async let held = rawHTTPExchange(
                port: port,
                sending: "GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            try await Task.sleep(for: .milliseconds(100))
            let refused = await rawHTTPExchange(port: port, sending: "GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(refused == nil || refused == "")
            #expect(statusLines(try #require(await held)) == ["HTTP/1.1 200"])
            #expect(gate.counts.refused == 1)
        }
    }
}
