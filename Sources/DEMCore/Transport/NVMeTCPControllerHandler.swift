import Logging
import NIOCore

/// Carries out a ``DiscoveryControllerStateMachine`` on one NVMe/TCP connection: frames come in
/// from ``NVMeTCPFrameDecoder``, PDUs go out as bytes, keep-alive checks run on the event loop and
/// change notices from the ``DiscoveryControllerService`` reach the machine on the event loop. For
/// the in-band management controller, requests run in a task and their responses come back to the
/// machine on the event loop.
public final class NVMeTCPControllerHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private var machine: DiscoveryControllerStateMachine
    private let service: (any DiscoveryControllerService)?
    private let management: (any ManagementControllerService)?
    private var request: Task<Void, Never>?
    private let logger: Logger
    private let remoteAddress: String?
    private var host: DiscoveryHostContext?
    private var controllerIdentifier: UInt16?
    private var keepAliveCheck: Scheduled<Void>?
    /// While a PDU is partly received: the check that it ends within the setup timeout.
    private var partialPDUCheck: Scheduled<Void>?
    private let setupTimeout: TimeAmount
    private let gate: ConnectionGate?
    private var registration: UInt64?
    private var context: ChannelHandlerContext?

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
        self.machine = DiscoveryControllerStateMachine(
            configuration: configuration,
            serving: service,
            localAddress: localAddress,
            remoteAddress: remoteAddress
        )
        switch service {
        case .discovery(let discovery):
            self.service = discovery
            self.management = nil
        case .management(let management):
            self.service = nil
            self.management = management
        }
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

    /// Metadata for this connection's log lines (built only when a line is logged).
    private func metadata(_ extra: Logger.Metadata = [:]) -> Logger.Metadata {
        var metadata = extra
        metadata["nvme.remote"] = "\(remoteAddress ?? "?")"
        if let host {
            metadata["nvme.hostnqn"] = "\(host.hostNQN)"
            metadata["nvme.subnqn"] = "\(host.subsystemNQN)"
        }
        if let controllerIdentifier { metadata["nvme.cntlid"] = "\(controllerIdentifier)" }
        return metadata
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { run(machine.connectionOpened(now: context.eventLoop.now), context: context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        run(machine.connectionOpened(now: context.eventLoop.now), context: context)
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
        logger.debug(
            "closing connection",
            metadata: metadata(["reason": "a PDU begun was not ended within \(setupTimeout)"])
        )
        gate?.timedOut()
        machine.channelClosed()
        tearDown()
        context.close(promise: nil)
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        tearDown()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = Self.unwrapInboundIn(data)
        let actions: [DiscoveryControllerStateMachine.Action]
        do {
            let pdu = try NVMeTCPPDU.decode(frame: frame, digests: machine.digests)
            actions = machine.pduReceived(pdu, now: context.eventLoop.now)
        } catch {
            actions = machine.transportErrorCaught(error)
        }
        run(actions, context: context)
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? NVMeTCPTransportError {
            run(machine.transportErrorCaught(error), context: context)
        } else {
            logger.debug("connection error", metadata: metadata(["error": "\(error)"]))
            machine.channelClosed()
            context.close(promise: nil)
        }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        machine.channelClosed()
        tearDown()
        context.fireChannelInactive()
    }

    private func tearDown() {
        keepAliveCheck?.cancel()
        keepAliveCheck = nil
        partialPDUCheck?.cancel()
        partialPDUCheck = nil
        request?.cancel()
        request = nil
        if let registration {
            service?.controllerRemoved(registration)
            self.registration = nil
        }
    }

    private func run(_ actions: [DiscoveryControllerStateMachine.Action], context: ChannelHandlerContext) {
        // Every PDU of one event goes into one buffer: one allocation and one write per answer.
        var pending: ByteBuffer? = nil
        func flush() {
            if let buffer = pending {
                context.writeAndFlush(Self.wrapOutboundOut(buffer), promise: nil)
                pending = nil
            }
        }
        for action in actions {
            switch action {
            case .send(let pdu):
                if pending == nil {
                    pending = context.channel.allocator.buffer(capacity: Self.capacity(for: actions))
                }
                pending!.writeNVMeTCPPDU(pdu, digests: machine.digests, dataAlignment: machine.hostDataAlignment)
            case .close(let reason):
                flush()
                logger.debug("closing connection", metadata: metadata(["reason": "\(reason)"]))
                tearDown()
                context.close(promise: nil)
            case .scheduleKeepAliveCheck(let delay):
                keepAliveCheck?.cancel()
                let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
                keepAliveCheck = context.eventLoop.scheduleTask(in: delay) {
                    loopBound.value.keepAliveTimerFired()
                }
            case .controllerCreated(let host, let controllerIdentifier):
                self.host = host
                self.controllerIdentifier = controllerIdentifier
                guard let service else {
                    logger.info("in-band management association", metadata: metadata())
                    continue
                }
                logger.debug("discovery controller created", metadata: metadata())
                let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
                let eventLoop = context.eventLoop
                registration = service.controllerCreated(host) {
                    eventLoop.execute { loopBound.value.discoveryLogChanged() }
                }
            case .asynchronousEventSent:
                logger.debug("discovery log change notice sent", metadata: metadata())
                service?.asynchronousEventSent()
            case .logPageRead(let offset, let length):
                service?.logPageRead(offset: offset, length: length)
            case .performManagementRequest(let message, let host):
                guard let management else { continue }
                let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
                let eventLoop = context.eventLoop
                request = Task {
                    let response = await management.perform(message, host: host)
                    eventLoop.execute { loopBound.value.managementRequestCompleted(response) }
                }
            }
        }
        flush()
    }

    private func keepAliveTimerFired() {
        guard let context else { return }
        keepAliveCheck = nil
        let actions = machine.keepAliveTimerFired(now: context.eventLoop.now)
        if actions.contains(where: { if case .close = $0 { return true } else { return false } }) { gate?.timedOut() }
        run(actions, context: context)
    }

    private func managementRequestCompleted(_ response: ByteBuffer) {
        guard let context else { return }
        request = nil
        run(machine.managementRequestCompleted(response), context: context)
    }

    private func discoveryLogChanged() {
        guard let context else { return }
        run(machine.discoveryLogChanged(), context: context)
    }

    /// Room for every PDU `actions` sends: headers, digests, the largest padding and the data.
    private static func capacity(for actions: [DiscoveryControllerStateMachine.Action]) -> Int {
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
