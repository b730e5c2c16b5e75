import DEMCore

// The kernel target as it is: what `NvmetTree.read` finds under the nvmet root, tolerant of
// missing attributes and entries it does not understand (they are skipped, never fatal).

/// A symlink in the tree: its name and the last component of its target (the subsystem or host
/// it points at).
public struct NvmetLink: Sendable, Hashable {
    public var name: String
    public var target: String

    public init(name: String, target: String) {
        self.name = name
        self.target = target
    }

    /// A link named after its target, as dem-em and nvmetcli make them.
    public init(_ target: String) {
        self.init(name: target, target: target)
    }
}

/// A port (`ports/<id>`) as read.
public struct NvmetPortState: Sendable, Hashable {
    public var id: Int
    /// `addr_trtype`, empty when unset.
    public var transportType: String
    /// `addr_adrfam`, empty when unset.
    public var addressFamily: String
    /// `addr_traddr`.
    public var transportAddress: String
    /// `addr_trsvcid`, as text.
    public var serviceID: String
    /// `addr_treq`, nil when the attribute is missing.
    public var transportRequirements: String?
    /// `addr_tsas`, nil when the attribute is missing (kernels before 6.7).
    public var securityType: String?
    /// `subsystems/*`, sorted by name.
    public var links: [NvmetLink]

    public init(
        id: Int,
        transportType: String = "",
        addressFamily: String = "",
        transportAddress: String = "",
        serviceID: String = "",
        transportRequirements: String? = "not specified",
        securityType: String? = nil,
        links: [NvmetLink] = []
    ) {
        self.id = id
        self.transportType = transportType
        self.addressFamily = addressFamily
        self.transportAddress = transportAddress
        self.serviceID = serviceID
        self.transportRequirements = transportRequirements
        self.securityType = securityType
        self.links = links.sorted { $0.name < $1.name }
    }
}

/// A namespace (`subsystems/<nqn>/namespaces/<nsid>`) as read.
public struct NvmetNamespaceState: Sendable, Hashable {
    public var id: Int
    /// `device_path`, nil when unset (the kernel reads `(null)`).
    public var devicePath: String?
    /// `device_uuid` in canonical form, nil when all zero.
    public var uuid: String?
    /// `device_nguid` in canonical form, nil when all zero.
    public var nguid: String?
    public var enabled: Bool

    public init(id: Int, devicePath: String? = nil, uuid: String? = nil, nguid: String? = nil, enabled: Bool = false) {
        self.id = id
        self.devicePath = devicePath
        self.uuid = uuid
        self.nguid = nguid
        self.enabled = enabled
    }
}

/// A subsystem (`subsystems/<nqn>`) as read.
public struct NvmetSubsystemState: Sendable, Hashable {
    public var nqn: String
    /// `attr_allow_any_host`, false when unreadable.
    public var allowAnyHost: Bool
    public var serial: String?
    public var model: String?
    /// `allowed_hosts/*`, sorted by name.
    public var allowedHosts: [NvmetLink]
    /// Sorted by NSID.
    public var namespaces: [NvmetNamespaceState]

    public init(
        nqn: String,
        allowAnyHost: Bool = false,
        serial: String? = nil,
        model: String? = nil,
        allowedHosts: [NvmetLink] = [],
        namespaces: [NvmetNamespaceState] = []
    ) {
        self.nqn = nqn
        self.allowAnyHost = allowAnyHost
        self.serial = serial
        self.model = model
        self.allowedHosts = allowedHosts.sorted { $0.name < $1.name }
        self.namespaces = namespaces.sorted { $0.id < $1.id }
    }
}

/// A host's DH-HMAC-CHAP attributes (`hosts/<nqn>/dhchap_*`) as read; absent when the kernel's
/// nvmet is built without authentication (CONFIG_NVME_TARGET_AUTH).
public struct NvmetHostAuthentication: Sendable, Hashable {
    /// `dhchap_key`, nil when unset.
    public var key: String?
    /// `dhchap_ctrl_key`, nil when unset.
    public var controllerKey: String?
    /// `dhchap_hash`, such as `hmac(sha256)`.
    public var hash: String?
    /// `dhchap_dhgroup`, such as `null` or `ffdhe2048`.
    public var group: String?

    public init(key: String? = nil, controllerKey: String? = nil, hash: String? = nil, group: String? = nil) {
        self.key = key
        self.controllerKey = controllerKey
        self.hash = hash
        self.group = group
    }
}

/// The whole nvmet tree as read.
public struct NvmetTree: Sendable, Hashable {
    /// Sorted by id.
    public var ports: [NvmetPortState]
    /// Sorted by NQN.
    public var subsystems: [NvmetSubsystemState]
    /// Host NQNs (`hosts/*`), sorted.
    public var hosts: [String]
    /// Each host's DH-HMAC-CHAP attributes, when the kernel has them.
    public var hostAuthentication: [String: NvmetHostAuthentication]

    public init(
        ports: [NvmetPortState] = [],
        subsystems: [NvmetSubsystemState] = [],
        hosts: [String] = [],
        hostAuthentication: [String: NvmetHostAuthentication] = [:]
    ) {
        self.ports = ports.sorted { $0.id < $1.id }
        self.subsystems = subsystems.sorted { $0.nqn < $1.nqn }
        self.hosts = hosts.sorted()
        self.hostAuthentication = hostAuthentication
    }

    public func port(_ id: Int) -> NvmetPortState? { ports.first { $0.id == id } }
    public func subsystem(_ nqn: String) -> NvmetSubsystemState? { subsystems.first { $0.nqn == nqn } }

    /// Reads the tree. Missing folders read as empty; entries with unexpected names or kinds
    /// are skipped; unreadable attributes take their unset value.
    public static func read(from fs: some NvmetFileSystem) -> NvmetTree {
        func attribute(_ path: String) -> String? { try? fs.readAttribute(path) }
        func directories(_ path: String) -> [String] {
            ((try? fs.list(path)) ?? []).filter { fs.kind("\(path)/\($0)") == .directory }
        }
        func links(_ path: String) -> [NvmetLink] {
            ((try? fs.list(path)) ?? []).compactMap { name in
                guard fs.kind("\(path)/\(name)") == .link else { return nil }
                let target = (try? fs.readLink("\(path)/\(name)")).flatMap(lastComponent) ?? name
                return NvmetLink(name: name, target: target)
            }
        }

        let ports = directories("ports").compactMap { name -> NvmetPortState? in
            guard let id = canonicalInt(name) else { return nil }
            let path = "ports/\(name)"
            return NvmetPortState(
                id: id,
                transportType: attribute("\(path)/addr_trtype") ?? "",
                addressFamily: attribute("\(path)/addr_adrfam") ?? "",
                transportAddress: attribute("\(path)/addr_traddr") ?? "",
                serviceID: attribute("\(path)/addr_trsvcid") ?? "",
                transportRequirements: attribute("\(path)/addr_treq"),
                securityType: attribute("\(path)/addr_tsas"),
                links: links("\(path)/subsystems")
            )
        }
        let subsystems = directories("subsystems").map { nqn -> NvmetSubsystemState in
            let path = "subsystems/\(nqn)"
            let namespaces = directories("\(path)/namespaces").compactMap { name -> NvmetNamespaceState? in
                guard let id = canonicalInt(name) else { return nil }
                let ns = "\(path)/namespaces/\(name)"
                let device = attribute("\(ns)/device_path")
                return NvmetNamespaceState(
                    id: id,
                    devicePath: device == "(null)" || device == "" ? nil : device,
                    uuid: attribute("\(ns)/device_uuid").flatMap(NvmetIdentifier.meaningful),
                    nguid: attribute("\(ns)/device_nguid").flatMap(NvmetIdentifier.meaningful),
                    enabled: attribute("\(ns)/enable").flatMap(parseFlag) ?? false
                )
            }
            return NvmetSubsystemState(
                nqn: nqn,
                allowAnyHost: attribute("\(path)/attr_allow_any_host").flatMap(parseFlag) ?? false,
                serial: attribute("\(path)/attr_serial"),
                model: attribute("\(path)/attr_model"),
                allowedHosts: links("\(path)/allowed_hosts"),
                namespaces: namespaces
            )
        }
        var authentication: [String: NvmetHostAuthentication] = [:]
        let hosts = directories("hosts")
        for host in hosts where fs.kind("hosts/\(host)/dhchap_key") == .file {
            func value(_ name: String) -> String? {
                attribute("hosts/\(host)/\(name)").flatMap { $0.isEmpty || $0 == "(null)" ? nil : $0 }
            }
            authentication[host] = NvmetHostAuthentication(
                key: value("dhchap_key"),
                controllerKey: value("dhchap_ctrl_key"),
                hash: value("dhchap_hash"),
                group: value("dhchap_dhgroup")
            )
        }
        return NvmetTree(ports: ports, subsystems: subsystems, hosts: hosts, hostAuthentication: authentication)
    }

    /// What the kernel target serves: each subsystem with the ports linking it and its enabled
    /// namespaces.
    public var live: [LiveSubsystem] {
        subsystems.map { subsystem in
            LiveSubsystem(
                nqn: subsystem.nqn,
                ports: ports.filter { $0.links.contains { $0.target == subsystem.nqn } }.map(\.id),
                namespaces: subsystem.namespaces.filter(\.enabled).map(\.id)
            )
        }
    }

    /// The tree as an ``EndpointConfiguration`` (for export). Hosts include every host folder
    /// and every allowed-host link target.
    public var configuration: EndpointConfiguration {
        let fabricPorts = ports.map { port in
            let tsas = port.transportType == "tcp" && ["none", "tls1.3"].contains(port.securityType ?? "")
            return FabricPort(
                portID: port.id,
                transportType: port.transportType,
                addressFamily: port.addressFamily,
                transportAddress: port.transportAddress,
                transportServiceIdentifier: Int(port.serviceID) ?? 4420,
                transportRequirements: port.transportRequirements,
                securityType: tsas ? port.securityType : nil
            )
        }
        let endpointSubsystems = subsystems.map { subsystem in
            EndpointSubsystem(
                nqn: subsystem.nqn,
                allowAnyHost: subsystem.allowAnyHost,
                serial: subsystem.serial,
                model: subsystem.model,
                namespaces: subsystem.namespaces.map {
                    EndpointNamespace(
                        namespaceID: $0.id,
                        devicePath: $0.devicePath ?? "",
                        uuid: $0.uuid,
                        nguid: $0.nguid,
                        enabled: $0.enabled
                    )
                },
                hosts: Array(Set(subsystem.allowedHosts.map(\.target))),
                ports: ports.filter { $0.links.contains { $0.target == subsystem.nqn } }.map(\.id)
            )
        }
        let allHosts = Set(hosts).union(subsystems.flatMap { $0.allowedHosts.map(\.target) })
        return EndpointConfiguration(ports: fabricPorts, hosts: Array(allHosts), subsystems: endpointSubsystems)
    }

    /// The last path component of a link target (`../../../subsystems/x` gives `x`).
    static func lastComponent(_ target: String) -> String? {
        let last = target.split(separator: "/", omittingEmptySubsequences: true).last.map(String.init)
        return last?.isEmpty == false ? last : nil
    }

    /// An integer written without sign or leading zeros, as configfs names ports and namespaces.
    static func canonicalInt(_ text: String) -> Int? {
        guard let value = Int(text), value >= 0, String(value) == text else { return nil }
        return value
    }

    /// A boolean attribute (`0`/`1`, also `y`/`n`, `true`/`false`).
    static func parseFlag(_ text: String) -> Bool? {
        switch text.nvmetTrimmed.lowercased() {
        case "1", "y", "yes", "true", "on": true
        case "0", "n", "no", "false", "off": false
        default: nil
        }
    }
}

/// UUIDs and NGUIDs as the kernel writes them: 32 lowercase hex digits grouped 8-4-4-4-12.
public enum NvmetIdentifier {
    /// The all-zero identifier the kernel reads for "unset".
    public static let zero = "00000000-0000-0000-0000-000000000000"

    /// `text` in canonical form (dashes and colons ignored, case folded), or nil when it is not
    /// 16 bytes of hex.
    public static func canonical(_ text: String) -> String? {
        let hex = text.nvmetTrimmed.lowercased().filter { $0 != "-" && $0 != ":" }
        guard hex.count == 32, hex.allSatisfy(\.isHexDigit) else { return nil }
        let chars = Array(hex)
        let groups = [0..<8, 8..<12, 12..<16, 16..<20, 20..<32].map { String(chars[$0]) }
        return groups.joined(separator: "-")
    }

    /// The canonical form of `text` unless it is all zero (unset); text that is not an identifier
    /// is kept as is.
    public static func meaningful(_ text: String) -> String? {
        let trimmed = text.nvmetTrimmed
        guard !trimmed.isEmpty else { return nil }
        guard let canonical = canonical(trimmed) else { return trimmed }
        return canonical == zero ? nil : canonical
    }
}

extension String {
    /// Without leading and trailing spaces, tabs and newlines.
    var nvmetTrimmed: String {
        var text = Substring(self)
        while let first = text.first, first.isWhitespace { text.removeFirst() }
        while let last = text.last, last.isWhitespace { text.removeLast() }
        return String(text)
    }
}
