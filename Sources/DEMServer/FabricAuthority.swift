import DEMCore
import DEMHTTP
import Foundation
import Logging
import NIOSSL
import ServiceLifecycle
import Synchronization
import X509

/// dem's fabric CA and its own certificate while dem runs: what enrols and renews targets, what
/// dem's API serves and presents to targets, renewed before expiry and rotated on demand.
///
/// Rotating the CA keeps the fabric up: a new CA is made and trusted beside the old one for an
/// overlap period, during which every target is given a certificate of the new CA and both CAs
/// to trust, while dem still presents its certificate of the old one (which every target trusts
/// whether or not it has been renewed yet). Finishing the rotation makes the new CA the only one:
/// dem's certificate is issued from it and targets are renewed again to trust it alone.
///
/// Files in the data directory: `fabric-ca.pem` (the CAs clients trust, the serving CA first),
/// `fabric-ca.key`; during a rotation `fabric-ca-next.pem`, `fabric-ca-next.key` and
/// `fabric-ca-rotation.json` (when the overlap ends, whether finishing has begun). A rotation
/// that a crash interrupted is completed, or forgotten, at the next start.
public final class FabricAuthority: Sendable {
    /// A CA rotation in progress.
    struct Rotation: Codable, Sendable, Equatable {
        /// When the overlap ends: dem finishes the rotation by itself then.
        var Until: Date
        var Started: Date
        /// Finishing has begun (the new CA's files are being made the only ones).
        var Finishing: Bool
    }

    struct State: Sendable {
        /// The CA that signs dem's own certificate (what dem-em joining with a CA hash checks).
        var ca: FabricCA
        /// During a rotation, the new CA: it signs targets' certificates and is trusted too.
        var next: FabricCA?
        var rotation: Rotation?
        var serverChainPEM: String
        var serverKeyPEM: String
        var server: Certificate
        /// TLS towards enrolled targets, made when the rest changes.
        var targets: TLSConfiguration? = nil
    }

    static let nextCertificateFile = "fabric-ca-next.pem"
    static let nextKeyFile = "fabric-ca-next.key"
    static let rotationFile = "fabric-ca-rotation.json"
    /// The overlap of a CA rotation when none is given: a week, for targets that are down.
    public static let defaultOverlap: TimeInterval = 7 * 86400

    let directory: String
    let caName: String
    let names: [SubjectName]
    let logger: Logger
    private let state: Mutex<State>
    /// The API's TLS context, replaced when dem's certificate or the trusted CAs change (nil:
    /// the API serves plain HTTP).
    public let context: TLSContextBox?

    /// The fabric CA of `directory` (made at the first start) and dem's certificate for `names`,
    /// issued now when it is missing or due; `servesAPI`: the API serves it over TLS.
    public init(directory: String, caName: String, names: [SubjectName], servesAPI: Bool, logger: Logger) throws {
        self.directory = directory
        self.caName = caName
        self.names = names
        self.logger = logger
        let rotation = try Self.recoverRotation(in: directory, logger: logger)
        let (ca, created) = try FabricCA.ensure(in: directory, name: caName)
        if created {
            let fingerprint = try ca.fingerprint
            logger.notice(
                "made the fabric CA (back up its key)",
                metadata: [
                    "certificate": "\(directory)/\(FabricCA.certificateFile)",
                    "key": "\(directory)/\(FabricCA.keyFile) (mode 0600)",
                    "fingerprint": "\(fingerprint)",
                ]
            )
        }
        var next: FabricCA? = nil
        if rotation != nil {
            next = try FabricCA.load(
                certificate: directory + "/" + Self.nextCertificateFile,
                key: directory + "/" + Self.nextKeyFile
            )
        }
        let server = try Self.issueServer(directory: directory, ca: ca, names: names, force: false, logger: logger)
        var initial = State(
            ca: ca,
            next: next,
            rotation: rotation,
            serverChainPEM: server.chain,
            serverKeyPEM: server.key,
            server: server.certificate
        )
        try Self.writeTrust(initial, in: directory)
        initial.targets = try Self.targetsConfiguration(initial)
        state = Mutex(initial)
        context = servesAPI ? TLSContextBox(try Self.serverSettings(initial).makeContext()) : nil
    }

    // MARK: Reading

    /// The CAs clients and targets trust: the serving CA, and the new one during a rotation.
    public var trusted: [Certificate] { state.withLock { Self.trusted($0) } }

    /// The fingerprint of the CA that signs dem's certificate: what `dem-em --ca-hash` checks.
    public var servingFingerprint: String { state.withLock { (try? $0.ca.fingerprint) ?? "" } }

    /// The fingerprint of the CA that signs targets' certificates now.
    public var issuingFingerprint: String { state.withLock { (try? ($0.next ?? $0.ca).fingerprint) ?? "" } }

    /// When the current CA rotation's overlap ends (nil: none in progress).
    public var rotationUntil: Date? { state.withLock { $0.rotation?.Until } }

    /// dem's own certificate.
    public var serverCertificate: Certificate { state.withLock { $0.server } }

    /// The path of the CA file clients are to trust.
    public var trustPath: String { directory + "/" + FabricCA.certificateFile }

    /// TLS towards enrolled targets: dem's certificate presented, the fabric's CAs alone trusted.
    public var targetsConfiguration: TLSConfiguration? { state.withLock { $0.targets } }

    /// Why target certificate `certificate` is to be renewed now (nil: it is current): it is
    /// due, it was issued by another CA than the one that issues now, or its dem-em trusts
    /// other CAs than the fabric's.
    public func renewalReason(_ certificate: EndpointCertificate, now: Date = Date()) -> String? {
        if let reason = FabricPKI.renewalReason(issued: certificate.issued, expires: certificate.expires, now: now) {
            return reason
        }
        let (issuing, trusted) = state.withLock { current in
            (
                (try? (current.next ?? current.ca).fingerprint) ?? "",
                Self.trusted(current).compactMap { try? FabricPKI.fingerprint($0) }
            )
        }
        if certificate.issuer != issuing { return "it was issued by another CA than the fabric's (\(issuing))" }
        if Set(certificate.trusts) != Set(trusted) { return "its dem-em trusts other CAs than the fabric's" }
        return nil
    }

    // MARK: Issuing

    /// Target `alias`'s certificate for the key of `csrPEM` and for `names`, from the CA that
    /// issues now. - Returns: the certificate and the CAs its dem-em is to trust (PEM).
    public func issueTarget(
        alias: String,
        csrPEM: String,
        names: [SubjectName]
    ) throws -> (
        certificate: Certificate, certificatePEM: String, trustPEM: String
    ) {
        let current = state.withLock { $0 }
        let certificate = try (current.next ?? current.ca).enrol(alias: alias, csrPEM: csrPEM, names: names)
        return (
            certificate, try certificate.serializeAsPEM().pemString + "\n", try FabricPKI.pem(Self.trusted(current))
        )
    }

    /// Issues dem's certificate again when it is due (or now, `force`), and serves it on new
    /// connections at once. - Returns: why it was issued (nil: it was kept).
    @discardableResult
    public func renewServer(force: Bool = false) throws -> String? {
        try state.withLock { current in
            let made = try Self.issueServer(
                directory: directory,
                ca: current.ca,
                names: names,
                force: force,
                logger: logger
            )
            guard let reason = made.reason else { return nil }
            current.serverChainPEM = made.chain
            current.serverKeyPEM = made.key
            current.server = made.certificate
            try reload(&current)
            return reason
        }
    }

    /// Starts a CA rotation: a new CA, trusted beside the current one until `overlap` ends.
    /// - Throws: ``AuthorityError`` when one is in progress.
    public func startRotation(overlap: TimeInterval, now: Date = Date()) throws -> (fingerprint: String, until: Date) {
        try state.withLock { current in
            if let rotation = current.rotation {
                throw AuthorityError(
                    "a CA rotation is in progress until \(rotation.Until): finish it first (dem-cli rotate ca finish)"
                )
            }
            let next = try FabricCA.generate(name: caName + " (" + Self.dateStamp(now) + ")", now: now)
            // The new CA's files, then the record that a rotation is in progress: a crash
            // between them leaves files that the next start removes.
            try next.write(
                certificate: directory + "/" + Self.nextCertificateFile,
                key: directory + "/" + Self.nextKeyFile
            )
            let rotation = Rotation(Until: now.addingTimeInterval(overlap), Started: now, Finishing: false)
            try Self.writeRotation(rotation, in: directory)
            current.next = next
            current.rotation = rotation
            try Self.writeTrust(current, in: directory)
            try reload(&current)
            let fingerprint = try next.fingerprint
            let old = try current.ca.fingerprint
            logger.notice(
                "CA rotation started: targets get certificates of the new CA and trust both until the overlap ends",
                metadata: [
                    "new-ca": "\(fingerprint)", "old-ca": "\(old)", "until": "\(rotation.Until)",
                    "new-ca-key": "\(directory)/\(Self.nextKeyFile) (back it up)",
                ]
            )
            return (fingerprint, rotation.Until)
        }
    }

    /// Finishes the CA rotation: the new CA becomes the only one, dem's certificate is issued
    /// from it, and the old CA's key is deleted. - Returns: the new CA's fingerprint.
    public func finishRotation() throws -> String {
        try state.withLock { current in
            guard var rotation = current.rotation, let next = current.next else {
                throw AuthorityError("no CA rotation is in progress (dem-cli rotate ca starts one)")
            }
            rotation.Finishing = true
            try Self.writeRotation(rotation, in: directory)
            try Self.completeFinish(in: directory)
            current.ca = next
            current.next = nil
            current.rotation = nil
            let made = try Self.issueServer(directory: directory, ca: next, names: names, force: false, logger: logger)
            current.serverChainPEM = made.chain
            current.serverKeyPEM = made.key
            current.server = made.certificate
            try reload(&current)
            let fingerprint = try next.fingerprint
            logger.notice(
                "CA rotation finished: the new CA is the only one; remote dem-cli trust it again (dem-cli trust)",
                metadata: ["ca": "\(fingerprint)", "certificate": "\(directory)/\(FabricCA.certificateFile)"]
            )
            return fingerprint
        }
    }

    /// Renews dem's certificate when due, and finishes a CA rotation whose overlap has ended.
    /// - Returns: whether the rotation was finished now.
    @discardableResult
    public func maintain(now: Date = Date()) -> Bool {
        do {
            try renewServer()
        } catch {
            logger.error("cannot renew dem's certificate", metadata: ["error": "\(error)"])
        }
        guard let until = rotationUntil, until <= now else { return false }
        do {
            _ = try finishRotation()
            return true
        } catch {
            logger.error("cannot finish the CA rotation", metadata: ["error": "\(error)"])
            return false
        }
    }

    // MARK: Inside

    private static func trusted(_ state: State) -> [Certificate] {
        [state.ca.certificate] + (state.next.map { [$0.certificate] } ?? [])
    }

    private static func serverSettings(_ state: State) throws -> TLSServerSettings {
        TLSServerSettings(
            certificateChainPEM: state.serverChainPEM,
            keyPEM: state.serverKeyPEM,
            clientCertificates: .optional(caPEM: try FabricPKI.pem(trusted(state)))
        )
    }

    private static func targetsConfiguration(_ state: State) throws -> TLSConfiguration {
        try fabricClientConfiguration(
            caPEM: try FabricPKI.pem(trusted(state)),
            certificateChainPEM: state.serverChainPEM,
            keyPEM: state.serverKeyPEM
        )
    }

    /// Serves `state`'s certificate and CAs on new connections, and presents them to targets.
    private func reload(_ state: inout State) throws {
        state.targets = try Self.targetsConfiguration(state)
        context?.replace(try Self.serverSettings(state).makeContext())
    }

    private static func issueServer(
        directory: String,
        ca: FabricCA,
        names: [SubjectName],
        force: Bool,
        logger: Logger
    ) throws -> (chain: String, key: String, certificate: Certificate, reason: String?) {
        if force {
            for file in ["dem-api.pem", "dem-api.key"] {
                try? FileManager.default.removeItem(atPath: directory + "/" + file)
            }
        }
        let server = try FabricPKI.ensureServerCertificate(
            in: directory,
            base: "dem-api",
            commonName: "dem",
            role: .dem,
            ca: ca,
            names: names
        )
        let reason = force ? "it was rotated" : server.madeBecause
        if let reason {
            logger.notice(
                "issued dem's certificate from the fabric CA",
                metadata: [
                    "because": "\(reason)", "names": "\(names.map(\.description).joined(separator: ", "))",
                    "certificate": "\(directory)/dem-api.pem",
                ]
            )
        }
        guard let certificate = FabricPKI.certificates(pem: server.certificatePEM).first else {
            throw TLSSetupError("\(directory)/dem-api.pem holds no certificate")
        }
        return (server.certificatePEM, server.keyPEM, certificate, reason)
    }

    /// `fabric-ca.pem`: the serving CA first (what its key is), then the new one.
    private static func writeTrust(_ state: State, in directory: String) throws {
        let text = try FabricPKI.pem(trusted(state))
        let path = directory + "/" + FabricCA.certificateFile
        if (try? FabricPKI.readText(path)) != text {
            try AtomicFile.write(Data(text.utf8), to: path, mode: 0o644, folderMode: 0o700)
        }
    }

    private static func writeRotation(_ rotation: Rotation, in directory: String) throws {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        try AtomicFile.write(
            try encoder.encode(rotation),
            to: directory + "/" + rotationFile,
            mode: 0o600,
            folderMode: 0o700
        )
    }

    /// A rotation found at start: in progress (returned), interrupted while starting (its files
    /// removed), or interrupted while finishing (completed).
    private static func recoverRotation(in directory: String, logger: Logger) throws -> Rotation? {
        let manager = FileManager.default
        let nextFiles = [nextCertificateFile, nextKeyFile].map { directory + "/" + $0 }
        guard let data = manager.contents(atPath: directory + "/" + rotationFile) else {
            for path in nextFiles where manager.fileExists(atPath: path) {
                try? manager.removeItem(atPath: path)
                logger.warning("removed a new CA whose rotation never started", metadata: ["file": "\(path)"])
            }
            return nil
        }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        guard let rotation = try? decoder.decode(Rotation.self, from: data) else {
            throw TLSSetupError(
                "\(directory)/\(rotationFile) cannot be read: restore it from a backup, or remove it and \(nextFiles.joined(separator: ", ")) to forget the rotation"
            )
        }
        if rotation.Finishing {
            try completeFinish(in: directory)
            logger.notice("completed a CA rotation that was finishing when dem stopped")
            return nil
        }
        guard nextFiles.allSatisfy({ manager.fileExists(atPath: $0) }) else {
            try? manager.removeItem(atPath: directory + "/" + rotationFile)
            logger.warning("forgot a CA rotation whose new CA is missing")
            return nil
        }
        return rotation
    }

    /// The new CA's files become the CA's; the rotation's files go. Each step can be done again.
    private static func completeFinish(in directory: String) throws {
        let manager = FileManager.default
        let nextCertificate = directory + "/" + nextCertificateFile
        let nextKey = directory + "/" + nextKeyFile
        if manager.fileExists(atPath: nextCertificate), manager.fileExists(atPath: nextKey) {
            let next = try FabricCA.load(certificate: nextCertificate, key: nextKey)
            try next.write(
                certificate: directory + "/" + FabricCA.certificateFile,
                key: directory + "/" + FabricCA.keyFile
            )
            try manager.removeItem(atPath: nextKey)
            try manager.removeItem(atPath: nextCertificate)
        }
        try? manager.removeItem(atPath: directory + "/" + rotationFile)
    }

    private static func dateStamp(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd"
        return formatter.string(from: date)
    }
}

/// A rotation dem cannot do now: the message says why and what to do.
public struct AuthorityError: Error, Sendable, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// Renews dem's certificate before it expires and ends a CA rotation when its overlap does,
/// looking every `interval` while dem runs (targets' certificates are renewed by the monitor
/// as they answer).
struct CertificateMaintenance: Service {
    let authority: FabricAuthority
    var interval: Duration = .seconds(3600)

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do { try await Task.sleep(for: interval) } catch { return }
                authority.maintain()
            }
        }
    }
}
