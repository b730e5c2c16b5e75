import NIOCore

/// The host's side of one DH-HMAC-CHAP transaction on one queue, as a pure state machine: it
/// says what to send with Authentication Send and reads what each Authentication Receive
/// returned. Bidirectional when it has the controller's key.
///
/// ``start()`` gives AUTH_Negotiate; the Challenge gives the Reply; Success1 ends a
/// unidirectional transaction, or gives Success2 (R2 verified) or AUTH_Failure2 (R2 wrong).
public struct DHCHAPHostExchange {
    /// What to do next.
    public enum Step: Sendable, Hashable {
        /// Send this message, then ask for the controller's next one.
        case send(AuthenticationMessage)
        /// Send this message (Success2); the queue is authenticated.
        case sendAndFinish(AuthenticationMessage)
        /// The queue is authenticated (unidirectional: nothing more to send).
        case finished
        /// Authentication failed: send this AUTH_Failure2 when there is one, then give up.
        case failed(AuthenticationMessage?, String)
    }

    private enum State {
        case idle
        case awaitingChallenge
        case awaitingSuccess1(hash: DHCHAP.Hash, challenge: [UInt8]?, sequence: UInt32, sharedSecret: [UInt8]?)
        case done
    }

    public let hostNQN: String
    public let subsystemNQN: String
    public let hostKey: DHCHAPSecret
    /// The controller's key: when set, the host asks the controller to authenticate too.
    public let controllerKey: DHCHAPSecret?
    /// T_ID of the transaction (a per-controller counter in Linux; 0 for the admin queue).
    public let transactionIdentifier: UInt16
    /// The hashes and groups offered, in order of preference.
    public var hashes: [DHCHAP.Hash] = DHCHAP.Hash.allCases
    public var groups: [DHCHAP.Group] = DHCHAP.Group.allCases
    private let entropy: DHCHAPEntropy
    private var state: State = .idle

    public init(
        hostNQN: String,
        subsystemNQN: String,
        hostKey: DHCHAPSecret,
        controllerKey: DHCHAPSecret? = nil,
        transactionIdentifier: UInt16 = 0,
        entropy: DHCHAPEntropy = .system
    ) {
        self.hostNQN = hostNQN
        self.subsystemNQN = subsystemNQN
        self.hostKey = hostKey
        self.controllerKey = controllerKey
        self.transactionIdentifier = transactionIdentifier
        self.entropy = entropy
    }

    /// The AUTH_Negotiate that opens the transaction.
    public mutating func start() -> AuthenticationMessage {
        state = .awaitingChallenge
        return .negotiate(
            .init(
                transactionIdentifier: transactionIdentifier,
                protocols: [
                    .init(
                        identifier: DHCHAP.authenticationProtocolIdentifier,
                        hashIdentifiers: hashes.map(\.rawValue),
                        groupIdentifiers: groups.map(\.rawValue)
                    )
                ]
            )
        )
    }

    /// What an Authentication Receive returned.
    public mutating func received(_ data: ByteBuffer) -> Step {
        let message: AuthenticationMessage
        do {
            message = try AuthenticationMessage(parsing: data)
        } catch {
            return fail(error.reason, error.description)
        }
        if case .failure1(let failure) = message {
            state = .done
            let reason = failure.reason?.description ?? "explanation \(failure.explanation)"
            return .failed(nil, "the controller refused authentication (AUTH_Failure1: \(reason))")
        }
        guard message.transactionIdentifier == transactionIdentifier else {
            return fail(
                .incorrectPayload,
                "\(message.name) of transaction \(message.transactionIdentifier), not \(transactionIdentifier)"
            )
        }
        switch (state, message) {
        case (.awaitingChallenge, .challenge(let challenge)):
            return challenged(challenge)
        case (.awaitingSuccess1(let hash, let challenge, let sequence, let sharedSecret), .success1(let success)):
            state = .done
            guard let challenge else { return .finished }
            guard let response = success.response, response.count == hash.length else {
                return fail(.failed, "the controller did not answer the host's challenge")
            }
            let expected = DHCHAP.controllerResponse(
                key: controllerKey!.transformedKey(nqn: subsystemNQN),
                hash: hash,
                challenge: DHCHAP.augmentedChallenge(challenge, hash: hash, sharedSecret: sharedSecret),
                sequenceNumber: sequence,
                transactionIdentifier: transactionIdentifier,
                hostNQN: hostNQN,
                subsystemNQN: subsystemNQN
            )
            guard DHCHAP.responsesEqual(expected, response) else {
                return fail(.failed, "the controller's response does not match its key")
            }
            return .sendAndFinish(.success2(transactionIdentifier: transactionIdentifier))
        default:
            return fail(.incorrectProtocolMessage, "\(message.name) was not expected now")
        }
    }

    private mutating func challenged(_ challenge: AuthenticationMessage.Challenge) -> Step {
        guard let hash = DHCHAP.Hash(rawValue: challenge.hashIdentifier), hashes.contains(hash) else {
            return fail(
                .hashUnusable,
                "the controller chose hash ID \(challenge.hashIdentifier), which was not offered"
            )
        }
        guard let group = DHCHAP.Group(rawValue: challenge.groupIdentifier), groups.contains(group) else {
            return fail(
                .groupUnusable,
                "the controller chose DH group ID \(challenge.groupIdentifier), which was not offered"
            )
        }
        guard challenge.challenge.count == hash.length else {
            return fail(.incorrectPayload, "a \(challenge.challenge.count)-byte challenge for \(hash)")
        }
        guard challenge.dhValue.count == group.valueLength else {
            return fail(
                .incorrectPayload,
                "a \(challenge.dhValue.count)-byte DH value for \(group), which needs \(group.valueLength)"
            )
        }
        var sharedSecret: [UInt8]?
        var publicValue: [UInt8] = []
        if group != .null {
            do {
                let keyPair = try entropy.keyPair(group)
                sharedSecret = try keyPair.sharedSecret(peerPublicValue: challenge.dhValue)
                publicValue = keyPair.publicValue
            } catch {
                return fail(.incorrectPayload, "\(error)")
            }
        }
        let response = DHCHAP.hostResponse(
            key: hostKey.transformedKey(nqn: hostNQN),
            hash: hash,
            challenge: DHCHAP.augmentedChallenge(challenge.challenge, hash: hash, sharedSecret: sharedSecret),
            sequenceNumber: challenge.sequenceNumber,
            transactionIdentifier: transactionIdentifier,
            hostNQN: hostNQN,
            subsystemNQN: subsystemNQN
        )
        var hostChallenge: [UInt8]?
        var sequence: UInt32 = 0
        if controllerKey != nil {
            hostChallenge = entropy.randomBytes(hash.length)
            sequence = entropy.sequenceNumber()
        }
        state = .awaitingSuccess1(hash: hash, challenge: hostChallenge, sequence: sequence, sharedSecret: sharedSecret)
        return .send(
            .reply(
                .init(
                    transactionIdentifier: transactionIdentifier,
                    response: response,
                    challenge: hostChallenge,
                    sequenceNumber: sequence,
                    dhValue: publicValue
                )
            )
        )
    }

    private mutating func fail(_ reason: DHCHAP.FailureReason, _ detail: String) -> Step {
        state = .done
        return .failed(.failure2(.init(transactionIdentifier: transactionIdentifier, reason: reason)), detail)
    }
}
