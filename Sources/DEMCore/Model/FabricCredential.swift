import Crypto
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The secret dem and every dem-em share: dem creates it in its data directory at the first
/// start (`fabric.key`, mode 0600), the administrator copies it once to each target, and both
/// sides send it as a bearer token (dem to dem-em's API, dem-em to dem's join route).
public enum FabricCredential {
    /// The file name in dem's data directory.
    public static let fileName = "fabric.key"

    /// Why a credential file cannot be used.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    /// Reads the credential at `path`.
    public static func load(path: String) throws(Failure) -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw Failure(description: "cannot read the fabric credential \(path): \(String(cString: strerror(errno)))")
        }
        let secret = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard secret.utf8.count >= 16, secret.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else {
            throw Failure(description: "the fabric credential \(path) must hold one word of at least 16 characters")
        }
        return secret
    }

    /// Reads the credential at `path`, creating a new random one first when there is none.
    public static func ensure(path: String) throws -> (secret: String, created: Bool) {
        if FileManager.default.fileExists(atPath: path) {
            return (try load(path: path), false)
        }
        var generator = SystemRandomNumberGenerator()
        let secret =
            "demfabric_"
            + (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
        try SecretFile.write(secret + "\n", to: path)
        return (secret, true)
    }

    /// Target `alias`'s own credential, derived from the fabric credential `fabric`
    /// (HMAC-SHA-256 under it of a label and the alias): dem computes it for any target, a target
    /// that holds it cannot compute the fabric credential or another target's.
    public static func derived(from fabric: String, for alias: String) -> String {
        let mac = HMAC<SHA256>.authenticationCode(
            for: Array("DEM target credential\u{0}\(alias)".utf8),
            using: SymmetricKey(data: Array(fabric.utf8))
        )
        return "demtarget_" + mac.map { String(format: "%02x", $0) }.joined()
    }

    /// Whether `offered` is `secret`, compared in constant time (digests compare in constant
    /// time, and comparing digests hides the secret's length).
    public static func matches(_ offered: some StringProtocol, _ secret: String) -> Bool {
        SHA256.hash(data: Array(offered.utf8)) == SHA256.hash(data: Array(secret.utf8))
    }
}

/// Writes files only their owner may read (mode 0600 in a 0700 folder), whole or not at all.
public enum SecretFile {
    public static func write(_ contents: String, to path: String) throws(FileWriteError) {
        try AtomicFile.write(Data(contents.utf8), to: path, mode: 0o600, folderMode: 0o700)
    }
}
