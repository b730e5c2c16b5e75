import Crypto
import DEMCore
import Foundation
import NIOSSL
import SwiftASN1
import Synchronization
import X509

/// A listener's TLS context, replaced when its certificate is renewed or its CAs change: each
/// new connection takes the context current when it is accepted; open ones keep theirs.
public final class TLSContextBox: Sendable {
    private let context: Mutex<NIOSSLContext>

    public init(_ context: NIOSSLContext) { self.context = Mutex(context) }

    /// The context for a connection accepted now.
    public var current: NIOSSLContext { context.withLock { $0 } }

    public func replace(_ new: NIOSSLContext) { context.withLock { $0 = new } }
}

extension FabricPKI {
    /// Certificates as one PEM text (a trust bundle, or a chain), in their order.
    public static func pem(_ certificates: [Certificate]) throws -> String {
        try certificates.map { try $0.serializeAsPEM().pemString + "\n" }.joined()
    }

    /// The certificates of a PEM text (none when it holds none or cannot be read).
    public static func certificates(pem text: String) -> [Certificate] {
        guard let documents = try? PEMDocument.parseMultiple(pemString: text) else { return [] }
        return documents.filter { $0.discriminator == "CERTIFICATE" }.compactMap {
            try? Certificate(derEncoded: $0.derBytes)
        }
    }

    /// The CA of `cas` that signed `certificate`: its subject is the certificate's issuer and its
    /// key verifies the certificate's signature.
    public static func issuer(of certificate: Certificate, among cas: [Certificate]) -> Certificate? {
        cas.first {
            $0.subject == certificate.issuer && $0.publicKey.isValidSignature(certificate.signature, for: certificate)
        }
    }

    /// Why a certificate valid from `issued` until `expires` is to be renewed at `now`: less than
    /// a third of its validity left (nil: not yet).
    public static func renewalReason(issued: Date, expires: Date, now: Date = Date()) -> String? {
        let lifetime = expires.timeIntervalSince(issued)
        guard expires.timeIntervalSince(now) < lifetime / 3 else { return nil }
        return expires < now ? "it expired on \(expires)" : "it expires on \(expires)"
    }

    /// What a target's certificate status says of it, for dem and dem-em's `/status`.
    public static func status(certificate: Certificate, trusted cas: [Certificate]) -> EndpointCertificate {
        EndpointCertificate(
            fingerprint: (try? fingerprint(certificate)) ?? "",
            issued: certificate.notValidBefore,
            expires: certificate.notValidAfter,
            issuer: issuer(of: certificate, among: cas).flatMap { try? fingerprint($0) },
            trusts: cas.compactMap { try? fingerprint($0) }
        )
    }
}
