/// The whole fabric an administrator describes: targets (with their ports, subsystems,
/// namespaces and access lists), hosts and groups. nvme-dem's configuration file root,
/// `{"Targets":[…],"Hosts":[…],"Groups":[…]}`.
///
/// A value type: every change is a method that checks the change against the whole model and
/// throws a ``ModelError`` naming the field, leaving the value untouched. Lists stay sorted by
/// their keys (alias, NQN, PORTID, NSID, name).
public struct Fabric: Codable, Sendable, Hashable {
    public private(set) var targets: [FabricTarget]
    public private(set) var hosts: [FabricHost]
    public private(set) var groups: [FabricGroup]
    /// The configured zoning database (TP8010): edited, then activated.
    public internal(set) var zoneGroups: [FabricZoneGroup]
    /// The active zoning database: what the discovery pages follow, beside the access lists and
    /// groups.
    public internal(set) var activeZoneGroups: [FabricZoneGroup]

    enum CodingKeys: String, CodingKey, CaseIterable {
        case targets = "Targets"
        case hosts = "Hosts"
        case groups = "Groups"
        case zoneGroups = "ZoneGroups"
        case activeZoneGroups = "ActiveZoneGroups"
    }

    /// An empty fabric.
    public init() {
        targets = []
        hosts = []
        groups = []
        zoneGroups = []
        activeZoneGroups = []
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(targets, forKey: .targets)
        try c.encode(hosts, forKey: .hosts)
        try c.encode(groups, forKey: .groups)
        // nvme-dem's configuration has no zoning: written only when there is some.
        if !zoneGroups.isEmpty { try c.encode(zoneGroups, forKey: .zoneGroups) }
        if !activeZoneGroups.isEmpty { try c.encode(activeZoneGroups, forKey: .activeZoneGroups) }
    }

    /// A fabric from its parts, checked as a whole (an import).
    public init(
        targets: [FabricTarget],
        hosts: [FabricHost],
        groups: [FabricGroup],
        zoneGroups: [FabricZoneGroup] = [],
        activeZoneGroups: [FabricZoneGroup] = []
    ) throws(ModelError) {
        var fabric = Fabric()
        for (index, host) in hosts.enumerated() {
            do { try fabric.addHost(host) } catch { throw error.prefixed("Hosts[\(index)].") }
        }
        for (index, target) in targets.enumerated() {
            do { try fabric.addTarget(target) } catch { throw error.prefixed("Targets[\(index)].") }
        }
        for (index, group) in groups.enumerated() {
            do throws(ModelError) {
                try fabric.addGroup(group.name)
                for (member, target) in group.targets.enumerated() {
                    do { try fabric.addGroupMember(group: group.name, target: target) } catch {
                        throw error.prefixed("Targets[\(member)].")
                    }
                }
                for (member, host) in group.hosts.enumerated() {
                    do { try fabric.addGroupMember(group: group.name, host: host) } catch {
                        throw error.prefixed("Hosts[\(member)].")
                    }
                }
            } catch { throw error.prefixed("Groups[\(index)].") }
        }
        fabric.zoneGroups = try fabric.checkedZoning(zoneGroups, field: "ZoneGroups")
        fabric.activeZoneGroups = try fabric.checkedZoning(activeZoneGroups, field: "ActiveZoneGroups")
        self = fabric
    }

    /// A fabric read back from dem's own store, which only ever holds checked models: taken as
    /// it is (sorted), so that a start never fails on a rule added later.
    public init(
        stored targets: [FabricTarget],
        hosts: [FabricHost],
        groups: [FabricGroup],
        zoneGroups: [FabricZoneGroup] = [],
        activeZoneGroups: [FabricZoneGroup] = []
    ) {
        self.targets = targets.sorted { $0.alias < $1.alias }
        for t in self.targets.indices {
            self.targets[t].ports.sort { $0.portID < $1.portID }
            self.targets[t].subsystems.sort { $0.nqn < $1.nqn }
        }
        self.hosts = hosts.sorted { $0.alias < $1.alias }
        self.groups = groups.sorted { $0.name < $1.name }
        self.zoneGroups = zoneGroups.sorted { $0.name < $1.name }
        self.activeZoneGroups = activeZoneGroups.sorted { $0.name < $1.name }
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try self.init(
            targets: c.decodeIfPresent([FabricTarget].self, forKey: .targets) ?? [],
            hosts: c.decodeIfPresent([FabricHost].self, forKey: .hosts) ?? [],
            groups: c.decodeIfPresent([FabricGroup].self, forKey: .groups) ?? [],
            zoneGroups: c.decodeIfPresent([FabricZoneGroup].self, forKey: .zoneGroups) ?? [],
            activeZoneGroups: c.decodeIfPresent([FabricZoneGroup].self, forKey: .activeZoneGroups) ?? []
        )
    }

    // MARK: Lookups

    /// The target called `alias`.
    public func target(_ alias: String) throws(ModelError) -> FabricTarget {
        targets[try targetIndex(alias)]
    }

    /// The subsystem `nqn` of target `alias`.
    public func subsystem(target alias: String, nqn: String) throws(ModelError) -> FabricSubsystem {
        let t = try targetIndex(alias)
        return targets[t].subsystems[try subsystemIndex(t, nqn)]
    }

    /// The host called `alias`.
    public func host(_ alias: String) throws(ModelError) -> FabricHost {
        hosts[try hostIndex(alias)]
    }

    /// The group called `name`.
    public func group(_ name: String) throws(ModelError) -> FabricGroup {
        groups[try groupIndex(name)]
    }

    private func targetIndex(_ alias: String, field: String = "Alias") throws(ModelError) -> Int {
        guard let index = Self.search(targets, alias, key: \.alias).found else {
            throw .notFound(field, "target \"\(alias)\" does not exist")
        }
        return index
    }

    private func subsystemIndex(_ t: Int, _ nqn: String) throws(ModelError) -> Int {
        guard let index = Self.search(targets[t].subsystems, nqn, key: \.nqn).found else {
            throw .notFound("SUBNQN", "subsystem \"\(nqn)\" does not exist on target \"\(targets[t].alias)\"")
        }
        return index
    }

    private func hostIndex(_ alias: String, field: String = "Alias") throws(ModelError) -> Int {
        guard let index = Self.search(hosts, alias, key: \.alias).found else {
            throw .notFound(field, "host \"\(alias)\" does not exist")
        }
        return index
    }

    private func groupIndex(_ name: String, field: String = "Name") throws(ModelError) -> Int {
        guard let index = Self.search(groups, name, key: \.name).found else {
            throw .notFound(field, "group \"\(name)\" does not exist")
        }
        return index
    }

    /// Binary search of a list sorted by `key`: the index of `value`, or where it would go.
    static func search<Element, Key: Comparable>(
        _ list: [Element],
        _ value: Key,
        key: (Element) -> Key
    ) -> (found: Int?, insertion: Int) {
        var low = 0
        var high = list.count
        while low < high {
            let mid = (low + high) / 2
            let k = key(list[mid])
            if k == value { return (mid, mid) }
            if k < value { low = mid + 1 } else { high = mid }
        }
        return (nil, low)
    }

    // MARK: Targets

    /// Adds a target, with any ports and subsystems it carries.
    public mutating func addTarget(_ target: FabricTarget) throws(ModelError) {
        try FabricValidation.checkTargetFields(target)
        let position = Self.search(targets, target.alias, key: \.alias)
        guard position.found == nil else { throw .conflict("Alias", "target \"\(target.alias)\" already exists") }
        var checked = target
        checked.ports = []
        checked.subsystems = []
        var candidate = self
        candidate.targets.insert(checked, at: position.insertion)
        for (index, port) in target.ports.enumerated() {
            do throws(ModelError) {
                guard try candidate.setPort(target: target.alias, port) else {
                    throw ModelError.conflict("PORTID", "PORTID \(port.portID) is given twice")
                }
            } catch { throw error.prefixed("PortIDs[\(index)].") }
        }
        for (index, subsystem) in target.subsystems.enumerated() {
            do { try candidate.addSubsystem(target: target.alias, subsystem) } catch {
                throw error.prefixed("Subsystems[\(index)].")
            }
        }
        try candidate.checkEndpointUnique(target.alias)
        self = candidate
    }

    /// Refuses a target whose dem-em (its out-of-band or in-band Interface) is already another
    /// target's: a dem-em manages one target, and a second one's configuration would replace the
    /// first's in its kernel target.
    func checkEndpointUnique(_ alias: String) throws(ModelError) {
        guard let target = try? self.target(alias), let key = target.endpointKey else { return }
        for other in targets where other.alias != alias && other.endpointKey == key {
            throw .conflict(
                "Interface",
                "\(key.description) is already the dem-em of target \"\(other.alias)\"; a dem-em manages one target (give \"\(alias)\" its own dem-em's address)"
            )
        }
    }

    /// The changes `PATCH /target/<t>` may make; nil leaves a field as it is.
    public struct TargetChanges: Sendable {
        public var alias: String?
        public var refresh: Int?
        public var managementMode: ManagementMode?
        public var interface: ManagementInterface?

        public init(
            alias: String? = nil,
            refresh: Int? = nil,
            managementMode: ManagementMode? = nil,
            interface: ManagementInterface? = nil
        ) {
            self.alias = alias
            self.refresh = refresh
            self.managementMode = managementMode
            self.interface = interface
        }
    }

    /// Changes or renames a target (a rename follows into its groups).
    public mutating func updateTarget(_ alias: String, _ changes: TargetChanges) throws(ModelError) {
        var target = try self.target(alias)
        if let refresh = changes.refresh { target.refresh = refresh }
        if let mode = changes.managementMode {
            target.managementMode = mode
            if mode == .local, changes.interface == nil { target.interface = nil }
        }
        if let interface = changes.interface { target.interface = interface }
        if let newAlias = changes.alias { target.alias = newAlias }
        try FabricValidation.checkTargetFields(target)
        var candidate = self
        candidate.targets.remove(at: try candidate.targetIndex(alias))
        let position = Self.search(candidate.targets, target.alias, key: \.alias)
        guard position.found == nil else { throw .conflict("Alias", "target \"\(target.alias)\" already exists") }
        candidate.targets.insert(target, at: position.insertion)
        if target.alias != alias {
            for g in candidate.groups.indices where candidate.groups[g].targets.contains(alias) {
                candidate.groups[g].targets.removeAll { $0 == alias }
                Self.insertSorted(&candidate.groups[g].targets, target.alias)
            }
        }
        try candidate.checkEndpointUnique(target.alias)
        self = candidate
    }

    /// Records what a target's dem-em reports (devices and fabric interfaces).
    public mutating func setReportedInventory(
        target alias: String,
        devices: [ReportedDevice],
        interfaces: [ReportedInterface]
    ) throws(ModelError) {
        let t = try targetIndex(alias)
        targets[t].reportedDevices = devices
        targets[t].reportedInterfaces = interfaces
    }

    /// Deletes a target and takes it out of its groups.
    public mutating func deleteTarget(_ alias: String) throws(ModelError) {
        let t = try targetIndex(alias)
        targets.remove(at: t)
        for g in groups.indices { groups[g].targets.removeAll { $0 == alias } }
    }

    // MARK: Ports

    /// Creates or replaces a port, by its PORTID, or renumbers port `replacing` to the port's
    /// PORTID. - Returns: whether a port was created.
    @discardableResult
    public mutating func setPort(
        target alias: String,
        _ port: FabricPort,
        replacing: Int? = nil
    ) throws(ModelError)
        -> Bool
    {
        try FabricValidation.checkPort(port)
        let t = try targetIndex(alias)
        var ports = targets[t].ports
        if let replacing {
            guard let old = Self.search(ports, replacing, key: \.portID).found else {
                throw .notFound("PORTID", "port \(replacing) does not exist on target \"\(alias)\"")
            }
            ports.remove(at: old)
            if replacing != port.portID, Self.search(ports, port.portID, key: \.portID).found != nil {
                throw .conflict("PORTID", "port \(port.portID) already exists on target \"\(alias)\"")
            }
        }
        let position = Self.search(ports, port.portID, key: \.portID)
        let created: Bool
        if let existing = position.found {
            ports[existing] = port
            created = false
        } else {
            ports.insert(port, at: position.insertion)
            created = replacing == nil
        }
        if let clash = ports.first(where: {
            $0.portID != port.portID && $0.transportType == port.transportType
                && $0.transportAddress == port.transportAddress
                && $0.transportServiceIdentifier == port.transportServiceIdentifier
        }) {
            throw .conflict(
                "TRADDR",
                "port \(clash.portID) of target \"\(alias)\" already listens on \(port.transportType) \(port.transportAddress) \(port.transportServiceIdentifier)"
            )
        }
        targets[t].ports = ports
        return created
    }

    /// Deletes a port.
    public mutating func deletePort(target alias: String, portID: Int) throws(ModelError) {
        let t = try targetIndex(alias)
        guard let p = Self.search(targets[t].ports, portID, key: \.portID).found else {
            throw .notFound("PORTID", "port \(portID) does not exist on target \"\(alias)\"")
        }
        targets[t].ports.remove(at: p)
    }

    // MARK: Subsystems

    /// Adds a subsystem, with any namespaces and access list it carries.
    public mutating func addSubsystem(target alias: String, _ subsystem: FabricSubsystem) throws(ModelError) {
        try FabricValidation.checkSubsystemFields(subsystem)
        let t = try targetIndex(alias)
        let position = Self.search(targets[t].subsystems, subsystem.nqn, key: \.nqn)
        guard position.found == nil else {
            throw .conflict("SUBNQN", "subsystem \"\(subsystem.nqn)\" already exists on target \"\(alias)\"")
        }
        var candidate = self
        var empty = subsystem
        empty.namespaces = []
        empty.hosts = []
        candidate.targets[t].subsystems.insert(empty, at: position.insertion)
        for (index, namespace) in subsystem.namespaces.enumerated() {
            do throws(ModelError) {
                let existing = try candidate.subsystem(target: alias, nqn: subsystem.nqn).namespaces
                guard !existing.contains(where: { $0.namespaceID == namespace.namespaceID }) else {
                    throw ModelError.conflict("NSID", "NSID \(namespace.namespaceID) is given twice")
                }
                _ = try candidate.setNamespace(target: alias, subsystem: subsystem.nqn, namespace)
            } catch { throw error.prefixed("NSIDs[\(index)].") }
        }
        for (index, host) in subsystem.hosts.enumerated() {
            do { _ = try candidate.allowHost(target: alias, subsystem: subsystem.nqn, host: host) } catch {
                throw error.prefixed("Hosts[\(index)].")
            }
        }
        self = candidate
    }

    /// The changes `PATCH /target/<t>/subsystem/<n>` may make; nil leaves a field as it is.
    public struct SubsystemChanges: Sendable {
        public var nqn: String?
        public var allowAnyHost: Bool?
        public var serial: String?
        public var model: String?

        public init(nqn: String? = nil, allowAnyHost: Bool? = nil, serial: String? = nil, model: String? = nil) {
            self.nqn = nqn
            self.allowAnyHost = allowAnyHost
            self.serial = serial
            self.model = model
        }
    }

    /// Changes or renames a subsystem.
    public mutating func updateSubsystem(
        target alias: String,
        nqn: String,
        _ changes: SubsystemChanges
    )
        throws(ModelError)
    {
        let t = try targetIndex(alias)
        let s = try subsystemIndex(t, nqn)
        var subsystem = targets[t].subsystems[s]
        if let value = changes.nqn { subsystem.nqn = value }
        if let value = changes.allowAnyHost { subsystem.allowAnyHost = value }
        if let value = changes.serial { subsystem.serial = value }
        if let value = changes.model { subsystem.model = value }
        try FabricValidation.checkSubsystemFields(subsystem)
        var subsystems = targets[t].subsystems
        subsystems.remove(at: s)
        let position = Self.search(subsystems, subsystem.nqn, key: \.nqn)
        guard position.found == nil else {
            throw .conflict("SUBNQN", "subsystem \"\(subsystem.nqn)\" already exists on target \"\(alias)\"")
        }
        subsystems.insert(subsystem, at: position.insertion)
        targets[t].subsystems = subsystems
    }

    /// Deletes a subsystem.
    public mutating func deleteSubsystem(target alias: String, nqn: String) throws(ModelError) {
        let t = try targetIndex(alias)
        targets[t].subsystems.remove(at: try subsystemIndex(t, nqn))
    }

    // MARK: Namespaces

    /// Creates or replaces a namespace by NSID. - Returns: whether it was created.
    @discardableResult
    public mutating func setNamespace(
        target alias: String,
        subsystem nqn: String,
        _ namespace: FabricNamespace
    )
        throws(ModelError) -> Bool
    {
        try FabricValidation.checkNamespace(namespace)
        let t = try targetIndex(alias)
        let s = try subsystemIndex(t, nqn)
        let target = targets[t]
        if target.managementMode != .local, !target.reportedDevices.isEmpty, let deviceID = namespace.deviceID {
            let known = target.reportedDevices.contains {
                $0.deviceID == deviceID && (deviceID == -1 || $0.deviceNamespaceID == namespace.deviceNamespaceID)
            }
            guard known else {
                throw .invalid(
                    "DeviceID",
                    "target \"\(alias)\" reports no device \(deviceID)/\(namespace.deviceNamespaceID.map(String.init) ?? "-")"
                )
            }
        }
        if target.managementMode != .local, let path = namespace.devicePath {
            let reportedPaths = Set(target.reportedDevices.compactMap(\.devicePath))
            guard reportedPaths.isEmpty || reportedPaths.contains(path) || ReportedDevice.isMadeByEndpoint(path) else {
                throw .invalid(
                    "DevicePath",
                    "target \"\(alias)\" reports no device \(path) (it reports \(reportedPaths.sorted().joined(separator: ", ")))"
                )
            }
        }
        let position = Self.search(targets[t].subsystems[s].namespaces, namespace.namespaceID, key: \.namespaceID)
        if let existing = position.found {
            targets[t].subsystems[s].namespaces[existing] = namespace
            return false
        }
        targets[t].subsystems[s].namespaces.insert(namespace, at: position.insertion)
        return true
    }

    /// Deletes a namespace.
    public mutating func deleteNamespace(
        target alias: String,
        subsystem nqn: String,
        namespaceID: Int
    )
        throws(ModelError)
    {
        let t = try targetIndex(alias)
        let s = try subsystemIndex(t, nqn)
        guard let n = Self.search(targets[t].subsystems[s].namespaces, namespaceID, key: \.namespaceID).found else {
            throw .notFound("NSID", "namespace \(namespaceID) does not exist in subsystem \"\(nqn)\"")
        }
        targets[t].subsystems[s].namespaces.remove(at: n)
    }

    // MARK: Access lists

    /// Puts a host on a subsystem's access list. - Returns: whether it was not there yet.
    @discardableResult
    public mutating func allowHost(target alias: String, subsystem nqn: String, host: String) throws(ModelError) -> Bool
    {
        let t = try targetIndex(alias)
        let s = try subsystemIndex(t, nqn)
        guard hosts[try hostIndex(host)].nqn != nil else {
            throw .invalid(
                "Alias",
                "host \"\(host)\" has no HOSTNQN yet; give it one before putting it on an access list"
            )
        }
        return Self.insertSorted(&targets[t].subsystems[s].hosts, host)
    }

    /// Takes a host off a subsystem's access list.
    public mutating func disallowHost(target alias: String, subsystem nqn: String, host: String) throws(ModelError) {
        let t = try targetIndex(alias)
        let s = try subsystemIndex(t, nqn)
        guard targets[t].subsystems[s].hosts.contains(host) else {
            throw .notFound("Alias", "host \"\(host)\" is not on the access list of subsystem \"\(nqn)\"")
        }
        targets[t].subsystems[s].hosts.removeAll { $0 == host }
    }

    // MARK: Hosts

    /// Adds a host.
    public mutating func addHost(_ host: FabricHost) throws(ModelError) {
        try FabricValidation.checkHostFields(host)
        let position = Self.search(hosts, host.alias, key: \.alias)
        guard position.found == nil else { throw .conflict("Alias", "host \"\(host.alias)\" already exists") }
        if let nqn = host.nqn, let other = hosts.first(where: { $0.nqn == nqn }) {
            throw .conflict("HOSTNQN", "host \"\(other.alias)\" already has HOSTNQN \(nqn)")
        }
        hosts.insert(host, at: position.insertion)
    }

    /// The changes `PATCH /host/<h>` may make; nil leaves a field as it is.
    public struct HostChanges: Sendable {
        public var alias: String?
        public var nqn: String?
        public var hostID: String?

        public init(alias: String? = nil, nqn: String? = nil, hostID: String? = nil) {
            self.alias = alias
            self.nqn = nqn
            self.hostID = hostID
        }
    }

    /// Changes or renames a host (a rename follows into every access list and group).
    public mutating func updateHost(_ alias: String, _ changes: HostChanges) throws(ModelError) {
        var host = try self.host(alias)
        if let value = changes.alias { host.alias = value }
        if let value = changes.nqn { host.nqn = value }
        if let value = changes.hostID { host.hostID = value }
        try FabricValidation.checkHostFields(host)
        var candidate = self
        candidate.hosts.remove(at: try candidate.hostIndex(alias))
        let position = Self.search(candidate.hosts, host.alias, key: \.alias)
        guard position.found == nil else { throw .conflict("Alias", "host \"\(host.alias)\" already exists") }
        if let nqn = host.nqn, let other = candidate.hosts.first(where: { $0.nqn == nqn }) {
            throw .conflict("HOSTNQN", "host \"\(other.alias)\" already has HOSTNQN \(nqn)")
        }
        candidate.hosts.insert(host, at: position.insertion)
        if host.alias != alias {
            candidate.replaceHostReferences(alias, with: host.alias)
        }
        self = candidate
    }

    /// Deletes a host and takes it off every access list and group.
    public mutating func deleteHost(_ alias: String) throws(ModelError) {
        hosts.remove(at: try hostIndex(alias))
        replaceHostReferences(alias, with: nil)
    }

    private mutating func replaceHostReferences(_ alias: String, with newAlias: String?) {
        for t in targets.indices {
            for s in targets[t].subsystems.indices where targets[t].subsystems[s].hosts.contains(alias) {
                targets[t].subsystems[s].hosts.removeAll { $0 == alias }
                if let newAlias { Self.insertSorted(&targets[t].subsystems[s].hosts, newAlias) }
            }
        }
        for g in groups.indices where groups[g].hosts.contains(alias) {
            groups[g].hosts.removeAll { $0 == alias }
            if let newAlias { Self.insertSorted(&groups[g].hosts, newAlias) }
        }
    }

    // MARK: Groups

    /// Adds an empty group.
    public mutating func addGroup(_ name: String) throws(ModelError) {
        try FabricValidation.checkName(name, field: "Name")
        let position = Self.search(groups, name, key: \.name)
        guard position.found == nil else { throw .conflict("Name", "group \"\(name)\" already exists") }
        groups.insert(FabricGroup(name: name), at: position.insertion)
    }

    /// Renames a group.
    public mutating func renameGroup(_ name: String, to newName: String) throws(ModelError) {
        try FabricValidation.checkName(newName, field: "Name")
        var group = groups[try groupIndex(name)]
        guard name != newName else { return }
        guard Self.search(groups, newName, key: \.name).found == nil else {
            throw .conflict("Name", "group \"\(newName)\" already exists")
        }
        groups.remove(at: try groupIndex(name))
        group.name = newName
        groups.insert(group, at: Self.search(groups, newName, key: \.name).insertion)
    }

    /// Deletes a group (its members stay).
    public mutating func deleteGroup(_ name: String) throws(ModelError) {
        groups.remove(at: try groupIndex(name))
    }

    /// Adds a target to a group. - Returns: whether it was not a member yet.
    @discardableResult
    public mutating func addGroupMember(group name: String, target: String) throws(ModelError) -> Bool {
        let g = try groupIndex(name)
        _ = try targetIndex(target)
        return Self.insertSorted(&groups[g].targets, target)
    }

    /// Adds a host to a group. - Returns: whether it was not a member yet.
    @discardableResult
    public mutating func addGroupMember(group name: String, host: String) throws(ModelError) -> Bool {
        let g = try groupIndex(name)
        _ = try hostIndex(host)
        return Self.insertSorted(&groups[g].hosts, host)
    }

    /// Takes a target out of a group.
    public mutating func removeGroupMember(group name: String, target: String) throws(ModelError) {
        let g = try groupIndex(name)
        guard groups[g].targets.contains(target) else {
            throw .notFound("Alias", "target \"\(target)\" is not in group \"\(name)\"")
        }
        groups[g].targets.removeAll { $0 == target }
    }

    /// Takes a host out of a group.
    public mutating func removeGroupMember(group name: String, host: String) throws(ModelError) {
        let g = try groupIndex(name)
        guard groups[g].hosts.contains(host) else {
            throw .notFound("Alias", "host \"\(host)\" is not in group \"\(name)\"")
        }
        groups[g].hosts.removeAll { $0 == host }
    }

    @discardableResult
    static func insertSorted(_ list: inout [String], _ value: String) -> Bool {
        let position = search(list, value, key: { $0 })
        guard position.found == nil else { return false }
        list.insert(value, at: position.insertion)
        return true
    }
}

extension ModelError {
    /// The same error with its field under `prefix` (a path into a larger document).
    public func prefixed(_ prefix: String) -> ModelError {
        ModelError(kind, field: prefix + field, message)
    }
}
