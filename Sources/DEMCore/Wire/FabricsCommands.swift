import NIOCore

/// Opcodes of the Admin command set used over fabrics (NVMe Base 2.1 §5, Figure 28).
public enum AdminOpcode {
    /// Get Log Page.
    public static let getLogPage: UInt8 = 0x02
    /// Identify.
    public static let identify: UInt8 = 0x06
    /// Set Features.
    public static let setFeatures: UInt8 = 0x09
    /// Get Features.
    public static let getFeatures: UInt8 = 0x0A
    /// Asynchronous Event Request.
    public static let asynchronousEventRequest: UInt8 = 0x0C
    /// Keep Alive.
    public static let keepAlive: UInt8 = 0x18
    /// NVMe-MI Send.
    public static let nvmeMISend: UInt8 = 0x1D
    /// NVMe-MI Receive.
    public static let nvmeMIReceive: UInt8 = 0x1E
    /// Fabrics commands (FCTYPE selects the command).
    public static let fabrics: UInt8 = 0x7F
}

/// FCTYPE values (NVMe Base 2.1 §6, Figure 539).
public enum FabricsCommandType {
    /// Property Set.
    public static let propertySet: UInt8 = 0x00
    /// Connect.
    public static let connect: UInt8 = 0x01
    /// Property Get.
    public static let propertyGet: UInt8 = 0x04
    /// Authentication Send.
    public static let authenticationSend: UInt8 = 0x05
    /// Authentication Receive.
    public static let authenticationReceive: UInt8 = 0x06
    /// Disconnect.
    public static let disconnect: UInt8 = 0x08
}

/// Controller properties reachable with Property Get/Set (NVMe Base 2.1 §3.1.4, Figure 35).
public enum ControllerProperty {
    /// CAP, 8 bytes.
    public static let capabilities: UInt32 = 0x00
    /// VS, 4 bytes.
    public static let version: UInt32 = 0x08
    /// CC, 4 bytes.
    public static let configuration: UInt32 = 0x14
    /// CSTS, 4 bytes.
    public static let status: UInt32 = 0x1C
    /// NSSR, 4 bytes.
    public static let subsystemReset: UInt32 = 0x20
}

/// Fabrics Connect (NVMe Base 2.1 §6.3, Figures 542–545).
public struct ConnectCommand: Sendable, Hashable {
    /// Byte offsets in the SQE, for IPO in a Connect Invalid Parameters completion.
    public enum CommandOffset {
        public static let recordFormat: UInt16 = 40
        public static let queueIdentifier: UInt16 = 42
        public static let submissionQueueSize: UInt16 = 44
        public static let keepAliveTimeout: UInt16 = 48
    }
    /// RECFMT.
    public var recordFormat: UInt16
    /// QID: 0 for the admin queue.
    public var queueIdentifier: UInt16
    /// SQSIZE, zero-based.
    public var submissionQueueSize: UInt16
    /// CATTR.
    public var attributes: UInt8
    /// KATO in milliseconds, 0 to disable.
    public var keepAliveTimeout: UInt32

    public init(
        recordFormat: UInt16 = 0,
        queueIdentifier: UInt16 = 0,
        submissionQueueSize: UInt16 = 31,
        attributes: UInt8 = 0,
        keepAliveTimeout: UInt32 = 0
    ) {
        self.recordFormat = recordFormat
        self.queueIdentifier = queueIdentifier
        self.submissionQueueSize = submissionQueueSize
        self.attributes = attributes
        self.keepAliveTimeout = keepAliveTimeout
    }

    /// The Connect view of `entry`, whose opcode and FCTYPE the caller has checked.
    public init(_ entry: SubmissionQueueEntry) {
        self.recordFormat = UInt16(truncatingIfNeeded: entry.cdw10)
        self.queueIdentifier = UInt16(truncatingIfNeeded: entry.cdw10 >> 16)
        self.submissionQueueSize = UInt16(truncatingIfNeeded: entry.cdw11)
        self.attributes = UInt8(truncatingIfNeeded: entry.cdw11 >> 16)
        self.keepAliveTimeout = entry.cdw12
    }

    /// The SQE for this Connect with `dataLength` bytes of in-capsule Connect data.
    public func submissionQueueEntry(commandIdentifier: UInt16, dataLength: UInt32 = 1024) -> SubmissionQueueEntry {
        SubmissionQueueEntry(
            opcode: AdminOpcode.fabrics,
            commandIdentifier: commandIdentifier,
            namespaceIdentifier: UInt32(FabricsCommandType.connect),
            dataPointer: .inCapsule(length: dataLength),
            cdw10: UInt32(recordFormat) | UInt32(queueIdentifier) << 16,
            cdw11: UInt32(submissionQueueSize) | UInt32(attributes) << 16,
            cdw12: keepAliveTimeout
        )
    }
}

/// The 1024-byte Connect data (NVMe Base 2.1 §6.3, Figure 544).
public struct ConnectData: Sendable, Hashable {
    /// Size in bytes.
    public static let size = 1024
    /// Byte offsets, for IPO in a Connect Invalid Parameters completion.
    public enum Offset {
        public static let hostIdentifier: UInt16 = 0
        public static let controllerIdentifier: UInt16 = 16
        public static let subsystemNQN: UInt16 = 256
        public static let hostNQN: UInt16 = 512
    }
    /// HOSTID, 16 bytes.
    public var hostIdentifier: [UInt8]
    /// CNTLID: FFFFh asks for any controller (dynamic model).
    public var controllerIdentifier: UInt16
    /// SUBNQN.
    public var subsystemNQN: String
    /// HOSTNQN.
    public var hostNQN: String

    public init(hostIdentifier: [UInt8], controllerIdentifier: UInt16 = 0xFFFF, subsystemNQN: String, hostNQN: String) {
        precondition(hostIdentifier.count == 16, "HOSTID is 16 bytes")
        self.hostIdentifier = hostIdentifier
        self.controllerIdentifier = controllerIdentifier
        self.subsystemNQN = subsystemNQN
        self.hostNQN = hostNQN
    }
}

extension ByteBuffer {
    /// Reads 1024 bytes of Connect data, or `nil` when fewer are readable.
    public mutating func readConnectData() -> ConnectData? {
        guard readableBytes >= ConnectData.size else { return nil }
        let base = readerIndex
        let data = ConnectData(
            hostIdentifier: getBytes(at: base, length: 16)!,
            controllerIdentifier: le(base + 16),
            subsystemNQN: getFixedString(at: base + 256, length: 256)!,
            hostNQN: getFixedString(at: base + 512, length: 256)!
        )
        moveReaderIndex(forwardBy: ConnectData.size)
        return data
    }

    /// Writes 1024 bytes of Connect data.
    @discardableResult
    public mutating func writeConnectData(_ data: ConnectData) -> Int {
        let base = writerIndex
        writeZeros(ConnectData.size)
        setBytes(data.hostIdentifier, at: base)
        setLE(data.controllerIdentifier, at: base + 16)
        setFixedString(data.subsystemNQN, at: base + 256, length: 256)
        setFixedString(data.hostNQN, at: base + 512, length: 256)
        return ConnectData.size
    }
}

/// The Fabrics commands, as a view of an SQE with opcode 7Fh (NVMe Base 2.1 §6).
public enum FabricsCommand: Sendable, Hashable {
    /// Connect.
    case connect(ConnectCommand)
    /// Property Get: `size8` is ATTRIB bit 0 (8-byte property), `offset` is OFST.
    case propertyGet(size8: Bool, offset: UInt32)
    /// Property Set.
    case propertySet(size8: Bool, offset: UInt32, value: UInt64)
    /// Disconnect.
    case disconnect(recordFormat: UInt16)
    /// Authentication Send or Receive (not supported by DEM's discovery controller yet).
    case authentication(fabricsCommandType: UInt8)
    /// A reserved or unknown FCTYPE.
    case unknown(fabricsCommandType: UInt8)

    /// The Fabrics command carried by `entry`, which must have opcode 7Fh.
    public init(_ entry: SubmissionQueueEntry) {
        let fctype = UInt8(truncatingIfNeeded: entry.namespaceIdentifier)
        switch fctype {
        case FabricsCommandType.connect: self = .connect(ConnectCommand(entry))
        case FabricsCommandType.propertyGet:
            self = .propertyGet(size8: entry.cdw10 & 0x7 == 1, offset: entry.cdw11)
        case FabricsCommandType.propertySet:
            self = .propertySet(
                size8: entry.cdw10 & 0x7 == 1,
                offset: entry.cdw11,
                value: UInt64(entry.cdw12) | UInt64(entry.cdw13) << 32
            )
        case FabricsCommandType.disconnect:
            self = .disconnect(recordFormat: UInt16(truncatingIfNeeded: entry.cdw10))
        case FabricsCommandType.authenticationSend, FabricsCommandType.authenticationReceive:
            self = .authentication(fabricsCommandType: fctype)
        default: self = .unknown(fabricsCommandType: fctype)
        }
    }

    /// The SQE for a Property Get.
    public static func propertyGetEntry(commandIdentifier: UInt16, offset: UInt32, size8: Bool) -> SubmissionQueueEntry
    {
        SubmissionQueueEntry(
            opcode: AdminOpcode.fabrics,
            commandIdentifier: commandIdentifier,
            namespaceIdentifier: UInt32(FabricsCommandType.propertyGet),
            cdw10: size8 ? 1 : 0,
            cdw11: offset
        )
    }

    /// The SQE for a Property Set.
    public static func propertySetEntry(
        commandIdentifier: UInt16,
        offset: UInt32,
        value: UInt64,
        size8: Bool = false
    ) -> SubmissionQueueEntry {
        SubmissionQueueEntry(
            opcode: AdminOpcode.fabrics,
            commandIdentifier: commandIdentifier,
            namespaceIdentifier: UInt32(FabricsCommandType.propertySet),
            cdw10: size8 ? 1 : 0,
            cdw11: offset,
            cdw12: UInt32(truncatingIfNeeded: value),
            cdw13: UInt32(truncatingIfNeeded: value >> 32)
        )
    }

    /// The SQE for a Disconnect.
    public static func disconnectEntry(commandIdentifier: UInt16) -> SubmissionQueueEntry {
        SubmissionQueueEntry(
            opcode: AdminOpcode.fabrics,
            commandIdentifier: commandIdentifier,
            namespaceIdentifier: UInt32(FabricsCommandType.disconnect)
        )
    }
}

/// The Connect response's DW0 (NVMe Base 2.1 §6.3, Figures 546–547).
public enum ConnectResponse {
    /// DW0 of a successful Connect: CNTLID in bits 15:0, AUTHREQ in bits 31:16.
    public static func success(controllerIdentifier: UInt16, authenticationRequirements: UInt16 = 0) -> UInt32 {
        UInt32(controllerIdentifier) | UInt32(authenticationRequirements) << 16
    }

    /// DW0 of Connect Invalid Parameters: IPO in bits 15:0, IATTR in bits 23:16 (1 = in the data).
    public static func invalidParameter(offset: UInt16, inData: Bool) -> UInt32 {
        UInt32(offset) | (inData ? 1 << 16 : 0)
    }
}
