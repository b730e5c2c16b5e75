import Foundation

/// What an entity (a host, a direct or a centralized discovery controller) told dem about
/// itself with Discovery Information Management (TP8010 registration), and when. A registration
/// never grants access: it lets an administrator adopt the entity without typing its NQN.
public struct DiscoveryRegistration: Codable, Sendable, Hashable {
    /// One transport address the entity registered.
    public struct Address: Codable, Sendable, Hashable {
        /// `tcp`, `rdma`, `fc`, or the number.
        public var transport: String
        /// `ipv4`, `ipv6`, or the number.
        public var family: String
        public var address: String
        public var service: String
        /// SUBNQN of the entry (a DDC's subsystem, or the host's NQN again).
        public var subsystemNQN: String

        enum CodingKeys: String, CodingKey {
            case transport = "TRTYPE"
            case family = "ADRFAM"
            case address = "TRADDR"
            case service = "TRSVCID"
            case subsystemNQN = "SUBNQN"
        }

        public init(transport: String, family: String, address: String, service: String, subsystemNQN: String) {
            self.transport = transport
            self.family = family
            self.address = address
            self.service = service
            self.subsystemNQN = subsystemNQN
        }
    }

    /// EID: the entity's NQN (a host's NQN, a DDC's discovery subsystem NQN).
    public var nqn: String
    /// ETYPE: `host`, `DDC` or `CDC`.
    public var entityType: String
    /// The host ID: the HOSTID attribute, else the one the Connect carried (UUID text).
    public var hostID: String?
    /// ENAME: the entity's name (Linux sends the host name).
    public var name: String
    /// EVER: the entity's version (Linux sends the operating system).
    public var version: String
    /// The SYMNAME attribute, when sent.
    public var symbolicName: String?
    public var addresses: [Address]
    /// The address the registration came from.
    public var from: String?
    /// When the entity first registered.
    public var registered: Date
    /// When it last registered or updated.
    public var updated: Date

    enum CodingKeys: String, CodingKey {
        case nqn = "NQN"
        case entityType = "Type"
        case hostID = "HOSTID"
        case name = "Name"
        case version = "Version"
        case symbolicName = "SymbolicName"
        case addresses = "Addresses"
        case from = "From"
        case registered = "Registered"
        case updated = "Updated"
    }

    public init(
        nqn: String,
        entityType: String,
        hostID: String? = nil,
        name: String = "",
        version: String = "",
        symbolicName: String? = nil,
        addresses: [Address] = [],
        from: String? = nil,
        registered: Date,
        updated: Date
    ) {
        self.nqn = nqn
        self.entityType = entityType
        self.hostID = hostID
        self.name = name
        self.version = version
        self.symbolicName = symbolicName
        self.addresses = addresses
        self.from = from
        self.registered = registered
        self.updated = updated
    }

    /// The registration `information` makes, sent from `host` at `now`. An entry's empty TRADDR
    /// (nvme-cli sends none) or PORTLCL means the address the command came from.
    public init(_ information: DiscoveryInformation, host: DiscoveryHostContext, now: Date) {
        let remote = host.remoteAddress.map(Self.addressOnly)
        var hostID = information.entries.lazy.compactMap(\.hostIdentifier).first
        if hostID == nil, information.entityType == .host, host.hostIdentifier.contains(where: { $0 != 0 }) {
            hostID = host.hostIdentifier
        }
        self.init(
            nqn: information.entityIdentifier,
            entityType: information.entityType.name,
            hostID: hostID.flatMap(uuidText),
            name: information.entityName,
            version: information.entityVersion,
            symbolicName: information.entries.lazy.compactMap(\.symbolicName).first { !$0.isEmpty },
            addresses: information.entries.map { item in
                let entry = item.entry
                var address = entry.transportAddress
                if address.isEmpty || information.portLocal { address = remote ?? address }
                var family = Self.familyName(entry.addressFamily)
                if entry.addressFamily.rawValue == 0, !address.isEmpty {
                    family = address.contains(":") ? "ipv6" : "ipv4"
                }
                return Address(
                    transport: Self.transportName(entry.transportType),
                    family: family,
                    address: address,
                    service: entry.transportServiceIdentifier,
                    subsystemNQN: entry.subsystemNQN
                )
            },
            from: remote,
            registered: now,
            updated: now
        )
    }

    /// A host name as a host alias: letters, digits, `-`, `_` and `.` kept, the rest `-`.
    public var suggestedAlias: String {
        let base = name.isEmpty ? (nqn.split(separator: ":").last.map(String.init) ?? nqn) : name
        let cleaned = String(
            base.unicodeScalars.map { scalar -> Character in
                CharacterSet.alphanumerics.contains(scalar) && scalar.isASCII || "-_.".unicodeScalars.contains(scalar)
                    ? Character(scalar) : "-"
            }
        )
        return String(cleaned.prefix(64))
    }

    /// `192.0.2.1` from `192.0.2.1:4420`, `fe80::1` from `fe80::1:4420` or `[fe80::1]:4420` (the
    /// listeners name a host as its address and port).
    static func addressOnly(_ text: String) -> String {
        if text.hasPrefix("["), let end = text.firstIndex(of: "]") {
            return String(text[text.index(after: text.startIndex)..<end])
        }
        guard let colon = text.lastIndex(of: ":"), text[text.index(after: colon)...].allSatisfy(\.isNumber) else {
            return text
        }
        return String(text[..<colon])
    }

    static func transportName(_ type: TransportType) -> String {
        switch type {
        case .tcp: "tcp"
        case .rdma: "rdma"
        case .fibreChannel: "fc"
        case .loop: "loop"
        default: String(type.rawValue)
        }
    }

    static func familyName(_ family: AddressFamily) -> String {
        switch family {
        case .ipv4: "ipv4"
        case .ipv6: "ipv6"
        case .infiniBand: "ib"
        case .fibreChannel: "fc"
        case .loop: "loop"
        case .pci: "pci"
        default: String(family.rawValue)
        }
    }
}

/// A host that opened a discovery controller on dem, registered or not: so hosts that never
/// register are visible too.
public struct SeenHost: Codable, Sendable, Hashable {
    public var nqn: String
    /// The host ID of its Connect (UUID text), when not zero.
    public var hostID: String?
    public var from: String?
    /// When it last connected.
    public var lastSeen: Date

    enum CodingKeys: String, CodingKey {
        case nqn = "NQN"
        case hostID = "HOSTID"
        case from = "From"
        case lastSeen = "LastSeen"
    }

    public init(_ host: DiscoveryHostContext, now: Date) {
        nqn = host.hostNQN
        hostID =
            host.hostIdentifier.contains(where: { $0 != 0 })
            ? uuidText(host.hostIdentifier) : nil
        from = host.remoteAddress.map(DiscoveryRegistration.addressOnly)
        lastSeen = now
    }
}
