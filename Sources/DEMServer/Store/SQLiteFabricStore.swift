import DEMCore
import Foundation
import GRDB

/// The fabric model in SQLite (through GRDB): WAL mode, `synchronous = FULL` on the writer, so
/// a commit that returned survives a crash of dem or of the machine.
///
/// One row per target (its own fields and ports), per subsystem (with its namespaces and access
/// list), per host and per group, each a JSON document in the REST API's shape; a commit writes
/// only the rows that changed. The schema is versioned by GRDB's migrator.
///
/// An existing file is checked (``check(path:full:)``, read-only) before it is opened for
/// writing: a damaged store is refused, never written to.
public final class SQLiteFabricStore: FabricStore {
    /// The database file.
    public let path: String
    private let pool: DatabasePool

    /// Opens (creating if needed) and migrates the database at `path`, after checking an
    /// existing file with SQLite's `quick_check` (or, with `fullCheck`, `integrity_check`).
    ///
    /// - Throws: ``StoreError`` naming the file: damaged, unreadable, or not a database.
    public convenience init(path: String, fullCheck: Bool = false) throws {
        if FileManager.default.fileExists(atPath: path) {
            let problems = try Self.check(path: path, full: fullCheck)
            guard problems.isEmpty else { throw StoreError.damaged(path: path, problems: problems) }
        }
        try self.init(path: path, readOnly: false)
    }

    /// Opens the database at `path`: read-only (it must exist; nothing is written, not even
    /// the schema's migrations), or for writing, migrated, without a check.
    public init(path: String, readOnly: Bool) throws {
        self.path = path
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.readonly = readOnly
        if readOnly {
            guard FileManager.default.fileExists(atPath: path) else { throw StoreError.missing(path: path) }
        }
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
            guard !readOnly else { return }
            // GRDB sets the writer to synchronous NORMAL when it turns WAL on (durable against a
            // crash of dem, not of the machine); every commit dem acknowledges must be synced, so
            // the writer connection is set to FULL afterwards and checked.
            // secure_delete: a deleted row (a revoked token's hash, a replaced DH-HMAC-CHAP key)
            // is overwritten in the file, not left in a free page.
            try pool.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA synchronous = FULL; PRAGMA secure_delete = ON")
            }
            guard try Self.synchronousMode(pool) == 2 else {
                throw DatabaseError(message: "cannot set PRAGMA synchronous = FULL")
            }
            // A store a newer dem migrated is refused before anything is written to it.
            let unknown = try pool.read { db -> [String] in
                guard try db.tableExists("grdb_migrations") else { return [] }
                return try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations")
                    .filter { !StoreSchema.identifiers.contains($0) }
            }
            guard unknown.isEmpty else { throw StoreError(path: path, message: StoreSchema.newerSchema(unknown)) }
            try Self.migrator.migrate(pool)
            // What a migration freed is overwritten in the WAL; this moves it into the file.
            _ = try pool.writeWithoutTransaction { db in try db.checkpoint(.truncate) }
        } catch let error as DatabaseError {
            throw StoreError(path: path, error)
        }
    }

    /// SQLite's check of the file at `path`, opened read-only: `PRAGMA quick_check` (the
    /// structure of every page and b-tree), or with `full` `PRAGMA integrity_check` (also every
    /// index against its table). Nothing is written.
    ///
    /// - Returns: what SQLite found wrong; empty when the file is intact.
    /// - Throws: ``StoreError`` when the file cannot be opened or read at all.
    public static func check(path: String, full: Bool = false) throws -> [String] {
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(10)
        do {
            let queue = try DatabaseQueue(path: path, configuration: configuration)
            defer { try? queue.close() }
            let rows = try queue.read { db in
                try String.fetchAll(db, sql: full ? "PRAGMA integrity_check" : "PRAGMA quick_check")
            }
            // One problem per line, without SQLite's "*** in database main ***" headings.
            let problems = rows.flatMap { $0.split(separator: "\n").map(String.init) }
                .filter { !$0.hasPrefix("*** in database") && !$0.isEmpty }
            return problems == ["ok"] ? [] : problems
        } catch let error as DatabaseError {
            if error.resultCode == .SQLITE_CORRUPT || error.resultCode == .SQLITE_NOTADB {
                return [error.message ?? "\(error.resultCode)"]
            }
            throw StoreError(path: path, error)
        }
    }

    /// Copies the database to a new file at `destination` with SQLite's online backup: a
    /// consistent copy while dem runs and writes. The copy is checked before this returns.
    public func backup(to destination: String) throws {
        guard !FileManager.default.fileExists(atPath: destination) else {
            throw StoreError(path: destination, message: "already exists; choose a new file")
        }
        do {
            let copy = try DatabaseQueue(path: destination)
            try pool.backup(to: copy)
            try copy.close()
        } catch let error as DatabaseError {
            try? FileManager.default.removeItem(atPath: destination)
            throw StoreError(path: destination, error)
        }
        let problems = try Self.check(path: destination, full: true)
        guard problems.isEmpty else {
            throw StoreError(
                path: destination,
                message: "the copy failed its check: \(problems.joined(separator: "; "))"
            )
        }
    }

    /// The writer's `PRAGMA synchronous` (2: FULL, every commit synced).
    public func synchronousMode() throws -> Int { try Self.synchronousMode(pool) }

    private static func synchronousMode(_ pool: DatabasePool) throws -> Int {
        try pool.writeWithoutTransaction { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") ?? -1 }
    }

    /// The schema's migrations, oldest first.
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        for migration in StoreSchema.migrations {
            migrator.registerMigration(migration.identifier) { db in
                // Version 4 hashes the secrets and drops the old table; secure_delete (on for
                // every connection) overwrites the freed pages, so no secret stays in the file.
                let tokens =
                    migration.hashesTokens
                    ? try Row.fetchAll(db, sql: "SELECT id, name, role, secret, created FROM api_token") : []
                try db.execute(sql: migration.sqlite)
                for row in tokens {
                    let secret: String = row["secret"]
                    try db.execute(
                        sql: "INSERT INTO api_token (id, name, role, secret_sha256, created) VALUES (?, ?, ?, ?, ?)",
                        arguments: [
                            row["id"] as String, row["name"] as String, row["role"] as String,
                            Data(APIToken.hash(secret)), row["created"] as Double,
                        ]
                    )
                }
            }
        }
        return migrator
    }

    /// The migrations applied to the database, oldest first.
    public func appliedMigrations() throws -> [String] {
        try pool.read { db in try Self.migrator.appliedMigrations(db) }
    }

    /// SQLite's own check of the open database: "ok" when it is intact.
    public func integrityCheck() throws -> String {
        try pool.read { db in try String.fetchAll(db, sql: "PRAGMA integrity_check").joined(separator: "; ") }
    }

    // MARK: Discovery generations

    public func reserveGenerations(_ count: UInt64) throws -> ClosedRange<UInt64> {
        precondition(count > 0)
        do {
            return try pool.write { db in
                let reserved = try Self.reservedGeneration(db)
                let range = (reserved + 1)...(reserved + count)
                try Self.setReservedGeneration(db, range.upperBound)
                return range
            }
        } catch let error as DatabaseError {
            throw StoreError(path: path, error)
        }
    }

    public func reservedGeneration() throws -> UInt64 {
        do {
            return try pool.read { db in
                // A read-only store from before the table existed has reserved nothing.
                guard try db.tableExists("discovery_generation") else { return 0 }
                return try Self.reservedGeneration(db)
            }
        } catch let error as DatabaseError {
            throw StoreError(path: path, error)
        }
    }

    public func raiseReservedGeneration(to floor: UInt64) throws {
        do {
            try pool.write { db in
                if try Self.reservedGeneration(db) < floor { try Self.setReservedGeneration(db, floor) }
            }
        } catch let error as DatabaseError {
            throw StoreError(path: path, error)
        }
    }

    private static func reservedGeneration(_ db: Database) throws -> UInt64 {
        UInt64(try Int64.fetchOne(db, sql: "SELECT reserved FROM discovery_generation WHERE id = 1") ?? 0)
    }

    private static func setReservedGeneration(_ db: Database, _ value: UInt64) throws {
        try db.execute(
            sql: "INSERT OR REPLACE INTO discovery_generation (id, reserved) VALUES (1, ?)",
            arguments: [Int64(clamping: value)]
        )
    }

    // MARK: Model

    public func loadFabric() throws -> Fabric {
        try pool.read { db in
            try FabricRows.fabric(
                targets: try String.fetchAll(db, sql: "SELECT body FROM target"),
                subsystems: try Row.fetchAll(db, sql: "SELECT target, body FROM subsystem").map {
                    (target: $0["target"], body: $0["body"])
                },
                hosts: try String.fetchAll(db, sql: "SELECT body FROM host"),
                groups: try String.fetchAll(db, sql: "SELECT body FROM fabric_group"),
                zoneGroups: try Row.fetchAll(db, sql: "SELECT active, body FROM zone_group").map {
                    (active: $0["active"], body: $0["body"])
                }
            )
        }
    }

    public func commit(from old: Fabric, to new: Fabric) throws {
        let changes = try FabricRows.changes(from: old, to: new)
        try pool.write { db in
            for change in changes {
                let columns = change.key.map(\.name)
                var arguments = StatementArguments(change.key.map(\.value))
                if let body = change.body {
                    arguments += [body]
                    let names = (columns + ["body"]).joined(separator: ", ")
                    let marks = Array(repeating: "?", count: columns.count + 1).joined(separator: ", ")
                    try db.execute(
                        sql: "INSERT OR REPLACE INTO \(change.table) (\(names)) VALUES (\(marks))",
                        arguments: arguments
                    )
                } else {
                    let condition = columns.map { "\($0) = ?" }.joined(separator: " AND ")
                    try db.execute(sql: "DELETE FROM \(change.table) WHERE \(condition)", arguments: arguments)
                }
            }
            try db.execute(sql: "UPDATE fabric_revision SET revision = revision + 1 WHERE id = 1")
        }
    }

    /// The model's revision: how many commits changed it.
    public func storedRevision() throws -> Int64 {
        try pool.read { db in try Int64.fetchOne(db, sql: "SELECT revision FROM fabric_revision WHERE id = 1") ?? 0 }
    }

    // MARK: Tokens

    public func loadTokens() throws -> [APIToken] {
        try pool.read { db in
            try Row.fetchAll(
                db,
                sql:
                    "SELECT id, name, role, secret_sha256, created, last_used, expires FROM api_token ORDER BY created, id"
            ).map { row in
                let role: String = row["role"]
                let created: Double = row["created"]
                let lastUsed: Double? = row["last_used"]
                let expires: Double? = row["expires"]
                let hash: Data = row["secret_sha256"]
                return APIToken(
                    id: row["id"],
                    name: row["name"],
                    role: APIToken.Role(rawValue: role) ?? .read,
                    created: Date(timeIntervalSince1970: created),
                    secretHash: Array(hash),
                    lastUsed: lastUsed.map { Date(timeIntervalSince1970: $0) },
                    expires: expires.map { Date(timeIntervalSince1970: $0) }
                )
            }
        }
    }

    public func addToken(_ token: APIToken) throws {
        try pool.write { db in
            try db.execute(
                sql:
                    "INSERT INTO api_token (id, name, role, secret_sha256, created, last_used, expires) VALUES (?, ?, ?, ?, ?, ?, ?)",
                arguments: [
                    token.id, token.name, token.role.rawValue, Data(token.secretHash),
                    token.created.timeIntervalSince1970, token.lastUsed?.timeIntervalSince1970,
                    token.expires?.timeIntervalSince1970,
                ]
            )
        }
    }

    public func recordTokenUse(_ uses: [String: Date]) throws {
        try pool.write { db in
            for (id, time) in uses {
                try db.execute(
                    sql: "UPDATE api_token SET last_used = ? WHERE id = ?",
                    arguments: [time.timeIntervalSince1970, id]
                )
            }
        }
    }

    public func loadHostKeys() throws -> [String: HostKey] {
        try pool.read { db in
            var keys: [String: HostKey] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT alias, body FROM host_key") {
                let body: String = row["body"]
                keys[row["alias"]] = try JSONDecoder().decode(HostKey.self, from: Data(body.utf8))
            }
            return keys
        }
    }

    public func setHostKey(_ key: HostKey?, alias: String) throws {
        let body = try key.map { String(decoding: try JSONEncoder().encode($0), as: UTF8.self) }
        try pool.write { db in
            if let body {
                try db.execute(
                    sql:
                        "INSERT INTO host_key (alias, body) VALUES (?, ?) ON CONFLICT(alias) DO UPDATE SET body = excluded.body",
                    arguments: [alias, body]
                )
            } else {
                try db.execute(sql: "DELETE FROM host_key WHERE alias = ?", arguments: [alias])
            }
        }
    }

    public func loadRegistrations() throws -> [DiscoveryRegistration] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT body FROM registration ORDER BY nqn").map { row in
                let body: String = row["body"]
                return try JSONDecoder().decode(DiscoveryRegistration.self, from: Data(body.utf8))
            }
        }
    }

    public func setRegistration(_ registration: DiscoveryRegistration?, nqn: String) throws {
        let body = try registration.map { String(decoding: try JSONEncoder().encode($0), as: UTF8.self) }
        try pool.write { db in
            if let body {
                try db.execute(
                    sql:
                        "INSERT INTO registration (nqn, body) VALUES (?, ?) ON CONFLICT(nqn) DO UPDATE SET body = excluded.body",
                    arguments: [nqn, body]
                )
            } else {
                try db.execute(sql: "DELETE FROM registration WHERE nqn = ?", arguments: [nqn])
            }
        }
    }

    public func deleteToken(id: String) throws -> Bool {
        try pool.write { db in
            try db.execute(sql: "DELETE FROM api_token WHERE id = ?", arguments: [id])
            return db.changesCount > 0
        }
    }
}

/// The store cannot be used: the message names the file and what to do.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    public var path: String
    public var message: String

    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    init(path: String, _ error: DatabaseError) {
        self.path = path
        var text = error.message ?? "\(error.resultCode)"
        switch error.resultCode {
        case .SQLITE_CANTOPEN, .SQLITE_PERM, .SQLITE_READONLY:
            let folder = (path as NSString).deletingLastPathComponent
            if access(path, F_OK) == 0, access(path, R_OK | W_OK) != 0 {
                text += ": this user cannot read and write it (\(Errno.describe(errno)))"
            } else if access(folder, W_OK) != 0 {
                text += ": this user cannot write \(folder) (\(Errno.describe(errno)))"
            }
        case .SQLITE_CORRUPT, .SQLITE_NOTADB:
            text += Self.damagedAdvice
        default:
            break
        }
        self.message = "SQLite error \(error.resultCode.rawValue): " + text
    }

    /// A store that failed its check.
    public static func damaged(path: String, problems: [String]) -> StoreError {
        let shown = problems.prefix(5).joined(separator: "; ") + (problems.count > 5 ? "; …" : "")
        return StoreError(path: path, message: "is damaged (\(shown))" + damagedAdvice)
    }

    static func missing(path: String) -> StoreError {
        StoreError(path: path, message: "does not exist (no store in this data directory)")
    }

    private static let damagedAdvice =
        "; dem will not serve it or write to it. Restore a backup (dem restore FILE), or save what can still be read (dem export > fabric.json), move the damaged file aside and load that (dem import fabric.json); see dem(8), STORE"

    public var description: String { "store \(path): \(message)" }
}
