import Crypto
import NIOCore

/// DEM's in-band management channel: dem-em's REST API carried in NVMe-MI Send (1Dh) and
/// NVMe-MI Receive (1Eh) admin commands on an administrative controller that dem-em serves
/// under its management NQN. `docs/inband.md` is the byte-by-byte specification.
public enum InBandManagement {
    /// The DEM operations, in CDW11 bits 7:0 (the vendor-specific NVMe-MI opcode range).
    public enum Opcode {
        /// NVMe-MI Send: one segment of a request message.
        public static let requestSegment: UInt8 = 0xC0
        /// NVMe-MI Receive: one segment of the response to a request.
        public static let responseSegment: UInt8 = 0xC1
        // C2h and C3h were a challenge and its answer before the channel used DH-HMAC-CHAP;
        // they are refused with Invalid Field.
    }

    /// The largest request or response message, in bytes.
    public static let maximumMessageLength = 16 << 20
    /// The NQN dem-em serves its in-band channel under by default.
    public static func managementNQN(alias: String) -> String {
        "nqn.2014-08.org.nvmexpress.dem:em:\(alias)"
    }

    /// The two DH-HMAC-CHAP secrets of the channel, derived from the fabric credential both
    /// ends hold: dem proves itself with the host key, dem-em with the controller key
    /// (HMAC-SHA-256 of a label under the credential, 32 bytes each, used as they are).
    public static func keys(credential: String) -> (host: DHCHAPSecret, controller: DHCHAPSecret) {
        func derive(_ label: String) -> DHCHAPSecret {
            let key = Array(
                HMAC<SHA256>.authenticationCode(
                    for: Array(label.utf8),
                    using: SymmetricKey(data: Array(credential.utf8))
                )
            )
            return try! DHCHAPSecret(key: key)  // 32 bytes: always a valid key
        }
        return (derive("DEM-INBAND-2 host key"), derive("DEM-INBAND-2 controller key"))
    }

    /// What dem-em's management controller demands of every host: two-way DH-HMAC-CHAP with the
    /// keys of ``keys(credential:)``, SHA-256 and ffdhe2048.
    public static func policy(credential: String) -> DHCHAPPolicy {
        let keys = keys(credential: credential)
        return DHCHAPPolicy(hostKeys: [keys.host], controllerKey: keys.controller, hash: .sha256, group: .ffdhe2048)
    }
}

/// The DEM fields of an NVMe-MI Send or Receive command.
public struct InBandCommand: Sendable, Hashable {
    /// 1Dh (Send) or 1Eh (Receive).
    public var opcode: UInt8
    /// CDW11 bits 7:0: the DEM operation.
    public var operation: UInt8
    /// CDW12 bits 15:0: the request's tag.
    public var tag: UInt16
    /// CDW13: the segment's byte offset in its message.
    public var offset: UInt32
    /// CDW14: the whole message's length (request segments).
    public var messageLength: UInt32

    public init(opcode: UInt8, operation: UInt8, tag: UInt16 = 0, offset: UInt32 = 0, messageLength: UInt32 = 0) {
        self.opcode = opcode
        self.operation = operation
        self.tag = tag
        self.offset = offset
        self.messageLength = messageLength
    }

    /// The view of `entry`, or nil when it is not an NVMe-MI Send or Receive.
    public init?(_ entry: SubmissionQueueEntry) {
        guard entry.opcode == AdminOpcode.nvmeMISend || entry.opcode == AdminOpcode.nvmeMIReceive else { return nil }
        opcode = entry.opcode
        operation = UInt8(truncatingIfNeeded: entry.cdw11)
        tag = UInt16(truncatingIfNeeded: entry.cdw12)
        offset = entry.cdw13
        messageLength = entry.cdw14
    }

    /// Whether data flows from host to controller.
    public var isSend: Bool { opcode == AdminOpcode.nvmeMISend }

    /// The entry: Send commands carry their data in the capsule, Receive commands take it by
    /// the transport's data block.
    public func submissionQueueEntry(commandIdentifier: UInt16, dataLength: Int) -> SubmissionQueueEntry {
        SubmissionQueueEntry(
            opcode: opcode,
            flags: 0x40,  // PSDT 01b: SGLs
            commandIdentifier: commandIdentifier,
            dataPointer: isSend
                ? .inCapsule(length: UInt32(dataLength)) : .transport(length: UInt32(dataLength)),
            cdw10: 1 << 3,  // NMIMT 1h: NVMe-MI command
            cdw11: UInt32(operation),
            cdw12: UInt32(tag),
            cdw13: offset,
            cdw14: messageLength
        )
    }
}

/// A request message: an HTTP method and path of dem-em's REST API and the JSON body.
public struct InBandRequest: Sendable, Hashable {
    /// Methods, as their byte.
    public enum Method: UInt8, Sendable, Hashable, CaseIterable {
        case get = 1
        case put = 2
        case post = 3
        case delete = 4

        /// The HTTP name.
        public var name: String {
            switch self {
            case .get: "GET"
            case .put: "PUT"
            case .post: "POST"
            case .delete: "DELETE"
            }
        }
    }

    /// The message format version.
    public static let version: UInt8 = 1
    /// Bytes before the path.
    public static let headerLength = 8

    public var method: Method
    /// The path, with its query, such as `/config?adopt=1`.
    public var path: String
    /// The body (JSON), empty for none.
    public var body: ByteBuffer

    public init(method: Method, path: String, body: ByteBuffer = ByteBuffer()) {
        self.method = method
        self.path = path
        self.body = body
    }

    /// Why a request message cannot be read.
    public struct FormatError: Error, Sendable, Hashable, CustomStringConvertible {
        public var description: String
    }

    /// The message's bytes.
    public func encoded() -> ByteBuffer {
        var buffer = ByteBuffer()
        let pathBytes = Array(path.utf8)
        buffer.reserveCapacity(Self.headerLength + pathBytes.count + body.readableBytes)
        buffer.writeInteger(Self.version)
        buffer.writeInteger(method.rawValue)
        buffer.writeInteger(UInt16(pathBytes.count), endianness: .little)
        buffer.writeInteger(UInt32(body.readableBytes), endianness: .little)
        buffer.writeBytes(pathBytes)
        buffer.writeImmutableBuffer(body)
        return buffer
    }

    /// Reads a whole request message.
    public init(decoding message: ByteBuffer) throws(FormatError) {
        var buffer = message
        guard let version = buffer.readInteger(as: UInt8.self), let method = buffer.readInteger(as: UInt8.self),
            let pathLength = buffer.readInteger(endianness: .little, as: UInt16.self),
            let bodyLength = buffer.readInteger(endianness: .little, as: UInt32.self)
        else { throw FormatError(description: "request shorter than its \(Self.headerLength)-byte header") }
        guard version == Self.version else { throw FormatError(description: "request version \(version), not 1") }
        guard let known = Method(rawValue: method) else { throw FormatError(description: "unknown method \(method)") }
        guard Int(pathLength) + Int(bodyLength) == buffer.readableBytes else {
            throw FormatError(
                description:
                    "path (\(pathLength)) and body (\(bodyLength)) lengths do not add up to the \(buffer.readableBytes) bytes after the header"
            )
        }
        guard let path = buffer.readString(length: Int(pathLength)), path.hasPrefix("/"), !path.contains("\n") else {
            throw FormatError(description: "path is not UTF-8 text starting with /")
        }
        self.init(method: known, path: path, body: buffer.readSlice(length: Int(bodyLength))!)
    }
}

/// A response message: the HTTP status and JSON body dem-em's REST API gives the request.
public struct InBandResponse: Sendable, Hashable {
    /// Bytes before the body.
    public static let headerLength = 8

    public var status: Int
    public var body: ByteBuffer

    public init(status: Int, body: ByteBuffer) {
        self.status = status
        self.body = body
    }

    /// The message's bytes.
    public func encoded() -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(Self.headerLength + body.readableBytes)
        buffer.writeInteger(InBandRequest.version)
        buffer.writeInteger(UInt8(0))
        buffer.writeInteger(UInt16(clamping: status), endianness: .little)
        buffer.writeInteger(UInt32(body.readableBytes), endianness: .little)
        buffer.writeImmutableBuffer(body)
        return buffer
    }

    /// Reads a whole response message.
    public init(decoding message: ByteBuffer) throws(InBandRequest.FormatError) {
        var buffer = message
        guard let version = buffer.readInteger(as: UInt8.self), buffer.readInteger(as: UInt8.self) != nil,
            let status = buffer.readInteger(endianness: .little, as: UInt16.self),
            let bodyLength = buffer.readInteger(endianness: .little, as: UInt32.self)
        else { throw InBandRequest.FormatError(description: "response shorter than its 8-byte header") }
        guard version == InBandRequest.version else {
            throw InBandRequest.FormatError(description: "response version \(version), not 1")
        }
        guard Int(bodyLength) == buffer.readableBytes else {
            throw InBandRequest.FormatError(
                description: "body length \(bodyLength), but \(buffer.readableBytes) bytes follow the header"
            )
        }
        self.init(status: Int(status), body: buffer)
    }
}
