import NIOCore

/// The discovery controller's own commands, per association: Get Log Page 70h, the
/// Asynchronous Event Requests that carry the discovery log page change notice, and Discovery
/// Information Management 21h (TP8010 registration: checked here, carried out by the service
/// through ``ControllerSessionAction/performDiscoveryInformation(_:host:)``, one at a time).
/// Pure; part of the ``ControllerStateMachine``.
///
/// After a notice, further notices wait until the host reads the log page with RAE cleared
/// (NVMe Base 2.1 §5.2). A notice with no request parked is kept until one is.
struct DiscoveryLogController {
    typealias Action = ControllerStateMachine.Action

    /// The CIDs of the requests parked for a notice.
    private(set) var parkedEventRequests: [UInt16] = []
    private var eventPending = false
    private var eventMasked = false
    /// The CID of the Discovery Information Management command the service is carrying out.
    private var registering: UInt16?

    /// Whether `commandIdentifier` is a parked request's or the running registration's (a new
    /// command may not reuse it).
    func isParked(_ commandIdentifier: UInt16) -> Bool {
        parkedEventRequests.contains(commandIdentifier) || registering == commandIdentifier
    }

    /// A controller reset (CC.EN 1 → 0): a notice pending or masked belongs to the old
    /// association. Parked requests stay parked, as with nvmet; they end with the connection.
    mutating func controllerReset() {
        eventPending = false
        eventMasked = false
    }

    /// The actions for `command` when it is one of the discovery controller's, else nil.
    mutating func execute(
        _ capsule: CapsuleCommand,
        _ association: inout ControllerStateMachine.Association,
        configuration: DiscoveryControllerConfiguration,
        service: ControllerService
    ) -> [Action]? {
        let command = capsule.command
        switch command.opcode {
        case DiscoveryInformationCommand.opcode:
            guard case .discovery = service else { return nil }
            return discoveryInformation(capsule, association)
        case AdminOpcode.getLogPage:
            guard case .discovery(let discovery) = service else { return nil }
            return getLogPage(command, association, configuration: configuration, service: discovery)
        case AdminOpcode.asynchronousEventRequest:
            guard parkedEventRequests.count < configuration.asynchronousEventRequestLimit else {
                return [association.complete(command, status: .asynchronousEventRequestLimitExceeded.withDoNotRetry)]
            }
            if eventPending && !eventMasked {
                eventPending = false
                eventMasked = true
                return [
                    association.complete(command, result: AsynchronousEvent.discoveryLogPageChange.result),
                    .session(.asynchronousEventSent),
                ]
            }
            parkedEventRequests.append(command.commandIdentifier)
            return []
        default:
            return nil
        }
    }

    /// The host's log page changed: complete a parked request with the notice, or keep the
    /// event until the host parks one.
    mutating func logChanged(_ association: ControllerStateMachine.Association) -> [Action] {
        guard
            association.asynchronousEventConfiguration & AsynchronousEventConfiguration.discoveryLogPageChange != 0,
            !eventMasked
        else { return [] }
        guard !parkedEventRequests.isEmpty else {
            eventPending = true
            return []
        }
        let commandIdentifier = parkedEventRequests.removeFirst()
        eventMasked = true
        eventPending = false
        return [
            ControllerStateMachine.complete(
                SubmissionQueueEntry(
                    opcode: AdminOpcode.asynchronousEventRequest,
                    commandIdentifier: commandIdentifier
                ),
                head: association.submissionQueueHead,
                result: AsynchronousEvent.discoveryLogPageChange.result
            ),
            .session(.asynchronousEventSent),
        ]
    }

    /// Whether `command` may bring host data: a Discovery Information Management command (no
    /// other command of a discovery controller takes any).
    static func takesHostData(_ command: SubmissionQueueEntry) -> Bool {
        command.opcode == DiscoveryInformationCommand.opcode
    }

    /// Discovery Information Management: the data is checked here (Invalid Discovery Information
    /// with the reason when it is not valid), then carried out by the service.
    private mutating func discoveryInformation(
        _ capsule: CapsuleCommand,
        _ association: ControllerStateMachine.Association
    ) -> [Action] {
        let command = capsule.command
        func refuse(_ reason: String) -> [Action] {
            [
                association.complete(command, status: .invalidDiscoveryInformation.withDoNotRetry),
                .session(.discoveryInformationRefused(reason: reason)),
            ]
        }
        guard registering == nil else {
            // One at a time: the host waits for the completion of the one running.
            return [association.complete(command, status: .commandSequenceError)]
        }
        let fields = DiscoveryInformationCommand(command)
        guard let task = fields.task else {
            return [association.complete(command, status: .invalidField.withDoNotRetry)]
        }
        guard let data = capsule.data, data.readableBytes > 0 else {
            return refuse("no data: a Discovery Information Management command carries its entity's information")
        }
        guard data.readableBytes == Int(command.dataPointer.length) else {
            return [association.complete(command, status: .dataSGLLengthInvalid.withDoNotRetry)]
        }
        let information: DiscoveryInformation
        do {
            information = try DiscoveryInformation(parsing: data)
        } catch {
            return refuse(error.reason)
        }
        if information.entityType == .host, information.entityIdentifier != association.host.hostNQN {
            // A host speaks for itself only.
            return refuse(
                "EID \(information.entityIdentifier) is not \(association.host.hostNQN), the host NQN of the Connect"
            )
        }
        registering = command.commandIdentifier
        return [
            .session(
                .performDiscoveryInformation(
                    DiscoveryInformationRequest(task: task, information: information),
                    host: association.host
                )
            )
        ]
    }

    /// The service carried out the running registration: complete it with `status`.
    mutating func discoveryInformationCompleted(
        _ status: NVMeStatus,
        _ association: ControllerStateMachine.Association
    ) -> [Action] {
        guard let commandIdentifier = registering else { return [] }
        registering = nil
        return [
            ControllerStateMachine.complete(
                SubmissionQueueEntry(opcode: DiscoveryInformationCommand.opcode, commandIdentifier: commandIdentifier),
                head: association.submissionQueueHead,
                status: status
            )
        ]
    }

    private mutating func getLogPage(
        _ command: SubmissionQueueEntry,
        _ association: ControllerStateMachine.Association,
        configuration: DiscoveryControllerConfiguration,
        service: any DiscoveryControllerService
    ) -> [Action] {
        let request = GetLogPageCommand(command)
        guard request.logPageIdentifier == LogPageIdentifier.discovery else {
            return [association.complete(command, status: .invalidLogPage.withDoNotRetry)]
        }
        guard request.offset % 4 == 0 else {
            return [association.complete(command, status: .invalidField.withDoNotRetry)]
        }
        guard command.dataPointer.isTransportDataBlock else {
            return [association.complete(command, status: .sglDescriptorTypeInvalid.withDoNotRetry)]
        }
        guard UInt64(command.dataPointer.length) >= request.length else {
            return [association.complete(command, status: .dataSGLLengthInvalid.withDoNotRetry)]
        }
        guard request.length <= UInt64(configuration.maximumTransferLength) else {
            return [association.complete(command, status: .invalidField.withDoNotRetry)]
        }
        let page = service.discoveryLogPage(for: association.host)
        guard request.offset <= UInt64(page.readableBytes) else {
            return [association.complete(command, status: .invalidField.withDoNotRetry)]
        }
        let offset = Int(request.offset)
        let length = Int(request.length)
        let available = min(length, page.readableBytes - offset)
        var data = page.getSlice(at: page.readerIndex + offset, length: available)!
        if available < length {
            // Reading past the end of a log page returns zeros.
            var padded = ByteBuffer()
            padded.reserveCapacity(length)
            padded.writeImmutableBuffer(data)
            padded.writeZeros(length - available)
            data = padded
        }
        if !request.retainAsynchronousEvent {
            eventMasked = false
        }
        return [
            association.complete(command, data: data),
            .session(.logPageRead(offset: request.offset, length: request.length)),
        ]
    }
}
