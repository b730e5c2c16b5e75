import NIOCore

/// One NVMe/RDMA controller queue as a pure state machine: it puts the NVMe/RDMA binding in
/// front of the very ``DiscoveryControllerStateMachine`` NVMe/TCP connections use. Received SEND
/// messages, RDMA READ completions and timer events in, ``Action``s (SENDs, RDMA READs and
/// WRITEs) out; the caller owns the queue pair (``NVMeRDMAListener``).
///
/// The binding (NVMe/RDMA 1.1 §3):
/// - The RDMA CM exchange opens the queue (``NVMeRDMA/answer(connectRequest:maximumQueueSize:)``);
///   there is no ICReq.
/// - A command capsule is one SEND: the SQE and any in-capsule data.
/// - Data the host sends through a Keyed SGL Data Block is fetched with an RDMA READ first; the
///   machine then sees the command with that data in the capsule.
/// - Data for the host is placed with RDMA WRITEs at the keyed block: the machine's C2HData
///   becomes a WRITE at the block's address plus the data offset.
/// - A response capsule is one SEND of the CQE, posted after the WRITEs on the same queue pair,
///   so the data has landed when the host sees the completion.
public struct NVMeRDMAControllerQueue {
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
        /// Carry out an action of the controller that is not a transfer (timers, registration,
        /// metrics, in-band requests), as the NVMe/TCP handler does.
        case controller(DiscoveryControllerStateMachine.Action)
    }

    private struct Block {
        var address: UInt64
        var key: UInt32
        var length: UInt32
    }

    /// The controller.
    public private(set) var machine: DiscoveryControllerStateMachine
    private let maximumReadLength: Int
    /// Keyed blocks of commands whose data goes to the host, by CID.
    private var writeBlocks: [UInt16: Block] = [:]
    /// Commands waiting for their RDMA READ, by token.
    private var reads: [UInt64: SubmissionQueueEntry] = [:]
    private var nextToken: UInt64 = 1

    /// - Parameters:
    ///   - machine: the controller, fresh.
    ///   - maximumReadLength: the most host data one command may bring (the in-capsule limit
    ///     of the NVMe/TCP controller).
    public init(machine: DiscoveryControllerStateMachine, maximumReadLength: Int) {
        self.machine = machine
        self.maximumReadLength = maximumReadLength
        self.machine.queueEstablished()
    }

    /// Commands waiting for an RDMA READ.
    public var pendingReads: Int { reads.count }

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

    /// See ``DiscoveryControllerStateMachine/keepAliveTimerFired(now:)``.
    public mutating func keepAliveTimerFired(now: NIODeadline) -> [Action] {
        translate(machine.keepAliveTimerFired(now: now))
    }

    /// See ``DiscoveryControllerStateMachine/discoveryLogChanged()``.
    public mutating func discoveryLogChanged() -> [Action] {
        translate(machine.discoveryLogChanged())
    }

    /// See ``DiscoveryControllerStateMachine/managementRequestCompleted(_:)``.
    public mutating func managementRequestCompleted(_ response: ByteBuffer) -> [Action] {
        translate(machine.managementRequestCompleted(response))
    }

    private mutating func deliver(_ capsule: CapsuleCommand, now: NIODeadline) -> [Action] {
        translate(machine.pduReceived(.capsuleCommand(capsule), now: now))
    }

    private mutating func translate(_ actions: [DiscoveryControllerStateMachine.Action]) -> [Action] {
        var out: [Action] = []
        out.reserveCapacity(actions.count)
        for action in actions {
            switch action {
            case .send(.capsuleResponse(let response)):
                writeBlocks.removeValue(forKey: response.completion.commandIdentifier)
                out.append(.send(Self.encode(response.completion)))
            case .send(.controllerToHostData(let data)):
                guard let block = writeBlocks[data.commandIdentifier],
                    UInt64(data.dataOffset) + UInt64(data.data.readableBytes) <= UInt64(block.length)
                else {
                    // The controller only sends what the descriptor's length allows.
                    preconditionFailure("C2H data outside the command's keyed block")
                }
                out.append(.write(data.data, address: block.address + UInt64(data.dataOffset), key: block.key))
            case .send:
                // ICResp and C2HTermReq have no NVMe/RDMA counterpart: a fatal error is a
                // disconnect, which the `.close` that follows a C2HTermReq asks for.
                continue
            case .close(let reason):
                out.append(.disconnect(reason: reason))
            default:
                out.append(.controller(action))
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
