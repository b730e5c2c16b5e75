import NIOCore
import Testing

@testable import DEMCore

/// The DIM data (TP8010, NVMe Base 2.1 §5.3.3) against its layout field by field, built by byte
/// offset as nvme-cli 2.3 (libnvme's nvmf_dim and nvmf_fill_die) fills it: an extended entry
/// with TEL, NUMEXAT, the host ID and the symbolic name, each EXATLEN rounded up to 4 bytes.
@Suite struct DiscoveryInformationTests {
    static let hostNQN = "nqn.2014-08.org.nvmexpress:uuid:c9773de9-fb1c-42ba-855e-34e5c63e6676"
    static let hostID: [UInt8] = [
        0xC9, 0x77, 0x3D, 0xE9, 0xFB, 0x1C, 0x42, 0xBA, 0x85, 0x5E, 0x34, 0xE5, 0xC6, 0x3E, 0x66, 0x76,
    ]

    /// A registration as libnvme lays it out: header (TDL, NUMENT, ENTFMT 2, ETYPE 1, EID,
    /// ENAME, EVER), then one extended DIE (TRTYPE tcp, ADRFAM ipv4, an empty TRADDR: "the DC
    /// infers it from the socket"), TEL, NUMEXAT 2, HOSTID and SYMNAME ("lab guest", padded).
    static func libnvmeRegistration(
        type: UInt16 = 1,
        entries: UInt64 = 1,
        tdl: UInt32? = nil,
        tel: UInt32? = nil
    ) -> ByteBuffer {
        var die = ByteBuffer(repeating: 0, count: 1024)
        die.setInteger(UInt8(3), at: 0)  // TRTYPE tcp
        die.setInteger(UInt8(1), at: 1)  // ADRFAM ipv4
        die.setBytes(Array(hostNQN.utf8), at: 256)  // NQN
        die.writeInteger(UInt32(0), endianness: .little)  // TEL, set below
        die.writeInteger(UInt16(2), endianness: .little)  // NUMEXAT
        die.writeInteger(UInt16(0), endianness: .little)
        die.writeInteger(UInt16(1), endianness: .little)  // EXATTYPE HOSTID
        die.writeInteger(UInt16(16), endianness: .little)
        die.writeBytes(hostID)
        die.writeInteger(UInt16(2), endianness: .little)  // EXATTYPE SYMNAME
        die.writeInteger(UInt16(12), endianness: .little)  // EXATLEN: rounded up to 4
        die.writeBytes(Array("lab guest".utf8) + [0, 0, 0])
        die.setInteger(tel ?? UInt32(die.readableBytes), at: 1024, endianness: .little)
        var data = ByteBuffer(repeating: 0, count: 1024)
        data.setInteger(tdl ?? UInt32(1024 + die.readableBytes), at: 0, endianness: .little)
        data.setInteger(entries, at: 8, endianness: .little)
        data.setInteger(UInt16(2), at: 16, endianness: .little)  // ENTFMT extended
        data.setInteger(type, at: 18, endianness: .little)  // ETYPE
        data.setBytes(Array(hostNQN.utf8), at: 24)  // EID
        data.setBytes(Array("guest".utf8), at: 280)  // ENAME
        data.setBytes(Array("Linux 6.1.0-28-amd64".utf8), at: 536)  // EVER
        data.writeBuffer(&die)
        return data
    }

    @Test func aRegistrationAsLibnvmeSendsIt() throws {
        let data = Self.libnvmeRegistration()
        #expect(data.readableBytes == 1024 + 1032 + 20 + 16)
        let dim = try DiscoveryInformation(parsing: data)
        #expect(dim.format == .extended)
        #expect(dim.entityType == .host)
        #expect(dim.entityIdentifier == Self.hostNQN)
        #expect(dim.entityName == "guest")
        #expect(dim.entityVersion == "Linux 6.1.0-28-amd64")
        #expect(dim.entries.count == 1)
        let entry = try #require(dim.entries.first)
        #expect(entry.entry.transportType == .tcp)
        #expect(entry.entry.addressFamily == .ipv4)
        #expect(entry.entry.subsystemNQN == Self.hostNQN)
        #expect(entry.entry.transportAddress == "")
        #expect(entry.hostIdentifier == Self.hostID)
        #expect(entry.symbolicName == "lab guest")
        // Our encoder writes the same bytes.
        #expect(dim.encoded() == data)
    }

    @Test func theTaskIsInCDW10() {
        for task in DiscoveryInformationCommand.Task.allCases {
            let entry = DiscoveryInformationCommand.submissionQueueEntry(task: task, commandIdentifier: 7, length: 2092)
            #expect(entry.opcode == 0x21)
            #expect(DiscoveryInformationCommand(entry).task == task)
        }
        var reserved = SubmissionQueueEntry(opcode: 0x21, commandIdentifier: 1)
        reserved.cdw10 = 0xF3
        #expect(DiscoveryInformationCommand(reserved).task == nil)
        #expect(DiscoveryInformationCommand(reserved).taskValue == 3)
    }

    @Test func basicEntries() throws {
        let entry = DiscoveryLogEntry(
            transportType: .tcp,
            addressFamily: .ipv4,
            subsystemType: .nvm,
            portIdentifier: 1,
            transportServiceIdentifier: "8009",
            subsystemNQN: "nqn.2024-01.io.example:ddc",
            transportAddress: "192.0.2.7"
        )
        let dim = DiscoveryInformation(
            format: .basic,
            entityType: .directDiscoveryController,
            entityIdentifier: "nqn.2024-01.io.example:ddc",
            entries: [DiscoveryInformationEntry(entry: entry), DiscoveryInformationEntry(entry: entry)]
        )
        let data = dim.encoded()
        #expect(data.readableBytes == 1024 + 2 * 1024)
        #expect(try DiscoveryInformation(parsing: data) == dim)
    }

    @Test func badDataIsInvalidDiscoveryInformation() {
        func refused(_ data: ByteBuffer, _ words: String) {
            #expect {
                try DiscoveryInformation(parsing: data)
            } throws: { error in
                "\(error)".contains(words)
            }
        }
        var truncated = Self.libnvmeRegistration()
        truncated.moveWriterIndex(to: 1000)
        refused(truncated, "less than the 1024-byte header")
        refused(Self.libnvmeRegistration(tdl: 5000), "TDL 5000 does not fit")
        refused(Self.libnvmeRegistration(entries: 3), "NUMENT 3 entries do not fit TDL")
        refused(Self.libnvmeRegistration(entries: 1 << 60), "do not fit TDL")
        refused(Self.libnvmeRegistration(type: 9), "ETYPE 9 is not")
        refused(Self.libnvmeRegistration(tel: 1030), "TEL 1030 is not a multiple of 4")
        refused(Self.libnvmeRegistration(tel: 1036), "ends past TEL 1036")
        var wrongID = Self.libnvmeRegistration()
        wrongID.setInteger(UInt16(8), at: 1024 + 1034, endianness: .little)
        refused(wrongID, "HOSTID is 8 bytes")
        var noEID = Self.libnvmeRegistration()
        noEID.setBytes([UInt8](repeating: 0, count: 256), at: 24)
        refused(noEID, "EID is empty")
        var badFormat = Self.libnvmeRegistration()
        badFormat.setInteger(UInt16(3), at: 16, endianness: .little)
        refused(badFormat, "ENTFMT 3")
        // An ENAME filling its 256 bytes with no NUL is read whole, never past its field.
        var longName = Self.libnvmeRegistration()
        longName.setBytes([UInt8](repeating: 0x41, count: 256), at: 280)
        #expect((try? DiscoveryInformation(parsing: longName))?.entityName.count == 256)
    }
}
