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
        let maximumQueueSize = Int(ControllerStateMachine.capabilities & 0xFFFF) + 1
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
            binding: NVMeRDMAControllerBinding(
                configuration: configuration,
                serving: service,
                maximumReadLength: configuration.maximumHostDataLength,
                localAddress: local,
                remoteAddress: remote
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

/// The RDMA reactor as the loop of a ``ControllerSessionDriver``.
private struct ReactorSessionLoop: ControllerSessionLoop {
    let reactor: RDMAReactor

    func schedule(in delay: TimeAmount, _ body: @escaping @Sendable () -> Void) -> @Sendable () -> Void {
        let timer = reactor.schedule(in: delay, body)
        let reactor = reactor
        // Called by the driver, on the reactor thread.
        return { reactor.cancel(timer: timer) }
    }

    func execute(_ body: @escaping @Sendable () -> Void) {
        reactor.execute(body)
    }
}

/// One accepted NVMe/RDMA queue: the queue pair, the ``NVMeRDMAControllerBinding`` and the
/// ``ControllerSessionDriver`` that carries out its session actions; reactor thread only.
final class RDMAControllerConnection: @unchecked Sendable {
    private let reactor: RDMAReactor
    private let queuePair: RDMAQueuePair
    private var binding: NVMeRDMAControllerBinding
    private var session: ControllerSessionDriver!
    private let logger: Logger
    private var gone = false
    private let removed: () -> Void

    init(
        reactor: RDMAReactor,
        queuePair: RDMAQueuePair,
        binding: NVMeRDMAControllerBinding,
        service: ControllerService,
        remoteAddress: String?,
        logger: Logger,
        removed: @escaping () -> Void
    ) {
        self.reactor = reactor
        self.removed = removed
        self.queuePair = queuePair
        self.binding = binding
        self.logger = logger
        self.session = ControllerSessionDriver(
            service: service,
            transport: "rdma",
            remoteAddress: remoteAddress,
            loop: ReactorSessionLoop(reactor: reactor),
            logger: logger
        ) { [unowned self] event in self.sessionEvent(event) }
        queuePair.handlers = RDMAQueuePair.Handlers(
            received: { [unowned self] bytes in self.run(self.binding.capsuleReceived(bytes, now: .now())) },
            failed: { [unowned self] reason in self.disconnect(reason: reason) }
        )
        // The Connect is due within the setup timeout.
        run(self.binding.connectionOpened(now: .now()))
    }

    func established() {
        logger.debug("NVMe/RDMA queue established", metadata: session.metadata())
    }

    /// Disconnects and releases the queue (without waiting for the host's answer).
    func disconnect(reason: String) {
        guard !gone else { return }
        session.close(reason: reason)
        rdma_disconnect(queuePair.id)
        ended("disconnect")
    }

    /// The queue is gone (disconnected or failed): release everything.
    func ended(_ event: String) {
        guard !gone else { return }
        gone = true
        logger.debug("NVMe/RDMA queue ended", metadata: session.metadata(["event": "\(event)"]))
        binding.connectionClosed()
        session.end()
        queuePair.destroy()
        reactor.forget(queuePair.id)
        rdma_destroy_id(queuePair.id)
        removed()
    }

    private func run(_ actions: [NVMeRDMAControllerBinding.Action]) {
        for action in actions {
            guard !gone else { return }
            do {
                switch action {
                case .send(let bytes):
                    try queuePair.send(bytes)
                case .read(let token, let address, let key, let length):
                    try queuePair.read(length: length, address: address, key: key) { [unowned self] data in
                        self.run(self.binding.readCompleted(token, data: data, now: .now()))
                    }
                case .write(let data, let address, let key):
                    try queuePair.write(data, address: address, key: key)
                case .disconnect(let reason):
                    disconnect(reason: reason)
                case .session(let action):
                    session.perform(action)
                }
            } catch {
                disconnect(reason: "\(error)")
            }
        }
    }

    /// Called by the session driver on the reactor thread, never after the queue ended.
    private func sessionEvent(_ event: ControllerSessionEvent) {
        guard !gone else { return }
        switch event {
        case .keepAliveTimerFired: run(binding.keepAliveTimerFired(now: .now()))
        case .discoveryLogChanged: run(binding.discoveryLogChanged())
        case .managementRequestCompleted(let response): run(binding.managementRequestCompleted(response))
        case .discoveryInformationCompleted(let status): run(binding.discoveryInformationCompleted(status))
        }
    }
}
#endif
