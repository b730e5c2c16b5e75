import Foundation

/// An NVMe Qualified Name (NVMe Base 2.1 §4.7): `nqn.yyyy-mm.reverse.domain[:string]`, or the
/// UUID form `nqn.2014-08.org.nvmexpress:uuid:<UUID>`, at most 223 bytes of UTF-8.
public struct NQN: Sendable, Hashable, CustomStringConvertible, Codable {
    /// The most UTF-8 bytes an NQN may have.
    public static let maximumLength = 223

    /// Why a string is not an NQN.
    public struct ValidationError: Error, Sendable, Hashable, CustomStringConvertible {
        /// The string that was checked.
        public var value: String
        /// What is wrong with it.
        public var reason: String
        public var description: String { "invalid NQN \"\(value)\": \(reason)" }
    }

    /// The NQN's text.
    public let value: String

    /// Validates `value`.
    /// - Throws: ``ValidationError`` naming the rule that failed.
    public init(_ value: String) throws(ValidationError) {
        func invalid(_ reason: String) -> ValidationError { ValidationError(value: value, reason: reason) }
        let utf8 = Array(value.utf8)
        guard !utf8.isEmpty else { throw invalid("it is empty") }
        guard utf8.count <= Self.maximumLength else {
            throw invalid("it is \(utf8.count) bytes long, the limit is \(Self.maximumLength)")
        }
        guard !utf8.contains(0) else { throw invalid("it contains a NUL byte") }
        guard value.hasPrefix("nqn.") else { throw invalid("it does not start with \"nqn.\"") }
        let uuidPrefix = "nqn.2014-08.org.nvmexpress:uuid:"
        if value.hasPrefix(uuidPrefix) {
            let uuid = value.dropFirst(uuidPrefix.count)
            guard UUID(uuidString: String(uuid)) != nil, uuid.count == 36 else {
                throw invalid("the part after \"\(uuidPrefix)\" is not a UUID")
            }
            self.value = value
            return
        }
        // nqn.yyyy-mm.<reverse domain>[:<anything>]
        let afterPrefix = value.dropFirst(4)
        let date = afterPrefix.prefix(7)
        let dateBytes = Array(date.utf8)
        guard dateBytes.count == 7, dateBytes[4] == UInt8(ascii: "-"),
            dateBytes[0..<4].allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
            dateBytes[5..<7].allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
            let month = Int(String(date.suffix(2))), (1...12).contains(month)
        else { throw invalid("\"nqn.\" is not followed by a date yyyy-mm") }
        let rest = afterPrefix.dropFirst(7)
        guard rest.first == "." else { throw invalid("the date is not followed by \".\" and a reverse domain name") }
        let domain = rest.dropFirst().prefix { $0 != ":" }
        let labels = domain.split(separator: ".", omittingEmptySubsequences: false)
        guard labels.count >= 2, labels.allSatisfy({ !$0.isEmpty }) else {
            throw invalid("\"\(domain)\" is not a reverse domain name")
        }
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
        guard labels.allSatisfy({ $0.allSatisfy { allowed.contains($0) } }) else {
            throw invalid("the domain name \"\(domain)\" has a character other than letters, digits and \"-\"")
        }
        self.value = value
    }

    /// Whether `value` is a valid NQN.
    public static func isValid(_ value: String) -> Bool { (try? NQN(value)) != nil }

    /// A fresh UUID-form NQN.
    public static func uuid(_ uuid: UUID = UUID()) -> NQN {
        // A UUID-form NQN is always valid.
        try! NQN("nqn.2014-08.org.nvmexpress:uuid:" + uuid.uuidString.lowercased())
    }

    /// The well-known discovery NQN.
    public static let wellKnownDiscovery = try! NQN(DEMCore.wellKnownDiscoveryNQN)

    public var description: String { value }

    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        try self.init(container.decode(String.self))
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(value)
    }
}
