import DEMCore
import Synchronization

/// A host's DH-HMAC-CHAP keys as dem keeps them: kept apart from the fabric model (never in
/// `/host`, `/dem/config`, events or logs), in the store only, and shown to admin tokens alone.
public struct HostKey: Codable, Sendable, Hashable {
    /// The host's secret (`DHHC-1:…`), which the host must prove it holds.
    public var secret: String
    /// The controller's secret, when the host may ask dem to prove itself too (bidirectional).
    public var controllerSecret: String?
    /// The host's previous secret, still accepted until the host has authenticated with the new
    /// one (then it is retired).
    public var previousSecret: String?
    /// The hash dem picks: sha256, sha384 or sha512.
    public var hash: String
    /// The DH group dem picks: null, ffdhe2048 … ffdhe8192.
    public var group: String

    enum CodingKeys: String, CodingKey {
        case secret = "Secret"
        case controllerSecret = "ControllerSecret"
        case previousSecret = "PreviousSecret"
        case hash = "Hash"
        case group = "DHGroup"
    }

    public init(
        secret: String,
        controllerSecret: String? = nil,
        previousSecret: String? = nil,
        hash: String = "sha256",
        group: String = "ffdhe2048"
    ) {
        self.secret = secret
        self.controllerSecret = controllerSecret
        self.previousSecret = previousSecret
        self.hash = hash
        self.group = group
    }

    /// The policy a controller applies, or why the stored key cannot be used.
    public func policy() throws(DHCHAPSecret.FormatError) -> DHCHAPPolicy {
        var keys = [try DHCHAPSecret(parsing: secret)]
        if let previousSecret { keys.append(try DHCHAPSecret(parsing: previousSecret)) }
        return DHCHAPPolicy(
            hostKeys: keys,
            controllerKey: try controllerSecret.map { text throws(DHCHAPSecret.FormatError) in
                try DHCHAPSecret(parsing: text)
            },
            hash: DHCHAP.Hash(name: hash) ?? .sha256,
            group: DHCHAP.Group(name: group) ?? .ffdhe2048
        )
    }
}

/// Which hosts must authenticate, with which keys: the index the discovery controller reads on
/// every Connect (by host NQN), rebuilt when hosts or keys change.
public final class HostKeyring: HostAuthenticationService {
    /// Whether a host without a key may connect.
    public enum Requirement: String, Sendable, CaseIterable {
        /// Hosts with a key must authenticate; others connect as before.
        case optional
        /// Every host must have a key and authenticate; others are refused at Connect.
        case required
    }

    public let requirement: Requirement
    private let policies = Mutex<[String: DHCHAPPolicy]>([:])
    private let authenticated = Mutex<(@Sendable (DiscoveryHostContext, Int) -> Void)?>(nil)
    /// Authentications that succeeded and failed since the start.
    public let successes = Atomic<Int>(0)
    public let failures = Atomic<Int>(0)

    public init(requirement: Requirement) {
        self.requirement = requirement
    }

    /// Calls `handler` when a host proved itself, with the index of the key that matched (1:
    /// the previous key).
    public func onAuthenticated(_ handler: @escaping @Sendable (DiscoveryHostContext, Int) -> Void) {
        authenticated.withLock { $0 = handler }
    }

    /// Replaces the index: each host NQN's policy.
    public func update(_ byNQN: [String: DHCHAPPolicy]) {
        policies.withLock { $0 = byNQN }
    }

    /// How many hosts have keys.
    public var count: Int { policies.withLock { $0.count } }

    public func authentication(for host: DiscoveryHostContext) -> HostAuthentication {
        if let policy = policies.withLock({ $0[host.hostNQN] }) { return .required(policy) }
        switch requirement {
        case .optional: return .notRequired
        case .required: return .refused("\(host.hostNQN) has no DH-HMAC-CHAP key and dem runs with --auth required")
        }
    }

    public func hostAuthenticated(_ host: DiscoveryHostContext, keyIndex: Int) {
        successes.add(1, ordering: .relaxed)
        authenticated.withLock { $0 }?(host, keyIndex)
    }

    public func authenticationFailed(_ host: DiscoveryHostContext, reason: String) {
        failures.add(1, ordering: .relaxed)
    }
}
