import DEMCore

/// Plans the fewest operations that turn an nvmet tree into the desired state. Pure: values in,
/// a value out.
///
/// Ownership: each port, subsystem and host is either owned (in the ledger), wanted but foreign
/// (present, not owned: reported and left alone unless `adopt`), or neither. A link belongs to
/// the folder it lives in (`ports/<id>/subsystems/*` to the port, `subsystems/<nqn>/allowed_hosts/*`
/// to the subsystem). In a managed folder, a link to an object the desired state or the ledger
/// speaks about is made to match; a link to a foreign object nobody asked for is kept. Owned
/// objects that are no longer desired are deleted, with every link inside them; a deletion that
/// would need a change to a foreign folder (a foreign port linking the subsystem) is held back
/// and noted. `adopt` takes over only desired objects; undesired foreign ones are never touched.
///
/// Order: unlink port links, unlink allowed hosts, remove namespaces, remove subsystems, remove
/// ports, remove hosts; then create hosts, ports (and write their addresses), subsystems (and
/// their attributes), namespaces, allowed-host links, port links.
public enum NvmetPlanner {
    /// - Parameter hostSecrets: the opened DH-HMAC-CHAP secrets of `desired.hostKeys`, by host
    ///   NQN (the configuration carries them sealed).
    public static func plan(
        desired: EndpointConfiguration,
        actual: NvmetTree,
        owned: NvmetOwnership,
        adopt: Bool = false,
        hostSecrets: [String: NvmetHostAuthentication] = [:]
    ) -> NvmetPlan {
        var planner = Planning(desired: desired, actual: actual, owned: owned, adopt: adopt, hostSecrets: hostSecrets)
        return planner.run()
    }

    /// Whether `name` can be one configfs directory or link name.
    static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name != "." && name != ".." && !name.contains("/") && !name.contains("\0")
    }

    /// A desired UUID or NGUID in the form the kernel reads back; nil when not managed (absent
    /// or all zero).
    static func desiredIdentifier(_ text: String?) -> String? {
        guard let text, !text.nvmetTrimmed.isEmpty else { return nil }
        guard let canonical = NvmetIdentifier.canonical(text) else { return text }
        return canonical == NvmetIdentifier.zero ? nil : canonical
    }
}

/// One attribute whose value is to be written: from drift (differs) or forced by a related
/// write (the kernel resets it).
private struct AttributeChange {
    var attribute: String
    var expected: String
    var actual: String?
    var drifted: Bool
}

/// What to do with a port, subsystem or host.
private enum Disposition {
    case create
    case manage
    case foreign
    case delete
    case blockedDelete
    case untouched
}

/// The planner's working state: one array of operations per phase, concatenated at the end.
private struct Planning {
    let desired: EndpointConfiguration
    let actual: NvmetTree
    let owned: NvmetOwnership
    let adopt: Bool
    let hostSecrets: [String: NvmetHostAuthentication]

    var desiredPorts: [Int: FabricPort] = [:]
    var desiredSubsystems: [String: EndpointSubsystem] = [:]
    var desiredHosts = Set<String>()
    var actualPorts: [Int: NvmetPortState] = [:]
    var actualSubsystems: [String: NvmetSubsystemState] = [:]

    var unlinkPorts: [NvmetOperation] = []
    var unlinkHosts: [NvmetOperation] = []
    var removeNamespaces: [NvmetOperation] = []
    var removeSubsystems: [NvmetOperation] = []
    var removePorts: [NvmetOperation] = []
    var removeHosts: [NvmetOperation] = []
    var createHosts: [NvmetOperation] = []
    var createPorts: [NvmetOperation] = []
    var createSubsystems: [NvmetOperation] = []
    var createNamespaces: [NvmetOperation] = []
    var linkHosts: [NvmetOperation] = []
    var linkPorts: [NvmetOperation] = []

    var drift: [EndpointDrift] = []
    var foreign: [String] = []
    var adopted: [String] = []
    var notes: [String] = []

    init(
        desired: EndpointConfiguration,
        actual: NvmetTree,
        owned: NvmetOwnership,
        adopt: Bool,
        hostSecrets: [String: NvmetHostAuthentication]
    ) {
        self.desired = desired
        self.actual = actual
        self.owned = owned
        self.adopt = adopt
        self.hostSecrets = hostSecrets
    }

    mutating func run() -> NvmetPlan {
        collect()
        let portDispositions = dispositions(
            "ports",
            desired: Set(desiredPorts.keys),
            existing: Set(actualPorts.keys),
            owned: owned.ports
        )
        var subsystemDispositions = dispositions(
            "subsystems",
            desired: Set(desiredSubsystems.keys),
            existing: Set(actualSubsystems.keys),
            owned: owned.subsystems
        )
        var hostDispositions = dispositions(
            "hosts",
            desired: desiredHosts,
            existing: Set(actual.hosts),
            owned: owned.hosts
        )

        // Hold back deletions that need a change in a folder dem-em does not manage.
        for (nqn, disposition) in subsystemDispositions where disposition == .delete {
            let holders = actual.ports.filter { port in
                [.foreign, .untouched].contains(portDispositions[port.id]) && port.links.contains { $0.target == nqn }
            }
            if let holder = holders.first {
                subsystemDispositions[nqn] = .blockedDelete
                notes.append("kept subsystems/\(nqn): still linked from ports/\(holder.id), which dem-em does not own")
            }
        }
        for (host, disposition) in hostDispositions where disposition == .delete {
            let holders = actual.subsystems.filter { subsystem in
                [.foreign, .untouched, .blockedDelete].contains(subsystemDispositions[subsystem.nqn])
                    && subsystem.allowedHosts.contains { $0.target == host }
            }
            if let holder = holders.first {
                hostDispositions[host] = .blockedDelete
                notes.append("kept hosts/\(host): still allowed by subsystems/\(holder.nqn), which is kept")
            }
        }

        for id in portDispositions.keys.sorted() {
            planPort(id, portDispositions[id] ?? .untouched)
        }
        for nqn in subsystemDispositions.keys.sorted() {
            planSubsystem(nqn, subsystemDispositions[nqn] ?? .untouched)
        }
        for host in hostDispositions.keys.sorted() {
            planHost(host, hostDispositions[host] ?? .untouched)
        }

        let operations =
            unlinkPorts + unlinkHosts + removeNamespaces + removeSubsystems + removePorts + removeHosts
            + createHosts + createPorts + createSubsystems + createNamespaces + linkHosts + linkPorts
        return NvmetPlan(
            operations: operations,
            foreign: foreign.sorted(),
            adopted: adopted.sorted(),
            drift: drift,
            notes: notes
        )
    }

    /// Indexes the desired state and the tree, skipping names that cannot be directories.
    private mutating func collect() {
        for port in desired.ports {
            guard (0...0xFFFF).contains(port.portID) else {
                notes.append("skipped port \(port.portID): not a port id")
                continue
            }
            if desiredPorts[port.portID] == nil { desiredPorts[port.portID] = port }
        }
        for subsystem in desired.subsystems {
            guard NvmetPlanner.isValidName(subsystem.nqn) else {
                notes.append("skipped subsystem \"\(subsystem.nqn)\": not a valid directory name")
                continue
            }
            if desiredSubsystems[subsystem.nqn] == nil { desiredSubsystems[subsystem.nqn] = subsystem }
        }
        for host in desired.hosts + desiredSubsystems.values.flatMap(\.hosts) {
            guard NvmetPlanner.isValidName(host) else {
                notes.append("skipped host \"\(host)\": not a valid directory name")
                continue
            }
            desiredHosts.insert(host)
        }
        for port in actual.ports where actualPorts[port.id] == nil { actualPorts[port.id] = port }
        for subsystem in actual.subsystems where actualSubsystems[subsystem.nqn] == nil {
            actualSubsystems[subsystem.nqn] = subsystem
        }
    }

    /// Classifies every object of one kind (`group` is `ports`, `subsystems` or `hosts`) and
    /// records the foreign and adopted ones.
    private mutating func dispositions<Key: Hashable & CustomStringConvertible>(
        _ group: String,
        desired: Set<Key>,
        existing: Set<Key>,
        owned: Set<Key>
    ) -> [Key: Disposition] {
        var result: [Key: Disposition] = [:]
        for key in desired.union(existing) {
            switch (desired.contains(key), existing.contains(key)) {
            case (true, false):
                result[key] = .create
            case (true, true) where owned.contains(key):
                result[key] = .manage
            case (true, true) where adopt:
                result[key] = .manage
                adopted.append("\(group)/\(key)")
            case (true, true):
                result[key] = .foreign
                foreign.append("\(group)/\(key)")
            case (false, true) where owned.contains(key):
                result[key] = .delete
            default:
                result[key] = .untouched
            }
        }
        return result
    }

    // MARK: Ports

    /// Subsystems that should be linked to port `id`.
    private func wantedLinks(port id: Int) -> Set<String> {
        guard desiredPorts[id] != nil else { return [] }
        return Set(desiredSubsystems.values.filter { $0.ports.contains(id) }.map(\.nqn))
    }

    /// Whether the desired state or the ledger speaks about subsystem `nqn`.
    private func concernsSubsystem(_ nqn: String) -> Bool {
        desiredSubsystems[nqn] != nil || owned.subsystems.contains(nqn)
    }

    private func concernsHost(_ host: String) -> Bool {
        desiredHosts.contains(host) || owned.hosts.contains(host)
    }

    private mutating func planPort(_ id: Int, _ disposition: Disposition) {
        let path = "ports/\(id)"
        let wanted = wantedLinks(port: id)
        switch disposition {
        case .delete:
            drift.append(EndpointDrift(object: path, expected: nil, actual: "present"))
            for link in actualPorts[id]?.links ?? [] {
                unlinkPorts.append(.removeLink("\(path)/subsystems/\(link.name)"))
            }
            removePorts.append(.removeDirectory(path))
        case .create:
            guard let port = desiredPorts[id] else { return }
            drift.append(EndpointDrift(object: path, expected: "present", actual: nil))
            createPorts.append(.makeDirectory(path))
            for change in Self.portChanges(port, NvmetPortState(id: id)) {
                createPorts.append(.writeAttribute("\(path)/\(change.attribute)", value: change.expected))
            }
            for nqn in wanted.sorted() {
                linkPorts.append(.createLink("\(path)/subsystems/\(nqn)", target: "subsystems/\(nqn)"))
            }
        case .manage, .foreign:
            guard let port = desiredPorts[id], let current = actualPorts[id] else { return }
            let changes = Self.portChanges(port, current)
            for change in changes where change.drifted {
                drift.append(
                    EndpointDrift(
                        object: path,
                        attribute: change.attribute,
                        expected: change.expected,
                        actual: change.actual
                    )
                )
            }
            let extra = current.links.filter { !wanted.contains($0.target) && concernsSubsystem($0.target) }
            let linked = Set(current.links.map(\.target))
            let missing = wanted.subtracting(linked).sorted()
            for link in extra {
                drift.append(EndpointDrift(object: "\(path)/subsystems/\(link.name)", expected: nil, actual: "present"))
            }
            for nqn in missing {
                drift.append(EndpointDrift(object: "\(path)/subsystems/\(nqn)", expected: "present", actual: nil))
            }
            guard disposition == .manage else { return }
            for link in extra { unlinkPorts.append(.removeLink("\(path)/subsystems/\(link.name)")) }
            if !changes.isEmpty {
                // The kernel refuses address writes while the port has links: lift them all,
                // write, and put back the ones that stay.
                let kept = current.links.filter { link in !extra.contains(link) }
                for link in kept { unlinkPorts.append(.removeLink("\(path)/subsystems/\(link.name)")) }
                for change in changes {
                    createPorts.append(.writeAttribute("\(path)/\(change.attribute)", value: change.expected))
                }
                for link in kept {
                    linkPorts.append(
                        .createLink("\(path)/subsystems/\(link.name)", target: "subsystems/\(link.target)")
                    )
                }
            }
            for nqn in missing {
                linkPorts.append(.createLink("\(path)/subsystems/\(nqn)", target: "subsystems/\(nqn)"))
            }
        case .blockedDelete, .untouched:
            break
        }
    }

    /// The address attributes to write, in the order the kernel needs: the transport type first
    /// (writing it resets the security type), the security type before the requirements (writing
    /// TLS sets them).
    static func portChanges(_ port: FabricPort, _ current: NvmetPortState) -> [AttributeChange] {
        var changes: [AttributeChange] = []
        func compare(_ attribute: String, _ expected: String, _ actual: String?) {
            if actual != expected {
                changes.append(AttributeChange(attribute: attribute, expected: expected, actual: actual, drifted: true))
            }
        }
        let transportType = port.transportType.lowercased()
        let transportTypeChanges = current.transportType != transportType
        compare("addr_trtype", transportType, current.transportType)
        compare("addr_adrfam", port.addressFamily.lowercased(), current.addressFamily)
        compare("addr_traddr", port.transportAddress, current.transportAddress)
        compare("addr_trsvcid", String(port.transportServiceIdentifier), current.serviceID)
        var securityTypeWritten = false
        if let securityType = port.securityType?.lowercased() {
            if current.securityType != securityType {
                compare("addr_tsas", securityType, current.securityType)
                securityTypeWritten = true
            } else if transportTypeChanges {
                changes.append(
                    AttributeChange(
                        attribute: "addr_tsas",
                        expected: securityType,
                        actual: current.securityType,
                        drifted: false
                    )
                )
                securityTypeWritten = true
            }
        }
        if let requirements = port.transportRequirements?.lowercased() {
            if current.transportRequirements != requirements {
                compare("addr_treq", requirements, current.transportRequirements)
            } else if securityTypeWritten {
                changes.append(
                    AttributeChange(
                        attribute: "addr_treq",
                        expected: requirements,
                        actual: current.transportRequirements,
                        drifted: false
                    )
                )
            }
        }
        return changes
    }

    // MARK: Subsystems

    private mutating func planSubsystem(_ nqn: String, _ disposition: Disposition) {
        let path = "subsystems/\(nqn)"
        switch disposition {
        case .delete:
            drift.append(EndpointDrift(object: path, expected: nil, actual: "present"))
            guard let current = actualSubsystems[nqn] else { return }
            for link in current.allowedHosts {
                unlinkHosts.append(.removeLink("\(path)/allowed_hosts/\(link.name)"))
            }
            for namespace in current.namespaces {
                let nsPath = "\(path)/namespaces/\(namespace.id)"
                if namespace.enabled { removeNamespaces.append(.writeAttribute("\(nsPath)/enable", value: "0")) }
                removeNamespaces.append(.removeDirectory(nsPath))
            }
            removeSubsystems.append(.removeDirectory(path))
        case .blockedDelete:
            drift.append(EndpointDrift(object: path, expected: nil, actual: "present"))
        case .create:
            guard let subsystem = desiredSubsystems[nqn] else { return }
            drift.append(EndpointDrift(object: path, expected: "present", actual: nil))
            createSubsystems.append(.makeDirectory(path))
            let fresh = NvmetSubsystemState(nqn: nqn, allowAnyHost: false, serial: nil, model: "Linux")
            for change in Self.subsystemChanges(subsystem, fresh) {
                createSubsystems.append(.writeAttribute("\(path)/\(change.attribute)", value: change.expected))
            }
            for namespace in subsystem.namespaces {
                planNewNamespace(namespace, in: path)
            }
            for host in allowedHosts(of: subsystem).sorted() {
                linkHosts.append(.createLink("\(path)/allowed_hosts/\(host)", target: "hosts/\(host)"))
            }
        case .manage, .foreign:
            guard let subsystem = desiredSubsystems[nqn], let current = actualSubsystems[nqn] else { return }
            let manage = disposition == .manage
            for change in Self.subsystemChanges(subsystem, current) {
                drift.append(
                    EndpointDrift(
                        object: path,
                        attribute: change.attribute,
                        expected: change.expected,
                        actual: change.actual
                    )
                )
                if manage {
                    createSubsystems.append(.writeAttribute("\(path)/\(change.attribute)", value: change.expected))
                }
            }
            planNamespaces(subsystem, current, in: path, manage: manage)
            planAllowedHosts(subsystem, current, in: path, manage: manage)
        case .untouched:
            break
        }
    }

    /// `attr_allow_any_host` always; serial and model only when desired.
    static func subsystemChanges(_ subsystem: EndpointSubsystem, _ current: NvmetSubsystemState) -> [AttributeChange] {
        var changes: [AttributeChange] = []
        if subsystem.allowAnyHost != current.allowAnyHost {
            changes.append(
                AttributeChange(
                    attribute: "attr_allow_any_host",
                    expected: subsystem.allowAnyHost ? "1" : "0",
                    actual: current.allowAnyHost ? "1" : "0",
                    drifted: true
                )
            )
        }
        if let serial = subsystem.serial, serial != current.serial {
            changes.append(
                AttributeChange(attribute: "attr_serial", expected: serial, actual: current.serial, drifted: true)
            )
        }
        if let model = subsystem.model, model != current.model {
            changes.append(
                AttributeChange(attribute: "attr_model", expected: model, actual: current.model, drifted: true)
            )
        }
        return changes
    }

    /// The hosts to link: none when any host is allowed (the kernel refuses both at once).
    private func allowedHosts(of subsystem: EndpointSubsystem) -> Set<String> {
        guard !subsystem.allowAnyHost else { return [] }
        return Set(subsystem.hosts).intersection(desiredHosts)
    }

    private mutating func planAllowedHosts(
        _ subsystem: EndpointSubsystem,
        _ current: NvmetSubsystemState,
        in path: String,
        manage: Bool
    ) {
        let wanted = allowedHosts(of: subsystem)
        let extra = current.allowedHosts.filter { link in
            subsystem.allowAnyHost || (!wanted.contains(link.target) && concernsHost(link.target))
        }
        let missing = wanted.subtracting(current.allowedHosts.map(\.target)).sorted()
        for link in extra {
            drift.append(EndpointDrift(object: "\(path)/allowed_hosts/\(link.name)", expected: nil, actual: "present"))
        }
        for host in missing {
            drift.append(EndpointDrift(object: "\(path)/allowed_hosts/\(host)", expected: "present", actual: nil))
        }
        guard manage else { return }
        for link in extra { unlinkHosts.append(.removeLink("\(path)/allowed_hosts/\(link.name)")) }
        for host in missing {
            linkHosts.append(.createLink("\(path)/allowed_hosts/\(host)", target: "hosts/\(host)"))
        }
    }

    // MARK: Namespaces

    private mutating func planNamespaces(
        _ subsystem: EndpointSubsystem,
        _ current: NvmetSubsystemState,
        in path: String,
        manage: Bool
    ) {
        let wanted = Dictionary(subsystem.namespaces.map { ($0.namespaceID, $0) }, uniquingKeysWith: { a, _ in a })
        let existing = Dictionary(current.namespaces.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        for namespace in current.namespaces where wanted[namespace.id] == nil {
            let nsPath = "\(path)/namespaces/\(namespace.id)"
            drift.append(EndpointDrift(object: nsPath, expected: nil, actual: "present"))
            guard manage else { continue }
            if namespace.enabled { removeNamespaces.append(.writeAttribute("\(nsPath)/enable", value: "0")) }
            removeNamespaces.append(.removeDirectory(nsPath))
        }
        for id in wanted.keys.sorted() {
            guard let namespace = wanted[id] else { continue }
            let nsPath = "\(path)/namespaces/\(id)"
            guard let found = existing[id] else {
                drift.append(EndpointDrift(object: nsPath, expected: "present", actual: nil))
                if manage { planNewNamespace(namespace, in: path) }
                continue
            }
            let (device, enable) = Self.namespaceChanges(namespace, found)
            for change in device + (enable.map { [$0] } ?? []) {
                drift.append(
                    EndpointDrift(
                        object: nsPath,
                        attribute: change.attribute,
                        expected: change.expected,
                        actual: change.actual
                    )
                )
            }
            guard manage else { continue }
            if !device.isEmpty {
                // The kernel refuses device writes while the namespace is enabled.
                if found.enabled { createNamespaces.append(.writeAttribute("\(nsPath)/enable", value: "0")) }
                for change in device {
                    createNamespaces.append(.writeAttribute("\(nsPath)/\(change.attribute)", value: change.expected))
                }
                if namespace.enabled { createNamespaces.append(.writeAttribute("\(nsPath)/enable", value: "1")) }
            } else if let enable {
                createNamespaces.append(.writeAttribute("\(nsPath)/enable", value: enable.expected))
            }
        }
    }

    private mutating func planNewNamespace(_ namespace: EndpointNamespace, in path: String) {
        let nsPath = "\(path)/namespaces/\(namespace.namespaceID)"
        createNamespaces.append(.makeDirectory(nsPath))
        let (device, _) = Self.namespaceChanges(namespace, NvmetNamespaceState(id: namespace.namespaceID))
        for change in device {
            createNamespaces.append(.writeAttribute("\(nsPath)/\(change.attribute)", value: change.expected))
        }
        if namespace.enabled { createNamespaces.append(.writeAttribute("\(nsPath)/enable", value: "1")) }
    }

    /// Device attributes that differ (path always, UUID and NGUID when desired) and the enable
    /// flag when it differs.
    static func namespaceChanges(
        _ namespace: EndpointNamespace,
        _ current: NvmetNamespaceState
    ) -> (device: [AttributeChange], enable: AttributeChange?) {
        var device: [AttributeChange] = []
        if namespace.devicePath != current.devicePath {
            device.append(
                AttributeChange(
                    attribute: "device_path",
                    expected: namespace.devicePath,
                    actual: current.devicePath,
                    drifted: true
                )
            )
        }
        if let uuid = NvmetPlanner.desiredIdentifier(namespace.uuid), uuid != current.uuid {
            device.append(
                AttributeChange(attribute: "device_uuid", expected: uuid, actual: current.uuid, drifted: true)
            )
        }
        if let nguid = NvmetPlanner.desiredIdentifier(namespace.nguid), nguid != current.nguid {
            device.append(
                AttributeChange(attribute: "device_nguid", expected: nguid, actual: current.nguid, drifted: true)
            )
        }
        var enable: AttributeChange?
        if namespace.enabled != current.enabled {
            enable = AttributeChange(
                attribute: "enable",
                expected: namespace.enabled ? "1" : "0",
                actual: current.enabled ? "1" : "0",
                drifted: true
            )
        }
        return (device, enable)
    }

    // MARK: Hosts

    private mutating func planHost(_ host: String, _ disposition: Disposition) {
        let path = "hosts/\(host)"
        switch disposition {
        case .create:
            drift.append(EndpointDrift(object: path, expected: "present", actual: nil))
            createHosts.append(.makeDirectory(path))
            planHostAuthentication(host, path, current: NvmetHostAuthentication(hash: "hmac(sha256)", group: "null"))
        case .delete:
            drift.append(EndpointDrift(object: path, expected: nil, actual: "present"))
            removeHosts.append(.removeDirectory(path))
        case .blockedDelete:
            drift.append(EndpointDrift(object: path, expected: nil, actual: "present"))
        case .manage:
            planHostAuthentication(host, path, current: actual.hostAuthentication[host])
        case .foreign:
            if hostSecrets[host] != nil {
                notes.append("hosts/\(host) is not dem-em's: its DH-HMAC-CHAP keys are left as they are")
            }
        case .untouched:
            break
        }
    }

    /// Writes the host's DH-HMAC-CHAP attributes that differ from the desired ones (before the
    /// host is linked to any subsystem). Secrets are compared, never reported: drift names the
    /// attribute only. `current` is nil when the kernel has no such attributes.
    private mutating func planHostAuthentication(_ host: String, _ path: String, current: NvmetHostAuthentication?) {
        guard let wanted = hostSecrets[host] else { return }
        guard let current else {
            notes.append(
                "hosts/\(host) needs DH-HMAC-CHAP keys, and this kernel's nvmet has none (CONFIG_NVME_TARGET_AUTH)"
            )
            return
        }
        let secret = "(secret)"
        let changes: [(String, String?, String?, Bool)] = [
            ("dhchap_hash", wanted.hash, current.hash, false),
            ("dhchap_dhgroup", wanted.group, current.group, false),
            ("dhchap_key", wanted.key, current.key, true),
            ("dhchap_ctrl_key", wanted.controllerKey, current.controllerKey, true),
        ]
        for (attribute, expected, actual, isSecret) in changes {
            guard let expected, expected != actual else { continue }
            drift.append(
                EndpointDrift(
                    object: "\(path)/\(attribute)",
                    expected: isSecret ? secret : expected,
                    actual: isSecret ? (actual == nil ? nil : "another secret") : actual
                )
            )
            createHosts.append(.writeAttribute("\(path)/\(attribute)", value: expected))
        }
    }
}
