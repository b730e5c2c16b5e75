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
/// (``SQLiteFabricStore``, embedded, one dem) and PostgreSQL (``PostgresFabricStore``, several
/// dem replicas on one database) implement it with the same schema and migrations.
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

/// What another writer (a dem replica on the same database) changed in the store.
public enum StoreChange: Sendable, Hashable {
    /// The model, now at this revision.
    case fabric(revision: Int64)
    case tokens
    case hostKeys
    case registrations
    /// What the replica that manages this target found there (``TargetCoordinator``).
    case target(String)
    /// A discovery page content was given a new GENCTR (``PostgresFabricStore/pageGenerations(above:)``).
    case generations
    /// A target enrolled through another replica (``PostgresFabricStore/recordEnrolment(_:at:)``).
    case enrolments
    /// Changes may have been missed (the watch's connection was lost and made again): read
    /// everything again.
    case everything
}

/// Another writer (a dem replica on the same database) changed the model since this store last
/// read it: nothing was written. The caller reads the model again and applies its change to that.
public struct FabricStoreConflict: Error, Sendable, CustomStringConvertible {
    /// The store's revision, newer than the one the change was made on.
    public var storedRevision: Int64
    public var description: String {
        "the model was changed by another dem replica (revision \(storedRevision)); read it again"
    }
}

/// The model as table rows, the same for every store: one row per target (its own fields, no
/// subsystems), per subsystem, per host, per group and per zone group (configured or active),
/// each a JSON document in the REST API's shape.
enum FabricRows {
    /// One row to write (`body`) or rows to delete (`body` nil: every row matching `key`).
    struct Change: Equatable {
        var table: String
        /// Key columns and values; for a write, the whole primary key.
        var key: [Column]
        var body: String?

        struct Column: Equatable {
            var name: String
            var value: String
        }
    }

    /// The rows that change from `old` to `new`: only those (a commit writes what changed).
    static func changes(from old: Fabric, to new: Fabric) throws -> [Change] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        func json(_ value: some Encodable) throws -> String {
            String(decoding: try encoder.encode(value), as: UTF8.self)
        }
        func key(_ pairs: (String, String)...) -> [Change.Column] {
            pairs.map { Change.Column(name: $0.0, value: $0.1) }
        }
        var changes: [Change] = []
        try diff(old.targets, new.targets, key: \.alias) { before, after in
            var fields = after
            fields.subsystems = []
            var oldFields = before
            oldFields?.subsystems = []
            if oldFields != fields {
                changes.append(Change(table: "target", key: key(("alias", after.alias)), body: try json(fields)))
            }
            try diff(before?.subsystems ?? [], after.subsystems, key: \.nqn) { _, subsystem in
                changes.append(
                    Change(
                        table: "subsystem",
                        key: key(("target", after.alias), ("nqn", subsystem.nqn)),
                        body: try json(subsystem)
                    )
                )
            } removed: { subsystem in
                changes.append(Change(table: "subsystem", key: key(("target", after.alias), ("nqn", subsystem.nqn))))
            }
        } removed: { target in
            changes.append(Change(table: "target", key: key(("alias", target.alias))))
            changes.append(Change(table: "subsystem", key: key(("target", target.alias))))
        }
        try diff(old.hosts, new.hosts, key: \.alias) { _, host in
            changes.append(Change(table: "host", key: key(("alias", host.alias)), body: try json(host)))
        } removed: { host in
            changes.append(Change(table: "host", key: key(("alias", host.alias))))
        }
        try diff(old.groups, new.groups, key: \.name) { _, group in
            changes.append(Change(table: "fabric_group", key: key(("name", group.name)), body: try json(group)))
        } removed: { group in
            changes.append(Change(table: "fabric_group", key: key(("name", group.name))))
        }
        for (active, old, new) in [
            ("0", old.zoneGroups, new.zoneGroups), ("1", old.activeZoneGroups, new.activeZoneGroups),
        ] {
            try diff(old, new, key: \.name) { _, group in
                changes.append(
                    Change(
                        table: "zone_group",
                        key: key(("active", active), ("name", group.name)),
                        body: try json(group)
                    )
                )
            } removed: { group in
                changes.append(Change(table: "zone_group", key: key(("active", active), ("name", group.name))))
            }
        }
        return changes
    }

    /// The model from its rows.
    static func fabric(
        targets: [String],
        subsystems: [(target: String, body: String)],
        hosts: [String],
        groups: [String],
        zoneGroups: [(active: Bool, body: String)]
    ) throws -> Fabric {
        let decoder = JSONDecoder()
        var byTarget: [String: [FabricSubsystem]] = [:]
        for row in subsystems {
            byTarget[row.target, default: []].append(
                try decoder.decode(FabricSubsystem.self, from: Data(row.body.utf8))
            )
        }
        let targets = try targets.map { body in
            var target = try decoder.decode(FabricTarget.self, from: Data(body.utf8))
            target.subsystems = byTarget[target.alias] ?? []
            return target
        }
        var zoning: [Bool: [FabricZoneGroup]] = [:]
        for row in zoneGroups {
            zoning[row.active, default: []].append(try decoder.decode(FabricZoneGroup.self, from: Data(row.body.utf8)))
        }
        return Fabric(
            stored: targets,
            hosts: try hosts.map { try decoder.decode(FabricHost.self, from: Data($0.utf8)) },
            groups: try groups.map { try decoder.decode(FabricGroup.self, from: Data($0.utf8)) },
            zoneGroups: zoning[false] ?? [],
            activeZoneGroups: zoning[true] ?? []
        )
    }

    /// Walks two lists sorted by `key`: `changed(old, new)` for every element added (old nil) or
    /// different, `removed(old)` for every element gone. Equal lists (the common case of an
    /// untouched list, which shares its storage) cost one comparison.
    static func diff<Element: Equatable>(
        _ old: [Element],
        _ new: [Element],
        key: (Element) -> String,
        changed: (Element?, Element) throws -> Void,
        removed: (Element) throws -> Void
    ) rethrows {
        if old == new { return }
        var i = 0
        var j = 0
        while i < old.count || j < new.count {
            if j == new.count || (i < old.count && key(old[i]) < key(new[j])) {
                try removed(old[i])
                i += 1
            } else if i == old.count || key(new[j]) < key(old[i]) {
                try changed(nil, new[j])
                j += 1
            } else {
                if old[i] != new[j] { try changed(old[i], new[j]) }
                i += 1
                j += 1
            }
        }
    }
}
