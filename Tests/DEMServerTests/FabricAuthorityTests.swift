import DEMCore
import DEMHTTP
import Foundation
import Logging
import Testing

@testable import DEMServer

/// The fabric CA's life in dem's data directory: a rotation survives a restart, ends by itself
/// when its overlap does, and one a crash interrupted is completed or forgotten at the next
/// start; what makes a target's certificate due for renewal.
@Suite("fabric CA rotation and renewal")
struct FabricAuthorityTests {
    static let logger: Logger = {
        var logger = Logger(label: "authority-test")
        logger.logLevel = .critical
        return logger
    }()

    static func open(_ directory: String) throws -> FabricAuthority {
        try FabricAuthority(
            directory: directory,
            caName: "test fabric CA",
            names: [SubjectName("127.0.0.1")],
            servesAPI: true,
            logger: logger
        )
    }

    static func fingerprints(_ authority: FabricAuthority) throws -> [String] {
        try authority.trusted.map { try FabricPKI.fingerprint($0) }
    }

    @Test("a rotation survives a restart and finishes by itself when its overlap ends")
    func overlapEnds() throws {
        let directory = temporaryDirectory("authority")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = try Self.open(directory)
        let old = first.servingFingerprint
        let server = try FabricPKI.fingerprint(first.serverCertificate)
        // Kept when not due; issued again when forced.
        #expect(try first.renewServer() == nil)
        #expect(try first.renewServer(force: true) != nil)
        #expect(try FabricPKI.fingerprint(first.serverCertificate) != server)

        let now = Date()
        let (new, until) = try first.startRotation(overlap: 60, now: now)
        #expect(first.issuingFingerprint == new)
        #expect(first.servingFingerprint == old)
        let second = try Self.open(directory)
        // Kept to the second.
        #expect(abs((second.rotationUntil ?? .distantPast).timeIntervalSince(until)) < 1)
        #expect(try Self.fingerprints(second) == [old, new])
        #expect(second.issuingFingerprint == new)
        // Not yet.
        #expect(!second.maintain(now: now.addingTimeInterval(30)))
        #expect(second.maintain(now: until.addingTimeInterval(1)))
        #expect(try Self.fingerprints(second) == [new])
        #expect(second.servingFingerprint == new)
        #expect(FabricPKI.issuer(of: second.serverCertificate, among: second.trusted) != nil)
        let third = try Self.open(directory)
        #expect(third.rotationUntil == nil)
        #expect(try Self.fingerprints(third) == [new])
        #expect(throws: AuthorityError.self) { try third.finishRotation() }
    }

    @Test(
        "a rotation interrupted while finishing is completed at start; a new CA whose rotation never started is removed"
    )
    func interrupted() throws {
        let directory = temporaryDirectory("authority")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = try Self.open(directory)
        let (new, _) = try first.startRotation(overlap: 60)
        // A stop just after finishing began: the record says so, the files are the rotation's.
        let path = directory + "/" + FabricAuthority.rotationFile
        var record = try String(contentsOfFile: path, encoding: .utf8)
        record = record.replacingOccurrences(of: "\"Finishing\":false", with: "\"Finishing\":true")
        #expect(record.contains("\"Finishing\":true"))
        try record.write(toFile: path, atomically: true, encoding: .utf8)
        let second = try Self.open(directory)
        #expect(second.rotationUntil == nil)
        #expect(try Self.fingerprints(second) == [new])
        #expect(!FileManager.default.fileExists(atPath: directory + "/" + FabricAuthority.nextKeyFile))

        // A new CA's files without the record (a stop before it was written): forgotten.
        _ = try second.startRotation(overlap: 60)
        try FileManager.default.removeItem(atPath: path)
        let third = try Self.open(directory)
        #expect(third.rotationUntil == nil)
        #expect(try Self.fingerprints(third) == [new])
        #expect(!FileManager.default.fileExists(atPath: directory + "/" + FabricAuthority.nextCertificateFile))
    }

    @Test("a target's certificate is renewed when a third of its validity is left, or when the fabric's CAs changed")
    func targetRenewal() throws {
        let directory = temporaryDirectory("authority")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let authority = try Self.open(directory)
        let ca = authority.servingFingerprint
        let now = Date()
        func certificate(
            issued: Double,
            expires: Double,
            issuer: String? = nil,
            trusts: [String]? = nil
        )
            -> EndpointCertificate
        {
            EndpointCertificate(
                fingerprint: "sha256:00",
                issued: now.addingTimeInterval(issued * 86400),
                expires: now.addingTimeInterval(expires * 86400),
                issuer: issuer ?? ca,
                trusts: trusts ?? [ca]
            )
        }
        #expect(authority.renewalReason(certificate(issued: -200, expires: 165), now: now) == nil)
        #expect(authority.renewalReason(certificate(issued: -250, expires: 115), now: now)?.contains("expires") == true)
        #expect(authority.renewalReason(certificate(issued: -400, expires: -35), now: now)?.contains("expired") == true)
        #expect(authority.renewalReason(certificate(issued: -1, expires: 364, issuer: "sha256:11"), now: now) != nil)
        #expect(
            authority.renewalReason(certificate(issued: -1, expires: 364, trusts: [ca, "sha256:11"]), now: now) != nil
        )
        // During a rotation a certificate of the old CA is due, and one of the new CA trusting only it.
        let (new, _) = try authority.startRotation(overlap: 60)
        #expect(authority.renewalReason(certificate(issued: -1, expires: 364), now: now) != nil)
        #expect(
            authority.renewalReason(certificate(issued: -1, expires: 364, issuer: new, trusts: [new]), now: now) != nil
        )
        #expect(
            authority.renewalReason(certificate(issued: -1, expires: 364, issuer: new, trusts: [new, ca]), now: now)
                == nil
        )
    }
}
