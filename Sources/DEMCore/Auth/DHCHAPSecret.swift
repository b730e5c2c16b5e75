import Foundation

/// A DH-HMAC-CHAP secret in the representation NVMe defines and nvme-cli, the kernel and SPDK
/// read: `DHHC-1:hh:base64(key ‖ CRC-32(key)):`, where `hh` names the hash the key is
/// transformed with before use (00: used as it is; 01/02/03: HMAC-SHA-256/384/512 of
/// NQN ‖ "NVMe-over-Fabrics"). Keys are 32, 48 or 64 bytes.
///
/// Its `description` never shows the key; ``text`` does.
public struct DHCHAPSecret: Sendable, Hashable, CustomStringConvertible {
    /// The key bytes (before the transformation).
    public let key: [UInt8]
    /// The hash the key is transformed with, or nil for none (`00`).
    public let transformation: DHCHAP.Hash?

    /// Why a secret could not be read.
    public struct FormatError: Error, Sendable, Hashable, CustomStringConvertible {
        public var description: String
    }

    public init(key: [UInt8], transformation: DHCHAP.Hash? = nil) throws(FormatError) {
        guard [32, 48, 64].contains(key.count) else {
            throw FormatError(description: "a DH-HMAC-CHAP key is 32, 48 or 64 bytes, not \(key.count)")
        }
        if let transformation, transformation.length > key.count {
            throw FormatError(
                description: "a key transformed with \(transformation) must be at least \(transformation.length) bytes"
            )
        }
        self.key = key
        self.transformation = transformation
    }

    /// Reads `DHHC-1:hh:base64:`.
    public init(parsing text: String) throws(FormatError) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "DHHC-1", parts[3].isEmpty, parts[1].count == 2,
            let identifier = UInt8(parts[1])
        else {
            throw FormatError(description: "a DH-HMAC-CHAP secret is written DHHC-1:hh:base64:")
        }
        guard identifier <= 3 else {
            throw FormatError(description: "DH-HMAC-CHAP secret transformation \(parts[1]) is not 00, 01, 02 or 03")
        }
        guard let decoded = Data(base64Encoded: String(parts[2])), decoded.count > 4 else {
            throw FormatError(description: "the key in the DH-HMAC-CHAP secret is not base64")
        }
        let bytes = Array(decoded)
        let key = Array(bytes.dropLast(4))
        let stored = bytes.suffix(4).enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << ($1.offset * 8) }
        guard Self.crc32(key) == stored else {
            throw FormatError(description: "the DH-HMAC-CHAP secret's CRC does not match its key (mistyped?)")
        }
        try self.init(key: key, transformation: DHCHAP.Hash(rawValue: identifier))
    }

    /// A fresh random key of `length` bytes (32, 48 or 64).
    public static func generate(length: Int = 32, transformation: DHCHAP.Hash? = nil) throws(FormatError) -> Self {
        var generator = SystemRandomNumberGenerator()
        let key = (0..<length).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        return try Self(key: key, transformation: transformation)
    }

    /// The secret in its `DHHC-1:hh:base64:` representation.
    public var text: String {
        let crc = Self.crc32(key)
        let bytes = key + (0..<4).map { UInt8(truncatingIfNeeded: crc >> ($0 * 8)) }
        let identifier = transformation?.rawValue ?? 0
        return "DHHC-1:0\(identifier):\(Data(bytes).base64EncodedString()):"
    }

    public var description: String { "DHHC-1:0\(transformation?.rawValue ?? 0):<\(key.count)-byte key>" }

    /// K': the key as used for `nqn` (the host NQN for a host key, the subsystem NQN for a
    /// controller key).
    public func transformedKey(nqn: String) -> [UInt8] {
        guard let transformation else { return key }
        return transformation.hmac(key: key, Array(nqn.utf8) + Array("NVMe-over-Fabrics".utf8))
    }

    /// CRC-32 (IEEE 802.3, as zlib computes it).
    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return crc ^ 0xFFFF_FFFF
    }
}
