import Logging
import NIOCore

/// Carries out an ``NVMeTCPControllerBinding`` on one NVMe/TCP connection: frames come in from
/// ``NVMeTCPFrameDecoder``, PDUs go out as bytes, and the controller's session actions (keep-alive
/// checks, change notices, in-band requests) are carried out by a ``ControllerSessionDriver`` on
/// the event loop, as the NVMe/RDMA reactor does for its queues.
public final class NVMeTCPControllerHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private var binding: NVMeTCPControllerBinding
    private let service: ControllerService
    private let logger: Logger
    private let remoteAddress: String?
    private var session: ControllerSessionDriver?
    /// While a PDU is partly received: the check that it ends within the setup timeout.
    private var partialPDUCheck: Scheduled<Void>?
    private let setupTimeout: TimeAmount
    private let gate: ConnectionGate?
    private var context: ChannelHandlerContext?
    /// PDUs written since the last flush: the answers to one read burst go out in one flush.
    private var unflushed = false
    private var reading = false

    /// - Parameters:
    ///   - configuration: the controller's parameters.
    ///   - service: the discovery controller's log pages, controller IDs and change notices, or
    ///     the in-band management controller's requests (``InBandManagement``).
    ///   - localAddress: the connection's local IP address.
    ///   - remoteAddress: the host's address, for logs.
    ///   - gate: counts connections closed because the host stalled.
    ///   - logger: where connection events go (debug and below, plus warnings for terminated hosts).
    public init(
        configuration: DiscoveryControllerConfiguration,
        serving service: ControllerService,
        localAddress: String?,
        remoteAddress: String?,
        gate: ConnectionGate? = nil,
        logger: Logger
    ) {
        self.setupTimeout = configuration.setupTimeout
        self.gate = gate
        self.binding = NVMeTCPControllerBinding(
            configuration: configuration,
            serving: service,
            localAddress: localAddress,
            remoteAddress: remoteAddress
        )
        self.service = service
        self.logger = logger
        self.remoteAddress = remoteAddress
    }

    /// A discovery controller.
    public convenience init(
        configuration: DiscoveryControllerConfiguration,
        service: any DiscoveryControllerService,
        localAddress: String?,
        remoteAddress: String?,
        logger: Logger
    ) {
        self.init(
            configuration: configuration,
            serving: .discovery(service),
            localAddress: localAddress,
            remoteAddress: remoteAddress,
            logger: logger
        )
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        session = ControllerSessionDriver(
            service: service,
            transport: "tcp",
            remoteAddress: remoteAddress,
            loop: context.eventLoop.controllerSessionLoop,
            logger: logger
        ) { [weak self] event in self?.sessionEvent(event) }
        if context.channel.isActive { run(binding.connectionOpened(now: context.eventLoop.now), context: context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        run(binding.connectionOpened(now: context.eventLoop.now), context: context)
        context.fireChannelActive()
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let partial = event as? NVMeTCPFrameDecoder.PartialPDU else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        // A host that begins a PDU must end it within the setup timeout.
        partialPDUCheck?.cancel()
        partialPDUCheck = nil
        guard partial == .begun else { return }
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        partialPDUCheck = context.eventLoop.scheduleTask(in: setupTimeout) {
            loopBound.value.partialPDUTimedOut()
        }
    }

    private func partialPDUTimedOut() {
        guard let context else { return }
        partialPDUCheck = nil
        gate?.timedOut()
        binding.channelClosed()
        close(reason: "a PDU begun was not ended within \(setupTimeout)", context: context)
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        tearDown()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = Self.unwrapInboundIn(data)
        let actions: [NVMeTCPControllerBinding.Action]
        do {
            let pdu = try NVMeTCPPDU.decode(frame: frame, digests: binding.digests)
            actions = binding.pduReceived(pdu, now: context.eventLoop.now)
        } catch {
            actions = binding.transportErrorCaught(error)
        }
        reading = true
        run(actions, context: context)
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        reading = false
        flush(context: context)
        context.fireChannelReadComplete()
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? NVMeTCPTransportError {
            run(binding.transportErrorCaught(error), context: context)
        } else {
            binding.channelClosed()
            close(reason: "connection error: \(error)", context: context)
        }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        binding.channelClosed()
        tearDown()
        context.fireChannelInactive()
    }

    private func tearDown() {
        partialPDUCheck?.cancel()
        partialPDUCheck = nil
        session?.end()
    }

    private func close(reason: String, context: ChannelHandlerContext) {
        flush(context: context)
        session?.close(reason: reason)
        tearDown()
        context.close(promise: nil)
    }

    private func flush(context: ChannelHandlerContext) {
        guard unflushed else { return }
        unflushed = false
        context.flush()
    }

    private func run(_ actions: [NVMeTCPControllerBinding.Action], context: ChannelHandlerContext) {
        // Every PDU of one event goes into one buffer: one allocation and one write per answer.
        var pending: ByteBuffer? = nil
        func write() {
            if let buffer = pending {
                context.write(Self.wrapOutboundOut(buffer), promise: nil)
                unflushed = true
                pending = nil
            }
        }
        for action in actions {
            switch action {
            case .send(let pdu):
                if pending == nil {
                    pending = context.channel.allocator.buffer(capacity: Self.capacity(for: actions))
                }
                pending!.writeNVMeTCPPDU(pdu, digests: binding.digests, dataAlignment: binding.hostDataAlignment)
            case .close(let reason):
                write()
                close(reason: reason, context: context)
            case .session(let action):
                session?.perform(action)
            }
        }
        write()
        // Answers to reads are flushed once the read burst ends (channelReadComplete).
        if !reading { flush(context: context) }
    }

    private func sessionEvent(_ event: ControllerSessionEvent) {
        guard let context else { return }
        switch event {
        case .keepAliveTimerFired:
            let actions = binding.keepAliveTimerFired(now: context.eventLoop.now)
            if actions.contains(where: { if case .close = $0 { return true } else { return false } }) {
                gate?.timedOut()
            }
            run(actions, context: context)
        case .discoveryLogChanged:
            run(binding.discoveryLogChanged(), context: context)
        case .managementRequestCompleted(let response):
            run(binding.managementRequestCompleted(response), context: context)
        case .discoveryInformationCompleted(let status):
            run(binding.discoveryInformationCompleted(status), context: context)
        }
    }

    /// Room for every PDU `actions` sends: headers, digests, the largest padding and the data.
    private static func capacity(for actions: [NVMeTCPControllerBinding.Action]) -> Int {
        var total = 0
        for case .send(let pdu) in actions {
            switch pdu {
            case .controllerToHostData(let data): total += 24 + 8 + 128 + data.data.readableBytes
            case .initializeConnectionResponse: total += 128
            case .controllerToHostTerminationRequest: total += 152
            default: total += 32
            }
        }
        return total
    }
}
