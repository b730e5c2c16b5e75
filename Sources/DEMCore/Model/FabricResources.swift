import Foundation

// The resources an administrator describes, in nvme-dem's JSON keys (`Alias`, `SUBNQN`,
// `AllowAnyHost`, `PORTID`…), so its users' scripts and configuration files carry over.

/// How dem manages a target.
public enum ManagementMode: String, Codable, Sendable, Hashable, CaseIterable, NamedValues {
    /// dem only reads the target's own discovery controller; the target is configured locally.
    case local = "LocalMgmt"
    /// dem configures the target through dem-em over NVMe-oF (NVMe-MI Send/Receive).
    case inBand = "InBandMgmt"
    /// dem configures the target through dem-em's REST API.
    case outOfBand = "OutOfBandMgmt"
}

/// A string enum whose decoding error lists the values it takes: `must be LocalMgmt,
/// InBandMgmt or OutOfBandMgmt, not "Bogus"`.
public protocol NamedValues: RawRepresentable<String>, CaseIterable, Decodable {}

extension NamedValues {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let value = Self(rawValue: text) else {
            throw DecodingError.dataCorrupted(
                .init(codingPath: decoder.codingPath, debugDescription: "must be \(Self.valueList), not \"\(text)\"")
            )
        }
        self = value
    }

    /// The values, as a sentence: `A, B or C`.
    public static var valueList: String {
        let names = allCases.map(\.rawValue)
        guard names.count > 1 else { return names.first ?? "" }
        return names.dropLast().joined(separator: ", ") + " or " + names.last!
    }
}

/// Where a managed target's dem-em is reached, as one comparable value: two targets with the
/// same one would share a dem-em.
public struct EndpointKey: Sendable, Hashable, CustomStringConvertible {
    /// "http" (out-of-band) or the in-band TRTYPE.
    public var channel: String
    public var address: String
    public var port: Int

    public var description: String {
        let host = address.contains(":") ? "[\(address)]" : address
        return channel == "http" ? "\(host):\(port)" : "in-band \(channel) \(host):\(port)"
    }
}

extension FabricTarget {
    /// Where this target's dem-em is reached, for OutOfBandMgmt and InBandMgmt targets with an
    /// address; nil otherwise.
    public var endpointKey: EndpointKey? {
        guard let interface else { return nil }
        switch managementMode {
        case .outOfBand:
            guard let address = interface.address, !address.isEmpty else { return nil }
            return EndpointKey(
                channel: "http",
                address: IPAddressText.canonical(address),
                port: interface.port ?? DEMCore.endpointManagerPort
            )
        case .inBand:
            guard let address = interface.transportAddress, !address.isEmpty else { return nil }
            return EndpointKey(
                channel: interface.transportType ?? "tcp",
                address: IPAddressText.canonical(address),
                port: interface.transportServiceIdentifier ?? DEMCore.endpointInBandPort
            )
        case .local:
            return nil
        }
    }
}

/// Where dem reaches a target's dem-em: `FAMILY`/`ADDRESS`/`PORT` out-of-band, or
/// `TRTYPE`/`ADRFAM`/`TRADDR`/`TRSVCID` in-band.
public struct ManagementInterface: Codable, Sendable, Hashable {
    public var family: String?
    public var address: String?
    public var port: Int?
    public var transportType: String?
    public var addressFamily: String?
    public var transportAddress: String?
    public var transportServiceIdentifier: Int?
    /// OutOfBandMgmt: dem-em's API speaks TLS with a certificate of the fabric CA, and takes
    /// dem's certificate instead of the fabric credential (set when an enrolled dem-em joins).
    public var tls: Bool?

    enum CodingKeys: String, CodingKey {
        case tls = "TLS"
        case family = "FAMILY"
        case address = "ADDRESS"
        case port = "PORT"
        case transportType = "TRTYPE"
        case addressFamily = "ADRFAM"
        case transportAddress = "TRADDR"
        case transportServiceIdentifier = "TRSVCID"
    }

    public init(
        family: String? = nil,
        address: String? = nil,
        port: Int? = nil,
        transportType: String? = nil,
        addressFamily: String? = nil,
        transportAddress: String? = nil,
        transportServiceIdentifier: Int? = nil,
        tls: Bool? = nil
    ) {
        self.tls = tls
        self.family = family
        self.address = address
        self.port = port
        self.transportType = transportType
        self.addressFamily = addressFamily
        self.transportAddress = transportAddress
        self.transportServiceIdentifier = transportServiceIdentifier
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        family = try c.decodeIfPresent(String.self, forKey: .family)
        address = try c.decodeIfPresent(String.self, forKey: .address)
        port = try c.decodeLenientIntIfPresent(forKey: .port)
        transportType = try c.decodeIfPresent(String.self, forKey: .transportType)
        addressFamily = try c.decodeIfPresent(String.self, forKey: .addressFamily)
        transportAddress = try c.decodeIfPresent(String.self, forKey: .transportAddress)
        transportServiceIdentifier = try c.decodeLenientIntIfPresent(forKey: .transportServiceIdentifier)
        tls = try c.decodeIfPresent(Bool.self, forKey: .tls)
    }
}

/// A fabric port of a target (an nvmet port): where hosts reach its subsystems.
public struct FabricPort: Codable, Sendable, Hashable {
    /// PORTID, 1…65534, unique within the target.
    public var portID: Int
    /// TRTYPE: `tcp`, `rdma`, `fc` or `loop`.
    public var transportType: String
    /// ADRFAM: `ipv4`, `ipv6`, `ib`, `fc` or `loop`.
    public var addressFamily: String
    /// TRADDR.
    public var transportAddress: String
    /// TRSVCID (an integer, as nvme-dem has it; 4420 when absent).
    public var transportServiceIdentifier: Int
    /// TREQ: `not specified`, `required` or `not required` (secure channel).
    public var transportRequirements: String?
    /// TSAS for TCP: `none` or `tls1.3`.
    public var securityType: String?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case portID = "PORTID"
        case transportType = "TRTYPE"
        case addressFamily = "ADRFAM"
        case transportAddress = "TRADDR"
        case transportServiceIdentifier = "TRSVCID"
        case transportRequirements = "TREQ"
        case securityType = "TSAS"
    }

    public init(
        portID: Int,
        transportType: String,
        addressFamily: String,
        transportAddress: String,
        transportServiceIdentifier: Int = 4420,
        transportRequirements: String? = nil,
        securityType: String? = nil
    ) {
        self.portID = portID
        self.transportType = transportType
        self.addressFamily = addressFamily
        self.transportAddress = transportAddress
        self.transportServiceIdentifier = transportServiceIdentifier
        self.transportRequirements = transportRequirements
        self.securityType = securityType
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        portID = try c.decodeLenientInt(forKey: .portID)
        transportType = try c.decode(String.self, forKey: .transportType)
        addressFamily = try c.decode(String.self, forKey: .addressFamily)
        transportAddress = try c.decode(String.self, forKey: .transportAddress)
        transportServiceIdentifier = try c.decodeLenientIntIfPresent(forKey: .transportServiceIdentifier) ?? 4420
        transportRequirements = try c.decodeTransportRequirementsIfPresent(forKey: .transportRequirements)
        securityType = try c.decodeIfPresent(String.self, forKey: .securityType)
    }
}

/// A namespace of a subsystem: NSID and its backing device, `DeviceID`/`DeviceNSID` (nvme-dem's
/// `nvme<DeviceID>n<DeviceNSID>`, DeviceID -1 meaning nullb0) or a device path.
public struct FabricNamespace: Codable, Sendable, Hashable {
    /// NSID, 1…0xFFFFFFFE, unique within the subsystem.
    public var namespaceID: Int
    public var deviceID: Int?
    public var deviceNamespaceID: Int?
    /// A block device or file path, such as `/dev/nullb0`.
    public var devicePath: String?
    public var uuid: String?
    public var nguid: String?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case namespaceID = "NSID"
        case deviceID = "DeviceID"
        case deviceNamespaceID = "DeviceNSID"
        case devicePath = "DevicePath"
        case uuid = "UUID"
        case nguid = "NGUID"
    }

    public init(
        namespaceID: Int,
        deviceID: Int? = nil,
        deviceNamespaceID: Int? = nil,
        devicePath: String? = nil,
        uuid: String? = nil,
        nguid: String? = nil
    ) {
        self.namespaceID = namespaceID
        self.deviceID = deviceID
        self.deviceNamespaceID = deviceNamespaceID
        self.devicePath = devicePath
        self.uuid = uuid
        self.nguid = nguid
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        namespaceID = try c.decodeLenientInt(forKey: .namespaceID)
        deviceID = try c.decodeLenientIntIfPresent(forKey: .deviceID)
        deviceNamespaceID = try c.decodeLenientIntIfPresent(forKey: .deviceNamespaceID)
        devicePath = try c.decodeIfPresent(String.self, forKey: .devicePath)
        uuid = try c.decodeIfPresent(String.self, forKey: .uuid)
        nguid = try c.decodeIfPresent(String.self, forKey: .nguid)
    }
}

/// An NVM subsystem on a target.
public struct FabricSubsystem: Codable, Sendable, Hashable {
    /// SUBNQN, unique within the target.
    public var nqn: String
    /// Whether any host may use it (`AllowAnyHost`, 0 or 1 in JSON). Otherwise only the hosts of
    /// its access list.
    public var allowAnyHost: Bool
    public var serial: String?
    public var model: String?
    /// NSIDs, ordered by NSID.
    public var namespaces: [FabricNamespace]
    /// The access list: host aliases, sorted.
    public var hosts: [String]

    enum CodingKeys: String, CodingKey, CaseIterable {
        case nqn = "SUBNQN"
        case allowAnyHost = "AllowAnyHost"
        case serial = "Serial"
        case model = "Model"
        case namespaces = "NSIDs"
        case hosts = "Hosts"
    }

    public init(
        nqn: String,
        allowAnyHost: Bool = true,
        serial: String? = nil,
        model: String? = nil,
        namespaces: [FabricNamespace] = [],
        hosts: [String] = []
    ) {
        self.nqn = nqn
        self.allowAnyHost = allowAnyHost
        self.serial = serial
        self.model = model
        self.namespaces = namespaces
        self.hosts = hosts
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        nqn = try c.decode(String.self, forKey: .nqn)
        allowAnyHost = try c.decodeFlagIfPresent(forKey: .allowAnyHost) ?? true
        serial = try c.decodeIfPresent(String.self, forKey: .serial)
        model = try c.decodeIfPresent(String.self, forKey: .model)
        namespaces = try c.decodeIfPresent([FabricNamespace].self, forKey: .namespaces) ?? []
        hosts = try c.decodeIfPresent([String].self, forKey: .hosts) ?? []
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(nqn, forKey: .nqn)
        try c.encode(allowAnyHost ? 1 : 0, forKey: .allowAnyHost)
        try c.encodeIfPresent(serial, forKey: .serial)
        try c.encodeIfPresent(model, forKey: .model)
        try c.encode(namespaces, forKey: .namespaces)
        try c.encode(hosts, forKey: .hosts)
    }
}

/// A device a target's dem-em reports (nvme-dem's NSDevices).
public struct ReportedDevice: Codable, Sendable, Hashable {
    /// nvme-dem's device number: N of `/dev/nvmeN` for an NVMe namespace, -1 for null_blk and
    /// other devices (then DevicePath names it).
    public var deviceID: Int
    /// The namespace of `/dev/nvme<DeviceID>n<DeviceNSID>`.
    public var deviceNamespaceID: Int?
    /// `/dev/nvme0n1`, `/dev/nullb0`, a block device or a file.
    public var devicePath: String?
    /// `nvme`, `null_blk`, `block` or `file`.
    public var kind: String?
    public var model: String?
    public var serial: String?
    /// Capacity in bytes.
    public var size: Int?
    /// The NVMe controller (`nvme0`) of an NVMe namespace.
    public var controller: String?

    enum CodingKeys: String, CodingKey {
        case deviceID = "DeviceID"
        case deviceNamespaceID = "DeviceNSID"
        case devicePath = "DevicePath"
        case kind = "Kind"
        case model = "Model"
        case serial = "Serial"
        case size = "Size"
        case controller = "Controller"
    }

    public init(
        deviceID: Int,
        deviceNamespaceID: Int? = nil,
        devicePath: String? = nil,
        kind: String? = nil,
        model: String? = nil,
        serial: String? = nil,
        size: Int? = nil,
        controller: String? = nil
    ) {
        self.deviceID = deviceID
        self.deviceNamespaceID = deviceNamespaceID
        self.devicePath = devicePath
        self.kind = kind
        self.model = model
        self.serial = serial
        self.size = size
        self.controller = controller
    }
}

/// A fabric interface a target's dem-em reports.
public struct ReportedInterface: Codable, Sendable, Hashable {
    public var transportType: String
    public var addressFamily: String
    public var transportAddress: String
    /// The network device (`eth0`) the address is on.
    public var netdev: String?
    /// The RDMA device on that netdev, for `rdma`.
    public var rdmaDevice: String?

    enum CodingKeys: String, CodingKey {
        case transportType = "TRTYPE"
        case addressFamily = "ADRFAM"
        case transportAddress = "TRADDR"
        case netdev = "Netdev"
        case rdmaDevice = "RDMADevice"
    }

    public init(
        transportType: String,
        addressFamily: String,
        transportAddress: String,
        netdev: String? = nil,
        rdmaDevice: String? = nil
    ) {
        self.transportType = transportType
        self.addressFamily = addressFamily
        self.transportAddress = transportAddress
        self.netdev = netdev
        self.rdmaDevice = rdmaDevice
    }
}

/// A storage target.
public struct FabricTarget: Codable, Sendable, Hashable {
    /// Alias, the target's key.
    public var alias: String
    /// Minutes between refreshes of its log pages (0: off).
    public var refresh: Int
    public var managementMode: ManagementMode
    public var interface: ManagementInterface?
    /// PortIDs, ordered by PORTID.
    public var ports: [FabricPort]
    /// Subsystems, ordered by NQN.
    public var subsystems: [FabricSubsystem]
    public var reportedDevices: [ReportedDevice]
    public var reportedInterfaces: [ReportedInterface]

    enum CodingKeys: String, CodingKey, CaseIterable {
        case alias = "Alias"
        case refresh = "Refresh"
        case managementMode = "MgmtMode"
        case interface = "Interface"
        case ports = "PortIDs"
        case subsystems = "Subsystems"
        case reportedDevices = "NSDevices"
        case reportedInterfaces = "Interfaces"
    }

    public init(
        alias: String,
        refresh: Int = 0,
        managementMode: ManagementMode = .local,
        interface: ManagementInterface? = nil,
        ports: [FabricPort] = [],
        subsystems: [FabricSubsystem] = [],
        reportedDevices: [ReportedDevice] = [],
        reportedInterfaces: [ReportedInterface] = []
    ) {
        self.alias = alias
        self.refresh = refresh
        self.managementMode = managementMode
        self.interface = interface
        self.ports = ports
        self.subsystems = subsystems
        self.reportedDevices = reportedDevices
        self.reportedInterfaces = reportedInterfaces
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        alias = try c.decode(String.self, forKey: .alias)
        refresh = try c.decodeLenientIntIfPresent(forKey: .refresh) ?? 0
        managementMode = try c.decodeIfPresent(ManagementMode.self, forKey: .managementMode) ?? .local
        interface = try c.decodeIfPresent(ManagementInterface.self, forKey: .interface)
        ports = try c.decodeIfPresent([FabricPort].self, forKey: .ports) ?? []
        subsystems = try c.decodeIfPresent([FabricSubsystem].self, forKey: .subsystems) ?? []
        reportedDevices = try c.decodeIfPresent([ReportedDevice].self, forKey: .reportedDevices) ?? []
        reportedInterfaces = try c.decodeIfPresent([ReportedInterface].self, forKey: .reportedInterfaces) ?? []
    }
}

/// A host that uses the fabric.
public struct FabricHost: Codable, Sendable, Hashable {
    /// Alias, the host's key.
    public var alias: String
    /// HOSTNQN, unique among hosts. A host without one (nvme-dem's `add host <alias>`) can be
    /// grouped but not put on an access list, and sees nothing until it has one.
    public var nqn: String?
    /// HOSTID (a UUID), optional.
    public var hostID: String?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case alias = "Alias"
        case nqn = "HOSTNQN"
        case hostID = "HOSTID"
    }

    public init(alias: String, nqn: String?, hostID: String? = nil) {
        self.alias = alias
        self.nqn = nqn
        self.hostID = hostID
    }
}

/// A group of targets and hosts: a target in at least one group is visible only to hosts that
/// share one of its groups.
public struct FabricGroup: Codable, Sendable, Hashable {
    public var name: String
    /// Target aliases, sorted.
    public var targets: [String]
    /// Host aliases, sorted.
    public var hosts: [String]

    enum CodingKeys: String, CodingKey {
        case name = "Name"
        case targets = "Targets"
        case hosts = "Hosts"
    }

    public init(name: String, targets: [String] = [], hosts: [String] = []) {
        self.name = name
        self.targets = targets
        self.hosts = hosts
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        targets = try c.decodeIfPresent([String].self, forKey: .targets) ?? []
        hosts = try c.decodeIfPresent([String].self, forKey: .hosts) ?? []
    }
}

// MARK: Lenient decoding of nvme-dem's JSON (numbers as strings, flags as 0/1 or booleans)

extension KeyedDecodingContainer {
    /// An integer, also given as a string of digits.
    public func decodeLenientIntIfPresent(forKey key: Key) throws -> Int? {
        guard contains(key), try !decodeNil(forKey: key) else { return nil }
        if let value = try? decode(Int.self, forKey: key) { return value }
        if let text = try? decode(String.self, forKey: key), let value = Int(text) { return value }
        throw DecodingError.typeMismatch(
            Int.self,
            .init(codingPath: codingPath + [key], debugDescription: "expected an integer")
        )
    }

    /// A required integer, also given as a string of digits.
    public func decodeLenientInt(forKey key: Key) throws -> Int {
        guard let value = try decodeLenientIntIfPresent(forKey: key) else {
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "required"))
        }
        return value
    }

    /// A flag given as 0, 1, true or false.
    public func decodeFlagIfPresent(forKey key: Key) throws -> Bool? {
        guard contains(key), try !decodeNil(forKey: key) else { return nil }
        if let value = try? decode(Bool.self, forKey: key) { return value }
        if let value = try? decode(Int.self, forKey: key), value == 0 || value == 1 { return value == 1 }
        throw DecodingError.typeMismatch(
            Bool.self,
            .init(codingPath: codingPath + [key], debugDescription: "expected 0, 1, true or false")
        )
    }

    func decodeTransportRequirementsIfPresent(forKey key: Key) throws -> String? {
        guard contains(key), try !decodeNil(forKey: key) else { return nil }
        if let value = try? decode(Int.self, forKey: key) {
            switch value {
            case 0: return "not specified"
            case 1: return "required"
            case 2: return "not required"
            default:
                throw DecodingError.dataCorrupted(
                    .init(codingPath: codingPath + [key], debugDescription: "expected 0, 1 or 2")
                )
            }
        }
        return try decode(String.self, forKey: key)
    }
}
