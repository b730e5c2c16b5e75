import DEMCore
import Foundation
import Logging
import Synchronization
import Testing

@testable import DEMServer

/// The throwaway PostgreSQL server that scripts/test starts (scripts/postgres-cluster): its URL
/// and password file in DEM_TEST_POSTGRES and DEM_TEST_POSTGRES_PASSWORD_FILE.
enum TestPostgres {
    static let url = ProcessInfo.processInfo.environment["DEM_TEST_POSTGRES"]
    static let password: String? = ProcessInfo.processInfo.environment["DEM_TEST_POSTGRES_PASSWORD_FILE"].flatMap {
        FileManager.default.contents(atPath: $0).map {
            String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .newlines)
        }
    }
    static var available: Bool { url != nil }
    static let unavailable =
        "DEM_TEST_POSTGRES is not set: scripts/test starts a throwaway PostgreSQL server (scripts/postgres-cluster start DIR) and sets it"

    /// The server's URL with `database` in place of its database.
    static func url(database: String) throws -> String {
        guard let url, var components = URLComponents(string: url) else { throw TestFailure(unavailable) }
        components.path = "/" + database
        return components.string!
    }

    /// Runs `arguments` (posix_spawn and waitpid on a thread of its own: Foundation's Process
    /// was seen to miss the exit of a script that starts a server) with its output in a file.
    static func run(_ arguments: String...) async throws -> (status: Int32, output: String) {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                let output = temporaryDirectory("dem-run")
                var actions: posix_spawn_file_actions_t = posix_spawn_file_actions_t()
                posix_spawn_file_actions_init(&actions)
                posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
                posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
                posix_spawn_file_actions_adddup2(&actions, 1, 2)
                defer { posix_spawn_file_actions_destroy(&actions) }
                let argv = arguments.map { strdup($0) } + [nil]
                defer { for pointer in argv { free(pointer) } }
                var pid: pid_t = 0
                let spawned = posix_spawn(&pid, arguments[0], &actions, nil, argv, environ)
                guard spawned == 0 else {
                    continuation.resume(throwing: TestFailure("cannot run \(arguments[0]): errno \(spawned)"))
                    return
                }
                var status: Int32 = 0
                while waitpid(pid, &status, 0) < 0, errno == EINTR {}
                let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
                try? FileManager.default.removeItem(atPath: output)
                // WEXITSTATUS
                continuation.resume(returning: ((status >> 8) & 0xff, text))
            }
        }
    }

    /// A new, empty database of its own.
    static func database() throws -> PostgresLocation {
        let name = "dem_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        return try PostgresFabricStore.createDatabase(
            name,
            server: try PostgresLocation(url: try url(database: "postgres"), password: password)
        )
    }
}

@Suite("PostgreSQL store", .enabled(if: TestPostgres.available, Comment(rawValue: TestPostgres.unavailable)))
struct PostgresStoreTests {
    @Test("the same migrations as SQLite, applied once; every commit is flushed (synchronous_commit on)")
    func migrations() throws {
        let location = try TestPostgres.database()
        let store = try PostgresFabricStore(location)
        let sqlite = try StoreTests.temporaryStore()
        #expect(try store.appliedMigrations() == (try sqlite.appliedMigrations()))
        #expect(try store.appliedMigrations().count == StoreSchema.migrations.count)
        #expect(try store.synchronousCommit() == "on")
        #expect(try store.loadFabric() == Fabric())
        // A second replica starting on the migrated database applies nothing again.
        let again = try PostgresFabricStore(location)
        #expect(try again.appliedMigrations() == (try store.appliedMigrations()))
    }

    @Test("a commit then a load gives the same model, across renames and deletes, on another connection too")
    func roundTrip() throws {
        let location = try TestPostgres.database()
        let store = try PostgresFabricStore(location)
        var fabric = try StoreTests.sample()
        try store.commit(from: Fabric(), to: fabric)
        #expect(try store.loadFabric() == fabric)
        let changed = try StoreTests.renamedAndDeleted(fabric)
        try store.commit(from: fabric, to: changed)
        #expect(try store.loadFabric() == changed)
        fabric = changed
        let other = try PostgresFabricStore(location)
        #expect(try other.loadFabric() == fabric)
        #expect(try other.storedRevision() == 2)
        // The same model in SQLite reads back the same.
        let sqlite = try StoreTests.temporaryStore()
        try sqlite.commit(from: Fabric(), to: fabric)
        #expect(try sqlite.loadFabric() == (try other.loadFabric()))
    }

    @Test(
        "a commit made on an older model than the stored one is refused, nothing written; made again on the new one it lands"
    )
    func conflict() throws {
        let location = try TestPostgres.database()
        let a = try PostgresFabricStore(location)
        let b = try PostgresFabricStore(location)
        let base = try a.loadFabric()
        _ = try b.loadFabric()
        var withH1 = base
        try withH1.addHost(FabricHost(alias: "h1", nqn: nil))
        try a.commit(from: base, to: withH1)
        var withH2 = base
        try withH2.addHost(FabricHost(alias: "h2", nqn: nil))
        #expect(throws: FabricStoreConflict.self) { try b.commit(from: base, to: withH2) }
        #expect(try a.loadFabric().hosts.map(\.alias) == ["h1"])
        let fresh = try b.loadFabric()
        var both = fresh
        try both.addHost(FabricHost(alias: "h2", nqn: nil))
        try b.commit(from: fresh, to: both)
        #expect(try a.loadFabric().hosts.map(\.alias) == ["h1", "h2"])
    }

    @Test("tokens, host keys, registrations and generation counters are stored and read back")
    func sideTables() throws {
        let store = try PostgresFabricStore(try TestPostgres.database())
        let admin = APIToken.generate(
            name: "admin",
            role: .admin,
            expires: Date(timeIntervalSince1970: 1_900_000_000.5)
        )
        try store.addToken(admin.token)
        let loaded = try store.loadTokens()
        #expect(loaded.map(\.id) == [admin.token.id])
        #expect(loaded.first?.role == .admin)
        #expect(loaded.first?.secretHash == admin.token.secretHash)
        #expect(abs(loaded.first!.created.timeIntervalSince(admin.token.created)) < 0.001)
        #expect(loaded.first?.expires == admin.token.expires)
        #expect(loaded.first?.matches(secret: admin.secret) == true)
        let used = Date(timeIntervalSince1970: 1_800_000_000.25)
        try store.recordTokenUse([admin.token.id: used])
        #expect(try store.loadTokens().first?.lastUsed == used)
        #expect(try store.deleteToken(id: admin.token.id))
        #expect(try !store.deleteToken(id: admin.token.id))

        let key = HostKey(secret: "DHHC-1:00:ia6zGodOr4SEG0Zzaw398rpY0wqipUWj4jWjUh4HWUz6aQ2n:")
        try store.setHostKey(key, alias: "h1")
        #expect(try store.loadHostKeys() == ["h1": key])
        try store.setHostKey(nil, alias: "h1")
        #expect(try store.loadHostKeys().isEmpty)

        #expect(try store.reservedGeneration() == 0)
        #expect(try store.reserveGenerations(10) == 1...10)
        #expect(try store.reserveGenerations(5) == 11...15)
        try store.raiseReservedGeneration(to: 100)
        try store.raiseReservedGeneration(to: 50)
        #expect(try store.reservedGeneration() == 100)
    }

    @Test(
        "two replicas' services on one database: a change on one reaches the other's model and pages; writes on both at once all land"
    )
    func replicas() async throws {
        let location = try TestPostgres.database()
        let logger = Logger(label: "test")
        let seenOnB = Mutex<[Fabric]>([])
        let storeA = try PostgresFabricStore(location)
        let a = try FabricService(store: storeA, logger: logger) { _ in }
        let stopA = a.follow(storeA)
        defer { stopA() }
        let storeB = try PostgresFabricStore(location)
        let b = try FabricService(store: storeB, logger: logger) { fabric in seenOnB.withLock { $0.append(fabric) } }
        let stop = b.follow(storeB)
        defer { stop() }
        try await Task.sleep(for: .milliseconds(300))  // the watch's LISTEN is in place
        try await a.change(.created, path: "/host/h1") { fabric throws(ModelError) in
            try fabric.addHost(FabricHost(alias: "h1", nqn: nil))
        }
        let deadline = ContinuousClock.now + .seconds(10)
        // The model is published (to the discovery pages) after it is taken in.
        while seenOnB.withLock({ $0.isEmpty }), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(b.fabric.hosts.map(\.alias) == ["h1"])
        #expect(seenOnB.withLock { $0.last?.hosts.map(\.alias) } == ["h1"])

        // 20 writers on each replica at once: each change is made on the model it lands on.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<40 {
                let service = i.isMultiple(of: 2) ? a : b
                group.addTask {
                    try await service.change(.created, path: "/host/w\(i)") { fabric throws(ModelError) in
                        try fabric.addHost(FabricHost(alias: "w\(i)", nqn: nil))
                    }
                }
            }
            try await group.waitForAll()
        }
        let stored = try PostgresFabricStore(location).loadFabric()
        #expect(stored.hosts.count == 41)
        while b.fabric != stored || a.fabric != stored, ContinuousClock.now < deadline + .seconds(10) {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(b.fabric == stored)
        #expect(a.fabric == stored)
    }

    @Test("replicas on one database share the first one's discovery NQN and see each other's listeners while they beat")
    func presence() throws {
        let location = try TestPostgres.database()
        let a = try PostgresFabricStore(location)
        let b = try PostgresFabricStore(location)
        #expect(
            try a.sharedDiscoveryNQN(proposed: "nqn.2014-08.org.nvmexpress:uuid:aaaa")
                == "nqn.2014-08.org.nvmexpress:uuid:aaaa"
        )
        #expect(
            try b.sharedDiscoveryNQN(proposed: "nqn.2014-08.org.nvmexpress:uuid:bbbb")
                == "nqn.2014-08.org.nvmexpress:uuid:aaaa"
        )
        let listenerA = PostgresFabricStore.Replica.Listener(transport: "tcp", address: "192.0.2.1", port: 8009)
        let listenerB = PostgresFabricStore.Replica.Listener(transport: "tcp", address: "192.0.2.2", port: 8009)
        let replicaA = PostgresFabricStore.Replica(listeners: [listenerA], started: 1)
        let replicaB = PostgresFabricStore.Replica(listeners: [listenerB], started: 2)
        #expect(try a.heartbeat(id: "a", replicaA, liveWithin: 5).isEmpty)
        #expect(try b.heartbeat(id: "b", replicaB, liveWithin: 5) == ["a": replicaA])
        #expect(try a.heartbeat(id: "a", replicaA, liveWithin: 5) == ["b": replicaB])
        // A replica silent for longer than the window is not listed; one that left is gone.
        Thread.sleep(forTimeInterval: 0.3)
        #expect(try a.heartbeat(id: "a", replicaA, liveWithin: 0.2).isEmpty)
        try b.leave(id: "b")
        #expect(try a.heartbeat(id: "a", replicaA, liveWithin: 5).isEmpty)
    }

    @Test(
        "replicas give a host the same GENCTR for the same page: a change raises it on every replica, a page that returns to an older content takes a new one, and a replica that starts later agrees"
    )
    func sharedGenerations() async throws {
        let location = try TestPostgres.database()
        let (hostA, hostB) = ("nqn.2014-08.org.nvmexpress:uuid:host-a", "nqn.2014-08.org.nvmexpress:uuid:host-b")
        let unique = "nqn.2014-08.org.nvmexpress:uuid:dc"
        let one = DiscoveryListenerAddress(address: "192.0.2.1", port: 8009)
        let two = DiscoveryListenerAddress(address: "192.0.2.2", port: 8009)
        let before = [DiscoveryCatalogTests.entry("shared")]
        let after = before + [DiscoveryCatalogTests.entry("only-a", hosts: [hostA])]
        func replica(
            _ own: DiscoveryListenerAddress,
            _ peer: DiscoveryListenerAddress
        ) throws -> (
            DiscoveryCatalog, PostgresFabricStore
        ) {
            let store = try PostgresFabricStore(location)
            let catalog = DiscoveryCatalog(uniqueNQN: unique, listeners: [own], entries: before)
            try catalog.reserveGenerations(using: { try store.reserveGenerations($0) }, logger: Logger(label: "test"))
            catalog.useStoredGenerations(store, logger: Logger(label: "test"))
            catalog.setPeers([peer])
            return (catalog, store)
        }
        let (first, _) = try replica(one, two)
        let (second, secondStore) = try replica(two, one)
        let listening = Atomic<Bool>(false)
        let stop = secondStore.watch { change in
            // As dem does: a content given a new GENCTR, or a watch (re)connected.
            if change == .generations || change == .everything { second.storedGenerationsChanged() }
            if change == .everything { listening.store(true, ordering: .relaxed) }
        }
        defer { stop() }
        // The watch listens before the changes below (so the new GENCTR reaches it as a notice).
        let listens = ContinuousClock.now + .seconds(10)
        while !listening.load(ordering: .relaxed), ContinuousClock.now < listens {
            try await Task.sleep(for: .milliseconds(20))
        }
        let listened = listening.load(ordering: .relaxed)
        #expect(listened)
        // The same page (every replica lists the same ports in the same order), the same GENCTR.
        let a1 = first.discoveryLogPage(hostNQN: hostA)
        #expect(a1 == second.discoveryLogPage(hostNQN: hostA))
        #expect(
            a1.entries.filter { $0.subsystemType == .currentDiscovery }.map(\.transportAddress) == [
                "192.0.2.1", "192.0.2.2",
            ]
        )
        let b1 = second.discoveryLogPage(hostNQN: hostB)
        #expect(b1.generationCounter == a1.generationCounter, "host B sees what host A sees")
        // Host A gains an entry: a higher GENCTR, the same on both; host B's page keeps its own.
        first.update(entries: after)
        second.update(entries: after)
        let a2 = first.discoveryLogPage(hostNQN: hostA)
        #expect(a2.entries.count == 4)
        #expect(a2.generationCounter > a1.generationCounter)
        #expect(a2 == second.discoveryLogPage(hostNQN: hostA))
        #expect(second.discoveryLogPage(hostNQN: hostB) == b1)
        // Host A's page returns to what host B sees: it takes a new GENCTR above its last one
        // (never an older one), and host B's page, with the same content, takes it too on both
        // replicas (the second is told through the store: it did not read host A's page again).
        first.update(entries: before)
        second.update(entries: before)
        let a3 = first.discoveryLogPage(hostNQN: hostA)
        #expect(a3.entries == a1.entries)
        #expect(a3.generationCounter > a2.generationCounter)
        let deadline = ContinuousClock.now + .seconds(10)
        while second.discoveryLogPage(hostNQN: hostB) != a3, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(second.discoveryLogPage(hostNQN: hostB) == a3)
        #expect(first.discoveryLogPage(hostNQN: hostB) == a3)
        #expect(second.discoveryLogPage(hostNQN: hostA) == a3)
        // A replica that starts now agrees with the others.
        let (third, _) = try replica(one, two)
        #expect(third.discoveryLogPage(hostNQN: hostA) == a3)
        // Host A's page goes back to its second content: a GENCTR above the last, not the
        // second's, and every replica that makes the change gives the same.
        third.update(entries: after)
        first.update(entries: after)
        let a4 = third.discoveryLogPage(hostNQN: hostA)
        #expect(a4.entries == a2.entries)
        #expect(a4.generationCounter > a3.generationCounter)
        #expect(first.discoveryLogPage(hostNQN: hostA) == a4)
        // Contents no replica asked for in 30 days are dropped when the next new one is stored;
        // one asked for is kept.
        let connection = try PostgresConnection(location)
        try connection.execute("UPDATE page_generation SET used = extract(epoch FROM now()) - 31 * 86400")
        let store = try PostgresFabricStore(location)
        let contents = try connection.execute("SELECT digest FROM page_generation").compactMap { $0[0] }
        #expect(contents.count >= 2)
        _ = try store.pageGenerations(above: [contents[0]: 0])
        let fresh = try store.pageGenerations(above: [String(repeating: "0", count: 64): 0])
        #expect(fresh.count == 1)
        let kept = Set(try connection.execute("SELECT digest FROM page_generation").compactMap { $0[0] })
        #expect(kept == [contents[0], String(repeating: "0", count: 64)])
    }

    @Test(
        "a target enrolled through one replica is enrolled for every replica (the same credential), and a replica's enrolments from before the shared store are added to it"
    )
    func sharedEnrolments() async throws {
        let location = try TestPostgres.database()
        let directory = temporaryDirectory("dem-shared-enrolments")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // Replica A enrolled "old" on its own before it used the shared store.
        let local = try TargetCredentials(fabric: "fabric-secret", directory: directory)
        _ = try local.enrol("old")
        let storeA = try PostgresFabricStore(location)
        let storeB = try PostgresFabricStore(location)
        let a = try TargetCredentials(fabric: "fabric-secret", directory: directory, shared: storeA)
        #expect(a.isEnrolled("old"))
        #expect(try Set(storeB.loadEnrolments().keys) == ["old"])
        let b = try TargetCredentials(fabric: "fabric-secret", shared: storeB)
        #expect(b.isEnrolled("old"))
        #expect(b.credential(for: "old") == a.credential(for: "old"))
        #expect(b.credential(for: "old") != "fabric-secret")
        // B hears of an enrolment through A as dem does: the store's notice, then a reload.
        let listening = Atomic<Bool>(false)
        let stop = storeB.watch { change in
            if change == .enrolments { try? b.reload() }
            if change == .everything { listening.store(true, ordering: .relaxed) }
        }
        defer { stop() }
        #expect(try await eventually(10) { listening.load(ordering: .relaxed) })
        #expect(!b.isEnrolled("t1"))
        let given = try a.enrol("t1")
        #expect(try await eventually(10) { b.isEnrolled("t1") })
        #expect(b.credential(for: "t1") == given)
        #expect(b.credential(for: "t2") == "fabric-secret", "a target that did not enrol keeps the fabric credential")
    }

    /// Two replicas' services on `location` through an outage: before it a change lands; while
    /// the database is down (`down`) both keep their model and a change is refused naming the
    /// store; once it is back (`up`) the next change lands and reaches the other replica.
    static func outage(
        _ location: PostgresLocation,
        down: () async throws -> Void,
        up: () async throws -> Void
    ) async throws {
        let logger = Logger(label: "test")
        let storeA = try PostgresFabricStore(location)
        let a = try FabricService(store: storeA, logger: logger) { _ in }
        let storeB = try PostgresFabricStore(location)
        let b = try FabricService(store: storeB, logger: logger) { _ in }
        let stops = [a.follow(storeA), b.follow(storeB)]
        defer { for stop in stops { stop() } }
        @Sendable func add(_ alias: String) -> @Sendable (inout Fabric) throws(ModelError) -> Void {
            { fabric throws(ModelError) in try fabric.addHost(FabricHost(alias: alias, nqn: nil)) }
        }
        try await a.change(.created, path: "/host/h1", add("h1"))
        // B takes it in before the outage (its watch may still be starting).
        let taken = ContinuousClock.now + .seconds(10)
        while b.fabric.hosts.isEmpty, ContinuousClock.now < taken { try await Task.sleep(for: .milliseconds(20)) }
        try await down()
        await #expect {
            try await b.change(.created, path: "/host/h2", add("h2"))
        } throws: { error in
            guard case .store(let message) = error as? FabricService.ChangeError else { return false }
            return message.contains(location.url)
        }
        #expect(a.fabric.hosts.map(\.alias) == ["h1"])
        #expect(b.fabric.hosts.map(\.alias) == ["h1"])
        try await up()
        try await b.change(.created, path: "/host/h2", add("h2"))
        let deadline = ContinuousClock.now + .seconds(15)
        while a.fabric.hosts.count < 2, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        #expect(a.fabric.hosts.map(\.alias) == ["h1", "h2"])
        try await a.change(.created, path: "/host/h3", add("h3"))
    }

    @Test(
        "the database unreachable: replicas keep their model, a change is refused naming the store; back, both converge"
    )
    func outage() async throws {
        let location = try TestPostgres.database()
        let database = String(location.url.split(separator: "/").last ?? "")
        let admin = try PostgresConnection(
            try PostgresLocation(url: try TestPostgres.url(database: "postgres"), password: TestPostgres.password)
        )
        try await Self.outage(location) {
            // No new connection to the database, and every one it had ended.
            try admin.execute("ALTER DATABASE \(database) WITH ALLOW_CONNECTIONS false")
            try admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                [database]
            )
        } up: {
            try admin.execute("ALTER DATABASE \(database) WITH ALLOW_CONNECTIONS true")
        }
    }

    @Test(
        "the PostgreSQL server restarts: the replicas keep their model, a change is refused naming the store while it is down, and both converge once it is back"
    )
    func serverRestart() async throws {
        // A cluster of this test's own (scripts/postgres-cluster): it is stopped and started.
        let cluster = temporaryDirectory("dem-pg-restart")
        let script = InstallTests.repository + "/scripts/postgres-cluster"
        let started = try await TestPostgres.run(script, "start", cluster)
        #expect(started.status == 0, "\(started.output)")
        func value(_ name: String) -> String {
            started.output.split(separator: "\n").first { $0.hasPrefix(name + "=") }
                .map { String($0.dropFirst(name.count + 1)) } ?? ""
        }
        let password = try String(contentsOfFile: value("DEM_TEST_POSTGRES_PASSWORD_FILE"), encoding: .utf8)
            .trimmingCharacters(in: .newlines)
        let location = try PostgresFabricStore.createDatabase(
            "fabric",
            server: try PostgresLocation(url: value("DEM_TEST_POSTGRES"), password: password)
        )
        try await Self.outage(location) {
            let stopped = try await TestPostgres.run(script, "stop", cluster)
            #expect(stopped.status == 0, "\(stopped.output)")
        } up: {
            let again = try await TestPostgres.run(script, "start", cluster)
            #expect(again.status == 0, "\(again.output)")
        }
        _ = try await TestPostgres.run(script, "stop", cluster)
        try? FileManager.default.removeItem(atPath: cluster)
    }

    @Test("a wrong password, an unreachable server, a URL with a password: refused, naming the cause")
    func badLocations() throws {
        let location = try TestPostgres.database()
        #expect {
            try PostgresFabricStore(try PostgresLocation(url: location.url, password: "wrong"))
        } throws: { error in
            "\(error)".contains("password authentication failed for user \"dem\"")
                && "\(error)".contains(location.url) && !"\(error)".contains("wrong")
        }
        #expect {
            try PostgresFabricStore(try PostgresLocation(url: "postgres://dem@127.0.0.1:1/x", password: nil))
        } throws: { error in
            "\(error)".contains("cannot connect") && "\(error)".contains("Connection refused")
        }
        #expect {
            try PostgresLocation(url: "postgres://dem:hunter2@db.example/fabric", password: nil)
        } throws: { error in
            "\(error)".contains("carries a password") && !"\(error)".contains("hunter2")
        }
        #expect(throws: StoreError.self) { try PostgresLocation(url: "mysql://db.example/fabric", password: nil) }
    }

    @Test("a database a newer dem migrated is refused before anything is written")
    func newerSchema() throws {
        let location = try TestPostgres.database()
        _ = try PostgresFabricStore(location)
        let connection = try PostgresConnection(location)
        try connection.execute("INSERT INTO dem_migrations (identifier) VALUES ('v99: something newer')")
        try connection.execute("DROP TABLE fabric_revision")
        try connection.execute("DELETE FROM dem_migrations WHERE identifier LIKE 'v7:%'")
        #expect {
            try PostgresFabricStore(location)
        } throws: { error in
            "\(error)".contains("was migrated by a newer dem (schema v99: something newer")
        }
        // v7 was not applied again.
        #expect(try connection.execute("SELECT to_regclass('fabric_revision') IS NULL").first?.first == "t")
    }

    @Test("dem --store: a wrong password ends the start promptly, naming the URL and the cause")
    func demStartWrongPassword() async throws {
        let location = try TestPostgres.database()
        let file = temporaryDirectory("dem-pgpass")
        try "not-the-password\n".write(toFile: file, atomically: true, encoding: .utf8)
        let (status, output) = try await runDEM([
            "--data-dir", temporaryDirectory("dem-pg"), "--port", "0", "--api-port", "0", "--no-mdns",
            "--store", location.url, "--store-password-file", file,
        ])
        #expect(status == 1, "\(output)")
        #expect(output.contains("store \(location.url): cannot connect"), "\(output)")
        #expect(output.contains("password authentication failed"), "\(output)")
        #expect(!output.contains("not-the-password"))
    }
}
