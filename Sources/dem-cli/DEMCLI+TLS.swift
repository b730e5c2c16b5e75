import Crypto
import DEMTLS
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

extension DEMCLI {
    /// TLS as dem-cli speaks it to dem: TLS 1.2 or later, dem's certificate verified against
    /// `files` (dem's CA: the data directory's, `--cacert` or the pinned one) and only those, as
    /// curl's `--cacert` does, or against the system's roots when there is none; and its name
    /// against the server dem-cli was given. (A machine without a system CA bundle, such as a
    /// minimal head node, then still reaches its dem.)
    static func tlsConfiguration(trusting files: [String]) -> TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        if !files.isEmpty {
            configuration.trustRoots = .file(files[0])
            configuration.additionalTrustRoots = files.dropFirst().map { .file($0) }
        }
        return configuration
    }

    /// `dem-cli trust [sha256:…]`: reads the certificate chain dem presents (without trusting
    /// it yet), shows its CA (the chain's last certificate) and fingerprint, and pins that CA for
    /// this server once the fingerprint is confirmed: given on the command line, or answered on
    /// the terminal (`-f` takes it as shown). Then checks that dem's certificate verifies with it.
    static func trust(options: CLIOptions, expected: String?) async -> ExitStatus {
        guard !options.plainHTTP else {
            writeError("Error: \(options.baseURL) is plain HTTP: there is no certificate to trust\n")
            return .usage
        }
        guard let pinPath = pinnedCAPath(host: options.host, port: options.port, environment: environmentValue) else {
            writeError("Error: neither XDG_CONFIG_HOME nor HOME is set: nowhere to keep the pinned CA\n")
            return .usage
        }
        let chain: [NIOSSLCertificate]
        do {
            chain = try await FabricPKI.presentedChain(host: options.host, port: options.port)
        } catch {
            let failure = transportFailure(error, baseURL: options.baseURL, trusted: [])
            writeError(failure.message + "\n")
            return failure.status
        }
        guard let anchor = chain.last, let der = try? anchor.toDERBytes(),
            let certificate = try? Certificate(derEncoded: der)
        else {
            writeError("Error: dem at \(options.baseURL) presented no certificate dem-cli can read\n")
            return .serverError
        }
        let fingerprint = "sha256:" + SHA256.hash(data: der).map { hexByte($0) }.joined()
        writeError(
            "dem at \(options.baseURL) presents a certificate chain of \(chain.count); its CA is\n"
                + "  \(certificate.subject)\n  fingerprint \(fingerprint)\n  valid until \(certificate.notValidAfter)\n"
        )
        if let expected {
            guard expected == fingerprint else {
                writeError("Error: the fingerprint is not \(expected): not trusted, nothing pinned\n")
                return .refused
            }
        } else if !options.force {
            guard isatty(STDIN_FILENO) != 0 else {
                writeError(
                    "Error: cannot ask whether to trust it: standard input is not a terminal. Compare the fingerprint with the tls-ca-fingerprint dem logs at start, then run 'dem-cli trust \(fingerprint)'.\n"
                )
                return .refused
            }
            guard confirm("Is this the fingerprint dem logged at start (tls-ca-fingerprint)? Trust it?") else {
                writeError("Not trusted; nothing pinned.\n")
                return .refused
            }
        }
        do {
            let pem = try certificate.serializeAsPEM().pemString + "\n"
            try writePrivateFile(pem, to: pinPath)
        } catch {
            writeError("Error: cannot write \(pinPath): \(error)\n")
            return .serverError
        }
        writeError("Pinned as \(pinPath).\n")
        // The pinned CA must now verify dem's certificate, name included.
        var pinned = options
        pinned.caCertificate = pinPath
        return await send(
            [CLIRequest(.GET, path("health"), rendering: .action("dem's certificate verifies with it"))],
            options: pinned
        )
    }
}

private func hexByte(_ byte: UInt8) -> String {
    let digits = Array("0123456789abcdef")
    return String([digits[Int(byte >> 4)], digits[Int(byte & 0xF)]])
}

/// Writes `text` to `path` (its folder made, mode 0700), replacing it.
private func writePrivateFile(_ text: String, to path: String) throws {
    var folder = ""
    for part in path.split(separator: "/").dropLast() {
        folder += "/" + part
        if mkdir(folder, 0o700) != 0 && errno != EEXIST { throw CLIFileError(path: folder, errno: errno) }
    }
    let temporary = path + ".tmp"
    let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw CLIFileError(path: temporary, errno: errno) }
    let bytes = Array(text.utf8)
    let written = write(fd, bytes, bytes.count)
    close(fd)
    guard written == bytes.count else { throw CLIFileError(path: temporary, errno: errno) }
    guard rename(temporary, path) == 0 else { throw CLIFileError(path: path, errno: errno) }
}

struct CLIFileError: Error, CustomStringConvertible {
    var path: String
    var errno: Int32
    var description: String { "\(path): \(String(cString: strerror(errno)))" }
}
