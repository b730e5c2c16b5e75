import DEMCore
import NIOPosix

/// A controller state as the kernel writes it in `<controller>/state`.
public struct KernelControllerState: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    public static let new = Self(rawValue: "new")
    public static let live = Self(rawValue: "live")
    public static let resetting = Self(rawValue: "resetting")
    public static let connecting = Self(rawValue: "connecting")
    public static let deleting = Self(rawValue: "deleting")
    public static let deletingNoIO = Self(rawValue: "deleting (no IO)")
    public static let dead = Self(rawValue: "dead")
    /// The state file was missing or blank.
    public static let unknown = Self(rawValue: "")

    /// Whether the controller is on its way out (deleting, deleting without I/O, dead): the
    /// kernel itself ignores such controllers when it looks for a duplicate connection, so it
    /// does not count as an existing connection.
    public var isGoingAway: Bool { rawValue.hasPrefix("deleting") || self == .dead }

    public var description: String { rawValue.isEmpty ? "unknown" : rawValue }
}

/// One NVMe over Fabrics controller of the kernel's host, as sysfs shows it.
public struct KernelController: Sendable, Hashable {
    /// The device name, such as `nvme3`.
    public var name: String
    /// `transport`: `tcp`, `rdma`, `fc`, `loop`; empty when unreadable.
    public var transport: String
    /// `traddr=` of `address`; empty when absent.
    public var traddr: String
    /// `trsvcid=` of `address`; empty when absent.
    public var trsvcid: String
    /// `host_traddr=` of `address`.
    public var hostTraddr: String?
    /// `host_iface=` of `address`.
    public var hostIface: String?
    /// `subsysnqn`; empty when unreadable.
    public var subsystemNQN: String
    /// `hostnqn`, when the kernel shows it.
    public var hostNQN: String?
    /// `state`.
    public var state: KernelControllerState

    public init(
        name: String,
        transport: String,
        traddr: String,
        trsvcid: String,
        hostTraddr: String? = nil,
        hostIface: String? = nil,
        subsystemNQN: String,
        hostNQN: String? = nil,
        state: KernelControllerState
    ) {
        self.name = name
        self.transport = transport
        self.traddr = traddr
        self.trsvcid = trsvcid
        self.hostTraddr = hostTraddr
        self.hostIface = hostIface
        self.subsystemNQN = subsystemNQN
        self.hostNQN = hostNQN
        self.state = state
    }

    /// The instance number of a name such as `nvme3`, or nil when `name` is not `nvme<digits>`.
    public static func instance(ofName name: String) -> Int? {
        guard name.hasPrefix("nvme") else { return nil }
        let digits = name.dropFirst(4)
        guard !digits.isEmpty, digits.count <= 9, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return Int(digits)
    }
}

/// The kernel's NVMe over Fabrics controllers, read from
/// `<sysfsRoot>/class/nvme-fabrics/ctl/nvme*`. Odd or missing attributes give empty fields,
/// never a failure: controllers appear and vanish while they are read.
public struct FabricsControllers: Sendable {
    /// The sysfs mount point, `/sys` on a real host; a plain folder in tests.
    public var sysfsRoot: String

    public init(sysfsRoot: String = "/sys") {
        var root = sysfsRoot
        while root.count > 1, root.hasSuffix("/") { root.removeLast() }
        self.sysfsRoot = root
    }

    /// The folder holding one entry per fabrics controller.
    public var directory: String { sysfsRoot + "/class/nvme-fabrics/ctl" }

    /// Every controller, by instance number. Blocking (reads files): call it off the event loop
    /// and the cooperative pool, or use ``scan(threadPool:)``.
    public func list() -> [KernelController] {
        SysfsText.names(in: directory)
            .compactMap { name in KernelController.instance(ofName: name).map { (name, $0) } }
            .sorted { $0.1 < $1.1 }
            .compactMap { controller(named: $0.0) }
    }

    /// The controller `name` (such as `nvme3`), or nil when it does not exist.
    public func controller(named name: String) -> KernelController? {
        guard KernelController.instance(ofName: name) != nil else { return nil }
        let folder = directory + "/" + name
        guard SysfsAttribute.isDirectory(folder) else { return nil }
        let address = SysfsAttribute.contents(of: folder + "/address").map(SysfsText.pairs) ?? [:]
        return KernelController(
            name: name,
            transport: SysfsAttribute.value(folder + "/transport") ?? "",
            traddr: address["traddr"] ?? "",
            trsvcid: address["trsvcid"] ?? "",
            hostTraddr: address["host_traddr"].flatMap { $0.isEmpty ? nil : $0 },
            hostIface: address["host_iface"].flatMap { $0.isEmpty ? nil : $0 },
            subsystemNQN: SysfsAttribute.value(folder + "/subsysnqn") ?? "",
            hostNQN: SysfsAttribute.value(folder + "/hostnqn"),
            state: SysfsAttribute.value(folder + "/state").map(KernelControllerState.init(rawValue:)) ?? .unknown
        )
    }

    /// ``list()`` on `threadPool`, away from the event loops and the cooperative pool.
    public func scan(threadPool: NIOThreadPool = .singleton) async throws -> [KernelController] {
        let controllers = self
        return try await threadPool.runIfActive { controllers.list() }
    }

    /// The `key=value` pairs of a controller's `address` attribute, such as
    /// `traddr=10.0.2.15,trsvcid=4420,src_addr=10.0.2.15`; unknown keys are kept, parts without
    /// `=` are ignored, and the first of repeated keys wins.
    public static func parseAddress(_ text: String) -> [String: String] {
        SysfsText.pairs(text)
    }
}
