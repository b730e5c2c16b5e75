import DEMCore
import NIOCore
import Testing

/// CRC32C (Castagnoli), the NVMe/TCP header and data digest.
@Suite("CRC32C")
struct CRC32CTests {
    /// A known input and its CRC32C.
    struct Vector: Sendable, CustomTestStringConvertible {
        var name: String
        var bytes: [UInt8]
        var crc: UInt32
        var testDescription: String { name }
    }

    /// RFC 3720 §B.4 (iSCSI) vectors and the usual check value.
    static let vectors: [Vector] = [
        Vector(name: "\"123456789\" (check value)", bytes: Array("123456789".utf8), crc: 0xE306_9283),
        Vector(name: "32 bytes of zeros", bytes: [UInt8](repeating: 0, count: 32), crc: 0x8A91_36AA),
        Vector(name: "32 bytes of FFh", bytes: [UInt8](repeating: 0xFF, count: 32), crc: 0x62A8_AB43),
        Vector(name: "32 incrementing bytes 00h…1Fh", bytes: (0..<32).map { UInt8($0) }, crc: 0x46DD_794E),
        Vector(name: "32 decrementing bytes 1Fh…00h", bytes: (0..<32).reversed().map { UInt8($0) }, crc: 0x113F_DB5C),
        Vector(
            name: "iSCSI SCSI Read (10) command PDU",
            bytes: [
                0x01, 0xC0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18,
                0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            ],
            crc: 0xD996_3A56
        ),
        Vector(name: "empty", bytes: [], crc: 0x0000_0000),
        Vector(name: "\"a\"", bytes: [0x61], crc: 0xC1D0_4330),
    ]

    /// A bit-at-a-time CRC32C, independent of the slicing-by-8 tables under test.
    static func reference(_ bytes: some Sequence<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        }
        return crc ^ 0xFFFF_FFFF
    }

    @Test("known vectors", arguments: vectors)
    func knownVector(_ vector: Vector) {
        #expect(CRC32C.checksum(vector.bytes) == vector.crc)
        #expect(Self.reference(vector.bytes) == vector.crc)
        let buffer = ByteBuffer(bytes: vector.bytes)
        #expect(CRC32C.checksum(buffer, at: 0, length: vector.bytes.count) == vector.crc)
    }

    @Test("every length 0…300 at every start offset 0…8 matches the bitwise reference")
    func slicingMatchesReference() {
        var rng = SplitMix64(seed: 0xC3C3_2C2C)
        let data = (0..<320).map { _ in UInt8.random(in: 0...255, using: &rng) }
        for start in 0...8 {
            for length in 0...300 {
                let slice = data[start..<(start + length)]
                let expected = Self.reference(slice)
                #expect(CRC32C.checksum(slice) == expected, "start \(start) length \(length)")
            }
        }
    }

    @Test("the ByteBuffer-range overload equals the Sequence overload, reader index moved or not")
    func byteBufferRangeOverload() {
        var rng = SplitMix64(seed: 42)
        let data = (0..<600).map { _ in UInt8.random(in: 0...255, using: &rng) }
        var buffer = ByteBuffer(bytes: data)
        for _ in 0..<200 {
            let start = Int.random(in: 0...data.count, using: &rng)
            let length = Int.random(in: 0...(data.count - start), using: &rng)
            #expect(
                CRC32C.checksum(buffer, at: start, length: length)
                    == CRC32C.checksum(data[start..<(start + length)])
            )
        }
        // With the reader index moved, `at` stays an absolute index.
        buffer.moveReaderIndex(forwardBy: 17)
        #expect(CRC32C.checksum(buffer, at: 17, length: 100) == CRC32C.checksum(data[17..<117]))
        #expect(CRC32C.checksum(buffer, at: 300, length: 300) == CRC32C.checksum(data[300..<600]))
        // A slice (its own indices start at zero).
        let slice = ByteBuffer(bytes: data).getSlice(at: 50, length: 200)!
        #expect(CRC32C.checksum(slice, at: slice.readerIndex, length: 200) == CRC32C.checksum(data[50..<250]))
    }

    @Test("a non-contiguous sequence takes the byte-at-a-time path and agrees")
    func nonContiguousSequence() {
        let data = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let lazy = data.lazy.map { $0 }  // no contiguous storage
        #expect(CRC32C.checksum(lazy) == CRC32C.checksum(data))
        #expect(CRC32C.checksum(AnySequence(data)) == Self.reference(data))
    }

    @Test(
        "the header digest the writer puts on a CapsuleResp is the CRC32C of the 24 header bytes as sent (PLEN included)"
    )
    func headerDigestIsCRCOfHeader() {
        let pdu = NVMeTCPPDU.capsuleResponse(CapsuleResponse(completion: CompletionQueueEntry(commandIdentifier: 7)))
        let plain = pdu.encodedBytes()
        let digested = pdu.encodedBytes(digests: .header)
        #expect(digested.count == 28)
        // Only FLAGS (HDGSTF) and PLEN differ in the header.
        var header = plain
        header[1] = 0x01
        header[4] = 28
        #expect(Array(digested[0..<24]) == header)
        let digest =
            UInt32(digested[24]) | UInt32(digested[25]) << 8 | UInt32(digested[26]) << 16
            | UInt32(digested[27]) << 24
        #expect(digest == Self.reference(header))
    }
}
