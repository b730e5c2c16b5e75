import NIOCore

extension NVMeTCPPDU {
    /// Parses one whole PDU (exactly PLEN bytes, as cut by ``NVMeTCPFrameDecoder``).
    ///
    /// Checks the common header against the PDU type (HLEN, PDO, PLEN, digest flags), verifies the
    /// header digest, and reports a data digest mismatch in the PDU (``CapsuleCommand/dataDigestMismatch``)
    /// so that one command can fail while the connection goes on (NVMe/TCP 1.0 §3.6.2, §7.4.2).
    ///
    /// - Parameters:
    ///   - frame: the PDU bytes.
    ///   - digests: the digests negotiated on the connection (empty before ICReq/ICResp).
    /// - Throws: ``NVMeTCPTransportError`` with the FES and FEI the termination request must carry.
    public static func decode(frame: ByteBuffer, digests: NVMeTCPDigests) throws(NVMeTCPTransportError) -> NVMeTCPPDU {
        let base = frame.readerIndex
        let plen = frame.readableBytes
        func headerExcerpt(_ length: Int) -> ByteBuffer {
            frame.getSlice(at: base, length: min(length, plen, TerminationRequest.maximumErrorDataLength))
                ?? ByteBuffer()
        }
        guard plen >= NVMeTCPCommonHeader.size else {
            throw NVMeTCPTransportError(
                .invalidHeaderField,
                fieldErrorInformation: 4,
                pduHeader: headerExcerpt(plen),
                reason: "PDU shorter than the common header"
            )
        }
        let rawType: UInt8 = frame.le(base)
        let flags = NVMeTCPHeaderFlags(rawValue: frame.le(base + 1))
        let hlen = Int(frame.le(base + 2, as: UInt8.self))
        let pdo = Int(frame.le(base + 3, as: UInt8.self))
        let declaredLength = Int(frame.le(base + 4, as: UInt32.self))
        func fail(
            _ status: NVMeTCPFatalErrorStatus,
            _ fei: Int,
            _ reason: String
        ) -> NVMeTCPTransportError {
            NVMeTCPTransportError(
                status,
                fieldErrorInformation: UInt32(truncatingIfNeeded: fei),
                pduHeader: headerExcerpt(max(hlen, NVMeTCPCommonHeader.size)),
                reason: reason
            )
        }
        guard let type = NVMeTCPPDUType(rawValue: rawType) else {
            throw fail(.invalidHeaderField, 0, "unknown PDU type \(rawType)")
        }
        guard hlen == type.headerLength else {
            throw fail(.invalidHeaderField, 2, "HLEN \(hlen) is not \(type.headerLength) for \(type)")
        }
        guard declaredLength == plen else {
            throw fail(.invalidHeaderField, 4, "PLEN \(declaredLength) does not match the \(plen) bytes framed")
        }
        guard plen >= hlen else {
            throw fail(.invalidHeaderField, 4, "PLEN \(plen) shorter than HLEN \(hlen)")
        }

        // Termination requests: no digests, the PDU in error follows the header directly.
        if type == .hostToControllerTerminationRequest || type == .controllerToHostTerminationRequest {
            guard plen <= hlen + TerminationRequest.maximumErrorDataLength else {
                throw fail(.invalidHeaderField, 4, "termination request PLEN \(plen) above 152")
            }
            let request = TerminationRequest(
                status: NVMeTCPFatalErrorStatus(rawValue: frame.le(base + 8)),
                fieldErrorInformation: frame.le(base + 10),
                pduInError: frame.getSlice(at: base + hlen, length: plen - hlen)!
            )
            return type == .hostToControllerTerminationRequest
                ? .hostToControllerTerminationRequest(request) : .controllerToHostTerminationRequest(request)
        }

        let headerDigest = digests.contains(.header) && type.carriesHeaderDigest
        guard flags.contains(.headerDigest) == headerDigest else {
            throw fail(
                .invalidHeaderField,
                1,
                headerDigest ? "HDGSTF missing although header digests are on" : "HDGSTF set but header digests are off"
            )
        }
        if flags.contains(.dataDigest) && !(digests.contains(.data) && type.carriesHeaderDigest) {
            throw fail(.invalidHeaderField, 1, "DDGSTF set but data digests are off")
        }
        let headerEnd = hlen + (headerDigest ? 4 : 0)
        guard plen >= headerEnd else {
            throw fail(.invalidHeaderField, 4, "PLEN \(plen) shorter than the header and its digest")
        }
        if headerDigest {
            let received: UInt32 = frame.le(base + hlen)
            let computed = CRC32C.checksum(frame, at: base, length: hlen)
            guard received == computed else {
                throw fail(.headerDigestError, Int(received), "header digest \(received) is not \(computed)")
            }
        }

        // The data section.
        var data: ByteBuffer? = nil
        var dataDigestMismatch = false
        if pdo != 0 {
            guard pdo >= headerEnd, pdo <= plen else {
                throw fail(.invalidHeaderField, 3, "PDO \(pdo) outside \(headerEnd)...\(plen)")
            }
            let dataDigest = flags.contains(.dataDigest)
            let dataEnd = plen - (dataDigest ? 4 : 0)
            guard dataEnd >= pdo else {
                throw fail(.invalidHeaderField, 4, "PLEN \(plen) leaves no room for the data digest")
            }
            let slice = frame.getSlice(at: base + pdo, length: dataEnd - pdo)!
            if digests.contains(.data) && slice.readableBytes > 0 && !dataDigest {
                throw fail(.invalidHeaderField, 1, "DDGSTF missing although data digests are on")
            }
            if dataDigest {
                let received: UInt32 = frame.le(base + dataEnd)
                dataDigestMismatch = received != CRC32C.checksum(frame, at: base + pdo, length: dataEnd - pdo)
            }
            data = slice
        } else if plen != headerEnd {
            throw fail(.invalidHeaderField, 4, "PLEN \(plen) with no data should be \(headerEnd)")
        }

        switch type {
        case .initializeConnectionRequest:
            guard data == nil else { throw fail(.invalidHeaderField, 3, "ICReq carries no data") }
            return .initializeConnectionRequest(
                InitializeConnectionRequest(
                    pduFormatVersion: frame.le(base + 8),
                    hostPDUDataAlignment: frame.le(base + 10),
                    digests: NVMeTCPDigests(rawValue: frame.le(base + 11)),
                    maximumR2TOutstanding: frame.le(base + 12)
                )
            )
        case .initializeConnectionResponse:
            guard data == nil else { throw fail(.invalidHeaderField, 3, "ICResp carries no data") }
            return .initializeConnectionResponse(
                InitializeConnectionResponse(
                    pduFormatVersion: frame.le(base + 8),
                    controllerPDUDataAlignment: frame.le(base + 10),
                    digests: NVMeTCPDigests(rawValue: frame.le(base + 11)),
                    maximumH2CDataLength: frame.le(base + 12)
                )
            )
        case .capsuleCommand:
            let command = frame.getSubmissionQueueEntry(at: base + 8)!
            return .capsuleCommand(
                CapsuleCommand(command: command, data: data, dataDigestMismatch: dataDigestMismatch)
            )
        case .capsuleResponse:
            guard data == nil else { throw fail(.invalidHeaderField, 3, "CapsuleResp carries no data") }
            return .capsuleResponse(CapsuleResponse(completion: frame.getCompletionQueueEntry(at: base + 8)!))
        case .hostToControllerData:
            let length = Int(frame.le(base + 16, as: UInt32.self))
            let payload = data ?? ByteBuffer()
            guard length == payload.readableBytes else {
                throw fail(.invalidHeaderField, 16, "DATAL \(length) is not the \(payload.readableBytes) bytes sent")
            }
            return .hostToControllerData(
                HostToControllerData(
                    commandIdentifier: frame.le(base + 8),
                    transferTag: frame.le(base + 10),
                    dataOffset: frame.le(base + 12),
                    data: payload,
                    isLast: flags.contains(.lastPDU),
                    dataDigestMismatch: dataDigestMismatch
                )
            )
        case .controllerToHostData:
            let length = Int(frame.le(base + 16, as: UInt32.self))
            let payload = data ?? ByteBuffer()
            guard length == payload.readableBytes else {
                throw fail(.invalidHeaderField, 16, "DATAL \(length) is not the \(payload.readableBytes) bytes sent")
            }
            return .controllerToHostData(
                ControllerToHostData(
                    commandIdentifier: frame.le(base + 8),
                    dataOffset: frame.le(base + 12),
                    data: payload,
                    isLast: flags.contains(.lastPDU),
                    isSuccess: flags.contains(.success),
                    dataDigestMismatch: dataDigestMismatch
                )
            )
        case .readyToTransfer:
            guard data == nil else { throw fail(.invalidHeaderField, 3, "R2T carries no data") }
            return .readyToTransfer(
                ReadyToTransfer(
                    commandIdentifier: frame.le(base + 8),
                    transferTag: frame.le(base + 10),
                    offset: frame.le(base + 12),
                    length: frame.le(base + 16)
                )
            )
        case .hostToControllerTerminationRequest, .controllerToHostTerminationRequest:
            preconditionFailure("handled above")
        }
    }
}

extension ByteBuffer {
    /// Writes one PDU: common header, PDU header, header digest, padding to `dataAlignment`, data
    /// and data digest, as negotiated (NVMe/TCP 1.0 §3.6.1–3.6.2).
    ///
    /// - Parameters:
    ///   - pdu: the PDU.
    ///   - digests: the digests enabled on the connection; ignored for ICReq, ICResp and TermReq.
    ///   - dataAlignment: the receiver's PDU data alignment in bytes, `(HPDA or CPDA + 1) * 4`.
    /// - Returns: the number of bytes written.
    @discardableResult
    public mutating func writeNVMeTCPPDU(
        _ pdu: NVMeTCPPDU,
        digests: NVMeTCPDigests = [],
        dataAlignment: Int = 4
    ) -> Int {
        let start = writerIndex
        let type = pdu.type
        let hlen = type.headerLength
        let headerDigest = digests.contains(.header) && type.carriesHeaderDigest
        var flags: NVMeTCPHeaderFlags = headerDigest ? .headerDigest : []
        var data: ByteBuffer? = nil
        switch pdu {
        case .hostToControllerData(let pdu): if pdu.isLast { flags.insert(.lastPDU) }
        case .controllerToHostData(let pdu):
            if pdu.isLast { flags.insert(.lastPDU) }
            if pdu.isSuccess { flags.insert(.success) }
        default: break
        }
        switch pdu {
        case .capsuleCommand(let capsule): data = capsule.data
        case .hostToControllerData(let pdu): data = pdu.data
        case .controllerToHostData(let pdu): data = pdu.data
        default: break
        }
        let hasData = (data?.readableBytes ?? 0) > 0
        let dataDigest = hasData && digests.contains(.data) && type.carriesHeaderDigest
        if dataDigest { flags.insert(.dataDigest) }

        // Common header; PDO and PLEN are set once known.
        writeInteger(type.rawValue)
        writeInteger(flags.rawValue)
        writeInteger(UInt8(hlen))
        writeInteger(UInt8(0))
        writeInteger(UInt32(0), endianness: .little)

        switch pdu {
        case .initializeConnectionRequest(let request):
            writeInteger(request.pduFormatVersion, endianness: .little)
            writeInteger(request.hostPDUDataAlignment)
            writeInteger(request.digests.rawValue)
            writeInteger(request.maximumR2TOutstanding, endianness: .little)
        case .initializeConnectionResponse(let response):
            writeInteger(response.pduFormatVersion, endianness: .little)
            writeInteger(response.controllerPDUDataAlignment)
            writeInteger(response.digests.rawValue)
            writeInteger(response.maximumH2CDataLength, endianness: .little)
        case .hostToControllerTerminationRequest(let request), .controllerToHostTerminationRequest(let request):
            writeInteger(request.status.rawValue, endianness: .little)
            writeInteger(request.fieldErrorInformation, endianness: .little)
        case .capsuleCommand(let capsule):
            writeSubmissionQueueEntry(capsule.command)
        case .capsuleResponse(let response):
            writeCompletionQueueEntry(response.completion)
        case .hostToControllerData(let pdu):
            writeInteger(pdu.commandIdentifier, endianness: .little)
            writeInteger(pdu.transferTag, endianness: .little)
            writeInteger(pdu.dataOffset, endianness: .little)
            writeInteger(UInt32(pdu.data.readableBytes), endianness: .little)
        case .controllerToHostData(let pdu):
            writeInteger(pdu.commandIdentifier, endianness: .little)
            writeInteger(UInt16(0), endianness: .little)
            writeInteger(pdu.dataOffset, endianness: .little)
            writeInteger(UInt32(pdu.data.readableBytes), endianness: .little)
        case .readyToTransfer(let r2t):
            writeInteger(r2t.commandIdentifier, endianness: .little)
            writeInteger(r2t.transferTag, endianness: .little)
            writeInteger(r2t.offset, endianness: .little)
            writeInteger(r2t.length, endianness: .little)
        }
        writeZeros(start + hlen - writerIndex)
        // PDO is covered by the header digest, so it is fixed before the digest is computed.
        let unpadded = hlen + (headerDigest ? 4 : 0)
        let alignment = max(dataAlignment, 1)
        let pdo = hasData ? (unpadded + alignment - 1) / alignment * alignment : 0
        setInteger(UInt8(truncatingIfNeeded: pdo), at: start + 3)
        // So is PLEN.
        var length = hlen
        switch pdu {
        case .hostToControllerTerminationRequest(let request), .controllerToHostTerminationRequest(let request):
            length += min(request.pduInError.readableBytes, TerminationRequest.maximumErrorDataLength)
        default:
            length = hasData ? pdo + data!.readableBytes + (dataDigest ? 4 : 0) : unpadded
        }
        setInteger(UInt32(length), at: start + 4, endianness: .little)
        if headerDigest {
            writeInteger(CRC32C.checksum(self, at: start, length: hlen), endianness: .little)
        }

        switch pdu {
        case .hostToControllerTerminationRequest(let request), .controllerToHostTerminationRequest(let request):
            var excerpt = request.pduInError
            if excerpt.readableBytes > TerminationRequest.maximumErrorDataLength {
                excerpt = excerpt.getSlice(at: excerpt.readerIndex, length: TerminationRequest.maximumErrorDataLength)!
            }
            writeImmutableBuffer(excerpt)
        default:
            if hasData, let data {
                writeZeros(pdo - unpadded)
                let dataStart = writerIndex
                writeImmutableBuffer(data)
                if dataDigest {
                    writeInteger(
                        CRC32C.checksum(self, at: dataStart, length: data.readableBytes),
                        endianness: .little
                    )
                }
            }
        }
        assert(writerIndex - start == length, "PLEN computed before the header digest must match")
        return length
    }
}
