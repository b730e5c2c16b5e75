import DEMCore
import Foundation
import Testing

@testable import DEMEndpoint

// These tests run the scanner over a fake sysfs tree (and a fake /dev) built from real files in
// a temporary directory, because the real /sys depends on the machine's hardware: this machine
// has no NVMe controller, null_blk or RDMA device to find. The real sysfs is exercised in the VM
// harness. The trees copy the kernel's layout, class entries as symlinks into /sys/devices.

/// A temporary directory holding `sys/` and `dev/`, removed by `remove()`.
private struct FakeTree {
    let root: String
    var sysfs: String { root + "/sys" }
    var dev: String { root + "/dev" }

    init() throws {
        root = FileManager.default.temporaryDirectory.path + "/dem-inventory-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root + "/sys", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: root + "/dev", withIntermediateDirectories: true)
    }

    /// Writes `content` to `relative` (under the root), creating its directories.
    func write(_ relative: String, _ content: String) throws {
        let path = root + "/" + relative
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent,
            withIntermediateDirectories: true
        )
        try content.write(toFile: path, atomically: false, encoding: .utf8)
    }

    func makeDirectory(_ relative: String) throws {
        try FileManager.default.createDirectory(atPath: root + "/" + relative, withIntermediateDirectories: true)
    }

    /// A symlink at `relative` to `destination` (relative to the link's directory, as sysfs has them).
    func link(_ relative: String, to destination: String) throws {
        let path = root + "/" + relative
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent,
            withIntermediateDirectories: true
        )
        try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: destination)
    }

    /// Device nodes, as regular files standing in for them.
    func nodes(_ names: String...) throws {
        for name in names { try write("dev/" + name, "") }
    }

    /// An NVMe controller `sys/class/nvme/<name>`, a symlink into `sys/devices`.
    func nvmeController(_ name: String, transport: String?, model: String? = nil, serial: String? = nil) throws {
        let device = "sys/devices/pci0000:00/0000:00:04.0/nvme/" + name
        try makeDirectory(device)
        if let transport { try write(device + "/transport", transport + "\n") }
        if let model { try write(device + "/model", model) }
        if let serial { try write(device + "/serial", serial) }
        try link("sys/class/nvme/" + name, to: "../../devices/pci0000:00/0000:00:04.0/nvme/" + name)
    }

    /// A namespace entry of controller `controller` with `size` as its size attribute.
    func nvmeNamespace(_ controller: String, _ entry: String, size: String) throws {
        try write("sys/devices/pci0000:00/0000:00:04.0/nvme/\(controller)/\(entry)/size", size)
    }

    /// A block device `sys/block/<name>` and `sys/class/block/<name>`, symlinks into
    /// `sys/devices/virtual/block`.
    func blockDevice(_ name: String, size: String) throws {
        try write("sys/devices/virtual/block/\(name)/size", size)
        try link("sys/block/" + name, to: "../devices/virtual/block/" + name)
        try link("sys/class/block/" + name, to: "../../devices/virtual/block/" + name)
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: root)
    }

    func scanner(allowedPaths: [String] = [], addresses: [NetworkAddress] = []) -> InventoryScanner {
        InventoryScanner(sysfsRoot: sysfs, devRoot: dev, allowedPaths: allowedPaths, interfaces: { addresses })
    }
}

@Suite("Inventory scanner")
struct InventoryScannerTests {
    @Test("A PCIe controller's namespaces are listed, in plain and multipath naming")
    func nvmePCIeNamespaces() throws {
        let tree = try FakeTree()
        defer { tree.remove() }
        try tree.nvmeController(
            "nvme0",
            transport: "pcie",
            model: "QEMU NVMe Ctrl                          \n",
            serial: "  deadbeef  \n"
        )
        try tree.nvmeNamespace("nvme0", "nvme0c0n1", size: "2097152\n")
        try tree.nvmeNamespace("nvme0", "nvme0n2", size: "8\n")
        // Entries of a controller directory that are not namespaces.
        try tree.write("sys/devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n/size", "8\n")
        try tree.write("sys/devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0c0n1p1/size", "8\n")
        try tree.makeDirectory("sys/devices/pci0000:00/0000:00:04.0/nvme/nvme0/power")
        try tree.nodes("nvme0", "nvme0n1", "nvme0n2", "nvme0n")

        let devices = tree.scanner().scan().devices

        #expect(
            devices == [
                ReportedDevice(
                    deviceID: 0,
                    deviceNamespaceID: 1,
                    devicePath: "/dev/nvme0n1",
                    kind: "nvme",
                    model: "QEMU NVMe Ctrl",
                    serial: "deadbeef",
                    size: 1_073_741_824,
                    controller: "nvme0"
                ),
                ReportedDevice(
                    deviceID: 0,
                    deviceNamespaceID: 2,
                    devicePath: "/dev/nvme0n2",
                    kind: "nvme",
                    model: "QEMU NVMe Ctrl",
                    serial: "deadbeef",
                    size: 4096,
                    controller: "nvme0"
                ),
            ]
        )
    }

    @Test("Multipath controllers of one subsystem report its namespace once, named by the subsystem")
    func nvmeMultipathSubsystem() throws {
        let tree = try FakeTree()
        defer { tree.remove() }
        // Controllers nvme3 and nvme4 are two paths to subsystem 2; its namespace 1 is /dev/nvme2n1.
        try tree.nvmeController("nvme3", transport: "pcie", model: "Dual Port", serial: "S1")
        try tree.nvmeController("nvme4", transport: "pcie", model: "Dual Port", serial: "S1")
        try tree.nvmeNamespace("nvme3", "nvme2c3n1", size: "16")
        try tree.nvmeNamespace("nvme4", "nvme2c4n1", size: "16")
        // A namespace without a device node cannot back anything.
        try tree.nvmeNamespace("nvme3", "nvme2c3n2", size: "16")
        try tree.nodes("nvme2n1")

        let devices = tree.scanner().scan().devices

        #expect(
            devices == [
                ReportedDevice(
                    deviceID: 2,
                    deviceNamespaceID: 1,
                    devicePath: "/dev/nvme2n1",
                    kind: "nvme",
                    model: "Dual Port",
                    serial: "S1",
                    size: 8192,
                    controller: "nvme3"
                )
            ]
        )
    }

    @Test("Fabrics controllers and controllers of unknown transport are never offered")
    func fabricsControllersSkipped() throws {
        let tree = try FakeTree()
        defer { tree.remove() }
        try tree.nvmeController("nvme0", transport: "pcie")
        try tree.nvmeNamespace("nvme0", "nvme0n1", size: "8")
        for (number, transport) in [(1, "tcp"), (2, "rdma"), (3, "fc"), (4, "loop"), (5, "TCP")] {
            try tree.nvmeController("nvme\(number)", transport: transport)
            try tree.nvmeNamespace("nvme\(number)", "nvme\(number)c\(number)n1", size: "8")
            try tree.nodes("nvme\(number)n1")
        }
        try tree.nvmeController("nvme6", transport: nil)
        try tree.nvmeNamespace("nvme6", "nvme6n1", size: "8")
        try tree.nodes("nvme0n1", "nvme6n1")

        let paths = tree.scanner().scan().devices.map(\.devicePath)

        #expect(paths == ["/dev/nvme0n1"])
    }

    @Test("null_blk devices are listed with their size")
    func nullBlock() throws {
        let tree = try FakeTree()
        defer { tree.remove() }
        try tree.blockDevice("nullb0", size: "524288\n")
        try tree.blockDevice("nullb1", size: "2048\n")
        try tree.blockDevice("nullb_x", size: "2048\n")
        try tree.blockDevice("nullb2", size: "2048\n")  // No device node.
        try tree.blockDevice("sda", size: "2048\n")  // Not allowed.
        try tree.nodes("nullb0", "nullb1", "nullb_x", "sda")

        let devices = tree.scanner().scan().devices

        #expect(
            devices == [
                ReportedDevice(deviceID: -1, devicePath: "/dev/nullb0", kind: "null_blk", size: 268_435_456),
                ReportedDevice(deviceID: -1, devicePath: "/dev/nullb1", kind: "null_blk", size: 1_048_576),
            ]
        )
    }

    @Test("Allowed globs add block devices and files, each once, in kind then path order")
    func allowedGlobs() throws {
        let tree = try FakeTree()
        defer { tree.remove() }
        try tree.nvmeController("nvme1", transport: "pcie")
        try tree.nvmeNamespace("nvme1", "nvme1n1", size: "8")
        try tree.blockDevice("nullb0", size: "8")
        try tree.blockDevice("vda", size: "20")
        try tree.blockDevice("vdb", size: "40")
        try tree.blockDevice("vdb1", size: "10")
        try tree.nodes("nvme1n1", "nullb0", "vda", "vdb", "vdb1")
        try tree.makeDirectory("dev/disk/by-id")
        try tree.link("dev/disk/by-id/virtio-disk-a", to: "../../vda")
        try tree.write("images/b.img", String(repeating: "x", count: 4096))
        try tree.write("images/a.img", "")
        try tree.write("images/notes.txt", "not an image")
        try tree.makeDirectory("images/directory.img")

        let scanner = tree.scanner(allowedPaths: [
            "/dev/vd[a-z]",
            "/dev/disk/by-id/*",  // virtio-disk-a is vda, listed already.
            tree.root + "/images/*.img",
            tree.root + "/images/b.img",  // Matched twice.
            "/dev/nullb*",  // null_blk is listed already.
            "/dev/nvme1n1",  // Listed already as nvme.
            "/srv/nowhere/*.img",
            "relative/*.img",
        ])
        let devices = scanner.scan().devices

        #expect(
            devices == [
                ReportedDevice(
                    deviceID: 1,
                    deviceNamespaceID: 1,
                    devicePath: "/dev/nvme1n1",
                    kind: "nvme",
                    size: 4096,
                    controller: "nvme1"
                ),
                ReportedDevice(deviceID: -1, devicePath: "/dev/nullb0", kind: "null_blk", size: 4096),
                ReportedDevice(deviceID: -1, devicePath: "/dev/vda", kind: "block", size: 10240),
                ReportedDevice(deviceID: -1, devicePath: "/dev/vdb", kind: "block", size: 20480),
                ReportedDevice(deviceID: -1, devicePath: tree.root + "/images/a.img", kind: "file", size: 0),
                ReportedDevice(deviceID: -1, devicePath: tree.root + "/images/b.img", kind: "file", size: 4096),
            ]
        )
    }

    @Test("Block devices no pattern allows are not listed")
    func notAllowedBlockDevice() throws {
        let tree = try FakeTree()
        defer { tree.remove() }
        try tree.blockDevice("vda", size: "20")
        try tree.blockDevice("sda", size: "20")
        try tree.nodes("vda", "sda")

        #expect(tree.scanner().scan().devices.isEmpty)
        let paths = tree.scanner(allowedPaths: ["/dev/vd*"]).scan().devices.map(\.devicePath)
        #expect(paths == ["/dev/vda"])
    }

    @Test("An address on a netdev with an RDMA device yields a tcp and an rdma interface")
    func interfacesWithRDMA() throws {
        let tree = try FakeTree()
        defer { tree.remove() }
        // soft-RoCE rxe0 on eth0: its GID table names the netdev, unused entries are empty.
        try tree.write("sys/devices/virtual/infiniband/rxe0/ports/1/gid_attrs/ndevs/0", "eth0\n")
        try tree.write("sys/devices/virtual/infiniband/rxe0/ports/1/gid_attrs/ndevs/1", "eth0\n")
        try tree.write("sys/devices/virtual/infiniband/rxe0/ports/1/gid_attrs/ndevs/2", "")
        try tree.link("sys/class/infiniband/rxe0", to: "../../devices/virtual/infiniband/rxe0")
        // An HCA whose PCI function has a netdev with no address, named both ways.
        try tree.write("sys/devices/pci0000:00/0000:00:05.0/infiniband/mlx5_0/ports/1/gid_attrs/ndevs/0", "ens5\n")
        try tree.makeDirectory("sys/devices/pci0000:00/0000:00:05.0/net/ens5")
        try tree.link("sys/devices/pci0000:00/0000:00:05.0/infiniband/mlx5_0/device", to: "../..")
        try tree.link("sys/class/infiniband/mlx5_0", to: "../../devices/pci0000:00/0000:00:05.0/infiniband/mlx5_0")

        let inventory = tree.scanner(addresses: [
            NetworkAddress(netdev: "eth0", family: "ipv4", address: "192.0.2.10"),
            NetworkAddress(netdev: "eth1", family: "ipv4", address: "198.51.100.7"),
            NetworkAddress(netdev: "eth0", family: "ipv6", address: "2001:db8::10"),
        ])
        .scan()

        #expect(
            inventory.rdmaDevices == [
                RDMADevice(name: "mlx5_0", netdevs: ["ens5"]),
                RDMADevice(name: "rxe0", netdevs: ["eth0"]),
            ]
        )
        #expect(
            inventory.interfaces == [
                ReportedInterface(
                    transportType: "rdma",
                    addressFamily: "ipv4",
                    transportAddress: "192.0.2.10",
                    netdev: "eth0",
                    rdmaDevice: "rxe0"
                ),
                ReportedInterface(
                    transportType: "rdma",
                    addressFamily: "ipv6",
                    transportAddress: "2001:db8::10",
                    netdev: "eth0",
                    rdmaDevice: "rxe0"
                ),
                ReportedInterface(
                    transportType: "tcp",
                    addressFamily: "ipv4",
                    transportAddress: "192.0.2.10",
                    netdev: "eth0"
                ),
                ReportedInterface(
                    transportType: "tcp",
                    addressFamily: "ipv6",
                    transportAddress: "2001:db8::10",
                    netdev: "eth0"
                ),
                ReportedInterface(
                    transportType: "tcp",
                    addressFamily: "ipv4",
                    transportAddress: "198.51.100.7",
                    netdev: "eth1"
                ),
            ]
        )
    }

    @Test("Loopback and IPv6 link-local addresses are not offered")
    func loopbackAndLinkLocalSkipped() throws {
        let addresses = [
            NetworkAddress(netdev: "lo", family: "ipv4", address: "127.0.0.1", isLoopback: true),
            NetworkAddress(netdev: "lo", family: "ipv6", address: "::1", isLoopback: true),
            NetworkAddress(netdev: "dummy0", family: "ipv4", address: "127.0.0.2"),
            NetworkAddress(netdev: "eth0", family: "ipv6", address: "fe80::fc00:ff:fe00:1"),
            NetworkAddress(netdev: "eth0", family: "ipv6", address: "FEBF::1%eth0"),
            NetworkAddress(netdev: "eth0", family: "ipv6", address: "fec0::1"),
            NetworkAddress(netdev: "eth0", family: "ipv6", address: "fe8::1"),
            NetworkAddress(netdev: "eth0", family: "packet", address: "52:54:00:12:34:56"),
        ]

        let interfaces = InventoryScanner.fabricInterfaces(addresses: addresses, rdmaDevices: [])

        #expect(interfaces.map(\.transportAddress) == ["fe8::1", "fec0::1"])
        #expect(interfaces.allSatisfy { $0.transportType == "tcp" && $0.netdev == "eth0" })
    }

    @Test("Garbage and missing sysfs content leaves fields nil without crashing")
    func garbageContent() throws {
        let tree = try FakeTree()
        defer { tree.remove() }
        try tree.nvmeController("nvme0", transport: "pcie", model: " \n")  // Blank model, no serial.
        try tree.nvmeNamespace("nvme0", "nvme0n1", size: "lots of sectors\n")
        try tree.makeDirectory("sys/devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n2")  // No size.
        try tree.write("sys/class/nvme/nvme", "not a controller")
        try tree.write("sys/class/nvme/nvme9", "a file where a directory belongs")
        try tree.link("sys/class/nvme/nvme8", to: "../../devices/nowhere")
        try tree.blockDevice("nullb0", size: "-1\n")
        try tree.blockDevice("nullb1", size: "99999999999999999999999\n")
        try tree.blockDevice("vda", size: "36028797018963968\n")  // Overflows as bytes.
        try tree.write("sys/class/infiniband/rxe0/ports/1/gid_attrs/ndevs/0", "not a netdev name\n")
        try tree.write("sys/class/infiniband/rxe1", "a file")
        try tree.nodes("nvme0n1", "nvme0n2", "nullb0", "nullb1", "vda")

        let inventory = tree.scanner(allowedPaths: ["/dev/vda", "/dev/[", "/dev/**/"]).scan()

        #expect(
            inventory.devices == [
                ReportedDevice(
                    deviceID: 0,
                    deviceNamespaceID: 1,
                    devicePath: "/dev/nvme0n1",
                    kind: "nvme",
                    controller: "nvme0"
                ),
                ReportedDevice(
                    deviceID: 0,
                    deviceNamespaceID: 2,
                    devicePath: "/dev/nvme0n2",
                    kind: "nvme",
                    controller: "nvme0"
                ),
                ReportedDevice(deviceID: -1, devicePath: "/dev/nullb0", kind: "null_blk"),
                ReportedDevice(deviceID: -1, devicePath: "/dev/nullb1", kind: "null_blk"),
                ReportedDevice(deviceID: -1, devicePath: "/dev/vda", kind: "block"),
            ]
        )
        // rxe1 is a file, not a device directory.
        #expect(inventory.rdmaDevices == [RDMADevice(name: "rxe0", netdevs: [])])
    }

    @Test("A missing sysfs and /dev yield an empty inventory")
    func missingTrees() {
        let scanner = InventoryScanner(
            sysfsRoot: "/nonexistent/dem/sys",
            devRoot: "/nonexistent/dem/dev",
            allowedPaths: ["/dev/*"],
            interfaces: { [] }
        )
        let inventory = scanner.scan()
        #expect(inventory.devices.isEmpty)
        #expect(inventory.interfaces.isEmpty)
        #expect(inventory.rdmaDevices.isEmpty)
    }

    @Test("Devices sort by kind, then path with numbers in numeric order")
    func deviceOrder() throws {
        let tree = try FakeTree()
        defer { tree.remove() }
        for number in [10, 2] {
            try tree.nvmeController("nvme\(number)", transport: "pcie")
            try tree.nvmeNamespace("nvme\(number)", "nvme\(number)n1", size: "8")
            try tree.nodes("nvme\(number)n1")
        }
        try tree.blockDevice("nullb10", size: "8")
        try tree.blockDevice("nullb9", size: "8")
        try tree.nodes("nullb10", "nullb9")

        let paths = tree.scanner().scan().devices.map(\.devicePath)

        #expect(paths == ["/dev/nvme2n1", "/dev/nvme10n1", "/dev/nullb9", "/dev/nullb10"])
    }

    @Test("Namespace entry names parse in both forms and reject anything else")
    func namespaceNames() {
        let plain = InventoryScanner.NVMeNamespaceName("nvme12n3")
        #expect(plain?.device == 12 && plain?.controller == nil && plain?.namespace == 3)
        let multipath = InventoryScanner.NVMeNamespaceName("nvme1c4n2")
        #expect(multipath?.device == 1 && multipath?.controller == 4 && multipath?.namespace == 2)
        for name in [
            "nvme0", "nvme0n", "nvmen1", "nvme0c0", "nvme0c0n1p1", "nvme0n1p2", "nvme-0n1", "nvme0x1", "ng0n1",
        ] {
            #expect(InventoryScanner.NVMeNamespaceName(name) == nil, "\(name)")
        }
    }

    @Test("The scan reports this machine's host name")
    func hostname() throws {
        let hostname = try #require(InventoryScanner.hostname())
        #expect(!hostname.isEmpty)
        #expect(!hostname.contains("\0"))
    }

    @Test("The system's addresses include the loopback address")
    func systemAddresses() {
        let addresses = NetworkAddress.system()
        #expect(
            addresses.contains {
                $0.isLoopback
                    && ($0.family == "ipv4" && $0.address == "127.0.0.1" || $0.family == "ipv6" && $0.address == "::1")
            }
        )
        #expect(addresses.allSatisfy { $0.family == "ipv4" || $0.family == "ipv6" })
        #expect(addresses.allSatisfy { !$0.netdev.isEmpty && !$0.address.isEmpty })
    }

    @Test("The inventory encodes with nvme-dem's keys")
    func jsonKeys() throws {
        let inventory = EndpointInventory(
            devices: [ReportedDevice(deviceID: 0, deviceNamespaceID: 1, devicePath: "/dev/nvme0n1", kind: "nvme")],
            interfaces: [
                ReportedInterface(
                    transportType: "tcp",
                    addressFamily: "ipv4",
                    transportAddress: "192.0.2.1",
                    netdev: "eth0"
                )
            ],
            rdmaDevices: [RDMADevice(name: "rxe0", netdevs: ["eth0"])],
            hostname: "target1"
        )
        let data = try JSONEncoder().encode(inventory)
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])

        #expect(Set(object.keys).isSuperset(of: ["NSDevices", "Interfaces", "RDMADevices"]))
        let device = try #require((object["NSDevices"] as? [[String: Any]])?.first)
        #expect(device["DeviceID"] as? Int == 0)
        #expect(device["DeviceNSID"] as? Int == 1)
        #expect(device["DevicePath"] as? String == "/dev/nvme0n1")
        let interface = try #require((object["Interfaces"] as? [[String: Any]])?.first)
        #expect(interface["TRTYPE"] as? String == "tcp")
        #expect(interface["TRADDR"] as? String == "192.0.2.1")
        #expect(try JSONDecoder().decode(EndpointInventory.self, from: data) == inventory)
    }
}
