#if RDMA
import CRDMA
import Logging
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// The listening RDMA CM id and the queues it accepted; reactor thread only.
final class RDMAControllerListener: RDMAConnectionManagerClient, @unchecked Sendable {
    private let reactor: RDMAReactor
    private let id: UnsafeMutablePointer<rdma_cm_id>
    private let configuration: DiscoveryControllerConfiguration
    private let service: ControllerService
    private let logger: Logger
    private var connections: [UnsafeMutablePointer<rdma_cm_id>: RDMAControllerConnection] = [:]
    private var closed = false

    private init(
        reactor: RDMAReactor,
        id: UnsafeMutablePointer<rdma_cm_id>,
        configuration: DiscoveryControllerConfiguration,
        service: ControllerService,
        logger: Logger
    ) {
        self.reactor = reactor
        self.id = id
        // One RDMA WRITE carries all of a command's data.
        var configuration = configuration
        configuration.maximumC2HDataLength = configuration.maximumTransferLength
        configuration.keyedSGLs = true
        self.configuration = configuration
        self.service = service
        self.logger = logger
    }

    static func bind(
        host: String,
        port: Int,
        configuration: DiscoveryControllerConfiguration,
        service: ControllerService,
        logger: Logger
    ) async throws -> NVMeRDMAListener {
        let reactor = try RDMAReactor.shared()
        let address = try SocketAddress(ipAddress: host, port: port)
        let listener = try await reactor.submit { () throws -> RDMAControllerListener in
            var created: UnsafeMutablePointer<rdma_cm_id>?
            guard rdma_create_id(reactor.eventChannel, &created, nil, RDMA_PS_TCP) == 0, let id = created else {
                throw RDMAError.call("rdma_create_id", errno)
            }
            let bound = address.withSockAddr { pointer, _ in
                rdma_bind_addr(id, UnsafeMutablePointer(mutating: pointer))
            }
            guard bound == 0 else {
                let code = errno
                rdma_destroy_id(id)
                throw RDMAError.failed(
                    "no RDMA device serves \(host):\(port) (rdma_bind_addr: \(String(cString: strerror(code))))"
                )
            }
            guard rdma_listen(id, 128) == 0 else {
                let code = errno
                rdma_destroy_id(id)
                throw RDMAError.call("rdma_listen", code)
            }
            let listener = RDMAControllerListener(
                reactor: reactor,
                id: id,
                configuration: configuration,
                service: service,
                logger: logger
            )
            reactor.register(id, listener)
            return listener
        }
        let boundPort = try await reactor.submit { Int(UInt16(bigEndian: rdma_get_src_port(listener.id))) }
        return NVMeRDMAListener(address: host, port: boundPort) {
            _ = try? await reactor.submit { listener.close() }
        }
    }

    private func close() {
        guard !closed else { return }
        closed = true
        reactor.forget(id)
        rdma_destroy_id(id)
        for connection in connections.values { connection.disconnect(reason: "the listener closed") }
    }

    func connectionManagerEvent(_ event: RDMAReactor.Event) {
        if event.type == RDMA_CM_EVENT_CONNECT_REQUEST {
            accept(event)
            return
        }
        if event.id == id {
            if event.type == RDMA_CM_EVENT_DEVICE_REMOVAL {
                logger.error("the RDMA device of the listener was removed")
                close()
            }
            return
        }
        guard let connection = connections[event.id] else { return }
        switch event.type {
        case RDMA_CM_EVENT_ESTABLISHED:
            connection.established()
        case RDMA_CM_EVENT_DISCONNECTED, RDMA_CM_EVENT_CONNECT_ERROR, RDMA_CM_EVENT_UNREACHABLE,
            RDMA_CM_EVENT_REJECTED, RDMA_CM_EVENT_DEVICE_REMOVAL:
            connection.ended(event.name)
        default:
            break
        }
    }

    private func accept(_ event: RDMAReactor.Event) {
        let id = event.id
        let remote = rdmaAddressText(rdma_get_peer_addr(id)).map { "\($0.address):\($0.port)" }
        func reject(_ reason: NVMeRDMA.ConnectReject) {
            logger.warning(
                "refused an NVMe/RDMA queue",
                metadata: ["nvme.remote": "\(remote ?? "?")", "reason": "\(reason)"]
            )
            _ = reason.bytes.withUnsafeBytes { bytes in rdma_reject(id, bytes.baseAddress, UInt8(bytes.count)) }
            rdma_destroy_id(id)
        }
        guard !closed else { return reject(NVMeRDMA.ConnectReject(status: NVMeRDMA.ConnectReject.noResources)) }
        let maximumQueueSize = Int(DiscoveryControllerStateMachine.capabilities & 0xFFFF) + 1
        let answer: (request: NVMeRDMA.ConnectRequest, accept: NVMeRDMA.ConnectAccept)
        switch NVMeRDMA.answer(connectRequest: event.privateData, maximumQueueSize: maximumQueueSize) {
        case .failure(let reason): return reject(reason)
        case .success(let accepted): answer = accepted
        }
        let receiveCount = Int(answer.accept.controllerReceiveQueueSize)
        let queuePair: RDMAQueuePair
        let device: RDMAReactor.Device
        do {
            guard let context = id.pointee.verbs else { throw RDMAError.failed("the connection request has no device") }
            device = try reactor.device(context)
            queuePair = try RDMAQueuePair(
                id: id,
                reactor: reactor,
                receiveCount: receiveCount,
                receiveSize: SubmissionQueueEntry.size,
                // Per command at most an RDMA READ, an RDMA WRITE and the response's SEND.
                sendDepth: 3 * max(receiveCount, Int(answer.request.hostReceiveQueueSize))
            )
        } catch {
            logger.error("cannot make an NVMe/RDMA queue", metadata: ["error": "\(error)"])
            return reject(NVMeRDMA.ConnectReject(status: NVMeRDMA.ConnectReject.noResources))
        }
        let local = rdmaAddressText(rdma_get_local_addr(id))?.address
        let connection = RDMAControllerConnection(
            reactor: reactor,
            queuePair: queuePair,
            queue: NVMeRDMAControllerQueue(
                machine: DiscoveryControllerStateMachine(
                    configuration: configuration,
                    serving: service,
                    localAddress: local,
                    remoteAddress: remote
                ),
                maximumReadLength: configuration.maximumInCapsuleDataLength
            ),
            service: service,
            remoteAddress: remote,
            logger: logger
        ) { [unowned self] in self.connections.removeValue(forKey: id) }
        // This side issues the RDMA READs (of host data) and answers none.
        let accepted = answer.accept.bytes.withUnsafeBytes { bytes in
            var parameters = crdma_conn_param(
                bytes.baseAddress,
                UInt8(bytes.count),
                0,
                min(device.readDepth, max(1, event.peerResponderResources))
            )
            return rdma_accept(id, &parameters)
        }
        guard accepted == 0 else {
            let code = errno
            logger.error("rdma_accept failed", metadata: ["error": "\(String(cString: strerror(code)))"])
            queuePair.destroy()
            rdma_destroy_id(id)
            return
        }
        connections[id] = connection
        reactor.register(id, self)
    }
}

/// One accepted NVMe/RDMA queue: the queue pair, the ``NVMeRDMAControllerQueue`` and what the
/// controller's actions ask of services and timers; reactor thread only.
final class RDMAControllerConnection: @unchecked Sendable {
    private let reactor: RDMAReactor
    private let queuePair: RDMAQueuePair
    private var queue: NVMeRDMAControllerQueue
    private let service: ControllerService
    private let remoteAddress: String?
    private let logger: Logger
    private var keepAliveCheck: UInt64?
    private var registration: UInt64?
    private var request: Task<Void, Never>?
    private var host: DiscoveryHostContext?
    private var gone = false
    private let removed: () -> Void

    init(
        reactor: RDMAReactor,
        queuePair: RDMAQueuePair,
        queue: NVMeRDMAControllerQueue,
        service: ControllerService,
        remoteAddress: String?,
        logger: Logger,
        removed: @escaping () -> Void
    ) {
        self.reactor = reactor
        self.removed = removed
        self.queuePair = queuePair
        self.queue = queue
        self.service = service
        self.remoteAddress = remoteAddress
        self.logger = logger
        queuePair.handlers = RDMAQueuePair.Handlers(
            received: { [unowned self] bytes in self.run(self.queue.capsuleReceived(bytes, now: .now())) },
            failed: { [unowned self] reason in self.disconnect(reason: reason) }
        )
    }

    private func metadata(_ extra: Logger.Metadata = [:]) -> Logger.Metadata {
        var metadata = extra
        metadata["nvme.transport"] = "rdma"
        metadata["nvme.remote"] = "\(remoteAddress ?? "?")"
        if let host {
            metadata["nvme.hostnqn"] = "\(host.hostNQN)"
            metadata["nvme.subnqn"] = "\(host.subsystemNQN)"
        }
        return metadata
    }

    func established() {
        logger.debug("NVMe/RDMA queue established", metadata: metadata())
    }

    /// Disconnects and releases the queue (without waiting for the host's answer).
    func disconnect(reason: String) {
        guard !gone else { return }
        logger.debug("closing NVMe/RDMA queue", metadata: metadata(["reason": "\(reason)"]))
        rdma_disconnect(queuePair.id)
        ended("disconnect")
    }

    /// The queue is gone (disconnected or failed): release everything.
    func ended(_ event: String) {
        guard !gone else { return }
        gone = true
        logger.debug("NVMe/RDMA queue ended", metadata: metadata(["event": "\(event)"]))
        queue.connectionClosed()
        tearDown()
        queuePair.destroy()
        reactor.forget(queuePair.id)
        rdma_destroy_id(queuePair.id)
        removed()
    }

    private func tearDown() {
        if let keepAliveCheck { reactor.cancel(timer: keepAliveCheck) }
        keepAliveCheck = nil
        request?.cancel()
        request = nil
        if let registration, case .discovery(let discovery) = service {
            discovery.controllerRemoved(registration)
        }
        registration = nil
    }

    private func run(_ actions: [NVMeRDMAControllerQueue.Action]) {
        for action in actions {
            guard !gone else { return }
            do {
                switch action {
                case .send(let bytes):
                    try queuePair.send(bytes)
                case .read(let token, let address, let key, let length):
                    try queuePair.read(length: length, address: address, key: key) { [unowned self] data in
                        self.run(self.queue.readCompleted(token, data: data, now: .now()))
                    }
                case .write(let data, let address, let key):
                    try queuePair.write(data, address: address, key: key)
                case .disconnect(let reason):
                    disconnect(reason: reason)
                case .controller(let action):
                    controllerAction(action)
                }
            } catch {
                disconnect(reason: "\(error)")
            }
        }
    }

    private func controllerAction(_ action: DiscoveryControllerStateMachine.Action) {
        switch action {
        case .scheduleKeepAliveCheck(let delay):
            if let keepAliveCheck { reactor.cancel(timer: keepAliveCheck) }
            keepAliveCheck = reactor.schedule(in: delay) { [unowned self] in
                self.keepAliveCheck = nil
                self.run(self.queue.keepAliveTimerFired(now: .now()))
            }
        case .controllerCreated(let host, _):
            self.host = host
            switch service {
            case .discovery(let discovery):
                logger.debug("discovery controller created", metadata: metadata())
                // The registration holds the connection until tearDown removes it.
                let reactor = reactor
                registration = discovery.controllerCreated(host) { [self] in
                    reactor.execute { self.discoveryLogChanged() }
                }
            case .management:
                logger.info("in-band management association", metadata: metadata())
            }
        case .asynchronousEventSent:
            logger.debug("discovery log change notice sent", metadata: metadata())
            if case .discovery(let discovery) = service { discovery.asynchronousEventSent() }
        case .logPageRead(let offset, let length):
            if case .discovery(let discovery) = service { discovery.logPageRead(offset: offset, length: length) }
        case .performManagementRequest(let message, let host):
            guard case .management(let management) = service else { return }
            let reactor = reactor
            request = Task { [self] in
                let response = await management.perform(message, host: host)
                reactor.execute { self.managementRequestCompleted(response) }
            }
        case .send, .close:
            break
        }
    }

    private func discoveryLogChanged() {
        guard !gone else { return }
        run(queue.discoveryLogChanged())
    }

    private func managementRequestCompleted(_ response: ByteBuffer) {
        guard !gone else { return }
        request = nil
        run(queue.managementRequestCompleted(response))
    }
}
#endif
