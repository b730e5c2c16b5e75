import Crypto
import DEMCore
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import SwiftASN1
import X509

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A certificate authority for the fabric's management links: its certificate and key (P-256
/// ECDSA), kept in dem's data directory. dem makes it at its first start unless the site brings
/// its own PKI, and signs with it dem's server certificate (and, later, the targets').
public struct FabricCA: Sendable {
    public var certificate: Certificate
    public var key: P256.Signing.PrivateKey

    /// The CA certificate's file, beside its key.
    public static let certificateFile = "fabric-ca.pem"
    public static let keyFile = "fabric-ca.key"

    /// The certificate as PEM.
    public var certificatePEM: String { get throws { try certificate.serializeAsPEM().pemString } }

    /// The SHA-256 of the certificate's DER bytes, as `sha256:<hex>`: what a client pins.
    public var fingerprint: String { get throws { try FabricPKI.fingerprint(certificate) } }

    /// A new CA, valid for ten years.
    public static func generate(name: String, now: Date = Date()) throws -> FabricCA {
        let key = P256.Signing.PrivateKey()
        let signer = Certificate.PrivateKey(key)
        let subject = try DistinguishedName {
            OrganizationName("DEM")
            CommonName(name)
        }
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: signer.publicKey,
            notValidBefore: now.addingTimeInterval(-300),
            notValidAfter: now.addingTimeInterval(10 * 365 * 86400),
            issuer: subject,
            subject: subject,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: signer.publicKey)
            },
            issuerPrivateKey: signer
        )
        return FabricCA(certificate: certificate, key: key)
    }

    /// The CA in `directory`, made there (key mode 0600) when it has none.
    /// - Returns: the CA, and whether it was made now.
    public static func ensure(in directory: String, name: String) throws -> (ca: FabricCA, created: Bool) {
        let certificatePath = directory + "/" + certificateFile
        let keyPath = directory + "/" + keyFile
        let manager = FileManager.default
        switch (manager.fileExists(atPath: certificatePath), manager.fileExists(atPath: keyPath)) {
        case (true, true):
            return (try load(certificate: certificatePath, key: keyPath), false)
        case (false, false):
            let ca = try generate(name: name)
            try ca.write(certificate: certificatePath, key: keyPath)
            return (ca, true)
        case (true, false):
            throw TLSSetupError(
                "\(certificatePath) is there but its key \(keyPath) is not: put the key back from a backup (mode 0600); without it no certificate can be issued"
            )
        case (false, true):
            throw TLSSetupError(
                "\(keyPath) is there but its certificate \(certificatePath) is not: put the certificate back from a backup, or from any machine that trusts this fabric"
            )
        }
    }

    /// Writes the key (mode 0600) and then the certificate: a certificate without its key
    /// would be a CA no one can sign with.
    public func write(certificate certificatePath: String, key keyPath: String) throws {
        try AtomicFile.write(Data(key.pemRepresentation.utf8), to: keyPath, mode: 0o600, folderMode: 0o700)
        try AtomicFile.write(Data(try certificatePEM.utf8), to: certificatePath, mode: 0o644, folderMode: 0o700)
    }

    /// The CA of a certificate file and its key file.
    public static func load(certificate certificatePath: String, key keyPath: String) throws -> FabricCA {
        let certificate = try FabricPKI.readCertificates(certificatePath)[0]
        let keyText = try FabricPKI.readText(keyPath)
        let key: P256.Signing.PrivateKey
        do {
            key = try P256.Signing.PrivateKey(pemRepresentation: keyText)
        } catch {
            throw TLSSetupError("\(keyPath) is not a P-256 private key in PEM: \(error)")
        }
        guard Certificate.PublicKey(key.publicKey) == certificate.publicKey else {
            throw TLSSetupError("\(keyPath) is not the key of the certificate \(certificatePath)")
        }
        return FabricCA(certificate: certificate, key: key)
    }

    /// A certificate for `names` signed by this CA, valid for `validity`, for a server and a
    /// client both (dem serves its API and calls targets' with one certificate).
    public func issue(
        commonName: String,
        role: FabricRole,
        names: [SubjectName],
        publicKey: Certificate.PublicKey,
        validity: TimeInterval,
        now: Date = Date()
    ) throws -> Certificate {
        let signer = Certificate.PrivateKey(key)
        let alternativeNames: [GeneralName] = names.map { name in
            switch name {
            case .dns(let host): return .dnsName(host)
            case .ip(let bytes): return .ipAddress(ASN1OctetString(contentBytes: ArraySlice(bytes)))
            }
        }
        return try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: publicKey,
            notValidBefore: now.addingTimeInterval(-300),
            notValidAfter: min(now.addingTimeInterval(validity), certificate.notValidAfter),
            issuer: certificate.subject,
            subject: try DistinguishedName {
                OrganizationName("DEM")
                OrganizationalUnitName(role.rawValue)
                CommonName(commonName)
            },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth, .clientAuth])
                SubjectAlternativeNames(alternativeNames)
                AuthorityKeyIdentifier(
                    keyIdentifier: try certificate.extensions.subjectKeyIdentifier?.keyIdentifier
                        ?? SubjectKeyIdentifier(hash: certificate.publicKey).keyIdentifier
                )
            },
            issuerPrivateKey: signer
        )
    }
}

extension FabricCA {
    /// How long a target's certificate is valid.
    public static let targetValidity: TimeInterval = 365 * 86400

    /// The certificate of target `alias` for the key of `csrPEM` (a PEM certificate signing
    /// request, its signature checked: whoever sends it holds the key), for `names` (where dem
    /// reaches the target's API). Its role is ``FabricRole/target`` and its common name the alias.
    public func enrol(alias: String, csrPEM: String, names: [SubjectName], now: Date = Date()) throws -> Certificate {
        let request: CertificateSigningRequest
        do {
            request = try CertificateSigningRequest(pemEncoded: csrPEM)
        } catch {
            throw TLSSetupError("CSR is not a PEM certificate signing request: \(error)")
        }
        guard request.publicKey.isValidSignature(request.signature, for: request) else {
            throw TLSSetupError("CSR is not signed by its own key")
        }
        return try issue(
            commonName: alias,
            role: .target,
            names: names,
            publicKey: request.publicKey,
            validity: Self.targetValidity,
            now: now
        )
    }
}

/// What a certificate of the fabric CA is for (its subject's organizational unit).
public enum FabricRole: String, Sendable, Hashable {
    /// dem: its API's certificate, which it also presents to targets.
    case dem
    /// A target's dem-em, named by its alias (the common name).
    case target = "dem-em"
}

/// Who a verified certificate of the fabric CA names: its role and common name.
public struct FabricIdentity: Sendable, Hashable, CustomStringConvertible {
    public var role: FabricRole
    public var name: String

    public init(role: FabricRole, name: String) {
        self.role = role
        self.name = name
    }

    /// The identity of a certificate (DER), if it has a role and a common name.
    public init?(certificateDER der: [UInt8]) {
        guard let certificate = try? Certificate(derEncoded: der) else { return nil }
        self.init(certificate: certificate)
    }

    public init?(certificate: Certificate) {
        var role: FabricRole?
        var name: String?
        for rdn in certificate.subject {
            for attribute in rdn {
                if attribute.type == .RDNAttributeType.organizationalUnitName {
                    role = FabricRole(rawValue: String(describing: attribute.value))
                } else if attribute.type == .RDNAttributeType.commonName {
                    name = String(describing: attribute.value)
                }
            }
        }
        guard let role, let name else { return nil }
        self.init(role: role, name: name)
    }

    /// `role:name`, as a request's logger carries it (`tls.peer`).
    public var description: String { role.rawValue + ":" + name }

    /// The identity in a `tls.peer` text.
    public init?(_ text: String) {
        guard let colon = text.firstIndex(of: ":"), let role = FabricRole(rawValue: String(text[..<colon])) else {
            return nil
        }
        self.init(role: role, name: String(text[text.index(after: colon)...]))
    }
}

/// A name a certificate is for: a DNS name or an IP address.
public enum SubjectName: Sendable, Hashable, CustomStringConvertible {
    case dns(String)
    case ip([UInt8])

    /// An IPv4 or IPv6 address in text, or else a DNS name.
    public init(_ text: String) {
        if let bytes = FabricPKI.addressBytes(text) {
            self = .ip(bytes)
        } else {
            self = .dns(text.lowercased())
        }
    }

    public var description: String {
        switch self {
        case .dns(let name): return name
        case .ip(let bytes):
            var text = [CChar](repeating: 0, count: 64)
            let family = bytes.count == 4 ? AF_INET : AF_INET6
            _ = bytes.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &text, socklen_t(text.count)) }
            return String(cString: text)
        }
    }
}

/// dem's (and dem-em's) server certificate and key: made from the fabric CA for the names the
/// API is reached by, kept in the data directory, made again when a name is missing, when it
/// was signed by another CA, or when it is within a third of its validity of expiring.
public enum FabricPKI {
    /// How long a server certificate is valid.
    public static let serverValidity: TimeInterval = 365 * 86400

    /// The SHA-256 of a certificate's DER bytes, `sha256:<hex>`.
    public static func fingerprint(_ certificate: Certificate) throws -> String {
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        return "sha256:" + SHA256.hash(data: serializer.serializedBytes).map { String(format: "%02x", $0) }.joined()
    }

    /// Whether `address` (an IP address, or `localhost`) is on loopback only: 127.0.0.0/8 or ::1.
    public static func isLoopback(_ address: String) -> Bool {
        if address.lowercased() == "localhost" { return true }
        guard let bytes = addressBytes(address) else { return false }
        if bytes.count == 4 { return bytes[0] == 127 }
        return bytes == [UInt8](repeating: 0, count: 15) + [1]
            || (bytes[0..<10].allSatisfy { $0 == 0 } && bytes[10] == 0xFF && bytes[11] == 0xFF && bytes[12] == 127)
    }

    /// Whether `text` can name a certificate's subject: an IP address, or a host name (letters,
    /// digits, `-` and `.`, at most 253 characters).
    public static func isValidName(_ text: String) -> Bool {
        addressBytes(text) != nil
            || (!text.isEmpty && text.count <= 253
                && text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == ".") })
    }

    /// The 4 or 16 bytes of an IP address in text.
    public static func addressBytes(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }

    /// The names a server listening on `address` is reached by: the address itself, or for a
    /// wildcard every address of this machine's interfaces; the host name; and loopback's.
    public static func names(listeningOn address: String) -> [SubjectName] {
        var names: [SubjectName] = []
        func add(_ name: SubjectName) { if !names.contains(name) { names.append(name) } }
        if address == "0.0.0.0" || address == "::" {
            let devices = (try? System.enumerateDevices()) ?? []
            for device in devices {
                guard let ip = device.address?.ipAddress else { continue }
                // A link-local IPv6 address needs its zone to be used: not a name to certify.
                if ip.lowercased().hasPrefix("fe80") { continue }
                if address == "0.0.0.0" && ip.contains(":") { continue }
                add(SubjectName(ip))
            }
        } else {
            add(SubjectName(address))
        }
        var host = [CChar](repeating: 0, count: 256)
        if gethostname(&host, host.count) == 0 {
            let name = String(cString: host)
            if !name.isEmpty {
                add(.dns(name.lowercased()))
                if let short = name.split(separator: ".").first, short.count < name.count {
                    add(.dns(short.lowercased()))
                }
            }
        }
        add(.dns("localhost"))
        add(SubjectName("127.0.0.1"))
        add(SubjectName("::1"))
        return names
    }

    /// The server certificate and key in `directory` (`<base>.pem`, `<base>.key`), issued by
    /// `ca` for `names`, made again when needed.
    /// - Returns: the certificate chain and key as PEM, and why it was made now (nil: kept).
    public static func ensureServerCertificate(
        in directory: String,
        base: String,
        commonName: String,
        role: FabricRole = .dem,
        ca: FabricCA,
        names: [SubjectName],
        now: Date = Date()
    ) throws -> (certificatePEM: String, keyPEM: String, madeBecause: String?) {
        let certificatePath = directory + "/" + base + ".pem"
        let keyPath = directory + "/" + base + ".key"
        var reason: String? = "there was none"
        if let certificateText = try? readText(certificatePath), let keyText = try? readText(keyPath),
            let certificate = try? Certificate(pemEncoded: certificateText),
            let key = try? P256.Signing.PrivateKey(pemRepresentation: keyText)
        {
            let present = Set(subjectNames(of: certificate))
            let missing = names.filter { !present.contains($0) }
            let lifetime = certificate.notValidAfter.timeIntervalSince(certificate.notValidBefore)
            if Certificate.PublicKey(key.publicKey) != certificate.publicKey {
                reason = "its key did not match it"
            } else if certificate.issuer != ca.certificate.subject
                || (try? certificate.extensions.authorityKeyIdentifier?.keyIdentifier)
                    != (try? ca.certificate.extensions.subjectKeyIdentifier?.keyIdentifier)
            {
                reason = "it was issued by another CA"
            } else if FabricIdentity(certificate: certificate)?.role != role {
                reason = "it did not name its role (\(role.rawValue))"
            } else if !missing.isEmpty {
                reason = "it lacked \(missing.map(\.description).joined(separator: ", "))"
            } else if certificate.notValidAfter.timeIntervalSince(now) < lifetime / 3 {
                reason = "it expires on \(certificate.notValidAfter)"
            } else {
                return (
                    certificateText + (try ca.certificatePEM), keyText, nil
                )
            }
        }
        let key = P256.Signing.PrivateKey()
        let certificate = try ca.issue(
            commonName: commonName,
            role: role,
            names: names,
            publicKey: Certificate.PublicKey(key.publicKey),
            validity: serverValidity,
            now: now
        )
        let certificateText = try certificate.serializeAsPEM().pemString + "\n"
        try AtomicFile.write(Data(key.pemRepresentation.utf8), to: keyPath, mode: 0o600, folderMode: 0o700)
        try AtomicFile.write(Data(certificateText.utf8), to: certificatePath, mode: 0o644, folderMode: 0o700)
        return (certificateText + (try ca.certificatePEM), key.pemRepresentation, reason)
    }

    /// The DNS names and IP addresses a certificate is for (its subject alternative names).
    public static func subjectNames(of certificate: Certificate) -> [SubjectName] {
        ((try? certificate.extensions.subjectAlternativeNames) ?? SubjectAlternativeNames()).compactMap {
            name -> SubjectName? in
            switch name {
            case .dnsName(let host): return .dns(host)
            case .ipAddress(let bytes): return .ip(Array(bytes.bytes))
            default: return nil
            }
        }
    }

    /// A file's text, or an error naming it.
    public static func readText(_ path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TLSSetupError("cannot read \(path)")
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// The certificates of a PEM file (at least one), or an error naming the file.
    public static func readCertificates(_ path: String) throws -> [Certificate] {
        let text = try readText(path)
        let documents: [PEMDocument]
        do {
            documents = try PEMDocument.parseMultiple(pemString: text)
        } catch {
            throw TLSSetupError("\(path) is not PEM: \(error)")
        }
        var certificates: [Certificate] = []
        for document in documents where document.discriminator == "CERTIFICATE" {
            do {
                certificates.append(try Certificate(derEncoded: document.derBytes))
            } catch {
                throw TLSSetupError("\(path) holds a certificate that cannot be read: \(error)")
            }
        }
        guard !certificates.isEmpty else { throw TLSSetupError("\(path) holds no certificate") }
        return certificates
    }
}

extension FabricPKI {
    /// The certificate chain a TLS server at `host`:`port` presents, read without verifying it
    /// (to show or check its CA's fingerprint before trusting it).
    public static func presentedChain(host: String, port: Int) async throws -> [NIOSSLCertificate] {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .none
        let context = try NIOSSLContext(configuration: configuration)
        let group = MultiThreadedEventLoopGroup.singleton
        let seen = group.any().makePromise(of: [NIOSSLCertificate].self)
        let channel = try await ClientBootstrap(group: group)
            .connectTimeout(.seconds(10))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let handler = try NIOSSLClientHandler(
                        context: context,
                        serverHostname: host.contains(":") || host.first?.isNumber == true ? nil : host,
                        customVerificationCallback: { chain, verified in
                            seen.succeed(chain)
                            verified.succeed(.certificateVerified)
                        }
                    )
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
            .connect(host: host, port: port)
            .get()
        let timeout = channel.eventLoop.scheduleTask(in: .seconds(10)) {
            seen.fail(ChannelError.connectTimeout(.seconds(10)))
        }
        channel.closeFuture.whenComplete { _ in seen.fail(ChannelError.eof) }
        defer {
            timeout.cancel()
            channel.close(promise: nil)
        }
        return try await seen.futureResult.get()
    }

    /// The SHA-256 fingerprint (`sha256:<hex>`) of a certificate's DER bytes.
    public static func fingerprint(der: [UInt8]) -> String {
        "sha256:" + SHA256.hash(data: der).map { String(format: "%02x", $0) }.joined()
    }
}

/// TLS cannot be set up: the message names the file or setting and what to do.
public struct TLSSetupError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
