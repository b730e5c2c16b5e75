import DEMCore
import DEMServer
import Foundation
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

    @Test("the schema is migrated and the file is intact")
    func migrations() throws {
        let store = try Self.temporaryStore()
        #expect(
            try store.appliedMigrations() == [
                "v1: targets, subsystems, hosts, groups, tokens", "v2: discovery generation counters reserved",
                "v3: host DH-HMAC-CHAP keys",
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
        try store.commit(from: fabric, to: changed)
        #expect(try store.loadFabric() == changed)
        fabric = changed

        // A second store on the same file (as after a restart) sees it too.
        let reopened = try SQLiteFabricStore(path: store.path)
        #expect(try reopened.loadFabric() == fabric)
        try reopened.commit(from: fabric, to: Fabric())
        #expect(try store.loadFabric() == Fabric())
    }

    @Test("tokens are stored, listed and revoked")
    func tokens() throws {
        let store = try Self.temporaryStore()
        let admin = APIToken.generate(name: "admin", role: .admin)
        let reader = APIToken.generate(name: "grafana", role: .read)
        try store.addToken(admin)
        try store.addToken(reader)
        #expect(Set(try store.loadTokens().map(\.secret)) == [admin.secret, reader.secret])
        #expect(try store.deleteToken(id: reader.id))
        #expect(try !store.deleteToken(id: reader.id))
        #expect(try store.loadTokens().map(\.id) == [admin.id])
        #expect(admin.secret.count == 4 + 8 + 1 + 64)
    }
}
