#if RDMA
import CRDMA
import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The host side of one NVMe/RDMA admin queue: carries out an ``NVMeRDMAHostStateMachine``
/// (command numbering, capsules, completions) with the verbs. Its resources live on the reactor
/// thread; futures complete on `eventLoop`.
final class RDMAHostConnection: NVMeHostConnection, RDMAConnectionManagerClient, @unchecked Sendable {
    /// What is kept per command until it completes.
    private struct Command {
        var promise: EventLoopPromise<NVMeCommandResult>
        var buffer: RDMABuffer?
    }

    let eventLoop: any EventLoop
    private let closed: EventLoopPromise<Void>
    private let active = Atomic<Bool>(false)
    private let reactor: RDMAReactor
    private let queueSize: Int
    private let target: String

    // Reactor thread only.
    private var id: UnsafeMutablePointer<rdma_cm_id>?
    private var queuePair: RDMAQueuePair?
    private var connecting: CheckedContinuation<Void, any Error>?
    private var connectTimer: UInt64?
    private var machine: NVMeRDMAHostStateMachine<Command>
    private var ended = false

    private init(reactor: RDMAReactor, eventLoop: any EventLoop, queueSize: Int, target: String) {
        self.reactor = reactor
        self.eventLoop = eventLoop
        self.closed = eventLoop.makePromise()
        self.queueSize = queueSize
        self.target = target
        self.machine = NVMeRDMAHostStateMachine(queueSize: queueSize)
    }

    static func connect(
        host: String,
        port: Int,
        queueSize: Int,
        eventLoop: any EventLoop,
        timeout: TimeAmount
    ) async throws -> RDMAHostConnection {
        let reactor = try RDMAReactor.shared()
        let address = try SocketAddress(ipAddress: host, port: port)
        let connection = RDMAHostConnection(
            reactor: reactor,
            eventLoop: eventLoop,
            queueSize: max(2, min(queueSize, 1024)),
            target: "\(host):\(port)"
        )
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            reactor.execute { connection.start(address, timeout: timeout, continuation) }
        }
        return connection
    }

    var isActive: Bool { active.load(ordering: .relaxed) }
    var closeFuture: EventLoopFuture<Void> { closed.futureResult }

    func submitFuture(
        _ command: SubmissionQueueEntry,
        data: ByteBuffer?,
        expectedDataLength: Int
    ) -> EventLoopFuture<NVMeCommandResult> {
        let promise = eventLoop.makePromise(of: NVMeCommandResult.self)
        reactor.execute { self.send(command, data: data, expectedDataLength: expectedDataLength, promise) }
        return promise.futureResult
    }

    func abort() {
        reactor.execute { self.end(NVMeHostError.connectionClosed, disconnect: true) }
    }

    func close() async {
        abort()
        try? await closed.futureResult.get()
    }

    // MARK: - Reactor thread

    private func start(
        _ address: SocketAddress,
        timeout: TimeAmount,
        _ continuation: CheckedContinuation<Void, any Error>
    ) {
        connecting = continuation
        var created: UnsafeMutablePointer<rdma_cm_id>?
        guard rdma_create_id(reactor.eventChannel, &created, nil, RDMA_PS_TCP) == 0, let id = created else {
            return end(NVMeHostError.connectionFailed("rdma_create_id: \(String(cString: strerror(errno)))"))
        }
        self.id = id
        reactor.register(id, self)
        connectTimer = reactor.schedule(in: timeout) { [self] in
            connectTimer = nil
            end(NVMeHostError.timedOut("NVMe/RDMA connection to \(target)"), disconnect: true)
        }
        let milliseconds = Int32(clamping: timeout.nanoseconds / 1_000_000)
        let resolved = address.withSockAddr { pointer, _ in
            rdma_resolve_addr(id, nil, UnsafeMutablePointer(mutating: pointer), milliseconds)
        }
        if resolved != 0 {
            end(NVMeHostError.connectionFailed("rdma_resolve_addr \(target): \(String(cString: strerror(errno)))"))
        }
    }

    func connectionManagerEvent(_ event: RDMAReactor.Event) {
        guard let id, event.id == id, !ended else { return }
        switch event.type {
        case RDMA_CM_EVENT_ADDR_RESOLVED:
            if rdma_resolve_route(id, 5000) != 0 {
                end(NVMeHostError.connectionFailed("rdma_resolve_route: \(String(cString: strerror(errno)))"))
            }
        case RDMA_CM_EVENT_ROUTE_RESOLVED:
            routeResolved(id)
        case RDMA_CM_EVENT_ESTABLISHED:
            if let connectTimer { reactor.cancel(timer: connectTimer) }
            connectTimer = nil
            machine.established()
            active.store(true, ordering: .relaxed)
            connecting?.resume()
            connecting = nil
        case RDMA_CM_EVENT_REJECTED:
            let reason = NVMeRDMA.ConnectReject(event.privateData).map { "\($0)" } ?? "status \(event.status)"
            end(NVMeHostError.connectionFailed("\(target) refused the NVMe/RDMA queue: \(reason)"))
        case RDMA_CM_EVENT_ADDR_ERROR, RDMA_CM_EVENT_ROUTE_ERROR, RDMA_CM_EVENT_UNREACHABLE,
            RDMA_CM_EVENT_CONNECT_ERROR:
            end(NVMeHostError.connectionFailed("\(target): \(event.name) (status \(event.status))"))
        case RDMA_CM_EVENT_DISCONNECTED, RDMA_CM_EVENT_DEVICE_REMOVAL:
            end(NVMeHostError.connectionClosed)
        default:
            break
        }
    }

    private func routeResolved(_ id: UnsafeMutablePointer<rdma_cm_id>) {
        let queuePair: RDMAQueuePair
        let device: RDMAReactor.Device
        do {
            guard let context = id.pointee.verbs else { throw RDMAError.failed("the route has no device") }
            device = try reactor.device(context)
            queuePair = try RDMAQueuePair(
                id: id,
                reactor: reactor,
                receiveCount: queueSize,
                receiveSize: CompletionQueueEntry.size,
                sendDepth: queueSize
            )
        } catch {
            return end(NVMeHostError.connectionFailed("\(error)"))
        }
        self.queuePair = queuePair
        queuePair.handlers = RDMAQueuePair.Handlers(
            received: { [unowned self] bytes in self.completionReceived(bytes) },
            failed: { [unowned self] reason in
                self.end(
                    NVMeHostError.connectionFailed("NVMe/RDMA queue to \(self.target): \(reason)"),
                    disconnect: true
                )
            }
        )
        let request = NVMeRDMA.ConnectRequest(
            hostReceiveQueueSize: UInt16(queueSize),
            hostSendQueueSize: UInt16(queueSize - 1)
        )
        // The controller reads command data from this side: answer its RDMA READs, issue none.
        let connected = request.bytes.withUnsafeBytes { bytes in
            var parameters = crdma_conn_param(bytes.baseAddress, UInt8(bytes.count), device.readDepth, 0)
            return rdma_connect(id, &parameters)
        }
        if connected != 0 {
            end(NVMeHostError.connectionFailed("rdma_connect: \(String(cString: strerror(errno)))"))
        }
    }

    private func send(
        _ command: SubmissionQueueEntry,
        data: ByteBuffer?,
        expectedDataLength: Int,
        _ promise: EventLoopPromise<NVMeCommandResult>
    ) {
        guard !ended, machine.isReady, let queuePair else { return promise.fail(NVMeHostError.connectionClosed) }
        var buffer: RDMABuffer?
        do {
            if let data, data.readableBytes > 0 {
                let block = try queuePair.buffer(
                    count: data.readableBytes,
                    access: ibv_access_flags(IBV_ACCESS_LOCAL_WRITE.rawValue | IBV_ACCESS_REMOTE_READ.rawValue)
                )
                block.copy(data)
                buffer = block
            } else if expectedDataLength > 0 {
                buffer = try queuePair.buffer(
                    count: expectedDataLength,
                    access: ibv_access_flags(IBV_ACCESS_LOCAL_WRITE.rawValue | IBV_ACCESS_REMOTE_WRITE.rawValue)
                )
            }
        } catch {
            return promise.fail(NVMeHostError.connectionFailed("\(error)"))
        }
        run(
            machine.submit(
                command,
                dataBlock: buffer.map { .keyed(address: $0.address, length: UInt32($0.count), key: $0.remoteKey) },
                readLength: data == nil ? expectedDataLength : 0,
                context: Command(promise: promise, buffer: buffer)
            )
        )
    }

    private func completionReceived(_ bytes: ByteBuffer) {
        run(machine.responseReceived(bytes))
    }

    /// Carries out the machine's actions.
    private func run(_ actions: [NVMeRDMAHostStateMachine<Command>.Action]) {
        for action in actions {
            switch action {
            case .send(let capsule, let identifier):
                do {
                    try queuePair?.send(capsule)
                } catch {
                    run(machine.sendFailed(identifier, NVMeHostError.connectionFailed("\(error)")))
                }
            case .commandCompleted(let completion, let command, let readLength):
                var data: ByteBuffer?
                if let buffer = command.buffer {
                    if readLength > 0 { data = buffer.read(length: readLength) }
                    buffer.release()
                }
                command.promise.succeed(NVMeCommandResult(completion: completion, data: data))
            case .commandFailed(let error, let command):
                command.buffer?.release()
                command.promise.fail(error)
            case .close(let error, let outstanding, let disconnect):
                finish(error, disconnect: disconnect, outstanding: outstanding)
            }
        }
    }

    private func end(_ error: any Error, disconnect: Bool = false) {
        let hostError = error as? NVMeHostError ?? .connectionFailed("\(error)")
        run(machine.failed(hostError, disconnect: disconnect))
    }

    private func finish(_ error: NVMeHostError, disconnect: Bool, outstanding: [Command]) {
        guard !ended else { return }
        ended = true
        active.store(false, ordering: .relaxed)
        if let connectTimer { reactor.cancel(timer: connectTimer) }
        connectTimer = nil
        connecting?.resume(throwing: error)
        connecting = nil
        if let id, disconnect { rdma_disconnect(id) }
        queuePair?.destroy()
        queuePair = nil
        for command in outstanding {
            command.buffer?.release()
            command.promise.fail(error)
        }
        if let id {
            reactor.forget(id)
            rdma_destroy_id(id)
        }
        id = nil
        closed.succeed()
    }
}
#endif
