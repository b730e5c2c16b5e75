import DEMCore

/// SPDK's JSON-RPC framing: each message is one bare JSON value on a stream socket, with no
/// length prefix and no delimiter. The stream is cut into values by following strings, escapes
/// and nesting; each complete value is then parsed whole.
public struct SPDKJSONStream: Sendable {
    /// The largest message taken (SPDK's `rpc_get_methods` or `bdev_get_bdevs` answers are tens
    /// of KiB; a runaway peer must not take the memory).
    public static let maximumMessage = 64 << 20

    private var buffer: [UInt8] = []
    /// Where scanning resumes in `buffer`.
    private var scanned = 0
    private var start: Int?
    private var depth = 0
    private var inString = false
    private var escaped = false

    public init() {}

    /// Bytes received and not yet returned as a value.
    public var pending: Int { buffer.count }

    public mutating func append(_ bytes: some Sequence<UInt8>) {
        buffer.append(contentsOf: bytes)
    }

    /// The next complete value, or nil until more bytes arrive.
    /// - Throws: ``SPDKRPCError/garbage(_:)`` when the stream holds something that is not a JSON
    ///   object or array, a value that does not parse, or a value larger than the bound.
    public mutating func next() throws(SPDKRPCError) -> JSONValue? {
        var index = scanned
        while index < buffer.count {
            let byte = buffer[index]
            if start == nil {
                switch byte {
                case 0x20, 0x09, 0x0A, 0x0D:
                    index += 1
                    continue
                case UInt8(ascii: "{"), UInt8(ascii: "["):
                    start = index
                default:
                    throw .garbage(
                        "the target sent \(Self.show(buffer[index...])) where a JSON object was expected"
                    )
                }
            }
            if inString {
                if escaped {
                    escaped = false
                } else if byte == UInt8(ascii: "\\") {
                    escaped = true
                } else if byte == UInt8(ascii: "\"") {
                    inString = false
                }
            } else {
                switch byte {
                case UInt8(ascii: "\""): inString = true
                case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    depth -= 1
                    if depth == 0, let first = start {
                        let value: JSONValue
                        do {
                            value = try JSONValue(parsing: buffer[first...index])
                        } catch {
                            throw .garbage("the target sent a message that is not JSON: \(error)")
                        }
                        buffer.removeSubrange(0...index)
                        scanned = 0
                        start = nil
                        return value
                    }
                default: break
                }
            }
            index += 1
        }
        scanned = index
        if buffer.count > Self.maximumMessage {
            throw .garbage("the target sent a message larger than \(Self.maximumMessage) bytes")
        }
        return nil
    }

    private static func show(_ bytes: ArraySlice<UInt8>) -> String {
        let text = String(decoding: bytes.prefix(40), as: UTF8.self)
        return "\"\(text.unicodeScalars.map { $0.isASCII && $0.value >= 0x20 ? String($0) : "?" }.joined())\""
    }
}
