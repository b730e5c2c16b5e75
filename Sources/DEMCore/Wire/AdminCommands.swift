import NIOCore

/// Feature identifiers DEM handles (NVMe Base 2.1 §5.27.1, Figure 385).
public enum FeatureIdentifier {
    /// Asynchronous Event Configuration.
    public static let asynchronousEventConfiguration: UInt8 = 0x0B
    /// Keep Alive Timer.
    public static let keepAliveTimer: UInt8 = 0x0F
}

/// Log page identifiers DEM handles (NVMe Base 2.1 §5.16, Figure 202).
public enum LogPageIdentifier {
    /// Discovery log page.
    public static let discovery: UInt8 = 0x70
}

/// Get Log Page command fields (NVMe Base 2.1 §5.16, Figures 197–201).
public struct GetLogPageCommand: Sendable, Hashable {
    /// LID.
    public var logPageIdentifier: UInt8
    /// LSP (7 bits).
    public var logSpecificParameter: UInt8
    /// RAE: retain asynchronous event.
    public var retainAsynchronousEvent: Bool
    /// Number of dwords to return (NUMDU:NUMDL + 1, so up to 2^32).
    public var numberOfDwords: UInt64
    /// LSI.
    public var logSpecificIdentifier: UInt16
    /// Byte offset into the page (LPOU:LPOL).
    public var offset: UInt64

    public init(
        logPageIdentifier: UInt8,
        logSpecificParameter: UInt8 = 0,
        retainAsynchronousEvent: Bool = false,
        numberOfDwords: UInt64,
        logSpecificIdentifier: UInt16 = 0,
        offset: UInt64 = 0
    ) {
        self.logPageIdentifier = logPageIdentifier
        self.logSpecificParameter = logSpecificParameter
        self.retainAsynchronousEvent = retainAsynchronousEvent
        self.numberOfDwords = numberOfDwords
        self.logSpecificIdentifier = logSpecificIdentifier
        self.offset = offset
    }

    /// The Get Log Page view of `entry`.
    public init(_ entry: SubmissionQueueEntry) {
        self.logPageIdentifier = UInt8(truncatingIfNeeded: entry.cdw10)
        self.logSpecificParameter = UInt8(truncatingIfNeeded: entry.cdw10 >> 8) & 0x7F
        self.retainAsynchronousEvent = entry.cdw10 & (1 << 15) != 0
        self.numberOfDwords = UInt64((entry.cdw10 >> 16) | (entry.cdw11 & 0xFFFF) << 16) + 1
        self.logSpecificIdentifier = UInt16(truncatingIfNeeded: entry.cdw11 >> 16)
        self.offset = UInt64(entry.cdw12) | UInt64(entry.cdw13) << 32
    }

    /// Length in bytes.
    public var length: UInt64 { numberOfDwords * 4 }

    /// The SQE for this command, reading into a transport data block.
    public func submissionQueueEntry(commandIdentifier: UInt16) -> SubmissionQueueEntry {
        precondition((1...(1 << 32)).contains(numberOfDwords), "NUMD is 1...2^32 dwords")
        let numd = UInt32(numberOfDwords - 1)
        return SubmissionQueueEntry(
            opcode: AdminOpcode.getLogPage,
            commandIdentifier: commandIdentifier,
            dataPointer: .transport(length: UInt32(truncatingIfNeeded: length)),
            cdw10: UInt32(logPageIdentifier) | UInt32(logSpecificParameter & 0x7F) << 8
                | (retainAsynchronousEvent ? 1 << 15 : 0) | (numd & 0xFFFF) << 16,
            cdw11: (numd >> 16) | UInt32(logSpecificIdentifier) << 16,
            cdw12: UInt32(truncatingIfNeeded: offset),
            cdw13: UInt32(truncatingIfNeeded: offset >> 32)
        )
    }
}

/// Identify command fields (NVMe Base 2.1 §5.17, Figure 270).
public struct IdentifyCommand: Sendable, Hashable {
    /// CNS values DEM uses.
    public enum CNS {
        /// Identify Namespace.
        public static let namespace: UInt8 = 0x00
        /// Identify Controller.
        public static let controller: UInt8 = 0x01
    }
    /// CNS.
    public var controllerOrNamespaceStructure: UInt8
    /// CNTID.
    public var controllerIdentifier: UInt16

    public init(controllerOrNamespaceStructure: UInt8, controllerIdentifier: UInt16 = 0) {
        self.controllerOrNamespaceStructure = controllerOrNamespaceStructure
        self.controllerIdentifier = controllerIdentifier
    }

    /// The Identify view of `entry`.
    public init(_ entry: SubmissionQueueEntry) {
        self.controllerOrNamespaceStructure = UInt8(truncatingIfNeeded: entry.cdw10)
        self.controllerIdentifier = UInt16(truncatingIfNeeded: entry.cdw10 >> 16)
    }

    /// The SQE for this command; the 4096-byte structure comes back as C2H data.
    public func submissionQueueEntry(commandIdentifier: UInt16) -> SubmissionQueueEntry {
        SubmissionQueueEntry(
            opcode: AdminOpcode.identify,
            commandIdentifier: commandIdentifier,
            dataPointer: .transport(length: 4096),
            cdw10: UInt32(controllerOrNamespaceStructure) | UInt32(controllerIdentifier) << 16
        )
    }
}

/// Set Features / Get Features fields (NVMe Base 2.1 §5.27, §5.15).
public struct FeaturesCommand: Sendable, Hashable {
    /// FID.
    public var featureIdentifier: UInt8
    /// SV (Set) or SEL (Get, bits 10:8).
    public var saveOrSelect: UInt8
    /// CDW11: the value to set.
    public var value: UInt32

    public init(featureIdentifier: UInt8, saveOrSelect: UInt8 = 0, value: UInt32 = 0) {
        self.featureIdentifier = featureIdentifier
        self.saveOrSelect = saveOrSelect
        self.value = value
    }

    /// The Set Features view of `entry`.
    public init(setFeatures entry: SubmissionQueueEntry) {
        self.featureIdentifier = UInt8(truncatingIfNeeded: entry.cdw10)
        self.saveOrSelect = entry.cdw10 >> 31 == 1 ? 1 : 0
        self.value = entry.cdw11
    }

    /// The Get Features view of `entry`.
    public init(getFeatures entry: SubmissionQueueEntry) {
        self.featureIdentifier = UInt8(truncatingIfNeeded: entry.cdw10)
        self.saveOrSelect = UInt8(truncatingIfNeeded: entry.cdw10 >> 8) & 0x7
        self.value = entry.cdw11
    }

    /// The Set Features SQE.
    public func setFeaturesEntry(commandIdentifier: UInt16) -> SubmissionQueueEntry {
        SubmissionQueueEntry(
            opcode: AdminOpcode.setFeatures,
            commandIdentifier: commandIdentifier,
            cdw10: UInt32(featureIdentifier) | (saveOrSelect != 0 ? 1 << 31 : 0),
            cdw11: value
        )
    }

    /// The Get Features SQE.
    public func getFeaturesEntry(commandIdentifier: UInt16) -> SubmissionQueueEntry {
        SubmissionQueueEntry(
            opcode: AdminOpcode.getFeatures,
            commandIdentifier: commandIdentifier,
            cdw10: UInt32(featureIdentifier) | UInt32(saveOrSelect & 0x7) << 8
        )
    }
}

/// The Asynchronous Event Request completion's DW0 (NVMe Base 2.1 §5.2, Figure 150).
public struct AsynchronousEvent: Sendable, Hashable {
    /// Asynchronous event type (bits 2:0): 2h Notice.
    public var type: UInt8
    /// Asynchronous event information (bits 15:8).
    public var information: UInt8
    /// Log page identifier (bits 23:16).
    public var logPageIdentifier: UInt8

    public init(type: UInt8, information: UInt8, logPageIdentifier: UInt8) {
        self.type = type
        self.information = information
        self.logPageIdentifier = logPageIdentifier
    }

    /// Decodes DW0.
    public init(result: UInt32) {
        self.type = UInt8(result & 0x7)
        self.information = UInt8(truncatingIfNeeded: result >> 8)
        self.logPageIdentifier = UInt8(truncatingIfNeeded: result >> 16)
    }

    /// DW0.
    public var result: UInt32 {
        UInt32(type & 0x7) | UInt32(information) << 8 | UInt32(logPageIdentifier) << 16
    }

    /// Notice: Discovery Log Page Change, 0x70F002 (the `NVME_AEN` value Linux reports).
    public static let discoveryLogPageChange = AsynchronousEvent(type: 0x2, information: 0xF0, logPageIdentifier: 0x70)

    /// The SQE of an Asynchronous Event Request.
    public static func requestEntry(commandIdentifier: UInt16) -> SubmissionQueueEntry {
        SubmissionQueueEntry(opcode: AdminOpcode.asynchronousEventRequest, commandIdentifier: commandIdentifier)
    }

    /// The SQE of a Keep Alive.
    public static func keepAliveEntry(commandIdentifier: UInt16) -> SubmissionQueueEntry {
        SubmissionQueueEntry(opcode: AdminOpcode.keepAlive, commandIdentifier: commandIdentifier)
    }
}

/// Asynchronous Event Configuration bits (NVMe Base 2.1 §5.27.1.7, Figure 404).
public enum AsynchronousEventConfiguration {
    /// Discovery Log Page Change Notices (bit 31).
    public static let discoveryLogPageChange: UInt32 = 1 << 31
}
