import NIOCore

/// The in-band management channel's own commands, per association: dem-em's REST API carried in
/// NVMe-MI Send (request segments) and NVMe-MI Receive (response segments) (``InBandManagement``).
/// The controller core lets none of them through before the host has authenticated with
/// DH-HMAC-CHAP (two-way, keys from the fabric credential). Pure; part of the ``ControllerStateMachine``, which
/// passes a complete request out as ``ControllerSessionAction/performManagementRequest(_:host:)``
/// and the response back in through ``requestCompleted(_:_:)``.
struct ManagementChannel {
    typealias Action = ControllerStateMachine.Action

    /// The request being received: its tag, length and the bytes so far.
    private var request: (tag: UInt16, length: Int, data: ByteBuffer)?
    /// The final Send segment whose request runs now: it completes with the response.
    private var running: (commandIdentifier: UInt16, tag: UInt16)?
    /// The last response, read by Receive segments.
    private var response: (tag: UInt16, data: ByteBuffer)?

    /// Whether `command` may bring host data: NVMe-MI Send (no other command of the management
    /// controller takes any).
    static func takesHostData(_ command: SubmissionQueueEntry) -> Bool {
        command.opcode == AdminOpcode.nvmeMISend
    }

    /// The actions for `capsule` when it is one of the channel's commands, else nil.
    mutating func execute(
        _ capsule: CapsuleCommand,
        _ association: ControllerStateMachine.Association,
        service: ControllerService
    ) -> [Action]? {
        let command = capsule.command
        guard command.opcode == AdminOpcode.nvmeMISend || command.opcode == AdminOpcode.nvmeMIReceive,
            case .management(let management) = service
        else { return nil }
        func fail(_ status: NVMeStatus) -> [Action] { [association.complete(command, status: status)] }
        guard let message = InBandCommand(command) else { return fail(.invalidOpcode.withDoNotRetry) }
        switch (message.isSend, message.operation) {
        case (true, InBandManagement.Opcode.requestSegment):
            guard running == nil else { return fail(.commandSequenceError) }
            guard command.dataPointer.isInCapsule, var data = capsule.data else {
                return fail(.sglDescriptorTypeInvalid.withDoNotRetry)
            }
            let length = Int(message.messageLength)
            guard length <= InBandManagement.maximumMessageLength else { return fail(.invalidField.withDoNotRetry) }
            if message.offset == 0 {
                var buffer = ByteBuffer()
                buffer.reserveCapacity(length)
                request = (message.tag, length, buffer)
            }
            guard var pending = request, pending.tag == message.tag,
                pending.length == length, Int(message.offset) == pending.data.readableBytes,
                pending.data.readableBytes + data.readableBytes <= length
            else {
                request = nil
                return fail(.invalidField.withDoNotRetry)
            }
            pending.data.writeBuffer(&data)
            guard pending.data.readableBytes == length else {
                request = pending
                return [association.complete(command)]
            }
            request = nil
            response = nil
            running = (command.commandIdentifier, message.tag)
            return [.session(.performManagementRequest(pending.data, host: association.host))]
        case (false, InBandManagement.Opcode.responseSegment):
            guard command.dataPointer.isTransportDataBlock else {
                return fail(.sglDescriptorTypeInvalid.withDoNotRetry)
            }
            guard let response, response.tag == message.tag else {
                return fail(.invalidField.withDoNotRetry)
            }
            let offset = Int(message.offset)
            let length = Int(command.dataPointer.length)
            guard offset + length <= response.data.readableBytes else { return fail(.invalidField.withDoNotRetry) }
            if length == 0 { return [association.complete(command)] }
            return [
                association.complete(
                    command,
                    data: response.data.getSlice(at: response.data.readerIndex + offset, length: length)!
                )
            ]
        default:
            return fail(.invalidField.withDoNotRetry)
        }
    }

    /// The running request's response: complete its final Send segment with the response's
    /// length in DW0 and keep the response for Receive segments.
    mutating func requestCompleted(
        _ response: ByteBuffer,
        _ association: ControllerStateMachine.Association
    ) -> [Action] {
        guard let running else { return [] }
        self.running = nil
        self.response = (running.tag, response)
        return [
            ControllerStateMachine.complete(
                SubmissionQueueEntry(opcode: AdminOpcode.nvmeMISend, commandIdentifier: running.commandIdentifier),
                head: association.submissionQueueHead,
                result: UInt32(response.readableBytes)
            )
        ]
    }
}
