import NIOCore

/// What a controller asks of the session around it, whatever the transport: timers, the
/// service's registration and metrics, and in-band requests. ``ControllerSessionDriver`` carries
/// them out for the NVMe/TCP handler and the NVMe/RDMA reactor alike.
public enum ControllerSessionAction: Sendable, Hashable {
    /// Call the controller's `keepAliveTimerFired(now:)` after this long (the keep-alive timer,
    /// and before the association is set up the setup timer).
    case scheduleKeepAliveCheck(after: TimeAmount)
    /// A controller was created for this host: register the connection for change notices.
    case controllerCreated(DiscoveryHostContext, controllerIdentifier: UInt16)
    /// A discovery-change notice was delivered to the host (for metrics).
    case asynchronousEventSent
    /// A discovery log page was read (for metrics).
    case logPageRead(offset: UInt64, length: UInt64)
    /// A Connect was refused by the service's policy (not for being malformed), for the log.
    case connectRefused(reason: String)
    /// The host proved itself with DH-HMAC-CHAP (with its policy's `hostKeys[keyIndex]`).
    case hostAuthenticated(DiscoveryHostContext, keyIndex: Int)
    /// The host failed DH-HMAC-CHAP; the association ends.
    case authenticationFailed(DiscoveryHostContext, reason: String)
    /// An authenticated host's in-band request message is complete: carry it out with
    /// ``ManagementControllerService/perform(_:host:)`` and pass the response message to the
    /// controller's `managementRequestCompleted(_:)`.
    case performManagementRequest(ByteBuffer, host: DiscoveryHostContext)
    /// A host's (or a discovery controller's) Discovery Information Management command passed
    /// the checks: carry it out with ``DiscoveryControllerService/discoveryInformation(_:host:)``
    /// and pass the status to the controller's `discoveryInformationCompleted(_:)`.
    case performDiscoveryInformation(DiscoveryInformationRequest, host: DiscoveryHostContext)
    /// A Discovery Information Management command was refused as Invalid Discovery
    /// Information (2Fh), for the log.
    case discoveryInformationRefused(reason: String)
}

/// One NVMe controller's admin queue, as a pure state machine that speaks NVMe and no transport:
/// command capsules and timer events in, completions (with the data for the host), closes and
/// ``ControllerSessionAction``s out. A transport binding (``NVMeTCPControllerBinding``,
/// ``NVMeRDMAControllerBinding``) turns completions into its own PDUs or work requests; a new
/// admin command is written here once and served on every transport.
///
/// It is composed of parts, each with its own state:
/// - association setup (``AssociationSetup``): the Connect is checked, the association made;
///   when the service demands it, DH-HMAC-CHAP (``DHCHAPControllerExchange``) in Authentication
///   Send/Receive between the Connect and any other admin command;
/// - the commands every controller answers here: properties, Identify, Keep Alive, features,
///   Disconnect;
/// - the controller's own commands, one of two chosen at creation: the discovery controller
///   (``DiscoveryLogController``: the log page and its change notices), or the in-band
///   management channel (``ManagementChannel``: a challenge, then dem-em's REST API in NVMe-MI
///   Send and Receive).
///
/// Lifecycle: (the transport's own setup, e.g. ICReq) → awaiting Connect → connected → closed.
public struct ControllerStateMachine {
    /// What the caller (a transport binding) must do.
    public enum Action: Sendable, Hashable {
        /// Complete a command: `data` (if any) goes to the host first, then the completion.
        case complete(CompletionQueueEntry, data: ByteBuffer?)
        /// End the association and close the connection.
        case close(reason: String)
        /// Something for the session around the controller.
        case session(ControllerSessionAction)
    }

    /// The controller's own commands and their state, per association.
    enum Personality {
        case discovery(DiscoveryLogController)
        case management(ManagementChannel)
    }

    /// One association: the host, the controller's registers and features, and its own part.
    struct Association {
        var host: DiscoveryHostContext
        var controllerIdentifier: UInt16
        var keepAliveTimeout: TimeAmount
        var lastActivity: NIODeadline
        var configuration: UInt32 = 0
        var asynchronousEventConfiguration: UInt32 = AsynchronousEventConfiguration.discoveryLogPageChange
        var submissionQueueSize: UInt16
        var submissionQueueHead: UInt16
        var personality: Personality
        /// The host's DH-HMAC-CHAP transaction, when the controller demands one.
        var authentication: DHCHAPControllerExchange?
        /// Until the host has authenticated: when it must have.
        var authenticationDeadline: NIODeadline?
        /// Whether a transaction has succeeded; it stays so while the host re-authenticates (a
        /// failed transaction ends the association).
        var authenticated = false

        /// Whether the host may use the controller (authenticated, or not asked to).
        var isAuthenticated: Bool { authentication == nil || authenticated }

        var status: UInt32 {
            // RDY follows EN until a shutdown completes (SHST 2h), as nvmet reports it.
            if (configuration >> 14) & 0x3 != 0 { return 2 << 2 }
            return configuration & 1
        }
        var isReady: Bool { configuration & 1 == 1 && (configuration >> 14) & 0x3 == 0 }

        /// The completion of `command` with this association's SQHD.
        func complete(
            _ command: SubmissionQueueEntry,
            status: NVMeStatus = .success,
            result: UInt32 = 0,
            dw1: UInt32 = 0,
            data: ByteBuffer? = nil
        ) -> Action {
            ControllerStateMachine.complete(
                command,
                head: submissionQueueHead,
                status: status,
                result: result,
                dw1: dw1,
                data: data
            )
        }
    }

    private enum State {
        /// The transport's own setup (ICReq/ICResp) is not done.
        case awaitingTransport
        case awaitingConnect
        case connected(Association)
        case closed
        case modifying
    }

    /// The CAP property: MQES 1023, CQR, TO 15 (7.5 s), CSS NVM — what Linux nvmet reports.
    public static let capabilities: UInt64 = 0x0000_0820_0F00_03FF
    /// The VS property: NVMe 1.3.
    public static let version: UInt32 = 0x0001_0300

    private var state: State
    /// Until the association is set up: when the step awaited now is due.
    private var setupDeadline: NIODeadline?
    /// The transport's setup step, named in the close when it does not come (`ICReq`).
    private let transportSetupStep: String?
    let configuration: DiscoveryControllerConfiguration
    let service: ControllerService
    private let localAddress: String?
    private let remoteAddress: String?

    /// - Parameters:
    ///   - configuration: the controller's fixed parameters.
    ///   - service: the discovery controller's log pages and controller IDs, or the management
    ///     controller's requests (it serves `configuration.uniqueNQN`, the management NQN, only).
    ///   - transportSetupStep: the transport's own setup step that comes before the Connect
    ///     (`ICReq`), or nil when the transport's queue is ready at once.
    ///   - localAddress: the local IP address of the connection (fills wildcard listener entries).
    ///   - remoteAddress: the host's address, for logs.
    public init(
        configuration: DiscoveryControllerConfiguration,
        serving service: ControllerService,
        transportSetupStep: String?,
        localAddress: String? = nil,
        remoteAddress: String? = nil
    ) {
        self.configuration = configuration
        self.service = service
        self.transportSetupStep = transportSetupStep
        self.state = transportSetupStep == nil ? .awaitingConnect : .awaitingTransport
        self.localAddress = localAddress
        self.remoteAddress = remoteAddress
    }

    /// Whether this is the in-band channel's controller.
    public var isManagementController: Bool {
        if case .management = service { return true }
        return false
    }

    /// Whether the connection has ended.
    public var isClosed: Bool {
        if case .closed = state { return true }
        return false
    }

    /// Whether the transport's own setup is still awaited.
    public var isAwaitingTransport: Bool {
        if case .awaitingTransport = state { return true }
        return false
    }

    /// The host, once it has connected.
    public var host: DiscoveryHostContext? {
        if case .connected(let association) = state { return association.host }
        return nil
    }

    // MARK: - Events

    /// The connection opened at `now`: the host must complete the transport's setup and its
    /// Connect within the setup timeout.
    public mutating func connectionOpened(now: NIODeadline) -> [Action] {
        switch state {
        case .awaitingTransport, .awaitingConnect: break
        default: return []
        }
        guard setupDeadline == nil else { return [] }
        setupDeadline = now + configuration.setupTimeout
        return [.session(.scheduleKeepAliveCheck(after: configuration.setupTimeout))]
    }

    /// The transport's own setup is done (NVMe/TCP: the ICResp is sent): the Connect is due
    /// within the setup timeout from `now`.
    public mutating func transportEstablished(now: NIODeadline) -> [Action] {
        guard case .awaitingTransport = state else { return [] }
        state = .awaitingConnect
        guard setupDeadline != nil else { return [] }
        setupDeadline = now + configuration.setupTimeout
        return [.session(.scheduleKeepAliveCheck(after: configuration.setupTimeout))]
    }

    /// A command capsule arrived: the SQE and any data the transport brought with it.
    public mutating func commandReceived(_ capsule: CapsuleCommand, now: NIODeadline) -> [Action] {
        let command = capsule.command
        switch state {
        case .closed, .awaitingTransport: return []
        case .modifying: preconditionFailure("state machine re-entered")
        case .awaitingConnect:
            // Only a Connect is allowed.
            if command.opcode == AdminOpcode.fabrics, case .connect(let connect) = FabricsCommand(command) {
                return connectReceived(connect, capsule, now: now)
            }
            return [Self.complete(command, head: 0, status: .commandSequenceError.withDoNotRetry)]
        case .connected(var association):
            state = .modifying
            association.lastActivity = now
            association.submissionQueueHead = UInt16(
                (Int(association.submissionQueueHead) + 1) % (Int(association.submissionQueueSize) + 1)
            )
            let actions = execute(capsule, &association)
            switch state {
            case .modifying: state = .connected(association)
            case .closed: break
            default: preconditionFailure("unexpected state after a command")
            }
            return actions
        }
    }

    /// The keep-alive timer scheduled by ``ControllerSessionAction/scheduleKeepAliveCheck(after:)`` fired.
    public mutating func keepAliveTimerFired(now: NIODeadline) -> [Action] {
        switch state {
        case .awaitingTransport, .awaitingConnect:
            guard let deadline = setupDeadline else { return [] }
            guard now >= deadline else { return [.session(.scheduleKeepAliveCheck(after: deadline - now))] }
            let step: String
            if case .awaitingTransport = state { step = transportSetupStep ?? "Connect" } else { step = "Connect" }
            state = .closed
            return [.close(reason: "no \(step) within the setup timeout of \(configuration.setupTimeout)")]
        case .connected(let association):
            if let deadline = association.authenticationDeadline {
                if now >= deadline {
                    state = .closed
                    return [.close(reason: "no DH-HMAC-CHAP authentication within \(configuration.setupTimeout)")]
                }
            }
            let expiry = association.lastActivity + association.keepAliveTimeout
            if now >= expiry {
                state = .closed
                return [.close(reason: "keep-alive timeout of \(association.keepAliveTimeout) expired")]
            }
            let next = min(expiry, association.authenticationDeadline ?? expiry)
            return [.session(.scheduleKeepAliveCheck(after: next - now))]
        case .closed, .modifying:
            return []
        }
    }

    /// The host's discovery log page changed: see ``DiscoveryLogController/logChanged(_:)``.
    public mutating func discoveryLogChanged() -> [Action] {
        modifyPersonality { personality, association in
            guard case .discovery(var discovery) = personality else { return [] }
            defer { personality = .discovery(discovery) }
            return discovery.logChanged(association)
        }
    }

    /// The request passed out by ``ControllerSessionAction/performManagementRequest(_:host:)``
    /// was carried out: see ``ManagementChannel/requestCompleted(_:_:)``.
    public mutating func managementRequestCompleted(_ response: ByteBuffer) -> [Action] {
        modifyPersonality { personality, association in
            guard case .management(var channel) = personality else { return [] }
            defer { personality = .management(channel) }
            return channel.requestCompleted(response, association)
        }
    }

    /// The registration passed out by
    /// ``ControllerSessionAction/performDiscoveryInformation(_:host:)`` was carried out: see
    /// ``DiscoveryLogController/discoveryInformationCompleted(_:_:)``.
    public mutating func discoveryInformationCompleted(_ status: NVMeStatus) -> [Action] {
        modifyPersonality { personality, association in
            guard case .discovery(var discovery) = personality else { return [] }
            defer { personality = .discovery(discovery) }
            return discovery.discoveryInformationCompleted(status, association)
        }
    }

    /// The connection closed (or the transport failed).
    public mutating func channelClosed() {
        state = .closed
    }

    private mutating func modifyPersonality(
        _ body: (inout Personality, Association) -> [Action]
    ) -> [Action] {
        guard case .connected(var association) = state else { return [] }
        state = .modifying
        let actions = body(&association.personality, association)
        state = .connected(association)
        return actions
    }

    // MARK: - Commands

    private mutating func execute(_ capsule: CapsuleCommand, _ association: inout Association) -> [Action] {
        let command = capsule.command
        func fail(_ status: NVMeStatus) -> [Action] { [association.complete(command, status: status)] }
        if case .discovery(let discovery) = association.personality, discovery.isParked(command.commandIdentifier) {
            return fail(.commandIdentifierConflict.withDoNotRetry)
        }
        if capsule.dataDigestMismatch {
            return fail(.transientTransportError)
        }
        if command.opcode == AdminOpcode.fabrics {
            return fabricsCommand(capsule, &association)
        }
        guard association.isAuthenticated else {
            return fail(.authenticationRequired.withDoNotRetry)
        }
        if let data = capsule.data, data.readableBytes > 0, !Self.takesHostData(command, association) {
            // No other admin command of these controllers takes host data.
            return fail(.invalidField.withDoNotRetry)
        }
        guard association.isReady else {
            return fail(.commandSequenceError.withDoNotRetry)
        }
        // The controller's own commands first.
        switch association.personality {
        case .discovery(var discovery):
            if let actions = discovery.execute(capsule, &association, configuration: configuration, service: service) {
                association.personality = .discovery(discovery)
                return actions
            }
        case .management(var channel):
            if let actions = channel.execute(capsule, association, service: service) {
                association.personality = .management(channel)
                return actions
            }
        }
        switch command.opcode {
        case AdminOpcode.identify:
            return [identify(command, association)]
        case AdminOpcode.keepAlive:
            return [association.complete(command)]
        case AdminOpcode.setFeatures:
            let features = FeaturesCommand(setFeatures: command)
            guard features.saveOrSelect == 0 else { return fail(.featureIdentifierNotSaveable.withDoNotRetry) }
            switch features.featureIdentifier {
            case FeatureIdentifier.keepAliveTimer:
                association.keepAliveTimeout = keepAliveTimeout(milliseconds: features.value)
                return [
                    association.complete(command),
                    .session(.scheduleKeepAliveCheck(after: association.keepAliveTimeout)),
                ]
            case FeatureIdentifier.asynchronousEventConfiguration:
                association.asynchronousEventConfiguration =
                    features.value & AsynchronousEventConfiguration.discoveryLogPageChange
                return [association.complete(command, result: association.asynchronousEventConfiguration)]
            default:
                return fail(.invalidField.withDoNotRetry)
            }
        case AdminOpcode.getFeatures:
            let features = FeaturesCommand(getFeatures: command)
            switch features.featureIdentifier {
            case FeatureIdentifier.keepAliveTimer:
                let milliseconds = association.keepAliveTimeout.nanoseconds / 1_000_000
                return [association.complete(command, result: UInt32(clamping: milliseconds))]
            case FeatureIdentifier.asynchronousEventConfiguration:
                return [association.complete(command, result: association.asynchronousEventConfiguration)]
            default:
                return fail(.invalidField.withDoNotRetry)
            }
        default:
            return fail(.invalidOpcode.withDoNotRetry)
        }
    }

    /// Whether `command` may bring host data on `association`: the controller's own commands
    /// that take some (NVMe-MI Send on a management association, Discovery Information
    /// Management on a discovery one).
    static func takesHostData(_ command: SubmissionQueueEntry, _ association: Association) -> Bool {
        switch association.personality {
        case .management: ManagementChannel.takesHostData(command)
        case .discovery: DiscoveryLogController.takesHostData(command)
        }
    }

    private mutating func fabricsCommand(_ capsule: CapsuleCommand, _ association: inout Association) -> [Action] {
        let command = capsule.command
        switch FabricsCommand(command) {
        case .connect:
            return [association.complete(command, status: .commandSequenceError.withDoNotRetry)]
        case .propertyGet(let size8, let offset):
            switch (offset, size8) {
            case (ControllerProperty.capabilities, true):
                let value = Self.capabilities
                return [
                    association.complete(
                        command,
                        result: UInt32(truncatingIfNeeded: value),
                        dw1: UInt32(truncatingIfNeeded: value >> 32)
                    )
                ]
            case (ControllerProperty.version, false):
                return [association.complete(command, result: Self.version)]
            case (ControllerProperty.configuration, false):
                return [association.complete(command, result: association.configuration)]
            case (ControllerProperty.status, false):
                return [association.complete(command, result: association.status)]
            default:
                return [association.complete(command, status: .invalidField.withDoNotRetry)]
            }
        case .propertySet(let size8, let offset, let value):
            guard offset == ControllerProperty.configuration, !size8 else {
                return [association.complete(command, status: .invalidField.withDoNotRetry)]
            }
            let old = association.configuration
            let new = UInt32(truncatingIfNeeded: value)
            association.configuration = new
            if old & 1 == 1 && new & 1 == 0, case .discovery(var discovery) = association.personality {
                discovery.controllerReset()
                association.personality = .discovery(discovery)
            }
            return [association.complete(command)]
        case .disconnect:
            let done = association.complete(command)
            state = .closed
            return [done, .close(reason: "host sent Disconnect")]
        case .authentication(let type):
            return authenticationCommand(type, capsule, &association)
        case .unknown:
            return [association.complete(command, status: .invalidOpcode.withDoNotRetry)]
        }
    }

    /// The most an Authentication Receive may ask for (a Challenge in ffdhe8192 with SHA-512 is
    /// 1104 bytes; Linux asks for 4096).
    static let maximumAuthenticationReceiveLength = 65_536

    /// Authentication Send or Receive: a step of the host's DH-HMAC-CHAP transaction.
    private mutating func authenticationCommand(
        _ type: UInt8,
        _ capsule: CapsuleCommand,
        _ association: inout Association
    ) -> [Action] {
        let command = capsule.command
        func fail(_ status: NVMeStatus) -> [Action] { [association.complete(command, status: status)] }
        let fields = AuthenticationCommand(command)
        guard fields.isDHCHAP else { return fail(.invalidField.withDoNotRetry) }
        guard var exchange = association.authentication else {
            // The host was not asked to authenticate.
            return fail(.commandSequenceError.withDoNotRetry)
        }
        let progress: DHCHAPControllerExchange.Progress
        var data: ByteBuffer?
        if type == FabricsCommandType.authenticationSend {
            guard fields.length > 0 else { return fail(.invalidField.withDoNotRetry) }
            guard let message = capsule.data, message.readableBytes == Int(fields.length),
                command.dataPointer.length == fields.length
            else { return fail(.dataSGLLengthInvalid.withDoNotRetry) }
            progress = exchange.sendReceived(message)
        } else {
            let length = Int(fields.length)
            guard length > 0, length <= Self.maximumAuthenticationReceiveLength else {
                return fail(.invalidField.withDoNotRetry)
            }
            guard command.dataPointer.isTransportDataBlock else {
                return fail(.sglDescriptorTypeInvalid.withDoNotRetry)
            }
            guard command.dataPointer.length >= fields.length else { return fail(.dataSGLLengthInvalid.withDoNotRetry) }
            guard let answer = exchange.receiveRequested(allocationLength: length) else {
                return fail(.invalidField.withDoNotRetry)
            }
            var message = answer.message
            // As nvmet: the whole allocation, the message first and zeros after it.
            message.writeZeros(length - message.readableBytes)
            data = message
            progress = answer.progress
        }
        association.authentication = exchange
        let done = association.complete(command, data: data)
        switch progress {
        case .continuing:
            return [done]
        case .authenticated(let keyIndex):
            association.authenticationDeadline = nil
            association.authenticated = true
            return [
                done,
                .session(.hostAuthenticated(association.host, keyIndex: keyIndex)),
                .session(.scheduleKeepAliveCheck(after: association.keepAliveTimeout)),
            ]
        case .failed(let reason):
            state = .closed
            return [
                done,
                .session(.authenticationFailed(association.host, reason: reason)),
                .close(reason: "DH-HMAC-CHAP failed: \(reason)"),
            ]
        }
    }

    private mutating func connectReceived(
        _ connect: ConnectCommand,
        _ capsule: CapsuleCommand,
        now: NIODeadline
    ) -> [Action] {
        let setup = AssociationSetup(
            configuration: configuration,
            service: service,
            localAddress: localAddress,
            remoteAddress: remoteAddress
        )
        switch setup.connect(connect, capsule) {
        case .refused(let status, let result, let reason):
            var actions = [Self.complete(capsule.command, head: 0, status: status, result: result)]
            if let reason { actions.append(.session(.connectRefused(reason: reason))) }
            return actions
        case .accepted(let host, let policy):
            let controllerIdentifier: UInt16
            let personality: Personality
            switch service {
            case .discovery(let discovery):
                controllerIdentifier = discovery.allocateControllerIdentifier()
                personality = .discovery(DiscoveryLogController())
            case .management(let management):
                controllerIdentifier = management.allocateControllerIdentifier()
                personality = .management(ManagementChannel())
            }
            var association = Association(
                host: host,
                controllerIdentifier: controllerIdentifier,
                keepAliveTimeout: keepAliveTimeout(milliseconds: connect.keepAliveTimeout),
                lastActivity: now,
                submissionQueueSize: connect.submissionQueueSize,
                submissionQueueHead: UInt16(1 % (Int(connect.submissionQueueSize) + 1)),
                personality: personality
            )
            var requirements: UInt16 = 0
            var firstCheck = association.keepAliveTimeout
            if let policy {
                association.authentication = DHCHAPControllerExchange(
                    policy: policy,
                    hostNQN: host.hostNQN,
                    subsystemNQN: host.subsystemNQN
                )
                association.authenticationDeadline = now + configuration.setupTimeout
                requirements = DHCHAP.authenticationRequired
                firstCheck = min(firstCheck, configuration.setupTimeout)
            }
            state = .connected(association)
            return [
                association.complete(
                    capsule.command,
                    result: ConnectResponse.success(
                        controllerIdentifier: controllerIdentifier,
                        authenticationRequirements: requirements
                    )
                ),
                .session(.controllerCreated(host, controllerIdentifier: controllerIdentifier)),
                .session(.scheduleKeepAliveCheck(after: firstCheck)),
            ]
        }
    }

    private func keepAliveTimeout(milliseconds: UInt32) -> TimeAmount {
        milliseconds == 0 ? configuration.defaultKeepAliveTimeout : .milliseconds(Int64(milliseconds))
    }

    private func identify(_ command: SubmissionQueueEntry, _ association: Association) -> Action {
        let identify = IdentifyCommand(command)
        guard identify.controllerOrNamespaceStructure == IdentifyCommand.CNS.controller else {
            return association.complete(command, status: .invalidField.withDoNotRetry)
        }
        guard command.dataPointer.isTransportDataBlock else {
            return association.complete(command, status: .sglDescriptorTypeInvalid.withDoNotRetry)
        }
        guard command.dataPointer.length >= UInt32(IdentifyControllerData.size) else {
            return association.complete(command, status: .dataSGLLengthInvalid.withDoNotRetry)
        }
        var data = IdentifyControllerData()
        data.serialNumber = configuration.serialNumber
        data.modelNumber = configuration.modelNumber
        data.firmwareRevision = configuration.firmwareRevision
        data.maximumDataTransferSize = UInt8(
            max(0, Int.bitWidth - 1 - (configuration.maximumTransferLength >> 12).leadingZeroBitCount)
        )
        data.controllerIdentifier = association.controllerIdentifier
        data.version = Self.version
        switch association.personality {
        case .management:
            data.controllerType = IdentifyControllerData.ControllerType.administrative
            data.discoveryControllerType = 0
        case .discovery:
            data.optionalAsynchronousEventsSupported = AsynchronousEventConfiguration.discoveryLogPageChange
            data.controllerType = IdentifyControllerData.ControllerType.discovery
            data.discoveryControllerType = configuration.discoveryControllerType
        }
        data.asynchronousEventRequestLimit = UInt8(clamping: configuration.asynchronousEventRequestLimit - 1)
        data.logPageAttributes = 1 << 2  // extended data for Get Log Page: offsets
        data.keepAliveSupport = 10  // 1 s granularity
        data.submissionQueueEntrySize = 0x66
        data.completionQueueEntrySize = 0x44
        data.maximumOutstandingCommands = 128
        data.sglSupport = 0x0010_0001  // SGLs; offsets for in-capsule data
        if configuration.keyedSGLs { data.sglSupport |= 1 << 2 }
        data.subsystemNQN = association.host.subsystemNQN
        data.ioQueueCommandCapsuleSize = 4
        data.ioQueueResponseCapsuleSize = 1
        data.maximumSGLDataBlockDescriptors = 1
        var buffer = ByteBuffer()
        buffer.reserveCapacity(IdentifyControllerData.size)
        buffer.writeIdentifyControllerData(data)
        // CMIC bit 1: several controllers may serve the (unique) discovery subsystem at once.
        buffer.setInteger(UInt8(0x02), at: 76)
        return association.complete(command, data: buffer)
    }

    /// The completion of `command`.
    static func complete(
        _ command: SubmissionQueueEntry,
        head: UInt16,
        status: NVMeStatus = .success,
        result: UInt32 = 0,
        dw1: UInt32 = 0,
        data: ByteBuffer? = nil
    ) -> Action {
        .complete(
            CompletionQueueEntry(
                result: result,
                dw1: dw1,
                submissionQueueHead: head,
                commandIdentifier: command.commandIdentifier,
                status: status
            ),
            data: data
        )
    }
}
