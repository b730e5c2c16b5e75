import NIOSSL

/// What a REST listener serves TLS with: its certificate chain and key (PEM), TLS 1.3 only.
public struct TLSServerSettings: Sendable {
    public var certificateChainPEM: String
    public var keyPEM: String

    public init(certificateChainPEM: String, keyPEM: String) {
        self.certificateChainPEM = certificateChainPEM
        self.keyPEM = keyPEM
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
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw TLSSetupError(
                "the server certificate and key do not make a TLS context (is the key the certificate's?): \(error)"
            )
        }
    }
}
