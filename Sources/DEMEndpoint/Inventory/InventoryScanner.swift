import DEMCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Finds what this machine can offer over NVMe-oF: the devices that can back namespaces, the
/// fabric interfaces hosts can reach it on, and its RDMA devices.
///
/// Devices:
/// - the namespaces of local NVMe controllers (`<sysfs>/class/nvme/nvme<D>`). nvme-dem offered
///   only `pcie` controllers; this offers any transport except the fabrics ones (`tcp`, `rdma`,
///   `fc`, `loop`), whose namespaces live on another target and must never be re-exported. A
///   controller whose transport cannot be read is skipped for the same reason. A namespace entry
///   `nvme<X>n<N>`, or `nvme<X>c<D>n<N>` with native multipath, is the block device
///   `/dev/nvme<X>n<N>`: it is reported with DeviceID X and DeviceNSID N (the numbers of the
///   device name, which nvme-dem turns back into the path; X is the subsystem instance, usually
///   equal to D) and Controller `nvme<D>`;
/// - null_blk devices (`<sysfs>/block/nullb<K>`);
/// - other block devices and regular files only when `allowedPaths` allows them.
///
/// NVMe and null_blk devices are listed only when their device node exists under `devRoot`.
/// The paths reported are always the real `/dev/...` names: `devRoot` only redirects where the
/// scanner looks, so that a test can stand in a directory for `/dev`.
///
/// Interfaces: each address of a non-loopback netdev is a `tcp` interface, and also an `rdma`
/// one for each RDMA device on that netdev. IPv6 link-local addresses (fe80::/10) are left out:
/// a host can reach one only with a scope (`fe80::1%eth0`), which NVMe-oF's TRADDR cannot carry.
///
/// The scan never fails: what cannot be read is left out, or left nil when it is a detail
/// (model, serial, size) of something found.
public struct InventoryScanner: Sendable {
    /// Fabrics transports: their controllers are the remote side of a connection.
    static let fabricsTransports: Set<String> = ["tcp", "rdma", "fc", "loop"]

    /// Where sysfs is mounted, `/sys`.
    public let sysfsRoot: String
    /// Where the device nodes are, `/dev`.
    public let devRoot: String
    /// Glob patterns (`fnmatch`/`glob` syntax) of absolute paths of block devices and files
    /// that may back namespaces beyond NVMe namespaces and null_blk devices, such as `/dev/vd*`
    /// or `/srv/images/*.img`. A pattern under `/dev` is looked up under `devRoot`. Relative
    /// patterns are ignored.
    public let allowedPaths: [String]
    /// This machine's addresses.
    private let addresses: @Sendable () -> [NetworkAddress]
    /// nvme-dem's interface files, reported as fabric interfaces too.
    public let legacyInterfaces: [LegacyInterface]

    public init(
        sysfsRoot: String = "/sys",
        devRoot: String = "/dev",
        allowedPaths: [String] = [],
        legacyInterfaces: [LegacyInterface] = [],
        interfaces: @escaping @Sendable () -> [NetworkAddress] = NetworkAddress.system
    ) {
        self.sysfsRoot = Self.withoutTrailingSlash(sysfsRoot)
        self.devRoot = Self.withoutTrailingSlash(devRoot)
        self.allowedPaths = allowedPaths
        self.legacyInterfaces = legacyInterfaces
        self.addresses = interfaces
    }

    /// The machine's inventory now, sorted: devices by kind (`nvme`, `null_blk`, `block`,
    /// `file`) then path, interfaces by netdev, transport and address, RDMA devices by name.
    public func scan() -> EndpointInventory {
        let rdmaDevices = scanRDMADevices()
        var interfaces = Self.fabricInterfaces(addresses: addresses(), rdmaDevices: rdmaDevices)
        // An interface file names one the system may not show (an address not up yet).
        for file in legacyInterfaces
        where !interfaces.contains(where: {
            $0.transportType == file.transportType && $0.transportAddress == file.transportAddress
        }) {
            interfaces.append(
                ReportedInterface(
                    transportType: file.transportType,
                    addressFamily: file.addressFamily,
                    transportAddress: file.transportAddress
                )
            )
        }
        return EndpointInventory(
            devices: scanDevices(),
            interfaces: interfaces.sorted(by: Self.interfaceOrder),
            rdmaDevices: rdmaDevices,
            hostname: Self.hostname()
        )
    }

    // MARK: Devices

    /// NVMe namespaces, null_blk devices and the allowed block devices and files, each once.
    func scanDevices() -> [ReportedDevice] {
        var devices = DeviceList()
        for (device, node) in nvmeNamespaces() + nullBlockDevices() + allowedDevices() {
            devices.add(device, node: node)
        }
        return devices.devices.sorted(by: Self.deviceOrder)
    }

    /// The namespaces of local NVMe controllers, with the device node each was checked at.
    private func nvmeNamespaces() -> [(ReportedDevice, node: String)] {
        let classDirectory = sysfsRoot + "/class/nvme"
        var result: [(ReportedDevice, node: String)] = []
        for controller in SysfsFiles.entries(classDirectory) {
            guard Self.controllerNumber(controller) != nil else { continue }
            let directory = classDirectory + "/" + controller
            guard let transport = SysfsAttribute.value(directory + "/transport"),
                !Self.fabricsTransports.contains(transport.lowercased())
            else { continue }
            let model = SysfsAttribute.value(directory + "/model")
            let serial = SysfsAttribute.value(directory + "/serial")
            for entry in SysfsFiles.entries(directory) {
                guard let name = NVMeNamespaceName(entry) else { continue }
                let deviceName = "nvme\(name.device)n\(name.namespace)"
                let node = devRoot + "/" + deviceName
                guard SysfsFiles.exists(node) else { continue }
                let device = ReportedDevice(
                    deviceID: name.device,
                    deviceNamespaceID: name.namespace,
                    devicePath: "/dev/" + deviceName,
                    kind: "nvme",
                    model: model,
                    serial: serial,
                    size: SysfsFiles.sectorsInBytes(directory + "/" + entry + "/size"),
                    controller: controller
                )
                result.append((device, node))
            }
        }
        return result
    }

    /// null_blk devices, with the device node each was checked at.
    private func nullBlockDevices() -> [(ReportedDevice, node: String)] {
        let blockDirectory = sysfsRoot + "/block"
        var result: [(ReportedDevice, node: String)] = []
        for name in SysfsFiles.entries(blockDirectory) {
            guard name.hasPrefix("nullb"), Self.decimal(name.dropFirst("nullb".count)) != nil else { continue }
            let node = devRoot + "/" + name
            guard SysfsFiles.exists(node) else { continue }
            let device = ReportedDevice(
                deviceID: -1,
                devicePath: "/dev/" + name,
                kind: "null_blk",
                size: SysfsFiles.sectorsInBytes(blockDirectory + "/" + name + "/size")
            )
            result.append((device, node))
        }
        return result
    }

    /// The block devices and regular files `allowedPaths` matches.
    private func allowedDevices() -> [(ReportedDevice, node: String)] {
        var result: [(ReportedDevice, node: String)] = []
        for pattern in allowedPaths where pattern.hasPrefix("/") {
            for match in SysfsFiles.glob(lookupPath(pattern)) {
                if let device = allowedDevice(at: match) { result.append((device, match)) }
            }
        }
        return result
    }

    /// The device at `node` (a path as found on disk), or nil when it is neither a block device
    /// nor a regular file.
    private func allowedDevice(at node: String) -> ReportedDevice? {
        var info = stat()
        guard stat(node, &info) == 0 else { return nil }
        let path = reportedPath(node)
        // sysfs names a block device after its node's last component, symlinks resolved
        // (`/dev/disk/by-id/virtio-x` → `vda`).
        let sysfsName = (SysfsFiles.resolved(node) ?? node).split(separator: "/").last.map(String.init) ?? ""
        let sysfsBlock = sysfsRoot + "/class/block/" + sysfsName
        let type = info.st_mode & S_IFMT
        if type == S_IFBLK {
            var size: Int? = nil
            #if os(Linux)
            let rdev = UInt64(info.st_rdev)
            let major = ((rdev >> 8) & 0xFFF) | ((rdev >> 32) & ~UInt64(0xFFF))
            let minor = (rdev & 0xFF) | ((rdev >> 12) & ~UInt64(0xFF))
            size = SysfsFiles.sectorsInBytes(sysfsRoot + "/dev/block/\(major):\(minor)/size")
            #endif
            if size == nil, !sysfsName.isEmpty { size = SysfsFiles.sectorsInBytes(sysfsBlock + "/size") }
            return ReportedDevice(deviceID: -1, devicePath: path, kind: "block", size: size)
        }
        guard type == S_IFREG else { return nil }
        // A regular file under `devRoot` that sysfs knows as a block device stands in for one
        // in a fake tree (creating real device nodes needs privileges); real `/dev` has none.
        if isUnderDevRoot(node), !sysfsName.isEmpty, SysfsFiles.exists(sysfsBlock) {
            return ReportedDevice(
                deviceID: -1,
                devicePath: path,
                kind: "block",
                size: SysfsFiles.sectorsInBytes(sysfsBlock + "/size")
            )
        }
        return ReportedDevice(deviceID: -1, devicePath: path, kind: "file", size: Int(exactly: info.st_size))
    }

    /// Where `path` is looked up: `/dev/...` under `devRoot`, anything else as it is.
    private func lookupPath(_ path: String) -> String {
        guard devRoot != "/dev" else { return path }
        if path == "/dev" { return devRoot }
        if path.hasPrefix("/dev/") { return devRoot + path.dropFirst("/dev".count) }
        return path
    }

    /// The path to report for `node`: under `devRoot` as the `/dev/...` name, anything else as
    /// it is.
    private func reportedPath(_ node: String) -> String {
        guard devRoot != "/dev", isUnderDevRoot(node) else { return node }
        return "/dev" + node.dropFirst(devRoot.count)
    }

    private func isUnderDevRoot(_ node: String) -> Bool {
        node.hasPrefix(devRoot + "/")
    }

    /// Devices found so far, each once: a device is known by its reported path and by its
    /// node with symlinks resolved, so `/dev/disk/by-id/...` does not repeat `/dev/nvme0n1`
    /// and two multipath controllers do not repeat their shared namespace.
    private struct DeviceList {
        var devices: [ReportedDevice] = []
        var seen: Set<String> = []

        mutating func add(_ device: ReportedDevice, node: String) {
            let keys = [device.devicePath ?? node, SysfsFiles.resolved(node) ?? node]
            guard keys.allSatisfy({ !seen.contains($0) }) else { return }
            seen.formUnion(keys)
            devices.append(device)
        }
    }

    private static let kindRank: [String: Int] = ["nvme": 0, "null_blk": 1, "block": 2, "file": 3]

    /// Kind order `nvme`, `null_blk`, `block`, `file`, then path with numbers in numeric order
    /// (`/dev/nvme2n1` before `/dev/nvme10n1`).
    static func deviceOrder(_ a: ReportedDevice, _ b: ReportedDevice) -> Bool {
        let rankA = a.kind.flatMap { kindRank[$0] } ?? kindRank.count
        let rankB = b.kind.flatMap { kindRank[$0] } ?? kindRank.count
        if rankA != rankB { return rankA < rankB }
        return Self.naturalLess(a.devicePath ?? "", b.devicePath ?? "")
    }

    // MARK: Interfaces and RDMA devices

    /// RDMA devices (`<sysfs>/class/infiniband/<name>`) with the netdevs their GIDs are on
    /// (`ports/*/gid_attrs/ndevs/*`, as soft-RoCE and RoCE have them) and the netdevs of their
    /// PCI function (`device/net/*`, as IPoIB has them).
    func scanRDMADevices() -> [RDMADevice] {
        let classDirectory = sysfsRoot + "/class/infiniband"
        return SysfsFiles.entries(classDirectory).compactMap { name in
            let directory = classDirectory + "/" + name
            guard SysfsAttribute.isDirectory(directory) else { return nil }
            var netdevs = Set<String>()
            for port in SysfsFiles.entries(directory + "/ports") {
                let ndevs = directory + "/ports/" + port + "/gid_attrs/ndevs"
                for index in SysfsFiles.entries(ndevs) {
                    if let netdev = SysfsAttribute.value(ndevs + "/" + index), Self.isNetdevName(netdev) {
                        netdevs.insert(netdev)
                    }
                }
            }
            for netdev in SysfsFiles.entries(directory + "/device/net") where Self.isNetdevName(netdev) {
                netdevs.insert(netdev)
            }
            return RDMADevice(name: name, netdevs: netdevs.sorted(by: Self.naturalLess))
        }
        .sorted { Self.naturalLess($0.name, $1.name) }
    }

    /// A `tcp` interface for each address hosts can reach, and an `rdma` one as well for each
    /// RDMA device on its netdev. Loopback devices and addresses are skipped, and so are IPv6
    /// link-local addresses (fe80::/10): a host could use one only with a scope (`%eth0`), which
    /// an NVMe-oF TRADDR has no room for.
    static func fabricInterfaces(addresses: [NetworkAddress], rdmaDevices: [RDMADevice]) -> [ReportedInterface] {
        var rdmaByNetdev: [String: [String]] = [:]
        for device in rdmaDevices {
            for netdev in device.netdevs { rdmaByNetdev[netdev, default: []].append(device.name) }
        }
        var interfaces = Set<ReportedInterface>()
        for address in addresses where !address.isLoopback {
            guard address.family == "ipv4" || address.family == "ipv6" else { continue }
            guard !NetworkAddress.isLoopbackAddress(address.address, family: address.family) else { continue }
            if address.family == "ipv6", NetworkAddress.isIPv6LinkLocal(address.address) { continue }
            interfaces.insert(
                ReportedInterface(
                    transportType: "tcp",
                    addressFamily: address.family,
                    transportAddress: address.address,
                    netdev: address.netdev
                )
            )
            for rdmaDevice in rdmaByNetdev[address.netdev] ?? [] {
                interfaces.insert(
                    ReportedInterface(
                        transportType: "rdma",
                        addressFamily: address.family,
                        transportAddress: address.address,
                        netdev: address.netdev,
                        rdmaDevice: rdmaDevice
                    )
                )
            }
        }
        return interfaces.sorted(by: interfaceOrder)
    }

    /// Netdev, then transport, then address, then family and RDMA device.
    static func interfaceOrder(_ a: ReportedInterface, _ b: ReportedInterface) -> Bool {
        let netdevA = a.netdev ?? ""
        let netdevB = b.netdev ?? ""
        if netdevA != netdevB { return Self.naturalLess(netdevA, netdevB) }
        if a.transportType != b.transportType { return a.transportType < b.transportType }
        if a.transportAddress != b.transportAddress { return a.transportAddress < b.transportAddress }
        if a.addressFamily != b.addressFamily { return a.addressFamily < b.addressFamily }
        return (a.rdmaDevice ?? "") < (b.rdmaDevice ?? "")
    }

    // MARK: Host name

    /// `gethostname`, or nil when it fails or is empty.
    static func hostname() -> String? {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return nil }
        let name = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return name.isEmpty ? nil : name
    }

    // MARK: Names

    /// D of a controller name `nvme<D>`.
    static func controllerNumber(_ name: String) -> Int? {
        guard name.hasPrefix("nvme") else { return nil }
        return decimal(name.dropFirst("nvme".count))
    }

    /// A netdev name as the kernel allows it: 1…15 bytes, no `/`, whitespace or `:`.
    static func isNetdevName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count < 16
            && !name.contains(where: { $0 == "/" || $0 == ":" || $0.isWhitespace })
    }

    /// A non-negative decimal number of ASCII digits only, or nil.
    static func decimal(_ text: Substring) -> Int? {
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
            return nil
        }
        return Int(text)
    }

    private static func withoutTrailingSlash(_ path: String) -> String {
        var path = path
        while path.count > 1, path.hasSuffix("/") { path.removeLast() }
        return path
    }
}

extension InventoryScanner {
    /// A namespace entry of an NVMe controller's sysfs directory: `nvme<X>n<N>`, or
    /// `nvme<X>c<D>n<N>` (the path of controller D to namespace N of subsystem X, with native
    /// multipath). Either is the block device `nvme<X>n<N>`.
    struct NVMeNamespaceName: Hashable {
        /// X: the number of the block device name.
        var device: Int
        /// D, for the multipath form.
        var controller: Int?
        /// N.
        var namespace: Int

        init?(_ name: String) {
            guard name.hasPrefix("nvme") else { return nil }
            var rest = Substring(name.dropFirst("nvme".count))
            func number() -> Int? {
                let digits = rest.prefix { $0.isASCII && $0.isNumber }
                rest = rest.dropFirst(digits.count)
                return InventoryScanner.decimal(digits)
            }
            guard let device = number() else { return nil }
            var controller: Int? = nil
            if rest.first == "c" {
                rest = rest.dropFirst()
                guard let number = number() else { return nil }
                controller = number
            }
            guard rest.first == "n" else { return nil }
            rest = rest.dropFirst()
            guard let namespace = number(), rest.isEmpty else { return nil }
            self.device = device
            self.controller = controller
            self.namespace = namespace
        }
    }

    /// Whether `a` sorts before `b` when runs of digits compare as numbers (`eth2` < `eth10`);
    /// strings equal that way fall back to plain order.
    static func naturalLess(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8)
        let y = Array(b.utf8)
        func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
        var i = 0
        var j = 0
        while i < x.count, j < y.count {
            if isDigit(x[i]), isDigit(y[j]) {
                var iEnd = i
                while iEnd < x.count, isDigit(x[iEnd]) { iEnd += 1 }
                var jEnd = j
                while jEnd < y.count, isDigit(y[jEnd]) { jEnd += 1 }
                // Compare without leading zeros: the longer number is larger, else digit by digit.
                let m = x[i..<iEnd].drop { $0 == UInt8(ascii: "0") }
                let n = y[j..<jEnd].drop { $0 == UInt8(ascii: "0") }
                if m.count != n.count { return m.count < n.count }
                if !m.elementsEqual(n) { return m.lexicographicallyPrecedes(n) }
                i = iEnd
                j = jEnd
            } else {
                if x[i] != y[j] { return x[i] < y[j] }
                i += 1
                j += 1
            }
        }
        if x.count - i != y.count - j { return x.count - i < y.count - j }
        return a < b
    }
}
