import Crypto
import DEMCore
import Foundation

/// An API token: who may call the REST API, and whether only to read.
///
/// dem keeps only the SHA-256 of a token's secret: the secret itself is shown once, when the
/// token is made, and is in no file dem writes but `admin.token`.
public struct APIToken: Sendable, Hashable, Codable {
    /// What a token may do.
    public enum Role: String, Sendable, Hashable, Codable, CaseIterable {
        /// Read and change everything, and manage tokens.
        case admin
        /// Only read (GET).
        case read
        /// Only enrol one target, once, before it expires (`POST /dem/enrol`): a join token.
        case join
    }

    /// A short public identifier (to list and revoke the token by); the secret carries it.
    public var id: String
    /// A name the administrator chose.
    public var name: String
    public var role: Role
    public var created: Date
    /// The SHA-256 of the bearer secret.
    public var secretHash: [UInt8]
    /// When the token last authenticated a request (to the minute), if ever.
    public var lastUsed: Date?
    /// When the token stops working (join tokens), if ever.
    public var expires: Date?

    public init(
        id: String,
        name: String,
        role: Role,
        created: Date,
        secretHash: [UInt8],
        lastUsed: Date? = nil,
        expires: Date? = nil
    ) {
        self.expires = expires
        self.id = id
        self.name = name
        self.role = role
        self.created = created
        self.secretHash = secretHash
        self.lastUsed = lastUsed
    }

    /// A new token with a random ID and a 256-bit random secret, and that secret.
    public static func generate(name: String, role: Role, expires: Date? = nil) -> (token: APIToken, secret: String) {
        var generator = SystemRandomNumberGenerator()
        func hex(_ bytes: Int) -> String {
            (0..<bytes).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
        }
        let id = hex(4)
        let secret = "dem_\(id)_\(hex(32))"
        return (
            APIToken(id: id, name: name, role: role, created: Date(), secretHash: hash(secret), expires: expires),
            secret
        )
    }

    /// The SHA-256 of a secret.
    public static func hash(_ secret: String) -> [UInt8] { Array(SHA256.hash(data: Data(secret.utf8))) }

    /// The token ID a secret names (`dem_<id>_<hex>`), if it has that form.
    public static func id(ofSecret secret: String) -> String? {
        let parts = secret.split(separator: "_", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "dem", parts[1].count == 8 else { return nil }
        return String(parts[1])
    }

    /// Whether `secret` is this token's, compared in constant time.
    public func matches(secret: String) -> Bool {
        let offered = Self.hash(secret)
        guard offered.count == secretHash.count else { return false }
        var difference: UInt8 = 0
        for (a, b) in zip(offered, secretHash) { difference |= a ^ b }
        return difference == 0
    }
}

/// Where dem keeps the fabric model and the API tokens, durably.
///
/// Calls are made one at a time, from one writer thread (``FabricService`` serialises them), so
/// an implementation may block. A call that returns has made its change durable. SQLite
/// (``SQLiteFabricStore``) is the one implementation; a PostgreSQL store for several dem
/// replicas implements the same calls.
public protocol FabricStore: Sendable {
    /// Reads the whole model.
    func loadFabric() throws -> Fabric
    /// Durably records the change from `old` to `new`, in one transaction.
    func commit(from old: Fabric, to new: Fabric) throws
    /// Every token.
    func loadTokens() throws -> [APIToken]
    /// Adds a token.
    func addToken(_ token: APIToken) throws
    /// Deletes a token. - Returns: whether it existed.
    func deleteToken(id: String) throws -> Bool
    /// Records when tokens were last used (by ID).
    func recordTokenUse(_ uses: [String: Date]) throws
    /// Every host's DH-HMAC-CHAP keys, by host alias.
    func loadHostKeys() throws -> [String: HostKey]
    /// Stores (or with nil deletes) the keys of host `alias`.
    func setHostKey(_ key: HostKey?, alias: String) throws
    /// Every discovery registration (TP8010), by NQN order.
    func loadRegistrations() throws -> [DiscoveryRegistration]
    /// Stores (or with nil deletes) the registration of `nqn`.
    func setRegistration(_ registration: DiscoveryRegistration?, nqn: String) throws
    /// Durably reserves the next `count` discovery generation counters (GENCTR): never handed
    /// out before by this store, so a host never sees one GENCTR for two pages across restarts.
    func reserveGenerations(_ count: UInt64) throws -> ClosedRange<UInt64>
    /// The highest generation counter reserved so far (0 when none).
    func reservedGeneration() throws -> UInt64
    /// Raises the highest reserved generation counter to at least `floor` (a restored backup
    /// must not hand out again what the store it replaces has).
    func raiseReservedGeneration(to floor: UInt64) throws
}
