import NIOCore

/// Cuts the byte stream of an NVMe/TCP connection into whole PDUs by the common header's PLEN
/// (NVMe/TCP 1.0 §3.6.1). It parses nothing else; ``NVMeTCPPDU/decode(frame:digests:)`` does.
///
/// Before any byte of a PDU body is buffered, PLEN is checked: below HLEN's minimum (8), above
/// ``maximumPDULength``, or, for the first PDU of a connection, anything but an ICReq's 128 bytes,
/// is an ``NVMeTCPTransportError`` — so a peer can never make the decoder buffer more than one
/// legal PDU.
public struct NVMeTCPFrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = ByteBuffer

    /// The largest PDU accepted.
    public let maximumPDULength: Int
    /// The PLEN the first PDU must have (128 for the controller side: an ICReq), or `nil`.
    private var firstPDULength: Int?
    /// Whether to tell the next handler when a PDU has begun and not ended (``PartialPDU``).
    private let reportsPartialPDUs: Bool
    private var partial = false

    /// The user event a decoder that reports partial PDUs fires: a PDU has begun (some of its
    /// bytes arrived, not all), or no PDU is partly received any more.
    public enum PartialPDU: Sendable, Hashable {
        case begun
        case none
    }

    /// - Parameters:
    ///   - maximumPDULength: the largest PLEN to accept.
    ///   - firstPDULength: the exact PLEN of the first PDU (128 on a controller), `nil` for no rule.
    ///   - reportsPartialPDUs: fire ``PartialPDU`` events when a PDU begins and when none is
    ///     partly received any more (so a controller can bound how long a PDU may take).
    public init(maximumPDULength: Int, firstPDULength: Int? = nil, reportsPartialPDUs: Bool = false) {
        self.maximumPDULength = maximumPDULength
        self.firstPDULength = firstPDULength
        self.reportsPartialPDUs = reportsPartialPDUs
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try nextFrame(&buffer) else {
            if reportsPartialPDUs, partial != (buffer.readableBytes > 0) {
                partial.toggle()
                context.fireUserInboundEventTriggered(partial ? PartialPDU.begun : PartialPDU.none)
            }
            return .needMoreData
        }
        context.fireChannelRead(Self.wrapInboundOut(frame))
        // A PDU that ends exactly where the bytes received end: the handler does not call
        // decode again on an empty buffer, so the PDU that was begun is reported ended here.
        if reportsPartialPDUs, partial, buffer.readableBytes == 0 {
            partial = false
            context.fireUserInboundEventTriggered(PartialPDU.none)
        }
        return .continue
    }

    public mutating func decodeLast(
        context: ChannelHandlerContext,
        buffer: inout ByteBuffer,
        seenEOF: Bool
    ) throws -> DecodingState {
        // A PDU cut short by EOF is dropped: the connection is gone.
        try decode(context: context, buffer: &buffer)
    }

    /// Takes the next whole PDU off `buffer`, or returns `nil` when more bytes are needed.
    /// - Throws: ``NVMeTCPTransportError`` for a PLEN that can never be valid.
    public mutating func nextFrame(_ buffer: inout ByteBuffer) throws(NVMeTCPTransportError) -> ByteBuffer? {
        guard buffer.readableBytes >= NVMeTCPCommonHeader.size else { return nil }
        let start = buffer.readerIndex
        let length = Int(buffer.le(start + 4, as: UInt32.self))
        let commonHeader = buffer.getSlice(at: start, length: NVMeTCPCommonHeader.size)!
        if let first = firstPDULength, length != first {
            throw NVMeTCPTransportError(
                .invalidHeaderField,
                fieldErrorInformation: 4,
                pduHeader: commonHeader,
                reason: "first PDU has PLEN \(length), an ICReq has \(first)"
            )
        }
        guard length >= NVMeTCPCommonHeader.size else {
            throw NVMeTCPTransportError(
                .invalidHeaderField,
                fieldErrorInformation: 4,
                pduHeader: commonHeader,
                reason: "PLEN \(length) is shorter than the common header"
            )
        }
        guard length <= maximumPDULength else {
            let rawType: UInt8 = buffer.le(start)
            let isData = rawType == NVMeTCPPDUType.hostToControllerData.rawValue
            throw NVMeTCPTransportError(
                isData ? .dataTransferLimitExceeded : .invalidHeaderField,
                fieldErrorInformation: isData ? 0 : 4,
                pduHeader: commonHeader,
                reason: "PLEN \(length) exceeds the limit of \(maximumPDULength) bytes"
            )
        }
        guard buffer.readableBytes >= length else { return nil }
        firstPDULength = nil
        return buffer.readSlice(length: length)
    }
}
