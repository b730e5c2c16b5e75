/// The store's schema, the same for SQLite and PostgreSQL: its migrations, oldest first, each
/// named as the store records it once applied.
enum StoreSchema {
    struct Migration: Sendable {
        var identifier: String
        var sqlite: String
        /// The same tables in PostgreSQL's types (BYTEA for BLOB, DOUBLE PRECISION for REAL,
        /// BIGINT for counters).
        var postgres: String
        /// The migration keeps the API tokens' secrets as SHA-256 hashes only: the rows are read
        /// before it and written back hashed after it.
        var hashesTokens = false
    }

    static let migrations: [Migration] = [
        Migration(
            identifier: "v1: targets, subsystems, hosts, groups, tokens",
            sqlite: """
                CREATE TABLE target (alias TEXT PRIMARY KEY NOT NULL, body TEXT NOT NULL);
                CREATE TABLE subsystem (
                    target TEXT NOT NULL, nqn TEXT NOT NULL, body TEXT NOT NULL,
                    PRIMARY KEY (target, nqn));
                CREATE TABLE host (alias TEXT PRIMARY KEY NOT NULL, body TEXT NOT NULL);
                CREATE TABLE fabric_group (name TEXT PRIMARY KEY NOT NULL, body TEXT NOT NULL);
                CREATE TABLE api_token (
                    id TEXT PRIMARY KEY NOT NULL, name TEXT NOT NULL, role TEXT NOT NULL,
                    secret TEXT NOT NULL UNIQUE, created REAL NOT NULL);
                """,
            postgres: """
                CREATE TABLE target (alias TEXT PRIMARY KEY NOT NULL, body TEXT NOT NULL);
                CREATE TABLE subsystem (
                    target TEXT NOT NULL, nqn TEXT NOT NULL, body TEXT NOT NULL,
                    PRIMARY KEY (target, nqn));
                CREATE TABLE host (alias TEXT PRIMARY KEY NOT NULL, body TEXT NOT NULL);
                CREATE TABLE fabric_group (name TEXT PRIMARY KEY NOT NULL, body TEXT NOT NULL);
                CREATE TABLE api_token (
                    id TEXT PRIMARY KEY NOT NULL, name TEXT NOT NULL, role TEXT NOT NULL,
                    secret TEXT NOT NULL UNIQUE, created DOUBLE PRECISION NOT NULL);
                """
        ),
        Migration(
            identifier: "v2: discovery generation counters reserved",
            sqlite: """
                CREATE TABLE discovery_generation (
                    id INTEGER PRIMARY KEY CHECK (id = 1), reserved INTEGER NOT NULL);
                """,
            postgres: """
                CREATE TABLE discovery_generation (
                    id INTEGER PRIMARY KEY CHECK (id = 1), reserved BIGINT NOT NULL);
                """
        ),
        Migration(
            identifier: "v3: host DH-HMAC-CHAP keys",
            sqlite: "CREATE TABLE host_key (alias TEXT PRIMARY KEY NOT NULL, body TEXT NOT NULL);",
            postgres: "CREATE TABLE host_key (alias TEXT PRIMARY KEY NOT NULL, body TEXT NOT NULL);"
        ),
        Migration(
            identifier: "v4: API tokens kept as SHA-256 hashes, with their last use",
            sqlite: """
                DROP TABLE api_token;
                CREATE TABLE api_token (
                    id TEXT PRIMARY KEY NOT NULL, name TEXT NOT NULL, role TEXT NOT NULL,
                    secret_sha256 BLOB NOT NULL, created REAL NOT NULL, last_used REAL);
                """,
            postgres: """
                DROP TABLE api_token;
                CREATE TABLE api_token (
                    id TEXT PRIMARY KEY NOT NULL, name TEXT NOT NULL, role TEXT NOT NULL,
                    secret_sha256 BYTEA NOT NULL, created DOUBLE PRECISION NOT NULL,
                    last_used DOUBLE PRECISION);
                """,
            hashesTokens: true
        ),
        Migration(
            identifier: "v5: API tokens with an expiry (join tokens)",
            sqlite: "ALTER TABLE api_token ADD COLUMN expires REAL",
            postgres: "ALTER TABLE api_token ADD COLUMN expires DOUBLE PRECISION"
        ),
        Migration(
            identifier: "v6: discovery registrations and zoning (TP8010)",
            sqlite: """
                CREATE TABLE registration (nqn TEXT PRIMARY KEY NOT NULL, body TEXT NOT NULL);
                CREATE TABLE zone_group (
                    active INTEGER NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL,
                    PRIMARY KEY (active, name));
                """,
            postgres: """
                CREATE TABLE registration (nqn TEXT PRIMARY KEY NOT NULL, body TEXT NOT NULL);
                CREATE TABLE zone_group (
                    active INTEGER NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL,
                    PRIMARY KEY (active, name));
                """
        ),
        Migration(
            identifier: "v7: the model's revision (dem replicas on one database)",
            sqlite: """
                CREATE TABLE fabric_revision (id INTEGER PRIMARY KEY CHECK (id = 1), revision INTEGER NOT NULL);
                INSERT INTO fabric_revision (id, revision) VALUES (1, 0);
                """,
            postgres: """
                CREATE TABLE fabric_revision (id INTEGER PRIMARY KEY CHECK (id = 1), revision BIGINT NOT NULL);
                INSERT INTO fabric_revision (id, revision) VALUES (1, 0);
                """
        ),
        Migration(
            identifier: "v8: dem replicas: their discovery listeners and the shared discovery NQN",
            sqlite: """
                CREATE TABLE replica (id TEXT PRIMARY KEY NOT NULL, body TEXT NOT NULL, heartbeat REAL NOT NULL);
                CREATE TABLE setting (name TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
                """,
            postgres: """
                CREATE TABLE replica (
                    id TEXT PRIMARY KEY NOT NULL, body TEXT NOT NULL, heartbeat DOUBLE PRECISION NOT NULL);
                CREATE TABLE setting (name TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
                """
        ),
        Migration(
            identifier: "v9: dem replicas: which one manages each target, and what it found",
            sqlite: """
                CREATE TABLE target_lease (alias TEXT PRIMARY KEY NOT NULL, owner TEXT NOT NULL, expires REAL NOT NULL);
                CREATE TABLE target_outcome (alias TEXT PRIMARY KEY NOT NULL, owner TEXT NOT NULL, body TEXT NOT NULL);
                """,
            postgres: """
                CREATE TABLE target_lease (
                    alias TEXT PRIMARY KEY NOT NULL, owner TEXT NOT NULL, expires DOUBLE PRECISION NOT NULL);
                CREATE TABLE target_outcome (alias TEXT PRIMARY KEY NOT NULL, owner TEXT NOT NULL, body TEXT NOT NULL);
                """
        ),
        Migration(
            identifier: "v10: dem replicas: each discovery page's GENCTR, by the page's content",
            sqlite: """
                CREATE TABLE page_generation (
                    digest TEXT PRIMARY KEY NOT NULL, generation INTEGER NOT NULL, used REAL NOT NULL);
                INSERT OR IGNORE INTO discovery_generation (id, reserved) VALUES (1, 0);
                """,
            postgres: """
                CREATE TABLE page_generation (
                    digest TEXT PRIMARY KEY NOT NULL, generation BIGINT NOT NULL, used DOUBLE PRECISION NOT NULL);
                INSERT INTO discovery_generation (id, reserved) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
                """
        ),
        Migration(
            identifier: "v11: dem replicas: which targets enrolled",
            sqlite: """
                CREATE TABLE target_enrolment (alias TEXT PRIMARY KEY NOT NULL, enrolled REAL NOT NULL);
                """,
            postgres: """
                CREATE TABLE target_enrolment (alias TEXT PRIMARY KEY NOT NULL, enrolled DOUBLE PRECISION NOT NULL);
                """
        ),
    ]

    /// The identifiers of every migration this dem knows.
    static let identifiers = Set(migrations.map(\.identifier))

    /// The refusal of a store that a newer dem migrated: `unknown` are the migrations it applied
    /// that this dem does not know.
    static func newerSchema(_ unknown: [String]) -> String {
        "was migrated by a newer dem (schema \(unknown.sorted().joined(separator: ", ")), unknown to this one); nothing was written: run that dem, or restore a backup this dem made"
    }
}
