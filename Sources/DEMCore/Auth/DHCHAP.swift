import Crypto

/// NVMe in-band authentication with DH-HMAC-CHAP (NVMe Base 2.1 §8.3.4, TP8006): the
/// identifiers and the computations both ends share. The messages are
/// ``AuthenticationMessage``; the exchanges are ``DHCHAPControllerExchange`` (the controller's
/// side) and ``DHCHAPHostExchange`` (the host's).
public enum DHCHAP {
    /// The security protocol of Authentication Send/Receive (SECP): NVMe in-band authentication.
    public static let securityProtocol: UInt8 = 0xE9
    /// SPSP0 and SPSP1 of Authentication Send/Receive for DH-HMAC-CHAP.
    public static let securityProtocolSpecific: UInt8 = 0x01
    /// The authentication protocol identifier of DH-HMAC-CHAP in AUTH_Negotiate.
    public static let authenticationProtocolIdentifier: UInt8 = 0x01
    /// AUTHREQ in a Connect response: authentication required (ATR, bit 1).
    public static let authenticationRequired: UInt16 = 1 << 1

    /// The hash functions (HMAC) of DH-HMAC-CHAP.
    public enum Hash: UInt8, Sendable, Hashable, CaseIterable, CustomStringConvertible {
        case sha256 = 1
        case sha384 = 2
        case sha512 = 3

        /// HL: the length of challenges and responses, in bytes.
        public var length: Int {
            switch self {
            case .sha256: 32
            case .sha384: 48
            case .sha512: 64
            }
        }

        public var description: String {
            switch self {
            case .sha256: "sha256"
            case .sha384: "sha384"
            case .sha512: "sha512"
            }
        }

        /// The hash named `sha256`, `hmac(sha256)` (the kernel's spelling) and so on.
        public init?(name: String) {
            var text = name.lowercased()
            if text.hasPrefix("hmac(") && text.hasSuffix(")") { text = String(text.dropFirst(5).dropLast()) }
            guard let hash = Self.allCases.first(where: { $0.description == text }) else { return nil }
            self = hash
        }

        /// HMAC of `message` with `key`.
        public func hmac(key: [UInt8], _ message: [UInt8]) -> [UInt8] {
            let key = SymmetricKey(data: key)
            switch self {
            case .sha256: return Array(HMAC<SHA256>.authenticationCode(for: message, using: key))
            case .sha384: return Array(HMAC<SHA384>.authenticationCode(for: message, using: key))
            case .sha512: return Array(HMAC<SHA512>.authenticationCode(for: message, using: key))
            }
        }

        /// The digest of `message`.
        public func digest(_ message: [UInt8]) -> [UInt8] {
            switch self {
            case .sha256: return Array(SHA256.hash(data: message))
            case .sha384: return Array(SHA384.hash(data: message))
            case .sha512: return Array(SHA512.hash(data: message))
            }
        }
    }

    /// The Diffie-Hellman groups of DH-HMAC-CHAP: none, or the RFC 7919 groups.
    public enum Group: UInt8, Sendable, Hashable, CaseIterable, CustomStringConvertible {
        case null = 0
        case ffdhe2048 = 1
        case ffdhe3072 = 2
        case ffdhe4096 = 3
        case ffdhe6144 = 4
        case ffdhe8192 = 5

        /// The length of a public value (and of the shared secret) in bytes: the size of the prime.
        public var valueLength: Int {
            switch self {
            case .null: 0
            case .ffdhe2048: 256
            case .ffdhe3072: 384
            case .ffdhe4096: 512
            case .ffdhe6144: 768
            case .ffdhe8192: 1024
            }
        }

        public var description: String {
            switch self {
            case .null: "null"
            case .ffdhe2048: "ffdhe2048"
            case .ffdhe3072: "ffdhe3072"
            case .ffdhe4096: "ffdhe4096"
            case .ffdhe6144: "ffdhe6144"
            case .ffdhe8192: "ffdhe8192"
            }
        }

        /// The group named `ffdhe2048` … or `null` (also `none`, as nvmet reads it).
        public init?(name: String) {
            let text = name.lowercased()
            if text == "none" {
                self = .null
                return
            }
            guard let group = Self.allCases.first(where: { $0.description == text }) else { return nil }
            self = group
        }
    }

    /// The reason code explanations of AUTH_Failure1/AUTH_Failure2 (RESCODE 01h "authentication
    /// failed").
    public enum FailureReason: UInt8, Sendable, Hashable, CustomStringConvertible {
        case failed = 1
        case protocolUnusable = 2
        case concatenationMismatch = 3
        case hashUnusable = 4
        case groupUnusable = 5
        case incorrectPayload = 6
        case incorrectProtocolMessage = 7

        public var description: String {
            switch self {
            case .failed: "authentication failed"
            case .protocolUnusable: "authentication protocol not usable"
            case .concatenationMismatch: "secure channel concatenation mismatch"
            case .hashUnusable: "hash function not usable"
            case .groupUnusable: "DH group not usable"
            case .incorrectPayload: "incorrect payload"
            case .incorrectProtocolMessage: "incorrect protocol message"
            }
        }
    }

    /// The challenge as the response is computed over it: with a DH group, HMAC(H(shared
    /// secret), C) (the "augmented challenge"); without, C itself.
    public static func augmentedChallenge(_ challenge: [UInt8], hash: Hash, sharedSecret: [UInt8]?) -> [UInt8] {
        guard let sharedSecret else { return challenge }
        return hash.hmac(key: hash.digest(sharedSecret), challenge)
    }

    /// The host's response R1 (in DH-HMAC-CHAP_Reply): HMAC(K'host, C1' ‖ S1 ‖ T_ID ‖ 00h ‖
    /// "HostHost" ‖ host NQN ‖ 00h ‖ subsystem NQN).
    public static func hostResponse(
        key: [UInt8],
        hash: Hash,
        challenge: [UInt8],
        sequenceNumber: UInt32,
        transactionIdentifier: UInt16,
        hostNQN: String,
        subsystemNQN: String
    ) -> [UInt8] {
        response(key, hash, challenge, sequenceNumber, transactionIdentifier, "HostHost", hostNQN, subsystemNQN)
    }

    /// The controller's response R2 (in DH-HMAC-CHAP_Success1): HMAC(K'ctrl, C2' ‖ S2 ‖ T_ID ‖
    /// 00h ‖ "Controller" ‖ subsystem NQN ‖ 00h ‖ host NQN).
    public static func controllerResponse(
        key: [UInt8],
        hash: Hash,
        challenge: [UInt8],
        sequenceNumber: UInt32,
        transactionIdentifier: UInt16,
        hostNQN: String,
        subsystemNQN: String
    ) -> [UInt8] {
        response(key, hash, challenge, sequenceNumber, transactionIdentifier, "Controller", subsystemNQN, hostNQN)
    }

    /// HMAC(K', C' ‖ S ‖ T_ID ‖ 00h ‖ label ‖ first NQN ‖ 00h ‖ second NQN).
    private static func response(
        _ key: [UInt8],
        _ hash: Hash,
        _ challenge: [UInt8],
        _ sequenceNumber: UInt32,
        _ transactionIdentifier: UInt16,
        _ label: String,
        _ first: String,
        _ second: String
    ) -> [UInt8] {
        var message = challenge
        message.append(contentsOf: littleEndian(sequenceNumber))
        message.append(contentsOf: littleEndian(transactionIdentifier))
        message.append(0)
        message.append(contentsOf: Array(label.utf8))
        message.append(contentsOf: Array(first.utf8))
        message.append(0)
        message.append(contentsOf: Array(second.utf8))
        return hash.hmac(key: key, message)
    }

    /// Whether two responses are equal, in time that does not depend on where they differ.
    public static func responsesEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for index in a.indices { difference |= a[index] ^ b[index] }
        return difference == 0
    }

    private static func littleEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        (0..<(T.bitWidth / 8)).map { UInt8(truncatingIfNeeded: value >> ($0 * 8)) }
    }
}

/// Where an exchange gets what must be unpredictable, and its Diffie-Hellman key pairs: the
/// system's random source and OpenSSL (``DHCHAPEntropy/system``), or in tests a replay of a
/// recorded peer.
public struct DHCHAPEntropy: Sendable {
    /// `count` unpredictable bytes (challenges).
    public var randomBytes: @Sendable (Int) -> [UInt8]
    /// A sequence number (never 0, which means "no bidirectional authentication").
    public var sequenceNumber: @Sendable () -> UInt32
    /// A fresh key pair in `group` (not null).
    public var keyPair: @Sendable (DHCHAP.Group) throws -> any DHCHAPKeyPair

    public init(
        randomBytes: @escaping @Sendable (Int) -> [UInt8],
        sequenceNumber: @escaping @Sendable () -> UInt32,
        keyPair: @escaping @Sendable (DHCHAP.Group) throws -> any DHCHAPKeyPair
    ) {
        self.randomBytes = randomBytes
        self.sequenceNumber = sequenceNumber
        self.keyPair = keyPair
    }

    /// The system's random source and OpenSSL's FFDHE.
    public static let system = DHCHAPEntropy(
        randomBytes: { count in
            var generator = SystemRandomNumberGenerator()
            return (0..<count).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        },
        sequenceNumber: {
            var generator = SystemRandomNumberGenerator()
            return UInt32.random(in: 1 ... .max, using: &generator)
        },
        keyPair: { group in try FFDHEKeyPair(group: group) }
    )
}

/// One side's Diffie-Hellman key pair in an RFC 7919 group.
public protocol DHCHAPKeyPair: Sendable {
    /// The public value g^x mod p, big-endian, as long as the prime.
    var publicValue: [UInt8] { get }
    /// The shared secret g^xy mod p (as long as the prime) with the peer's public value, which
    /// is checked first: 1 < y < p-1, which for the safe primes of RFC 7919 rules out the small
    /// subgroups (orders 1 and 2).
    func sharedSecret(peerPublicValue: [UInt8]) throws -> [UInt8]
}

/// Why a Diffie-Hellman step failed.
public struct DHCHAPKeyError: Error, Sendable, Hashable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
