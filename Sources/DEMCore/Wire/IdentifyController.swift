import NIOCore

/// The Identify Controller data structure, 4096 bytes (NVMe Base 2.1 §5.17.2.1, Figure 312),
/// with the fields a discovery controller reports.
public struct IdentifyControllerData: Sendable, Hashable {
    /// Size in bytes.
    public static let size = 4096

    /// CNTRLTYPE values.
    public enum ControllerType {
        public static let io: UInt8 = 1
        public static let discovery: UInt8 = 2
        public static let administrative: UInt8 = 3
    }
    /// DCTYPE values (TP8010).
    public enum DiscoveryControllerType {
        public static let notReported: UInt8 = 0
        public static let direct: UInt8 = 1
        public static let centralized: UInt8 = 2
    }

    /// VID (PCI vendor ID), 0 for a fabric-only controller.
    public var vendorIdentifier: UInt16 = 0
    /// SSVID.
    public var subsystemVendorIdentifier: UInt16 = 0
    /// SN, 20 ASCII characters, space-padded.
    public var serialNumber: String = ""
    /// MN, 40 ASCII characters, space-padded.
    public var modelNumber: String = ""
    /// FR, 8 ASCII characters, space-padded.
    public var firmwareRevision: String = ""
    /// MDTS: maximum data transfer size as a power of two of the minimum page size, 0 = no limit.
    public var maximumDataTransferSize: UInt8 = 0
    /// CNTLID.
    public var controllerIdentifier: UInt16 = 0
    /// VER, same layout as the VS property.
    public var version: UInt32 = 0x0001_0300
    /// OAES: optional asynchronous events supported; bit 31 = Discovery Log Page Change.
    public var optionalAsynchronousEventsSupported: UInt32 = 0
    /// CTRATT.
    public var controllerAttributes: UInt32 = 0
    /// CNTRLTYPE.
    public var controllerType: UInt8 = ControllerType.discovery
    /// ACL: abort command limit, zero-based.
    public var abortCommandLimit: UInt8 = 0
    /// AERL: asynchronous event request limit, zero-based.
    public var asynchronousEventRequestLimit: UInt8 = 0
    /// LPA: log page attributes; bit 2 = extended data for Get Log Page (offsets).
    public var logPageAttributes: UInt8 = 0
    /// ELPE.
    public var errorLogPageEntries: UInt8 = 0
    /// KAS: keep alive granularity in 100 ms units, 0 = Keep Alive unsupported.
    public var keepAliveSupport: UInt16 = 0
    /// SQES.
    public var submissionQueueEntrySize: UInt8 = 0
    /// CQES.
    public var completionQueueEntrySize: UInt8 = 0
    /// MAXCMD.
    public var maximumOutstandingCommands: UInt16 = 0
    /// NN.
    public var numberOfNamespaces: UInt32 = 0
    /// SGLS.
    public var sglSupport: UInt32 = 0
    /// SUBNQN.
    public var subsystemNQN: String = ""
    /// IOCCSZ in 16-byte units.
    public var ioQueueCommandCapsuleSize: UInt32 = 0
    /// IORCSZ in 16-byte units.
    public var ioQueueResponseCapsuleSize: UInt32 = 0
    /// ICDOFF.
    public var inCapsuleDataOffset: UInt16 = 0
    /// FCATT: fabrics controller attributes; bit 0 = static controller model.
    public var fabricsControllerAttributes: UInt8 = 0
    /// MSDBD: maximum SGL data block descriptors.
    public var maximumSGLDataBlockDescriptors: UInt8 = 0
    /// OFCS: optional fabric commands supported; bit 0 = Disconnect.
    public var optionalFabricCommandsSupported: UInt16 = 0
    /// DCTYPE.
    public var discoveryControllerType: UInt8 = 0

    public init() {}
}

extension ByteBuffer {
    /// Writes the 4096-byte Identify Controller structure.
    @discardableResult
    public mutating func writeIdentifyControllerData(_ d: IdentifyControllerData) -> Int {
        let base = writerIndex
        writeZeros(IdentifyControllerData.size)
        setLE(d.vendorIdentifier, at: base + 0)
        setLE(d.subsystemVendorIdentifier, at: base + 2)
        setFixedString(d.serialNumber, at: base + 4, length: 20, pad: 0x20)
        setFixedString(d.modelNumber, at: base + 24, length: 40, pad: 0x20)
        setFixedString(d.firmwareRevision, at: base + 64, length: 8, pad: 0x20)
        setLE(d.maximumDataTransferSize, at: base + 77)
        setLE(d.controllerIdentifier, at: base + 78)
        setLE(d.version, at: base + 80)
        setLE(d.optionalAsynchronousEventsSupported, at: base + 92)
        setLE(d.controllerAttributes, at: base + 96)
        setLE(d.controllerType, at: base + 111)
        setLE(d.abortCommandLimit, at: base + 258)
        setLE(d.asynchronousEventRequestLimit, at: base + 259)
        setLE(d.logPageAttributes, at: base + 261)
        setLE(d.errorLogPageEntries, at: base + 262)
        setLE(d.keepAliveSupport, at: base + 320)
        setLE(d.submissionQueueEntrySize, at: base + 512)
        setLE(d.completionQueueEntrySize, at: base + 513)
        setLE(d.maximumOutstandingCommands, at: base + 514)
        setLE(d.numberOfNamespaces, at: base + 516)
        setLE(d.sglSupport, at: base + 536)
        setFixedString(d.subsystemNQN, at: base + 768, length: 256)
        setLE(d.ioQueueCommandCapsuleSize, at: base + 1792)
        setLE(d.ioQueueResponseCapsuleSize, at: base + 1796)
        setLE(d.inCapsuleDataOffset, at: base + 1800)
        setLE(d.fabricsControllerAttributes, at: base + 1802)
        setLE(d.maximumSGLDataBlockDescriptors, at: base + 1803)
        setLE(d.optionalFabricCommandsSupported, at: base + 1804)
        setLE(d.discoveryControllerType, at: base + 1806)
        return IdentifyControllerData.size
    }

    /// Reads the 4096-byte Identify Controller structure, or `nil` when fewer bytes are readable.
    public mutating func readIdentifyControllerData() -> IdentifyControllerData? {
        guard readableBytes >= IdentifyControllerData.size else { return nil }
        let base = readerIndex
        var d = IdentifyControllerData()
        d.vendorIdentifier = le(base + 0)
        d.subsystemVendorIdentifier = le(base + 2)
        d.serialNumber = getFixedString(at: base + 4, length: 20)!
        d.modelNumber = getFixedString(at: base + 24, length: 40)!
        d.firmwareRevision = getFixedString(at: base + 64, length: 8)!
        d.maximumDataTransferSize = le(base + 77)
        d.controllerIdentifier = le(base + 78)
        d.version = le(base + 80)
        d.optionalAsynchronousEventsSupported = le(base + 92)
        d.controllerAttributes = le(base + 96)
        d.controllerType = le(base + 111)
        d.abortCommandLimit = le(base + 258)
        d.asynchronousEventRequestLimit = le(base + 259)
        d.logPageAttributes = le(base + 261)
        d.errorLogPageEntries = le(base + 262)
        d.keepAliveSupport = le(base + 320)
        d.submissionQueueEntrySize = le(base + 512)
        d.completionQueueEntrySize = le(base + 513)
        d.maximumOutstandingCommands = le(base + 514)
        d.numberOfNamespaces = le(base + 516)
        d.sglSupport = le(base + 536)
        d.subsystemNQN = getFixedString(at: base + 768, length: 256)!
        d.ioQueueCommandCapsuleSize = le(base + 1792)
        d.ioQueueResponseCapsuleSize = le(base + 1796)
        d.inCapsuleDataOffset = le(base + 1800)
        d.fabricsControllerAttributes = le(base + 1802)
        d.maximumSGLDataBlockDescriptors = le(base + 1803)
        d.optionalFabricCommandsSupported = le(base + 1804)
        d.discoveryControllerType = le(base + 1806)
        moveReaderIndex(forwardBy: IdentifyControllerData.size)
        return d
    }
}
