import NIOCore
import NIOPosix
import Synchronization

/// A completed command: its CQE and the C2H data that came with it.
public struct NVMeCommandResult: Sendable {
    /// The completion queue entry.
    public var completion: CompletionQueueEntry
    /// The data the controller returned, if any.
    public var data: ByteBuffer?
}

/// What the host handler accepts as outbound messages.
public enum NVMeTCPHostRequest: Sendable {
    /// Send the ICReq and complete the promise with the ICResp.
    case initialize(InitializeConnectionRequest, EventLoopPromise<InitializeConnectionResponse>)
    /// Send a command; the promise completes with its CQE and data.
    case command(
        SubmissionQueueEntry,
        data: ByteBuffer?,
        expectedDataLength: Int,
        EventLoopPromise<NVMeCommandResult>
    )
}

/// Carries out a ``NVMeTCPHostStateMachine`` on one connection, matching completions to the
/// promises of the requests written to the channel.
public final class NVMeTCPHostHandler: ChannelDuplexHandler {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundIn = NVMeTCPHostRequest
    public typealias OutboundOut = ByteBuffer

    private var machine = NVMeTCPHostStateMachine<EventLoopPromise<NVMeCommandResult>>()
    private var initializePromise: EventLoopPromise<InitializeConnectionResponse>?

    public init() {}

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch Self.unwrapOutboundIn(data) {
        case .initialize(let request, let responsePromise):
            initializePromise = responsePromise
            run(machine.initialize(request), context: context)
        case .command(let entry, let payload, let expectedLength, let resultPromise):
            run(
                machine.submit(entry, data: payload, expectedDataLength: expectedLength, context: resultPromise),
                context: context
            )
        }
        promise?.succeed()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = Self.unwrapInboundIn(data)
        do {
            let pdu = try NVMeTCPPDU.decode(frame: frame, digests: machine.digests)
            run(machine.pduReceived(pdu), context: context)
        } catch {
            run(machine.transportErrorCaught(error), context: context)
        }
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? NVMeTCPTransportError {
            run(machine.transportErrorCaught(error), context: context)
        } else {
            run(machine.failed(NVMeHostError.protocolViolation("\(error)")), context: context)
        }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        run(machine.channelClosed(), context: context)
        context.fireChannelInactive()
    }

    private func run(
        _ actions: [NVMeTCPHostStateMachine<EventLoopPromise<NVMeCommandResult>>.Action],
        context: ChannelHandlerContext
    ) {
        var wrote = false
        for action in actions {
            switch action {
            case .send(let pdu):
                var buffer = context.channel.allocator.buffer(capacity: 160)
                buffer.writeNVMeTCPPDU(pdu, digests: machine.digests, dataAlignment: machine.controllerDataAlignment)
                context.write(Self.wrapOutboundOut(buffer), promise: nil)
                wrote = true
            case .connectionInitialized(let response):
                initializePromise?.succeed(response)
                initializePromise = nil
            case .commandCompleted(let completion, let data, let promise):
                promise.succeed(NVMeCommandResult(completion: completion, data: data))
            case .commandFailed(let error, let promise):
                promise.fail(error)
            case .close(let error, let outstanding):
                if wrote { context.flush() }
                wrote = false
                initializePromise?.fail(error)
                initializePromise = nil
                for promise in outstanding { promise.fail(error) }
                context.close(promise: nil)
            }
        }
        if wrote { context.flush() }
    }
}

/// One NVMe/TCP host connection to a controller's admin queue.
public final class NVMeTCPHostConnection: NVMeHostConnection {
    /// The channel.
    public let channel: any Channel

    private init(channel: any Channel) {
        self.channel = channel
    }

    /// Opens a TCP connection to `host`:`port` and installs the NVMe/TCP host pipeline.
    public static func connect(
        host: String,
        port: Int,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        connectTimeout: TimeAmount = .seconds(10)
    ) async throws -> NVMeTCPHostConnection {
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(connectTimeout)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(
                        ByteToMessageHandler(NVMeTCPFrameDecoder(maximumPDULength: 1 << 24)),
                        NVMeTCPHostHandler()
                    )
                }
            }
        // An IP literal needs no resolution (and no happy-eyeballs attempt); a name does.
        let channel: any Channel
        if let address = try? SocketAddress(ipAddress: host, port: port) {
            channel = try await bootstrap.connect(to: address).get()
        } else {
            channel = try await bootstrap.connect(host: host, port: port).get()
        }
        return NVMeTCPHostConnection(channel: channel)
    }

    /// Sends the ICReq and waits for the ICResp.
    public func initialize(_ request: InitializeConnectionRequest) async throws -> InitializeConnectionResponse {
        let response = channel.eventLoop.makePromise(of: InitializeConnectionResponse.self)
        return try await write(.initialize(request, response), answeredBy: response).get()
    }

    public var eventLoop: any EventLoop { channel.eventLoop }
    public var isActive: Bool { channel.isActive }
    public var closeFuture: EventLoopFuture<Void> { channel.closeFuture }

    public func abort() {
        channel.close(promise: nil)
    }

    /// Sends a command; the future completes with its completion.
    public func submitFuture(
        _ command: SubmissionQueueEntry,
        data: ByteBuffer?,
        expectedDataLength: Int
    ) -> EventLoopFuture<NVMeCommandResult> {
        let response = channel.eventLoop.makePromise(of: NVMeCommandResult.self)
        return write(
            .command(command, data: data, expectedDataLength: expectedDataLength, response),
            answeredBy: response
        )
    }

    /// Writes `request` and returns what the handler answers through `response`, or the write's
    /// failure: a write to a closed channel (a connection the controller refused or closed)
    /// never reaches the handler, which would leave `response` waiting forever. Whichever comes
    /// first completes the result.
    private func write<Answer: Sendable>(
        _ request: NVMeTCPHostRequest,
        answeredBy response: EventLoopPromise<Answer>
    ) -> EventLoopFuture<Answer> {
        let result = channel.eventLoop.makePromise(of: Answer.self)
        let written = channel.eventLoop.makePromise(of: Void.self)
        let settled = Mutex(false)
        let first: @Sendable () -> Bool = {
            settled.withLock { done in
                defer { done = true }
                return !done
            }
        }
        response.futureResult.whenComplete { outcome in if first() { result.completeWith(outcome) } }
        written.futureResult.whenFailure { error in if first() { result.fail(error) } }
        channel.writeAndFlush(request, promise: written)
        return result.futureResult
    }

    /// Closes the connection.
    public func close() async {
        try? await channel.close()
    }
}
