import NIOCore

/// One NVMe/RDMA controller queue as a pure state machine: the NVMe/RDMA binding in front of the
/// transport-neutral ``ControllerStateMachine``. Received SEND messages, RDMA READ completions and
/// timer events in, ``Action``s (SENDs, RDMA READs and WRITEs, a disconnect, the controller's
/// session actions) out; the caller owns the queue pair (``NVMeRDMAListener``).
///
/// The binding (NVMe/RDMA 1.1 §3):
/// - The RDMA CM exchange opens the queue (``NVMeRDMA/answer(connectRequest:maximumQueueSize:)``);
///   there is no ICReq, and the Connect is due within the setup timeout.
/// - A command capsule is one SEND: the SQE and any in-capsule data.
/// - Data the host sends through a Keyed SGL Data Block is fetched with an RDMA READ first; the
///   controller then sees the command with that data in the capsule.
/// - Data for the host is placed with one RDMA WRITE at the command's keyed block; the controller
///   sees that block as a transport data block of its length. A command with data for the host
///   and no keyed block (a host that sent another descriptor) is refused with SGL Descriptor Type
///   Invalid before the controller sees it.
/// - A response capsule is one SEND of the CQE, posted after the WRITE on the same queue pair,
///   so the data has landed when the host sees the completion.
public struct NVMeRDMAControllerBinding {
    /// What the caller must do, in order.
    public enum Action: Sendable, Hashable {
        /// SEND these bytes (a 16-byte CQE).
        case send(ByteBuffer)
        /// RDMA READ `length` bytes from the host's `address` under `key`, then pass them to
        /// ``readCompleted(_:data:now:)`` with `token`.
        case read(token: UInt64, address: UInt64, key: UInt32, length: Int)
        /// RDMA WRITE `data` to the host's `address` under `key`.
        case write(ByteBuffer, address: UInt64, key: UInt32)
        /// Disconnect the queue.
        case disconnect(reason: String)
        /// Carry out a session action of the controller (``ControllerSessionDriver``).
        case session(ControllerSessionAction)
    }

    private struct Block {
        var address: UInt64
        var key: UInt32
        var length: UInt32
    }

    /// The controller.
    public private(set) var machine: ControllerStateMachine
    private let maximumReadLength: Int
    /// Keyed blocks of commands whose data goes to the host, by CID.
    private var writeBlocks: [UInt16: Block] = [:]
    /// Commands waiting for their RDMA READ, by token.
    private var reads: [UInt64: SubmissionQueueEntry] = [:]
    private var nextToken: UInt64 = 1

    /// - Parameters:
    ///   - configuration: the controller's fixed parameters (keyed SGLs are announced).
    ///   - service: the discovery controller's log pages and controller IDs, or the management
    ///     controller's requests.
    ///   - maximumReadLength: the most host data one command may bring (the in-capsule limit of
    ///     the NVMe/TCP controller).
    ///   - localAddress: the local IP address of the queue (fills wildcard listener entries).
    ///   - remoteAddress: the host's address, for logs.
    public init(
        configuration: DiscoveryControllerConfiguration,
        serving service: ControllerService,
        maximumReadLength: Int,
        localAddress: String? = nil,
        remoteAddress: String? = nil
    ) {
        var configuration = configuration
        configuration.keyedSGLs = true
        self.machine = ControllerStateMachine(
            configuration: configuration,
            serving: service,
            transportSetupStep: nil,
            localAddress: localAddress,
            remoteAddress: remoteAddress
        )
        self.maximumReadLength = maximumReadLength
    }

    /// Commands waiting for an RDMA READ.
    public var pendingReads: Int { reads.count }

    /// The queue was accepted at `now`: the host's Connect is due within the setup timeout.
    public mutating func connectionOpened(now: NIODeadline) -> [Action] {
        translate(machine.connectionOpened(now: now))
    }

    /// A SEND arrived: a command capsule.
    public mutating func capsuleReceived(_ capsule: ByteBuffer, now: NIODeadline) -> [Action] {
        guard !machine.isClosed else { return [] }
        guard let command = capsule.getSubmissionQueueEntry(at: capsule.readerIndex) else {
            machine.channelClosed()
            return [.disconnect(reason: "a capsule of \(capsule.readableBytes) bytes is shorter than an SQE")]
        }
        let pointer = command.dataPointer
        if pointer.isKeyed {
            let length = pointer.keyedLength
            switch NVMeRDMA.dataDirection(of: command) {
            case .hostToController where length > 0:
                guard Int(length) <= maximumReadLength else {
                    return [send(command, status: .dataSGLLengthInvalid.withDoNotRetry)]
                }
                let token = nextToken
                nextToken &+= 1
                reads[token] = command
                return [.read(token: token, address: pointer.address, key: pointer.key, length: Int(length))]
            case .controllerToHost:
                writeBlocks[command.commandIdentifier] = Block(
                    address: pointer.address,
                    key: pointer.key,
                    length: length
                )
                var presented = command
                presented.dataPointer = .transport(length: length)
                return deliver(CapsuleCommand(command: presented), now: now)
            default:
                return deliver(CapsuleCommand(command: command), now: now)
            }
        }
        if pointer.isTransportDataBlock {
            // NVMe/RDMA moves the host's data through keyed blocks or in the capsule only.
            return [send(command, status: .sglDescriptorTypeInvalid.withDoNotRetry)]
        }
        if pointer.isInCapsule {
            // In-capsule data follows the SQE in the same SEND, at the descriptor's offset.
            let start = capsule.readerIndex + SubmissionQueueEntry.size + Int(clamping: pointer.address)
            let available = capsule.readerIndex + capsule.readableBytes - start
            let data = capsule.getSlice(at: start, length: max(0, min(Int(pointer.length), available)))
            return deliver(CapsuleCommand(command: command, data: data), now: now)
        }
        return deliver(CapsuleCommand(command: command), now: now)
    }

    /// The RDMA READ of `token` completed: the command goes to the controller with the data.
    public mutating func readCompleted(_ token: UInt64, data: ByteBuffer, now: NIODeadline) -> [Action] {
        guard var command = reads.removeValue(forKey: token), !machine.isClosed else { return [] }
        command.dataPointer = .inCapsule(length: UInt32(data.readableBytes))
        return deliver(CapsuleCommand(command: command, data: data), now: now)
    }

    /// A work request failed or the host disconnected.
    public mutating func connectionClosed() {
        machine.channelClosed()
        reads.removeAll()
        writeBlocks.removeAll()
    }

    /// See ``ControllerStateMachine/keepAliveTimerFired(now:)``.
    public mutating func keepAliveTimerFired(now: NIODeadline) -> [Action] {
        translate(machine.keepAliveTimerFired(now: now))
    }

    /// See ``ControllerStateMachine/discoveryLogChanged()``.
    public mutating func discoveryLogChanged() -> [Action] {
        translate(machine.discoveryLogChanged())
    }

    /// See ``ControllerStateMachine/managementRequestCompleted(_:)``.
    public mutating func managementRequestCompleted(_ response: ByteBuffer) -> [Action] {
        translate(machine.managementRequestCompleted(response))
    }

    /// See ``ControllerStateMachine/discoveryInformationCompleted(_:)``.
    public mutating func discoveryInformationCompleted(_ status: NVMeStatus) -> [Action] {
        translate(machine.discoveryInformationCompleted(status))
    }

    private mutating func deliver(_ capsule: CapsuleCommand, now: NIODeadline) -> [Action] {
        translate(machine.commandReceived(capsule, now: now))
    }

    private mutating func translate(_ actions: [ControllerStateMachine.Action]) -> [Action] {
        var out: [Action] = []
        out.reserveCapacity(actions.count + 1)
        for action in actions {
            switch action {
            case .complete(var completion, let data):
                let block = writeBlocks.removeValue(forKey: completion.commandIdentifier)
                if let data, data.readableBytes > 0 {
                    if let block, data.readableBytes <= Int(block.length) {
                        out.append(.write(data, address: block.address, key: block.key))
                    } else {
                        // Only a keyed block is presented to the controller as a data block, and
                        // the controller never sends more than its length: refuse rather than
                        // write where the host did not say.
                        completion.status = .dataTransferError
                        completion.result = 0
                        completion.dw1 = 0
                    }
                }
                out.append(.send(Self.encode(completion)))
            case .close(let reason):
                reads.removeAll()
                writeBlocks.removeAll()
                out.append(.disconnect(reason: reason))
            case .session(let action):
                out.append(.session(action))
            }
        }
        return out
    }

    private func send(_ command: SubmissionQueueEntry, status: NVMeStatus) -> Action {
        .send(Self.encode(CompletionQueueEntry(commandIdentifier: command.commandIdentifier, status: status)))
    }

    private static func encode(_ completion: CompletionQueueEntry) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(CompletionQueueEntry.size)
        buffer.writeCompletionQueueEntry(completion)
        return buffer
    }
}
