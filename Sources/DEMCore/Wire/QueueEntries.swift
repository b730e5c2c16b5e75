import NIOCore

/// An SGL descriptor, 16 bytes (NVMe Base 2.1 §4.3.2, Figure 117).
public struct SGLDescriptor: Sendable, Hashable {
    /// SGL descriptor type (bits 7:4 of the identifier byte).
    public struct DescriptorType: RawRepresentable, Sendable, Hashable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        /// 0h SGL Data Block.
        public static let dataBlock = Self(rawValue: 0x0)
        /// 4h Keyed SGL Data Block (NVMe/RDMA).
        public static let keyedDataBlock = Self(rawValue: 0x4)
        /// 5h Transport SGL Data Block.
        public static let transportDataBlock = Self(rawValue: 0x5)
    }
    /// Address (or offset, for in-capsule data).
    public var address: UInt64
    /// Bytes 8–11: the length of a data block; in a keyed descriptor, a 3-byte length and the
    /// key's low byte.
    public var length: UInt32
    /// Bytes 12–14: reserved in a data block; in a keyed descriptor, the key's upper three bytes.
    public var upperBytes: UInt32
    /// The identifier byte: type in bits 7:4, subtype in bits 3:0.
    public var identifier: UInt8

    public init(address: UInt64 = 0, length: UInt32 = 0, identifier: UInt8 = 0, upperBytes: UInt32 = 0) {
        self.address = address
        self.length = length
        self.upperBytes = upperBytes & 0xFF_FFFF
        self.identifier = identifier
    }

    /// A Keyed SGL Data Block (NVMe/RDMA 1.1 §3.1): remote memory at `address`, `length` bytes
    /// (below 16 MiB), registered under `key`; subtype Fh asks the controller to invalidate the key.
    public static func keyed(address: UInt64, length: UInt32, key: UInt32, invalidate: Bool = false) -> SGLDescriptor {
        SGLDescriptor(
            address: address,
            length: (length & 0xFF_FFFF) | (key << 24),
            identifier: invalidate ? 0x4F : 0x40,
            upperBytes: key >> 8
        )
    }

    /// Whether this is a Keyed SGL Data Block (subtype Address or Invalidate Key).
    public var isKeyed: Bool { type == .keyedDataBlock && (subtype == 0x0 || subtype == 0xF) }
    /// A keyed descriptor's length (24 bits).
    public var keyedLength: UInt32 { length & 0xFF_FFFF }
    /// A keyed descriptor's key.
    public var key: UInt32 { (length >> 24) | (upperBytes << 8) }

    /// Type.
    public var type: DescriptorType { DescriptorType(rawValue: identifier >> 4) }
    /// Subtype: 1h offset (in-capsule), Ah transport specific.
    public var subtype: UInt8 { identifier & 0x0F }

    /// In-capsule data: SGL Data Block, subtype Offset (NVMe/TCP 1.0 §3.3.1).
    public static func inCapsule(length: UInt32, offset: UInt64 = 0) -> SGLDescriptor {
        SGLDescriptor(address: offset, length: length, identifier: 0x01)
    }

    /// Data transferred by C2HData/H2CData: Transport SGL Data Block, subtype Ah (NVMe/TCP 1.0 §3.3.1).
    public static func transport(length: UInt32) -> SGLDescriptor {
        SGLDescriptor(address: 0, length: length, identifier: 0x5A)
    }

    /// Whether this descriptor points at in-capsule data.
    public var isInCapsule: Bool { identifier == 0x01 }
    /// Whether this descriptor asks for a transport data transfer.
    public var isTransportDataBlock: Bool { identifier == 0x5A }
}

/// A 64-byte submission queue entry (NVMe Base 2.1 §4.2, Figure 91), kept as its dwords; the
/// typed commands (``FabricsCommand``, ``AdminCommand``) are views of it.
public struct SubmissionQueueEntry: Sendable, Hashable {
    /// Size in bytes.
    public static let size = 64
    /// OPC.
    public var opcode: UInt8
    /// FUSE (bits 1:0) and PSDT (bits 7:6).
    public var flags: UInt8
    /// CID.
    public var commandIdentifier: UInt16
    /// NSID; in a Fabrics command, byte 4 is FCTYPE.
    public var namespaceIdentifier: UInt32
    /// CDW2.
    public var cdw2: UInt32
    /// CDW3.
    public var cdw3: UInt32
    /// MPTR.
    public var metadataPointer: UInt64
    /// DPTR as an SGL descriptor (NVMe-oF uses SGLs only).
    public var dataPointer: SGLDescriptor
    /// CDW10 to CDW15.
    public var cdw10: UInt32
    public var cdw11: UInt32
    public var cdw12: UInt32
    public var cdw13: UInt32
    public var cdw14: UInt32
    public var cdw15: UInt32

    public init(
        opcode: UInt8,
        flags: UInt8 = 0x40,
        commandIdentifier: UInt16 = 0,
        namespaceIdentifier: UInt32 = 0,
        cdw2: UInt32 = 0,
        cdw3: UInt32 = 0,
        metadataPointer: UInt64 = 0,
        dataPointer: SGLDescriptor = SGLDescriptor(),
        cdw10: UInt32 = 0,
        cdw11: UInt32 = 0,
        cdw12: UInt32 = 0,
        cdw13: UInt32 = 0,
        cdw14: UInt32 = 0,
        cdw15: UInt32 = 0
    ) {
        self.opcode = opcode
        self.flags = flags
        self.commandIdentifier = commandIdentifier
        self.namespaceIdentifier = namespaceIdentifier
        self.cdw2 = cdw2
        self.cdw3 = cdw3
        self.metadataPointer = metadataPointer
        self.dataPointer = dataPointer
        self.cdw10 = cdw10
        self.cdw11 = cdw11
        self.cdw12 = cdw12
        self.cdw13 = cdw13
        self.cdw14 = cdw14
        self.cdw15 = cdw15
    }
}

extension ByteBuffer {
    /// Reads a 64-byte SQE at `index` without moving the reader index (NVMe Base 2.1 Figure 91).
    public func getSubmissionQueueEntry(at index: Int) -> SubmissionQueueEntry? {
        guard index >= 0, self.readerIndex + self.readableBytes - index >= SubmissionQueueEntry.size,
            index >= self.readerIndex
        else { return nil }
        return SubmissionQueueEntry(
            opcode: le(index),
            flags: le(index + 1),
            commandIdentifier: le(index + 2),
            namespaceIdentifier: le(index + 4),
            cdw2: le(index + 8),
            cdw3: le(index + 12),
            metadataPointer: le(index + 16),
            dataPointer: SGLDescriptor(
                address: le(index + 24),
                length: le(index + 32),
                identifier: le(index + 39),
                upperBytes: UInt32(le(index + 36, as: UInt16.self)) | UInt32(le(index + 38, as: UInt8.self)) << 16
            ),
            cdw10: le(index + 40),
            cdw11: le(index + 44),
            cdw12: le(index + 48),
            cdw13: le(index + 52),
            cdw14: le(index + 56),
            cdw15: le(index + 60)
        )
    }

    /// Reads a 64-byte SQE, or `nil` when fewer than 64 bytes are readable.
    public mutating func readSubmissionQueueEntry() -> SubmissionQueueEntry? {
        guard let entry = getSubmissionQueueEntry(at: readerIndex) else { return nil }
        moveReaderIndex(forwardBy: SubmissionQueueEntry.size)
        return entry
    }

    /// Writes a 64-byte SQE.
    @discardableResult
    public mutating func writeSubmissionQueueEntry(_ e: SubmissionQueueEntry) -> Int {
        let start = writerIndex
        writeInteger(e.opcode)
        writeInteger(e.flags)
        writeInteger(e.commandIdentifier, endianness: .little)
        writeInteger(e.namespaceIdentifier, endianness: .little)
        writeInteger(e.cdw2, endianness: .little)
        writeInteger(e.cdw3, endianness: .little)
        writeInteger(e.metadataPointer, endianness: .little)
        writeInteger(e.dataPointer.address, endianness: .little)
        writeInteger(e.dataPointer.length, endianness: .little)
        writeInteger(UInt16(truncatingIfNeeded: e.dataPointer.upperBytes), endianness: .little)
        writeInteger(UInt8(truncatingIfNeeded: e.dataPointer.upperBytes >> 16))
        writeInteger(e.dataPointer.identifier)
        for dword in [e.cdw10, e.cdw11, e.cdw12, e.cdw13, e.cdw14, e.cdw15] {
            writeInteger(dword, endianness: .little)
        }
        return writerIndex - start
    }
}

/// The status of a completed command: SCT, SC, CRD, M and DNR (NVMe Base 2.1 §4.2.3, Figure 101).
public struct NVMeStatus: Sendable, Hashable, CustomStringConvertible {
    /// Status code type (SCT).
    public var statusCodeType: UInt8
    /// Status code (SC).
    public var statusCode: UInt8
    /// More (M): more information in the Error Information log.
    public var more: Bool
    /// Do Not Retry (DNR).
    public var doNotRetry: Bool

    public init(statusCodeType: UInt8, statusCode: UInt8, more: Bool = false, doNotRetry: Bool = false) {
        self.statusCodeType = statusCodeType
        self.statusCode = statusCode
        self.more = more
        self.doNotRetry = doNotRetry
    }

    /// The 16-bit status field of a CQE (bit 0 is the phase tag, always 0 over fabrics).
    public var fieldValue: UInt16 {
        (UInt16(statusCode) << 1) | (UInt16(statusCodeType & 0x7) << 9) | (more ? 1 << 14 : 0)
            | (doNotRetry ? 1 << 15 : 0)
    }

    /// Decodes the 16-bit status field of a CQE.
    public init(fieldValue: UInt16) {
        self.statusCode = UInt8((fieldValue >> 1) & 0xFF)
        self.statusCodeType = UInt8((fieldValue >> 9) & 0x7)
        self.more = fieldValue & (1 << 14) != 0
        self.doNotRetry = fieldValue & (1 << 15) != 0
    }

    /// Whether the command succeeded.
    public var isSuccess: Bool { statusCodeType == 0 && statusCode == 0 }

    /// This status with DNR set.
    public var withDoNotRetry: NVMeStatus {
        var copy = self
        copy.doNotRetry = true
        return copy
    }

    private static func generic(_ code: UInt8) -> NVMeStatus { NVMeStatus(statusCodeType: 0, statusCode: code) }
    private static func commandSpecific(_ code: UInt8) -> NVMeStatus {
        NVMeStatus(statusCodeType: 1, statusCode: code)
    }

    /// 00h/00h Successful Completion.
    public static let success = generic(0x00)
    /// 00h/01h Invalid Command Opcode.
    public static let invalidOpcode = generic(0x01)
    /// 00h/02h Invalid Field in Command.
    public static let invalidField = generic(0x02)
    /// 00h/03h Command ID Conflict.
    public static let commandIdentifierConflict = generic(0x03)
    /// 00h/04h Data Transfer Error.
    public static let dataTransferError = generic(0x04)
    /// 00h/06h Internal Error.
    public static let internalError = generic(0x06)
    /// 00h/07h Command Abort Requested.
    public static let abortRequested = generic(0x07)
    /// 00h/08h Command Aborted due to SQ Deletion.
    public static let abortedSubmissionQueueDeletion = generic(0x08)
    /// 00h/0Ch Command Sequence Error.
    public static let commandSequenceError = generic(0x0C)
    /// 00h/0Dh Invalid SGL Segment Descriptor.
    public static let invalidSGLSegmentDescriptor = generic(0x0D)
    /// 00h/0Fh Data SGL Length Invalid.
    public static let dataSGLLengthInvalid = generic(0x0F)
    /// 00h/11h SGL Descriptor Type Invalid.
    public static let sglDescriptorTypeInvalid = generic(0x11)
    /// 00h/16h SGL Offset Invalid.
    public static let sglOffsetInvalid = generic(0x16)
    /// 00h/22h Transient Transport Error.
    public static let transientTransportError = generic(0x22)
    /// 01h/01h Invalid Queue Identifier.
    public static let invalidQueueIdentifier = commandSpecific(0x01)
    /// 01h/05h Asynchronous Event Request Limit Exceeded.
    public static let asynchronousEventRequestLimitExceeded = commandSpecific(0x05)
    /// 01h/09h Invalid Log Page.
    public static let invalidLogPage = commandSpecific(0x09)
    /// 01h/0Dh Feature Identifier Not Saveable.
    public static let featureIdentifierNotSaveable = commandSpecific(0x0D)
    /// 01h/80h Connect Incompatible Format (Fabrics).
    public static let connectIncompatibleFormat = commandSpecific(0x80)
    /// 01h/81h Connect Controller Busy (Fabrics).
    public static let connectControllerBusy = commandSpecific(0x81)
    /// 01h/82h Connect Invalid Parameters (Fabrics).
    public static let connectInvalidParameters = commandSpecific(0x82)
    /// 01h/84h Connect Invalid Host (Fabrics).
    public static let connectInvalidHost = commandSpecific(0x84)
    /// 01h/91h Authentication Required: the queue has not authenticated yet.
    public static let authenticationRequired = commandSpecific(0x91)
    /// Discovery Information Management: the data is not valid for the entity (TP8010).
    public static let invalidDiscoveryInformation = commandSpecific(0x2F)
    /// Discovery Information Management: more entries than the discovery controller keeps.
    public static let insufficientDiscoveryResources = commandSpecific(0x32)
    /// 02h/86h Access Denied.
    public static let accessDenied = NVMeStatus(statusCodeType: 2, statusCode: 0x86)

    public var description: String {
        let name: String
        switch NVMeStatus(statusCodeType: statusCodeType, statusCode: statusCode) {
        case .success: name = "success"
        case .invalidOpcode: name = "invalid opcode"
        case .invalidField: name = "invalid field in command"
        case .commandIdentifierConflict: name = "command ID conflict"
        case .dataTransferError: name = "data transfer error"
        case .internalError: name = "internal error"
        case .commandSequenceError: name = "command sequence error"
        case .dataSGLLengthInvalid: name = "data SGL length invalid"
        case .sglDescriptorTypeInvalid: name = "SGL descriptor type invalid"
        case .transientTransportError: name = "transient transport error"
        case .invalidQueueIdentifier: name = "invalid queue identifier"
        case .asynchronousEventRequestLimitExceeded: name = "asynchronous event request limit exceeded"
        case .invalidLogPage: name = "invalid log page"
        case .connectIncompatibleFormat: name = "connect incompatible format"
        case .connectInvalidParameters: name = "connect invalid parameters"
        case .connectInvalidHost: name = "connect invalid host"
        case .authenticationRequired: name = "authentication required"
        case .accessDenied: name = "access denied"
        default: name = "status"
        }
        let hex = String(statusCodeType, radix: 16) + "/" + String(statusCode, radix: 16)
        return "\(name) (SCT/SC \(hex)\(doNotRetry ? ", DNR" : ""))"
    }

    public static func == (lhs: NVMeStatus, rhs: NVMeStatus) -> Bool {
        lhs.statusCodeType == rhs.statusCodeType && lhs.statusCode == rhs.statusCode && lhs.more == rhs.more
            && lhs.doNotRetry == rhs.doNotRetry
    }
}

/// A 16-byte completion queue entry (NVMe Base 2.1 §4.2.3, Figure 98).
public struct CompletionQueueEntry: Sendable, Hashable {
    /// Size in bytes.
    public static let size = 16
    /// DW0, command specific (a Property Get of an 8-byte property uses DW0 and DW1).
    public var result: UInt32
    /// DW1, command specific.
    public var dw1: UInt32
    /// SQHD: submission queue head pointer.
    public var submissionQueueHead: UInt16
    /// SQID.
    public var submissionQueueIdentifier: UInt16
    /// CID of the completed command.
    public var commandIdentifier: UInt16
    /// The status.
    public var status: NVMeStatus

    public init(
        result: UInt32 = 0,
        dw1: UInt32 = 0,
        submissionQueueHead: UInt16 = 0,
        submissionQueueIdentifier: UInt16 = 0,
        commandIdentifier: UInt16,
        status: NVMeStatus = .success
    ) {
        self.result = result
        self.dw1 = dw1
        self.submissionQueueHead = submissionQueueHead
        self.submissionQueueIdentifier = submissionQueueIdentifier
        self.commandIdentifier = commandIdentifier
        self.status = status
    }

    /// DW0 and DW1 as one 64-bit result.
    public var result64: UInt64 { UInt64(result) | (UInt64(dw1) << 32) }
}

extension ByteBuffer {
    /// Reads a 16-byte CQE at `index` without moving the reader index.
    public func getCompletionQueueEntry(at index: Int) -> CompletionQueueEntry? {
        guard index >= readerIndex, readerIndex + readableBytes - index >= CompletionQueueEntry.size else {
            return nil
        }
        return CompletionQueueEntry(
            result: le(index),
            dw1: le(index + 4),
            submissionQueueHead: le(index + 8),
            submissionQueueIdentifier: le(index + 10),
            commandIdentifier: le(index + 12),
            status: NVMeStatus(fieldValue: le(index + 14))
        )
    }

    /// Reads a 16-byte CQE, or `nil` when fewer than 16 bytes are readable.
    public mutating func readCompletionQueueEntry() -> CompletionQueueEntry? {
        guard let entry = getCompletionQueueEntry(at: readerIndex) else { return nil }
        moveReaderIndex(forwardBy: CompletionQueueEntry.size)
        return entry
    }

    /// Writes a 16-byte CQE.
    @discardableResult
    public mutating func writeCompletionQueueEntry(_ e: CompletionQueueEntry) -> Int {
        writeInteger(e.result, endianness: .little)
        writeInteger(e.dw1, endianness: .little)
        writeInteger(e.submissionQueueHead, endianness: .little)
        writeInteger(e.submissionQueueIdentifier, endianness: .little)
        writeInteger(e.commandIdentifier, endianness: .little)
        writeInteger(e.status.fieldValue, endianness: .little)
        return CompletionQueueEntry.size
    }
}
