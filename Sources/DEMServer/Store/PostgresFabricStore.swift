import DEMCore
import Foundation
import Synchronization

/// The fabric model in PostgreSQL (through libpq), for several dem replicas on one database.
///
/// The same tables and migrations as ``SQLiteFabricStore`` (``StoreSchema``). Every commit runs
/// with `synchronous_commit = on` (checked at connect), so a change dem acknowledged is on the
/// server's disk. The model carries a revision: a commit made on an older revision than the
/// stored one (another replica wrote in between) is refused with ``FabricStoreConflict`` and
/// nothing is written, so every change is validated against the model it lands on. Each commit
/// notifies `dem_changes` (`fabric REVISION`, `tokens`, `host-keys`, `registrations`) for the
/// other replicas (``watch(_:)``).
public final class PostgresFabricStore: FabricStore {
    /// Where the database is (the URL, without a password).
    public let location: PostgresLocation
    private struct State: ~Copyable {
        var connection: PostgresConnection
        /// The revision of the model this store last read or wrote.
        var revision: Int64 = 0
    }
    private let state: Mutex<State>

    /// The channel of change notices.
    static let channel = "dem_changes"
    /// The advisory lock that serialises migrations of replicas starting together.
    private static let migrationLock = "7301985113"

    /// Connects, refuses a schema a newer dem migrated, and migrates.
    /// - Throws: ``StoreError`` naming the URL and the cause (unreachable, wrong password, no
    ///   such database, a newer schema); on a refusal nothing was written.
    public init(_ location: PostgresLocation) throws {
        self.location = location
        let connection = try PostgresConnection(location)
        try connection.execute("SET synchronous_commit TO on")
        guard try connection.execute("SHOW synchronous_commit").first?.first == "on" else {
            throw StoreError(path: location.url, message: "cannot set synchronous_commit = on")
        }
        try Self.migrate(connection)
        state = Mutex(State(connection: connection))
    }

    private static func migrate(_ connection: PostgresConnection) throws {
        try connection.transaction {
            try connection.execute("SELECT pg_advisory_xact_lock(\(migrationLock))")
            let exists = try connection.execute("SELECT to_regclass('dem_migrations') IS NOT NULL").first?.first
            var applied: Set<String> = []
            if exists == "t" {
                applied = Set(
                    try connection.execute("SELECT identifier FROM dem_migrations").compactMap { $0.first ?? nil }
                )
            }
            let unknown = applied.subtracting(StoreSchema.identifiers)
            guard unknown.isEmpty else {
                throw StoreError(path: connection.location.url, message: StoreSchema.newerSchema(Array(unknown)))
            }
            if exists != "t" {
                try connection.execute("CREATE TABLE dem_migrations (identifier TEXT PRIMARY KEY NOT NULL)")
            }
            for migration in StoreSchema.migrations where !applied.contains(migration.identifier) {
                let tokens =
                    migration.hashesTokens
                    ? try connection.execute("SELECT id, name, role, secret, created FROM api_token") : []
                try connection.execute(migration.postgres)
                for row in tokens {
                    try connection.execute(
                        "INSERT INTO api_token (id, name, role, secret_sha256, created) VALUES ($1, $2, $3, decode($4, 'hex'), $5)",
                        [row[0], row[1], row[2], Self.hex(APIToken.hash(row[3] ?? "")), row[4]]
                    )
                }
                try connection.execute("INSERT INTO dem_migrations (identifier) VALUES ($1)", [migration.identifier])
            }
        }
    }

    /// Creates the empty database `name` on the server of `server` (connecting to its database)
    /// and returns its location: for tests and benchmarks, which want a database of their own.
    public static func createDatabase(_ name: String, server: PostgresLocation) throws -> PostgresLocation {
        guard name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }), !name.isEmpty else {
            throw StoreError(path: server.url, message: "\"\(name)\" is not a plain database name")
        }
        let connection = try PostgresConnection(server)
        try connection.execute("CREATE DATABASE \(name)")
        guard var components = URLComponents(string: server.url) else {
            throw StoreError(path: server.url, message: "is not a URL")
        }
        components.path = "/" + name
        return try PostgresLocation(url: components.string ?? server.url, password: server.password)
    }

    /// The migrations applied to the database, oldest first.
    public func appliedMigrations() throws -> [String] {
        let applied = Set(try run { try $0.execute("SELECT identifier FROM dem_migrations").compactMap { $0[0] } })
        return StoreSchema.migrations.map(\.identifier).filter { applied.contains($0) }
    }

    /// The server's `synchronous_commit` on this store's connection ("on": every commit flushed).
    public func synchronousCommit() throws -> String {
        try run { try $0.execute("SHOW synchronous_commit").first?.first ?? nil } ?? ""
    }

    /// Runs `body` with the connection, one caller at a time.
    private func run<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        try state.withLock { state in try body(state.connection) }
    }

    private func notify(_ connection: PostgresConnection, _ payload: String) throws {
        try connection.execute("SELECT pg_notify($1, $2)", [Self.channel, payload])
    }

    private static func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    private static func bytes(hex text: String) -> [UInt8] {
        // bytea's text form: \x followed by two hex digits a byte.
        let digits = Array(text.hasPrefix("\\x") ? text.dropFirst(2) : Substring(text))
        var bytes: [UInt8] = []
        var index = 0
        while index + 1 < digits.count, let byte = UInt8(String(digits[index...index + 1]), radix: 16) {
            bytes.append(byte)
            index += 2
        }
        return bytes
    }

    // MARK: Model

    public func loadFabric() throws -> Fabric {
        try state.withLock { state in
            let connection = state.connection
            let (fabric, revision) = try connection.transaction("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") {
                let revision =
                    Int64(try connection.execute("SELECT revision FROM fabric_revision WHERE id = 1")[0][0] ?? "0") ?? 0
                let fabric = try FabricRows.fabric(
                    targets: try connection.execute("SELECT body FROM target").map { $0[0] ?? "" },
                    subsystems: try connection.execute("SELECT target, body FROM subsystem").map {
                        (target: $0[0] ?? "", body: $0[1] ?? "")
                    },
                    hosts: try connection.execute("SELECT body FROM host").map { $0[0] ?? "" },
                    groups: try connection.execute("SELECT body FROM fabric_group").map { $0[0] ?? "" },
                    zoneGroups: try connection.execute("SELECT active, body FROM zone_group").map {
                        (active: $0[0] == "1", body: $0[1] ?? "")
                    }
                )
                return (fabric, revision)
            }
            state.revision = revision
            return fabric
        }
    }

    public func commit(from old: Fabric, to new: Fabric) throws {
        let changes = try FabricRows.changes(from: old, to: new)
        try state.withLock { state in
            let connection = state.connection
            let expected = state.revision
            state.revision = try connection.transaction {
                let stored =
                    Int64(
                        try connection.execute("SELECT revision FROM fabric_revision WHERE id = 1 FOR UPDATE")[0][0]
                            ?? "0"
                    ) ?? 0
                guard stored == expected else { throw FabricStoreConflict(storedRevision: stored) }
                for change in changes {
                    let columns = change.key.map(\.name)
                    let values: [String?] = change.key.map(\.value)
                    if let body = change.body {
                        let names = (columns + ["body"]).joined(separator: ", ")
                        let marks = (1...columns.count + 1).map { "$\($0)" }.joined(separator: ", ")
                        try connection.execute(
                            "INSERT INTO \(change.table) (\(names)) VALUES (\(marks)) ON CONFLICT (\(columns.joined(separator: ", "))) DO UPDATE SET body = excluded.body",
                            values + [body]
                        )
                    } else {
                        let condition = columns.enumerated().map { "\($0.element) = $\($0.offset + 1)" }
                            .joined(separator: " AND ")
                        try connection.execute("DELETE FROM \(change.table) WHERE \(condition)", values)
                    }
                }
                let revision = stored + 1
                try connection.execute("UPDATE fabric_revision SET revision = $1 WHERE id = 1", [String(revision)])
                try notify(connection, "fabric \(revision)")
                return revision
            }
        }
    }

    /// The revision of the model this store last read or wrote: a change notice of this
    /// revision or an older one is already known.
    public var knownRevision: Int64 { state.withLock { $0.revision } }

    /// The stored model's revision: how many commits changed it.
    public func storedRevision() throws -> Int64 {
        try run { Int64(try $0.execute("SELECT revision FROM fabric_revision WHERE id = 1")[0][0] ?? "0") ?? 0 }
    }

    // MARK: Discovery generations

    public func reserveGenerations(_ count: UInt64) throws -> ClosedRange<UInt64> {
        precondition(count > 0)
        return try run { connection in
            try connection.transaction {
                let rows = try connection.execute(
                    """
                    INSERT INTO discovery_generation (id, reserved) VALUES (1, $1)
                    ON CONFLICT (id) DO UPDATE SET reserved = discovery_generation.reserved + $1
                    RETURNING reserved
                    """,
                    [String(Int64(clamping: count))]
                )
                let upper = UInt64(rows[0][0] ?? "0") ?? 0
                return (upper - count + 1)...upper
            }
        }
    }

    public func reservedGeneration() throws -> UInt64 {
        try run {
            UInt64(try $0.execute("SELECT reserved FROM discovery_generation WHERE id = 1").first?[0] ?? "0") ?? 0
        }
    }

    public func raiseReservedGeneration(to floor: UInt64) throws {
        _ = try run { connection in
            try connection.execute(
                """
                INSERT INTO discovery_generation (id, reserved) VALUES (1, $1)
                ON CONFLICT (id) DO UPDATE SET reserved = GREATEST(discovery_generation.reserved, $1)
                """,
                [String(Int64(clamping: floor))]
            )
        }
    }

    /// The GENCTR of each discovery page content, the same for every replica: the one stored
    /// for the content when it is above `above[digest]`; otherwise (a content no replica served
    /// yet, or one a host's page returns to) the next of the generation counter
    /// (``reserveGenerations(_:)``'s too, so never one handed out before), stored. A content that
    /// had one and is given another is announced (`generations`), so the replicas read it again.
    ///
    /// One statement when every content has its GENCTR; otherwise one transaction that holds the
    /// counter's row, so replicas that meet the same new content give it one GENCTR. Each
    /// content's last use is kept (to the day): one no replica asked for in
    /// ``pageGenerationKeep`` is dropped, and takes a new GENCTR if it is ever served again.
    public func pageGenerations(above: [String: UInt64]) throws -> [String: UInt64] {
        guard !above.isEmpty else { return [:] }
        // The digests are hex: an array literal needs no quoting.
        let list = "{" + above.keys.sorted().joined(separator: ",") + "}"
        func needed(_ known: [String: UInt64]) -> [String] {
            above.filter { (known[$0.key] ?? 0) <= $0.value }.keys.sorted()
        }
        return try run { connection in
            func stored() throws -> [String: UInt64] {
                var known: [String: UInt64] = [:]
                for row in try connection.execute(
                    """
                    WITH touched AS (
                        UPDATE page_generation SET used = extract(epoch FROM now())
                        WHERE digest = ANY($1::text[]) AND used < extract(epoch FROM now()) - 86400
                        RETURNING 0)
                    SELECT digest, generation FROM page_generation WHERE digest = ANY($1::text[])
                    """,
                    [list]
                ) {
                    if let digest = row[0], let generation = UInt64(row[1] ?? "") { known[digest] = generation }
                }
                return known
            }
            let known = try stored()
            if needed(known).isEmpty { return known }
            return try connection.transaction {
                var reserved =
                    UInt64(
                        try connection.execute("SELECT reserved FROM discovery_generation WHERE id = 1 FOR UPDATE")
                            .first?[0] ?? "0"
                    ) ?? 0
                var known = try stored()
                let missing = needed(known)
                guard !missing.isEmpty else { return known }
                var renewed = false
                var generations: [String] = []
                for digest in missing {
                    reserved += 1
                    if known[digest] != nil { renewed = true }
                    known[digest] = reserved
                    generations.append(String(reserved))
                }
                try connection.execute(
                    "UPDATE discovery_generation SET reserved = $1 WHERE id = 1",
                    [String(reserved)]
                )
                try connection.execute(
                    """
                    INSERT INTO page_generation (digest, generation, used)
                    SELECT digest, generation, extract(epoch FROM now())
                    FROM unnest($1::text[], $2::bigint[]) AS given(digest, generation)
                    ON CONFLICT (digest) DO UPDATE SET generation = EXCLUDED.generation, used = EXCLUDED.used
                    """,
                    ["{" + missing.joined(separator: ",") + "}", "{" + generations.joined(separator: ",") + "}"]
                )
                try connection.execute(
                    "DELETE FROM page_generation WHERE used < extract(epoch FROM now()) - $1",
                    [String(Int(Self.pageGenerationKeep))]
                )
                if renewed { try notify(connection, "generations") }
                return known
            }
        }
    }

    /// How long a page content's GENCTR is kept after the last replica asked for it (30 days).
    public static let pageGenerationKeep: Double = 30 * 86400

    // MARK: Enrolled targets

    public func loadEnrolments() throws -> [String: Date] {
        try run { connection in
            var result: [String: Date] = [:]
            for row in try connection.execute("SELECT alias, enrolled FROM target_enrolment") {
                if let alias = row[0], let seconds = Double(row[1] ?? "") {
                    result[alias] = Date(timeIntervalSince1970: seconds)
                }
            }
            return result
        }
    }

    public func recordEnrolment(_ alias: String, at date: Date) throws {
        try run { connection in
            try connection.transaction {
                try connection.execute(
                    """
                    INSERT INTO target_enrolment (alias, enrolled) VALUES ($1, $2)
                    ON CONFLICT (alias) DO UPDATE SET enrolled = EXCLUDED.enrolled
                    """,
                    [alias, Self.number(date)]
                )
                try notify(connection, "enrolments")
            }
        }
    }

    // MARK: Tokens, keys, registrations

    public func loadTokens() throws -> [APIToken] {
        try run { connection in
            try connection.execute(
                "SELECT id, name, role, encode(secret_sha256, 'hex'), created, last_used, expires FROM api_token ORDER BY created, id"
            ).map { row in
                APIToken(
                    id: row[0] ?? "",
                    name: row[1] ?? "",
                    role: APIToken.Role(rawValue: row[2] ?? "") ?? .read,
                    created: Date(timeIntervalSince1970: Double(row[4] ?? "0") ?? 0),
                    secretHash: Self.bytes(hex: row[3] ?? ""),
                    lastUsed: row[5].flatMap(Double.init).map { Date(timeIntervalSince1970: $0) },
                    expires: row[6].flatMap(Double.init).map { Date(timeIntervalSince1970: $0) }
                )
            }
        }
    }

    public func addToken(_ token: APIToken) throws {
        try run { connection in
            try connection.transaction {
                try connection.execute(
                    "INSERT INTO api_token (id, name, role, secret_sha256, created, last_used, expires) VALUES ($1, $2, $3, decode($4, 'hex'), $5, $6, $7)",
                    [
                        token.id, token.name, token.role.rawValue, Self.hex(token.secretHash),
                        Self.number(token.created), token.lastUsed.map(Self.number), token.expires.map(Self.number),
                    ]
                )
                try notify(connection, "tokens")
            }
        }
    }

    public func deleteToken(id: String) throws -> Bool {
        try run { connection in
            try connection.transaction {
                let deleted = try connection.execute("DELETE FROM api_token WHERE id = $1 RETURNING id", [id])
                try notify(connection, "tokens")
                return !deleted.isEmpty
            }
        }
    }

    public func recordTokenUse(_ uses: [String: Date]) throws {
        try run { connection in
            try connection.transaction {
                for (id, time) in uses {
                    try connection.execute(
                        "UPDATE api_token SET last_used = $1 WHERE id = $2",
                        [Self.number(time), id]
                    )
                }
            }
        }
    }

    /// A time as seconds since 1970, exactly (Double's shortest round-trip text).
    private static func number(_ date: Date) -> String { "\(date.timeIntervalSince1970)" }

    public func loadHostKeys() throws -> [String: HostKey] {
        try run { connection in
            var keys: [String: HostKey] = [:]
            for row in try connection.execute("SELECT alias, body FROM host_key") {
                keys[row[0] ?? ""] = try JSONDecoder().decode(HostKey.self, from: Data((row[1] ?? "").utf8))
            }
            return keys
        }
    }

    public func setHostKey(_ key: HostKey?, alias: String) throws {
        let body = try key.map { String(decoding: try JSONEncoder().encode($0), as: UTF8.self) }
        try run { connection in
            try connection.transaction {
                if let body {
                    try connection.execute(
                        "INSERT INTO host_key (alias, body) VALUES ($1, $2) ON CONFLICT (alias) DO UPDATE SET body = excluded.body",
                        [alias, body]
                    )
                } else {
                    try connection.execute("DELETE FROM host_key WHERE alias = $1", [alias])
                }
                try notify(connection, "host-keys")
            }
        }
    }

    public func loadRegistrations() throws -> [DiscoveryRegistration] {
        try run { connection in
            try connection.execute("SELECT body FROM registration ORDER BY nqn").map {
                try JSONDecoder().decode(DiscoveryRegistration.self, from: Data(($0[0] ?? "").utf8))
            }
        }
    }

    public func setRegistration(_ registration: DiscoveryRegistration?, nqn: String) throws {
        let body = try registration.map { String(decoding: try JSONEncoder().encode($0), as: UTF8.self) }
        try run { connection in
            try connection.transaction {
                if let body {
                    try connection.execute(
                        "INSERT INTO registration (nqn, body) VALUES ($1, $2) ON CONFLICT (nqn) DO UPDATE SET body = excluded.body",
                        [nqn, body]
                    )
                } else {
                    try connection.execute("DELETE FROM registration WHERE nqn = $1", [nqn])
                }
                try notify(connection, "registrations")
            }
        }
    }

    // MARK: Other replicas

    /// The discovery NQN every replica on this database uses (they are one discovery controller
    /// with several ports, TP8013): the first replica's `proposed` one, kept in the database.
    public func sharedDiscoveryNQN(proposed: String) throws -> String {
        try run { connection in
            try connection.execute(
                "INSERT INTO setting (name, value) VALUES ('discovery-nqn', $1) ON CONFLICT (name) DO NOTHING",
                [proposed]
            )
            let stored = try connection.execute("SELECT value FROM setting WHERE name = 'discovery-nqn'")
            return (stored.first?.first ?? nil) ?? proposed
        }
    }

    /// A live replica as its last heartbeat described it.
    public struct Replica: Sendable, Hashable, Codable {
        /// Its discovery listeners (never a wildcard address).
        public var listeners: [Listener]
        /// When it started (seconds since 1970).
        public var started: Double

        public struct Listener: Sendable, Hashable, Codable {
            public var transport: String
            public var address: String
            public var port: Int

            public init(transport: String, address: String, port: Int) {
                self.transport = transport
                self.address = address
                self.port = port
            }
        }

        public init(listeners: [Listener], started: Double) {
            self.listeners = listeners
            self.started = started
        }
    }

    /// Records that replica `id` is alive (the database's clock), describing it as `replica`;
    /// forgets replicas silent for longer than `forgetAfter` seconds.
    /// - Returns: every other replica heard from within `liveWithin` seconds, by ID.
    public func heartbeat(
        id: String,
        _ replica: Replica,
        liveWithin: Double,
        forgetAfter: Double = 3600
    ) throws -> [String: Replica] {
        let body = String(decoding: try JSONEncoder().encode(replica), as: UTF8.self)
        return try run { connection in
            try connection.transaction {
                let now = "extract(epoch from clock_timestamp())"
                try connection.execute(
                    "INSERT INTO replica (id, body, heartbeat) VALUES ($1, $2, \(now)) ON CONFLICT (id) DO UPDATE SET body = excluded.body, heartbeat = excluded.heartbeat",
                    [id, body]
                )
                try connection.execute("DELETE FROM replica WHERE heartbeat < \(now) - $1", [String(forgetAfter)])
                var live: [String: Replica] = [:]
                for row in try connection.execute(
                    "SELECT id, body FROM replica WHERE id <> $1 AND heartbeat >= \(now) - $2",
                    [id, String(liveWithin)]
                ) {
                    if let other = try? JSONDecoder().decode(Replica.self, from: Data((row[1] ?? "").utf8)) {
                        live[row[0] ?? ""] = other
                    }
                }
                return live
            }
        }
    }

    /// Takes the lease of target `alias` for `owner` when it is free or has run out, or renews
    /// it when `owner` holds it, for `seconds` (the database's clock).
    /// - Returns: whether `owner` holds it now.
    public func claimTarget(_ alias: String, owner: String, seconds: Double) throws -> Bool {
        try run { connection in
            !(try connection.execute(
                """
                INSERT INTO target_lease (alias, owner, expires) VALUES ($1, $2, extract(epoch from clock_timestamp()) + $3)
                ON CONFLICT (alias) DO UPDATE SET owner = excluded.owner, expires = excluded.expires
                WHERE target_lease.owner = excluded.owner OR target_lease.expires < extract(epoch from clock_timestamp())
                RETURNING owner
                """,
                [alias, owner, String(seconds)]
            )).isEmpty
        }
    }

    /// Who holds the lease of target `alias`, while it lasts.
    public func targetManager(_ alias: String) throws -> String? {
        try run { connection in
            try connection.execute(
                "SELECT owner FROM target_lease WHERE alias = $1 AND expires >= extract(epoch from clock_timestamp())",
                [alias]
            ).first?.first ?? nil
        }
    }

    /// Gives up every target lease `owner` holds.
    public func releaseTargets(owner: String) throws {
        _ = try run { try $0.execute("DELETE FROM target_lease WHERE owner = $1", [owner]) }
    }

    /// Records what `owner`, the manager of target `alias`, found there, and tells the others.
    public func shareTargetOutcome(_ alias: String, owner: String, body: String) throws {
        try run { connection in
            try connection.transaction {
                try connection.execute(
                    "INSERT INTO target_outcome (alias, owner, body) VALUES ($1, $2, $3) ON CONFLICT (alias) DO UPDATE SET owner = excluded.owner, body = excluded.body",
                    [alias, owner, body]
                )
                try notify(connection, "target \(alias)")
            }
        }
    }

    /// What the manager of target `alias` last found there, and who it is.
    public func targetOutcome(_ alias: String) throws -> (owner: String, body: String)? {
        try run { connection in
            guard
                let row = try connection.execute("SELECT owner, body FROM target_outcome WHERE alias = $1", [alias])
                    .first
            else { return nil }
            return (row[0] ?? "", row[1] ?? "")
        }
    }

    /// Replica `id` stops (a graceful shutdown): the others stop listing it at their next beat.
    public func leave(id: String) throws {
        _ = try run { try $0.execute("DELETE FROM replica WHERE id = $1", [id]) }
    }

    /// Watches the other writers' changes on a connection of its own (LISTEN), calling `handle`
    /// with each (its own commits included: the caller compares revisions), until `stop` is
    /// called. A lost connection is made again (with ``Change/everything`` once it is back).
    ///
    /// - Returns: a call that stops the watch.
    public func watch(_ handle: @escaping @Sendable (StoreChange) -> Void) -> @Sendable () -> Void {
        let stopped = StopFlag()
        let location = self.location
        let thread = Thread {
            var connection: PostgresConnection?
            var retry = 0.25
            while !stopped.value.load(ordering: .relaxed) {
                do {
                    if connection == nil {
                        let made = try PostgresConnection(location, applicationName: "dem watch")
                        try made.execute("LISTEN \(Self.channel)")
                        connection = made
                        retry = 0.25
                        handle(.everything)
                    }
                    for notice in try connection!.notifications(timeout: 0.5) {
                        let words = notice.payload.split(separator: " ")
                        switch words.first {
                        case "fabric": handle(.fabric(revision: words.count > 1 ? Int64(words[1]) ?? 0 : 0))
                        case "tokens": handle(.tokens)
                        case "host-keys": handle(.hostKeys)
                        case "registrations": handle(.registrations)
                        case "generations": handle(.generations)
                        case "enrolments": handle(.enrolments)
                        case "target":
                            if let space = notice.payload.firstIndex(of: " ") {
                                handle(.target(String(notice.payload[notice.payload.index(after: space)...])))
                            }
                        default: break
                        }
                    }
                } catch {
                    connection = nil
                    Thread.sleep(forTimeInterval: retry)
                    retry = min(retry * 2, 5)
                }
            }
        }
        thread.name = "dem.store.watch"
        thread.start()
        return { stopped.value.store(true, ordering: .relaxed) }
    }

    private final class StopFlag: Sendable {
        let value = Atomic<Bool>(false)
    }
}

extension PostgresFabricStore: DiscoveryPageGenerations, TargetEnrolments {}
