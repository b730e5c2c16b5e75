import DEMCore
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One request that asked dem to change something (or was refused): who, from where, what, and
/// the result. Bodies are never recorded: they carry secrets (keys, tokens).
public struct AuditRecord: Sendable, Hashable, Codable {
    public var time: Date
    /// Who asked: a token's name and ID (`admin (0a1b2c3d)`), the fabric credential, a client
    /// certificate, or `-` when no credential was accepted.
    public var actor: String
    /// The client's address.
    public var source: String
    public var method: String
    public var path: String
    /// The HTTP status dem answered.
    public var status: Int
    /// What the answer named, on success (`Location`), or why it was refused.
    public var detail: String?

    public init(
        time: Date = Date(),
        actor: String,
        source: String,
        method: String,
        path: String,
        status: Int,
        detail: String? = nil
    ) {
        self.time = time
        self.actor = actor
        self.source = source
        self.method = method
        self.path = path
        self.status = status
        self.detail = detail
    }

    enum CodingKeys: String, CodingKey {
        case time = "Time"
        case actor = "Actor"
        case source = "Source"
        case method = "Method"
        case path = "Path"
        case status = "Status"
        case detail = "Detail"
    }
}

/// dem's audit trail: `audit.log` in the data directory (mode 0600), one JSON object a line,
/// appended with `O_APPEND` as each request is answered, and read back by `GET /dem/audit`.
public final class AuditLog: Sendable {
    public static let fileName = "audit.log"

    public let path: String
    private let descriptor: Int32
    private let lock = Mutex(())

    /// Opens (creating) the log at `path`.
    public init(path: String) throws(FileWriteError) {
        self.path = path
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileWriteError(path: path, message: String(cString: strerror(errno))) }
        descriptor = fd
    }

    deinit { close(descriptor) }

    static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    /// Appends a record (one `write`, so lines of concurrent requests never interleave).
    /// - Returns: whether it was written; a failure is the caller's to report.
    @discardableResult
    public func append(_ record: AuditRecord) -> Bool {
        guard var line = try? Self.encoder().encode(record) else { return false }
        line.append(UInt8(ascii: "\n"))
        return lock.withLock { _ in
            line.withUnsafeBytes { bytes in
                write(descriptor, bytes.baseAddress, bytes.count) == bytes.count
            }
        }
    }

    /// The last `limit` records, oldest first (lines that do not parse are skipped).
    public func tail(limit: Int) throws -> [AuditRecord] {
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        var records: [AuditRecord] = []
        for line in data.split(separator: UInt8(ascii: "\n")).suffix(limit) {
            if let record = try? decoder.decode(AuditRecord.self, from: Data(line)) { records.append(record) }
        }
        return records
    }
}
