import NIOCore

/// The host side of one NVMe/TCP queue, as a pure state machine: it starts the connection with
/// an ICReq, numbers the commands and sends their capsules with in-capsule data, reassembles
/// C2HData per command, matches completions by CID and fails every outstanding command once when
/// the connection fails. It never touches a channel; ``NVMeTCPHostHandler`` carries out its
/// actions.
///
/// `Command` is what the caller keeps per command until it completes (its promise); the machine
/// hands it back with the completion or the failure, as ``NVMeRDMAHostStateMachine`` does.
public struct NVMeTCPHostStateMachine<Command> {
    /// What the caller must do.
    public enum Action {
        /// Send this PDU.
        case send(NVMeTCPPDU)
        /// The controller answered the ICReq.
        case connectionInitialized(InitializeConnectionResponse)
        /// A command completed; `data` holds the C2H data received for it, if any.
        case commandCompleted(CompletionQueueEntry, data: ByteBuffer?, Command)
        /// A command was not sent (the connection is not ready, or has ended).
        case commandFailed(NVMeHostError, Command)
        /// The connection failed: close it, and fail every outstanding command with `error`.
        case close(NVMeHostError, outstanding: [Command])
    }

    private struct Outstanding {
        var command: Command
        var expectedLength: Int
        var data: ByteBuffer?
    }

    private enum State {
        case idle
        case awaitingInitializeConnectionResponse(InitializeConnectionRequest)
        case ready
        case closed
    }

    private var state: State = .idle
    private var outstanding = OutstandingCommands<Outstanding>()

    /// The digests negotiated; the caller parses and writes later PDUs with them.
    public private(set) var digests: NVMeTCPDigests = []
    /// The data alignment the controller asked for in CPDA, in bytes.
    public private(set) var controllerDataAlignment: Int = 4
    /// MAXH2CDATA from the ICResp.
    public private(set) var maximumH2CDataLength: UInt32 = 0

    public init() {}

    /// Whether commands can be submitted.
    public var isReady: Bool {
        if case .ready = state { return true }
        return false
    }

    /// Commands sent and not yet completed.
    public var outstandingCount: Int { outstanding.count }

    /// Starts the connection.
    public mutating func initialize(_ request: InitializeConnectionRequest) -> [Action] {
        guard case .idle = state else { return [] }
        state = .awaitingInitializeConnectionResponse(request)
        return [.send(.initializeConnectionRequest(request))]
    }

    /// Sends `command` with optional in-capsule `data`, assigning it a CID.
    ///
    /// - Parameters:
    ///   - expectedDataLength: how many C2H data bytes the command may return.
    ///   - context: what the caller keeps until the command completes.
    public mutating func submit(
        _ command: SubmissionQueueEntry,
        data: ByteBuffer? = nil,
        expectedDataLength: Int = 0,
        context: Command
    ) -> [Action] {
        let refusal: NVMeHostError
        switch state {
        case .ready:
            guard
                let cid = outstanding.insert(
                    Outstanding(command: context, expectedLength: expectedDataLength)
                )
            else {
                return [.commandFailed(.protocolViolation("\(outstanding.count) commands outstanding"), context)]
            }
            var entry = command
            entry.commandIdentifier = cid
            return [.send(.capsuleCommand(CapsuleCommand(command: entry, data: data)))]
        case .closed: refusal = .connectionClosed
        case .idle, .awaitingInitializeConnectionResponse:
            refusal = .protocolViolation("the connection is not ready for commands")
        }
        return [.commandFailed(refusal, context)]
    }

    /// A PDU arrived from the controller.
    public mutating func pduReceived(_ pdu: NVMeTCPPDU) -> [Action] {
        switch state {
        case .closed: return []
        case .idle: return fail(.protocolViolation("\(pdu.type) before ICReq was sent"))
        case .awaitingInitializeConnectionResponse(let request):
            guard case .initializeConnectionResponse(let response) = pdu else {
                if case .controllerToHostTerminationRequest(let term) = pdu { return terminated(term) }
                return fail(.protocolViolation("\(pdu.type) instead of ICResp"))
            }
            guard response.pduFormatVersion == 0 else {
                return fail(.protocolViolation("ICResp PFV \(response.pduFormatVersion)"))
            }
            guard response.digests.isSubset(of: request.digests) else {
                return fail(.protocolViolation("ICResp enabled digests the host did not ask for"))
            }
            guard response.controllerPDUDataAlignment <= 31 else {
                return fail(.protocolViolation("ICResp CPDA \(response.controllerPDUDataAlignment) above 31"))
            }
            digests = response.digests
            controllerDataAlignment = (Int(response.controllerPDUDataAlignment) + 1) * 4
            maximumH2CDataLength = response.maximumH2CDataLength
            state = .ready
            return [.connectionInitialized(response)]
        case .ready:
            break
        }
        switch pdu {
        case .controllerToHostData(let c2h):
            guard var command = outstanding[c2h.commandIdentifier] else {
                return fail(.protocolViolation("C2HData for unknown CID \(c2h.commandIdentifier)"))
            }
            let received = command.data?.readableBytes ?? 0
            guard Int(c2h.dataOffset) == received else {
                return fail(.protocolViolation("C2HData offset \(c2h.dataOffset), expected \(received)"))
            }
            guard received + c2h.data.readableBytes <= command.expectedLength else {
                return fail(.protocolViolation("C2HData beyond the \(command.expectedLength) bytes asked for"))
            }
            if c2h.dataDigestMismatch {
                return fail(.dataDigestMismatch)
            }
            if command.data == nil {
                command.data = c2h.data
            } else {
                var slice = c2h.data
                command.data!.writeBuffer(&slice)
            }
            if c2h.isSuccess {
                guard c2h.isLast else { return fail(.protocolViolation("C2HData SUCCESS without LAST_PDU")) }
                outstanding[c2h.commandIdentifier] = nil
                return [
                    .commandCompleted(
                        CompletionQueueEntry(commandIdentifier: c2h.commandIdentifier),
                        data: command.data,
                        command.command
                    )
                ]
            }
            outstanding[c2h.commandIdentifier] = command
            return []
        case .capsuleResponse(let response):
            let cid = response.completion.commandIdentifier
            guard let command = outstanding.remove(cid) else {
                return fail(.protocolViolation("CapsuleResp for unknown CID \(cid)"))
            }
            return [.commandCompleted(response.completion, data: command.data, command.command)]
        case .controllerToHostTerminationRequest(let term):
            return terminated(term)
        case .readyToTransfer:
            return fail(.protocolViolation("R2T, but no command sent data by R2T"))
        default:
            return fail(.protocolViolation("\(pdu.type) is a host-to-controller PDU"))
        }
    }

    /// The framer or parser found a fatal transport error: tell the controller and close.
    public mutating func transportErrorCaught(_ error: NVMeTCPTransportError) -> [Action] {
        if case .closed = state { return [] }
        state = .closed
        return [
            .send(.hostToControllerTerminationRequest(error.terminationRequest)),
            .close(.transport(error), outstanding: outstanding.removeAll().map(\.command)),
        ]
    }

    /// The connection closed.
    public mutating func channelClosed() -> [Action] {
        fail(.connectionClosed)
    }

    /// The connection failed otherwise (a channel error).
    public mutating func failed(_ error: NVMeHostError) -> [Action] {
        fail(error)
    }

    private mutating func terminated(_ term: TerminationRequest) -> [Action] {
        fail(.terminatedByController(term.status, fieldErrorInformation: term.fieldErrorInformation))
    }

    private mutating func fail(_ error: NVMeHostError) -> [Action] {
        if case .closed = state { return [] }
        state = .closed
        return [.close(error, outstanding: outstanding.removeAll().map(\.command))]
    }
}

/// Why a host connection failed.
public enum NVMeHostError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The controller broke the protocol.
    case protocolViolation(String)
    /// A data digest did not match.
    case dataDigestMismatch
    /// We found a transport error in what the controller sent.
    case transport(NVMeTCPTransportError)
    /// The controller sent a C2HTermReq.
    case terminatedByController(NVMeTCPFatalErrorStatus, fieldErrorInformation: UInt32)
    /// The connection closed.
    case connectionClosed
    /// A command completed with an error status.
    case commandFailed(String, NVMeStatus)
    /// No answer in time.
    case timedOut(String)
    /// The connection could not be made (an RDMA CM step failed, or the controller refused it).
    case connectionFailed(String)
    /// DH-HMAC-CHAP failed: a key was wrong or missing on either side.
    case authenticationFailed(String)

    public var description: String {
        switch self {
        case .protocolViolation(let what): return "protocol violation: \(what)"
        case .dataDigestMismatch: return "data digest mismatch"
        case .transport(let error): return error.description
        case .terminatedByController(let status, let fei):
            return "controller terminated the connection: \(status) (FEI \(fei))"
        case .connectionClosed: return "connection closed"
        case .connectionFailed(let reason): return "cannot connect: \(reason)"
        case .commandFailed(let command, let status): return "\(command) failed: \(status)"
        case .timedOut(let what): return "timed out: \(what)"
        case .authenticationFailed(let why): return "authentication failed: \(why)"
        }
    }
}
