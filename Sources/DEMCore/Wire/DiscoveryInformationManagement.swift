import NIOCore

/// The Discovery Information Management command (admin opcode 21h, TP8010; NVMe Base 2.1
/// §5.3.3): a host or a discovery controller registers, deregisters or updates what it is with
/// a discovery controller. CDW10 bits 3:0 hold the task (TAS); the data is a 1024-byte header
/// and NUMENT Discovery Information Entries.
public struct DiscoveryInformationCommand: Sendable, Hashable {
    public static let opcode: UInt8 = 0x21

    /// TAS.
    public enum Task: UInt8, Sendable, Hashable, CaseIterable {
        case register = 0
        case deregister = 1
        case update = 2
    }

    /// TAS as sent (values 3–15 are reserved).
    public var taskValue: UInt8

    public init(_ command: SubmissionQueueEntry) {
        taskValue = UInt8(truncatingIfNeeded: command.cdw10 & 0xF)
    }

    public var task: Task? { Task(rawValue: taskValue) }

    public static func submissionQueueEntry(
        task: Task,
        commandIdentifier: UInt16,
        length: UInt32
    ) -> SubmissionQueueEntry {
        var entry = SubmissionQueueEntry(opcode: opcode, commandIdentifier: commandIdentifier)
        entry.cdw10 = UInt32(task.rawValue)
        entry.dataPointer = .inCapsule(length: length)
        return entry
    }
}

/// ETYPE: what registers.
public struct DiscoveryEntityType: RawRepresentable, Sendable, Hashable, Codable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let host = Self(rawValue: 1)
    /// A direct discovery controller (a target's own).
    public static let directDiscoveryController = Self(rawValue: 2)
    /// A centralized discovery controller.
    public static let centralDiscoveryController = Self(rawValue: 3)

    public var name: String {
        switch self {
        case .host: "host"
        case .directDiscoveryController: "DDC"
        case .centralDiscoveryController: "CDC"
        default: "type \(rawValue)"
        }
    }
}

/// One Discovery Information Entry: where the entity is reached, and in the extended format its
/// host ID and symbolic name.
public struct DiscoveryInformationEntry: Sendable, Hashable {
    /// The 1024 bytes shaped as a discovery log page entry (its SUBNQN is the entity's NQN).
    public var entry: DiscoveryLogEntry
    /// EXATTYPE 1: the host identifier (16 bytes).
    public var hostIdentifier: [UInt8]?
    /// EXATTYPE 2: the symbolic name.
    public var symbolicName: String?

    public init(entry: DiscoveryLogEntry, hostIdentifier: [UInt8]? = nil, symbolicName: String? = nil) {
        self.entry = entry
        self.hostIdentifier = hostIdentifier
        self.symbolicName = symbolicName
    }
}

/// The data of a DIM command.
public struct DiscoveryInformation: Sendable, Hashable {
    /// ENTFMT.
    public enum Format: UInt16, Sendable, Hashable {
        /// Each entry is 1024 bytes, shaped as a discovery log page entry.
        case basic = 1
        /// Each entry is 1024 bytes, then TEL, NUMEXAT and extended attributes.
        case extended = 2
    }

    public static let headerSize = 1024
    /// The largest data taken: the header and 64 extended entries of 2 KiB.
    public static let maximumSize = headerSize + 64 * 2048

    public var format: Format
    public var entityType: DiscoveryEntityType
    /// PORTLCL: the entries are the port the command came on.
    public var portLocal: Bool
    /// EKTYPE.
    public var entryKeyType: UInt16
    /// EID: the entity's NQN.
    public var entityIdentifier: String
    /// ENAME: the entity's name (a host name).
    public var entityName: String
    /// EVER: the entity's version (its operating system).
    public var entityVersion: String
    public var entries: [DiscoveryInformationEntry]

    public init(
        format: Format,
        entityType: DiscoveryEntityType,
        portLocal: Bool = false,
        entryKeyType: UInt16 = 0,
        entityIdentifier: String,
        entityName: String = "",
        entityVersion: String = "",
        entries: [DiscoveryInformationEntry] = []
    ) {
        self.format = format
        self.entityType = entityType
        self.portLocal = portLocal
        self.entryKeyType = entryKeyType
        self.entityIdentifier = entityIdentifier
        self.entityName = entityName
        self.entityVersion = entityVersion
        self.entries = entries
    }

    /// Why a DIM's data is refused: it answers Invalid Discovery Information (2Fh).
    public struct Invalid: Error, Sendable, Hashable, CustomStringConvertible {
        public var reason: String
        public init(_ reason: String) { self.reason = reason }
        public var description: String { reason }
    }

    /// Reads the data (the readable bytes of `buffer`, which are not consumed).
    public init(parsing buffer: ByteBuffer) throws(Invalid) {
        let base = buffer.readerIndex
        let length = buffer.readableBytes
        guard length >= Self.headerSize else {
            throw Invalid("\(length) bytes of data, less than the 1024-byte header")
        }
        let total = Int(buffer.le(base, as: UInt32.self))
        guard total >= Self.headerSize, total <= length else {
            throw Invalid("TDL \(total) does not fit the \(length) bytes sent")
        }
        let count = buffer.le(base + 8, as: UInt64.self)
        guard let format = Format(rawValue: buffer.le(base + 16, as: UInt16.self)) else {
            throw Invalid("ENTFMT \(buffer.le(base + 16, as: UInt16.self)) is neither basic (1) nor extended (2)")
        }
        let type = DiscoveryEntityType(rawValue: buffer.le(base + 18, as: UInt16.self))
        guard [.host, .directDiscoveryController, .centralDiscoveryController].contains(type) else {
            throw Invalid("ETYPE \(type.rawValue) is not a host (1), a DDC (2) or a CDC (3)")
        }
        self.format = format
        entityType = type
        portLocal = buffer.le(base + 20, as: UInt8.self) & 1 == 1
        entryKeyType = buffer.le(base + 22, as: UInt16.self)
        entityIdentifier = buffer.getFixedString(at: base + 24, length: 256) ?? ""
        entityName = buffer.getFixedString(at: base + 280, length: 256) ?? ""
        entityVersion = buffer.getFixedString(at: base + 536, length: 64) ?? ""
        guard !entityIdentifier.isEmpty else { throw Invalid("EID is empty: the entity names no NQN") }
        // Each entry takes at least 1024 bytes: NUMENT may not promise more than TDL holds.
        guard count <= UInt64((total - Self.headerSize) / DiscoveryLogEntry.size) else {
            throw Invalid("NUMENT \(count) entries do not fit TDL \(total)")
        }
        var entries: [DiscoveryInformationEntry] = []
        var offset = base + Self.headerSize
        let end = base + total
        for index in 0..<Int(count) {
            guard offset + DiscoveryLogEntry.size <= end else { throw Invalid("entry \(index) ends past TDL \(total)") }
            var slice = buffer.getSlice(at: offset, length: DiscoveryLogEntry.size)!
            var entry = DiscoveryInformationEntry(entry: slice.readDiscoveryLogEntry()!)
            switch format {
            case .basic:
                offset += DiscoveryLogEntry.size
            case .extended:
                guard offset + 1032 <= end else { throw Invalid("entry \(index) has no TEL within TDL \(total)") }
                let entryLength = Int(buffer.le(offset + 1024, as: UInt32.self))
                let attributes = Int(buffer.le(offset + 1028, as: UInt16.self))
                guard entryLength >= 1032, entryLength % 4 == 0, offset + entryLength <= end else {
                    throw Invalid(
                        "entry \(index): TEL \(entryLength) is not a multiple of 4 of at least 1032 within TDL \(total)"
                    )
                }
                var cursor = offset + 1032
                for attribute in 0..<attributes {
                    guard cursor + 4 <= offset + entryLength else {
                        throw Invalid("entry \(index): attribute \(attribute) starts past TEL \(entryLength)")
                    }
                    let type = buffer.le(cursor, as: UInt16.self)
                    let valueLength = Int(buffer.le(cursor + 2, as: UInt16.self))
                    guard cursor + 4 + valueLength <= offset + entryLength else {
                        throw Invalid(
                            "entry \(index): attribute \(attribute) (EXATLEN \(valueLength)) ends past TEL \(entryLength)"
                        )
                    }
                    let value = buffer.getBytes(at: cursor + 4, length: valueLength) ?? []
                    switch type {
                    case 1:
                        guard valueLength == 16 else {
                            throw Invalid("entry \(index): HOSTID is \(valueLength) bytes, not 16")
                        }
                        entry.hostIdentifier = value
                    case 2:
                        let text = value.prefix { $0 != 0 }
                        entry.symbolicName = String(decoding: text, as: UTF8.self)
                    default:
                        break  // other attributes are skipped
                    }
                    // EXATLEN counts the padding libnvme adds; a sender that does not count it
                    // still pads EXATVAL to 4 bytes.
                    cursor += 4 + (valueLength + 3) / 4 * 4
                }
                offset += entryLength
            }
            entries.append(entry)
        }
        self.entries = entries
    }

    /// The data as a host sends it.
    public func encoded(allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var body = allocator.buffer(capacity: Self.headerSize + entries.count * 1100)
        body.writeZeros(Self.headerSize)
        for item in entries {
            let start = body.writerIndex
            _ = body.writeDiscoveryLogEntry(item.entry)
            guard format == .extended else { continue }
            body.writeZeros(8)  // TEL, NUMEXAT, reserved
            var attributes: UInt16 = 0
            // EXATLEN is the value's length rounded up to 4 bytes, NUL-padded (as libnvme sends it).
            for (type, value) in [
                (UInt16(1), item.hostIdentifier), (UInt16(2), item.symbolicName.map { Array($0.utf8) }),
            ] {
                guard let value else { continue }
                let padded = (value.count + 3) / 4 * 4
                body.writeInteger(type, endianness: .little)
                body.writeInteger(UInt16(padded), endianness: .little)
                body.writeBytes(value)
                body.writeZeros(padded - value.count)
                attributes += 1
            }
            body.setLE(UInt32(body.writerIndex - start), at: start + 1024)
            body.setLE(attributes, at: start + 1028)
        }
        body.setLE(UInt32(body.writerIndex), at: 0)
        body.setLE(UInt64(entries.count), at: 8)
        body.setLE(format.rawValue, at: 16)
        body.setLE(entityType.rawValue, at: 18)
        body.setLE(UInt8(portLocal ? 1 : 0), at: 20)
        body.setLE(entryKeyType, at: 22)
        body.setFixedString(entityIdentifier, at: 24, length: 256)
        body.setFixedString(entityName, at: 280, length: 256)
        body.setFixedString(entityVersion, at: 536, length: 64)
        return body
    }
}

/// A Discovery Information Management command that passed the controller's checks: what the
/// service carries out.
public struct DiscoveryInformationRequest: Sendable, Hashable {
    public var task: DiscoveryInformationCommand.Task
    public var information: DiscoveryInformation

    public init(task: DiscoveryInformationCommand.Task, information: DiscoveryInformation) {
        self.task = task
        self.information = information
    }
}
