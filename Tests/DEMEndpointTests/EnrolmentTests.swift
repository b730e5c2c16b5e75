import AsyncHTTPClient
import Crypto
import DEMCore
import DEMEndpoint
import DEMHTTP
import DEMServer
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Testing
import X509

// dem (TLS with its fabric CA) and dem-em, both in this process, over real sockets on
// 127.0.0.1 with BoringSSL on both ends; dem-em's nvmet root is a folder standing in for
// configfs (the real one is the `endpoint` scenario's). The enrolment is the one a target makes:
// a join token, the CA's fingerprint, a key dem-em generates.

/// dem serving its API over TLS with the fabric CA, its data in `directory`.
private func startDEM(_ directory: String) async throws -> (DEMApplication, Task<Void, any Error>) {
    var options = DEMOptions(
        uniqueNQN: "nqn.2014-08.org.nvmexpress:uuid:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f2",
        dataDirectory: directory
    )
    options.port = 0
    options.apiPort = 0
    options.apiTransport = .fabricCA
    options.probeInterval = .milliseconds(200)
    options.targetTimeout = .seconds(2)
    options.coalescing = .milliseconds(10)
    var logger = Logger(label: "dem-test")
    logger.logLevel = .warning
    let application = try await DEMApplication.build(options: options, logger: logger, signals: [])
    let task = Task { try await application.serviceGroup.run() }
    return (application, task)
}

/// A client that trusts `caFile` alone, presents `identity` when given and does not retry a
/// connection that fails.
private func client(
    trusting caPEM: String,
    presenting identity: (certificate: String, key: String)? = nil
) throws
    -> HTTPClient
{
    var tls = TLSConfiguration.makeClientConfiguration()
    tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(caPEM.utf8)))
    if let identity {
        tls.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(identity.certificate.utf8)).map {
            .certificate($0)
        }
        tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(identity.key.utf8), format: .pem))
    }
    var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
    configuration.connectionPool.retryConnectionEstablishment = false
    return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
}

/// Status and body of one call.
private func call(
    _ client: HTTPClient,
    _ method: HTTPMethod,
    _ url: String,
    token: String? = nil,
    body: String? = nil
) async throws -> (Int, String) {
    var request = HTTPClientRequest(url: url)
    request.method = method
    if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
    if let body {
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: body))
    }
    let response = try await client.execute(request, timeout: .seconds(10))
    return (Int(response.status.code), String(buffer: try await response.body.collect(upTo: 1 << 20)))
}

@Suite("enrolment: a target joins with a one-time token and the CA's hash, then dem and dem-em use mutual TLS")
struct EnrolmentTests {
    static let logger: Logger = {
        var logger = Logger(label: "dem-em-test")
        logger.logLevel = .warning
        return logger
    }()

    @Test(
        "dem-em enrols (wrong hash, reused and expired tokens refused), joins with its certificate, and dem pushes over mutual TLS"
    )
    func enrolAndManage() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (dem, demTask) = try await startDEM(directory + "/dem")
        let port = await dem.apiAddress.port()
        let url = "https://127.0.0.1:\(port)"
        let caPEM = try String(contentsOfFile: directory + "/dem/" + FabricCA.certificateFile, encoding: .utf8)
        let caHash = try FabricCA.load(
            certificate: directory + "/dem/" + FabricCA.certificateFile,
            key: directory + "/dem/" + FabricCA.keyFile
        ).fingerprint
        let admin = try String(contentsOfFile: dem.adminToken.path, encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let http = try client(trusting: caPEM)
        defer { Task { try? await http.shutdown() } }

        // A join token: made by an admin, with the CA's hash in the answer.
        let (status, made) = try await call(
            http,
            .POST,
            url + "/dem/tokens",
            token: admin,
            body: #"{"Name":"t1 join","Role":"join","ExpiresIn":600}"#
        )
        #expect(status == 201)
        let answer = try JSONSerialization.jsonObject(with: Data(made.utf8)) as! [String: Any]
        let joinToken = try #require(answer["Token"] as? String)
        #expect(answer["CAHash"] as? String == caHash)
        #expect(answer["Expires"] != nil)
        // It is good for nothing but enrolment.
        #expect(try await call(http, .GET, url + "/target", token: joinToken).0 == 403)
        // An admin token does not enrol.
        #expect(
            try await call(http, .POST, url + "/dem/enrol", token: admin, body: #"{"Alias":"t1","CSR":"x"}"#).0 == 403
        )

        let emDirectory = directory + "/em"
        let root = directory + "/nvmet"
        for folder in ["ports", "subsystems", "hosts"] {
            try FileManager.default.createDirectory(atPath: root + "/" + folder, withIntermediateDirectories: true)
        }
        func enrol(token: String, hash: String, alias: String = "t1") async throws {
            _ = try await EndpointEnrolment.enrol(
                url: url,
                token: token,
                caHash: hash,
                alias: alias,
                names: ["127.0.0.1"],
                dataDirectory: emDirectory,
                credentialPath: emDirectory + "/fabric.key",
                group: MultiThreadedEventLoopGroup.singleton,
                logger: Self.logger
            )
        }
        // The wrong CA hash: dem-em sends nothing, and the token stays good.
        let wrongHash = "sha256:" + String(repeating: "0", count: 64)
        await #expect(throws: EndpointEnrolment.Failure.self) { try await enrol(token: joinToken, hash: wrongHash) }
        #expect(!FileManager.default.fileExists(atPath: emDirectory + "/" + EndpointIdentity.certificateFile))
        #expect(dem.service.tokens.contains { $0.role == .join })

        try await enrol(token: joinToken, hash: caHash)
        let identity = try #require(try EndpointIdentity.load(dataDirectory: emDirectory))
        #expect(identity.alias == "t1")
        #expect(identity.names == [SubjectName("127.0.0.1")])
        #expect(
            identity.caPEM.trimmingCharacters(in: .whitespacesAndNewlines)
                == caPEM.trimmingCharacters(in: .whitespacesAndNewlines)
        )
        // A credential of its own came with it (for the in-band channel and its hosts' sealed
        // keys), derived from the fabric credential, which stays with dem; dem keeps the enrolment.
        let demKey = try String(contentsOfFile: directory + "/dem/fabric.key", encoding: .utf8)
        let targetKey = try String(contentsOfFile: emDirectory + "/fabric.key", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(targetKey != demKey.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(
            targetKey
                == FabricCredential.derived(from: demKey.trimmingCharacters(in: .whitespacesAndNewlines), for: "t1")
        )
        #expect(dem.monitor.credentials.credential(for: "t1") == targetKey)
        #expect(FileManager.default.fileExists(atPath: directory + "/dem/" + TargetCredentials.fileName))
        let keyMode = try FileManager.default.attributesOfItem(atPath: emDirectory + "/" + EndpointIdentity.keyFile)[
            .posixPermissions
        ]
        #expect((keyMode as? NSNumber)?.intValue == 0o600)
        // The token was used up: a second enrolment with it is refused.
        #expect(!dem.service.tokens.contains { $0.role == .join })
        await #expect(throws: EndpointEnrolment.Failure.self) {
            try await enrol(token: joinToken, hash: caHash, alias: "t9")
        }
        // An expired join token is refused, naming its expiry.
        let expired = try await dem.service.createToken(
            name: "stale",
            role: .join,
            expires: Date().addingTimeInterval(-1)
        )
        let (expiredStatus, expiredBody) = try await call(
            http,
            .POST,
            url + "/dem/enrol",
            token: expired.secret,
            body: #"{"Alias":"t8","CSR":"x"}"#
        )
        #expect(expiredStatus == 401)
        #expect(expiredBody.contains("expired"))

        // dem-em runs enrolled: TLS on its API, joins dem with its certificate.
        var options = EndpointOptions(dataDirectory: emDirectory)
        options.nvmetRoot = root
        options.sysfsRoot = directory + "/sys"
        options.apiAddress = "127.0.0.1"
        options.apiPort = 0
        options.joinURL = url
        let em = try EndpointApplication.build(options: options, logger: Self.logger, signals: [])
        let emTask = Task { try await em.serviceGroup.run() }
        let emPort = await em.apiAddress.port()
        #expect(
            try await eventually {
                dem.service.fabric.targets.first { $0.alias == "t1" }?.interface?.tls == true
            }
        )
        // dem pushes a subsystem over mutual TLS; dem-em writes it.
        let nqn = "nqn.2024-01.io.dem.test:enrolled"
        try await dem.service.change(.updated, path: "/test") { fabric throws(ModelError) in
            try fabric.setPort(
                target: "t1",
                FabricPort(portID: 1, transportType: "tcp", addressFamily: "ipv4", transportAddress: "192.0.2.1")
            )
            try fabric.addSubsystem(
                target: "t1",
                FabricSubsystem(
                    nqn: nqn,
                    allowAnyHost: true,
                    namespaces: [FabricNamespace(namespaceID: 1, devicePath: "/dev/nullb0")]
                )
            )
        }
        #expect(try await eventually { FileManager.default.fileExists(atPath: root + "/subsystems/" + nqn) })
        #expect(try await eventually { dem.monitor.status("t1")?.state == .reachable })
        // A host's DH-HMAC-CHAP key, sealed under the target's own credential, opens at dem-em.
        let hostNQN = "nqn.2014-08.org.nvmexpress:uuid:aaaaaaaa-0000-4000-8000-00000000000a"
        try await dem.service.change(.updated, path: "/test") { fabric throws(ModelError) in
            try fabric.addSubsystem(target: "t1", FabricSubsystem(nqn: nqn + "-restricted", allowAnyHost: false))
            try fabric.addHost(FabricHost(alias: "h1", nqn: hostNQN))
            _ = try fabric.allowHost(target: "t1", subsystem: nqn + "-restricted", host: "h1")
        }
        let hostKey = try DHCHAPSecret.generate()
        _ = try await dem.service.setHostKey("h1", HostKey(secret: hostKey.text))
        #expect(
            try await eventually {
                (try? String(contentsOfFile: root + "/hosts/" + hostNQN + "/dhchap_key", encoding: .utf8))?
                    .trimmingCharacters(in: .whitespacesAndNewlines) == hostKey.text
            }
        )

        // dem-em's API takes dem's certificate alone.
        let emURL = "https://127.0.0.1:\(emPort)/status"
        // No client certificate: the handshake fails.
        await #expect(throws: (any Error).self) { _ = try await call(http, .GET, emURL) }
        // Another CA's certificate: refused in the handshake.
        let otherDirectory = directory + "/other"
        let other = try FabricCA.ensure(in: otherDirectory, name: "another fabric").ca
        let otherServer = try FabricPKI.ensureServerCertificate(
            in: otherDirectory,
            base: "dem-api",
            commonName: "dem",
            role: .dem,
            ca: other,
            names: [SubjectName("127.0.0.1")]
        )
        let stranger = try client(trusting: caPEM, presenting: (otherServer.certificatePEM, otherServer.keyPEM))
        defer { Task { try? await stranger.shutdown() } }
        await #expect(throws: (any Error).self) { _ = try await call(stranger, .GET, emURL) }
        // The fabric CA's certificate of a target (role dem-em, not dem): closed before any request.
        let peer = try client(trusting: caPEM, presenting: (identity.certificatePEM, identity.keyPEM))
        defer { Task { try? await peer.shutdown() } }
        await #expect(throws: (any Error).self) { _ = try await call(peer, .GET, emURL) }
        // The fabric credential is not taken in its place.
        await #expect(throws: (any Error).self) { _ = try await call(http, .GET, emURL, token: demKey) }
        // dem's own certificate is.
        let demCertificate = try String(contentsOfFile: directory + "/dem/dem-api.pem", encoding: .utf8)
        let demKeyPEM = try String(contentsOfFile: directory + "/dem/dem-api.key", encoding: .utf8)
        let asDEM = try client(trusting: caPEM, presenting: (demCertificate, demKeyPEM))
        defer { Task { try? await asDEM.shutdown() } }
        #expect(try await call(asDEM, .GET, emURL).0 == 200)

        // A target's certificate joins as its own target only.
        let join =
            #"{"Alias":"t2","Interface":{"FAMILY":"ipv4","ADDRESS":"127.0.0.1","PORT":1},"Inventory":{"NSDevices":[],"Interfaces":[]}}"#
        let (joinStatus, joinBody) = try await call(peer, .POST, url + "/dem/join", body: join)
        #expect(joinStatus == 403)
        #expect(joinBody.contains("t1"))

        await em.serviceGroup.triggerGracefulShutdown()
        try await emTask.value
        await dem.serviceGroup.triggerGracefulShutdown()
        try await demTask.value
    }

    @Test(
        "dem rotates its certificate, a target's and the fabric CA (with an overlap), and manages the target throughout"
    )
    func rotations() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (dem, demTask) = try await startDEM(directory + "/dem")
        let port = await dem.apiAddress.port()
        let url = "https://127.0.0.1:\(port)"
        let caPath = directory + "/dem/" + FabricCA.certificateFile
        let oldCA = try FabricCA.load(certificate: caPath, key: directory + "/dem/" + FabricCA.keyFile)
        let oldHash = try oldCA.fingerprint
        let admin = try String(contentsOfFile: dem.adminToken.path, encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let http = try client(trusting: try String(contentsOfFile: caPath, encoding: .utf8))
        defer { Task { try? await http.shutdown() } }
        func rotate(_ body: String) async throws -> (Int, [String: Any]) {
            // A client of its own each time: it trusts the CA file as it is now.
            let fresh = try client(trusting: try String(contentsOfFile: caPath, encoding: .utf8))
            defer { Task { try? await fresh.shutdown() } }
            let (status, text) = try await call(fresh, .POST, url + "/dem/rotate", token: admin, body: body)
            return (
                status, (try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]) ?? ["text": text]
            )
        }
        /// The fingerprints of the leaf and the last certificate a listener presents.
        func presented(_ port: Int) async throws -> (leaf: String, anchor: String) {
            let chain = try await FabricPKI.presentedChain(host: "127.0.0.1", port: port)
            return (
                FabricPKI.fingerprint(der: try chain.first!.toDERBytes()),
                FabricPKI.fingerprint(der: try chain.last!.toDERBytes())
            )
        }

        // An enrolled, managed target.
        let emDirectory = directory + "/em"
        let root = directory + "/nvmet"
        for folder in ["ports", "subsystems", "hosts"] {
            try FileManager.default.createDirectory(atPath: root + "/" + folder, withIntermediateDirectories: true)
        }
        let join = try await dem.service.createToken(name: "t1", role: .join, expires: Date().addingTimeInterval(600))
        _ = try await EndpointEnrolment.enrol(
            url: url,
            token: join.secret,
            caHash: oldHash,
            alias: "t1",
            names: ["127.0.0.1"],
            dataDirectory: emDirectory,
            credentialPath: emDirectory + "/fabric.key",
            group: MultiThreadedEventLoopGroup.singleton,
            logger: Self.logger
        )
        var options = EndpointOptions(dataDirectory: emDirectory)
        options.nvmetRoot = root
        options.sysfsRoot = directory + "/sys"
        options.apiAddress = "127.0.0.1"
        options.apiPort = 0
        options.joinURL = url
        let em = try EndpointApplication.build(options: options, logger: Self.logger, signals: [])
        let emTask = Task { try await em.serviceGroup.run() }
        let emPort = await em.apiAddress.port()
        #expect(try await eventually { dem.service.fabric.targets.first { $0.alias == "t1" }?.interface?.tls == true })
        /// Adds subsystem `name` to t1 and waits for dem-em to write it.
        func push(_ name: String) async throws -> Bool {
            let nqn = "nqn.2024-01.io.dem.test:" + name
            try await dem.service.change(.updated, path: "/test") { fabric throws(ModelError) in
                if (try? fabric.target("t1"))?.ports.isEmpty ?? true {
                    try fabric.setPort(
                        target: "t1",
                        FabricPort(
                            portID: 1,
                            transportType: "tcp",
                            addressFamily: "ipv4",
                            transportAddress: "192.0.2.1"
                        )
                    )
                }
                try fabric.addSubsystem(target: "t1", FabricSubsystem(nqn: nqn, allowAnyHost: true))
            }
            return try await eventually { FileManager.default.fileExists(atPath: root + "/subsystems/" + nqn) }
        }
        #expect(try await push("first"))
        #expect(try await eventually { dem.monitor.status("t1")?.certificate?.issuer == oldHash })
        let enrolled = try #require(dem.monitor.status("t1")?.certificate)
        #expect(enrolled.trusts == [oldHash])
        #expect(try await presented(emPort).leaf == enrolled.fingerprint)

        // A target's certificate: a new key and certificate, served at once, kept on disk.
        let (targetStatus, targetAnswer) = try await rotate(#"{"What":"target","Target":"t1"}"#)
        #expect(targetStatus == 200, "\(targetAnswer)")
        let renewed = try #require(targetAnswer["Fingerprint"] as? String)
        #expect(renewed != enrolled.fingerprint)
        #expect(try await presented(emPort).leaf == renewed)
        let onDisk = try #require(try EndpointIdentity.load(dataDirectory: emDirectory))
        #expect(try FabricPKI.fingerprint(FabricPKI.certificates(pem: onDisk.certificatePEM)[0]) == renewed)
        #expect(try await push("after-target"))
        #expect(try await rotate(#"{"What":"target","Target":"nobody"}"#).0 == 404)

        // dem's own certificate.
        let before = try await presented(port)
        let (serverStatus, serverAnswer) = try await rotate(#"{"What":"server"}"#)
        #expect(serverStatus == 200, "\(serverAnswer)")
        let serverFingerprint = try #require(serverAnswer["Fingerprint"] as? String)
        #expect(serverFingerprint != before.leaf)
        #expect(try await presented(port).leaf == serverFingerprint)
        #expect(try await push("after-server"))

        // The CA, with an overlap: a new CA signs the target's certificate, both are trusted, dem
        // still presents its certificate of the old CA (what a new join token's hash names).
        let (startStatus, started) = try await rotate(#"{"What":"ca","Overlap":3600}"#)
        #expect(startStatus == 200, "\(started)")
        let newHash = try #require(started["Fingerprint"] as? String)
        #expect(newHash != oldHash)
        let targets = try #require(started["Targets"] as? [[String: Any]])
        #expect(targets.count == 1)
        let overlapCertificate = try #require(targets.first?["Certificate"] as? [String: Any])
        #expect(overlapCertificate["Issuer"] as? String == newHash)
        #expect(Set(overlapCertificate["Trusts"] as? [String] ?? []) == [oldHash, newHash])
        #expect(FabricPKI.certificates(pem: try String(contentsOfFile: caPath, encoding: .utf8)).count == 2)
        #expect(try await presented(port).anchor == oldHash)
        let (_, tokenAnswer) = try await call(
            http,
            .POST,
            url + "/dem/tokens",
            token: admin,
            body: #"{"Name":"t2 join","Role":"join"}"#
        )
        #expect(tokenAnswer.contains(oldHash))
        #expect(try await push("during-overlap"))
        // One rotation at a time.
        #expect(try await rotate(#"{"What":"ca"}"#).0 == 409)

        // Finishing: the new CA alone; dem's certificate from it; the target trusts it alone.
        let (finishStatus, finished) = try await rotate(#"{"What":"ca","Finish":true}"#)
        #expect(finishStatus == 200, "\(finished)")
        #expect(finished["Fingerprint"] as? String == newHash)
        #expect(try await presented(port).anchor == newHash)
        let after = try #require((finished["Targets"] as? [[String: Any]])?.first?["Certificate"] as? [String: Any])
        #expect(after["Trusts"] as? [String] == [newHash])
        let bundle = FabricPKI.certificates(pem: try String(contentsOfFile: caPath, encoding: .utf8))
        #expect(try bundle.map { try FabricPKI.fingerprint($0) } == [newHash])
        #expect(!FileManager.default.fileExists(atPath: directory + "/dem/fabric-ca-next.key"))
        #expect(
            try FabricCA.load(certificate: caPath, key: directory + "/dem/" + FabricCA.keyFile).fingerprint == newHash
        )
        #expect(try await push("after-finish"))
        #expect(try await rotate(#"{"What":"ca","Finish":true}"#).0 == 409)
        // The audit trail names what each rotation did.
        let audit = try String(contentsOfFile: directory + "/dem/audit.log", encoding: .utf8)
        #expect(audit.contains("CA rotation started: \(newHash)"))
        #expect(audit.contains("CA rotation finished: \(newHash), 1 of 1 targets renewed"))
        #expect(audit.contains("target t1's certificate: \(renewed)"))
        #expect(audit.contains("dem's certificate: \(serverFingerprint)"))
        // What dem-em keeps loads again as it would at a restart.
        let reloaded = try #require(try EndpointIdentity.load(dataDirectory: emDirectory))
        #expect(FabricPKI.certificates(pem: reloaded.caPEM).count == 1)

        // dem-em refuses a certificate that is not for a key it asked for, and garbage.
        let demCertificate = try String(contentsOfFile: directory + "/dem/dem-api.pem", encoding: .utf8)
        let demKeyPEM = try String(contentsOfFile: directory + "/dem/dem-api.key", encoding: .utf8)
        let asDEM = try client(
            trusting: try String(contentsOfFile: caPath, encoding: .utf8),
            presenting: (demCertificate, demKeyPEM)
        )
        defer { Task { try? await asDEM.shutdown() } }
        let emURL = "https://127.0.0.1:\(emPort)/certificate"
        let foreign = try JSONSerialization.data(withJSONObject: [
            "Certificate": reloaded.certificatePEM, "CA": reloaded.caPEM,
        ])
        let (foreignStatus, foreignBody) = try await call(
            asDEM,
            .PUT,
            emURL,
            body: String(decoding: foreign, as: UTF8.self)
        )
        #expect(foreignStatus == 422)
        #expect(foreignBody.contains("not for a key"))
        #expect(try await call(asDEM, .PUT, emURL, body: #"{"Certificate":"x","CA":"y"}"#).0 == 422)
        #expect(try await push("still-managed"))

        await em.serviceGroup.triggerGracefulShutdown()
        try await emTask.value
        await dem.serviceGroup.triggerGracefulShutdown()
        try await demTask.value
    }
}
