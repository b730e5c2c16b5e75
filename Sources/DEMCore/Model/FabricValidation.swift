import Foundation

/// Why a change to the fabric model was refused, naming the field at fault.
public struct ModelError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of refusal it is (the REST API maps it to a status code).
    public enum Kind: String, Sendable, Hashable {
        /// A value is malformed or out of range.
        case invalid
        /// A resource named does not exist.
        case notFound
        /// A resource already exists, or is still in use.
        case conflict
    }

    public var kind: Kind
    /// The JSON key at fault, such as `SUBNQN` or `PortIDs[0].TRADDR`.
    public var field: String
    public var message: String

    public init(_ kind: Kind, field: String, _ message: String) {
        self.kind = kind
        self.field = field
        self.message = message
    }

    public static func invalid(_ field: String, _ message: String) -> ModelError {
        .init(.invalid, field: field, message)
    }
    public static func notFound(_ field: String, _ message: String) -> ModelError {
        .init(.notFound, field: field, message)
    }
    public static func conflict(_ field: String, _ message: String) -> ModelError {
        .init(.conflict, field: field, message)
    }

    public var description: String { "\(field): \(message)" }
}

/// The checks of single values: names, NQNs, addresses, ranges.
public enum FabricValidation {
    /// Characters an alias or group name may have (nvme-dem's web UI rule), 1…64 of them.
    static let aliasCharacters = Set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ#<>_:.-")

    /// A target or host alias, or a group name.
    public static func checkName(_ value: String, field: String) throws(ModelError) {
        guard !value.isEmpty, value.count <= 64 else {
            throw .invalid(field, "must be 1 to 64 characters long, \"\(value)\" has \(value.count)")
        }
        guard value.allSatisfy({ aliasCharacters.contains($0) }) else {
            throw .invalid(field, "\"\(value)\" may only have letters, digits and # < > _ : . -")
        }
    }

    /// An NQN (NVMe Base 2.1 §4.7).
    public static func checkNQN(_ value: String, field: String) throws(ModelError) {
        do {
            _ = try NQN(value)
        } catch {
            throw .invalid(field, error.description)
        }
    }

    /// Transport types dem knows.
    public static let transportTypes: Set<String> = ["tcp", "rdma", "fc", "loop"]
    /// Address families dem knows.
    public static let addressFamilies: Set<String> = ["ipv4", "ipv6", "ib", "fc", "loop"]

    /// A port: PORTID range, transport, family against the address, service ID range.
    public static func checkPort(_ port: FabricPort, field prefix: String = "") throws(ModelError) {
        guard (1...65534).contains(port.portID) else {
            throw .invalid(prefix + "PORTID", "must be 1 to 65534, not \(port.portID)")
        }
        guard transportTypes.contains(port.transportType) else {
            throw .invalid(prefix + "TRTYPE", "must be one of tcp, rdma, fc, loop, not \"\(port.transportType)\"")
        }
        guard addressFamilies.contains(port.addressFamily) else {
            throw .invalid(
                prefix + "ADRFAM",
                "must be one of ipv4, ipv6, ib, fc, loop, not \"\(port.addressFamily)\""
            )
        }
        switch port.transportType {
        case "tcp", "rdma":
            guard ["ipv4", "ipv6", "ib"].contains(port.addressFamily),
                port.transportType == "rdma" || port.addressFamily != "ib"
            else {
                throw .invalid(
                    prefix + "ADRFAM",
                    "\(port.addressFamily) is not an address family of \(port.transportType)"
                )
            }
        case "fc":
            guard port.addressFamily == "fc" else { throw .invalid(prefix + "ADRFAM", "fc ports have ADRFAM fc") }
        default:
            guard port.addressFamily == "loop" else { throw .invalid(prefix + "ADRFAM", "loop ports have ADRFAM loop") }
        }
        try checkAddress(port.transportAddress, family: port.addressFamily, field: prefix + "TRADDR")
        guard (0...65535).contains(port.transportServiceIdentifier) else {
            throw .invalid(prefix + "TRSVCID", "must be 0 to 65535, not \(port.transportServiceIdentifier)")
        }
        if ["tcp", "rdma"].contains(port.transportType), port.transportServiceIdentifier == 0 {
            throw .invalid(prefix + "TRSVCID", "must be 1 to 65535 for \(port.transportType)")
        }
        if let treq = port.transportRequirements, !["not specified", "required", "not required"].contains(treq) {
            throw .invalid(
                prefix + "TREQ",
                "must be \"not specified\", \"required\" or \"not required\", not \"\(treq)\""
            )
        }
        if let tsas = port.securityType {
            guard port.transportType == "tcp", ["none", "tls1.3"].contains(tsas) else {
                throw .invalid(prefix + "TSAS", "must be \"none\" or \"tls1.3\", and only on tcp ports")
            }
        }
    }

    /// An address in a family.
    public static func checkAddress(_ address: String, family: String, field: String) throws(ModelError) {
        switch family {
        case "ipv4":
            guard IPAddressText.isIPv4(address) else { throw .invalid(field, "\"\(address)\" is not an IPv4 address") }
        case "ipv6":
            guard IPAddressText.isIPv6(address) else { throw .invalid(field, "\"\(address)\" is not an IPv6 address") }
        case "fc":
            // nn-0x<16 hex>:pn-0x<16 hex>
            let parts = address.split(separator: ":")
            let ok =
                parts.count == 2 && parts[0].hasPrefix("nn-0x") && parts[1].hasPrefix("pn-0x")
                && parts.allSatisfy { part in
                    part.dropFirst(5).count == 16 && part.dropFirst(5).allSatisfy { $0.isASCII && $0.isHexDigit }
                }
            guard ok else { throw .invalid(field, "\"\(address)\" is not nn-0x<16 hex digits>:pn-0x<16 hex digits>") }
        default:
            guard !address.isEmpty, address.utf8.count <= 256 else {
                throw .invalid(field, "must be 1 to 256 bytes long")
            }
        }
    }

    /// A management interface for a mode.
    public static func checkInterface(_ interface: ManagementInterface?, mode: ManagementMode) throws(ModelError) {
        switch mode {
        case .local:
            // Optional: the address of the target's own discovery controller, in the in-band form.
            guard let interface, interface.transportAddress != nil || interface.transportType != nil else { return }
            try checkInterface(interface, mode: .inBand)
        case .outOfBand:
            guard let interface, let address = interface.address, let port = interface.port else {
                throw .invalid("Interface", "OutOfBandMgmt needs an Interface with FAMILY, ADDRESS and PORT")
            }
            let family = interface.family ?? (IPAddressText.isIPv6(address) ? "ipv6" : "ipv4")
            guard family == "ipv4" || family == "ipv6" else {
                throw .invalid("Interface.FAMILY", "must be ipv4 or ipv6, not \"\(family)\"")
            }
            try checkManagementAddress(address, family: family, field: "Interface.ADDRESS")
            guard (1...65535).contains(port) else {
                throw .invalid("Interface.PORT", "must be 1 to 65535, not \(port)")
            }
        case .inBand:
            guard let interface, let trtype = interface.transportType, let adrfam = interface.addressFamily,
                let traddr = interface.transportAddress
            else {
                throw .invalid("Interface", "InBandMgmt needs an Interface with TRTYPE, ADRFAM, TRADDR and TRSVCID")
            }
            let port = FabricPort(
                portID: 1,
                transportType: trtype,
                addressFamily: adrfam,
                transportAddress: traddr,
                transportServiceIdentifier: interface.transportServiceIdentifier ?? 4420
            )
            try checkPort(port, field: "Interface.")
        }
    }

    private static func checkManagementAddress(_ address: String, family: String, field: String) throws(ModelError) {
        if IPAddressText.isIPv4(address) || IPAddressText.isIPv6(address) {
            try checkAddress(address, family: family, field: field)
            return
        }
        // A host name.
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.")
        guard !address.isEmpty, address.count <= 253, address.allSatisfy({ allowed.contains($0) }) else {
            throw .invalid(field, "\"\(address)\" is neither an IP address nor a host name")
        }
    }

    /// A namespace: NSID range, one backing device, UUID and NGUID formats.
    public static func checkNamespace(_ namespace: FabricNamespace) throws(ModelError) {
        guard (1...0xFFFF_FFFE).contains(namespace.namespaceID) else {
            throw .invalid("NSID", "must be 1 to 4294967294, not \(namespace.namespaceID)")
        }
        switch (namespace.deviceID, namespace.devicePath) {
        case (nil, nil):
            throw .invalid("DeviceID", "a namespace needs DeviceID (with DeviceNSID) or DevicePath")
        case (.some, .some):
            throw .invalid("DevicePath", "give DeviceID or DevicePath, not both")
        case (.some(let id), nil):
            guard id >= -1 else { throw .invalid("DeviceID", "must be -1 (nullb0) or a controller index ≥ 0") }
            if id >= 0 {
                guard let nsid = namespace.deviceNamespaceID, nsid >= 1 else {
                    throw .invalid("DeviceNSID", "must be the device's namespace ID (≥ 1) when DeviceID is \(id)")
                }
            }
        case (nil, .some(let path)):
            guard path.hasPrefix("/"), !path.contains("/../"), !path.hasSuffix("/.."), path.utf8.count <= 4096 else {
                throw .invalid("DevicePath", "must be an absolute path, not \"\(path)\"")
            }
        }
        if let uuid = namespace.uuid {
            guard uuid.count == 36, UUID(uuidString: uuid) != nil else {
                throw .invalid("UUID", "\"\(uuid)\" is not a UUID")
            }
        }
        if let nguid = namespace.nguid {
            let hex = nguid.replacingOccurrences(of: "-", with: "")
            guard hex.count == 32, hex.allSatisfy({ $0.isASCII && $0.isHexDigit }) else {
                throw .invalid("NGUID", "\"\(nguid)\" is not 32 hexadecimal digits")
            }
        }
    }

    /// A subsystem's own fields (not its namespaces or access list).
    public static func checkSubsystemFields(_ subsystem: FabricSubsystem) throws(ModelError) {
        try checkNQN(subsystem.nqn, field: "SUBNQN")
        guard subsystem.nqn != DEMCore.wellKnownDiscoveryNQN else {
            throw .invalid("SUBNQN", "the well-known discovery NQN cannot name an NVM subsystem")
        }
        if let serial = subsystem.serial {
            guard !serial.isEmpty, serial.utf8.count <= 20,
                serial.unicodeScalars.allSatisfy({ (0x20...0x7E).contains($0.value) })
            else { throw .invalid("Serial", "must be 1 to 20 printable ASCII characters") }
        }
        if let model = subsystem.model {
            guard !model.isEmpty, model.utf8.count <= 40,
                model.unicodeScalars.allSatisfy({ (0x20...0x7E).contains($0.value) })
            else { throw .invalid("Model", "must be 1 to 40 printable ASCII characters") }
        }
    }

    /// A host's own fields.
    public static func checkHostFields(_ host: FabricHost) throws(ModelError) {
        try checkName(host.alias, field: "Alias")
        if let nqn = host.nqn { try checkNQN(nqn, field: "HOSTNQN") }
        if let hostID = host.hostID {
            guard hostID.count == 36, UUID(uuidString: hostID) != nil else {
                throw .invalid("HOSTID", "\"\(hostID)\" is not a UUID")
            }
        }
    }

    /// A target's own fields (not its ports or subsystems).
    public static func checkTargetFields(_ target: FabricTarget) throws(ModelError) {
        try checkName(target.alias, field: "Alias")
        guard (0...525_600).contains(target.refresh) else {
            throw .invalid("Refresh", "must be 0 (off) to 525600 minutes, not \(target.refresh)")
        }
        try checkInterface(target.interface, mode: target.managementMode)
    }
}
