import DEMCore
import DEMServer
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

/// What a careless admin does through the REST API, refused with a sentence that names the
/// thing, and nothing lost.
@Suite("REST API: replacing the model and sharing a dem-em need an explicit intent")
struct CarelessAdminTests {
    /// Four targets, two hosts, a group: something to lose.
    static func populate(_ client: some TestClientProtocol, _ token: String) async throws {
        for target in ["t1", "t2", "t3", "t4"] {
            #expect(try await client.call(.post, "/target/\(target)", token: token).status == .created)
        }
        #expect(
            try await client.call(.post, "/target/t1/subsystem/nqn.2024-01.io.example:a", token: token).status
                == .created
        )
        for (alias, nqn) in [("h1", hostA), ("h2", hostB)] {
            #expect(
                try await client.call(.post, "/host/\(alias)", token: token, body: #"{"HOSTNQN": "\#(nqn)"}"#).status
                    == .created
            )
        }
        #expect(try await client.call(.post, "/group/g1", token: token).status == .created)
    }

    @Test("PUT /dem/config '{}' is refused and loses nothing; ?replace=1&empty=1 empties the model and lists what went")
    func emptyConfiguration() async throws {
        let fixture = try await APIFixture.make()
        let token = fixture.adminToken
        try await fixture.test { client in
            try await Self.populate(client, token)
            let before = fixture.service.fabric

            let refused = try await client.call(.put, "/dem/config", token: token, body: "{}")
            #expect(refused.status == .conflict, "\(refused.body)")
            let message = refused.json["message"] as? String ?? ""
            #expect(message.contains("empty"), "\(message)")
            #expect(message.contains("4 targets (t1, t2, t3, t4)"), "\(message)")
            #expect(message.contains("?replace=1&empty=1"), "\(message)")
            #expect(fixture.service.fabric == before)

            // A flag with a value that is not one is refused, not read as "off".
            let garbled = try await client.call(.put, "/dem/config?replace=AAA", token: token, body: "{}")
            #expect(garbled.status == .badRequest)
            #expect(garbled.json["field"] as? String == "replace")
            #expect(fixture.service.fabric == before)

            // replace=1 alone is not enough for an empty document.
            #expect(try await client.call(.put, "/dem/config?replace=1", token: token, body: "{}").status == .conflict)
            #expect(fixture.service.fabric == before)

            let emptied = try await client.call(.put, "/dem/config?replace=1&empty=1", token: token, body: "{}")
            #expect(emptied.status == .ok, "\(emptied.body)")
            let removed = emptied.json["Removed"] as? [String: Any] ?? [:]
            #expect(removed["Targets"] as? [String] == ["t1", "t2", "t3", "t4"])
            #expect(removed["Hosts"] as? [String] == ["h1", "h2"])
            #expect(removed["Groups"] as? [String] == ["g1"])
            #expect(fixture.service.fabric == Fabric())
        }
    }

    @Test("a configuration that drops resources needs ?replace=1; one that only adds is taken as it is")
    func partialConfiguration() async throws {
        let fixture = try await APIFixture.make()
        let token = fixture.adminToken
        try await fixture.test { client in
            try await Self.populate(client, token)
            let before = fixture.service.fabric
            let one = #"{"Targets": [{"Alias": "t1"}]}"#
            let refused = try await client.call(.put, "/dem/config", token: token, body: one)
            #expect(refused.status == .conflict)
            let message = refused.json["message"] as? String ?? ""
            #expect(
                message.contains(
                    "would remove 3 targets (t2, t3, t4), 1 subsystem (t1/nqn.2024-01.io.example:a), 2 hosts (h1, h2), 1 group (g1)"
                ),
                "\(message)"
            )
            #expect(fixture.service.fabric == before)

            // The whole model plus one more target removes nothing: no intent needed.
            var grown = try JSONSerialization.jsonObject(with: JSONEncoder().encode(before)) as! [String: Any]
            var targets = grown["Targets"] as! [Any]
            targets.append(["Alias": "t5"])
            grown["Targets"] = targets
            let body = String(decoding: try JSONSerialization.data(withJSONObject: grown), as: UTF8.self)
            let added = try await client.call(.put, "/dem/config", token: token, body: body)
            #expect(added.status == .ok, "\(added.body)")
            #expect((added.json["Removed"] as? [String: Any])?["Targets"] as? [String] == [])
            #expect(fixture.service.fabric.targets.count == 5)

            let replaced = try await client.call(.put, "/dem/config?replace=1", token: token, body: one)
            #expect(replaced.status == .ok, "\(replaced.body)")
            #expect(fixture.service.fabric.targets.map(\.alias) == ["t1"])
            #expect(fixture.service.fabric.hosts.isEmpty)
        }
    }

    @Test("two targets cannot point at one dem-em: the second is 409 naming the first")
    func oneEndpointOneTarget() async throws {
        let fixture = try await APIFixture.make()
        let token = fixture.adminToken
        try await fixture.test { client in
            let oob =
                #"{"MgmtMode": "OutOfBandMgmt", "Interface": {"FAMILY": "ipv4", "ADDRESS": "127.0.0.1", "PORT": 22334}}"#
            #expect(try await client.call(.post, "/target/target1", token: token, body: oob).status == .created)
            let second = try await client.call(.post, "/target/ws", token: token, body: oob)
            #expect(second.status == .conflict, "\(second.body)")
            #expect(
                (second.json["message"] as? String ?? "").contains(
                    "127.0.0.1:22334 is already the dem-em of target \"target1\""
                )
            )
            #expect(second.json["field"] as? String == "Interface")
            // Moving an existing target onto it is refused too; another port is fine.
            #expect(try await client.call(.post, "/target/ws", token: token).status == .created)
            let moved = try await client.call(.patch, "/target/ws", token: token, body: oob)
            #expect(moved.status == .conflict, "\(moved.body)")
            let elsewhere =
                #"{"MgmtMode": "OutOfBandMgmt", "Interface": {"FAMILY": "ipv4", "ADDRESS": "127.0.0.1", "PORT": 22336}}"#
            #expect(try await client.call(.patch, "/target/ws", token: token, body: elsewhere).status == .ok)
            // In-band: the same TRADDR and TRSVCID.
            let inband =
                #"{"MgmtMode": "InBandMgmt", "Interface": {"TRTYPE": "tcp", "ADRFAM": "ipv4", "TRADDR": "10.0.0.5", "TRSVCID": 22335}}"#
            #expect(try await client.call(.post, "/target/a", token: token, body: inband).status == .created)
            #expect(try await client.call(.post, "/target/b", token: token, body: inband).status == .conflict)
        }
    }

    @Test("a MgmtMode that is not one names the ones there are")
    func badManagementMode() async throws {
        let fixture = try await APIFixture.make()
        try await fixture.test { client in
            let result = try await client.call(
                .post,
                "/target/t1",
                token: fixture.adminToken,
                body: #"{"MgmtMode": "Bogus"}"#
            )
            #expect(result.status == .badRequest)
            #expect(result.json["field"] as? String == "MgmtMode")
            #expect(
                (result.json["message"] as? String ?? "").contains(
                    "must be LocalMgmt, InBandMgmt or OutOfBandMgmt, not \"Bogus\""
                ),
                "\(result.body)"
            )
        }
    }

    @Test("a body that is not JSON is a 400 that says where")
    func badJSONSaysWhere() async throws {
        let fixture = try await APIFixture.make()
        try await fixture.test { client in
            let result = try await client.call(
                .put,
                "/dem/config",
                token: fixture.adminToken,
                body: "{\"Targets\": [\n  {\"Alias\": t1}]}"
            )
            #expect(result.status == .badRequest)
            #expect((result.json["message"] as? String ?? "").contains("line 2, column"), "\(result.body)")
        }
    }
}
