import AsyncHTTPClient
import Crypto
import DEMCore
import DEMHTTP
import Foundation
import Logging
import NIOCore
import NIOSSL
import Synchronization
import X509

/// dem-em's identity in the fabric once it enrolled: its certificate of the fabric CA (role
/// `dem-em`, common name its target's alias), its key and the fabric CA, in its data directory.
/// With it dem-em serves its API over TLS 1.3 to dem alone (a client certificate of the fabric
/// CA with role `dem` is required) and joins dem with its own certificate.
public struct EndpointIdentity: Sendable {
    public static let certificateFile = "dem-em.pem"
    public static let keyFile = "dem-em.key"
    public static let caFile = "fabric-ca.pem"

    public var certificatePEM: String
    public var keyPEM: String
    public var caPEM: String
    /// The target's alias (the certificate's common name).
    public var alias: String
    public var expires: Date
    /// The names dem may reach this API by (the certificate's subject alternative names).
    public var names: [SubjectName]

    /// The identity in `directory`; nil when dem-em has not enrolled (none of its files there).
    public static func load(dataDirectory directory: String) throws -> EndpointIdentity? {
        let paths = [certificateFile, keyFile, caFile].map { directory + "/" + $0 }
        let present = paths.filter { FileManager.default.fileExists(atPath: $0) }
        if present.isEmpty { return nil }
        guard present.count == paths.count else {
            let missing = paths.filter { !present.contains($0) }
            throw TLSSetupError(
                "dem-em's enrolment is incomplete: \(missing.joined(separator: ", ")) missing; enrol again (--join URL --token … --ca-hash …)"
            )
        }
        let certificatePEM = try FabricPKI.readText(paths[0])
        try completeRenewal(certificatePEM: certificatePEM, keyPath: paths[1])
        let keyPEM = try FabricPKI.readText(paths[1])
        let caPEM = try FabricPKI.readText(paths[2])
        let certificate = try FabricPKI.readCertificates(paths[0])[0]
        guard let identity = FabricIdentity(certificate: certificate), identity.role == .target else {
            throw TLSSetupError("\(paths[0]) is not a target's certificate of the fabric CA (role dem-em)")
        }
        guard let key = try? P256.Signing.PrivateKey(pemRepresentation: keyPEM),
            Certificate.PublicKey(key.publicKey) == certificate.publicKey
        else {
            throw TLSSetupError("\(paths[1]) is not the key of \(paths[0])")
        }
        return EndpointIdentity(
            certificatePEM: certificatePEM,
            keyPEM: keyPEM,
            caPEM: caPEM,
            alias: identity.name,
            expires: certificate.notValidAfter,
            names: FabricPKI.subjectNames(of: certificate)
        )
    }

    /// A renewal that stopped between writing the certificate and putting its key in place is
    /// completed; a new key whose certificate never came is removed.
    static func completeRenewal(certificatePEM: String, keyPath: String) throws {
        let newKeyPath = keyPath + ".new"
        guard let text = try? FabricPKI.readText(newKeyPath) else { return }
        if let key = try? P256.Signing.PrivateKey(pemRepresentation: text),
            let certificate = FabricPKI.certificates(pem: certificatePEM).first,
            Certificate.PublicKey(key.publicKey) == certificate.publicKey
        {
            guard rename(newKeyPath, keyPath) == 0 else {
                throw TLSSetupError("cannot rename \(newKeyPath) to \(keyPath): \(String(cString: strerror(errno)))")
            }
        } else {
            try? FileManager.default.removeItem(atPath: newKeyPath)
        }
    }

    /// The API's TLS: this certificate, and a client certificate of the fabric CA required
    /// (the server also requires its role to be dem's).
    public var serverSettings: TLSServerSettings {
        TLSServerSettings(
            certificateChainPEM: certificatePEM + caPEM,
            keyPEM: keyPEM,
            clientCertificates: .required(caPEM: caPEM)
        )
    }

    /// TLS towards dem: the fabric CA alone trusted, this certificate presented.
    public func clientConfiguration() throws -> TLSConfiguration {
        try fabricClientConfiguration(caPEM: caPEM, certificateChainPEM: certificatePEM, keyPEM: keyPEM)
    }
}

/// An enrolled dem-em's identity while it runs: dem renews its certificate (`POST
/// /certificate/request`, then `PUT /certificate`) when it is due or the fabric's CAs change,
/// and the API serves the new one on new connections at once.
public final class EndpointCredentials: Sendable {
    private struct State {
        var identity: EndpointIdentity
        /// Keys of requests not yet answered by a certificate, newest last (a few: two renewals
        /// asked at once both complete).
        var pending: [P256.Signing.PrivateKey]
    }

    public let dataDirectory: String
    /// The API's TLS context.
    public let context: TLSContextBox
    private let state: Mutex<State>
    let logger: Logger

    public init(identity: EndpointIdentity, dataDirectory: String, logger: Logger) throws {
        self.dataDirectory = dataDirectory
        self.logger = logger
        context = TLSContextBox(try identity.serverSettings.makeContext())
        state = Mutex(State(identity: identity, pending: []))
    }

    public var identity: EndpointIdentity { state.withLock { $0.identity } }

    /// The certificate as `/status` reports it.
    public var status: EndpointCertificate? {
        let identity = self.identity
        guard let certificate = FabricPKI.certificates(pem: identity.certificatePEM).first else { return nil }
        return FabricPKI.status(certificate: certificate, trusted: FabricPKI.certificates(pem: identity.caPEM))
    }

    /// A request for a certificate of a new key, for this target's alias and names.
    public func request() throws -> EndpointCertificateRequest {
        let key = P256.Signing.PrivateKey()
        let identity = self.identity
        let request = try CertificateSigningRequest(
            version: .v1,
            subject: try DistinguishedName { CommonName(identity.alias) },
            privateKey: Certificate.PrivateKey(key),
            attributes: CertificateSigningRequest.Attributes(),
            signatureAlgorithm: .ecdsaWithSHA256
        )
        state.withLock { state in
            state.pending.append(key)
            if state.pending.count > 4 { state.pending.removeFirst() }
        }
        return EndpointCertificateRequest(
            CSR: try request.serializeAsPEM().pemString,
            Names: identity.names.map(\.description)
        )
    }

    /// Installs the certificate dem issued for a pending request, and the CAs to trust for
    /// dem's certificate: written to the data directory (key first), served at once.
    /// - Throws: ``TLSSetupError`` naming what does not fit (the files are left as they were).
    public func install(_ install: EndpointCertificateInstall) throws -> EndpointCertificate {
        guard let certificate = FabricPKI.certificates(pem: install.Certificate).first else {
            throw TLSSetupError("Certificate is not a PEM certificate")
        }
        let cas = FabricPKI.certificates(pem: install.CA)
        guard !cas.isEmpty else { throw TLSSetupError("CA holds no PEM certificate") }
        guard FabricPKI.issuer(of: certificate, among: cas) != nil else {
            throw TLSSetupError("Certificate is not signed by a CA of CA")
        }
        return try state.withLock { state in
            guard let identity = FabricIdentity(certificate: certificate), identity.role == .target,
                identity.name == state.identity.alias
            else {
                throw TLSSetupError("Certificate is not target \(state.identity.alias)'s (role dem-em, CN its alias)")
            }
            guard
                let index = state.pending.firstIndex(where: {
                    Certificate.PublicKey($0.publicKey) == certificate.publicKey
                })
            else {
                throw TLSSetupError("Certificate is not for a key this dem-em asked for (POST /certificate/request)")
            }
            let key = state.pending[index]
            let certificatePEM = try certificate.serializeAsPEM().pemString + "\n"
            let caPEM = try FabricPKI.pem(cas)
            let renewed = EndpointIdentity(
                certificatePEM: certificatePEM,
                keyPEM: key.pemRepresentation,
                caPEM: caPEM,
                alias: identity.name,
                expires: certificate.notValidAfter,
                names: FabricPKI.subjectNames(of: certificate)
            )
            let context = try renewed.serverSettings.makeContext()
            // The new key beside the old one, the CAs, the certificate, then the key in place: a
            // stop in between leaves the old pair, or a new certificate whose key
            // ``EndpointIdentity/load(dataDirectory:)`` puts in place.
            let keyPath = dataDirectory + "/" + EndpointIdentity.keyFile
            try AtomicFile.write(
                Data(key.pemRepresentation.utf8),
                to: keyPath + ".new",
                mode: 0o600,
                folderMode: 0o700
            )
            try AtomicFile.write(
                Data(caPEM.utf8),
                to: dataDirectory + "/" + EndpointIdentity.caFile,
                mode: 0o644,
                folderMode: 0o700
            )
            try AtomicFile.write(
                Data(certificatePEM.utf8),
                to: dataDirectory + "/" + EndpointIdentity.certificateFile,
                mode: 0o644,
                folderMode: 0o700
            )
            guard rename(keyPath + ".new", keyPath) == 0 else {
                throw TLSSetupError("cannot rename \(keyPath).new to \(keyPath): \(String(cString: strerror(errno)))")
            }
            // Its key is used; another request's (two renewals at once) may still complete.
            state.pending.remove(at: index)
            state.identity = renewed
            self.context.replace(context)
            logger.notice(
                "installed a new certificate from dem",
                metadata: [
                    "expires": "\(certificate.notValidAfter)",
                    "trusts": "\(cas.compactMap { try? FabricPKI.fingerprint($0) }.joined(separator: ", "))",
                ]
            )
            return FabricPKI.status(certificate: certificate, trusted: cas)
        }
    }
}

/// `dem-em --join URL --token … --ca-hash sha256:…`: enrolment with a one-time join token.
///
/// dem-em reads the certificate chain dem presents and checks its CA (the chain's last
/// certificate) against the hash the administrator gave, then, trusting that CA alone, sends a
/// key it generated (in a certificate signing request) with the join token, and keeps the
/// certificate dem's fabric CA signs for it, the CA and the fabric credential dem gives (for the
/// in-band channel) in its data directory. The token is used up whatever follows.
public enum EndpointEnrolment {
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var description: String
        init(_ description: String) { self.description = description }
    }

    /// The names dem reaches this dem-em's API by, for its certificate: the advertised address
    /// (or the one dem-em would advertise), and the API address when it is a single one.
    public static func names(options: EndpointOptions) -> [String] {
        var names = [options.advertiseAddress ?? DesiredStateKeeper.defaultAdvertiseAddress(options.apiAddress)]
        if options.apiAddress != "0.0.0.0" && options.apiAddress != "::" && !names.contains(options.apiAddress) {
            names.append(options.apiAddress)
        }
        return names
    }

    /// The alias a dem-em without --alias enrols as: the host name.
    public static var defaultAlias: String { InventoryScanner.hostname() ?? "target" }

    struct Answer: Decodable {
        var Alias: String
        var Certificate: String
        var CA: String
        var FabricKey: String?
    }

    /// Enrols target `alias` with dem at `url` (https), for `names` (where dem reaches this
    /// API). - Returns: the identity, written to `dataDirectory`.
    public static func enrol(
        url: String,
        token: String,
        caHash: String,
        alias: String,
        names: [String],
        dataDirectory: String,
        credentialPath: String,
        group: any EventLoopGroup,
        logger: Logger
    ) async throws -> EndpointIdentity {
        guard let parsed = URL(string: url), parsed.scheme == "https", let host = parsed.host, !host.isEmpty else {
            throw Failure("--join \(url): enrolment needs dem's https:// URL, e.g. https://head:22345")
        }
        let expected = caHash.lowercased()
        guard expected.hasPrefix("sha256:"), expected.count == 7 + 64 else {
            throw Failure(
                "--ca-hash must be sha256:<64 hex digits> (dem logs it at start as tls-ca-fingerprint), not \(caHash)"
            )
        }
        let port = parsed.port ?? DEMCore.managementPort
        let chain: [NIOSSLCertificate]
        do {
            chain = try await FabricPKI.presentedChain(host: host, port: port)
        } catch {
            throw Failure("cannot read the certificate dem presents at \(host):\(port): \(error)")
        }
        guard let anchor = chain.last, let anchorDER = try? anchor.toDERBytes() else {
            throw Failure("dem at \(host):\(port) presented no certificate")
        }
        let presented = FabricPKI.fingerprint(der: anchorDER)
        guard presented == expected else {
            throw Failure(
                "the CA dem at \(host):\(port) presents is \(presented), not \(expected): not enrolling (is it the right dem, the right hash?)"
            )
        }
        let caPEM = try Certificate(derEncoded: anchorDER).serializeAsPEM().pemString + "\n"
        let key = P256.Signing.PrivateKey()
        let request = try CertificateSigningRequest(
            version: .v1,
            subject: try DistinguishedName { CommonName(alias) },
            privateKey: Certificate.PrivateKey(key),
            attributes: CertificateSigningRequest.Attributes(),
            signatureAlgorithm: .ecdsaWithSHA256
        )
        struct Body: Encodable {
            var Alias: String
            var CSR: String
            var Names: [String]
        }
        let body = Body(Alias: alias, CSR: try request.serializeAsPEM().pemString, Names: names)
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        tls.trustRoots = .certificates([anchor])
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(30))
        let client = HTTPClient(eventLoopGroupProvider: .shared(group), configuration: configuration)
        let status: UInt
        let answer: ByteBuffer
        do {
            var call = HTTPClientRequest(url: url.hasSuffix("/") ? url + "dem/enrol" : url + "/dem/enrol")
            call.method = .POST
            call.headers.add(name: "Authorization", value: "Bearer \(token)")
            call.headers.add(name: "Content-Type", value: "application/json")
            call.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(body)))
            let response = try await client.execute(call, timeout: .seconds(30))
            status = response.status.code
            answer = try await response.body.collect(upTo: 1 << 20)
            try await client.shutdown()
        } catch {
            try? await client.shutdown()
            throw Failure("cannot enrol with dem at \(url): \(ConnectionFailure.describe(error))")
        }
        guard status == 201 else {
            let text = String(decoding: answer.readableBytesView, as: UTF8.self)
            throw Failure("dem at \(url) refused the enrolment (\(status)): \(text)")
        }
        let decoded: Answer
        do {
            decoded = try JSONDecoder().decode(Answer.self, from: Data(answer.readableBytesView))
        } catch {
            throw Failure("dem's answer to the enrolment cannot be read: \(error)")
        }
        // The key first, the certificate last: a certificate is there only with its key.
        try StateDirectory.prepare(dataDirectory)
        try AtomicFile.write(
            Data(key.pemRepresentation.utf8),
            to: dataDirectory + "/" + EndpointIdentity.keyFile,
            mode: 0o600,
            folderMode: 0o700
        )
        // The CAs dem gives to trust (two during a CA rotation), when they include the one checked.
        let bundle = FabricPKI.certificates(pem: decoded.CA)
        let trustPEM =
            bundle.contains { (try? FabricPKI.fingerprint($0)) == presented } ? try FabricPKI.pem(bundle) : caPEM
        try AtomicFile.write(
            Data(trustPEM.utf8),
            to: dataDirectory + "/" + EndpointIdentity.caFile,
            mode: 0o644,
            folderMode: 0o700
        )
        if let fabricKey = decoded.FabricKey {
            try SecretFile.write(fabricKey + "\n", to: credentialPath)
        }
        try AtomicFile.write(
            Data(decoded.Certificate.utf8),
            to: dataDirectory + "/" + EndpointIdentity.certificateFile,
            mode: 0o644,
            folderMode: 0o700
        )
        guard let identity = try EndpointIdentity.load(dataDirectory: dataDirectory) else {
            throw Failure("the enrolment's files are not in \(dataDirectory)")
        }
        logger.notice(
            "enrolled with dem",
            metadata: [
                "dem": "\(url)", "alias": "\(identity.alias)", "ca": "\(presented)",
                "certificate": "\(dataDirectory)/\(EndpointIdentity.certificateFile)",
                "expires": "\(identity.expires)", "names": "\(names.joined(separator: ", "))",
            ]
        )
        return identity
    }
}
