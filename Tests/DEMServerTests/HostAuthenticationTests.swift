import DEMCore
import DEMServer
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Testing

/// dem's discovery controller demands DH-HMAC-CHAP of the hosts that have keys, over real
/// sockets with DEMCore's host side; the keys are kept apart from the model.
@Suite("Host authentication (DH-HMAC-CHAP) on dem's discovery controller")
struct HostAuthenticationTests {
    static func addHost(_ dem: RunningDEM, alias: String = "a", nqn: String = TestHosts.a) async throws {
        try await dem.application.service.change(.created, path: "/host/\(alias)") { fabric throws(ModelError) in
            try fabric.addHost(FabricHost(alias: alias, nqn: nqn))
        }
    }

    static func connect(
        _ dem: RunningDEM,
        hostNQN: String = TestHosts.a,
        key: DHCHAPSecret?,
        controllerKey: DHCHAPSecret? = nil
    ) async throws -> DiscoveryClient {
        var options = DiscoveryClientOptions(hostNQN: hostNQN, hostIdentifier: Array(repeating: 7, count: 16))
        options.hostKey = key
        options.controllerKey = controllerKey
        return try await DiscoveryClient.connect(host: "127.0.0.1", port: dem.port, options: options)
    }

    static func failure(_ error: any Error) -> String? {
        guard case .authenticationFailed(let why) = error as? NVMeHostError else { return nil }
        return why
    }

    @Test(
        "the right key reads the page, one-way and two-way; a wrong or missing key is refused; keyless hosts are served"
    )
    func keys() async throws {
        let dem = try await RunningDEM.start()
        try await Self.addHost(dem)
        let key = try DHCHAPSecret.generate()
        let controllerKey = try DHCHAPSecret.generate(length: 48, transformation: .sha384)
        _ = try await dem.application.service.setHostKey(
            "a",
            HostKey(secret: key.text, controllerSecret: controllerKey.text, hash: "sha384", group: "ffdhe3072")
        )

        let oneWay = try await Self.connect(dem, key: key)
        _ = try await oneWay.readDiscoveryLogPage()
        await oneWay.close()
        let twoWay = try await Self.connect(dem, key: key, controllerKey: controllerKey)
        _ = try await twoWay.readDiscoveryLogPage()
        await twoWay.close()

        await #expect { _ = try await Self.connect(dem, key: nil) } throws: {
            Self.failure($0)?.contains("requires DH-HMAC-CHAP") == true
        }
        await #expect { _ = try await Self.connect(dem, key: try DHCHAPSecret.generate()) } throws: {
            Self.failure($0)?.contains("AUTH_Failure1") == true
        }
        // dem proving a key it does not have: the host refuses it.
        await #expect {
            _ = try await Self.connect(dem, key: key, controllerKey: try DHCHAPSecret.generate())
        } throws: { Self.failure($0)?.contains("does not match") == true }
        // A host without a key (the default --auth optional) is served as before.
        let other = try await Self.connect(dem, hostNQN: TestHosts.b, key: nil)
        _ = try await other.readDiscoveryLogPage()
        await other.close()
        // ... and a host without a key that wants dem to prove itself is told dem did not.
        await #expect {
            _ = try await Self.connect(dem, hostNQN: TestHosts.b, key: try DHCHAPSecret.generate(), controllerKey: key)
        } throws: { Self.failure($0)?.contains("did not ask") == true }
        #expect(dem.application.catalog.keyring?.failures.load(ordering: .relaxed) ?? 0 >= 1)
        try await dem.stop()
    }

    @Test("a new key is accepted beside the old one until the host uses it; then the old one is retired")
    func rotation() async throws {
        let dem = try await RunningDEM.start()
        try await Self.addHost(dem)
        let old = try DHCHAPSecret.generate()
        let new = try DHCHAPSecret.generate()
        let service = dem.application.service
        _ = try await service.setHostKey("a", HostKey(secret: old.text))
        let rotated = try await service.setHostKey("a", HostKey(secret: new.text))
        #expect(rotated?.previousSecret == old.text)
        await (try await Self.connect(dem, key: old)).close()
        #expect(service.hostKey("a")?.previousSecret == old.text, "the host still uses the old key")
        await (try await Self.connect(dem, key: new)).close()
        #expect(try await eventually { service.hostKey("a")?.previousSecret == nil })
        await #expect { _ = try await Self.connect(dem, key: old) } throws: { Self.failure($0) != nil }
        // Kept in the store, apart from the model.
        #expect(try service.store.loadHostKeys()["a"]?.secret == new.text)
        try await dem.stop()
    }

    @Test("keys follow a renamed host and go with a deleted one; a target's slice carries them sealed")
    func followHosts() async throws {
        let dem = try await RunningDEM.start()
        try await Self.addHost(dem)
        let key = try DHCHAPSecret.generate()
        let service = dem.application.service
        _ = try await service.setHostKey("a", HostKey(secret: key.text))
        try await service.change(.updated, path: "/host/a") { fabric throws(ModelError) in
            try fabric.updateHost("a", Fabric.HostChanges(alias: "renamed"))
        }
        #expect(service.hostKey("renamed")?.secret == key.text)
        #expect(service.hostKey("a") == nil)
        await (try await Self.connect(dem, key: key)).close()

        let slice = service.addingHostKeys(
            to: EndpointConfiguration(hosts: [TestHosts.a, TestHosts.b]),
            credential: "fabric-secret"
        )
        #expect(slice.hostKeys.count == 1)
        let sealed = try #require(slice.hostKeys.first)
        #expect(!sealed.sealedSecret.contains(key.text))
        #expect(HostKeySeal.open(sealed.sealedSecret, hostNQN: TestHosts.a, credential: "fabric-secret") == key)
        #expect(HostKeySeal.open(sealed.sealedSecret, hostNQN: TestHosts.a, credential: "other") == nil)
        #expect(HostKeySeal.open(sealed.sealedSecret, hostNQN: TestHosts.b, credential: "fabric-secret") == nil)
        // The same key seals to the same text: an unchanged slice is not pushed again.
        #expect(
            service.addingHostKeys(to: EndpointConfiguration(hosts: [TestHosts.a]), credential: "fabric-secret")
                .hostKeys == slice.hostKeys
        )

        try await service.change(.deleted, path: "/host/renamed") { fabric throws(ModelError) in
            try fabric.deleteHost("renamed")
        }
        #expect(service.hostKey("renamed") == nil)
        #expect(try service.store.loadHostKeys().isEmpty)
        // The NQN has no key now: it connects without one.
        await (try await Self.connect(dem, key: nil)).close()
        try await dem.stop()
    }
}

@Suite("REST API: host keys")
struct HostKeyAPITests {
    @Test("PUT generates, GET shows to admins only, /host never shows it, bad fields name themselves")
    func api() async throws {
        let fixture = try await APIFixture.make()
        let token = fixture.adminToken
        let reader = try await fixture.service.createToken(name: "reader", role: .read)
        try await fixture.test { client in
            _ = try await client.call(.put, "/host", token: token, body: #"{"Alias":"h1","HOSTNQN":"\#(hostA)"}"#)
            let made = try await client.call(
                .put,
                "/host/h1/dhchap",
                token: token,
                body: #"{"Secret":"generate","ControllerSecret":"generate","DHGroup":"ffdhe4096"}"#
            )
            #expect(made.status == .created)
            let secret = try #require(made.json["Secret"] as? String)
            #expect(try DHCHAPSecret(parsing: secret).key.count == 32)
            #expect(made.json["DHGroup"] as? String == "ffdhe4096")
            #expect(made.json["ControllerSecret"] as? String != nil)
            let shown = try await client.call(.get, "/host/h1/dhchap", token: token)
            #expect(shown.json["Secret"] as? String == secret)
            #expect(try await client.call(.get, "/host/h1/dhchap", token: reader.secret).status == .forbidden)
            #expect(!(try await client.call(.get, "/host/h1", token: token).body.contains("DHHC-1")))
            #expect(!(try await client.call(.get, "/dem/config", token: token).body.contains("DHHC-1")))
            let badHash = try await client.call(.put, "/host/h1/dhchap", token: token, body: #"{"Hash":"md5"}"#)
            #expect(badHash.status == .unprocessableContent)
            #expect(badHash.json["field"] as? String == "Hash")
            let badSecret = try await client.call(
                .put,
                "/host/h1/dhchap",
                token: token,
                body: #"{"Secret":"DHHC-1:00:AAAA:"}"#
            )
            #expect(badSecret.status == .unprocessableContent)
            #expect(badSecret.json["field"] as? String == "Secret")
            let noHost = try await client.call(.put, "/host/zz/dhchap", token: token, body: #"{"Secret":"generate"}"#)
            #expect(noHost.status == .notFound)
            let removeController = try await client.call(
                .put,
                "/host/h1/dhchap",
                token: token,
                body: #"{"ControllerSecret":""}"#
            )
            #expect(removeController.status == .ok)
            #expect(removeController.json["ControllerSecret"] == nil)
            #expect(removeController.json["Secret"] as? String == secret)
            #expect(try await client.call(.delete, "/host/h1/dhchap", token: token).status == .noContent)
            #expect(try await client.call(.get, "/host/h1/dhchap", token: token).status == .notFound)
        }
    }
}
