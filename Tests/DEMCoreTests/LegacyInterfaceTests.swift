import Foundation
import Testing

@testable import DEMCore

@Suite("nvme-dem's interface files")
struct LegacyInterfaceTests {
    @Test("an interface file as nvme-dem's README has it: keys in any case, comments, quotes, TRSVCID optional")
    func parses() throws {
        let text = """
            # RDMA interface for dem
            TRTYPE=rdma
            adrfam="ipv4"   # the family
            TrAddr=192.168.22.1
            TRSVCID=4422
            """
        let interface = try LegacyInterface.parse(text, file: "/etc/nvme/nvmeof-dem/ib0")
        #expect(interface.transportType == "rdma")
        #expect(interface.addressFamily == "ipv4")
        #expect(interface.transportAddress == "192.168.22.1")
        #expect(interface.transportServiceIdentifier == 4422)
        let bare = try LegacyInterface.parse("TRTYPE=tcp\nADRFAM=ipv6\nTRADDR='fd00::5'\n", file: "f")
        #expect(bare.transportServiceIdentifier == nil)
        #expect(bare.transportAddress == "fd00::5")
    }

    @Test(
        "a bad file is named with its line and what is wrong",
        arguments: [
            ("TRTYPE=tcp\nADRFAM=ipv4\nTRADDR=10.0.0.1\nTRSVCID=99999", "f, line 4: TRSVCID must be a port"),
            ("TRTYPE=fc\nADRFAM=ipv4\nTRADDR=10.0.0.1", "f, line 1: TRTYPE must be tcp or rdma"),
            ("TRTYPE=tcp\nADRFAM=fc\nTRADDR=nn-0x1", "f, line 2: ADRFAM fc: Fibre Channel is not a transport"),
            ("TRTYPE=tcp\nADRFAM=ipv4\nTRADDR=fd00::1", "f, line 3: TRADDR \"fd00::1\" is not an IPv4 address"),
            ("TRTYPE=tcp\nADRFAM=ipv4", "f: TRADDR= is missing"),
            ("TRTYPE=tcp\nthis is not a line\n", "f, line 2: \"this is not a line\" is not KEY=value"),
            ("TRTYPE=tcp\nPORT=4420", "f, line 2: unknown key PORT"),
        ]
    )
    func refuses(_ text: String, _ expected: String) {
        do {
            _ = try LegacyInterface.parse(text, file: "f")
            Issue.record("accepted: \(text)")
        } catch {
            #expect(error.description.hasPrefix(expected), "\(error.description)")
        }
    }

    @Test("a folder: every file but config and signature, in name order; a missing folder is none")
    func folder() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("nvmeof-dem-\(UUID().uuidString)")
            .path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try "TRTYPE=tcp\nADRFAM=ipv4\nTRADDR=10.0.0.2\n".write(toFile: folder + "/b", atomically: true, encoding: .utf8)
        try "TRTYPE=rdma\nADRFAM=ipv4\nTRADDR=10.0.0.1\n".write(
            toFile: folder + "/a",
            atomically: true,
            encoding: .utf8
        )
        try #"{"Targets": []}"#.write(toFile: folder + "/config", atomically: true, encoding: .utf8)
        try "xyz".write(toFile: folder + "/signature", atomically: true, encoding: .utf8)
        let interfaces = try LegacyInterface.read(folder: folder)
        #expect(interfaces.map(\.transportAddress) == ["10.0.0.1", "10.0.0.2"])
        #expect(try LegacyInterface.read(folder: folder + "/missing").isEmpty)
    }
}
