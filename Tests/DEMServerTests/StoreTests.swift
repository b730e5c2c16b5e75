import DEMCore
import DEMServer
import Foundation
import GRDB
import Testing

@Suite("SQLite store")
struct StoreTests {
    static func temporaryStore() throws -> SQLiteFabricStore {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dem-store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return try SQLiteFabricStore(path: directory.appendingPathComponent("dem.sqlite").path)
    }

    static func sample() throws -> Fabric {
        var fabric = Fabric()
        try fabric.addHost(
            FabricHost(alias: "h1", nqn: "nqn.2014-08.org.nvmexpress:uuid:aaaaaaaa-0000-4000-8000-000000000001")
        )
        try fabric.addHost(FabricHost(alias: "h2", nqn: nil))
        try fabric.addTarget(
            FabricTarget(
                alias: "t1",
                refresh: 5,
                ports: [
                    FabricPort(portID: 1, transportType: "tcp", addressFamily: "ipv4", transportAddress: "10.0.0.1"),
                    FabricPort(portID: 2, transportType: "rdma", addressFamily: "ipv6", transportAddress: "fd00::1"),
                ],
                subsystems: [
                    FabricSubsystem(nqn: "nqn.2024-01.io.example:a", serial: "S1"),
                    FabricSubsystem(
                        nqn: "nqn.2024-01.io.example:b",
                        allowAnyHost: false,
                        namespaces: [FabricNamespace(namespaceID: 1, deviceID: -1)],
                        hosts: ["h1"]
                    ),
                ]
            )
        )
        try fabric.addTarget(FabricTarget(alias: "t2"))
        try fabric.addGroup("g1")
        try fabric.addGroupMember(group: "g1", target: "t2")
        try fabric.addGroupMember(group: "g1", host: "h2")
        return fabric
    }

    /// `sample()` with a host, a target and a subsystem renamed, a target deleted, a group
    /// renamed and a zone activated: rows changed, added and removed in every table.
    static func renamedAndDeleted(_ fabric: Fabric) throws -> Fabric {
        var changed = fabric
        try changed.updateHost("h1", .init(alias: "h9"))
        try changed.updateTarget("t1", .init(alias: "t0"))
        try changed.updateSubsystem(
            target: "t0",
            nqn: "nqn.2024-01.io.example:a",
            .init(nqn: "nqn.2024-01.io.example:c")
        )
        try changed.deleteTarget("t2")
        try changed.renameGroup("g1", to: "g2")
        try changed.addZone(group: "zg", zone: "z1")
        changed.activateZoning()
        return changed
    }

    @Test("the schema is migrated and the file is intact")
    func migrations() throws {
        let store = try Self.temporaryStore()
        #expect(
            try store.appliedMigrations() == [
                "v1: targets, subsystems, hosts, groups, tokens", "v2: discovery generation counters reserved",
                "v3: host DH-HMAC-CHAP keys", "v4: API tokens kept as SHA-256 hashes, with their last use",
                "v5: API tokens with an expiry (join tokens)",
                "v6: discovery registrations and zoning (TP8010)",
                "v7: the model's revision (dem replicas on one database)",
                "v8: dem replicas: their discovery listeners and the shared discovery NQN",
                "v9: dem replicas: which one manages each target, and what it found",
                "v10: dem replicas: each discovery page's GENCTR, by the page's content",
                "v11: dem replicas: which targets enrolled",
            ]
        )
        #expect(try store.integrityCheck() == "ok")
        #expect(try store.loadFabric() == Fabric())
    }

    @Test("every commit is synced: the writer runs with synchronous FULL, also after a reopen")
    func synchronousFull() throws {
        let store = try Self.temporaryStore()
        try store.commit(from: Fabric(), to: try Self.sample())
        #expect(try store.synchronousMode() == 2)
        #expect(try SQLiteFabricStore(path: store.path).synchronousMode() == 2)
    }

    @Test("a commit then a load gives the same model, across renames and deletes")
    func roundTrip() throws {
        let store = try Self.temporaryStore()
        var fabric = try Self.sample()
        try store.commit(from: Fabric(), to: fabric)
        #expect(try store.loadFabric() == fabric)

        let changed = try Self.renamedAndDeleted(fabric)
        try store.commit(from: fabric, to: changed)
        #expect(try store.loadFabric() == changed)
        fabric = changed

        // A second store on the same file (as after a restart) sees it too.
        let reopened = try SQLiteFabricStore(path: store.path)
        #expect(try reopened.loadFabric() == fabric)
        try reopened.commit(from: fabric, to: Fabric())
        #expect(try store.loadFabric() == Fabric())
    }

    @Test("a file a newer dem migrated is refused before anything is written")
    func newerSchema() throws {
        let store = try Self.temporaryStore()
        try store.commit(from: Fabric(), to: try Self.sample())
        let queue = try DatabaseQueue(path: store.path)
        try queue.write { db in
            try db.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('v99: something newer')")
        }
        try queue.close()
        let before = FileManager.default.contents(atPath: store.path)
        #expect {
            try SQLiteFabricStore(path: store.path)
        } throws: { error in
            "\(error)".contains("was migrated by a newer dem (schema v99: something newer")
        }
        #expect(FileManager.default.contents(atPath: store.path) == before)
    }

    @Test("tokens are stored as hashes, listed, their use recorded and revoked")
    func tokens() throws {
        let store = try Self.temporaryStore()
        let admin = APIToken.generate(name: "admin", role: .admin)
        let reader = APIToken.generate(name: "grafana", role: .read)
        try store.addToken(admin.token)
        try store.addToken(reader.token)
        let loaded = try store.loadTokens()
        #expect(Set(loaded.map(\.id)) == [admin.token.id, reader.token.id])
        #expect(loaded.allSatisfy { $0.secretHash.count == 32 && $0.lastUsed == nil })
        #expect(loaded.first { $0.id == admin.token.id }?.matches(secret: admin.secret) == true)
        #expect(loaded.first { $0.id == admin.token.id }?.matches(secret: reader.secret) == false)
        #expect(APIToken.id(ofSecret: admin.secret) == admin.token.id)
        let used = Date(timeIntervalSince1970: 1_800_000_000)
        try store.recordTokenUse([reader.token.id: used])
        #expect(try store.loadTokens().first { $0.id == reader.token.id }?.lastUsed == used)
        #expect(try store.deleteToken(id: reader.token.id))
        #expect(try !store.deleteToken(id: reader.token.id))
        #expect(try store.loadTokens().map(\.id) == [admin.token.id])
        #expect(admin.secret.count == 4 + 8 + 1 + 64)
    }

    /// The store's files (database, WAL) as bytes, to search for secrets.
    static func storeBytes(_ path: String) -> Data {
        var bytes = Data()
        for suffix in ["", "-wal", "-shm"] {
            if let data = FileManager.default.contents(atPath: path + suffix) { bytes.append(data) }
        }
        return bytes
    }

    @Test("a store of version 3 with tokens in the clear keeps only their hashes after the migration")
    func tokensHashedByMigration() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dem-store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent("dem.sqlite").path
        let secret = "dem_0badf00d_" + String(repeating: "5e", count: 32)
        do {
            // The schema as versions 1-3 made it, with a token as they stored it.
            let queue = try DatabaseQueue(path: path)
            try queue.write { db in
                try db.execute(
                    sql: """
                        CREATE TABLE grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY);
                        INSERT INTO grdb_migrations VALUES ('v1: targets, subsystems, hosts, groups, tokens'),
                            ('v2: discovery generation counters reserved'), ('v3: host DH-HMAC-CHAP keys');
                        CREATE TABLE target (alias TEXT PRIMARY KEY NOT NULL, body TEXT NOT NULL);
                        CREATE TABLE subsystem (
                            target TEXT NOT NULL, nqn TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (target, nqn));
                        CREATE TABLE host (alias TEXT PRIMARY KEY NOT NULL, body TEXT NOT NULL);
                        CREATE TABLE fabric_group (name TEXT PRIMARY KEY NOT NULL, body TEXT NOT NULL);
                        CREATE TABLE api_token (
                            id TEXT PRIMARY KEY NOT NULL, name TEXT NOT NULL, role TEXT NOT NULL,
                            secret TEXT NOT NULL UNIQUE, created REAL NOT NULL);
                        CREATE TABLE discovery_generation (
                            id INTEGER PRIMARY KEY CHECK (id = 1), reserved INTEGER NOT NULL);
                        CREATE TABLE host_key (alias TEXT PRIMARY KEY NOT NULL, body TEXT NOT NULL);
                        """
                )
                try db.execute(
                    sql: "INSERT INTO api_token VALUES ('0badf00d', 'admin', 'admin', ?, 1700000000)",
                    arguments: [secret]
                )
            }
        }
        #expect(Self.storeBytes(path).range(of: Data(secret.utf8)) != nil)
        let store = try SQLiteFabricStore(path: path)
        let tokens = try store.loadTokens()
        #expect(tokens.map(\.id) == ["0badf00d"])
        #expect(tokens.first?.matches(secret: secret) == true)
        #expect(tokens.first?.role == .admin)
        #expect(Self.storeBytes(path).range(of: Data(secret.utf8)) == nil)
        #expect(Self.storeBytes(path).range(of: Data(secret.dropFirst(13).utf8)) == nil)
    }
}
