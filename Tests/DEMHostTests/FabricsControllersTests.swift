import Foundation
import Testing

@testable import DEMHost

@Suite("sysfs fabrics controllers")
struct FabricsControllersTests {
    private let ctl = "class/nvme-fabrics/ctl"

    private func controller(_ folder: TemporaryFolder, _ name: String, _ attributes: [String: String]) throws {
        try folder.folder("\(ctl)/\(name)")
        for (attribute, text) in attributes { try folder.file("\(ctl)/\(name)/\(attribute)", text) }
    }

    @Test("controllers are read with their address, NQNs and state, in instance order")
    func readsControllers() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        try controller(
            folder,
            "nvme10",
            [
                "transport": "tcp\n",
                "address": "traddr=10.0.2.15,trsvcid=4420,src_addr=10.0.2.16\n",
                "subsysnqn": "nqn.2024-01.io.dem:vol-a\n",
                "hostnqn": "\(HostSample.hostNQN)\n",
                "state": "live\n",
            ]
        )
        try controller(
            folder,
            "nvme3",
            [
                "transport": "rdma\n",
                "address": "traddr=fd00::15,trsvcid=4420,host_traddr=fd00::1,host_iface=eth1,future_key=x\n",
                "subsysnqn": "nqn.2024-01.io.dem:vol-b\n",
                "state": "connecting\n",
            ]
        )
        let controllers = FabricsControllers(sysfsRoot: folder.path + "/").list()
        #expect(
            controllers == [
                KernelController(
                    name: "nvme3",
                    transport: "rdma",
                    traddr: "fd00::15",
                    trsvcid: "4420",
                    hostTraddr: "fd00::1",
                    hostIface: "eth1",
                    subsystemNQN: "nqn.2024-01.io.dem:vol-b",
                    hostNQN: nil,
                    state: .connecting
                ),
                KernelController(
                    name: "nvme10",
                    transport: "tcp",
                    traddr: "10.0.2.15",
                    trsvcid: "4420",
                    subsystemNQN: "nqn.2024-01.io.dem:vol-a",
                    hostNQN: HostSample.hostNQN,
                    state: .live
                ),
            ]
        )
    }

    @Test("odd content: missing, empty, binary and malformed attributes give empty fields, not a failure")
    func oddContent() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        // No attributes at all (a controller vanishing while it is read).
        try folder.folder("\(ctl)/nvme0")
        // Blank and malformed attributes.
        try controller(
            folder,
            "nvme1",
            [
                "transport": "   \n",
                "address": "garbage,,=novalue,trsvcid=,traddr = 10.0.0.9 ,traddr=10.0.0.10",
                "subsysnqn": "\0\0",
                "hostnqn": "",
                "state": "deleting (no IO)\n",
            ]
        )
        // Bytes that are not UTF-8.
        try folder.folder("\(ctl)/nvme2")
        try folder.file("\(ctl)/nvme2/transport", Data([0xFF, 0xFE, 0x74, 0x63, 0x70]))
        try folder.file("\(ctl)/nvme2/address", Data([0xC3, 0x28, 0x3D, 0x0A]))
        try folder.file("\(ctl)/nvme2/state", "resetting")
        // An attribute that is a folder.
        try folder.folder("\(ctl)/nvme4/address")

        let controllers = FabricsControllers(sysfsRoot: folder.path).list()
        #expect(controllers.map(\.name) == ["nvme0", "nvme1", "nvme2", "nvme4"])
        #expect(
            controllers[0]
                == KernelController(
                    name: "nvme0",
                    transport: "",
                    traddr: "",
                    trsvcid: "",
                    subsystemNQN: "",
                    state: .unknown
                )
        )
        #expect(controllers[1].transport == "")
        #expect(controllers[1].traddr == "10.0.0.9")
        #expect(controllers[1].trsvcid == "")
        #expect(controllers[1].subsystemNQN == "")
        #expect(controllers[1].hostNQN == nil)
        #expect(controllers[1].state == .deletingNoIO)
        #expect(controllers[1].state.isGoingAway)
        #expect(controllers[2].transport == "\u{FFFD}\u{FFFD}tcp")
        #expect(controllers[2].traddr == "")
        #expect(controllers[2].state == .resetting)
        #expect(controllers[3].traddr == "")
    }

    @Test("only nvme<digits> folders count; files, other names and a missing tree are skipped")
    func skipsOtherEntries() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        try folder.file("\(ctl)/uevent", "MAJOR=10\n")
        try folder.file("\(ctl)/dev", "10:121\n")
        try folder.folder("\(ctl)/power")
        try folder.folder("\(ctl)/nvme-subsys0")
        try folder.folder("\(ctl)/nvmeX")
        try folder.folder("\(ctl)/nvme")
        try folder.file("\(ctl)/nvme5", "not a folder")
        try controller(folder, "nvme7", ["transport": "tcp", "state": "live"])
        // Real sysfs lists controllers as symlinks.
        try folder.folder("devices/virtual/nvme-fabrics/ctl/nvme8")
        try folder.file("devices/virtual/nvme-fabrics/ctl/nvme8/transport", "tcp\n")
        try folder.file("devices/virtual/nvme-fabrics/ctl/nvme8/state", "live\n")
        try FileManager.default.createSymbolicLink(
            atPath: "\(folder.path)/\(ctl)/nvme8",
            withDestinationPath: "../../../devices/virtual/nvme-fabrics/ctl/nvme8"
        )
        let controllers = FabricsControllers(sysfsRoot: folder.path)
        #expect(controllers.list().map(\.name) == ["nvme7", "nvme8"])
        #expect(controllers.controller(named: "nvme8")?.transport == "tcp")
        #expect(controllers.controller(named: "../ctl/nvme7") == nil)
        #expect(controllers.controller(named: "nvme9") == nil)
        #expect(FabricsControllers(sysfsRoot: folder.path + "/missing").list() == [])
    }

    @Test("scan reads on the thread pool and answers what list does")
    func scanOffloads() async throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        try controller(
            folder,
            "nvme1",
            ["transport": "tcp", "address": "traddr=1.2.3.4,trsvcid=4420", "state": "live"]
        )
        let controllers = FabricsControllers(sysfsRoot: folder.path)
        let scanned = try await controllers.scan()
        #expect(scanned == controllers.list())
        #expect(scanned.first?.traddr == "1.2.3.4")
    }

    @Test(
        "address parsing",
        arguments: [
            (
                "traddr=10.0.2.15,trsvcid=4420,src_addr=10.0.2.15\n",
                ["traddr": "10.0.2.15", "trsvcid": "4420", "src_addr": "10.0.2.15"]
            ),
            (
                "traddr=10.0.2.15,trsvcid=4420,host_traddr=10.0.2.1",
                ["traddr": "10.0.2.15", "trsvcid": "4420", "host_traddr": "10.0.2.1"]
            ),
            ("", [:]),
            ("\n", [:]),
            ("novalue,=x,k=v=w", ["k": "v=w"]),
            ("traddr=a,traddr=b", ["traddr": "a"]),
        ]
    )
    func addressParsing(text: String, expected: [String: String]) {
        #expect(FabricsControllers.parseAddress(text) == expected)
    }

    @Test("controller names")
    func names() {
        #expect(KernelController.instance(ofName: "nvme0") == 0)
        #expect(KernelController.instance(ofName: "nvme12") == 12)
        #expect(KernelController.instance(ofName: "nvme") == nil)
        #expect(KernelController.instance(ofName: "nvme1n1") == nil)
        #expect(KernelController.instance(ofName: "nvme-fabrics") == nil)
        #expect(KernelController.instance(ofName: "nvme99999999999999999999") == nil)
        #expect(KernelController.instance(ofName: "nvme١") == nil)
    }
}
