import NIOCore

/// The NVMe/TCP controller of one connection, as a pure state machine: PDUs and timer events in,
/// ``Action``s out. It never touches a channel, an event loop or a clock; the caller passes the
/// time in and carries the actions out (``NVMeTCPControllerHandler``).
///
/// It is one of two controllers, chosen at creation: a discovery controller (the log page and
/// its change notices), or the administrative controller of dem-em's in-band management channel
/// (``InBandManagement``: a challenge, then dem-em's REST API in NVMe-MI Send and Receive).
/// Everything else (connection, properties, keep-alive, features) is shared.
///
/// Lifecycle: `awaitingICReq` → (ICReq/ICResp) → `awaitingConnect` → (Connect to the well-known
/// or the unique discovery NQN, or the management NQN; admin queue only) → `connected` → closed.
/// Transport violations end the connection with a C2HTermReq; a bad command gets an NVMe status
/// and the queue goes on.
public struct DiscoveryControllerStateMachine {
    /// What the caller must do.
    public enum Action: Sendable, Hashable {
        /// Send this PDU.
        case send(NVMeTCPPDU)
        /// Close the connection (after the PDUs sent before this action).
        case close(reason: String)
        /// Call ``keepAliveTimerFired(now:)`` after this long (the keep-alive timer, and before
        /// the association is set up the setup timer).
        case scheduleKeepAliveCheck(after: TimeAmount)
        /// A controller was created for this host: register the connection for change notices.
        case controllerCreated(DiscoveryHostContext, controllerIdentifier: UInt16)
        /// A discovery-change notice was delivered to the host (for metrics).
        case asynchronousEventSent
        /// A discovery log page was read (for metrics).
        case logPageRead(offset: UInt64, length: UInt64)
        /// An authenticated host's in-band request message is complete: carry it out with
        /// ``ManagementControllerService/perform(_:host:)`` and pass the response message to
        /// ``managementRequestCompleted(_:)``.
        case performManagementRequest(ByteBuffer, host: DiscoveryHostContext)
    }

    /// The in-band channel's state of one association.
    private struct Management {
        var authenticated = false
        var challenge: [UInt8]?
        /// The request being received: its tag, length and the bytes so far.
        var request: (tag: UInt16, length: Int, data: ByteBuffer)?
        /// The final Send segment whose request runs now: it completes with the response.
        var running: (commandIdentifier: UInt16, tag: UInt16)?
        /// The last response, read by Receive segments.
        var response: (tag: UInt16, data: ByteBuffer)?
    }

    private struct Controller {
        var host: DiscoveryHostContext
        var controllerIdentifier: UInt16
        var keepAliveTimeout: TimeAmount
        var lastActivity: NIODeadline
        var configuration: UInt32 = 0
        var asynchronousEventConfiguration: UInt32 = AsynchronousEventConfiguration.discoveryLogPageChange
        var parkedEventRequests: [UInt16] = []
        var eventPending = false
        var eventMasked = false
        var submissionQueueSize: UInt16
        var submissionQueueHead: UInt16 = 0
        var management = Management()

        var status: UInt32 {
            // RDY follows EN until a shutdown completes (SHST 2h), as nvmet reports it.
            if (configuration >> 14) & 0x3 != 0 { return 2 << 2 }
            return configuration & 1
        }
        var isReady: Bool { configuration & 1 == 1 && (configuration >> 14) & 0x3 == 0 }
    }

    private enum State {
        case awaitingInitializeConnection
        case awaitingConnect
        case connected(Controller)
        case closed
        case modifying
    }

    /// The CAP property: MQES 1023, CQR, TO 15 (7.5 s), CSS NVM — what Linux nvmet reports.
    public static let capabilities: UInt64 = 0x0000_0820_0F00_03FF
    /// The VS property: NVMe 1.3.
    public static let version: UInt32 = 0x0001_0300

    private var state: State = .awaitingInitializeConnection
    /// Until the association is set up: when the step awaited now (ICReq, then Connect) is due.
    private var setupDeadline: NIODeadline?
    private let configuration: DiscoveryControllerConfiguration
    private let role: ControllerService
    private let localAddress: String?
    private let remoteAddress: String?

    /// The digests negotiated by ICReq/ICResp; the caller parses and writes later PDUs with them.
    public private(set) var digests: NVMeTCPDigests = []
    /// The data alignment the host asked for in HPDA, in bytes.
    public private(set) var hostDataAlignment: Int = 4

    /// - Parameters:
    ///   - configuration: the controller's fixed parameters.
    ///   - service: the discovery controller's log pages and controller IDs, or the management
    ///     controller's requests (it serves `configuration.uniqueNQN`, the management NQN, only).
    ///   - localAddress: the local IP address of the connection (fills wildcard listener entries).
    ///   - remoteAddress: the host's address, for logs.
    public init(
        configuration: DiscoveryControllerConfiguration,
        serving service: ControllerService,
        localAddress: String? = nil,
        remoteAddress: String? = nil
    ) {
        self.configuration = configuration
        self.role = service
        self.localAddress = localAddress
        self.remoteAddress = remoteAddress
    }

    /// A discovery controller.
    public init(
        configuration: DiscoveryControllerConfiguration,
        service: any DiscoveryControllerService,
        localAddress: String? = nil,
        remoteAddress: String? = nil
    ) {
        self.init(
            configuration: configuration,
            serving: .discovery(service),
            localAddress: localAddress,
            remoteAddress: remoteAddress
        )
    }

    /// The administrative controller of the in-band management channel.
    public init(
        configuration: DiscoveryControllerConfiguration,
        management: any ManagementControllerService,
        localAddress: String? = nil,
        remoteAddress: String? = nil
    ) {
        self.init(
            configuration: configuration,
            serving: .management(management),
            localAddress: localAddress,
            remoteAddress: remoteAddress
        )
    }

    /// Whether this is the in-band channel's controller.
    public var isManagementController: Bool {
        if case .management = role { return true }
        return false
    }

    /// Whether the connection has ended.
    public var isClosed: Bool {
        if case .closed = state { return true }
        return false
    }

    /// The host, once it has connected.
    public var host: DiscoveryHostContext? {
        if case .connected(let controller) = state { return controller.host }
        return nil
    }

    // MARK: - Events

    /// The connection opened at `now`: the host must send its ICReq (on NVMe/RDMA, its Connect)
    /// within the setup timeout.
    public mutating func connectionOpened(now: NIODeadline) -> [Action] {
        guard case .awaitingInitializeConnection = state, setupDeadline == nil else { return [] }
        setupDeadline = now + configuration.setupTimeout
        return [.scheduleKeepAliveCheck(after: configuration.setupTimeout)]
    }

    /// A PDU arrived.
    public mutating func pduReceived(_ pdu: NVMeTCPPDU, now: NIODeadline) -> [Action] {
        switch state {
        case .closed: return []
        case .modifying: preconditionFailure("state machine re-entered")
        case .awaitingInitializeConnection:
            guard case .initializeConnectionRequest(let request) = pdu else {
                return terminate(.pduSequenceError, 0, "\(pdu.type) before ICReq", pdu)
            }
            let actions = initializeConnection(request)
            // The Connect is due within the setup timeout of the ICResp.
            guard case .awaitingConnect = state, setupDeadline != nil else { return actions }
            setupDeadline = now + configuration.setupTimeout
            return actions + [.scheduleKeepAliveCheck(after: configuration.setupTimeout)]
        case .awaitingConnect, .connected:
            break
        }
        switch pdu {
        case .capsuleCommand(let capsule):
            return commandReceived(capsule, now: now)
        case .hostToControllerTerminationRequest(let request):
            state = .closed
            return [
                .close(reason: "host terminated the connection: \(request.status) FEI \(request.fieldErrorInformation)")
            ]
        case .initializeConnectionRequest:
            return terminate(.pduSequenceError, 0, "second ICReq", pdu)
        case .hostToControllerData:
            return terminate(.pduSequenceError, 0, "H2CData without an R2T", pdu)
        case .initializeConnectionResponse, .controllerToHostTerminationRequest, .capsuleResponse,
            .controllerToHostData,
            .readyToTransfer:
            return terminate(.invalidHeaderField, 0, "\(pdu.type) is a controller-to-host PDU", pdu)
        }
    }

    /// The framer or the PDU parser found a fatal transport error.
    public mutating func transportErrorCaught(_ error: NVMeTCPTransportError) -> [Action] {
        if case .closed = state { return [] }
        state = .closed
        return [
            .send(.controllerToHostTerminationRequest(error.terminationRequest)),
            .close(reason: error.description),
        ]
    }

    /// A transport with no ICReq/ICResp (NVMe/RDMA, whose RDMA CM exchange opens the queue)
    /// established the queue: the controller awaits Connect.
    public mutating func queueEstablished() {
        guard case .awaitingInitializeConnection = state else { return }
        state = .awaitingConnect
    }

    /// The keep-alive timer scheduled by ``Action/scheduleKeepAliveCheck(after:)`` fired.
    public mutating func keepAliveTimerFired(now: NIODeadline) -> [Action] {
        switch state {
        case .awaitingInitializeConnection, .awaitingConnect:
            guard let deadline = setupDeadline else { return [] }
            guard now >= deadline else { return [.scheduleKeepAliveCheck(after: deadline - now)] }
            let step: String
            if case .awaitingConnect = state { step = "Connect" } else { step = "ICReq" }
            state = .closed
            return [.close(reason: "no \(step) within the setup timeout of \(configuration.setupTimeout)")]
        default:
            break
        }
        guard case .connected(let controller) = state else { return [] }
        let expiry = controller.lastActivity + controller.keepAliveTimeout
        if now >= expiry {
            state = .closed
            return [.close(reason: "keep-alive timeout of \(controller.keepAliveTimeout) expired")]
        }
        return [.scheduleKeepAliveCheck(after: expiry - now)]
    }

    /// The host's discovery log page changed: complete a parked AER with the notice, or keep the
    /// event until the host parks one. After a notice, further notices wait until the host reads
    /// the log page with RAE cleared (NVMe Base 2.1 §5.2).
    public mutating func discoveryLogChanged() -> [Action] {
        guard case .connected(var controller) = state else { return [] }
        guard controller.asynchronousEventConfiguration & AsynchronousEventConfiguration.discoveryLogPageChange != 0,
            !controller.eventMasked
        else { return [] }
        state = .modifying
        defer { state = .connected(controller) }
        if controller.parkedEventRequests.isEmpty {
            controller.eventPending = true
            return []
        }
        let cid = controller.parkedEventRequests.removeFirst()
        controller.eventMasked = true
        controller.eventPending = false
        return [
            .send(
                .capsuleResponse(
                    CapsuleResponse(
                        completion: CompletionQueueEntry(
                            result: AsynchronousEvent.discoveryLogPageChange.result,
                            submissionQueueHead: controller.submissionQueueHead,
                            commandIdentifier: cid
                        )
                    )
                )
            ),
            .asynchronousEventSent,
        ]
    }

    /// The connection closed.
    public mutating func channelClosed() {
        state = .closed
    }

    /// The request passed out by ``Action/performManagementRequest(_:host:)`` was carried out:
    /// complete its final Send segment with the response's length in DW0 and keep the response
    /// for Receive segments.
    public mutating func managementRequestCompleted(_ response: ByteBuffer) -> [Action] {
        guard case .connected(var controller) = state, let running = controller.management.running else { return [] }
        state = .modifying
        defer { state = .connected(controller) }
        controller.management.running = nil
        controller.management.response = (running.tag, response)
        return [
            .send(
                .capsuleResponse(
                    CapsuleResponse(
                        completion: CompletionQueueEntry(
                            result: UInt32(response.readableBytes),
                            submissionQueueHead: controller.submissionQueueHead,
                            commandIdentifier: running.commandIdentifier
                        )
                    )
                )
            )
        ]
    }

    // MARK: - Initialize connection

    private mutating func initializeConnection(_ request: InitializeConnectionRequest) -> [Action] {
        guard request.pduFormatVersion == 0 else {
            return terminate(.unsupportedParameter, 8, "PFV \(request.pduFormatVersion) is not supported", nil)
        }
        guard request.hostPDUDataAlignment <= 31 else {
            return terminate(.invalidHeaderField, 10, "HPDA \(request.hostPDUDataAlignment) above 31", nil)
        }
        let negotiated = request.digests.intersection([.header, .data])
        hostDataAlignment = (Int(request.hostPDUDataAlignment) + 1) * 4
        state = .awaitingConnect
        let response = InitializeConnectionResponse(
            digests: negotiated,
            maximumH2CDataLength: configuration.maximumH2CDataLength
        )
        // The ICResp itself never carries digests; the negotiated ones apply from the next PDU.
        digests = negotiated
        return [.send(.initializeConnectionResponse(response))]
    }

    // MARK: - Commands

    private mutating func commandReceived(_ capsule: CapsuleCommand, now: NIODeadline) -> [Action] {
        let command = capsule.command
        if let data = capsule.data, data.readableBytes > configuration.maximumInCapsuleDataLength {
            return terminate(
                .invalidHeaderField,
                4,
                "in-capsule data of \(data.readableBytes) bytes",
                .capsuleCommand(capsule)
            )
        }
        guard case .connected(var controller) = state else {
            // Awaiting Connect: only a Connect is allowed.
            if command.opcode == AdminOpcode.fabrics, case .connect(let connect) = FabricsCommand(command) {
                return connectReceived(connect, capsule, now: now)
            }
            return [complete(command, nil, status: .commandSequenceError.withDoNotRetry)]
        }
        state = .modifying
        controller.lastActivity = now
        controller.submissionQueueHead = UInt16(
            (Int(controller.submissionQueueHead) + 1) % (Int(controller.submissionQueueSize) + 1)
        )
        let actions = execute(capsule, &controller)
        switch state {
        case .modifying: state = .connected(controller)
        case .closed: break
        default: preconditionFailure("unexpected state after a command")
        }
        return actions
    }

    private mutating func execute(_ capsule: CapsuleCommand, _ controller: inout Controller) -> [Action] {
        let command = capsule.command
        func fail(_ status: NVMeStatus, result: UInt32 = 0) -> [Action] {
            [complete(command, controller, status: status, result: result)]
        }
        if controller.parkedEventRequests.contains(command.commandIdentifier) {
            return fail(.commandIdentifierConflict.withDoNotRetry)
        }
        if capsule.dataDigestMismatch {
            return fail(.transientTransportError)
        }
        if command.opcode == AdminOpcode.fabrics {
            return fabricsCommand(capsule, &controller)
        }
        if let data = capsule.data, data.readableBytes > 0,
            !(isManagementController && command.opcode == AdminOpcode.nvmeMISend)
        {
            // No other admin command of these controllers takes host data.
            return fail(.invalidField.withDoNotRetry)
        }
        guard controller.isReady else {
            return fail(.commandSequenceError.withDoNotRetry)
        }
        switch command.opcode {
        case AdminOpcode.identify:
            return identify(command, controller)
        case AdminOpcode.getLogPage where !isManagementController:
            return getLogPage(command, &controller)
        case AdminOpcode.nvmeMISend where isManagementController,
            AdminOpcode.nvmeMIReceive where isManagementController:
            return managementCommand(capsule, &controller)
        case AdminOpcode.keepAlive:
            return [complete(command, controller)]
        case AdminOpcode.setFeatures:
            let features = FeaturesCommand(setFeatures: command)
            guard features.saveOrSelect == 0 else { return fail(.featureIdentifierNotSaveable.withDoNotRetry) }
            switch features.featureIdentifier {
            case FeatureIdentifier.keepAliveTimer:
                controller.keepAliveTimeout = keepAliveTimeout(milliseconds: features.value)
                return [
                    complete(command, controller),
                    .scheduleKeepAliveCheck(after: controller.keepAliveTimeout),
                ]
            case FeatureIdentifier.asynchronousEventConfiguration:
                controller.asynchronousEventConfiguration =
                    features.value & AsynchronousEventConfiguration.discoveryLogPageChange
                return [complete(command, controller, result: controller.asynchronousEventConfiguration)]
            default:
                return fail(.invalidField.withDoNotRetry)
            }
        case AdminOpcode.getFeatures:
            let features = FeaturesCommand(getFeatures: command)
            switch features.featureIdentifier {
            case FeatureIdentifier.keepAliveTimer:
                let milliseconds = controller.keepAliveTimeout.nanoseconds / 1_000_000
                return [complete(command, controller, result: UInt32(clamping: milliseconds))]
            case FeatureIdentifier.asynchronousEventConfiguration:
                return [complete(command, controller, result: controller.asynchronousEventConfiguration)]
            default:
                return fail(.invalidField.withDoNotRetry)
            }
        case AdminOpcode.asynchronousEventRequest where !isManagementController:
            guard controller.parkedEventRequests.count < configuration.asynchronousEventRequestLimit else {
                return fail(.asynchronousEventRequestLimitExceeded.withDoNotRetry)
            }
            if controller.eventPending && !controller.eventMasked {
                controller.eventPending = false
                controller.eventMasked = true
                return [
                    complete(command, controller, result: AsynchronousEvent.discoveryLogPageChange.result),
                    .asynchronousEventSent,
                ]
            }
            controller.parkedEventRequests.append(command.commandIdentifier)
            return []
        default:
            return fail(.invalidOpcode.withDoNotRetry)
        }
    }

    // MARK: - In-band management

    private func managementCommand(_ capsule: CapsuleCommand, _ controller: inout Controller) -> [Action] {
        let command = capsule.command
        guard case .management(let service) = role, let request = InBandCommand(command) else {
            return [complete(command, controller, status: .invalidOpcode.withDoNotRetry)]
        }
        func fail(_ status: NVMeStatus) -> [Action] { [complete(command, controller, status: status)] }
        switch (request.isSend, request.operation) {
        case (false, InBandManagement.Opcode.challenge):
            guard command.dataPointer.isTransportDataBlock else {
                return fail(.sglDescriptorTypeInvalid.withDoNotRetry)
            }
            guard command.dataPointer.length == UInt32(InBandManagement.challengeLength) else {
                return fail(.dataSGLLengthInvalid.withDoNotRetry)
            }
            let challenge = service.makeChallenge()
            controller.management.challenge = challenge
            return dataTransfer(command, controller, ByteBuffer(bytes: challenge))
        case (true, InBandManagement.Opcode.authenticate):
            // One answer per challenge, right or wrong.
            let challenge = controller.management.challenge
            controller.management.challenge = nil
            guard let challenge, let data = capsule.data, data.readableBytes == InBandManagement.challengeLength
            else { return fail(.accessDenied.withDoNotRetry) }
            guard
                InBandManagement.isAnswer(
                    Array(data.readableBytesView),
                    credential: service.credential(),
                    challenge: challenge,
                    hostNQN: controller.host.hostNQN,
                    subsystemNQN: controller.host.subsystemNQN
                )
            else {
                return fail(.accessDenied.withDoNotRetry)
            }
            controller.management.authenticated = true
            return [complete(command, controller)]
        case (true, InBandManagement.Opcode.requestSegment):
            guard controller.management.authenticated else { return fail(.accessDenied.withDoNotRetry) }
            guard controller.management.running == nil else { return fail(.commandSequenceError) }
            guard command.dataPointer.isInCapsule, var data = capsule.data else {
                return fail(.sglDescriptorTypeInvalid.withDoNotRetry)
            }
            let length = Int(request.messageLength)
            guard length <= InBandManagement.maximumMessageLength else { return fail(.invalidField.withDoNotRetry) }
            if request.offset == 0 {
                var buffer = ByteBuffer()
                buffer.reserveCapacity(length)
                controller.management.request = (request.tag, length, buffer)
            }
            guard var pending = controller.management.request, pending.tag == request.tag,
                pending.length == length, Int(request.offset) == pending.data.readableBytes,
                pending.data.readableBytes + data.readableBytes <= length
            else {
                controller.management.request = nil
                return fail(.invalidField.withDoNotRetry)
            }
            pending.data.writeBuffer(&data)
            guard pending.data.readableBytes == length else {
                controller.management.request = pending
                return [complete(command, controller)]
            }
            controller.management.request = nil
            controller.management.response = nil
            controller.management.running = (command.commandIdentifier, request.tag)
            return [.performManagementRequest(pending.data, host: controller.host)]
        case (false, InBandManagement.Opcode.responseSegment):
            guard controller.management.authenticated else { return fail(.accessDenied.withDoNotRetry) }
            guard command.dataPointer.isTransportDataBlock else {
                return fail(.sglDescriptorTypeInvalid.withDoNotRetry)
            }
            guard let response = controller.management.response, response.tag == request.tag else {
                return fail(.invalidField.withDoNotRetry)
            }
            let offset = Int(request.offset)
            let length = Int(command.dataPointer.length)
            guard offset + length <= response.data.readableBytes else { return fail(.invalidField.withDoNotRetry) }
            if length == 0 { return [complete(command, controller)] }
            return dataTransfer(
                command,
                controller,
                response.data.getSlice(at: response.data.readerIndex + offset, length: length)!
            )
        default:
            return fail(.invalidField.withDoNotRetry)
        }
    }

    private mutating func fabricsCommand(_ capsule: CapsuleCommand, _ controller: inout Controller) -> [Action] {
        let command = capsule.command
        switch FabricsCommand(command) {
        case .connect:
            return [complete(command, controller, status: .commandSequenceError.withDoNotRetry)]
        case .propertyGet(let size8, let offset):
            switch (offset, size8) {
            case (ControllerProperty.capabilities, true):
                let value = Self.capabilities
                return [
                    complete(
                        command,
                        controller,
                        result: UInt32(truncatingIfNeeded: value),
                        dw1: UInt32(truncatingIfNeeded: value >> 32)
                    )
                ]
            case (ControllerProperty.version, false):
                return [complete(command, controller, result: Self.version)]
            case (ControllerProperty.configuration, false):
                return [complete(command, controller, result: controller.configuration)]
            case (ControllerProperty.status, false):
                return [complete(command, controller, result: controller.status)]
            default:
                return [complete(command, controller, status: .invalidField.withDoNotRetry)]
            }
        case .propertySet(let size8, let offset, let value):
            guard offset == ControllerProperty.configuration, !size8 else {
                return [complete(command, controller, status: .invalidField.withDoNotRetry)]
            }
            let old = controller.configuration
            let new = UInt32(truncatingIfNeeded: value)
            controller.configuration = new
            if old & 1 == 1 && new & 1 == 0 {
                // Controller reset: a notice pending or masked belongs to the old association. Parked
                // requests stay parked, as with nvmet; they end with the connection.
                controller.eventPending = false
                controller.eventMasked = false
            }
            return [complete(command, controller)]
        case .disconnect:
            let done = complete(command, controller)
            state = .closed
            return [done, .close(reason: "host sent Disconnect")]
        case .authentication, .unknown:
            return [complete(command, controller, status: .invalidOpcode.withDoNotRetry)]
        }
    }

    private mutating func connectReceived(
        _ connect: ConnectCommand,
        _ capsule: CapsuleCommand,
        now: NIODeadline
    ) -> [Action] {
        let command = capsule.command
        func invalid(_ offset: UInt16, inData: Bool) -> [Action] {
            [
                complete(
                    command,
                    nil,
                    status: .connectInvalidParameters.withDoNotRetry,
                    result: ConnectResponse.invalidParameter(offset: offset, inData: inData)
                )
            ]
        }
        if capsule.dataDigestMismatch {
            return [complete(command, nil, status: .transientTransportError)]
        }
        guard command.dataPointer.isInCapsule else {
            return [complete(command, nil, status: .sglDescriptorTypeInvalid.withDoNotRetry)]
        }
        guard var data = capsule.data, data.readableBytes >= ConnectData.size,
            command.dataPointer.length == UInt32(data.readableBytes), command.dataPointer.address == 0
        else {
            return [complete(command, nil, status: .dataSGLLengthInvalid.withDoNotRetry)]
        }
        guard connect.recordFormat == 0 else {
            return [complete(command, nil, status: .connectIncompatibleFormat.withDoNotRetry)]
        }
        guard connect.queueIdentifier == 0 else {
            // A discovery controller has an admin queue only.
            return invalid(ConnectCommand.CommandOffset.queueIdentifier, inData: false)
        }
        guard connect.submissionQueueSize > 0, UInt64(connect.submissionQueueSize) <= Self.capabilities & 0xFFFF else {
            // SQSIZE is 0's based and at most CAP.MQES.
            return invalid(ConnectCommand.CommandOffset.submissionQueueSize, inData: false)
        }
        let connectData = data.readConnectData()!
        guard connectData.controllerIdentifier == 0xFFFF else {
            return invalid(ConnectData.Offset.controllerIdentifier, inData: true)
        }
        switch role {
        case .discovery:
            guard
                connectData.subsystemNQN == DEMCore.wellKnownDiscoveryNQN
                    || connectData.subsystemNQN == configuration.uniqueNQN
            else {
                return invalid(ConnectData.Offset.subsystemNQN, inData: true)
            }
        case .management:
            guard connectData.subsystemNQN == configuration.uniqueNQN else {
                return invalid(ConnectData.Offset.subsystemNQN, inData: true)
            }
        }
        guard NQN.isValid(connectData.hostNQN) else {
            return invalid(ConnectData.Offset.hostNQN, inData: true)
        }
        if case .management(let service) = role, !service.hostAllowed(connectData.hostNQN) {
            return [complete(command, nil, status: .connectInvalidHost.withDoNotRetry)]
        }
        let host = DiscoveryHostContext(
            hostNQN: connectData.hostNQN,
            hostIdentifier: connectData.hostIdentifier,
            subsystemNQN: connectData.subsystemNQN,
            localAddress: localAddress,
            remoteAddress: remoteAddress
        )
        let controllerIdentifier: UInt16
        switch role {
        case .discovery(let service): controllerIdentifier = service.allocateControllerIdentifier()
        case .management(let service): controllerIdentifier = service.allocateControllerIdentifier()
        }
        let controller = Controller(
            host: host,
            controllerIdentifier: controllerIdentifier,
            keepAliveTimeout: keepAliveTimeout(milliseconds: connect.keepAliveTimeout),
            lastActivity: now,
            submissionQueueSize: connect.submissionQueueSize,
            submissionQueueHead: UInt16(1 % (Int(connect.submissionQueueSize) + 1))
        )
        state = .connected(controller)
        return [
            complete(command, controller, result: ConnectResponse.success(controllerIdentifier: controllerIdentifier)),
            .controllerCreated(host, controllerIdentifier: controllerIdentifier),
            .scheduleKeepAliveCheck(after: controller.keepAliveTimeout),
        ]
    }

    private func keepAliveTimeout(milliseconds: UInt32) -> TimeAmount {
        milliseconds == 0 ? configuration.defaultKeepAliveTimeout : .milliseconds(Int64(milliseconds))
    }

    private func identify(_ command: SubmissionQueueEntry, _ controller: Controller) -> [Action] {
        let identify = IdentifyCommand(command)
        guard identify.controllerOrNamespaceStructure == IdentifyCommand.CNS.controller else {
            return [complete(command, controller, status: .invalidField.withDoNotRetry)]
        }
        guard command.dataPointer.isTransportDataBlock else {
            return [complete(command, controller, status: .sglDescriptorTypeInvalid.withDoNotRetry)]
        }
        guard command.dataPointer.length >= UInt32(IdentifyControllerData.size) else {
            return [complete(command, controller, status: .dataSGLLengthInvalid.withDoNotRetry)]
        }
        var data = IdentifyControllerData()
        data.serialNumber = configuration.serialNumber
        data.modelNumber = configuration.modelNumber
        data.firmwareRevision = configuration.firmwareRevision
        data.maximumDataTransferSize = UInt8(
            max(0, Int.bitWidth - 1 - (configuration.maximumTransferLength >> 12).leadingZeroBitCount)
        )
        data.controllerIdentifier = controller.controllerIdentifier
        data.version = Self.version
        if isManagementController {
            data.controllerType = IdentifyControllerData.ControllerType.administrative
        } else {
            data.optionalAsynchronousEventsSupported = AsynchronousEventConfiguration.discoveryLogPageChange
            data.controllerType = IdentifyControllerData.ControllerType.discovery
        }
        data.asynchronousEventRequestLimit = UInt8(clamping: configuration.asynchronousEventRequestLimit - 1)
        data.logPageAttributes = 1 << 2  // extended data for Get Log Page: offsets
        data.keepAliveSupport = 10  // 1 s granularity
        data.submissionQueueEntrySize = 0x66
        data.completionQueueEntrySize = 0x44
        data.maximumOutstandingCommands = 128
        data.sglSupport = 0x0010_0001  // SGLs; offsets for in-capsule data
        if configuration.keyedSGLs { data.sglSupport |= 1 << 2 }
        data.subsystemNQN = controller.host.subsystemNQN
        data.ioQueueCommandCapsuleSize = 4
        data.ioQueueResponseCapsuleSize = 1
        data.maximumSGLDataBlockDescriptors = 1
        data.discoveryControllerType = isManagementController ? 0 : configuration.discoveryControllerType
        var buffer = ByteBuffer()
        buffer.reserveCapacity(IdentifyControllerData.size)
        buffer.writeIdentifyControllerData(data)
        // CMIC bit 1: several controllers may serve the (unique) discovery subsystem at once.
        buffer.setInteger(UInt8(0x02), at: 76)
        return dataTransfer(command, controller, buffer)
    }

    private func getLogPage(_ command: SubmissionQueueEntry, _ controller: inout Controller) -> [Action] {
        let request = GetLogPageCommand(command)
        guard request.logPageIdentifier == LogPageIdentifier.discovery else {
            return [complete(command, controller, status: .invalidLogPage.withDoNotRetry)]
        }
        guard request.offset % 4 == 0 else {
            return [complete(command, controller, status: .invalidField.withDoNotRetry)]
        }
        guard command.dataPointer.isTransportDataBlock else {
            return [complete(command, controller, status: .sglDescriptorTypeInvalid.withDoNotRetry)]
        }
        guard UInt64(command.dataPointer.length) >= request.length else {
            return [complete(command, controller, status: .dataSGLLengthInvalid.withDoNotRetry)]
        }
        guard request.length <= UInt64(configuration.maximumTransferLength) else {
            return [complete(command, controller, status: .invalidField.withDoNotRetry)]
        }
        guard case .discovery(let service) = role else {
            return [complete(command, controller, status: .invalidLogPage.withDoNotRetry)]
        }
        let page = service.discoveryLogPage(for: controller.host)
        guard request.offset <= UInt64(page.readableBytes) else {
            return [complete(command, controller, status: .invalidField.withDoNotRetry)]
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
            controller.eventMasked = false
        }
        var actions = dataTransfer(command, controller, data)
        actions.append(.logPageRead(offset: request.offset, length: request.length))
        return actions
    }

    /// C2HData PDUs of at most `maximumC2HDataLength` bytes, then the CapsuleResp.
    private func dataTransfer(_ command: SubmissionQueueEntry, _ controller: Controller, _ data: ByteBuffer) -> [Action]
    {
        var actions: [Action] = []
        let total = data.readableBytes
        let chunk = max(configuration.maximumC2HDataLength, 4)
        actions.reserveCapacity(total / chunk + 2)
        var offset = 0
        while offset < total {
            let length = min(chunk, total - offset)
            actions.append(
                .send(
                    .controllerToHostData(
                        ControllerToHostData(
                            commandIdentifier: command.commandIdentifier,
                            dataOffset: UInt32(offset),
                            data: data.getSlice(at: data.readerIndex + offset, length: length)!,
                            isLast: offset + length == total
                        )
                    )
                )
            )
            offset += length
        }
        actions.append(complete(command, controller))
        return actions
    }

    private func complete(
        _ command: SubmissionQueueEntry,
        _ controller: Controller?,
        status: NVMeStatus = .success,
        result: UInt32 = 0,
        dw1: UInt32 = 0
    ) -> Action {
        .send(
            .capsuleResponse(
                CapsuleResponse(
                    completion: CompletionQueueEntry(
                        result: result,
                        dw1: dw1,
                        submissionQueueHead: controller?.submissionQueueHead ?? 0,
                        commandIdentifier: command.commandIdentifier,
                        status: status
                    )
                )
            )
        )
    }

    private mutating func terminate(
        _ status: NVMeTCPFatalErrorStatus,
        _ fieldErrorInformation: UInt32,
        _ reason: String,
        _ pdu: NVMeTCPPDU?
    ) -> [Action] {
        var header = ByteBuffer()
        if let pdu {
            var encoded = ByteBuffer()
            encoded.writeNVMeTCPPDU(pdu)
            header = encoded.getSlice(at: 0, length: min(pdu.type.headerLength, encoded.readableBytes))!
        }
        return transportErrorCaught(
            NVMeTCPTransportError(
                status,
                fieldErrorInformation: fieldErrorInformation,
                pduHeader: header,
                reason: reason
            )
        )
    }
}
