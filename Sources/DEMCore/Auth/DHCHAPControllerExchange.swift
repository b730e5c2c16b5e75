import NIOCore

/// What a controller demands of one host: the keys it proves itself with and the hash and
/// group the controller chooses.
public struct DHCHAPPolicy: Sendable, Hashable {
    /// The host's keys: the current one first, then any older ones still accepted while the
    /// host switches (key rotation).
    public var hostKeys: [DHCHAPSecret]
    /// The controller's key, when the host may ask the controller to prove itself too
    /// (bidirectional authentication); a host asking without one configured is refused.
    public var controllerKey: DHCHAPSecret?
    /// The hash function the controller picks (the host must offer it).
    public var hash: DHCHAP.Hash
    /// The DH group the controller picks (the host must offer it).
    public var group: DHCHAP.Group

    public init(
        hostKeys: [DHCHAPSecret],
        controllerKey: DHCHAPSecret? = nil,
        hash: DHCHAP.Hash = .sha256,
        group: DHCHAP.Group = .ffdhe2048
    ) {
        self.hostKeys = hostKeys
        self.controllerKey = controllerKey
        self.hash = hash
        self.group = group
    }
}

/// The controller's side of one DH-HMAC-CHAP transaction on one queue, as a pure state
/// machine: the data of each Authentication Send in, the data of each Authentication Receive
/// out. A failure is reported the way NVMe says: the next Authentication Receive returns
/// AUTH_Failure1, after which the association ends.
///
/// Negotiate → (Receive) Challenge → Reply → (Receive) Success1 → [Success2 when the host asked
/// the controller to authenticate too]. A Negotiate at any point starts a new transaction
/// (re-authentication).
public struct DHCHAPControllerExchange {
    /// Where the exchange stands after a message.
    public enum Progress: Sendable, Hashable {
        /// More messages are due.
        case continuing
        /// The host is authenticated (with `hostKeys[keyIndex]`), and the controller too when it
        /// was asked.
        case authenticated(keyIndex: Int)
        /// The transaction failed: end the association (after the Failure1, when one was due).
        case failed(String)
    }

    private enum State {
        case awaitingNegotiate
        case challengeDue(transaction: UInt16)
        case awaitingReply(transaction: UInt16, challenge: [UInt8], sequence: UInt32, keyPair: (any DHCHAPKeyPair)?)
        case success1Due(transaction: UInt16, keyIndex: Int, response: [UInt8]?)
        case awaitingSuccess2(transaction: UInt16, keyIndex: Int)
        case authenticated(keyIndex: Int)
        case failure1Due(transaction: UInt16, reason: DHCHAP.FailureReason, detail: String)
        case failed(String)
    }

    public let policy: DHCHAPPolicy
    public let hostNQN: String
    public let subsystemNQN: String
    private let entropy: DHCHAPEntropy
    private var state: State = .awaitingNegotiate

    public init(policy: DHCHAPPolicy, hostNQN: String, subsystemNQN: String, entropy: DHCHAPEntropy = .system) {
        self.policy = policy
        self.hostNQN = hostNQN
        self.subsystemNQN = subsystemNQN
        self.entropy = entropy
    }

    /// Whether the host has proven itself (and no new transaction is under way).
    public var isAuthenticated: Bool {
        if case .authenticated = state { return true }
        return false
    }

    /// The data of an Authentication Send arrived.
    public mutating func sendReceived(_ data: ByteBuffer) -> Progress {
        let message: AuthenticationMessage
        do {
            message = try AuthenticationMessage(parsing: data)
        } catch {
            return fail(transaction: currentTransaction, error.reason, error.description)
        }
        if case .negotiate(let negotiate) = message {
            return negotiated(negotiate)
        }
        if case .failure2(let failure) = message {
            let reason = failure.reason?.description ?? "explanation \(failure.explanation)"
            state = .failed("the host ended authentication with AUTH_Failure2: \(reason)")
            return .failed("the host ended authentication with AUTH_Failure2: \(reason)")
        }
        switch (state, message) {
        case (.awaitingReply(let transaction, let challenge, let sequence, let keyPair), .reply(let reply)):
            guard reply.transactionIdentifier == transaction else {
                return fail(
                    transaction: transaction,
                    .incorrectPayload,
                    "DH-HMAC-CHAP_Reply of transaction \(reply.transactionIdentifier), not \(transaction)"
                )
            }
            return replied(reply, challenge: challenge, sequence: sequence, keyPair: keyPair, transaction: transaction)
        case (.awaitingSuccess2(let transaction, let keyIndex), .success2(let identifier)):
            guard identifier == transaction else {
                return fail(
                    transaction: transaction,
                    .incorrectPayload,
                    "DH-HMAC-CHAP_Success2 of transaction \(identifier), not \(transaction)"
                )
            }
            state = .authenticated(keyIndex: keyIndex)
            return .authenticated(keyIndex: keyIndex)
        default:
            return fail(
                transaction: currentTransaction,
                .incorrectProtocolMessage,
                "\(message.name) when \(awaited) was due"
            )
        }
    }

    /// An Authentication Receive asks for the next message: nil when none is due that fits in
    /// `allocationLength` bytes (complete the command with Invalid Field, the state unchanged).
    public mutating func receiveRequested(allocationLength: Int) -> (message: ByteBuffer, progress: Progress)? {
        switch state {
        case .challengeDue(let transaction):
            let dhLength = policy.group.valueLength
            guard allocationLength >= 16 + policy.hash.length + dhLength else { return nil }
            let challenge = entropy.randomBytes(policy.hash.length)
            let sequence = entropy.sequenceNumber()
            var keyPair: (any DHCHAPKeyPair)?
            if policy.group != .null {
                do {
                    keyPair = try entropy.keyPair(policy.group)
                } catch {
                    return failure1(transaction: transaction, .groupUnusable, "\(error)")
                }
            }
            state = .awaitingReply(transaction: transaction, challenge: challenge, sequence: sequence, keyPair: keyPair)
            let message = AuthenticationMessage.challenge(
                .init(
                    transactionIdentifier: transaction,
                    hashIdentifier: policy.hash.rawValue,
                    groupIdentifier: policy.group.rawValue,
                    sequenceNumber: sequence,
                    challenge: challenge,
                    dhValue: keyPair?.publicValue ?? []
                )
            )
            return (message.bytes, .continuing)
        case .success1Due(let transaction, let keyIndex, let response):
            guard allocationLength >= 16 + (response?.count ?? 0) else { return nil }
            let message = AuthenticationMessage.success1(
                .init(transactionIdentifier: transaction, hashLength: UInt8(policy.hash.length), response: response)
            )
            if response == nil {
                state = .authenticated(keyIndex: keyIndex)
                return (message.bytes, .authenticated(keyIndex: keyIndex))
            }
            state = .awaitingSuccess2(transaction: transaction, keyIndex: keyIndex)
            return (message.bytes, .continuing)
        case .failure1Due(let transaction, let reason, let detail):
            guard allocationLength >= 8 else { return nil }
            return failure1(transaction: transaction, reason, detail)
        default:
            guard allocationLength >= 8 else { return nil }
            return failure1(
                transaction: currentTransaction,
                .incorrectProtocolMessage,
                "Authentication Receive when \(awaited) was due"
            )
        }
    }

    // MARK: - Steps

    private mutating func negotiated(_ negotiate: AuthenticationMessage.Negotiate) -> Progress {
        let transaction = negotiate.transactionIdentifier
        guard negotiate.secureChannelConcatenation == 0 else {
            return fail(
                transaction: transaction,
                .concatenationMismatch,
                "the host asked for secure channel concatenation, which is not offered"
            )
        }
        guard let offer = negotiate.protocols.first(where: { $0.identifier == DHCHAP.authenticationProtocolIdentifier })
        else {
            return fail(transaction: transaction, .protocolUnusable, "the host does not offer DH-HMAC-CHAP")
        }
        guard offer.hashIdentifiers.contains(policy.hash.rawValue) else {
            return fail(
                transaction: transaction,
                .hashUnusable,
                "the host does not offer \(policy.hash) (it offers IDs \(offer.hashIdentifiers))"
            )
        }
        guard offer.groupIdentifiers.contains(policy.group.rawValue) else {
            return fail(
                transaction: transaction,
                .groupUnusable,
                "the host does not offer DH group \(policy.group) (it offers IDs \(offer.groupIdentifiers))"
            )
        }
        state = .challengeDue(transaction: transaction)
        return .continuing
    }

    private mutating func replied(
        _ reply: AuthenticationMessage.Reply,
        challenge: [UInt8],
        sequence: UInt32,
        keyPair: (any DHCHAPKeyPair)?,
        transaction: UInt16
    ) -> Progress {
        let hash = policy.hash
        guard reply.response.count == hash.length else {
            return fail(
                transaction: transaction,
                .incorrectPayload,
                "DH-HMAC-CHAP_Reply with HL \(reply.response.count), \(hash) needs \(hash.length)"
            )
        }
        guard reply.dhValue.count == policy.group.valueLength else {
            return fail(
                transaction: transaction,
                .incorrectPayload,
                "DH-HMAC-CHAP_Reply with a \(reply.dhValue.count)-byte DH value, \(policy.group) needs \(policy.group.valueLength)"
            )
        }
        var sharedSecret: [UInt8]?
        if let keyPair {
            do {
                sharedSecret = try keyPair.sharedSecret(peerPublicValue: reply.dhValue)
            } catch {
                return fail(transaction: transaction, .groupUnusable, "\(error)")
            }
        }
        let augmented = DHCHAP.augmentedChallenge(challenge, hash: hash, sharedSecret: sharedSecret)
        var matched: Int?
        for (index, key) in policy.hostKeys.enumerated() {
            let expected = DHCHAP.hostResponse(
                key: key.transformedKey(nqn: hostNQN),
                hash: hash,
                challenge: augmented,
                sequenceNumber: sequence,
                transactionIdentifier: transaction,
                hostNQN: hostNQN,
                subsystemNQN: subsystemNQN
            )
            if DHCHAP.responsesEqual(expected, reply.response), matched == nil { matched = index }
        }
        guard let keyIndex = matched else {
            return fail(transaction: transaction, .failed, "the host's response does not match its key")
        }
        // S2 = 0: the host carries C2 without asking the controller to authenticate.
        guard let hostChallenge = reply.challenge, reply.sequenceNumber != 0 else {
            state = .success1Due(transaction: transaction, keyIndex: keyIndex, response: nil)
            return .continuing
        }
        guard hostChallenge.count == hash.length else {
            return fail(transaction: transaction, .incorrectPayload, "C2 is not \(hash.length) bytes")
        }
        guard let controllerKey = policy.controllerKey else {
            return fail(
                transaction: transaction,
                .failed,
                "the host asks the controller to authenticate, and no controller key is configured for it"
            )
        }
        let response = DHCHAP.controllerResponse(
            key: controllerKey.transformedKey(nqn: subsystemNQN),
            hash: hash,
            challenge: DHCHAP.augmentedChallenge(hostChallenge, hash: hash, sharedSecret: sharedSecret),
            sequenceNumber: reply.sequenceNumber,
            transactionIdentifier: transaction,
            hostNQN: hostNQN,
            subsystemNQN: subsystemNQN
        )
        state = .success1Due(transaction: transaction, keyIndex: keyIndex, response: response)
        return .continuing
    }

    /// The transaction goes on to AUTH_Failure1 at the next Authentication Receive.
    private mutating func fail(transaction: UInt16, _ reason: DHCHAP.FailureReason, _ detail: String) -> Progress {
        state = .failure1Due(transaction: transaction, reason: reason, detail: detail)
        return .continuing
    }

    private mutating func failure1(
        transaction: UInt16,
        _ reason: DHCHAP.FailureReason,
        _ detail: String
    ) -> (message: ByteBuffer, progress: Progress) {
        state = .failed(detail)
        let message = AuthenticationMessage.failure1(.init(transactionIdentifier: transaction, reason: reason))
        return (message.bytes, .failed("\(reason): \(detail)"))
    }

    private var currentTransaction: UInt16 {
        switch state {
        case .challengeDue(let t), .awaitingReply(let t, _, _, _), .success1Due(let t, _, _),
            .awaitingSuccess2(let t, _), .failure1Due(let t, _, _):
            return t
        case .awaitingNegotiate, .authenticated, .failed:
            return 0
        }
    }

    private var awaited: String {
        switch state {
        case .awaitingNegotiate: "AUTH_Negotiate"
        case .challengeDue: "an Authentication Receive of DH-HMAC-CHAP_Challenge"
        case .awaitingReply: "DH-HMAC-CHAP_Reply"
        case .success1Due: "an Authentication Receive of DH-HMAC-CHAP_Success1"
        case .awaitingSuccess2: "DH-HMAC-CHAP_Success2"
        case .authenticated: "nothing (authenticated)"
        case .failure1Due: "an Authentication Receive of AUTH_Failure1"
        case .failed: "nothing (failed)"
        }
    }
}
