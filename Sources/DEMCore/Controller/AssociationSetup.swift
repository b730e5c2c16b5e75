import NIOCore

/// The Connect on the admin queue, checked: which host, which subsystem, which queue size. Pure;
/// the ``ControllerStateMachine`` makes the association when it is accepted. The service says
/// whether the host must then authenticate (DH-HMAC-CHAP) before its first admin command.
struct AssociationSetup {
    /// What becomes of a Connect.
    enum Outcome {
        /// The association may be made, for this host, which must then authenticate with this
        /// policy when there is one.
        case accepted(DiscoveryHostContext, authentication: DHCHAPPolicy?)
        /// Refused with this status and DW0 (the invalid parameter's place); `reason` is said
        /// in the log when the refusal is a policy's, not a malformed Connect's.
        case refused(NVMeStatus, result: UInt32, reason: String? = nil)
    }

    let configuration: DiscoveryControllerConfiguration
    let service: ControllerService
    let localAddress: String?
    let remoteAddress: String?

    func connect(_ connect: ConnectCommand, _ capsule: CapsuleCommand) -> Outcome {
        let command = capsule.command
        func invalid(_ offset: UInt16, inData: Bool) -> Outcome {
            .refused(
                .connectInvalidParameters.withDoNotRetry,
                result: ConnectResponse.invalidParameter(offset: offset, inData: inData)
            )
        }
        if capsule.dataDigestMismatch {
            return .refused(.transientTransportError, result: 0)
        }
        guard command.dataPointer.isInCapsule else {
            return .refused(.sglDescriptorTypeInvalid.withDoNotRetry, result: 0)
        }
        guard var data = capsule.data, data.readableBytes >= ConnectData.size,
            command.dataPointer.length == UInt32(data.readableBytes), command.dataPointer.address == 0
        else {
            return .refused(.dataSGLLengthInvalid.withDoNotRetry, result: 0)
        }
        guard connect.recordFormat == 0 else {
            return .refused(.connectIncompatibleFormat.withDoNotRetry, result: 0)
        }
        guard connect.queueIdentifier == 0 else {
            // These controllers have an admin queue only.
            return invalid(ConnectCommand.CommandOffset.queueIdentifier, inData: false)
        }
        guard connect.submissionQueueSize > 0,
            UInt64(connect.submissionQueueSize) <= ControllerStateMachine.capabilities & 0xFFFF
        else {
            // SQSIZE is 0's based and at most CAP.MQES.
            return invalid(ConnectCommand.CommandOffset.submissionQueueSize, inData: false)
        }
        let connectData = data.readConnectData()!
        guard connectData.controllerIdentifier == 0xFFFF else {
            return invalid(ConnectData.Offset.controllerIdentifier, inData: true)
        }
        switch service {
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
        if case .management(let management) = service, !management.hostAllowed(connectData.hostNQN) {
            return .refused(.connectInvalidHost.withDoNotRetry, result: 0)
        }
        let host = DiscoveryHostContext(
            hostNQN: connectData.hostNQN,
            hostIdentifier: connectData.hostIdentifier,
            subsystemNQN: connectData.subsystemNQN,
            localAddress: localAddress,
            remoteAddress: remoteAddress
        )
        switch service.authentication.authentication(for: host) {
        case .notRequired:
            if case .management = service {
                // The in-band channel is never open without DH-HMAC-CHAP.
                return .refused(
                    .connectInvalidHost.withDoNotRetry,
                    result: 0,
                    reason: "the management controller has no authentication policy for \(host.hostNQN)"
                )
            }
            return .accepted(host, authentication: nil)
        case .required(let policy):
            return .accepted(host, authentication: policy)
        case .refused(let reason):
            return .refused(.connectInvalidHost.withDoNotRetry, result: 0, reason: reason)
        }
    }
}
