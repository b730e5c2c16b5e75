import DEMCore
@_exported import DEMTLS
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOExtras
import NIOHTTP1
import NIOHTTPTypesHTTP1
import NIOPosix
import NIOSSL
import NIOTLS
import ServiceLifecycle
import Synchronization

/// Serves a Hummingbird responder (a `Router`'s, with its middleware) over HTTP/1.1 from NIO's
/// event loops.
///
/// Hummingbird's own server gives every connection a task that reads the connection through an
/// `NIOAsyncChannel`, so each connection and each request cross between NIO's event loop and
/// Swift concurrency's threads several times; on this two-core machine that cost more than the
/// request itself (docs/PERFORMANCE.md). Here a connection is channel handlers only: the request
/// is read whole on its event loop and the responder runs in a task that prefers that same event
/// loop as its executor, so a route that does not wait for anything (a read of the model) answers
/// within the loop turn that read the request. A route that waits (a store commit on its writer
/// queue, a call to a target) resumes on the loop afterwards.
///
/// A connection is admitted through the port's ``ConnectionGate``, then is three handlers (after
/// TLS's, and ``PlainHTTPRedirect`` before them on a TLS port): NIO's HTTP/1 decoder and encoder
/// and ``HTTPConnectionHandler``, which bounds how long a request may take to
/// arrive, reads each request whole (up to `maximumBodySize`; beyond that the responder sees
/// `maximumBodySize + 1` bytes, so its own `collect(upTo:)` answers 413), answers pipelined
/// requests in order, honours `Connection: close` and HTTP/1.0, and answers a request that cannot
/// be parsed with 400 before closing. Each event loop has its own listening socket on the port
/// (`SO_REUSEPORT`), so a connection is accepted and served on one thread. Graceful shutdown
/// stops accepting, closes idle connections and lets each busy one finish its response.
public struct HTTPServer<Responder: HTTPResponder>: Service
where Responder.Context: RequestContext, Responder.Context.Source == ApplicationRequestContextSource {
    public struct Configuration: Sendable {
        /// The address and port to listen on (0: any free port).
        public var address: String
        public var port: Int
        /// The `Server` header.
        public var serverName: String
        /// The largest request body read whole.
        public var maximumBodySize: Int
        /// Admits each connection (nil: every one).
        public var gate: ConnectionGate?
        /// How long a request may take to arrive whole, from the connection opening or the
        /// previous response ending; an idle connection is closed after it too. A request being
        /// answered (an event stream) has no limit.
        public var requestTimeout: TimeAmount
        /// Handlers on each listening socket, first in its pipeline.
        public var listenerHandlers: @Sendable () -> [any ChannelHandler]
        /// TLS for every connection (nil: plain HTTP). The request timeout covers the handshake.
        /// A client certificate the context verified is named in each request's logger
        /// (`tls.peer`: its ``FabricIdentity``). Each connection takes the box's context when it
        /// is accepted (a renewed certificate serves new connections at once).
        public var tls: TLSContextBox?
        /// With TLS: the role a client's certificate must have (nil: any, or none); a connection
        /// whose certificate has another is closed after the handshake, before any request.
        public var requiredPeerRole: FabricRole?

        public init(
            address: String,
            port: Int,
            serverName: String,
            maximumBodySize: Int = APIBody.maximumSize,
            gate: ConnectionGate? = nil,
            requestTimeout: TimeAmount = .seconds(30),
            listenerHandlers: @escaping @Sendable () -> [any ChannelHandler] = { [] },
            tls: TLSContextBox? = nil,
            requiredPeerRole: FabricRole? = nil
        ) {
            self.tls = tls
            self.requiredPeerRole = requiredPeerRole
            self.address = address
            self.port = port
            self.serverName = serverName
            self.maximumBodySize = maximumBodySize
            self.gate = gate
            self.requestTimeout = requestTimeout
            self.listenerHandlers = listenerHandlers
        }
    }

    let responder: Responder
    let configuration: Configuration
    let group: any EventLoopGroup
    let logger: Logger
    let onServerRunning: @Sendable (any Channel) async -> Void

    public init(
        responder: Responder,
        configuration: Configuration,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger,
        onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }
    ) {
        self.responder = responder
        self.configuration = configuration
        self.group = group
        self.logger = logger
        self.onServerRunning = onServerRunning
    }

    public func run() async throws {
        let executors = EventLoopTaskExecutors(group)
        let dates = HTTPDateCache()
        let configuration = self.configuration
        let responder = self.responder
        let logger = self.logger
        // SO_REUSEPORT would let this server share a port another process of the same user
        // listens on, splitting its connections: a given port is first bound alone, which fails
        // as any bind does when something listens there. Port 0 is not probed: the first
        // listener gets a port nothing holds, and the others join it at once (a probe closed
        // before they bind could lose the port to another socket meanwhile).
        var port = configuration.port
        if port != 0 {
            let probe = try await ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .bind(host: configuration.address, port: port)
                .get()
            try await probe.close()
        }
        var listeners: [(channel: any Channel, quiescing: ServerQuiescingHelper)] = []
        defer {
            // A listener bound before a later one failed is not left open.
            if listeners.count < executors.count { for listener in listeners { listener.channel.close(promise: nil) } }
        }
        for loop in group.makeIterator() {
            let quiescing = ServerQuiescingHelper(group: loop)
            let channel = try await ServerBootstrap(group: loop, childGroup: loop)
                .serverChannelOption(.backlog, value: 256)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .serverChannelOption(.socketOption(NIOBSDSocket.Option(rawValue: SO_REUSEPORT)), value: 1)
                .serverChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let pipeline = channel.pipeline.syncOperations
                        try pipeline.addHandlers(configuration.listenerHandlers())
                        try pipeline.addHandler(quiescing.makeServerChannelHandler(channel: channel))
                    }
                }
                .childChannelOption(.allowRemoteHalfClosure, value: true)
                .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        // The port's gate admits each connection first (a refused one is closed).
                        if let gate = configuration.gate, !gate.admit(channel) { return }
                        let pipeline = channel.pipeline.syncOperations
                        let executor = executors.executor(for: channel.eventLoop)
                        // TLS, then HTTP/1.1 and the connection's handler.
                        @Sendable func serve(
                            _ pipeline: ChannelPipeline.SynchronousOperations,
                            tls: TLSContextBox?
                        ) throws {
                            if let tls { try pipeline.addHandler(NIOSSLServerHandler(context: tls.current)) }
                            try pipeline.addHandler(HTTPResponseEncoder(configuration: .init()))
                            try pipeline.addHandler(
                                ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes))
                            )
                            try pipeline.addHandler(
                                HTTPConnectionHandler(
                                    responder: responder,
                                    executor: executor,
                                    configuration: configuration,
                                    dates: dates,
                                    logger: logger
                                )
                            )
                        }
                        guard let tls = configuration.tls else { return try serve(pipeline, tls: nil) }
                        // A TLS client goes on; plain HTTP typed into a browser is sent to https://.
                        try pipeline.addHandler(
                            PlainHTTPRedirect(timeout: configuration.requestTimeout) { try serve($0, tls: tls) }
                        )
                    }
                }
                .bind(host: configuration.address, port: port)
                .get()
            port = channel.localAddress?.port ?? port
            listeners.append((channel, quiescing))
        }
        let channel = listeners[0].channel
        await onServerRunning(channel)
        // Until graceful shutdown, or cancellation (another service failed): either way the
        // listener closes and the connections end as their responses do.
        try? await gracefulShutdown()
        for listener in listeners {
            let closed = listener.channel.eventLoop.makePromise(of: Void.self)
            listener.quiescing.initiateShutdown(promise: closed)
            try? await closed.futureResult.get()
        }
    }
}

/// One connection: admitted by the gate, each request read whole within the timeout, handed to
/// the responder in a task on this connection's event loop, and its response written; a request
/// that arrives while one is answered waits (reading stops) until the answer is written.
final class HTTPConnectionHandler<Responder: HTTPResponder>: ChannelDuplexHandler, RemovableChannelHandler
where Responder.Context: RequestContext, Responder.Context.Source == ApplicationRequestContextSource {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        /// Waiting for a request: the timer runs.
        case idle
        /// A request is arriving: the timer runs.
        case receiving(HTTPRequestHead, HTTPRequest, ByteBuffer?)
        /// The request is whole; it is being answered.
        case responding
        /// Refused by the gate, or failed: nothing more is read or answered.
        case closed
    }

    private let responder: Responder
    private let executor: EventLoopTaskExecutor
    private let configuration: HTTPServer<Responder>.Configuration
    private let dates: HTTPDateCache
    private let logger: Logger
    private var state = State.idle
    /// Close when the response being written ends (the peer asked, stopped sending, or the
    /// server is shutting down).
    private var closeAfterResponse = false
    /// Parts of requests that arrived while one was answered (nil: the bytes after them could
    /// not be parsed), and whether a read waits for them.
    private var waiting: [HTTPServerRequestPart?] = []
    private var readDeferred = false
    private var timer: Scheduled<Void>?
    private var task: Task<Void, Never>?
    /// This handler's context while it is in the pipeline.
    private var context: ChannelHandlerContext?
    /// Who the client's certificate names, once the TLS handshake verified it.
    private var peer: FabricIdentity?
    /// Whether a request may be answered: with a required peer role, only after the handshake
    /// showed a certificate with it.
    private var peerAccepted: Bool

    init(
        responder: Responder,
        executor: EventLoopTaskExecutor,
        configuration: HTTPServer<Responder>.Configuration,
        dates: HTTPDateCache,
        logger: Logger
    ) {
        self.responder = responder
        self.executor = executor
        self.configuration = configuration
        self.dates = dates
        self.logger = logger
        self.peerAccepted = configuration.requiredPeerRole == nil
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        arm(context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        timer?.cancel()
        timer = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        // A response still being written (an event stream) ends with the connection.
        task?.cancel()
        task = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        switch state {
        case .closed:
            return
        case .responding:
            waiting.append(part)
            return
        case .idle, .receiving:
            guard peerAccepted else {
                // Unreachable through TLS (no request is read before the handshake ends), but a
                // required role is never skipped.
                state = .closed
                context.close(promise: nil)
                return
            }
            if !waiting.isEmpty {
                waiting.append(part)
                return
            }
            receive(part, context: context)
        }
    }

    private func receive(_ part: HTTPServerRequestPart, context: ChannelHandlerContext) {
        switch (part, state) {
        case (.head(let head), .idle):
            do {
                state = .receiving(head, try HTTPRequest(head, secure: false, splitCookie: false), nil)
            } catch {
                refuse(context, "the request line or a header is not valid HTTP")
            }
        case (.body(var part), .receiving(let head, let request, var body)):
            // Beyond the limit only one more byte is kept: the responder's collect(upTo:) says 413.
            let room = configuration.maximumBodySize + 1 - (body?.readableBytes ?? 0)
            if room > 0 {
                if part.readableBytes > room { part = part.getSlice(at: part.readerIndex, length: room)! }
                if body == nil {
                    body = part
                } else {
                    body!.writeImmutableBuffer(part)
                }
                state = .receiving(head, request, body)
            }
        case (.end, .receiving(let head, let request, let body)):
            state = .responding
            timer?.cancel()
            timer = nil
            if !head.isKeepAlive { closeAfterResponse = true }
            respond(to: request, version: head.version, body: body ?? ByteBuffer(), context: context)
        default:
            refuse(context, "unexpected part of a request")
        }
    }

    func read(context: ChannelHandlerContext) {
        // While a request is answered, requests pipelined behind it stay in the socket.
        if case .responding = state, !waiting.isEmpty {
            readDeferred = true
            return
        }
        context.read()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if error is HTTPParserError {
            // The requests before the bytes that could not be parsed are answered first.
            if case .responding = state {
                waiting.append(nil)
            } else if !waiting.isEmpty {
                waiting.append(nil)
            } else {
                refuse(context, "the request is not valid HTTP/1.1")
            }
            return
        }
        context.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event {
            let certificate = try? context.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self)
                .peerCertificate
            peer = (try? certificate?.toDERBytes()).flatMap { FabricIdentity(certificateDER: $0) }
            if let role = configuration.requiredPeerRole {
                guard let peer, peer.role == role else {
                    logger.warning(
                        "TLS client refused: its certificate is not of the required role",
                        metadata: [
                            "peer": "\(context.channel.remoteAddress.map { "\($0)" } ?? "-")",
                            "certificate": "\(peer.map { "\($0)" } ?? "none with a role")",
                            "required": "\(role.rawValue)",
                        ]
                    )
                    state = .closed
                    context.close(promise: nil)
                    return
                }
                peerAccepted = true
            }
        }
        if event is ChannelShouldQuiesceEvent || (event as? ChannelEvent) == .inputClosed {
            closeAfterResponse = true
            if case .responding = state { return }
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// Answers 400 (when no answer is under way) and closes.
    private func refuse(_ context: ChannelHandlerContext, _ why: String) {
        let answering: Bool
        if case .responding = state { answering = true } else { answering = false }
        state = .closed
        waiting = []
        guard !answering else {
            context.close(promise: nil)
            return
        }
        // The API's own error body, as a route's 400 would have it.
        let body = (try? APIError(.badRequest, why).encodedBody()) ?? ByteBuffer()
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(body.readableBytes))
        headers.add(name: "Connection", value: "close")
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .badRequest, headers: headers))),
            promise: nil
        )
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in context.close(promise: nil) }
    }

    private func respond(to head: HTTPRequest, version: HTTPVersion, body: ByteBuffer, context: ChannelHandlerContext) {
        let channel = context.channel
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let responder = self.responder
        let dates = self.dates
        let serverName = configuration.serverName
        var logger = self.logger
        logger[metadataKey: "hb.request.id"] = .stringConvertible(RequestID())
        if let peer { logger[metadataKey: "tls.peer"] = .string(peer.description) }
        let closing = closeAfterResponse
        task = Task(executorPreference: executor) {
            let request = Request(head: head, body: RequestBody(buffer: body))
            let requestContext = Responder.Context(
                source: ApplicationRequestContextSource(channel: channel, logger: logger)
            )
            var response: Response
            do {
                response = try await responder.respond(to: request, context: requestContext)
            } catch {
                logger.debug("unanswered error", metadata: ["error": "\(error)"])
                response = Response(status: .internalServerError)
            }
            response.headers[.date] = dates.now()
            response.headers[.server] = serverName
            if closing { response.headers[.connection] = "close" }
            if let length = response.body.contentLength, response.headers[.contentLength] == nil {
                response.headers[.contentLength] = String(length)
            }
            var responseHead = HTTPResponseHead(response.head)
            responseHead.version = version
            let writer = ChannelResponseWriter(
                channel: channel,
                head: responseHead,
                buffered: response.body.contentLength != nil,
                omitBody: head.method == .head
            )
            do {
                try await response.body.write(writer)
            } catch {
                // The peer went away, or the body could not be made: the connection is closed.
                logger.debug("response not written", metadata: ["error": "\(error)"])
                channel.close(promise: nil)
            }
            if channel.eventLoop.inEventLoop {
                handler.value.responseEnded()
            } else {
                channel.eventLoop.execute { handler.value.responseEnded() }
            }
        }
    }

    private func responseEnded() {
        task = nil
        guard case .responding = state, let context else { return }
        state = .idle
        if closeAfterResponse {
            context.close(promise: nil)
            return
        }
        arm(context)
        // Requests that arrived meanwhile, in order, until one is being answered again.
        while !waiting.isEmpty {
            if case .responding = state { break }
            if case .closed = state { break }
            if let part = waiting.removeFirst() {
                receive(part, context: context)
            } else {
                refuse(context, "the request is not valid HTTP/1.1")
            }
        }
        if readDeferred, waiting.isEmpty {
            readDeferred = false
            context.read()
        }
    }

    private func arm(_ context: ChannelHandlerContext) {
        timer?.cancel()
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: configuration.requestTimeout) {
            let (handler, context) = loopBound.value
            handler.timer = nil
            switch handler.state {
            case .idle, .receiving:
                handler.configuration.gate?.timedOut()
                context.close(promise: nil)
            case .responding, .closed:
                break
            }
        }
    }
}

/// Writes a response to the channel: a body of known length in one flush with its head, a
/// stream (`/events`) part by part, each flushed and waited for.
struct ChannelResponseWriter: ResponseBodyWriter {
    let channel: any Channel
    var head: HTTPResponseHead?
    let buffered: Bool
    let omitBody: Bool
    var pending: [ByteBuffer] = []

    init(channel: any Channel, head: HTTPResponseHead, buffered: Bool, omitBody: Bool) {
        self.channel = channel
        self.head = head
        self.buffered = buffered
        self.omitBody = omitBody
    }

    mutating func write(_ buffer: ByteBuffer) async throws {
        if omitBody { return }
        if buffered {
            pending.append(buffer)
            return
        }
        if let head {
            channel.write(HTTPServerResponsePart.head(head), promise: nil)
            self.head = nil
        }
        try await channel.writeAndFlush(HTTPServerResponsePart.body(.byteBuffer(buffer))).get()
    }

    consuming func finish(_ trailingHeaders: HTTPFields?) async throws {
        if let head { channel.write(HTTPServerResponsePart.head(head), promise: nil) }
        for buffer in pending { channel.write(HTTPServerResponsePart.body(.byteBuffer(buffer)), promise: nil) }
        channel.writeAndFlush(HTTPServerResponsePart.end(trailingHeaders.map(HTTPHeaders.init)), promise: nil)
    }
}

/// An event loop as a task executor: a task that prefers it runs its non-isolated code on the
/// loop's thread.
final class EventLoopTaskExecutor: TaskExecutor {
    let loop: any EventLoop

    init(_ loop: any EventLoop) { self.loop = loop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}

/// One ``EventLoopTaskExecutor`` per loop of a group.
struct EventLoopTaskExecutors: Sendable {
    private let executors: [ObjectIdentifier: EventLoopTaskExecutor]

    init(_ group: any EventLoopGroup) {
        var executors: [ObjectIdentifier: EventLoopTaskExecutor] = [:]
        for loop in group.makeIterator() { executors[ObjectIdentifier(loop)] = EventLoopTaskExecutor(loop) }
        self.executors = executors
    }

    var count: Int { executors.count }

    func executor(for loop: any EventLoop) -> EventLoopTaskExecutor {
        executors[ObjectIdentifier(loop)] ?? EventLoopTaskExecutor(loop)
    }
}

/// The `Date` header's value (RFC 9110 IMF-fixdate), made once per second.
final class HTTPDateCache: Sendable {
    private let cached = Mutex<(second: Int, text: String)>((-1, ""))

    func now() -> String {
        var seconds = time(nil)
        return cached.withLock { cached in
            if cached.second != seconds {
                var parts = tm()
                gmtime_r(&seconds, &parts)
                var buffer = [CChar](repeating: 0, count: 40)
                let count = strftime(&buffer, buffer.count, "%a, %d %b %Y %H:%M:%S GMT", &parts)
                cached = (seconds, String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self))
            }
            return cached.text
        }
    }
}
