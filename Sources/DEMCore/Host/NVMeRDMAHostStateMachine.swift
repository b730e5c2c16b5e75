import NIOCore

/// The host side of one NVMe/RDMA admin queue, as a pure state machine: it numbers the commands,
/// builds each command capsule with the keyed SGL of its data block, matches the 16-byte
/// response capsules to their commands and fails every outstanding command when the queue
/// fails. It never touches the verbs: the connection (``NVMeRDMAHostConnection``'s RDMA queue)
/// registers the memory, posts the SENDs and carries out its actions.
///
/// `Command` is what the connection keeps per command until it completes (its promise and its
/// registered data block); the machine hands it back with the completion or the failure.
public struct NVMeRDMAHostStateMachine<Command> {
    /// What the caller must do.
    public enum Action {
        /// Post this command capsule (64 bytes) as a SEND; if that fails, report it with
        /// ``sendFailed(_:_:)`` and this CID.
        case send(ByteBuffer, commandIdentifier: UInt16)
        /// A command completed; the controller wrote `readLength` bytes into its data block
        /// (0 when it returns no data).
        case commandCompleted(CompletionQueueEntry, Command, readLength: Int)
        /// A command was not sent; the queue serves on.
        case commandFailed(NVMeHostError, Command)
        /// The queue failed: release every outstanding command with `error`; disconnect the
        /// RDMA connection when `disconnect` (it is still up).
        case close(NVMeHostError, outstanding: [Command], disconnect: Bool)
    }

    private struct Outstanding {
        var command: Command
        var readLength: Int
    }

    private enum State {
        case connecting
        case ready
        case closed
    }

    private var state: State = .connecting
    private var outstanding: OutstandingCommands<Outstanding>

    /// - Parameter queueSize: the queue's size (HRQSIZE); at most `queueSize - 1` commands are
    ///   outstanding at once.
    public init(queueSize: Int) {
        outstanding = OutstandingCommands(limit: max(1, queueSize - 1))
    }

    /// Whether commands can be submitted.
    public var isReady: Bool {
        if case .ready = state { return true }
        return false
    }

    /// Commands sent and not yet completed.
    public var outstandingCount: Int { outstanding.count }

    /// The RDMA connection is established: commands may be sent.
    public mutating func established() {
        if case .connecting = state { state = .ready }
    }

    /// Sends `command`, assigning it a CID.
    ///
    /// - Parameters:
    ///   - dataBlock: the keyed SGL of the command's registered data block (host data the
    ///     controller reads, or room for what it writes); nil for none.
    ///   - readLength: how many bytes the controller writes into the block for this command.
    ///   - context: what the caller keeps until the command completes.
    public mutating func submit(
        _ command: SubmissionQueueEntry,
        dataBlock: SGLDescriptor?,
        readLength: Int,
        context: Command
    ) -> [Action] {
        guard case .ready = state else { return [.commandFailed(.connectionClosed, context)] }
        guard let identifier = outstanding.insert(Outstanding(command: context, readLength: readLength)) else {
            return [
                .commandFailed(.protocolViolation("more than \(outstanding.limit) commands outstanding"), context)
            ]
        }
        var entry = command
        entry.commandIdentifier = identifier
        entry.dataPointer = dataBlock ?? .keyed(address: 0, length: 0, key: 0)
        var capsule = ByteBuffer()
        capsule.reserveCapacity(SubmissionQueueEntry.size)
        capsule.writeSubmissionQueueEntry(entry)
        return [.send(capsule, commandIdentifier: identifier)]
    }

    /// The SEND of the command with `identifier` could not be posted: it fails alone.
    public mutating func sendFailed(_ identifier: UInt16, _ error: NVMeHostError) -> [Action] {
        guard let command = outstanding.remove(identifier) else { return [] }
        return [.commandFailed(error, command.command)]
    }

    /// A response capsule arrived.
    public mutating func responseReceived(_ bytes: ByteBuffer) -> [Action] {
        guard case .ready = state else { return [] }
        guard bytes.readableBytes >= CompletionQueueEntry.size,
            let completion = bytes.getCompletionQueueEntry(at: bytes.readerIndex)
        else {
            return fail(.protocolViolation("a response capsule of \(bytes.readableBytes) bytes"), disconnect: true)
        }
        guard let command = outstanding.remove(completion.commandIdentifier) else {
            return fail(
                .protocolViolation("a response for CID \(completion.commandIdentifier), which no command has"),
                disconnect: true
            )
        }
        return [.commandCompleted(completion, command.command, readLength: command.readLength)]
    }

    /// The queue failed (a connection-manager event, a failed work completion, a timeout, or
    /// the caller closing it).
    public mutating func failed(_ error: NVMeHostError, disconnect: Bool) -> [Action] {
        fail(error, disconnect: disconnect)
    }

    private mutating func fail(_ error: NVMeHostError, disconnect: Bool) -> [Action] {
        if case .closed = state { return [] }
        state = .closed
        return [.close(error, outstanding: outstanding.removeAll().map(\.command), disconnect: disconnect)]
    }
}
