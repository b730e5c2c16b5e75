import NIOSSL

/// What a REST listener serves TLS with: its certificate chain and key (PEM), TLS 1.3 only, and
/// which client certificates it asks for.
public struct TLSServerSettings: Sendable {
    /// The certificates a listener asks its clients for.
    public enum ClientCertificates: Sendable {
        /// None (bearer tokens authenticate).
        case none
        /// Verified against these CAs (PEM) when a client presents one; a client without one
        /// still connects (dem's API: targets present theirs, dem-cli and browsers none).
        case optional(caPEM: String)
        /// Required, and verified against these CAs (PEM): the handshake fails without one.
        case required(caPEM: String)
    }

    public var certificateChainPEM: String
    public var keyPEM: String
    public var clientCertificates: ClientCertificates

    public init(certificateChainPEM: String, keyPEM: String, clientCertificates: ClientCertificates = .none) {
        self.certificateChainPEM = certificateChainPEM
        self.keyPEM = keyPEM
        self.clientCertificates = clientCertificates
    }

    /// The context each connection's TLS handler is made from.
    public func makeContext() throws -> NIOSSLContext {
        let chain: [NIOSSLCertificate]
        let key: NIOSSLPrivateKey
        do {
            chain = try NIOSSLCertificate.fromPEMBytes(Array(certificateChainPEM.utf8))
            key = try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem)
        } catch {
            throw TLSSetupError("the server certificate or key cannot be read: \(error)")
        }
        guard !chain.isEmpty else { throw TLSSetupError("the server certificate file holds no certificate") }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) },
            privateKey: .privateKey(key)
        )
        configuration.minimumTLSVersion = .tlsv13
        // Closing a connection sends close_notify and waits this long for the peer's; an idle
        // keep-alive client may never send one, and a graceful shutdown of the server waited
        // NIOSSL's default 5 s for each such connection.
        configuration.shutdownTimeout = .milliseconds(300)
        switch clientCertificates {
        case .none:
            break
        case .optional(let caPEM), .required(let caPEM):
            let roots: [NIOSSLCertificate]
            do {
                roots = try NIOSSLCertificate.fromPEMBytes(Array(caPEM.utf8))
            } catch {
                throw TLSSetupError("the CA for client certificates cannot be read: \(error)")
            }
            configuration.trustRoots = .certificates(roots)
            if case .required = clientCertificates {
                configuration.certificateVerification = .noHostnameVerification
            } else {
                configuration.certificateVerification = .optionalVerification
            }
        }
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw TLSSetupError(
                "the server certificate and key do not make a TLS context (is the key the certificate's?): \(error)"
            )
        }
    }
}

/// The client side of the fabric's mutual TLS: TLS 1.3, the fabric CA (PEM) alone trusted, and
/// a certificate chain and key (PEM) presented: dem's towards enrolled dem-em, a dem-em's
/// towards dem.
public func fabricClientConfiguration(
    caPEM: String,
    certificateChainPEM: String,
    keyPEM: String
) throws
    -> TLSConfiguration
{
    var configuration = TLSConfiguration.makeClientConfiguration()
    configuration.minimumTLSVersion = .tlsv13
    configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(caPEM.utf8)))
    configuration.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(certificateChainPEM.utf8))
        .map { .certificate($0) }
    configuration.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem))
    return configuration
}
