import DEMCore

/// A listener address as SPDK takes it (`listen_address`) and reports it, lower-cased.
public struct SPDKAddress: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var transportType: String
    public var addressFamily: String
    public var address: String
    public var serviceID: String

    public init(transportType: String, addressFamily: String, address: String, serviceID: String) {
        self.transportType = transportType.lowercased()
        self.addressFamily = addressFamily.lowercased()
        self.address = address
        self.serviceID = serviceID
    }

    /// The address of a port of the desired state.
    public init(port: FabricPort) {
        self.init(
            transportType: port.transportType,
            addressFamily: port.addressFamily,
            address: port.transportAddress,
            serviceID: String(port.transportServiceIdentifier)
        )
    }

    init?(json: JSONValue) {
        guard let type = json["trtype"]?.stringValue ?? json["transport"]?.stringValue,
            let address = json["traddr"]?.stringValue
        else { return nil }
        self.init(
            transportType: type,
            addressFamily: json["adrfam"]?.stringValue ?? "ipv4",
            address: address,
            serviceID: json["trsvcid"]?.stringValue ?? json["trsvcid"]?.intValue.map(String.init) ?? ""
        )
    }

    /// `listen_address` as `nvmf_subsystem_add_listener` takes it.
    public var json: JSONValue {
        .members([
            ("trtype", .string(transportType)), ("adrfam", .string(addressFamily)), ("traddr", .string(address)),
            ("trsvcid", .string(serviceID)),
        ])
    }

    /// `tcp:ipv4:10.0.0.1:4420`, the form the ledger keeps.
    public var description: String { "\(transportType):\(addressFamily):\(address):\(serviceID)" }

    public static func < (a: SPDKAddress, b: SPDKAddress) -> Bool { a.description < b.description }
}

/// A namespace of an SPDK subsystem.
public struct SPDKNamespace: Sendable, Hashable {
    public var nsid: Int
    public var bdev: String
    public var uuid: String?
    public var nguid: String?
}

/// A subsystem as `nvmf_get_subsystems` reports it.
public struct SPDKSubsystem: Sendable, Hashable {
    public var nqn: String
    public var isDiscovery: Bool
    public var listeners: [SPDKAddress]
    public var allowAnyHost: Bool
    public var hosts: [String]
    public var serial: String?
    public var model: String?
    public var namespaces: [SPDKNamespace]
}

/// A block device as `bdev_get_bdevs` reports it.
public struct SPDKBdev: Sendable, Hashable {
    public var name: String
    public var product: String
    public var blockSize: Int
    public var blocks: Int
    public var uuid: String?
    /// The file or device of an AIO bdev.
    public var fileName: String?
}

/// An NVMe controller attached by `bdev_nvme_attach_controller`.
public struct SPDKController: Sendable, Hashable {
    public var name: String
    public var transportType: String?
    public var address: String?
}

/// What an SPDK target serves, read with four calls.
public struct SPDKState: Sendable, Hashable {
    public var version: String?
    public var transports: [String]
    public var subsystems: [SPDKSubsystem]
    public var bdevs: [SPDKBdev]
    public var controllers: [SPDKController]

    public static let discoveryNQN = "nqn.2014-08.org.nvmexpress.discovery"

    public init(
        version: String? = nil,
        transports: [String] = [],
        subsystems: [SPDKSubsystem] = [],
        bdevs: [SPDKBdev] = [],
        controllers: [SPDKController] = []
    ) {
        self.version = version
        self.transports = transports
        self.subsystems = subsystems
        self.bdevs = bdevs
        self.controllers = controllers
    }

    /// The discovery subsystem's listeners.
    public var discoveryListeners: [SPDKAddress] {
        subsystems.first { $0.isDiscovery }?.listeners ?? []
    }

    /// The NVM subsystems (not the discovery one).
    public var storageSubsystems: [SPDKSubsystem] { subsystems.filter { !$0.isDiscovery } }

    /// Reads the target: transports, subsystems, bdevs and NVMe controllers.
    public static func read(from client: SPDKRPCClient) throws(SPDKRPCError) -> SPDKState {
        var state = SPDKState()
        state.transports = try parseTransports(client.call("nvmf_get_transports"))
        state.subsystems = try parseSubsystems(client.call("nvmf_get_subsystems"))
        state.bdevs = try parseBdevs(client.call("bdev_get_bdevs"))
        state.controllers = try parseControllers(client.call("bdev_nvme_get_controllers"))
        return state
    }

    static func array(_ value: JSONValue, _ method: String) throws(SPDKRPCError) -> [JSONValue] {
        guard let elements = value.arrayValue else {
            throw .garbage("\(method): expected a JSON array, got \(value.serialized(pretty: false).prefix(80))")
        }
        return elements
    }

    public static func parseTransports(_ value: JSONValue) throws(SPDKRPCError) -> [String] {
        try array(value, "nvmf_get_transports").compactMap { $0["trtype"]?.stringValue?.uppercased() }
    }

    public static func parseSubsystems(_ value: JSONValue) throws(SPDKRPCError) -> [SPDKSubsystem] {
        try array(value, "nvmf_get_subsystems").compactMap { json in
            guard let nqn = json["nqn"]?.stringValue else { return nil }
            let namespaces: [SPDKNamespace] = (json["namespaces"]?.arrayValue ?? []).compactMap { ns in
                guard let nsid = ns["nsid"]?.intValue else { return nil }
                return SPDKNamespace(
                    nsid: nsid,
                    bdev: ns["bdev_name"]?.stringValue ?? ns["name"]?.stringValue ?? "",
                    uuid: ns["uuid"]?.stringValue?.lowercased(),
                    nguid: ns["nguid"]?.stringValue?.lowercased()
                )
            }
            return SPDKSubsystem(
                nqn: nqn,
                isDiscovery: json["subtype"]?.stringValue == "Discovery" || nqn == discoveryNQN,
                listeners: (json["listen_addresses"]?.arrayValue ?? []).compactMap(SPDKAddress.init(json:)),
                allowAnyHost: json["allow_any_host"] == .bool(true),
                hosts: (json["hosts"]?.arrayValue ?? []).compactMap { $0["nqn"]?.stringValue },
                serial: json["serial_number"]?.stringValue,
                model: json["model_number"]?.stringValue,
                namespaces: namespaces
            )
        }
    }

    public static func parseBdevs(_ value: JSONValue) throws(SPDKRPCError) -> [SPDKBdev] {
        try array(value, "bdev_get_bdevs").compactMap { json in
            guard let name = json["name"]?.stringValue else { return nil }
            return SPDKBdev(
                name: name,
                product: json["product_name"]?.stringValue ?? "",
                blockSize: json["block_size"]?.intValue ?? 0,
                blocks: json["num_blocks"]?.intValue ?? 0,
                uuid: json["uuid"]?.stringValue,
                fileName: json["driver_specific"]?["aio"]?["filename"]?.stringValue
            )
        }
    }

    public static func parseControllers(_ value: JSONValue) throws(SPDKRPCError) -> [SPDKController] {
        try array(value, "bdev_nvme_get_controllers").compactMap { json in
            guard let name = json["name"]?.stringValue else { return nil }
            let trid = json["ctrlrs"]?.arrayValue?.first?["trid"] ?? json["trid"]
            return SPDKController(
                name: name,
                transportType: trid?["trtype"]?.stringValue,
                address: trid?["traddr"]?.stringValue
            )
        }
    }
}
