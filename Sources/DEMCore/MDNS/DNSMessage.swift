import NIOCore

/// A DNS message as multicast DNS uses it (RFC 1035 §4, RFC 6762): the header, questions and
/// resource records of the types DNS-SD needs (PTR, SRV, TXT, A, AAAA; others kept as bytes).
/// Names are read with compression pointers (bounded, so a loop is an error) and written whole.
public struct DNSMessage: Sendable, Hashable {
    public struct Question: Sendable, Hashable {
        public var name: DNSName
        public var type: UInt16
        /// The QU bit (RFC 6762 §5.4): the asker wants a unicast answer.
        public var unicastResponse: Bool

        public init(name: DNSName, type: UInt16, unicastResponse: Bool = false) {
            self.name = name
            self.type = type
            self.unicastResponse = unicastResponse
        }
    }

    public enum RecordData: Sendable, Hashable {
        case pointer(DNSName)
        case service(priority: UInt16, weight: UInt16, port: UInt16, target: DNSName)
        case text([String])
        case ipv4([UInt8])
        case ipv6([UInt8])
        case other(type: UInt16, [UInt8])

        public var type: UInt16 {
            switch self {
            case .pointer: DNSType.pointer
            case .service: DNSType.service
            case .text: DNSType.text
            case .ipv4: DNSType.ipv4
            case .ipv6: DNSType.ipv6
            case .other(let type, _): type
            }
        }
    }

    public struct Record: Sendable, Hashable {
        public var name: DNSName
        public var data: RecordData
        /// The cache-flush bit (RFC 6762 §10.2): this record replaces what caches hold for it.
        public var cacheFlush: Bool
        public var ttl: UInt32

        public init(name: DNSName, data: RecordData, cacheFlush: Bool = false, ttl: UInt32) {
            self.name = name
            self.data = data
            self.cacheFlush = cacheFlush
            self.ttl = ttl
        }
    }

    public var identifier: UInt16 = 0
    /// QR: a response.
    public var isResponse: Bool
    /// AA, always set in an mDNS response.
    public var authoritative: Bool
    public var questions: [Question] = []
    public var answers: [Record] = []
    public var authorities: [Record] = []
    public var additionals: [Record] = []

    public init(isResponse: Bool, authoritative: Bool = false) {
        self.isResponse = isResponse
        self.authoritative = authoritative
    }

    /// Why a message could not be read.
    public struct Malformed: Error, Sendable, Hashable, CustomStringConvertible {
        public var reason: String
        public init(_ reason: String) { self.reason = reason }
        public var description: String { reason }
    }

    /// Reads a message (the readable bytes of `buffer`).
    public init(parsing buffer: ByteBuffer) throws(Malformed) {
        var reader = DNSReader(bytes: Array(buffer.readableBytesView))
        identifier = try reader.u16()
        let flags = try reader.u16()
        isResponse = flags & 0x8000 != 0
        authoritative = flags & 0x0400 != 0
        let counts = [try reader.u16(), try reader.u16(), try reader.u16(), try reader.u16()]
        for _ in 0..<counts[0] {
            let name = try reader.name()
            let type = try reader.u16()
            let klass = try reader.u16()
            questions.append(Question(name: name, type: type, unicastResponse: klass & 0x8000 != 0))
        }
        for _ in 0..<counts[1] { answers.append(try reader.record()) }
        for _ in 0..<counts[2] { authorities.append(try reader.record()) }
        for _ in 0..<counts[3] { additionals.append(try reader.record()) }
    }

    /// The message's bytes.
    public func encoded() -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(identifier)
        var flags: UInt16 = 0
        if isResponse { flags |= 0x8000 }
        if authoritative { flags |= 0x0400 }
        buffer.writeInteger(flags)
        for count in [questions.count, answers.count, authorities.count, additionals.count] {
            buffer.writeInteger(UInt16(count))
        }
        for question in questions {
            question.name.write(to: &buffer)
            buffer.writeInteger(question.type)
            buffer.writeInteger(UInt16(1) | (question.unicastResponse ? 0x8000 : 0))
        }
        for record in answers + authorities + additionals {
            record.name.write(to: &buffer)
            buffer.writeInteger(record.data.type)
            buffer.writeInteger(UInt16(1) | (record.cacheFlush ? 0x8000 : 0))
            buffer.writeInteger(record.ttl)
            let lengthAt = buffer.writerIndex
            buffer.writeInteger(UInt16(0))
            switch record.data {
            case .pointer(let name):
                name.write(to: &buffer)
            case .service(let priority, let weight, let port, let target):
                buffer.writeInteger(priority)
                buffer.writeInteger(weight)
                buffer.writeInteger(port)
                target.write(to: &buffer)
            case .text(let strings):
                // An empty TXT record is one empty string (RFC 6763 §6.1).
                for string in strings.isEmpty ? [""] : strings {
                    let bytes = Array(string.utf8.prefix(255))
                    buffer.writeInteger(UInt8(bytes.count))
                    buffer.writeBytes(bytes)
                }
            case .ipv4(let bytes), .ipv6(let bytes), .other(_, let bytes):
                buffer.writeBytes(bytes)
            }
            buffer.setInteger(UInt16(buffer.writerIndex - lengthAt - 2), at: lengthAt)
        }
        return buffer
    }
}

/// Record types.
public enum DNSType {
    public static let ipv4: UInt16 = 1
    public static let pointer: UInt16 = 12
    public static let text: UInt16 = 16
    public static let ipv6: UInt16 = 28
    public static let service: UInt16 = 33
    public static let any: UInt16 = 255
}

/// A domain name as its labels, compared without regard to ASCII case (RFC 1035 §2.3.3).
public struct DNSName: Sendable, Hashable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let labels: [String]

    public init(labels: [String]) { self.labels = labels }

    /// `a.b.local` (a trailing dot is allowed; labels may not contain dots).
    public init(_ text: String) {
        labels = text.split(separator: ".", omittingEmptySubsequences: true).map(String.init)
    }

    public init(stringLiteral value: String) { self.init(value) }

    public var description: String { labels.joined(separator: ".") }

    /// `label.` prepended.
    public func prepending(_ label: String) -> DNSName { DNSName(labels: [label] + labels) }

    public static func == (lhs: DNSName, rhs: DNSName) -> Bool {
        lhs.labels.count == rhs.labels.count
            && zip(lhs.labels, rhs.labels).allSatisfy { $0.lowercased() == $1.lowercased() }
    }

    public func hash(into hasher: inout Hasher) {
        for label in labels { hasher.combine(label.lowercased()) }
    }

    func write(to buffer: inout ByteBuffer) {
        for label in labels {
            let bytes = Array(label.utf8.prefix(63))
            buffer.writeInteger(UInt8(bytes.count))
            buffer.writeBytes(bytes)
        }
        buffer.writeInteger(UInt8(0))
    }
}

/// Reads a message's fields in order; names may point back into the message.
private struct DNSReader {
    let bytes: [UInt8]
    var offset = 0

    mutating func u8() throws(DNSMessage.Malformed) -> UInt8 {
        guard offset < bytes.count else { throw DNSMessage.Malformed("the message ends at byte \(offset)") }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func u16() throws(DNSMessage.Malformed) -> UInt16 {
        UInt16(try u8()) << 8 | UInt16(try u8())
    }

    mutating func u32() throws(DNSMessage.Malformed) -> UInt32 {
        UInt32(try u16()) << 16 | UInt32(try u16())
    }

    mutating func take(_ count: Int) throws(DNSMessage.Malformed) -> [UInt8] {
        guard count >= 0, offset + count <= bytes.count else {
            throw DNSMessage.Malformed("\(count) bytes at \(offset) run past the message's \(bytes.count)")
        }
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }

    /// A name at the current offset; compression pointers are followed, at most 64 of them.
    mutating func name() throws(DNSMessage.Malformed) -> DNSName {
        var labels: [String] = []
        var position = offset
        var jumped = false
        var jumps = 0
        var total = 0
        while true {
            guard position < bytes.count else { throw DNSMessage.Malformed("a name runs past the message") }
            let length = Int(bytes[position])
            if length & 0xC0 == 0xC0 {
                guard position + 1 < bytes.count else { throw DNSMessage.Malformed("a name pointer is cut off") }
                let target = (length & 0x3F) << 8 | Int(bytes[position + 1])
                jumps += 1
                guard jumps <= 64, target < bytes.count else {
                    throw DNSMessage.Malformed("a name's compression pointers loop or point outside the message")
                }
                if !jumped { offset = position + 2 }
                jumped = true
                position = target
                continue
            }
            guard length & 0xC0 == 0 else { throw DNSMessage.Malformed("label type \(length >> 6) is not supported") }
            if length == 0 {
                if !jumped { offset = position + 1 }
                return DNSName(labels: labels)
            }
            guard position + 1 + length <= bytes.count else {
                throw DNSMessage.Malformed("a label runs past the message")
            }
            total += length + 1
            guard total <= 255 else { throw DNSMessage.Malformed("a name is longer than 255 bytes") }
            labels.append(String(decoding: bytes[(position + 1)..<(position + 1 + length)], as: UTF8.self))
            position += 1 + length
        }
    }

    mutating func record() throws(DNSMessage.Malformed) -> DNSMessage.Record {
        let name = try name()
        let type = try u16()
        let klass = try u16()
        let ttl = try u32()
        let length = Int(try u16())
        let start = offset
        guard start + length <= bytes.count else {
            throw DNSMessage.Malformed("RDLENGTH \(length) at \(start) runs past the message's \(bytes.count) bytes")
        }
        let data: DNSMessage.RecordData
        switch type {
        case DNSType.pointer:
            data = .pointer(try self.name())
        case DNSType.service:
            data = .service(priority: try u16(), weight: try u16(), port: try u16(), target: try self.name())
        case DNSType.text:
            var strings: [String] = []
            while offset < start + length {
                let count = Int(try u8())
                strings.append(String(decoding: try take(count), as: UTF8.self))
            }
            data = .text(strings)
        case DNSType.ipv4 where length == 4:
            data = .ipv4(try take(4))
        case DNSType.ipv6 where length == 16:
            data = .ipv6(try take(16))
        default:
            data = .other(type: type, try take(length))
        }
        guard offset == start + length else {
            throw DNSMessage.Malformed("record \(name) of type \(type): its data is not RDLENGTH \(length) bytes")
        }
        return DNSMessage.Record(name: name, data: data, cacheFlush: klass & 0x8000 != 0, ttl: ttl)
    }
}
