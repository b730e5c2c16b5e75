import DEMCore
import DEMServer
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import Synchronization
import Testing

/// The REST API through Hummingbird's router test client, on a real SQLite store in a temporary
/// directory.
struct APIFixture {
    let directory: String
    let service: FabricService
    let feed: DiscoveryModelFeed
    let routes: APIRoutes
    let adminToken: String

    static func make(coalescing: Duration = .milliseconds(1)) async throws -> APIFixture {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dem-api-\(UUID().uuidString)")
            .path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var logger = Logger(label: "dem-api-test")
        logger.logLevel = .warning
        let catalog = DiscoveryCatalog(
            uniqueNQN: "nqn.2014-08.org.nvmexpress:uuid:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
            listeners: [DiscoveryListenerAddress(address: "127.0.0.1", port: 8009)]
        )
        let feed = DiscoveryModelFeed(catalog: catalog, coalescing: coalescing, logger: logger)
        let service = try FabricService(store: SQLiteFabricStore(path: directory + "/dem.sqlite"), logger: logger) {
            feed.changed($0)
        }
        let (path, created) = try await service.ensureAdminTokenFile(in: directory)
        #expect(created)
        let token = try String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let routes = APIRoutes(
            service: service,
            feed: feed,
            metrics: DEMMetrics(),
            audit: try AuditLog(path: directory + "/audit.log"),
            shutdown: {}
        )
        return APIFixture(directory: directory, service: service, feed: feed, routes: routes, adminToken: token)
    }

    func test(_ body: @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        let application = Application(router: routes.router())
        try await application.test(.router, body)
    }
}

struct APIResult: Sendable {
    var status: HTTPResponse.Status
    var headers: HTTPFields
    var body: String

    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:]
    }
}

extension TestClientProtocol {
    @discardableResult
    func call(
        _ method: HTTPRequest.Method,
        _ uri: String,
        token: String?,
        body: String? = nil
    ) async throws -> APIResult {
        var headers: HTTPFields = [:]
        if let token { headers[.authorization] = "Bearer \(token)" }
        if body != nil { headers[.contentType] = "application/json" }
        return try await execute(
            uri: uri,
            method: method,
            headers: headers,
            body: body.map { ByteBuffer(string: $0) }
        ) { response in
            APIResult(status: response.status, headers: response.headers, body: String(buffer: response.body))
        }
    }
}

let hostA = "nqn.2014-08.org.nvmexpress:uuid:aaaaaaaa-0000-4000-8000-000000000001"
let hostB = "nqn.2014-08.org.nvmexpress:uuid:bbbbbbbb-0000-4000-8000-000000000002"

@Suite("REST API: authentication")
struct RESTAuthenticationTests {
    @Test("no token or a bad one is 401 with WWW-Authenticate; /health needs none")
    func anonymous() async throws {
        let fixture = try await APIFixture.make()
        try await fixture.test { client in
            for token in [nil, "dem_nope_0000", ""] as [String?] {
                let result = try await client.call(.get, "/target", token: token)
                #expect(result.status == .unauthorized)
                #expect(result.headers[.wwwAuthenticate] == "Bearer realm=\"dem\"")
                #expect(result.json["status"] as? Int == 401)
            }
            #expect(try await client.call(.put, "/host", token: nil, body: #"{"Alias":"h"}"#).status == .unauthorized)
            #expect(try await client.call(.get, "/health", token: nil).status == .ok)
            #expect(try await client.call(.get, "/target", token: fixture.adminToken).status == .ok)
        }
    }

    @Test("a read-only token reads but gets 403 for writes and for the tokens; revoked tokens stop working")
    func readOnly() async throws {
        let fixture = try await APIFixture.make()
        try await fixture.test { client in
            let created = try await client.call(
                .post,
                "/dem/tokens",
                token: fixture.adminToken,
                body: #"{"Name":"monitoring","Role":"read"}"#
            )
            #expect(created.status == .created)
            let secret = try #require(created.json["Token"] as? String)
            let id = try #require(created.json["ID"] as? String)
            #expect(try await client.call(.get, "/target", token: secret).status == .ok)
            #expect(try await client.call(.get, "/metrics", token: secret).status == .ok)
            let write = try await client.call(.post, "/target/t1", token: secret)
            #expect(write.status == .forbidden)
            #expect(try await client.call(.get, "/dem/tokens", token: secret).status == .forbidden)
            let list = try await client.call(.get, "/dem/tokens", token: fixture.adminToken)
            #expect(list.body.contains(id))
            #expect(!list.body.contains(secret), "secrets are shown once, at creation")
            let listed = try #require((list.json["Tokens"] as? [[String: Any]])?.first { $0["ID"] as? String == id })
            #expect(listed["LastUsed"] is String, "the token's use is listed")
            // Another secret naming the same token ID is refused.
            let forged = String(secret.dropLast(2)) + (secret.hasSuffix("00") ? "01" : "00")
            #expect(try await client.call(.get, "/target", token: forged).status == .unauthorized)
            // dem keeps no secret: neither token is anywhere in the store's files.
            let store = StoreTests.storeBytes(fixture.directory + "/dem.sqlite")
            #expect(store.range(of: Data(secret.utf8)) == nil)
            #expect(store.range(of: Data(fixture.adminToken.utf8)) == nil)
            #expect(try await client.call(.delete, "/dem/tokens/\(id)", token: fixture.adminToken).status == .noContent)
            #expect(try await client.call(.get, "/target", token: secret).status == .unauthorized)
            #expect(try await client.call(.delete, "/dem/tokens/\(id)", token: fixture.adminToken).status == .notFound)
            let badRole = try await client.call(
                .post,
                "/dem/tokens",
                token: fixture.adminToken,
                body: #"{"Name":"x","Role":"root"}"#
            )
            #expect(badRole.status == .unprocessableContent)
            #expect(badRole.json["field"] as? String == "Role")
        }
    }

    @Test("the admin token file is mode 0600 and a second start keeps it")
    func tokenFile() async throws {
        let fixture = try await APIFixture.make()
        let attributes = try FileManager.default.attributesOfItem(atPath: fixture.directory + "/admin.token")
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        let again = try FabricService(
            store: SQLiteFabricStore(path: fixture.directory + "/dem.sqlite"),
            logger: Logger(label: "t"),
            published: { _ in }
        )
        let (_, created) = try await again.ensureAdminTokenFile(in: fixture.directory)
        #expect(!created)
        #expect(again.token(secret: fixture.adminToken)?.role == .admin)
    }
}

@Suite("REST API: resources and status codes")
struct RESTResourceTests {
    @Test("creation is 201 with Location, a duplicate 409, a missing resource 404, a delete 204")
    func lifecycle() async throws {
        let fixture = try await APIFixture.make()
        let token = fixture.adminToken
        try await fixture.test { client in
            let created = try await client.call(.post, "/target/t1", token: token)
            #expect(created.status == .created)
            #expect(created.headers[.location] == "/target/t1")
            #expect(created.json["MgmtMode"] as? String == "LocalMgmt")
            let duplicate = try await client.call(.put, "/target", token: token, body: #"{"Alias":"t1"}"#)
            #expect(duplicate.status == .conflict)
            #expect(duplicate.json["field"] as? String == "Alias")
            #expect(try await client.call(.get, "/target/t9", token: token).status == .notFound)
            #expect(try await client.call(.get, "/target", token: token).json["Targets"] as? [String] == ["t1"])
            #expect(try await client.call(.delete, "/target/t1", token: token).status == .noContent)
            #expect(try await client.call(.delete, "/target/t1", token: token).status == .notFound)
        }
    }

    @Test(
        "bad bodies: malformed JSON 400, unknown key 400, wrong type 400, refused value 422, all naming the field",
        arguments: [
            ("/target/t1/portid", "{", 400, nil),
            (
                "/target/t1/portid", #"{"PORTID":1,"TRTYPE":"tcp","ADRFAM":"ipv4","TRADDR":"10.0.0.1","Bogus":1}"#, 400,
                "Bogus"
            ),
            (
                "/target/t1/portid", #"{"PORTID":"one","TRTYPE":"tcp","ADRFAM":"ipv4","TRADDR":"10.0.0.1"}"#, 400,
                "PORTID"
            ),
            ("/target/t1/portid", #"{"TRTYPE":"tcp","ADRFAM":"ipv4","TRADDR":"10.0.0.1"}"#, 400, "PORTID"),
            ("/target/t1/portid", #"{"PORTID":0,"TRTYPE":"tcp","ADRFAM":"ipv4","TRADDR":"10.0.0.1"}"#, 422, "PORTID"),
            ("/target/t1/portid", #"{"PORTID":1,"TRTYPE":"tcp","ADRFAM":"ipv6","TRADDR":"10.0.0.1"}"#, 422, "TRADDR"),
            ("/target/t1/subsystem", #"{"SUBNQN":"nqn.bad"}"#, 422, "SUBNQN"),
            ("/target/t1/subsystem", #"{"SUBNQN":"nqn.2024-01.io.example:s","AllowAnyHost":2}"#, 400, "AllowAnyHost"),
            ("/host", #"{"Alias":"h 1","HOSTNQN":"nqn.2024-01.io.example:h"}"#, 422, "Alias"),
            ("/host", "[1,2]", 400, nil),
        ] as [(String, String, Int, String?)]
    )
    func badBodies(path: String, body: String, status: Int, field: String?) async throws {
        let fixture = try await APIFixture.make()
        try await fixture.test { client in
            try await client.call(.post, "/target/t1", token: fixture.adminToken)
            let result = try await client.call(.put, path, token: fixture.adminToken, body: body)
            #expect(result.status.code == status, "\(result.body)")
            #expect(result.json["field"] as? String == field)
            #expect(result.json["message"] as? String != nil)
            #expect(result.headers[.contentType] == "application/json")
            // Nothing was changed by the refused call.
            let target = try await client.call(.get, "/target/t1", token: fixture.adminToken).json
            #expect((target["PortIDs"] as? [Any])?.isEmpty == true)
            #expect((target["Subsystems"] as? [Any])?.isEmpty == true)
        }
    }

    @Test("a body of 2 KiB is taken whole (nvme-dem cut at 512 bytes); one over 1 MiB is 413")
    func bodySizes() async throws {
        let fixture = try await APIFixture.make()
        try await fixture.test { client in
            let longNQN = "nqn.2024-01.io.example:" + String(repeating: "x", count: 190)
            let padding = String(repeating: " ", count: 2048)
            let ok = try await client.call(
                .put,
                "/host",
                token: fixture.adminToken,
                body: #"{"Alias":"h1",\#(padding)"HOSTNQN":"\#(longNQN)"}"#
            )
            #expect(ok.status == .created)
            #expect(ok.json["HOSTNQN"] as? String == longNQN)
            let huge = "{\"Alias\":\"" + String(repeating: "a", count: (1 << 20) + 10) + "\"}"
            #expect(
                try await client.call(.put, "/host", token: fixture.adminToken, body: huge).status == .contentTooLarge
            )
        }
    }

    @Test("nvme-dem's forms: POST with no body creates (allow-any subsystem), PUT upserts, PATCH renames everywhere")
    func legacyForms() async throws {
        let fixture = try await APIFixture.make()
        let token = fixture.adminToken
        let nqn = "nqn.2024-01.io.example:s1"
        try await fixture.test { client in
            try await client.call(.post, "/target/t1", token: token)
            let subsystem = try await client.call(.post, "/target/t1/subsystem/\(nqn)", token: token)
            #expect(subsystem.status == .created)
            #expect(subsystem.json["AllowAnyHost"] as? Int == 1)
            let restricted = try await client.call(
                .put,
                "/target/t1/subsystem",
                token: token,
                body: #"{"SUBNQN":"\#(nqn)","AllowAnyHost":0}"#
            )
            #expect(restricted.status == .ok)
            #expect(restricted.json["AllowAnyHost"] as? Int == 0)
            #expect(try await client.call(.post, "/host/h1", token: token).status == .created)
            let noNQN = try await client.call(
                .put,
                "/target/t1/subsystem/\(nqn)/host",
                token: token,
                body: #"{"Alias":"h1"}"#
            )
            #expect(noNQN.status == .unprocessableContent, "a host without HOSTNQN cannot be on an access list")
            #expect(
                try await client.call(.put, "/host/h1", token: token, body: #"{"HOSTNQN":"\#(hostA)"}"#).status == .ok
            )
            #expect(try await client.call(.put, "/target/t1/subsystem/\(nqn)/host/h1", token: token).status == .created)
            #expect(try await client.call(.put, "/target/t1/subsystem/\(nqn)/host/h1", token: token).status == .ok)
            try await client.call(.post, "/group/g1", token: token)
            #expect(try await client.call(.post, "/group/g1/host/h1", token: token).status == .created)
            let renamed = try await client.call(.patch, "/host/h1", token: token, body: #"{"Alias":"h2"}"#)
            #expect(renamed.status == .ok)
            let acl =
                try await client.call(.get, "/target/t1/subsystem/\(nqn)", token: token).json["Hosts"] as? [String]
            #expect(acl == ["h2"])
            #expect(try await client.call(.get, "/group/g1", token: token).json["Hosts"] as? [String] == ["h2"])
            let view = try await client.call(.get, "/host/h2", token: token).json
            #expect((view["Restricted"] as? [[String: String]])?.first?["SUBNQN"] == nqn)
            let ns = try await client.call(
                .put,
                "/target/t1/subsystem/\(nqn)/nsid",
                token: token,
                body: #"{"NSID":1,"DeviceID":-1}"#
            )
            #expect(ns.status == .created)
            #expect(
                try await client.call(.delete, "/target/t1/subsystem/\(nqn)/nsid/1", token: token).status == .noContent
            )
            #expect(try await client.call(.delete, "/host/h2", token: token).status == .noContent)
            let after =
                try await client.call(.get, "/target/t1/subsystem/\(nqn)", token: token).json["Hosts"] as? [String]
            #expect(after == [])
        }
    }
}

@Suite("REST API: discovery from the model")
struct RESTDiscoveryTests {
    @Test("GET /host/<h>/logpage lists exactly what the host may use: allow-any, its ACLs, its groups")
    func hostPages() async throws {
        let fixture = try await APIFixture.make()
        let token = fixture.adminToken
        try await fixture.test { client in
            for (alias, nqn) in [("h1", hostA), ("h2", hostB)] {
                try await client.call(.put, "/host", token: token, body: #"{"Alias":"\#(alias)","HOSTNQN":"\#(nqn)"}"#)
            }
            for target in ["t1", "t2"] {
                try await client.call(.post, "/target/\(target)", token: token)
                try await client.call(
                    .put,
                    "/target/\(target)/portid",
                    token: token,
                    body:
                        #"{"PORTID":1,"TRTYPE":"tcp","ADRFAM":"ipv4","TRADDR":"10.0.0.\#(target.last!)","TRSVCID":4420}"#
                )
            }
            try await client.call(.post, "/target/t1/subsystem/nqn.2024-01.io.example:open", token: token)
            try await client.call(
                .put,
                "/target/t1/subsystem",
                token: token,
                body: #"{"SUBNQN":"nqn.2024-01.io.example:only-h1","AllowAnyHost":0,"Hosts":["h1"]}"#
            )
            try await client.call(
                .put,
                "/target/t1/subsystem",
                token: token,
                body: #"{"SUBNQN":"nqn.2024-01.io.example:nobody","AllowAnyHost":0}"#
            )
            try await client.call(.post, "/target/t2/subsystem/nqn.2024-01.io.example:grouped", token: token)
            try await client.call(.post, "/group/g1", token: token)
            try await client.call(.post, "/group/g1/target/t2", token: token)
            try await client.call(.post, "/group/g1/host/h1", token: token)

            func page(_ alias: String) async throws -> [String] {
                let result = try await client.call(.get, "/host/\(alias)/logpage", token: token)
                #expect(result.status == .ok)
                let records = result.json["records"] as? [[String: Any]] ?? []
                return records.compactMap { $0["subnqn"] as? String }
            }
            let dc = "nqn.2014-08.org.nvmexpress:uuid:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
            #expect(
                try await page("h1") == [
                    dc, "nqn.2024-01.io.example:only-h1", "nqn.2024-01.io.example:open",
                    "nqn.2024-01.io.example:grouped",
                ]
            )
            #expect(try await page("h2") == [dc, "nqn.2024-01.io.example:open"])
            // Each entry says why the host sees it (the console's "what does this host see").
            let h1 = try await client.call(.get, "/host/h1/logpage", token: token)
            var reasons: [String: String] = [:]
            for record in h1.json["records"] as? [[String: Any]] ?? [] {
                reasons[record["subnqn"] as? String ?? ""] =
                    "\(record["target"] as? String ?? "-"): \(record["reason"] as? String ?? "")"
            }
            #expect(
                reasons == [
                    dc: "-: dem's discovery controller: every host",
                    "nqn.2024-01.io.example:only-h1": "t1: on the access list",
                    "nqn.2024-01.io.example:open": "t1: any host (AllowAnyHost)",
                    "nqn.2024-01.io.example:grouped": "t2: any host (AllowAnyHost), in group g1 with target t2",
                ]
            )
            // The REST page is the discovery controller's page.
            let served = fixture.feed.catalog.discoveryLogPage(hostNQN: hostB)
            #expect(served.entries.map(\.subsystemNQN) == [dc, "nqn.2024-01.io.example:open"])
        }
    }

    @Test("a change notifies only the connected hosts whose page changed")
    func notifiesOnlyAffected() async throws {
        let fixture = try await APIFixture.make()
        let catalog = fixture.feed.catalog
        let counts = CallCounter()
        for nqn in [hostA, hostB] {
            _ = catalog.controllerCreated(
                DiscoveryHostContext(hostNQN: nqn, hostIdentifier: [], subsystemNQN: DEMCore.wellKnownDiscoveryNQN)
            ) {
                counts.add(nqn)
            }
        }
        try await fixture.service.change(.created, path: "/setup") { fabric throws(ModelError) in
            try fabric.addHost(FabricHost(alias: "h1", nqn: hostA))
            try fabric.addTarget(
                FabricTarget(
                    alias: "t1",
                    ports: [
                        FabricPort(portID: 1, transportType: "tcp", addressFamily: "ipv4", transportAddress: "10.0.0.1")
                    ]
                )
            )
        }
        fixture.feed.flush()
        #expect(counts.snapshot.isEmpty, "no entries yet: nobody's page changed")
        try await fixture.service.change(.created, path: "/r") { fabric throws(ModelError) in
            try fabric.addSubsystem(
                target: "t1",
                FabricSubsystem(nqn: "nqn.2024-01.io.example:r", allowAnyHost: false, hosts: ["h1"])
            )
        }
        fixture.feed.flush()
        #expect(counts.snapshot == [hostA: 1])
        try await fixture.service.change(.created, path: "/a") { fabric throws(ModelError) in
            try fabric.addSubsystem(target: "t1", FabricSubsystem(nqn: "nqn.2024-01.io.example:a"))
        }
        fixture.feed.flush()
        #expect(counts.snapshot == [hostA: 2, hostB: 1])
    }

    @Test("a burst of changes makes one catalog update, so one notice per host")
    func coalescing() async throws {
        // A window far longer than the burst, so the burst joins one pending update whatever the load.
        let fixture = try await APIFixture.make(coalescing: .seconds(60))
        let catalog = fixture.feed.catalog
        let counts = CallCounter()
        _ = catalog.controllerCreated(
            DiscoveryHostContext(hostNQN: hostB, hostIdentifier: [], subsystemNQN: DEMCore.wellKnownDiscoveryNQN)
        ) {
            counts.add(hostB)
        }
        try await fixture.service.change(.created, path: "/t1") { fabric throws(ModelError) in
            try fabric.addTarget(
                FabricTarget(
                    alias: "t1",
                    ports: [
                        FabricPort(portID: 1, transportType: "tcp", addressFamily: "ipv4", transportAddress: "10.0.0.1")
                    ]
                )
            )
        }
        let before = catalog.generation
        for index in 0..<20 {
            try await fixture.service.change(.created, path: "/s\(index)") { fabric throws(ModelError) in
                try fabric.addSubsystem(target: "t1", FabricSubsystem(nqn: "nqn.2024-01.io.example:s\(index)"))
            }
        }
        fixture.feed.flush()
        #expect(catalog.generation == before + 1)
        #expect(counts.snapshot == [hostB: 1])
        #expect(catalog.discoveryLogPage(hostNQN: hostB).entries.count == 21)
    }

    @Test("every committed change is an event, in order; a refused or empty change is none")
    func events() async throws {
        let fixture = try await APIFixture.make()
        let (stream, cancel) = fixture.service.subscribe()
        defer { cancel() }
        try await fixture.test { client in
            try await client.call(.post, "/target/t1", token: fixture.adminToken)
            try await client.call(.post, "/target/t1", token: fixture.adminToken)  // 409: no event
            // No change: no event.
            try await client.call(.patch, "/target/t1", token: fixture.adminToken, body: #"{"Refresh":0}"#)
            try await client.call(.delete, "/target/t1", token: fixture.adminToken)
        }
        // The changes, between the requests' audit records (which share their sequence).
        var iterator = stream.filter { $0.action != .audited }.makeAsyncIterator()
        let first = await iterator.next()
        let second = await iterator.next()
        #expect(first?.action == .created && first?.path == "/target/t1")
        #expect(second?.action == .deleted && second?.path == "/target/t1")
        #expect((first?.sequence ?? 0) < (second?.sequence ?? 0))
    }
}

/// Counts callbacks per key, from any thread.
final class CallCounter: Sendable {
    private let counts = Mutex<[String: Int]>([:])
    func add(_ key: String) { counts.withLock { $0[key, default: 0] += 1 } }
    var snapshot: [String: Int] { counts.withLock { $0 } }
}

@Suite("REST API: audit trail")
struct AuditTrailTests {
    @Test(
        "every change and every refused credential is recorded with who, what and the answer; GET /dem/audit reads it"
    )
    func trail() async throws {
        let fixture = try await APIFixture.make()
        let token = fixture.adminToken
        let (events, cancel) = fixture.service.subscribe()
        defer { cancel() }
        try await fixture.test { client in
            let reader = try await client.call(
                .post,
                "/dem/tokens",
                token: token,
                body: #"{"Name":"grafana","Role":"read"}"#
            )
            let readerSecret = try #require(reader.json["Token"] as? String)
            #expect(try await client.call(.post, "/target/t1", token: token).status == .created)
            #expect(try await client.call(.get, "/target/t1", token: token).status == .ok)
            #expect(try await client.call(.delete, "/target/t1", token: readerSecret).status == .forbidden)
            #expect(try await client.call(.get, "/target", token: "dem_00000000_00").status == .unauthorized)
            #expect(try await client.call(.post, "/target/t2", token: token, body: "{").status == .badRequest)
            let answer = try await client.call(.get, "/dem/audit", token: readerSecret)
            #expect(answer.status == .ok)
            let records = try #require(answer.json["Records"] as? [[String: Any]])
            let lines = records.map {
                "\($0["Actor"] ?? "") \($0["Method"] ?? "") \($0["Path"] ?? "") \($0["Status"] ?? "")"
            }
            let adminID = try #require(fixture.service.tokens.first { $0.name == "admin" }?.id)
            let readerID = try #require(reader.json["ID"] as? String)
            #expect(
                lines == [
                    "admin (\(adminID)) POST /dem/tokens 201", "admin (\(adminID)) POST /target/t1 201",
                    "grafana (\(readerID)) DELETE /target/t1 403", "- GET /target 401",
                    "admin (\(adminID)) POST /target/t2 400",
                ]
            )
            #expect(records[1]["Detail"] as? String == "/target/t1", "a success names what it made")
            #expect(records[4]["Detail"] as? String != nil, "a refusal says why")
            #expect(try await client.call(.get, "/dem/audit?limit=0", token: token).status == .badRequest)
            let last = try await client.call(.get, "/dem/audit?limit=1", token: token)
            #expect((last.json["Records"] as? [[String: Any]])?.count == 1)
            // No secret is ever in the trail: bodies are not recorded.
            let file = try String(contentsOfFile: fixture.directory + "/audit.log", encoding: .utf8)
            #expect(file.split(separator: "\n").count == 5)
            #expect(!file.contains(readerSecret) && !file.contains(token))
        }
        let attributes = try FileManager.default.attributesOfItem(atPath: fixture.directory + "/audit.log")
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        // The same records arrive as `audited` events, beside the changes.
        var audited: [String] = []
        for await event in events where event.action == .audited {
            audited.append("\(event.audit?.method ?? "") \(event.path) \(event.audit?.status ?? 0)")
            if audited.count == 5 { break }
        }
        #expect(audited.first == "POST /dem/tokens 201")
        #expect(audited.last == "POST /target/t2 400")
    }
}

@Suite("REST API: the web console's routes")
struct ConsoleRouteTests {
    @Test("the page, style sheet and script need no token and carry a content security policy; nothing else opens")
    func assets() async throws {
        let fixture = try await APIFixture.make()
        try await fixture.test { client in
            for path in ["/", "/console/app.css", "/console/app.js"] {
                let result = try await client.call(.get, path, token: nil)
                #expect(result.status == .ok, "\(path)")
                #expect(
                    result.headers[HTTPField.Name("Content-Security-Policy")!]?.hasPrefix("default-src 'none'") == true
                )
                #expect(result.headers[HTTPField.Name("X-Frame-Options")!] == "DENY")
            }
            #expect(try await client.call(.get, "/", token: nil).body.contains("id=\"sign-in-form\""))
            for path in ["/console/", "/console/app.js.map", "/index.html", "/dem/whoami"] {
                #expect(try await client.call(.get, path, token: nil).status == .unauthorized, "\(path)")
            }
            // A change to an asset's path is not let through either.
            #expect(try await client.call(.post, "/console/app.js", token: nil).status == .unauthorized)
        }
    }

    @Test("GET /dem/whoami names the token and its role")
    func whoami() async throws {
        let fixture = try await APIFixture.make()
        let token = fixture.adminToken
        try await fixture.test { client in
            let admin = try await client.call(.get, "/dem/whoami", token: token)
            #expect(admin.json["Role"] as? String == "admin")
            let made = try await client.call(
                .post,
                "/dem/tokens",
                token: token,
                body: #"{"Name":"viewer","Role":"read"}"#
            )
            let reader = try #require(made.json["Token"] as? String)
            let read = try await client.call(.get, "/dem/whoami", token: reader)
            #expect(read.json["Role"] as? String == "read")
            #expect(read.json["Name"] as? String == "viewer")
        }
    }
}
