import NIOCore

/// TRTYPE: transport type (NVMe Base 2.1 Figure 294 / NVMe-oF).
public struct TransportType: RawRepresentable, Sendable, Hashable, Codable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let rdma = Self(rawValue: 1)
    public static let fibreChannel = Self(rawValue: 2)
    public static let tcp = Self(rawValue: 3)
    public static let loop = Self(rawValue: 254)
}

/// ADRFAM: address family.
public struct AddressFamily: RawRepresentable, Sendable, Hashable, Codable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let pci = Self(rawValue: 0)
    public static let ipv4 = Self(rawValue: 1)
    public static let ipv6 = Self(rawValue: 2)
    public static let infiniBand = Self(rawValue: 3)
    public static let fibreChannel = Self(rawValue: 4)
    public static let loop = Self(rawValue: 254)
}

/// SUBTYPE: subsystem type of a discovery log entry.
public struct SubsystemType: RawRepresentable, Sendable, Hashable, Codable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// 1: a referral to another discovery service.
    public static let referral = Self(rawValue: 1)
    /// 2: an NVM subsystem.
    public static let nvm = Self(rawValue: 2)
    /// 3: the current discovery subsystem (TP8013).
    public static let currentDiscovery = Self(rawValue: 3)
}

/// TREQ: transport requirements. Bits 1:0 secure channel (0 not specified, 1 required, 2 not
/// required); bit 2 SQ flow control disable supported.
public struct TransportRequirements: RawRepresentable, Sendable, Hashable, Codable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let notSpecified = Self(rawValue: 0)
    public static let secureChannelRequired = Self(rawValue: 1)
    public static let secureChannelNotRequired = Self(rawValue: 2)
    public static let submissionQueueFlowControlDisable = Self(rawValue: 4)
}

/// EFLAGS: entry flags (TP8013). Bit 0 DUPRETINFO, bit 1 EPCSD, bit 2 NCC.
public struct EntryFlags: OptionSet, Sendable, Hashable, Codable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    /// Duplicate returned information.
    public static let duplicateReturnedInformation = EntryFlags(rawValue: 1 << 0)
    /// Explicit persistent connection support for discovery.
    public static let explicitPersistentConnection = EntryFlags(rawValue: 1 << 1)
    /// No CDC connectivity.
    public static let noCDCConnectivity = EntryFlags(rawValue: 1 << 2)
}

/// TSAS: transport-specific address subtype, 256 bytes.
public enum TransportSpecificAddressSubtype: Sendable, Hashable {
    /// RDMA: QPTYPE, PRTYPE, CMS and PKEY (NVMe over RDMA).
    case rdma(queuePairType: UInt8, providerType: UInt8, connectionManagementService: UInt8, partitionKey: UInt16)
    /// TCP: SECTYPE (0 none, 1 TLS 1.2, 2 TLS 1.3).
    case tcp(securityType: UInt8)
    /// Any other transport: the raw 256 bytes (shorter arrays are written zero-padded).
    case raw([UInt8])

    /// RDMA defaults nvmet uses: reliable connected, no provider type, RDMA_CM.
    public static let rdmaDefault = TransportSpecificAddressSubtype.rdma(
        queuePairType: 1,
        providerType: 1,
        connectionManagementService: 1,
        partitionKey: 0
    )
}

/// One 1024-byte discovery log page entry (NVMe Base 2.1 §5.16.1.23, Figure 293).
public struct DiscoveryLogEntry: Sendable, Hashable {
    /// Size in bytes.
    public static let size = 1024
    /// TRTYPE.
    public var transportType: TransportType
    /// ADRFAM.
    public var addressFamily: AddressFamily
    /// SUBTYPE.
    public var subsystemType: SubsystemType
    /// TREQ.
    public var transportRequirements: TransportRequirements
    /// PORTID.
    public var portIdentifier: UInt16
    /// CNTLID: FFFFh dynamic controller, FFFEh any static controller.
    public var controllerIdentifier: UInt16
    /// ASQSZ: maximum admin submission queue size.
    public var adminMaximumSubmissionQueueSize: UInt16
    /// EFLAGS.
    public var entryFlags: EntryFlags
    /// TRSVCID (32 bytes, ASCII).
    public var transportServiceIdentifier: String
    /// SUBNQN (256 bytes).
    public var subsystemNQN: String
    /// TRADDR (256 bytes, ASCII).
    public var transportAddress: String
    /// TSAS.
    public var transportSpecificAddressSubtype: TransportSpecificAddressSubtype

    public init(
        transportType: TransportType,
        addressFamily: AddressFamily,
        subsystemType: SubsystemType,
        transportRequirements: TransportRequirements = .notSpecified,
        portIdentifier: UInt16,
        controllerIdentifier: UInt16 = 0xFFFF,
        adminMaximumSubmissionQueueSize: UInt16 = 32,
        entryFlags: EntryFlags = [],
        transportServiceIdentifier: String,
        subsystemNQN: String,
        transportAddress: String,
        transportSpecificAddressSubtype: TransportSpecificAddressSubtype? = nil
    ) {
        self.transportType = transportType
        self.addressFamily = addressFamily
        self.subsystemType = subsystemType
        self.transportRequirements = transportRequirements
        self.portIdentifier = portIdentifier
        self.controllerIdentifier = controllerIdentifier
        self.adminMaximumSubmissionQueueSize = adminMaximumSubmissionQueueSize
        self.entryFlags = entryFlags
        self.transportServiceIdentifier = transportServiceIdentifier
        self.subsystemNQN = subsystemNQN
        self.transportAddress = transportAddress
        self.transportSpecificAddressSubtype =
            transportSpecificAddressSubtype
            ?? (transportType == .rdma
                ? .rdmaDefault
                : transportType == .tcp ? .tcp(securityType: 0) : .raw([UInt8](repeating: 0, count: 256)))
    }
}

/// The discovery log page header, 1024 bytes (NVMe Base 2.1 §5.16.1.23, Figure 292).
public struct DiscoveryLogPageHeader: Sendable, Hashable {
    /// Size in bytes.
    public static let size = 1024
    /// GENCTR.
    public var generationCounter: UInt64
    /// NUMREC.
    public var numberOfRecords: UInt64
    /// RECFMT.
    public var recordFormat: UInt16

    public init(generationCounter: UInt64, numberOfRecords: UInt64, recordFormat: UInt16 = 0) {
        self.generationCounter = generationCounter
        self.numberOfRecords = numberOfRecords
        self.recordFormat = recordFormat
    }
}

/// A whole discovery log page: header and entries.
public struct DiscoveryLogPage: Sendable, Hashable {
    /// GENCTR.
    public var generationCounter: UInt64
    /// The entries, in page order.
    public var entries: [DiscoveryLogEntry]

    public init(generationCounter: UInt64, entries: [DiscoveryLogEntry]) {
        self.generationCounter = generationCounter
        self.entries = entries
    }

    /// The page's size in bytes: (NUMREC + 1) KiB.
    public var byteCount: Int { DiscoveryLogPageHeader.size + entries.count * DiscoveryLogEntry.size }

    /// The page as bytes, ready to serve.
    public func encoded(allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: byteCount)
        buffer.writeDiscoveryLogPage(self)
        return buffer
    }
}

extension ByteBuffer {
    /// Writes the 1024-byte page header.
    @discardableResult
    public mutating func writeDiscoveryLogPageHeader(_ header: DiscoveryLogPageHeader) -> Int {
        let base = writerIndex
        writeZeros(DiscoveryLogPageHeader.size)
        setLE(header.generationCounter, at: base)
        setLE(header.numberOfRecords, at: base + 8)
        setLE(header.recordFormat, at: base + 16)
        return DiscoveryLogPageHeader.size
    }

    /// Reads the 1024-byte page header; `nil` when fewer than 1024 bytes are readable.
    public mutating func readDiscoveryLogPageHeader() -> DiscoveryLogPageHeader? {
        guard readableBytes >= DiscoveryLogPageHeader.size else { return nil }
        let base = readerIndex
        let header = DiscoveryLogPageHeader(
            generationCounter: le(base),
            numberOfRecords: le(base + 8),
            recordFormat: le(base + 16)
        )
        moveReaderIndex(forwardBy: DiscoveryLogPageHeader.size)
        return header
    }

    /// Writes one 1024-byte entry (NVMe Base 2.1 Figure 293).
    @discardableResult
    public mutating func writeDiscoveryLogEntry(_ e: DiscoveryLogEntry) -> Int {
        let base = writerIndex
        writeZeros(DiscoveryLogEntry.size)
        setLE(e.transportType.rawValue, at: base + 0)
        setLE(e.addressFamily.rawValue, at: base + 1)
        setLE(e.subsystemType.rawValue, at: base + 2)
        setLE(e.transportRequirements.rawValue, at: base + 3)
        setLE(e.portIdentifier, at: base + 4)
        setLE(e.controllerIdentifier, at: base + 6)
        setLE(e.adminMaximumSubmissionQueueSize, at: base + 8)
        setLE(e.entryFlags.rawValue, at: base + 10)
        setFixedString(e.transportServiceIdentifier, at: base + 32, length: 32)
        setFixedString(e.subsystemNQN, at: base + 256, length: 256)
        setFixedString(e.transportAddress, at: base + 512, length: 256)
        switch e.transportSpecificAddressSubtype {
        case .rdma(let qptype, let prtype, let cms, let pkey):
            setLE(qptype, at: base + 768)
            setLE(prtype, at: base + 769)
            setLE(cms, at: base + 770)
            setLE(pkey, at: base + 776)
        case .tcp(let sectype):
            setLE(sectype, at: base + 768)
        case .raw(let bytes):
            setBytes(bytes.prefix(256), at: base + 768)
        }
        return DiscoveryLogEntry.size
    }

    /// Reads one 1024-byte entry, or `nil` when fewer than 1024 bytes are readable.
    public mutating func readDiscoveryLogEntry() -> DiscoveryLogEntry? {
        guard readableBytes >= DiscoveryLogEntry.size else { return nil }
        let base = readerIndex
        let transportType = TransportType(rawValue: le(base))
        let tsas: TransportSpecificAddressSubtype
        switch transportType {
        case .rdma:
            tsas = .rdma(
                queuePairType: le(base + 768),
                providerType: le(base + 769),
                connectionManagementService: le(base + 770),
                partitionKey: le(base + 776)
            )
        case .tcp: tsas = .tcp(securityType: le(base + 768))
        default: tsas = .raw(getBytes(at: base + 768, length: 256)!)
        }
        let entry = DiscoveryLogEntry(
            transportType: transportType,
            addressFamily: AddressFamily(rawValue: le(base + 1)),
            subsystemType: SubsystemType(rawValue: le(base + 2)),
            transportRequirements: TransportRequirements(rawValue: le(base + 3)),
            portIdentifier: le(base + 4),
            controllerIdentifier: le(base + 6),
            adminMaximumSubmissionQueueSize: le(base + 8),
            entryFlags: EntryFlags(rawValue: le(base + 10)),
            transportServiceIdentifier: getFixedString(at: base + 32, length: 32)!,
            subsystemNQN: getFixedString(at: base + 256, length: 256)!,
            transportAddress: getFixedString(at: base + 512, length: 256)!,
            transportSpecificAddressSubtype: tsas
        )
        moveReaderIndex(forwardBy: DiscoveryLogEntry.size)
        return entry
    }

    /// Writes a whole page.
    @discardableResult
    public mutating func writeDiscoveryLogPage(_ page: DiscoveryLogPage) -> Int {
        var written = writeDiscoveryLogPageHeader(
            DiscoveryLogPageHeader(
                generationCounter: page.generationCounter,
                numberOfRecords: UInt64(page.entries.count)
            )
        )
        for entry in page.entries { written += writeDiscoveryLogEntry(entry) }
        return written
    }

    /// Reads a whole page: header, then NUMREC entries.
    ///
    /// - Throws: ``DiscoveryLogPageError`` when the buffer holds fewer entries than NUMREC says.
    public mutating func readDiscoveryLogPage() throws(DiscoveryLogPageError) -> DiscoveryLogPage {
        guard let header = readDiscoveryLogPageHeader() else {
            throw .truncated(expected: 1024, available: readableBytes)
        }
        let available = readableBytes / DiscoveryLogEntry.size
        guard header.numberOfRecords <= UInt64(available) else {
            throw .truncated(
                expected: Int(clamping: header.numberOfRecords) &* DiscoveryLogEntry.size,
                available: readableBytes
            )
        }
        var entries: [DiscoveryLogEntry] = []
        entries.reserveCapacity(Int(header.numberOfRecords))
        for _ in 0..<header.numberOfRecords { entries.append(readDiscoveryLogEntry()!) }
        return DiscoveryLogPage(generationCounter: header.generationCounter, entries: entries)
    }
}

/// A discovery log page that cannot be read.
public enum DiscoveryLogPageError: Error, Sendable, Hashable {
    /// Fewer bytes than the header or NUMREC require.
    case truncated(expected: Int, available: Int)
}
