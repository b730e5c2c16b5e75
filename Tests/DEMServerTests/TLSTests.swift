import AsyncHTTPClient
import Crypto
import DEMHTTP
import DEMServer
import Foundation
import NIOCore
import NIOSSL
import SwiftASN1
import Testing
import X509

/// dem's REST API over TLS, with the real `dem` executable and AsyncHTTPClient (BoringSSL) as
/// the client: the fabric CA made at the first start, the site's own PKI, plain HTTP only when
/// asked for, and clients that misbehave during the handshake.
@Suite("REST API over TLS")
struct TLSTests {
    /// A client configuration that trusts exactly the CA in `file` (nil: the system's roots).
    static func trusting(_ file: String?) -> TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        if let file { configuration.trustRoots = .file(file) }
        return configuration
    }

    /// GET `url`; a client that does not retry a connection that fails (a refused certificate).
    static func get(
        _ url: String,
        token: String? = nil,
        trusting file: String?,
        tls: TLSConfiguration? = nil
    ) async throws -> Int {
        var request = HTTPClientRequest(url: url)
        request.tlsConfiguration = tls ?? trusting(file)
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.retryConnectionEstablishment = false
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        defer { Task { try? await client.shutdown() } }
        let response = try await client.execute(request, timeout: .seconds(10))
        _ = try await response.body.collect(upTo: 1 << 20)
        return Int(response.status.code)
    }

    @Test(
        "by default dem serves TLS 1.3 with a certificate from its own CA; only that CA verifies it; the same certificate after a restart"
    )
    func fabricCA() async throws {
        let directory = temporaryDirectory("dem-tls")
        let dem = try await DEMProcess.start(dataDirectory: directory)
        defer { dem.kill(SIGKILL) }
        #expect(dem.tls)
        let ca = directory + "/" + FabricCA.certificateFile
        let url = "https://127.0.0.1:\(dem.apiPort)"
        #expect(try await Self.get(url + "/target", token: dem.token, trusting: ca) == 200)
        // Without the fabric CA the certificate is not trusted.
        await #expect(throws: (any Error).self) { _ = try await Self.get(url + "/health", trusting: nil) }
        // A CA of another fabric does not verify it either.
        let otherDirectory = temporaryDirectory("other-ca")
        _ = try FabricCA.ensure(in: otherDirectory, name: "another fabric")
        await #expect(throws: (any Error).self) {
            _ = try await Self.get(url + "/health", trusting: otherDirectory + "/" + FabricCA.certificateFile)
        }
        // By name too: the certificate names localhost.
        #expect(try await Self.get("https://localhost:\(dem.apiPort)/health", trusting: ca) == 200)
        // Plain HTTP to the TLS port gets a redirect to https://, nothing of the API, and dem
        // serves on.
        let plain = await rawHTTPExchange(port: dem.apiPort, sending: "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(plain?.hasPrefix("HTTP/1.1 301 ") == true)
        #expect(plain?.contains("Location: https://x/\r\n") == true)
        #expect(plain?.contains("\"status\"") != true)
        #expect(try await Self.get(url + "/health", trusting: ca) == 200)
        // The CA key is private; the certificate names 127.0.0.1 and localhost and chains to the CA.
        let keyMode =
            try FileManager.default.attributesOfItem(atPath: directory + "/" + FabricCA.keyFile)[
                .posixPermissions
            ] as? NSNumber
        #expect(keyMode?.intValue == 0o600)
        let server = try FabricPKI.readCertificates(directory + "/dem-api.pem")[0]
        let authority = try FabricPKI.readCertificates(ca)[0]
        let names = try #require(try server.extensions.subjectAlternativeNames)
        #expect(names.contains(.dnsName("localhost")))
        #expect(names.contains(.ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1]))))
        #expect(server.issuer == authority.subject)
        #expect(authority.publicKey.isValidSignature(server.signature, for: server))
        // TLS 1.2 is refused: the listener speaks 1.3 only.
        var old = Self.trusting(ca)
        old.maximumTLSVersion = .tlsv12
        await #expect(throws: (any Error).self) { _ = try await Self.get(url + "/health", trusting: nil, tls: old) }
        // A restart keeps the CA and the server certificate.
        let serverBefore = try String(contentsOfFile: directory + "/dem-api.pem", encoding: .utf8)
        dem.kill(SIGTERM)
        _ = try await dem.waitForExit()
        let again = try await DEMProcess.start(dataDirectory: directory)
        defer { again.kill(SIGKILL) }
        #expect(try String(contentsOfFile: directory + "/dem-api.pem", encoding: .utf8) == serverBefore)
        #expect(try await Self.get("https://127.0.0.1:\(again.apiPort)/health", trusting: ca) == 200)
    }

    @Test(
        "a truncated handshake, garbage and a client that stalls are closed without disturbing others; plain HTTP is sent to https://"
    )
    func misbehavingClients() async throws {
        let directory = temporaryDirectory("dem-tls-bad")
        let dem = try await DEMProcess.start(dataDirectory: directory, extraArguments: ["--http-timeout", "2"])
        defer { dem.kill(SIGKILL) }
        let ca = directory + "/" + FabricCA.certificateFile
        let url = "https://127.0.0.1:\(dem.apiPort)/health"
        // The first bytes of a ClientHello, then nothing: closed at the HTTP timeout.
        let start = ContinuousClock.now
        async let stalled = rawHTTPExchange(
            port: dem.apiPort,
            sending: "\u{16}\u{03}\u{01}\u{02}\u{00}\u{01}",
            seconds: 15
        )
        // Meanwhile others are served.
        #expect(try await Self.get(url, trusting: ca) == 200)
        #expect(await stalled == "")
        let waited = ContinuousClock.now - start
        #expect(
            waited >= .seconds(1.5) && waited < .seconds(10),
            "closed by dem after --http-timeout, not by the client: \(waited)"
        )
        // Garbage: a record that is no TLS at all.
        let garbage = await rawHTTPExchange(port: dem.apiPort, sending: String(repeating: "\u{7f}garbage", count: 64))
        #expect(garbage?.hasPrefix("HTTP/") != true)
        #expect(try await Self.get(url, trusting: ca) == 200)
        // Plain HTTP to the TLS port (http:// typed into a browser): sent to https:// the same
        // host and port, the console's page, never the path asked for; a Host that is not a host
        // and port gets 400.
        let plain = await rawHTTPExchange(
            port: dem.apiPort,
            sending: "GET /target?x=1 HTTP/1.1\r\nHost: 127.0.0.1:\(dem.apiPort)\r\n\r\n"
        )
        #expect(plain?.hasPrefix("HTTP/1.1 301 Moved Permanently\r\n") == true, "\(plain ?? "nothing")")
        #expect(plain?.contains("\r\nLocation: https://127.0.0.1:\(dem.apiPort)/\r\n") == true)
        let forged = await rawHTTPExchange(port: dem.apiPort, sending: "GET / HTTP/1.1\r\nHost: evil.example/x\r\n\r\n")
        #expect(forged?.hasPrefix("HTTP/1.1 400") == true, "\(forged ?? "nothing")")
        #expect(try await Self.get(url, trusting: ca) == 200)
    }

    @Test("the site's PKI: --tls-cert, --tls-key and --tls-ca serve its certificate; dem issues none of its own")
    func sitePKI() async throws {
        let site = temporaryDirectory("site-pki")
        try FileManager.default.createDirectory(atPath: site, withIntermediateDirectories: true)
        // The site's CA and a certificate it issued for this machine (made here with the same
        // library; to dem they are files like any other).
        let (ca, _) = try FabricCA.ensure(in: site, name: "Example site CA")
        let key = P256.Signing.PrivateKey()
        let certificate = try ca.issue(
            commonName: "head.example",
            role: .dem,
            names: [.dns("localhost"), SubjectName("127.0.0.1")],
            publicKey: Certificate.PublicKey(key.publicKey),
            validity: 86400
        )
        try (certificate.serializeAsPEM().pemString + "\n").write(
            toFile: site + "/head.pem",
            atomically: true,
            encoding: .utf8
        )
        try key.pemRepresentation.write(toFile: site + "/head.key", atomically: true, encoding: .utf8)
        let directory = temporaryDirectory("dem-site")
        let dem = try await DEMProcess.start(
            dataDirectory: directory,
            extraArguments: [
                "--tls-cert", site + "/head.pem", "--tls-key", site + "/head.key",
                "--tls-ca", site + "/" + FabricCA.certificateFile,
            ]
        )
        defer { dem.kill(SIGKILL) }
        #expect(
            try await Self.get(
                "https://127.0.0.1:\(dem.apiPort)/health",
                trusting: site + "/" + FabricCA.certificateFile
            ) == 200
        )
        #expect(!FileManager.default.fileExists(atPath: directory + "/dem-api.pem"))
        let log = try String(contentsOfFile: dem.logPath, encoding: .utf8)
        #expect(log.contains("tls-ca-fingerprint=\(try ca.fingerprint)"))
    }

    @Test("bad TLS settings end dem at start with the file or flag named")
    func startupFailures() async throws {
        let directory = temporaryDirectory("dem-tls-fail")
        let onlyCert = try await runDEM(["--data-dir", directory, "--tls-cert", "/nonexistent.pem"])
        #expect(onlyCert.status == 64)
        #expect(onlyCert.output.contains("--tls-cert and --tls-key go together"), "\(onlyCert.output)")
        let both = try await runDEM(["--data-dir", directory, "--insecure-http", "--tls-cert", "a", "--tls-key", "b"])
        #expect(both.status == 64)
        #expect(both.output.contains("--insecure-http"), "\(both.output)")
        let garbage = directory + "-garbage.pem"
        try "not a certificate\n".write(toFile: garbage, atomically: true, encoding: .utf8)
        let unreadable = try await runDEM([
            "--data-dir", directory, "--port", "0", "--api-port", "0", "--tls-cert", garbage, "--tls-key", garbage,
        ])
        #expect(unreadable.status == 1)
        #expect(unreadable.output.contains("TLS"), "\(unreadable.output)")
        // The CA's certificate without its key: named, and nothing is made in its place.
        let lost = temporaryDirectory("dem-ca-lost")
        _ = try FabricCA.ensure(in: lost, name: "lost")
        try FileManager.default.removeItem(atPath: lost + "/" + FabricCA.keyFile)
        let noKey = try await runDEM(["--data-dir", lost, "--port", "0", "--api-port", "0"])
        #expect(noKey.status == 1)
        #expect(noKey.output.contains(FabricCA.keyFile), "\(noKey.output)")
        #expect(!FileManager.default.fileExists(atPath: lost + "/" + FabricCA.keyFile))
    }

    @Test(
        "the server certificate is made again when a name is missing, another CA signs, or a third of its life is left"
    )
    func renewal() throws {
        let directory = temporaryDirectory("dem-renew")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let (ca, _) = try FabricCA.ensure(in: directory, name: "renewal")
        let names = [SubjectName("192.0.2.1"), .dns("head")]
        let first = try FabricPKI.ensureServerCertificate(
            in: directory,
            base: "api",
            commonName: "dem",
            ca: ca,
            names: names
        )
        #expect(first.madeBecause == "there was none")
        let kept = try FabricPKI.ensureServerCertificate(
            in: directory,
            base: "api",
            commonName: "dem",
            ca: ca,
            names: names
        )
        #expect(kept.madeBecause == nil)
        #expect(kept.certificatePEM == first.certificatePEM)
        let more = try FabricPKI.ensureServerCertificate(
            in: directory,
            base: "api",
            commonName: "dem",
            ca: ca,
            names: names + [SubjectName("2001:db8::1")]
        )
        #expect(more.madeBecause == "it lacked 2001:db8::1")
        let later = Date().addingTimeInterval(FabricPKI.serverValidity * 0.7)
        let old = try FabricPKI.ensureServerCertificate(
            in: directory,
            base: "api",
            commonName: "dem",
            ca: ca,
            names: names,
            now: later
        )
        #expect(old.madeBecause?.hasPrefix("it expires on") == true)
        let other = try FabricCA.generate(name: "other")
        let moved = try FabricPKI.ensureServerCertificate(
            in: directory,
            base: "api",
            commonName: "dem",
            ca: other,
            names: names
        )
        #expect(moved.madeBecause == "it was issued by another CA")
        // A certificate names its role (dem's by default); one of another role is made again.
        let movedCertificate = try Certificate(pemEncoded: try FabricPKI.readText(directory + "/api.pem"))
        #expect(FabricIdentity(certificate: movedCertificate) == FabricIdentity(role: .dem, name: "dem"))
        let target = try FabricPKI.ensureServerCertificate(
            in: directory,
            base: "api",
            commonName: "t1",
            role: .target,
            ca: other,
            names: names
        )
        #expect(target.madeBecause == "it did not name its role (dem-em)")
        #expect(FabricPKI.isLoopback("127.0.0.1") && FabricPKI.isLoopback("::1") && FabricPKI.isLoopback("127.1.2.3"))
        #expect(!FabricPKI.isLoopback("0.0.0.0") && !FabricPKI.isLoopback("192.0.2.1") && !FabricPKI.isLoopback("::"))
    }
}
