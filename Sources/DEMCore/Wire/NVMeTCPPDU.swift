import NIOCore

/// NVMe/TCP PDU types (NVMe/TCP Transport Specification 1.0 §3.6.1, Figure 17).
public enum NVMeTCPPDUType: UInt8, Sendable, CaseIterable {
    case initializeConnectionRequest = 0x00
    case initializeConnectionResponse = 0x01
    case hostToControllerTerminationRequest = 0x02
    case controllerToHostTerminationRequest = 0x03
    case capsuleCommand = 0x04
    case capsuleResponse = 0x05
    case hostToControllerData = 0x06
    case controllerToHostData = 0x07
    case readyToTransfer = 0x09

    /// The fixed HLEN of this PDU type (NVMe/TCP 1.0 §3.6.2).
    public var headerLength: Int {
        switch self {
        case .initializeConnectionRequest, .initializeConnectionResponse: return 128
        case .capsuleCommand: return 72
        case .hostToControllerTerminationRequest, .controllerToHostTerminationRequest, .capsuleResponse,
            .hostToControllerData, .controllerToHostData, .readyToTransfer:
            return 24
        }
    }

    /// Whether a header digest follows this PDU's header when header digests are enabled.
    public var carriesHeaderDigest: Bool {
        switch self {
        case .initializeConnectionRequest, .initializeConnectionResponse, .hostToControllerTerminationRequest,
            .controllerToHostTerminationRequest:
            return false
        default: return true
        }
    }

    /// Whether this PDU travels from host to controller.
    public var isHostToController: Bool {
        switch self {
        case .initializeConnectionRequest, .hostToControllerTerminationRequest, .capsuleCommand, .hostToControllerData:
            return true
        default: return false
        }
    }
}

/// PDU-specific flags of the common header (NVMe/TCP 1.0 §3.6.1, Figure 16).
public struct NVMeTCPHeaderFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// HDGSTF: a header digest follows the header.
    public static let headerDigest = NVMeTCPHeaderFlags(rawValue: 0x01)
    /// DDGSTF: a data digest follows the data.
    public static let dataDigest = NVMeTCPHeaderFlags(rawValue: 0x02)
    /// LAST_PDU: last data PDU of a transfer (H2CData, C2HData).
    public static let lastPDU = NVMeTCPHeaderFlags(rawValue: 0x04)
    /// SUCCESS: the command completed successfully, no CapsuleResp follows (C2HData).
    public static let success = NVMeTCPHeaderFlags(rawValue: 0x08)
}

/// The digests negotiated in ICReq/ICResp (the DGST field, NVMe/TCP 1.0 §3.6.2.2).
public struct NVMeTCPDigests: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// HDGST_ENABLE.
    public static let header = NVMeTCPDigests(rawValue: 0x01)
    /// DDGST_ENABLE.
    public static let data = NVMeTCPDigests(rawValue: 0x02)
}

/// The 8-byte common header every PDU starts with (NVMe/TCP 1.0 §3.6.1, Figure 15).
public struct NVMeTCPCommonHeader: Sendable, Hashable {
    /// Size of the common header in bytes.
    public static let size = 8
    /// PDU-TYPE, as received (may be a value outside ``NVMeTCPPDUType``).
    public var rawType: UInt8
    /// FLAGS.
    public var flags: NVMeTCPHeaderFlags
    /// HLEN: length of the PDU header, without the header digest.
    public var headerLength: UInt8
    /// PDO: offset of the PDU data from the start of the PDU, 0 if the PDU has no data.
    public var dataOffset: UInt8
    /// PLEN: length of the whole PDU, header, digests, padding and data included.
    public var length: UInt32

    /// The decoded PDU type, `nil` for a reserved value.
    public var type: NVMeTCPPDUType? { NVMeTCPPDUType(rawValue: rawType) }

    public init(rawType: UInt8, flags: NVMeTCPHeaderFlags, headerLength: UInt8, dataOffset: UInt8, length: UInt32) {
        self.rawType = rawType
        self.flags = flags
        self.headerLength = headerLength
        self.dataOffset = dataOffset
        self.length = length
    }
}

/// ICReq: the host's Initialize Connection Request (NVMe/TCP 1.0 §3.6.2.2, Figure 20).
public struct InitializeConnectionRequest: Sendable, Hashable {
    /// PFV: PDU format version, 0 for NVMe/TCP 1.0.
    public var pduFormatVersion: UInt16
    /// HPDA: host PDU data alignment, in dwords minus one, that the host wants for C2H data.
    public var hostPDUDataAlignment: UInt8
    /// DGST: the digests the host asks for.
    public var digests: NVMeTCPDigests
    /// MAXR2T: maximum outstanding R2T PDUs per command, zero-based.
    public var maximumR2TOutstanding: UInt32

    public init(
        pduFormatVersion: UInt16 = 0,
        hostPDUDataAlignment: UInt8 = 0,
        digests: NVMeTCPDigests = [],
        maximumR2TOutstanding: UInt32 = 0
    ) {
        self.pduFormatVersion = pduFormatVersion
        self.hostPDUDataAlignment = hostPDUDataAlignment
        self.digests = digests
        self.maximumR2TOutstanding = maximumR2TOutstanding
    }
}

/// ICResp: the controller's Initialize Connection Response (NVMe/TCP 1.0 §3.6.2.3, Figure 21).
public struct InitializeConnectionResponse: Sendable, Hashable {
    /// PFV: PDU format version, 0 for NVMe/TCP 1.0.
    public var pduFormatVersion: UInt16
    /// CPDA: controller PDU data alignment, in dwords minus one, for H2C data.
    public var controllerPDUDataAlignment: UInt8
    /// DGST: the digests enabled on this connection.
    public var digests: NVMeTCPDigests
    /// MAXH2CDATA: the most data bytes one H2CData PDU may carry.
    public var maximumH2CDataLength: UInt32

    public init(
        pduFormatVersion: UInt16 = 0,
        controllerPDUDataAlignment: UInt8 = 0,
        digests: NVMeTCPDigests = [],
        maximumH2CDataLength: UInt32
    ) {
        self.pduFormatVersion = pduFormatVersion
        self.controllerPDUDataAlignment = controllerPDUDataAlignment
        self.digests = digests
        self.maximumH2CDataLength = maximumH2CDataLength
    }
}

/// FES, the fatal error status of a termination request (NVMe/TCP 1.0 §3.6.2.4, Figure 23).
public struct NVMeTCPFatalErrorStatus: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    /// 01h Invalid PDU Header Field; FEI is the byte offset of the field.
    public static let invalidHeaderField = Self(rawValue: 0x01)
    /// 02h PDU Sequence Error: the PDU is not allowed in the connection's state.
    public static let pduSequenceError = Self(rawValue: 0x02)
    /// 03h Header Digest Error; FEI is the digest received.
    public static let headerDigestError = Self(rawValue: 0x03)
    /// 04h Data Transfer Out of Range.
    public static let dataTransferOutOfRange = Self(rawValue: 0x04)
    /// 05h Data Transfer Limit Exceeded (more data than MAXH2CDATA allows).
    public static let dataTransferLimitExceeded = Self(rawValue: 0x05)
    /// 06h Unsupported Parameter; FEI is the byte offset of the parameter.
    public static let unsupportedParameter = Self(rawValue: 0x06)

    public var description: String {
        switch self {
        case .invalidHeaderField: return "invalid PDU header field"
        case .pduSequenceError: return "PDU sequence error"
        case .headerDigestError: return "header digest error"
        case .dataTransferOutOfRange: return "data transfer out of range"
        case .dataTransferLimitExceeded: return "data transfer limit exceeded"
        case .unsupportedParameter: return "unsupported parameter"
        default: return "FES \(rawValue)"
        }
    }
}

/// H2CTermReq or C2HTermReq: a fatal transport error, after which the sender closes the
/// connection (NVMe/TCP 1.0 §3.6.2.4, §3.6.2.5).
public struct TerminationRequest: Sendable, Hashable {
    /// The largest "PDU in error" excerpt a termination request carries (PLEN at most 152).
    public static let maximumErrorDataLength = 128
    /// FES.
    public var status: NVMeTCPFatalErrorStatus
    /// FEI: field error information (an offset or the received digest, by FES).
    public var fieldErrorInformation: UInt32
    /// The header of the PDU in error, up to ``maximumErrorDataLength`` bytes.
    public var pduInError: ByteBuffer

    public init(status: NVMeTCPFatalErrorStatus, fieldErrorInformation: UInt32, pduInError: ByteBuffer) {
        self.status = status
        self.fieldErrorInformation = fieldErrorInformation
        self.pduInError = pduInError
    }
}

/// CapsuleCmd: a command capsule, the SQE and optional in-capsule data (NVMe/TCP 1.0 §3.6.2.6).
public struct CapsuleCommand: Sendable, Hashable {
    /// The 64-byte submission queue entry.
    public var command: SubmissionQueueEntry
    /// In-capsule data, if any.
    public var data: ByteBuffer?
    /// Set by the parser when the data digest did not match the data received.
    public var dataDigestMismatch: Bool

    public init(command: SubmissionQueueEntry, data: ByteBuffer? = nil, dataDigestMismatch: Bool = false) {
        self.command = command
        self.data = data
        self.dataDigestMismatch = dataDigestMismatch
    }
}

/// CapsuleResp: a response capsule carrying one CQE (NVMe/TCP 1.0 §3.6.2.7).
public struct CapsuleResponse: Sendable, Hashable {
    /// The 16-byte completion queue entry.
    public var completion: CompletionQueueEntry
    public init(completion: CompletionQueueEntry) { self.completion = completion }
}

/// H2CData: data the host sends after an R2T (NVMe/TCP 1.0 §3.6.2.8, Figure 28).
public struct HostToControllerData: Sendable, Hashable {
    /// CCCID: the command this data belongs to.
    public var commandIdentifier: UInt16
    /// TTAG: the transfer tag of the R2T.
    public var transferTag: UInt16
    /// DATAO: offset of this data within the command's data.
    public var dataOffset: UInt32
    /// The data (DATAL bytes).
    public var data: ByteBuffer
    /// LAST_PDU.
    public var isLast: Bool
    /// Set by the parser when the data digest did not match.
    public var dataDigestMismatch: Bool

    public init(
        commandIdentifier: UInt16,
        transferTag: UInt16,
        dataOffset: UInt32,
        data: ByteBuffer,
        isLast: Bool,
        dataDigestMismatch: Bool = false
    ) {
        self.commandIdentifier = commandIdentifier
        self.transferTag = transferTag
        self.dataOffset = dataOffset
        self.data = data
        self.isLast = isLast
        self.dataDigestMismatch = dataDigestMismatch
    }
}

/// C2HData: data the controller returns for a command (NVMe/TCP 1.0 §3.6.2.9, Figure 29).
public struct ControllerToHostData: Sendable, Hashable {
    /// CCCID: the command this data belongs to.
    public var commandIdentifier: UInt16
    /// DATAO: offset of this data within the command's data.
    public var dataOffset: UInt32
    /// The data (DATAL bytes).
    public var data: ByteBuffer
    /// LAST_PDU.
    public var isLast: Bool
    /// SUCCESS: the command completed and no CapsuleResp follows.
    public var isSuccess: Bool
    /// Set by the parser when the data digest did not match.
    public var dataDigestMismatch: Bool

    public init(
        commandIdentifier: UInt16,
        dataOffset: UInt32,
        data: ByteBuffer,
        isLast: Bool,
        isSuccess: Bool = false,
        dataDigestMismatch: Bool = false
    ) {
        self.commandIdentifier = commandIdentifier
        self.dataOffset = dataOffset
        self.data = data
        self.isLast = isLast
        self.isSuccess = isSuccess
        self.dataDigestMismatch = dataDigestMismatch
    }
}

/// R2T: the controller asks for a range of a command's data (NVMe/TCP 1.0 §3.6.2.10, Figure 30).
public struct ReadyToTransfer: Sendable, Hashable {
    /// CCCID.
    public var commandIdentifier: UInt16
    /// TTAG.
    public var transferTag: UInt16
    /// R2TO: offset of the requested data.
    public var offset: UInt32
    /// R2TL: length of the requested data.
    public var length: UInt32

    public init(commandIdentifier: UInt16, transferTag: UInt16, offset: UInt32, length: UInt32) {
        self.commandIdentifier = commandIdentifier
        self.transferTag = transferTag
        self.offset = offset
        self.length = length
    }
}

/// One NVMe/TCP PDU.
public enum NVMeTCPPDU: Sendable, Hashable {
    case initializeConnectionRequest(InitializeConnectionRequest)
    case initializeConnectionResponse(InitializeConnectionResponse)
    case hostToControllerTerminationRequest(TerminationRequest)
    case controllerToHostTerminationRequest(TerminationRequest)
    case capsuleCommand(CapsuleCommand)
    case capsuleResponse(CapsuleResponse)
    case hostToControllerData(HostToControllerData)
    case controllerToHostData(ControllerToHostData)
    case readyToTransfer(ReadyToTransfer)

    /// The PDU type.
    public var type: NVMeTCPPDUType {
        switch self {
        case .initializeConnectionRequest: return .initializeConnectionRequest
        case .initializeConnectionResponse: return .initializeConnectionResponse
        case .hostToControllerTerminationRequest: return .hostToControllerTerminationRequest
        case .controllerToHostTerminationRequest: return .controllerToHostTerminationRequest
        case .capsuleCommand: return .capsuleCommand
        case .capsuleResponse: return .capsuleResponse
        case .hostToControllerData: return .hostToControllerData
        case .controllerToHostData: return .controllerToHostData
        case .readyToTransfer: return .readyToTransfer
        }
    }
}

/// A fatal NVMe/TCP transport error: the PDU cannot be accepted, the connection must end with a
/// termination request carrying ``status`` and ``fieldErrorInformation``.
public struct NVMeTCPTransportError: Error, Sendable, Hashable, CustomStringConvertible {
    /// FES to report.
    public var status: NVMeTCPFatalErrorStatus
    /// FEI to report.
    public var fieldErrorInformation: UInt32
    /// The (start of the) header of the offending PDU.
    public var pduHeader: ByteBuffer
    /// What was wrong, for logs.
    public var reason: String

    public init(
        _ status: NVMeTCPFatalErrorStatus,
        fieldErrorInformation: UInt32 = 0,
        pduHeader: ByteBuffer = ByteBuffer(),
        reason: String
    ) {
        self.status = status
        self.fieldErrorInformation = fieldErrorInformation
        self.pduHeader = pduHeader
        self.reason = reason
    }

    public var description: String { "NVMe/TCP \(status) (FEI \(fieldErrorInformation)): \(reason)" }

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.status == rhs.status && lhs.fieldErrorInformation == rhs.fieldErrorInformation
    }
    public func hash(into hasher: inout Hasher) {
        hasher.combine(status)
        hasher.combine(fieldErrorInformation)
    }

    /// The termination request that reports this error.
    public var terminationRequest: TerminationRequest {
        var header = pduHeader
        if header.readableBytes > TerminationRequest.maximumErrorDataLength {
            header = header.getSlice(at: header.readerIndex, length: TerminationRequest.maximumErrorDataLength)!
        }
        return TerminationRequest(status: status, fieldErrorInformation: fieldErrorInformation, pduInError: header)
    }
}
