import DEMCore
import NIOCore
import Testing

/// A PDU to round-trip, named for the test report.
struct PDUSample: Sendable, CustomTestStringConvertible {
    var name: String
    var pdu: NVMeTCPPDU
    var testDescription: String { name }

    static func pattern(_ count: Int, seed: UInt8 = 1) -> ByteBuffer {
        ByteBuffer(bytes: (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ Int(seed)) })
    }

    static let all: [PDUSample] = [
        PDUSample(
            name: "ICReq",
            pdu: HostPDU.icreq(hostPDUDataAlignment: 31, digests: [.header, .data], maximumR2TOutstanding: 0x1234_5678)
        ),
        PDUSample(
            name: "ICResp",
            pdu: .initializeConnectionResponse(
                InitializeConnectionResponse(
                    controllerPDUDataAlignment: 7,
                    digests: .header,
                    maximumH2CDataLength: 131_072
                )
            )
        ),
        PDUSample(
            name: "H2CTermReq",
            pdu: .hostToControllerTerminationRequest(
                TerminationRequest(
                    status: .headerDigestError,
                    fieldErrorInformation: 0xDEAD_BEEF,
                    pduInError: pattern(24)
                )
            )
        ),
        PDUSample(
            name: "C2HTermReq (128-byte PDU in error)",
            pdu: .controllerToHostTerminationRequest(
                TerminationRequest(
                    status: .invalidHeaderField,
                    fieldErrorInformation: 4,
                    pduInError: pattern(128, seed: 9)
                )
            )
        ),
        PDUSample(
            name: "CapsuleCmd without data",
            pdu: HostPDU.command(
                SubmissionQueueEntry(
                    opcode: 0x02,
                    flags: 0x40,
                    commandIdentifier: 0xBEEF,
                    namespaceIdentifier: 0xFFFF_FFFF,
                    cdw2: 2,
                    cdw3: 3,
                    metadataPointer: 0x0102_0304_0506_0708,
                    dataPointer: .transport(length: 4096),
                    cdw10: 10,
                    cdw11: 11,
                    cdw12: 12,
                    cdw13: 13,
                    cdw14: 14,
                    cdw15: 15
                )
            )
        ),
        PDUSample(name: "CapsuleCmd with in-capsule data (Connect)", pdu: HostPDU.connect(cid: 3)),
        PDUSample(
            name: "CapsuleCmd with 5 bytes of in-capsule data",
            pdu: HostPDU.command(
                SubmissionQueueEntry(opcode: 0x7F, dataPointer: .inCapsule(length: 5)),
                data: pattern(5)
            )
        ),
        PDUSample(
            name: "CapsuleResp",
            pdu: .capsuleResponse(
                CapsuleResponse(
                    completion: CompletionQueueEntry(
                        result: 0x0102_0304,
                        dw1: 0x0506_0708,
                        submissionQueueHead: 31,
                        submissionQueueIdentifier: 0,
                        commandIdentifier: 0x1234,
                        status: NVMeStatus.connectInvalidParameters.withDoNotRetry
                    )
                )
            )
        ),
        PDUSample(
            name: "H2CData (LAST_PDU)",
            pdu: .hostToControllerData(
                HostToControllerData(
                    commandIdentifier: 7,
                    transferTag: 0x55,
                    dataOffset: 4096,
                    data: pattern(100),
                    isLast: true
                )
            )
        ),
        PDUSample(
            name: "H2CData (not last)",
            pdu: .hostToControllerData(
                HostToControllerData(
                    commandIdentifier: 7,
                    transferTag: 1,
                    dataOffset: 0,
                    data: pattern(4096),
                    isLast: false
                )
            )
        ),
        PDUSample(
            name: "C2HData (LAST_PDU | SUCCESS)",
            pdu: .controllerToHostData(
                ControllerToHostData(
                    commandIdentifier: 9,
                    dataOffset: 1024,
                    data: pattern(3072),
                    isLast: true,
                    isSuccess: true
                )
            )
        ),
        PDUSample(
            name: "C2HData (not last)",
            pdu: .controllerToHostData(
                ControllerToHostData(commandIdentifier: 9, dataOffset: 0, data: pattern(1024), isLast: false)
            )
        ),
        PDUSample(
            name: "R2T",
            pdu: .readyToTransfer(ReadyToTransfer(commandIdentifier: 3, transferTag: 4, offset: 8192, length: 65_536))
        ),
    ]
}

/// A DGST setting, named for the test report.
struct DigestOption: Sendable, CustomTestStringConvertible {
    var digests: NVMeTCPDigests
    var testDescription: String {
        switch digests {
        case []: return "no digests"
        case .header: return "header digest"
        case .data: return "data digest"
        default: return "header and data digests"
        }
    }
    static let all = [
        DigestOption(digests: []), .init(digests: .header), .init(digests: .data), .init(digests: [.header, .data]),
    ]
}

extension NVMeTCPPDU {
    var data: ByteBuffer? {
        switch self {
        case .capsuleCommand(let capsule): return capsule.data
        case .hostToControllerData(let pdu): return pdu.data
        case .controllerToHostData(let pdu): return pdu.data
        default: return nil
        }
    }
}

// MARK: - PDU codec

@Suite("NVMe/TCP PDU codec")
struct PDUCodecTests {
    @Test(
        "every PDU type round-trips with every digest setting and data alignments 4 and 128",
        arguments: PDUSample.all,
        DigestOption.all
    )
    func roundTrip(_ sample: PDUSample, _ option: DigestOption) throws {
        let type = sample.pdu.type
        let digests = option.digests
        for alignment in [4, 128] {
            let bytes = sample.pdu.encodedBytes(digests: digests, dataAlignment: alignment)
            let headerDigest = digests.contains(.header) && type.carriesHeaderDigest
            let dataLength = sample.pdu.data?.readableBytes ?? 0
            let dataDigest = dataLength > 0 && digests.contains(.data) && type.carriesHeaderDigest
            let hlen = type.headerLength
            let headerEnd = hlen + (headerDigest ? 4 : 0)
            // Common header.
            #expect(bytes[0] == type.rawValue)
            #expect(bytes[1] & 0x01 == (headerDigest ? 0x01 : 0), "HDGSTF")
            #expect(bytes[1] & 0x02 == (dataDigest ? 0x02 : 0), "DDGSTF")
            #expect(Int(bytes[2]) == hlen, "HLEN")
            #expect(Int(bytes.le32(4)) == bytes.count, "PLEN")
            let pdo = Int(bytes[3])
            if dataLength > 0 {
                #expect(pdo % alignment == 0, "PDO \(pdo) is aligned to \(alignment)")
                #expect(pdo >= headerEnd && pdo < headerEnd + alignment, "PDO \(pdo) is the first aligned offset")
                #expect(bytes[headerEnd..<pdo].allSatisfy { $0 == 0 }, "padding is zero")
                #expect(bytes.count == pdo + dataLength + (dataDigest ? 4 : 0))
                #expect(Array(bytes[pdo..<(pdo + dataLength)]) == sample.pdu.data!.bytes)
                if dataDigest {
                    #expect(bytes.le32(pdo + dataLength) == CRC32C.checksum(bytes[pdo..<(pdo + dataLength)]), "DDGST")
                }
            } else {
                #expect(pdo == 0, "PDO is 0 without data")
            }
            if headerDigest {
                #expect(bytes.le32(hlen) == CRC32C.checksum(bytes[0..<hlen]), "HDGST covers the header as sent")
            }
            let decoded = try NVMeTCPPDU.decode(frame: ByteBuffer(bytes: bytes), digests: digests)
            #expect(decoded == sample.pdu, "alignment \(alignment)")
        }
    }

    @Test("a frame whose reader index is not zero decodes the same")
    func readerIndexNotZero() throws {
        for sample in PDUSample.all {
            var buffer = ByteBuffer(bytes: [1, 2, 3, 4, 5])
            buffer.writeNVMeTCPPDU(sample.pdu, digests: .data)
            buffer.moveReaderIndex(forwardBy: 5)
            #expect(try NVMeTCPPDU.decode(frame: buffer, digests: .data) == sample.pdu, "\(sample.name)")
        }
    }

    @Test("termination requests carry at most 128 bytes of the PDU in error")
    func terminationRequestExcerptIsCut() throws {
        let request = TerminationRequest(
            status: .pduSequenceError,
            fieldErrorInformation: 0,
            pduInError: PDUSample.pattern(300)
        )
        let bytes = NVMeTCPPDU.controllerToHostTerminationRequest(request).encodedBytes(digests: [.header, .data])
        #expect(bytes.count == 152)
        #expect(bytes[1] == 0, "no digest flags on a termination request")
        #expect(bytes.le16(8) == 2 && bytes.le32(10) == 0)
        #expect(Array(bytes[24...]) == Array(PDUSample.pattern(300).bytes[0..<128]))
        // The transport error's request is cut the same way.
        let error = NVMeTCPTransportError(
            .invalidHeaderField,
            fieldErrorInformation: 2,
            pduHeader: PDUSample.pattern(200),
            reason: "test"
        )
        #expect(error.terminationRequest.pduInError.readableBytes == 128)
        #expect(error.terminationRequest.status == .invalidHeaderField)
        #expect(error.terminationRequest.fieldErrorInformation == 2)
    }

    // MARK: Digest errors

    @Test(
        "a header digest mismatch is FES 03h Header Digest Error carrying the received digest",
        arguments: PDUSample.all.filter { $0.pdu.type.carriesHeaderDigest }
    )
    func headerDigestMismatch(_ sample: PDUSample) throws {
        var bytes = sample.pdu.encodedBytes(digests: .header)
        bytes.sealHeaderDigest()  // independent of how the writer computes it
        #expect(try NVMeTCPPDU.decode(frame: ByteBuffer(bytes: bytes), digests: .header) == sample.pdu)
        let hlen = sample.pdu.type.headerLength
        // Corrupt the digest itself, then a header byte instead.
        var badDigest = bytes
        badDigest[hlen] ^= 0x80
        var badHeader = bytes
        badHeader[9] ^= 0x01
        for frame in [badDigest, badHeader] {
            let error = #expect(throws: NVMeTCPTransportError.self) {
                try NVMeTCPPDU.decode(frame: ByteBuffer(bytes: frame), digests: .header)
            }
            #expect(error?.status == .headerDigestError)
            #expect(error?.fieldErrorInformation == frame.le32(hlen))
        }
    }

    @Test(
        "a data digest mismatch is reported in the decoded PDU, not thrown",
        arguments: PDUSample.all.filter { ($0.pdu.data?.readableBytes ?? 0) > 0 }
    )
    func dataDigestMismatch(_ sample: PDUSample) throws {
        for digests: NVMeTCPDigests in [.data, [.header, .data]] {
            var bytes = sample.pdu.encodedBytes(digests: digests)
            if digests.contains(.header) { bytes.sealHeaderDigest() }
            let pdo = Int(bytes[3])
            for corrupt in [pdo, bytes.count - 5, bytes.count - 1] {  // first data byte, last data byte, the digest
                var frame = bytes
                frame[corrupt] ^= 0x10
                let decoded = try NVMeTCPPDU.decode(frame: ByteBuffer(bytes: frame), digests: digests)
                switch decoded {
                case .capsuleCommand(let capsule): #expect(capsule.dataDigestMismatch)
                case .hostToControllerData(let data): #expect(data.dataDigestMismatch)
                case .controllerToHostData(let data): #expect(data.dataDigestMismatch)
                default: Issue.record("decoded as \(decoded.type)")
                }
            }
            let intact = try NVMeTCPPDU.decode(frame: ByteBuffer(bytes: bytes), digests: digests)
            #expect(intact == sample.pdu, "no mismatch on intact data")
        }
    }

    // MARK: Typed errors for bad input

    /// A malformed frame and the error it must produce.
    struct Malformed: Sendable, CustomTestStringConvertible {
        var name: String
        var bytes: [UInt8]
        var digests: NVMeTCPDigests = []
        var status: NVMeTCPFatalErrorStatus
        var fei: UInt32
        var testDescription: String { name }
    }

    static func header(_ type: UInt8, flags: UInt8 = 0, hlen: UInt8, pdo: UInt8 = 0, plen: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: plen)
        if plen > 0 { bytes[0] = type }
        if plen > 1 { bytes[1] = flags }
        if plen > 2 { bytes[2] = hlen }
        if plen > 3 { bytes[3] = pdo }
        if plen >= 8 { bytes.setLE32(UInt32(plen), at: 4) }
        return bytes
    }

    static let malformed: [Malformed] = {
        var cases: [Malformed] = []
        cases.append(
            .init(
                name: "4-byte frame, shorter than the common header",
                bytes: [4, 0, 72, 0],
                status: .invalidHeaderField,
                fei: 4
            )
        )
        cases.append(.init(name: "empty frame", bytes: [], status: .invalidHeaderField, fei: 4))
        cases.append(
            .init(
                name: "PLEN 8, less than HLEN 24",
                bytes: header(0x05, hlen: 24, plen: 8),
                status: .invalidHeaderField,
                fei: 4
            )
        )
        var plenMismatch = header(0x05, hlen: 24, plen: 24)
        plenMismatch.setLE32(28, at: 4)
        cases.append(
            .init(name: "PLEN 28 but 24 bytes framed", bytes: plenMismatch, status: .invalidHeaderField, fei: 4)
        )
        var plenTooSmall = header(0x04, hlen: 72, plen: 72)
        plenTooSmall.setLE32(8, at: 4)
        cases.append(
            .init(name: "PLEN 8 but 72 bytes framed", bytes: plenTooSmall, status: .invalidHeaderField, fei: 4)
        )
        cases.append(
            .init(
                name: "CapsuleCmd with HLEN 24",
                bytes: header(0x04, hlen: 24, plen: 72),
                status: .invalidHeaderField,
                fei: 2
            )
        )
        cases.append(
            .init(
                name: "ICReq with HLEN 72",
                bytes: header(0x00, hlen: 72, plen: 128),
                status: .invalidHeaderField,
                fei: 2
            )
        )
        cases.append(
            .init(
                name: "CapsuleResp with HLEN 0",
                bytes: header(0x05, hlen: 0, plen: 24),
                status: .invalidHeaderField,
                fei: 2
            )
        )
        for type: UInt8 in [0x08, 0x0A, 0x0B, 0x7F, 0xFF] {
            cases.append(
                .init(
                    name: "unknown PDU type \(type)",
                    bytes: header(type, hlen: 24, plen: 24),
                    status: .invalidHeaderField,
                    fei: 0
                )
            )
        }
        cases.append(
            .init(
                name: "PDO 8, inside the CapsuleCmd header",
                bytes: header(0x04, hlen: 72, pdo: 8, plen: 80),
                status: .invalidHeaderField,
                fei: 3
            )
        )
        cases.append(
            .init(
                name: "PDO 200, beyond PLEN 80",
                bytes: header(0x04, hlen: 72, pdo: 200, plen: 80),
                status: .invalidHeaderField,
                fei: 3
            )
        )
        cases.append(
            .init(
                name: "PDO 72 with a header digest (data would overlap HDGST)",
                bytes: {
                    var b = header(0x04, flags: 0x01, hlen: 72, pdo: 72, plen: 84)
                    b.sealHeaderDigest()
                    return b
                }(),
                digests: .header,
                status: .invalidHeaderField,
                fei: 3
            )
        )
        cases.append(
            .init(
                name: "CapsuleCmd without PDO but PLEN 76",
                bytes: header(0x04, hlen: 72, plen: 76),
                status: .invalidHeaderField,
                fei: 4
            )
        )
        cases.append(
            .init(
                name: "DDGSTF set, data digests not negotiated",
                bytes: header(0x04, flags: 0x02, hlen: 72, pdo: 72, plen: 80),
                status: .invalidHeaderField,
                fei: 1
            )
        )
        cases.append(
            .init(
                name: "HDGSTF set, header digests not negotiated",
                bytes: header(0x05, flags: 0x01, hlen: 24, plen: 28),
                status: .invalidHeaderField,
                fei: 1
            )
        )
        cases.append(
            .init(
                name: "HDGSTF missing, header digests negotiated",
                bytes: header(0x05, hlen: 24, plen: 24),
                digests: .header,
                status: .invalidHeaderField,
                fei: 1
            )
        )
        cases.append(
            .init(
                name: "DDGSTF missing on data, data digests negotiated",
                bytes: header(0x04, hlen: 72, pdo: 72, plen: 80),
                digests: .data,
                status: .invalidHeaderField,
                fei: 1
            )
        )
        cases.append(
            .init(
                name: "DDGSTF set on an ICReq",
                bytes: header(0x00, flags: 0x02, hlen: 128, plen: 128),
                digests: .data,
                status: .invalidHeaderField,
                fei: 1
            )
        )
        cases.append(
            .init(
                name: "HDGSTF set on an ICReq",
                bytes: header(0x00, flags: 0x01, hlen: 128, plen: 128),
                digests: .header,
                status: .invalidHeaderField,
                fei: 1
            )
        )
        cases.append(
            .init(
                name: "DDGSTF with no room for the data digest",
                bytes: header(0x04, flags: 0x02, hlen: 72, pdo: 72, plen: 74),
                digests: .data,
                status: .invalidHeaderField,
                fei: 4
            )
        )
        cases.append(
            .init(
                name: "HDGSTF with no room for the header digest",
                bytes: header(0x05, flags: 0x01, hlen: 24, plen: 26),
                digests: .header,
                status: .invalidHeaderField,
                fei: 4
            )
        )
        var h2cDATAL = header(0x06, hlen: 24, pdo: 24, plen: 40)
        h2cDATAL.setLE32(17, at: 16)
        cases.append(
            .init(name: "H2CData DATAL 17 with 16 bytes of data", bytes: h2cDATAL, status: .invalidHeaderField, fei: 16)
        )
        var c2hDATAL = header(0x07, hlen: 24, plen: 24)
        c2hDATAL.setLE32(4, at: 16)
        cases.append(.init(name: "C2HData DATAL 4 with no data", bytes: c2hDATAL, status: .invalidHeaderField, fei: 16))
        cases.append(
            .init(
                name: "H2CTermReq with PLEN 153 (> 152)",
                bytes: header(0x02, hlen: 24, plen: 153),
                status: .invalidHeaderField,
                fei: 4
            )
        )
        cases.append(
            .init(
                name: "C2HTermReq with PLEN 1000",
                bytes: header(0x03, hlen: 24, plen: 1000),
                status: .invalidHeaderField,
                fei: 4
            )
        )
        cases.append(
            .init(
                name: "ICReq with data (PDO 128)",
                bytes: header(0x00, hlen: 128, pdo: 128, plen: 128),
                status: .invalidHeaderField,
                fei: 3
            )
        )
        cases.append(
            .init(
                name: "CapsuleResp with data",
                bytes: header(0x05, hlen: 24, pdo: 24, plen: 28),
                status: .invalidHeaderField,
                fei: 3
            )
        )
        cases.append(
            .init(
                name: "R2T with data",
                bytes: header(0x09, hlen: 24, pdo: 24, plen: 28),
                status: .invalidHeaderField,
                fei: 3
            )
        )
        return cases
    }()

    @Test("a malformed PDU is a typed error with the right FES and FEI", arguments: malformed)
    func malformedPDU(_ input: Malformed) {
        let error = #expect(throws: NVMeTCPTransportError.self) {
            try NVMeTCPPDU.decode(frame: ByteBuffer(bytes: input.bytes), digests: input.digests)
        }
        #expect(error?.status == input.status)
        #expect(error?.fieldErrorInformation == input.fei)
        #expect((error?.pduHeader.readableBytes ?? 0) <= 128)
        #expect(error?.reason.isEmpty == false)
    }

    @Test("every truncation and every single-byte corruption of every PDU returns or throws, never traps")
    func truncationsAndCorruptionsNeverTrap() {
        var rng = SplitMix64(seed: 7)
        var decodedCount = 0
        var thrownCount = 0
        var prefixesAccepted: [String] = []
        var badStatuses: [UInt16] = []
        func attempt(_ bytes: [UInt8], _ digests: NVMeTCPDigests) -> Bool {
            do {
                _ = try NVMeTCPPDU.decode(frame: ByteBuffer(bytes: bytes), digests: digests)
                decodedCount += 1
                return true
            } catch {
                if !(1...6).contains(error.status.rawValue) { badStatuses.append(error.status.rawValue) }
                thrownCount += 1
                return false
            }
        }
        for sample in PDUSample.all {
            for option in DigestOption.all {
                let bytes = sample.pdu.wireBytes(digests: option.digests)
                // Every cut in the first 200 bytes and the last 16.
                let lengths = Set(0..<min(bytes.count, 200)).union(max(0, bytes.count - 16)..<bytes.count)
                for length in lengths.sorted() {
                    var prefix = Array(bytes[0..<length])
                    // As cut by PLEN: the declared length no longer matches, so it must be refused.
                    if attempt(prefix, option.digests) { prefixesAccepted.append("\(sample.name) cut at \(length)") }
                    // With PLEN rewritten to match: a different PDU, or an error.
                    if length >= 8 {
                        prefix.fixPLEN()
                        _ = attempt(prefix, option.digests)
                    }
                }
                for index in 0..<min(bytes.count, 160) {
                    var frame = bytes
                    frame[index] = UInt8.random(in: 0...255, using: &rng)
                    _ = attempt(frame, option.digests)
                }
            }
        }
        #expect(prefixesAccepted.isEmpty, "a PDU cut short was accepted: \(prefixesAccepted.prefix(5))")
        #expect(badStatuses.isEmpty, "FES outside 1–6: \(badStatuses.prefix(5))")
        #expect(thrownCount > 0 && decodedCount > 0)
    }
}

// MARK: - Queue entries and command views

@Suite("SQE, CQE and command encodings")
struct QueueEntryTests {
    @Test("an SQE round-trips every field through 64 bytes")
    func submissionQueueEntryRoundTrip() throws {
        var rng = SplitMix64(seed: 1)
        for _ in 0..<200 {
            let entry = SubmissionQueueEntry(
                opcode: .random(in: 0...255, using: &rng),
                flags: .random(in: 0...255, using: &rng),
                commandIdentifier: .random(in: 0...UInt16.max, using: &rng),
                namespaceIdentifier: .random(in: 0...UInt32.max, using: &rng),
                cdw2: .random(in: 0...UInt32.max, using: &rng),
                cdw3: .random(in: 0...UInt32.max, using: &rng),
                metadataPointer: .random(in: 0...UInt64.max, using: &rng),
                dataPointer: SGLDescriptor(
                    address: .random(in: 0...UInt64.max, using: &rng),
                    length: .random(in: 0...UInt32.max, using: &rng),
                    identifier: .random(in: 0...255, using: &rng)
                ),
                cdw10: .random(in: 0...UInt32.max, using: &rng),
                cdw11: .random(in: 0...UInt32.max, using: &rng),
                cdw12: .random(in: 0...UInt32.max, using: &rng),
                cdw13: .random(in: 0...UInt32.max, using: &rng),
                cdw14: .random(in: 0...UInt32.max, using: &rng),
                cdw15: .random(in: 0...UInt32.max, using: &rng)
            )
            var buffer = ByteBuffer()
            #expect(buffer.writeSubmissionQueueEntry(entry) == 64)
            #expect(buffer.readableBytes == 64)
            let bytes = buffer.bytes
            #expect(bytes[0] == entry.opcode && bytes[1] == entry.flags)
            #expect(bytes.le16(2) == entry.commandIdentifier)
            #expect(bytes.le32(32) == entry.dataPointer.length)
            #expect(bytes[36..<39].allSatisfy { $0 == 0 }, "SGL bytes 12–14 reserved")
            #expect(bytes[39] == entry.dataPointer.identifier)
            #expect(bytes.le32(40) == entry.cdw10 && bytes.le32(60) == entry.cdw15)
            let readBack = buffer.readSubmissionQueueEntry()
            #expect(readBack == entry)
            #expect(buffer.readableBytes == 0)
        }
        var short = ByteBuffer(bytes: [UInt8](repeating: 0, count: 63))
        #expect(short.readSubmissionQueueEntry() == nil)
        #expect(short.readableBytes == 63)
    }

    @Test("a CQE round-trips every field through 16 bytes")
    func completionQueueEntryRoundTrip() {
        var rng = SplitMix64(seed: 2)
        for _ in 0..<200 {
            let entry = CompletionQueueEntry(
                result: .random(in: 0...UInt32.max, using: &rng),
                dw1: .random(in: 0...UInt32.max, using: &rng),
                submissionQueueHead: .random(in: 0...UInt16.max, using: &rng),
                submissionQueueIdentifier: .random(in: 0...UInt16.max, using: &rng),
                commandIdentifier: .random(in: 0...UInt16.max, using: &rng),
                status: NVMeStatus(
                    statusCodeType: .random(in: 0...7, using: &rng),
                    statusCode: .random(in: 0...255, using: &rng),
                    more: .random(using: &rng),
                    doNotRetry: .random(using: &rng)
                )
            )
            var buffer = ByteBuffer()
            #expect(buffer.writeCompletionQueueEntry(entry) == 16)
            let bytes = buffer.bytes
            #expect(bytes.le32(0) == entry.result && bytes.le32(4) == entry.dw1)
            #expect(bytes.le16(8) == entry.submissionQueueHead && bytes.le16(10) == entry.submissionQueueIdentifier)
            #expect(bytes.le16(12) == entry.commandIdentifier && bytes.le16(14) == entry.status.fieldValue)
            #expect(buffer.readCompletionQueueEntry() == entry)
            #expect(entry.result64 == UInt64(entry.result) | UInt64(entry.dw1) << 32)
        }
        var short = ByteBuffer(bytes: [UInt8](repeating: 0, count: 15))
        #expect(short.readCompletionQueueEntry() == nil)
    }

    @Test("the CQE status field: SC bits 8:1, SCT bits 11:9, M bit 14, DNR bit 15, phase bit 0 ignored")
    func statusFieldEncoding() {
        #expect(NVMeStatus.connectInvalidParameters.withDoNotRetry.fieldValue == 0x8000 | (1 << 9) | (0x82 << 1))
        #expect(NVMeStatus.connectInvalidParameters.withDoNotRetry.fieldValue == 0x8304)
        #expect(NVMeStatus.success.fieldValue == 0)
        #expect(NVMeStatus.invalidField.withDoNotRetry.fieldValue == 0x8004)
        #expect(NVMeStatus.commandSequenceError.fieldValue == 0x0018)
        #expect(NVMeStatus.transientTransportError.fieldValue == 0x0044)
        #expect(NVMeStatus.asynchronousEventRequestLimitExceeded.withDoNotRetry.fieldValue == 0x820A)
        #expect(NVMeStatus.invalidLogPage.withDoNotRetry.fieldValue == 0x8212)
        #expect(NVMeStatus(statusCodeType: 0, statusCode: 0, more: true).fieldValue == 0x4000)
        #expect(NVMeStatus(fieldValue: 0x8304) == NVMeStatus.connectInvalidParameters.withDoNotRetry)
        #expect(NVMeStatus(fieldValue: 0x0001) == .success, "the phase tag is not part of the status")
        for sct in UInt8(0)...7 {
            for sc in UInt8(0)...255 {
                for more in [false, true] {
                    for dnr in [false, true] {
                        let status = NVMeStatus(statusCodeType: sct, statusCode: sc, more: more, doNotRetry: dnr)
                        #expect(NVMeStatus(fieldValue: status.fieldValue) == status)
                        #expect(status.fieldValue & 1 == 0)
                    }
                }
            }
        }
        #expect(NVMeStatus.connectInvalidParameters.withDoNotRetry.description.contains("connect invalid parameters"))
        #expect(NVMeStatus.connectInvalidParameters.withDoNotRetry.description.contains("DNR"))
        #expect(NVMeStatus.success.isSuccess && !NVMeStatus.invalidField.isSuccess)
    }

    @Test("Connect: the SQE fields, the 1024-byte data at its offsets, and the response DW0")
    func connectEncoding() throws {
        let command = ConnectCommand(
            recordFormat: 0,
            queueIdentifier: 3,
            submissionQueueSize: 127,
            attributes: 0x04,
            keepAliveTimeout: 30_000
        )
        let entry = command.submissionQueueEntry(commandIdentifier: 9, dataLength: 1024)
        #expect(entry.opcode == 0x7F && UInt8(entry.namespaceIdentifier) == 0x01)
        #expect(entry.cdw10 == 0x0003_0000 && entry.cdw11 == 0x0004_007F && entry.cdw12 == 30_000)
        #expect(entry.dataPointer == SGLDescriptor(address: 0, length: 1024, identifier: 0x01))
        #expect(ConnectCommand(entry) == command)
        #expect(FabricsCommand(entry) == .connect(command))

        let data = ConnectData(
            hostIdentifier: Array(1...16),
            controllerIdentifier: 0x1234,
            subsystemNQN: "nqn.2024-01.io.example:" + String(repeating: "s", count: 200),
            hostNQN: TestValues.hostNQN
        )
        var buffer = ByteBuffer()
        #expect(buffer.writeConnectData(data) == 1024)
        let bytes = buffer.bytes
        #expect(Array(bytes[0..<16]) == Array(1...16))
        #expect(bytes.le16(16) == 0x1234)
        #expect(bytes[18..<256].allSatisfy { $0 == 0 })
        #expect(Array(bytes[256..<(256 + 223)]) == Array(data.subsystemNQN.utf8))
        #expect(Array(bytes[512..<(512 + TestValues.hostNQN.utf8.count)]) == Array(TestValues.hostNQN.utf8))
        #expect(bytes[768...].allSatisfy { $0 == 0 })
        let readBack = buffer.readConnectData()
        #expect(readBack == data)
        var short = ByteBuffer(bytes: bytes[0..<1023])
        #expect(short.readConnectData() == nil)

        #expect(ConnectResponse.success(controllerIdentifier: 5) == 5)
        #expect(ConnectResponse.success(controllerIdentifier: 5, authenticationRequirements: 1) == 0x0001_0005)
        #expect(ConnectResponse.invalidParameter(offset: 256, inData: true) == 0x0001_0100)
        #expect(ConnectResponse.invalidParameter(offset: 42, inData: false) == 42)
    }

    @Test("Property Get/Set, Disconnect and unknown FCTYPE views")
    func fabricsViews() {
        let get = FabricsCommand.propertyGetEntry(commandIdentifier: 1, offset: 0, size8: true)
        #expect(get.cdw10 == 1 && get.cdw11 == 0 && UInt8(get.namespaceIdentifier) == 0x04)
        #expect(FabricsCommand(get) == .propertyGet(size8: true, offset: 0))
        let set = FabricsCommand.propertySetEntry(
            commandIdentifier: 2,
            offset: 0x14,
            value: 0x1122_3344_0046_0001,
            size8: true
        )
        #expect(set.cdw12 == 0x0046_0001 && set.cdw13 == 0x1122_3344)
        #expect(FabricsCommand(set) == .propertySet(size8: true, offset: 0x14, value: 0x1122_3344_0046_0001))
        #expect(FabricsCommand(FabricsCommand.disconnectEntry(commandIdentifier: 3)) == .disconnect(recordFormat: 0))
        #expect(
            FabricsCommand(SubmissionQueueEntry(opcode: 0x7F, namespaceIdentifier: 0x05))
                == .authentication(fabricsCommandType: 5)
        )
        #expect(
            FabricsCommand(SubmissionQueueEntry(opcode: 0x7F, namespaceIdentifier: 0x06))
                == .authentication(fabricsCommandType: 6)
        )
        #expect(
            FabricsCommand(SubmissionQueueEntry(opcode: 0x7F, namespaceIdentifier: 0x7E))
                == .unknown(fabricsCommandType: 0x7E)
        )
        // FCTYPE is byte 4 only.
        #expect(
            FabricsCommand(SubmissionQueueEntry(opcode: 0x7F, namespaceIdentifier: 0xFFFF_FF01))
                == .connect(ConnectCommand(submissionQueueSize: 0))
        )
    }

    @Test("Get Log Page: LID, LSP (7 bits), RAE, NUMDL/NUMDU, LSI and LPOL/LPOU encode and decode")
    func getLogPageFields() {
        var rng = SplitMix64(seed: 3)
        for _ in 0..<500 {
            let command = GetLogPageCommand(
                logPageIdentifier: .random(in: 0...255, using: &rng),
                logSpecificParameter: .random(in: 0...0x7F, using: &rng),
                retainAsynchronousEvent: .random(using: &rng),
                numberOfDwords: .random(in: 1...(UInt64(1) << 32), using: &rng),
                logSpecificIdentifier: .random(in: 0...UInt16.max, using: &rng),
                offset: .random(in: 0...UInt64.max, using: &rng)
            )
            let entry = command.submissionQueueEntry(commandIdentifier: 1)
            #expect(GetLogPageCommand(entry) == command)
            #expect(entry.opcode == 0x02)
        }
        let command = GetLogPageCommand(
            logPageIdentifier: 0x70,
            logSpecificParameter: 0x05,
            retainAsynchronousEvent: true,
            numberOfDwords: 0x12345,
            logSpecificIdentifier: 0xBEEF,
            offset: 0x1_0000_0400
        )
        let entry = command.submissionQueueEntry(commandIdentifier: 1)
        #expect(entry.cdw10 == 0x2344_8570, "NUMDL 2344h, RAE, LSP 05h, LID 70h")
        #expect(entry.cdw11 == 0xBEEF_0001, "LSI BEEFh, NUMDU 1")
        #expect(entry.cdw12 == 0x0000_0400 && entry.cdw13 == 1)
        #expect(command.length == 0x12345 * 4)
        // What the Linux host sent: header with RAE, then the page.
        let header = GetLogPageCommand(SubmissionQueueEntry(opcode: 0x02, cdw10: 0x00FF_8070))
        #expect(
            header == GetLogPageCommand(logPageIdentifier: 0x70, retainAsynchronousEvent: true, numberOfDwords: 256)
        )
        #expect(header.length == 1024)
        let page = GetLogPageCommand(SubmissionQueueEntry(opcode: 0x02, cdw10: 0x02FF_0070))
        #expect(page.length == 3072 && !page.retainAsynchronousEvent && page.offset == 0)
    }

    @Test("Get Log Page: the largest NUMD (FFFFFFFFh, 0's based) is 2^32 dwords, not 0")
    func getLogPageLargestNUMD() {
        let entry = SubmissionQueueEntry(opcode: 0x02, cdw10: 0xFFFF_0070, cdw11: 0x0000_FFFF)
        let command = GetLogPageCommand(entry)
        #expect(
            command.length == UInt64(1) << 34,
            "NUMD FFFFFFFFh asks for 16 GiB; the view wraps it to \(command.length)"
        )
    }

    @Test("Identify, Features, AER and Keep Alive views")
    func adminViews() {
        let identify = IdentifyCommand(controllerOrNamespaceStructure: 1, controllerIdentifier: 0x22)
            .submissionQueueEntry(commandIdentifier: 4)
        #expect(identify.opcode == 0x06 && identify.cdw10 == 0x0022_0001)
        #expect(identify.dataPointer == .transport(length: 4096))
        #expect(
            IdentifyCommand(identify) == IdentifyCommand(controllerOrNamespaceStructure: 1, controllerIdentifier: 0x22)
        )

        let set = FeaturesCommand(featureIdentifier: 0x0F, saveOrSelect: 1, value: 5000).setFeaturesEntry(
            commandIdentifier: 5
        )
        #expect(set.opcode == 0x09 && set.cdw10 == 0x8000_000F && set.cdw11 == 5000)
        #expect(
            FeaturesCommand(setFeatures: set) == FeaturesCommand(featureIdentifier: 0x0F, saveOrSelect: 1, value: 5000)
        )
        let get = FeaturesCommand(featureIdentifier: 0x0B, saveOrSelect: 3).getFeaturesEntry(commandIdentifier: 6)
        #expect(get.opcode == 0x0A && get.cdw10 == 0x0000_030B)
        #expect(FeaturesCommand(getFeatures: get).saveOrSelect == 3)

        #expect(AsynchronousEvent.discoveryLogPageChange.result == 0x0070_F002)
        #expect(AsynchronousEvent(result: 0x0070_F002) == .discoveryLogPageChange)
        #expect(AsynchronousEvent.requestEntry(commandIdentifier: 7).opcode == 0x0C)
        #expect(AsynchronousEvent.keepAliveEntry(commandIdentifier: 8).opcode == 0x18)
        #expect(AsynchronousEventConfiguration.discoveryLogPageChange == 0x8000_0000)
    }

    @Test("Identify Controller round-trips every field, at the spec's offsets")
    func identifyControllerRoundTrip() throws {
        var d = IdentifyControllerData()
        d.vendorIdentifier = 0x1B36
        d.subsystemVendorIdentifier = 0x1AF4
        d.serialNumber = "SN-0123456789"
        d.modelNumber = "DEM discovery controller"
        d.firmwareRevision = "0.1"
        d.maximumDataTransferSize = 12
        d.controllerIdentifier = 0x0042
        d.version = 0x0002_0000
        d.optionalAsynchronousEventsSupported = 1 << 31
        d.controllerAttributes = 0x80
        d.controllerType = IdentifyControllerData.ControllerType.discovery
        d.abortCommandLimit = 3
        d.asynchronousEventRequestLimit = 3
        d.logPageAttributes = 1 << 2
        d.errorLogPageEntries = 7
        d.keepAliveSupport = 10
        d.submissionQueueEntrySize = 0x66
        d.completionQueueEntrySize = 0x44
        d.maximumOutstandingCommands = 128
        d.numberOfNamespaces = 0
        d.sglSupport = 0x0010_0001
        d.subsystemNQN = TestValues.uniqueNQN
        d.ioQueueCommandCapsuleSize = 4
        d.ioQueueResponseCapsuleSize = 1
        d.inCapsuleDataOffset = 0
        d.fabricsControllerAttributes = 1
        d.maximumSGLDataBlockDescriptors = 1
        d.optionalFabricCommandsSupported = 1
        d.discoveryControllerType = IdentifyControllerData.DiscoveryControllerType.centralized
        var buffer = ByteBuffer()
        #expect(buffer.writeIdentifyControllerData(d) == 4096)
        let bytes = buffer.bytes
        #expect(bytes.le16(0) == 0x1B36)
        #expect(String(decoding: bytes[4..<24], as: UTF8.self) == "SN-0123456789       ", "SN is space-padded")
        #expect(bytes[77] == 12 && bytes.le16(78) == 0x42 && bytes.le32(80) == 0x0002_0000)
        #expect(bytes.le32(92) == 0x8000_0000, "OAES")
        #expect(bytes[111] == 2, "CNTRLTYPE")
        #expect(bytes[259] == 3 && bytes[261] == 4, "AERL, LPA")
        #expect(bytes.le16(320) == 10, "KAS")
        #expect(bytes[512] == 0x66 && bytes[513] == 0x44 && bytes.le16(514) == 128)
        #expect(bytes.le32(536) == 0x0010_0001, "SGLS")
        #expect(Array(bytes[768..<(768 + TestValues.uniqueNQN.utf8.count)]) == Array(TestValues.uniqueNQN.utf8))
        #expect(bytes.le32(1792) == 4 && bytes.le32(1796) == 1)
        #expect(bytes[1802] == 1 && bytes[1803] == 1 && bytes.le16(1804) == 1)
        #expect(bytes[1806] == 2, "DCTYPE")
        let readBack = buffer.readIdentifyControllerData()
        #expect(readBack == d)
    }

    /// Discovery log entries to round-trip.
    struct EntrySample: Sendable, CustomTestStringConvertible {
        var name: String
        var entry: DiscoveryLogEntry
        var testDescription: String { name }
    }

    static let entrySamples: [EntrySample] = [
        EntrySample(
            name: "TCP/IPv4, TLS 1.3 SECTYPE, every EFLAG",
            entry: DiscoveryLogEntry(
                transportType: .tcp,
                addressFamily: .ipv4,
                subsystemType: .nvm,
                transportRequirements: TransportRequirements(rawValue: 0x05),
                portIdentifier: 0xABCD,
                controllerIdentifier: 0xFFFE,
                adminMaximumSubmissionQueueSize: 128,
                entryFlags: [.duplicateReturnedInformation, .explicitPersistentConnection, .noCDCConnectivity],
                transportServiceIdentifier: "4420",
                subsystemNQN: "nqn.2024-01.io.example:a",
                transportAddress: "203.0.113.7",
                transportSpecificAddressSubtype: .tcp(securityType: 2)
            )
        ),
        EntrySample(
            name: "TCP/IPv6 referral",
            entry: DiscoveryLogEntry(
                transportType: .tcp,
                addressFamily: .ipv6,
                subsystemType: .referral,
                portIdentifier: 2,
                transportServiceIdentifier: "8009",
                subsystemNQN: DEMCore.wellKnownDiscoveryNQN,
                transportAddress: "2001:db8::1"
            )
        ),
        EntrySample(
            name: "RDMA with nvmet's default TSAS",
            entry: DiscoveryLogEntry(
                transportType: .rdma,
                addressFamily: .ipv4,
                subsystemType: .nvm,
                portIdentifier: 3,
                transportServiceIdentifier: "4420",
                subsystemNQN: "nqn.2024-01.io.example:rdma",
                transportAddress: "192.0.2.1"
            )
        ),
        EntrySample(
            name: "RDMA with every TSAS field set",
            entry: DiscoveryLogEntry(
                transportType: .rdma,
                addressFamily: .infiniBand,
                subsystemType: .nvm,
                portIdentifier: 4,
                transportServiceIdentifier: "4420",
                subsystemNQN: "nqn.2024-01.io.example:ib",
                transportAddress: "fe80::1",
                transportSpecificAddressSubtype: .rdma(
                    queuePairType: 2,
                    providerType: 3,
                    connectionManagementService: 1,
                    partitionKey: 0xFFFF
                )
            )
        ),
        EntrySample(
            name: "FC with a raw 256-byte TSAS",
            entry: DiscoveryLogEntry(
                transportType: .fibreChannel,
                addressFamily: .fibreChannel,
                subsystemType: .nvm,
                portIdentifier: 5,
                transportServiceIdentifier: "none",
                subsystemNQN: "nqn.2024-01.io.example:fc",
                transportAddress: "nn-0x200000109b123456:pn-0x100000109b123456",
                transportSpecificAddressSubtype: .raw((0..<256).map { UInt8($0) })
            )
        ),
    ]

    @Test("a discovery log entry round-trips every field, at the spec's offsets", arguments: entrySamples)
    func discoveryLogEntryRoundTrip(_ sample: EntrySample) throws {
        let e = sample.entry
        var buffer = ByteBuffer()
        #expect(buffer.writeDiscoveryLogEntry(e) == 1024)
        let bytes = buffer.bytes
        #expect(bytes[0] == e.transportType.rawValue && bytes[1] == e.addressFamily.rawValue)
        #expect(bytes[2] == e.subsystemType.rawValue && bytes[3] == e.transportRequirements.rawValue)
        #expect(bytes.le16(4) == e.portIdentifier && bytes.le16(6) == e.controllerIdentifier)
        #expect(bytes.le16(8) == e.adminMaximumSubmissionQueueSize && bytes.le16(10) == e.entryFlags.rawValue)
        #expect(bytes[12..<32].allSatisfy { $0 == 0 } && bytes[64..<256].allSatisfy { $0 == 0 })
        #expect(
            Array(bytes[32..<(32 + e.transportServiceIdentifier.utf8.count)])
                == Array(e.transportServiceIdentifier.utf8)
        )
        #expect(Array(bytes[256..<(256 + e.subsystemNQN.utf8.count)]) == Array(e.subsystemNQN.utf8))
        #expect(Array(bytes[512..<(512 + e.transportAddress.utf8.count)]) == Array(e.transportAddress.utf8))
        switch e.transportSpecificAddressSubtype {
        case .rdma(let qptype, let prtype, let cms, let pkey):
            #expect(bytes[768] == qptype && bytes[769] == prtype && bytes[770] == cms && bytes.le16(776) == pkey)
        case .tcp(let sectype):
            #expect(bytes[768] == sectype && bytes[769...].allSatisfy { $0 == 0 })
        case .raw(let raw):
            #expect(Array(bytes[768...]) == raw)
        }
        let readBack = buffer.readDiscoveryLogEntry()
        #expect(readBack == e)
    }

    @Test("an FC (or loop) entry built with the default TSAS round-trips equal")
    func defaultRawTSASRoundTrip() {
        // The initializer defaults a non-TCP, non-RDMA TSAS to .raw([]); reading it back gives
        // .raw with 256 zero bytes, so the value read is not the value written.
        let entry = DiscoveryLogEntry(
            transportType: .loop,
            addressFamily: .loop,
            subsystemType: .nvm,
            portIdentifier: 1,
            transportServiceIdentifier: "",
            subsystemNQN: "nqn.2024-01.io.example:loop",
            transportAddress: ""
        )
        var buffer = ByteBuffer()
        buffer.writeDiscoveryLogEntry(entry)
        let readBack = buffer.readDiscoveryLogEntry()
        #expect(readBack == entry)
    }

    @Test("a whole page: NUMREC from the entries, (NUMREC + 1) KiB, and back")
    func wholePage() throws {
        let page = FakeDiscoveryService.samplePage
        var buffer = page.encoded()
        #expect(buffer.readableBytes == page.byteCount && page.byteCount == 4096)
        let bytes = buffer.bytes
        #expect(bytes.le32(0) == 7 && bytes.le32(8) == 3 && bytes.le16(16) == 0)
        #expect(try buffer.readDiscoveryLogPage() == page)
        let empty = DiscoveryLogPage(generationCounter: UInt64.max, entries: [])
        var emptyBuffer = empty.encoded()
        #expect(emptyBuffer.readableBytes == 1024)
        #expect(try emptyBuffer.readDiscoveryLogPage() == empty)
    }

    @Test("fixed strings: NUL-padded on write; read up to the first NUL with trailing spaces trimmed")
    func fixedStrings() {
        var buffer = ByteBuffer(repeating: 0xAA, count: 16)
        buffer.setFixedString("abc", at: 2, length: 8)
        #expect(buffer.bytes == [0xAA, 0xAA, 0x61, 0x62, 0x63, 0, 0, 0, 0, 0, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA])
        buffer.setFixedString("0123456789", at: 0, length: 4, pad: 0x20)
        #expect(buffer.getFixedString(at: 0, length: 4) == "0123")
        let spaces = ByteBuffer(bytes: Array("4420    ".utf8))
        #expect(spaces.getFixedString(at: 0, length: 8) == "4420")
        #expect(ByteBuffer().getFixedString(at: 0, length: 1) == nil)
    }
}
