import Crypto
import Foundation

// What dem and a target's dem-em exchange: the target's slice of the model as dem-em applies
// it to the kernel target (`EndpointConfiguration`), what dem-em finds on its machine
// (`EndpointInventory`) and what it reports after applying (`EndpointStatus`). The same JSON
// travels over dem-em's REST API and its in-band channel; `Version` names the schema.

/// The desired state of one target's kernel NVMe-oF target (nvmet): ports, hosts and
/// subsystems with their namespaces, allowed hosts and ports.
public struct EndpointConfiguration: Codable, Sendable, Hashable {
    /// The schema this build writes.
    public static let currentVersion = 1

    public var version: Int
    /// PortIDs, ordered by PORTID.
    public var ports: [FabricPort]
    /// HOSTNQNs of the hosts some subsystem allows, sorted.
    public var hosts: [String]
    /// Subsystems, ordered by SUBNQN.
    public var subsystems: [EndpointSubsystem]
    /// DH-HMAC-CHAP keys of hosts in ``hosts``, ordered by HOSTNQN: nvmet demands them.
    public var hostKeys: [EndpointHostKey]

    enum CodingKeys: String, CodingKey, CaseIterable {
        case version = "Version"
        case ports = "PortIDs"
        case hosts = "Hosts"
        case subsystems = "Subsystems"
        case hostKeys = "HostKeys"
    }

    public init(
        version: Int = EndpointConfiguration.currentVersion,
        ports: [FabricPort] = [],
        hosts: [String] = [],
        subsystems: [EndpointSubsystem] = [],
        hostKeys: [EndpointHostKey] = []
    ) {
        self.version = version
        self.ports = ports.sorted { $0.portID < $1.portID }
        self.hosts = hosts.sorted()
        self.subsystems = subsystems.sorted { $0.nqn < $1.nqn }
        self.hostKeys = hostKeys.sorted { $0.hostNQN < $1.hostNQN }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(version, forKey: .version)
        try c.encode(ports, forKey: .ports)
        try c.encode(hosts, forKey: .hosts)
        try c.encode(subsystems, forKey: .subsystems)
        if !hostKeys.isEmpty { try c.encode(hostKeys, forKey: .hostKeys) }
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let version = try c.decodeLenientIntIfPresent(forKey: .version) ?? Self.currentVersion
        guard version <= Self.currentVersion else {
            throw DecodingError.dataCorruptedError(
                forKey: .version,
                in: c,
                debugDescription: "schema version \(version) is newer than this build's \(Self.currentVersion)"
            )
        }
        self.init(
            version: version,
            ports: try c.decodeIfPresent([FabricPort].self, forKey: .ports) ?? [],
            hosts: try c.decodeIfPresent([String].self, forKey: .hosts) ?? [],
            subsystems: try c.decodeIfPresent([EndpointSubsystem].self, forKey: .subsystems) ?? [],
            hostKeys: try c.decodeIfPresent([EndpointHostKey].self, forKey: .hostKeys) ?? []
        )
    }

    /// Why this configuration cannot be applied, or nil: duplicate or out-of-range ids,
    /// links to ports or hosts it does not define, namespaces without a device.
    public func problem() -> ModelError? {
        var portIDs = Set<Int>()
        for (i, port) in ports.enumerated() {
            guard (1...0xFFFE).contains(port.portID) else {
                return ModelError(.invalid, field: "PortIDs[\(i)].PORTID", "PORTID must be 1…65534")
            }
            guard portIDs.insert(port.portID).inserted else {
                return ModelError(.conflict, field: "PortIDs[\(i)].PORTID", "PORTID \(port.portID) appears twice")
            }
        }
        let hostSet = Set(hosts)
        var nqns = Set<String>()
        for (i, subsystem) in subsystems.enumerated() {
            let path = "Subsystems[\(i)]"
            guard !subsystem.nqn.isEmpty, !subsystem.nqn.contains("/") else {
                return ModelError(.invalid, field: "\(path).SUBNQN", "SUBNQN must be a non-empty NQN without '/'")
            }
            guard nqns.insert(subsystem.nqn).inserted else {
                return ModelError(.conflict, field: "\(path).SUBNQN", "\(subsystem.nqn) appears twice")
            }
            var nsids = Set<Int>()
            for (j, namespace) in subsystem.namespaces.enumerated() {
                guard (1...0xFFFF_FFFE).contains(namespace.namespaceID) else {
                    return ModelError(.invalid, field: "\(path).NSIDs[\(j)].NSID", "NSID must be 1…4294967294")
                }
                guard nsids.insert(namespace.namespaceID).inserted else {
                    return ModelError(
                        .conflict,
                        field: "\(path).NSIDs[\(j)].NSID",
                        "NSID \(namespace.namespaceID) appears twice"
                    )
                }
                guard namespace.devicePath.hasPrefix("/") else {
                    return ModelError(
                        .invalid,
                        field: "\(path).NSIDs[\(j)].DevicePath",
                        "DevicePath must be an absolute path"
                    )
                }
            }
            for (j, host) in subsystem.hosts.enumerated() where !hostSet.contains(host) {
                return ModelError(.invalid, field: "\(path).Hosts[\(j)]", "host \(host) is not in Hosts")
            }
            for (j, port) in subsystem.ports.enumerated() where !portIDs.contains(port) {
                return ModelError(.invalid, field: "\(path).PortIDs[\(j)]", "PORTID \(port) is not in PortIDs")
            }
        }
        var keyed = Set<String>()
        for (i, key) in hostKeys.enumerated() {
            let path = "HostKeys[\(i)]"
            guard hostSet.contains(key.hostNQN) else {
                return ModelError(.invalid, field: "\(path).HOSTNQN", "host \(key.hostNQN) is not in Hosts")
            }
            guard keyed.insert(key.hostNQN).inserted else {
                return ModelError(.conflict, field: "\(path).HOSTNQN", "\(key.hostNQN) appears twice")
            }
            guard DHCHAP.Hash(name: key.hash) != nil else {
                return ModelError(.invalid, field: "\(path).Hash", "must be sha256, sha384 or sha512")
            }
            guard DHCHAP.Group(name: key.group) != nil else {
                return ModelError(.invalid, field: "\(path).DHGroup", "must be null or ffdhe2048 … ffdhe8192")
            }
        }
        return nil
    }
}

/// A host's DH-HMAC-CHAP keys as dem hands them to a target: sealed under a key derived from
/// the fabric credential (``HostKeySeal``), so the secrets are never in the clear on the
/// management link, in dem-em's state file or in its answers; dem-em opens them to write nvmet's
/// `hosts/<nqn>/dhchap_key`, `dhchap_ctrl_key`, `dhchap_hash` and `dhchap_dhgroup`.
public struct EndpointHostKey: Codable, Sendable, Hashable {
    public var hostNQN: String
    /// The host's secret, sealed.
    public var sealedSecret: String
    /// The controller's secret (two-way), sealed.
    public var sealedControllerSecret: String?
    /// sha256, sha384 or sha512.
    public var hash: String
    /// null, ffdhe2048 … ffdhe8192.
    public var group: String

    enum CodingKeys: String, CodingKey {
        case hostNQN = "HOSTNQN"
        case sealedSecret = "SealedSecret"
        case sealedControllerSecret = "SealedControllerSecret"
        case hash = "Hash"
        case group = "DHGroup"
    }

    public init(hostNQN: String, sealedSecret: String, sealedControllerSecret: String?, hash: String, group: String) {
        self.hostNQN = hostNQN
        self.sealedSecret = sealedSecret
        self.sealedControllerSecret = sealedControllerSecret
        self.hash = hash
        self.group = group
    }
}

/// Seals DH-HMAC-CHAP secrets for a target: ChaCha20-Poly1305 (swift-crypto) under
/// HKDF-SHA-256(fabric credential, info "DEM host key seal 1"), bound to the host NQN as
/// authenticated data. The nonce is synthetic (the first 12 bytes of HMAC-SHA-256 under the same
/// key of host NQN ‖ 00h ‖ secret), so the same secret seals to the same text and an unchanged
/// configuration is not pushed again. Text form: `DEMSEAL-1:` and the base64 of
/// nonce ‖ ciphertext ‖ tag.
public enum HostKeySeal {
    static let prefix = "DEMSEAL-1:"

    private static func key(_ credential: String) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: Array(credential.utf8)),
            info: Array("DEM host key seal 1".utf8),
            outputByteCount: 32
        )
    }

    /// `secret` sealed for `hostNQN`.
    public static func seal(_ secret: DHCHAPSecret, hostNQN: String, credential: String) -> String {
        let key = key(credential)
        let plain = Array(secret.text.utf8)
        let synthetic = HMAC<SHA256>.authenticationCode(for: Array(hostNQN.utf8) + [0] + plain, using: key)
        let box = try! ChaChaPoly.seal(
            plain,
            using: key,
            nonce: try! ChaChaPoly.Nonce(data: Array(synthetic.prefix(12))),
            authenticating: Array(hostNQN.utf8)
        )
        return prefix + box.combined.base64EncodedString()
    }

    /// The secret in `sealed`, or nil when it was sealed under another credential, for another
    /// host, or is not a sealed secret.
    public static func open(_ sealed: String, hostNQN: String, credential: String) -> DHCHAPSecret? {
        guard sealed.hasPrefix(prefix), let data = Data(base64Encoded: String(sealed.dropFirst(prefix.count))),
            let box = try? ChaChaPoly.SealedBox(combined: data),
            let plain = try? ChaChaPoly.open(box, using: key(credential), authenticating: Array(hostNQN.utf8))
        else { return nil }
        return try? DHCHAPSecret(parsing: String(decoding: plain, as: UTF8.self))
    }
}

/// A subsystem as dem-em applies it.
public struct EndpointSubsystem: Codable, Sendable, Hashable {
    public var nqn: String
    public var allowAnyHost: Bool
    public var serial: String?
    public var model: String?
    /// Namespaces, ordered by NSID.
    public var namespaces: [EndpointNamespace]
    /// HOSTNQNs on its access list, sorted; empty when AllowAnyHost (the kernel refuses both).
    public var hosts: [String]
    /// PORTIDs it is exposed on, sorted.
    public var ports: [Int]

    enum CodingKeys: String, CodingKey {
        case nqn = "SUBNQN"
        case allowAnyHost = "AllowAnyHost"
        case serial = "Serial"
        case model = "Model"
        case namespaces = "NSIDs"
        case hosts = "Hosts"
        case ports = "PortIDs"
    }

    public init(
        nqn: String,
        allowAnyHost: Bool,
        serial: String? = nil,
        model: String? = nil,
        namespaces: [EndpointNamespace] = [],
        hosts: [String] = [],
        ports: [Int] = []
    ) {
        self.nqn = nqn
        self.allowAnyHost = allowAnyHost
        self.serial = serial
        self.model = model
        self.namespaces = namespaces.sorted { $0.namespaceID < $1.namespaceID }
        self.hosts = hosts.sorted()
        self.ports = ports.sorted()
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            nqn: try c.decode(String.self, forKey: .nqn),
            allowAnyHost: try c.decodeFlagIfPresent(forKey: .allowAnyHost) ?? false,
            serial: try c.decodeIfPresent(String.self, forKey: .serial),
            model: try c.decodeIfPresent(String.self, forKey: .model),
            namespaces: try c.decodeIfPresent([EndpointNamespace].self, forKey: .namespaces) ?? [],
            hosts: try c.decodeIfPresent([String].self, forKey: .hosts) ?? [],
            ports: try c.decodeIfPresent([LenientInt].self, forKey: .ports)?.map(\.value) ?? []
        )
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(nqn, forKey: .nqn)
        try c.encode(allowAnyHost ? 1 : 0, forKey: .allowAnyHost)
        try c.encodeIfPresent(serial, forKey: .serial)
        try c.encodeIfPresent(model, forKey: .model)
        try c.encode(namespaces, forKey: .namespaces)
        try c.encode(hosts, forKey: .hosts)
        try c.encode(ports, forKey: .ports)
    }
}

/// A namespace as dem-em applies it: the backing device and its identifiers.
public struct EndpointNamespace: Codable, Sendable, Hashable {
    public var namespaceID: Int
    /// The block device or file, such as `/dev/nullb0`.
    public var devicePath: String
    public var uuid: String?
    public var nguid: String?
    /// Whether the namespace is enabled (default true).
    public var enabled: Bool

    enum CodingKeys: String, CodingKey {
        case namespaceID = "NSID"
        case devicePath = "DevicePath"
        case uuid = "UUID"
        case nguid = "NGUID"
        case enabled = "Enable"
    }

    public init(namespaceID: Int, devicePath: String, uuid: String? = nil, nguid: String? = nil, enabled: Bool = true) {
        self.namespaceID = namespaceID
        self.devicePath = devicePath
        self.uuid = uuid
        self.nguid = nguid
        self.enabled = enabled
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        namespaceID = try c.decodeLenientInt(forKey: .namespaceID)
        devicePath = try c.decode(String.self, forKey: .devicePath)
        uuid = try c.decodeIfPresent(String.self, forKey: .uuid)
        nguid = try c.decodeIfPresent(String.self, forKey: .nguid)
        enabled = try c.decodeFlagIfPresent(forKey: .enabled) ?? true
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(namespaceID, forKey: .namespaceID)
        try c.encode(devicePath, forKey: .devicePath)
        try c.encodeIfPresent(uuid, forKey: .uuid)
        try c.encodeIfPresent(nguid, forKey: .nguid)
        try c.encode(enabled ? 1 : 0, forKey: .enabled)
    }
}

/// An integer that may arrive as a JSON number or a string of digits.
struct LenientInt: Decodable {
    var value: Int
    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let int = try? c.decode(Int.self) {
            value = int
        } else if let text = try? c.decode(String.self), let int = Int(text) {
            value = int
        } else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "expected an integer")
        }
    }
}

/// What dem-em finds on its machine.
public struct EndpointInventory: Codable, Sendable, Hashable {
    /// Block devices and files that can back namespaces (nvme-dem's `NSDevices`, with the
    /// richer fields).
    public var devices: [ReportedDevice]
    /// Fabric interfaces: each netdev address, by transport (nvme-dem's `Interfaces`).
    public var interfaces: [ReportedInterface]
    /// RDMA devices and the netdevs they sit on.
    public var rdmaDevices: [RDMADevice]
    /// The machine's host name.
    public var hostname: String?
    /// The target software and what it has (SPDK: its transports, listeners, NVMe controllers).
    public var backend: EndpointBackend?

    enum CodingKeys: String, CodingKey {
        case devices = "NSDevices"
        case interfaces = "Interfaces"
        case rdmaDevices = "RDMADevices"
        case hostname = "Hostname"
        case backend = "Backend"
    }

    public init(
        devices: [ReportedDevice] = [],
        interfaces: [ReportedInterface] = [],
        rdmaDevices: [RDMADevice] = [],
        hostname: String? = nil
    ) {
        self.devices = devices
        self.interfaces = interfaces
        self.rdmaDevices = rdmaDevices
        self.hostname = hostname
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        devices = try c.decodeIfPresent([ReportedDevice].self, forKey: .devices) ?? []
        interfaces = try c.decodeIfPresent([ReportedInterface].self, forKey: .interfaces) ?? []
        rdmaDevices = try c.decodeIfPresent([RDMADevice].self, forKey: .rdmaDevices) ?? []
        hostname = try c.decodeIfPresent(String.self, forKey: .hostname)
        backend = try c.decodeIfPresent(EndpointBackend.self, forKey: .backend)
    }
}

/// The NVMe-oF target software a dem-em drives.
public struct EndpointBackend: Codable, Sendable, Hashable {
    /// `nvmet` (the kernel target, through configfs) or `spdk` (SPDK's nvmf_tgt, through its
    /// JSON-RPC socket).
    public var name: String
    /// The target's version as it reports it (SPDK: `SPDK v24.01 git sha1 …`).
    public var version: String?
    /// Where dem-em drives it: the configfs folder or the RPC socket.
    public var location: String?
    /// Whether it answered at the last look (nil: not asked).
    public var reachable: Bool?
    /// SPDK: the transports made (TCP, RDMA).
    public var transports: [String]?
    /// SPDK: every listener, `NQN tcp:ipv4:ADDRESS:PORT` (the discovery subsystem's included).
    public var listeners: [String]?
    /// SPDK: the NVMe controllers attached, `NAME (ADDRESS)`.
    public var controllers: [String]?

    enum CodingKeys: String, CodingKey {
        case name = "Name"
        case version = "Version"
        case location = "Location"
        case reachable = "Reachable"
        case transports = "Transports"
        case listeners = "Listeners"
        case controllers = "Controllers"
    }

    public init(
        name: String,
        version: String? = nil,
        location: String? = nil,
        reachable: Bool? = nil,
        transports: [String]? = nil,
        listeners: [String]? = nil,
        controllers: [String]? = nil
    ) {
        self.name = name
        self.version = version
        self.location = location
        self.reachable = reachable
        self.transports = transports
        self.listeners = listeners
        self.controllers = controllers
    }

    /// One line: `spdk SPDK v24.01 git sha1 247e1d7 at /var/tmp/spdk.sock`.
    public var summary: String {
        var text = name
        if let version { text += " (\(version))" }
        if let location { text += " at \(location)" }
        if reachable == false { text += ", not answering" }
        return text
    }
}

/// An RDMA device (`/sys/class/infiniband/<name>`) and its network devices.
public struct RDMADevice: Codable, Sendable, Hashable {
    public var name: String
    public var netdevs: [String]

    enum CodingKeys: String, CodingKey {
        case name = "Name"
        case netdevs = "Netdevs"
    }

    public init(name: String, netdevs: [String]) {
        self.name = name
        self.netdevs = netdevs
    }
}

/// A subsystem the kernel target serves, as dem-em reads it back: enabled namespaces and the
/// ports it is linked to.
public struct LiveSubsystem: Codable, Sendable, Hashable {
    public var nqn: String
    public var ports: [Int]
    public var namespaces: [Int]

    enum CodingKeys: String, CodingKey {
        case nqn = "SUBNQN"
        case ports = "PortIDs"
        case namespaces = "NSIDs"
    }

    public init(nqn: String, ports: [Int], namespaces: [Int]) {
        self.nqn = nqn
        self.ports = ports
        self.namespaces = namespaces
    }
}

/// One difference between the desired and the actual kernel target.
public struct EndpointDrift: Codable, Sendable, Hashable {
    /// The configfs object, relative to the nvmet root, such as `subsystems/<nqn>/namespaces/1`.
    public var object: String
    /// The attribute, or nil when the object itself is missing or extra.
    public var attribute: String?
    public var expected: String?
    public var actual: String?

    enum CodingKeys: String, CodingKey {
        case object = "Object"
        case attribute = "Attribute"
        case expected = "Expected"
        case actual = "Actual"
    }

    public init(object: String, attribute: String? = nil, expected: String?, actual: String?) {
        self.object = object
        self.attribute = attribute
        self.expected = expected
        self.actual = actual
    }
}

/// What dem-em reports about its kernel target.
public struct EndpointStatus: Codable, Sendable, Hashable {
    /// Bumped each time the desired state changes.
    public var generation: Int
    /// The generation last applied in full, or nil.
    public var appliedGeneration: Int?
    /// What the kernel target serves now.
    public var live: [LiveSubsystem]
    /// Differences from the desired state found at the last check.
    public var drift: [EndpointDrift]
    /// Objects in the desired state that exist but were not created by dem-em, left alone.
    public var foreign: [String]
    /// Errors of the last apply, one line each.
    public var errors: [String]
    /// Why dem-em applies nothing now (its desired state was lost or damaged while it owns
    /// objects in the kernel target), until a configuration is pushed; nil when it applies.
    public var hold: String?
    /// The target and the dem this dem-em belongs to, once dem configured it.
    public var owner: EndpointOwner?
    /// An enrolled dem-em's certificate (nil: not enrolled): dem renews it when it is due, or
    /// when the fabric's CAs changed.
    public var certificate: EndpointCertificate?
    /// The target software dem-em drives (nil: a dem-em that does not say, which drives nvmet).
    public var backend: EndpointBackend?

    enum CodingKeys: String, CodingKey {
        case certificate = "Certificate"
        case backend = "Backend"
        case generation = "Generation"
        case appliedGeneration = "AppliedGeneration"
        case live = "Live"
        case drift = "Drift"
        case foreign = "Foreign"
        case errors = "Errors"
        case hold = "Hold"
        case owner = "Owner"
    }

    public init(
        generation: Int = 0,
        appliedGeneration: Int? = nil,
        live: [LiveSubsystem] = [],
        drift: [EndpointDrift] = [],
        foreign: [String] = [],
        errors: [String] = [],
        hold: String? = nil,
        owner: EndpointOwner? = nil,
        certificate: EndpointCertificate? = nil,
        backend: EndpointBackend? = nil
    ) {
        self.certificate = certificate
        self.backend = backend
        self.generation = generation
        self.appliedGeneration = appliedGeneration
        self.live = live
        self.drift = drift
        self.foreign = foreign
        self.errors = errors
        self.hold = hold
        self.owner = owner
    }
}

/// An enrolled dem-em's certificate of the fabric CA, as its `/status` reports it.
public struct EndpointCertificate: Codable, Sendable, Hashable {
    /// `sha256:<hex>` of the certificate.
    public var fingerprint: String
    public var issued: Date
    public var expires: Date
    /// The fingerprint of the CA that signed it (among those dem-em trusts), or nil.
    public var issuer: String?
    /// The fingerprints of the CAs dem-em trusts for dem's certificate.
    public var trusts: [String]

    enum CodingKeys: String, CodingKey {
        case fingerprint = "Fingerprint"
        case issued = "Issued"
        case expires = "Expires"
        case issuer = "Issuer"
        case trusts = "Trusts"
    }

    public init(fingerprint: String, issued: Date, expires: Date, issuer: String?, trusts: [String]) {
        self.fingerprint = fingerprint
        self.issued = issued
        self.expires = expires
        self.issuer = issuer
        self.trusts = trusts
    }
}

/// dem-em's answer to `POST /certificate/request`: a request for a certificate of a key it
/// made now (kept until the certificate is installed), and the names dem reaches its API by.
public struct EndpointCertificateRequest: Codable, Sendable, Hashable {
    /// A PEM certificate signing request.
    public var CSR: String
    public var Names: [String]

    public init(CSR: String, Names: [String]) {
        self.CSR = CSR
        self.Names = Names
    }
}

/// `PUT /certificate`: dem-em's new certificate and the CAs it is to trust for dem's (PEM).
public struct EndpointCertificateInstall: Codable, Sendable, Hashable, RequestFields {
    public var Certificate: String
    public var CA: String

    enum CodingKeys: String, CodingKey, CaseIterable { case Certificate, CA }
    public static let fieldNames = names(CodingKeys.self)

    public init(Certificate: String, CA: String) {
        self.Certificate = Certificate
        self.CA = CA
    }
}

/// Who a dem-em belongs to: a dem-em manages one target of one dem, recorded at the first
/// configuration that dem pushes (`PUT /config?target=ALIAS&dem=NQN`), and refuses the
/// configuration of any other.
public struct EndpointOwner: Codable, Sendable, Hashable {
    /// The target's alias in dem's model.
    public var target: String
    /// The dem: its host NQN (kept in `hostnqn` in dem's data directory).
    public var dem: String
    /// When it was recorded.
    public var since: Date?

    enum CodingKeys: String, CodingKey {
        case target = "Target"
        case dem = "DEM"
        case since = "Since"
    }

    public init(target: String, dem: String, since: Date? = nil) {
        self.target = target
        self.dem = dem
        self.since = since
    }

    /// Whether `other` names the same target of the same dem.
    public func isSame(as other: EndpointOwner) -> Bool { target == other.target && dem == other.dem }

    /// The query dem adds to its pushes.
    public var query: String {
        let allowed = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-._~:"))
        func encoded(_ text: String) -> String { text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text }
        return "target=\(encoded(target))&dem=\(encoded(dem))"
    }
}

/// What dem-em sends to dem when it joins (`POST /dem/join`): the target's alias, where dem
/// reaches its API, and what it has.
public struct EndpointJoin: Codable, Sendable, Hashable {
    /// The target's alias in dem's model (dem-em's `--alias`, default its host name).
    public var alias: String
    /// Where dem reaches dem-em's REST API.
    public var interface: ManagementInterface
    public var inventory: EndpointInventory

    enum CodingKeys: String, CodingKey, CaseIterable {
        case alias = "Alias"
        case interface = "Interface"
        case inventory = "Inventory"
    }

    public init(alias: String, interface: ManagementInterface, inventory: EndpointInventory) {
        self.alias = alias
        self.interface = interface
        self.inventory = inventory
    }
}
