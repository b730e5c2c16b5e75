import DEMCore
import NIOCore
import NIOHTTPTypes

/// Bounds what one HTTP connection of a REST API can hold: it is admitted by the port's
/// ``ConnectionGate`` (or closed at once), and each request must arrive whole — headers and
/// body — within the timeout of the connection opening or the previous response ending, so a
/// peer that sends nothing, or a byte now and then, is closed. A request being answered (an
/// `/events` stream) has no limit.
public final class HTTPConnectionGuard: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = HTTPRequestPart
    public typealias InboundOut = HTTPRequestPart
    public typealias OutboundIn = HTTPResponsePart
    public typealias OutboundOut = HTTPResponsePart

    private enum State {
        /// Waiting for a request (or for the rest of one): the timer runs.
        case receiving
        /// The request is whole; it is being answered.
        case answering
    }

    private let gate: ConnectionGate?
    private let timeout: TimeAmount
    private var state = State.receiving
    private var timer: Scheduled<Void>?
    private var admitted = true

    public init(gate: ConnectionGate?, timeout: TimeAmount) {
        self.gate = gate
        self.timeout = timeout
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        if let gate, !gate.admit(context.channel) {
            admitted = false
            return
        }
        arm(context)
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    public func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard admitted else { return }
        switch unwrapInboundIn(data) {
        case .head:
            // A pipelined request while the last is answered: it must arrive in time too.
            if case .answering = state {
                state = .receiving
                arm(context)
            }
        case .body:
            break
        case .end:
            state = .answering
            timer?.cancel()
            timer = nil
        }
        context.fireChannelRead(data)
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data), case .answering = state {
            state = .receiving
            arm(context)
        }
        context.write(data, promise: promise)
    }

    private func arm(_ context: ChannelHandlerContext) {
        timer?.cancel()
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: timeout) {
            let (handler, context) = loopBound.value
            handler.timer = nil
            guard case .receiving = handler.state else { return }
            handler.gate?.timedOut()
            context.close(promise: nil)
        }
    }
}
