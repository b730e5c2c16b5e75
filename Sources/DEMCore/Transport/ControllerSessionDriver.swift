import Logging
import NIOCore

/// Where a ``ControllerSessionDriver`` runs: a connection's event loop, or the RDMA reactor.
/// Everything the driver does happens on it.
public protocol ControllerSessionLoop: Sendable {
    /// Runs `body` on the loop after `delay`; calling the result cancels it.
    func schedule(in delay: TimeAmount, _ body: @escaping @Sendable () -> Void) -> @Sendable () -> Void
    /// Runs `body` on the loop.
    func execute(_ body: @escaping @Sendable () -> Void)
}

extension EventLoop {
    /// This event loop as the loop of a ``ControllerSessionDriver``.
    public var controllerSessionLoop: any ControllerSessionLoop { EventLoopSessionLoop(eventLoop: self) }
}

private struct EventLoopSessionLoop: ControllerSessionLoop {
    let eventLoop: any EventLoop

    func schedule(in delay: TimeAmount, _ body: @escaping @Sendable () -> Void) -> @Sendable () -> Void {
        let scheduled = eventLoop.scheduleTask(in: delay, body)
        return { scheduled.cancel() }
    }

    func execute(_ body: @escaping @Sendable () -> Void) {
        eventLoop.execute(body)
    }
}

/// What the session gives back to the controller's binding, on the loop.
public enum ControllerSessionEvent: Sendable {
    /// The keep-alive (or setup) timer fired: call the binding's `keepAliveTimerFired(now:)`.
    case keepAliveTimerFired
    /// The host's discovery log page changed: call the binding's `discoveryLogChanged()`.
    case discoveryLogChanged
    /// An in-band request was carried out: call the binding's `managementRequestCompleted(_:)`.
    case managementRequestCompleted(ByteBuffer)
    /// A registration was carried out: call the binding's `discoveryInformationCompleted(_:)`.
    case discoveryInformationCompleted(NVMeStatus)
}

/// Carries out the ``ControllerSessionAction``s of one controller, whatever its transport: the
/// keep-alive timer, the registration for change notices and its callbacks, metrics, in-band
/// requests run in a task, and the connection's log metadata. The NVMe/TCP channel handler and
/// the NVMe/RDMA reactor's queue each own one and pass what comes back (``ControllerSessionEvent``)
/// to their binding. Used on its loop only.
public final class ControllerSessionDriver: @unchecked Sendable {
    private let service: ControllerService
    private let transport: String
    private let remoteAddress: String?
    private let loop: any ControllerSessionLoop
    private let logger: Logger
    private let deliver: (ControllerSessionEvent) -> Void
    private var host: DiscoveryHostContext?
    private var controllerIdentifier: UInt16?
    private var cancelKeepAliveCheck: (@Sendable () -> Void)?
    private var registration: UInt64?
    private var request: Task<Void, Never>?
    private var ended = false

    /// - Parameters:
    ///   - service: the controller's service.
    ///   - transport: `tcp` or `rdma`, for logs.
    ///   - remoteAddress: the host's address, for logs.
    ///   - loop: the loop the connection runs on.
    ///   - logger: where session events go.
    ///   - deliver: passes an event to the binding; called on the loop, never after ``end()``.
    public init(
        service: ControllerService,
        transport: String,
        remoteAddress: String?,
        loop: any ControllerSessionLoop,
        logger: Logger,
        deliver: @escaping (ControllerSessionEvent) -> Void
    ) {
        self.service = service
        self.transport = transport
        self.remoteAddress = remoteAddress
        self.loop = loop
        self.logger = logger
        self.deliver = deliver
    }

    /// Metadata for this connection's log lines (built only when a line is logged).
    public func metadata(_ extra: Logger.Metadata = [:]) -> Logger.Metadata {
        var metadata = extra
        metadata["nvme.transport"] = "\(transport)"
        metadata["nvme.remote"] = "\(remoteAddress ?? "?")"
        if let host {
            metadata["nvme.hostnqn"] = "\(host.hostNQN)"
            metadata["nvme.subnqn"] = "\(host.subsystemNQN)"
        }
        if let controllerIdentifier { metadata["nvme.cntlid"] = "\(controllerIdentifier)" }
        return metadata
    }

    /// Carries out `action`.
    public func perform(_ action: ControllerSessionAction) {
        guard !ended else { return }
        switch action {
        case .scheduleKeepAliveCheck(let delay):
            cancelKeepAliveCheck?()
            cancelKeepAliveCheck = loop.schedule(in: delay) { [self] in
                guard !ended else { return }
                cancelKeepAliveCheck = nil
                deliver(.keepAliveTimerFired)
            }
        case .controllerCreated(let host, let controllerIdentifier):
            self.host = host
            self.controllerIdentifier = controllerIdentifier
            switch service {
            case .discovery(let discovery):
                logger.debug("discovery controller created", metadata: metadata())
                // The registration holds this driver until ``end()`` removes it.
                let loop = loop
                registration = discovery.controllerCreated(host) { [self] in
                    loop.execute { [self] in
                        guard !ended else { return }
                        deliver(.discoveryLogChanged)
                    }
                }
            case .management:
                logger.info("in-band management association", metadata: metadata())
            }
        case .asynchronousEventSent:
            logger.debug("discovery log change notice sent", metadata: metadata())
            if case .discovery(let discovery) = service { discovery.asynchronousEventSent() }
        case .logPageRead(let offset, let length):
            if case .discovery(let discovery) = service { discovery.logPageRead(offset: offset, length: length) }
        case .connectRefused(let reason):
            logger.notice("Connect refused", metadata: metadata(["reason": "\(reason)"]))
        case .hostAuthenticated(let host, let keyIndex):
            logger.debug("host authenticated (DH-HMAC-CHAP)", metadata: metadata(["key": "\(keyIndex)"]))
            service.authentication.hostAuthenticated(host, keyIndex: keyIndex)
        case .authenticationFailed(let host, let reason):
            logger.notice("host failed DH-HMAC-CHAP authentication", metadata: metadata(["reason": "\(reason)"]))
            service.authentication.authenticationFailed(host, reason: reason)
        case .performManagementRequest(let message, let host):
            guard case .management(let management) = service else { return }
            let loop = loop
            request = Task { [self] in
                let response = await management.perform(message, host: host)
                loop.execute { [self] in
                    guard !ended else { return }
                    request = nil
                    deliver(.managementRequestCompleted(response))
                }
            }
        case .performDiscoveryInformation(let request, let host):
            guard case .discovery(let discovery) = service else { return }
            let loop = loop
            self.request = Task { [self] in
                let status = await discovery.discoveryInformation(request, host: host)
                loop.execute { [self] in
                    guard !ended else { return }
                    self.request = nil
                    deliver(.discoveryInformationCompleted(status))
                }
            }
        case .discoveryInformationRefused(let reason):
            logger.notice(
                "Discovery Information Management refused (Invalid Discovery Information)",
                metadata: metadata(["reason": "\(reason)"])
            )
        }
    }

    /// Logs why the connection closes, then ends the session.
    public func close(reason: String) {
        guard !ended else { return }
        logger.debug("closing connection", metadata: metadata(["reason": "\(reason)"]))
        end()
    }

    /// The connection is gone: cancels the timer and a running request, and removes the
    /// registration. Nothing is delivered after this.
    public func end() {
        guard !ended else { return }
        ended = true
        cancelKeepAliveCheck?()
        cancelKeepAliveCheck = nil
        request?.cancel()
        request = nil
        if let registration, case .discovery(let discovery) = service {
            discovery.controllerRemoved(registration)
        }
        registration = nil
    }
}
