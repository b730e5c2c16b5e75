/// A member of a zone (TP8010 zoning, NVMe Base 2.1 §8.3.2.3): a host or a subsystem by NQN; a
/// subsystem member may name one transport address and port, and then only that port's entry
/// is zoned.
public struct FabricZoneMember: Codable, Sendable, Hashable, Comparable {
    public enum Kind: String, Codable, Sendable, Hashable, NamedValues {
        case host
        case subsystem
    }

    public var kind: Kind
    public var nqn: String
    /// TRADDR, for a subsystem member limited to one port.
    public var transportAddress: String?
    /// TRSVCID, with TRADDR.
    public var transportServiceIdentifier: Int?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case kind = "Type"
        case nqn = "NQN"
        case transportAddress = "TRADDR"
        case transportServiceIdentifier = "TRSVCID"
    }

    public init(kind: Kind, nqn: String, transportAddress: String? = nil, transportServiceIdentifier: Int? = nil) {
        self.kind = kind
        self.nqn = nqn
        self.transportAddress = transportAddress
        self.transportServiceIdentifier = transportServiceIdentifier
    }

    public static func < (lhs: Self, rhs: Self) -> Bool {
        (lhs.kind.rawValue, lhs.nqn, lhs.transportAddress ?? "", lhs.transportServiceIdentifier ?? -1)
            < (rhs.kind.rawValue, rhs.nqn, rhs.transportAddress ?? "", rhs.transportServiceIdentifier ?? -1)
    }

    /// Whether this subsystem member covers `port`'s entry of subsystem `nqn`.
    func covers(subsystem nqn: String, port: FabricPort) -> Bool {
        kind == .subsystem && self.nqn == nqn
            && (transportAddress == nil || transportAddress == port.transportAddress)
            && (transportServiceIdentifier == nil || transportServiceIdentifier == port.transportServiceIdentifier)
    }
}

/// A zone: the hosts in it see the subsystems in it.
public struct FabricZone: Codable, Sendable, Hashable {
    public var name: String
    /// Sorted.
    public var members: [FabricZoneMember]

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name = "Name"
        case members = "Members"
    }

    public init(name: String, members: [FabricZoneMember] = []) {
        self.name = name
        self.members = members.sorted()
    }
}

/// A zone group: a named set of zones, edited and activated together.
public struct FabricZoneGroup: Codable, Sendable, Hashable {
    public var name: String
    /// Sorted by name.
    public var zones: [FabricZone]

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name = "Name"
        case zones = "Zones"
    }

    public init(name: String, zones: [FabricZone] = []) {
        self.name = name
        self.zones = zones.sorted { $0.name < $1.name }
    }
}

/// The zones of an active zoning database, indexed by subsystem NQN for evaluation.
struct ZoneIndex: Sendable {
    struct Entry: Sendable {
        /// `group/zone`.
        var name: String
        var hostNQNs: Set<String>
        var subsystems: [FabricZoneMember]
    }

    private var bySubsystem: [String: [Entry]] = [:]

    init(_ groups: [FabricZoneGroup]) {
        for group in groups {
            for zone in group.zones {
                let hosts = Set(zone.members.filter { $0.kind == .host }.map(\.nqn))
                let subsystems = zone.members.filter { $0.kind == .subsystem }
                guard !hosts.isEmpty, !subsystems.isEmpty else { continue }
                let entry = Entry(name: "\(group.name)/\(zone.name)", hostNQNs: hosts, subsystems: subsystems)
                for nqn in Set(subsystems.map(\.nqn)) { bySubsystem[nqn, default: []].append(entry) }
            }
        }
    }

    var isEmpty: Bool { bySubsystem.isEmpty }

    /// The zones that zone `port`'s entry of subsystem `nqn`.
    func zones(subsystem nqn: String, port: FabricPort) -> [Entry] {
        (bySubsystem[nqn] ?? []).filter { zone in zone.subsystems.contains { $0.covers(subsystem: nqn, port: port) } }
    }

    /// Whether any zone names subsystem `nqn`.
    func names(subsystem nqn: String) -> Bool { bySubsystem[nqn] != nil }
}

extension Fabric {
    // MARK: Zoning

    /// The zone group called `name` in the configured database.
    public func zoneGroup(_ name: String) throws(ModelError) -> FabricZoneGroup {
        guard let group = zoneGroups.first(where: { $0.name == name }) else {
            throw .notFound("ZoneGroup", "zone group \"\(name)\" does not exist")
        }
        return group
    }

    /// Adds an empty zone to the configured database (and its group when new).
    public mutating func addZone(group: String, zone: String) throws(ModelError) {
        try FabricValidation.checkName(group, field: "ZoneGroup")
        try FabricValidation.checkName(zone, field: "Zone")
        try modifyZone(group: group, zone: zone, create: true) {
            (existing: inout FabricZone, created: Bool) throws(ModelError) in
            guard created else { throw .conflict("Zone", "zone \"\(group)/\(zone)\" already exists") }
        }
    }

    /// Deletes a zone from the configured database (and its group when it was the last).
    public mutating func deleteZone(group: String, zone: String) throws(ModelError) {
        guard let g = zoneGroups.firstIndex(where: { $0.name == group }) else {
            throw .notFound("ZoneGroup", "zone group \"\(group)\" does not exist")
        }
        guard let z = zoneGroups[g].zones.firstIndex(where: { $0.name == zone }) else {
            throw .notFound("Zone", "zone \"\(group)/\(zone)\" does not exist")
        }
        zoneGroups[g].zones.remove(at: z)
        if zoneGroups[g].zones.isEmpty { zoneGroups.remove(at: g) }
    }

    /// Adds a member to a zone of the configured database (the zone and its group are made when
    /// new). A host member may name a host by its alias: its HOSTNQN is taken.
    /// - Returns: whether it was added (false: it was a member).
    @discardableResult
    public mutating func addZoneMember(
        group: String,
        zone: String,
        _ member: FabricZoneMember
    ) throws(ModelError)
        -> Bool
    {
        try FabricValidation.checkName(group, field: "ZoneGroup")
        try FabricValidation.checkName(zone, field: "Zone")
        let member = try resolved(member)
        var added = false
        try modifyZone(group: group, zone: zone, create: true) {
            (existing: inout FabricZone, _: Bool) throws(ModelError) in
            guard !existing.members.contains(member) else { return }
            existing.members.append(member)
            existing.members.sort()
            added = true
        }
        return added
    }

    /// Removes every member of a zone with that kind and NQN (or host alias).
    public mutating func removeZoneMember(
        group: String,
        zone: String,
        kind: FabricZoneMember.Kind,
        nqn: String
    ) throws(ModelError) {
        let nqn = try resolved(FabricZoneMember(kind: kind, nqn: nqn)).nqn
        try modifyZone(group: group, zone: zone, create: false) {
            (existing: inout FabricZone, _: Bool) throws(ModelError) in
            let before = existing.members.count
            existing.members.removeAll { $0.kind == kind && $0.nqn == nqn }
            guard existing.members.count < before else {
                throw .notFound("NQN", "\(kind.rawValue) \(nqn) is not in zone \"\(group)/\(zone)\"")
            }
        }
    }

    /// Makes the configured zoning database the active one: the discovery pages follow it.
    public mutating func activateZoning() {
        activeZoneGroups = zoneGroups
    }

    /// `database` checked member by member against this model (an import), as it would be
    /// built with ``addZone(group:zone:)`` and ``addZoneMember(group:zone:_:)``.
    func checkedZoning(_ database: [FabricZoneGroup], field: String) throws(ModelError) -> [FabricZoneGroup] {
        var scratch = self
        scratch.zoneGroups = []
        for (index, group) in database.enumerated() {
            for (zoneIndex, zone) in group.zones.enumerated() {
                do throws(ModelError) {
                    if zone.members.isEmpty { try scratch.addZone(group: group.name, zone: zone.name) }
                    for (memberIndex, member) in zone.members.enumerated() {
                        do { try scratch.addZoneMember(group: group.name, zone: zone.name, member) } catch {
                            throw error.prefixed("Members[\(memberIndex)].")
                        }
                    }
                } catch { throw error.prefixed("\(field)[\(index)].Zones[\(zoneIndex)].") }
            }
        }
        return scratch.zoneGroups
    }

    private func resolved(_ member: FabricZoneMember) throws(ModelError) -> FabricZoneMember {
        var member = member
        switch member.kind {
        case .host:
            if let host = hosts.first(where: { $0.alias == member.nqn }) {
                guard let nqn = host.nqn else {
                    throw .invalid("NQN", "host \"\(host.alias)\" has no HOSTNQN to zone: set one first")
                }
                member.nqn = nqn
            }
            guard member.transportAddress == nil, member.transportServiceIdentifier == nil else {
                throw .invalid("TRADDR", "a host member is its NQN only; TRADDR and TRSVCID are for subsystem members")
            }
        case .subsystem:
            if member.transportServiceIdentifier != nil, member.transportAddress == nil {
                throw .invalid("TRSVCID", "TRSVCID goes with a TRADDR")
            }
            if let address = member.transportAddress, address.isEmpty || address.utf8.count > 255 {
                throw .invalid("TRADDR", "TRADDR must be 1...255 characters")
            }
            if let port = member.transportServiceIdentifier, !(0...65535).contains(port) {
                throw .invalid("TRSVCID", "TRSVCID must be 0...65535, not \(port)")
            }
        }
        try FabricValidation.checkNQN(member.nqn, field: "NQN")
        return member
    }

    private mutating func modifyZone(
        group: String,
        zone: String,
        create: Bool,
        _ body: (inout FabricZone, Bool) throws(ModelError) -> Void
    ) throws(ModelError) {
        var groups = zoneGroups
        var g = groups.firstIndex { $0.name == group }
        if g == nil {
            guard create else { throw .notFound("ZoneGroup", "zone group \"\(group)\" does not exist") }
            groups.append(FabricZoneGroup(name: group))
            groups.sort { $0.name < $1.name }
            g = groups.firstIndex { $0.name == group }
        }
        let gi = g!
        var created = false
        var z = groups[gi].zones.firstIndex { $0.name == zone }
        if z == nil {
            guard create else { throw .notFound("Zone", "zone \"\(group)/\(zone)\" does not exist") }
            groups[gi].zones.append(FabricZone(name: zone))
            groups[gi].zones.sort { $0.name < $1.name }
            z = groups[gi].zones.firstIndex { $0.name == zone }
            created = true
        }
        try body(&groups[gi].zones[z!], created)
        zoneGroups = groups
    }
}

/// One entry of a discovery log page, as a zoning dry run names it.
public struct ZonedEntry: Codable, Sendable, Hashable, Comparable {
    public var target: String
    public var subsystemNQN: String
    public var portID: Int
    public var transportAddress: String
    public var transportServiceIdentifier: Int

    enum CodingKeys: String, CodingKey {
        case target = "Target"
        case subsystemNQN = "SUBNQN"
        case portID = "PORTID"
        case transportAddress = "TRADDR"
        case transportServiceIdentifier = "TRSVCID"
    }

    public static func < (lhs: Self, rhs: Self) -> Bool {
        (lhs.target, lhs.subsystemNQN, lhs.portID) < (rhs.target, rhs.subsystemNQN, rhs.portID)
    }
}

/// What one host's page would gain and lose.
public struct ZoningHostChange: Codable, Sendable, Hashable {
    public var hostNQN: String
    /// The host's alias, when dem knows it as a host.
    public var host: String?
    public var gained: [ZonedEntry]
    public var lost: [ZonedEntry]

    enum CodingKeys: String, CodingKey {
        case hostNQN = "HOSTNQN"
        case host = "Host"
        case gained = "Gained"
        case lost = "Lost"
    }
}

extension Fabric {
    /// The dry run of activating the configured zoning database: per host whose page would
    /// change, the entries it would gain and lose, by host NQN. The hosts are those the model
    /// names and `otherHosts` (registered or seen): an entry that goes from any host to some
    /// (or back) changes for every one of them.
    public func zoningChanges(otherHosts: Set<String> = []) -> [ZoningHostChange] {
        var activated = self
        activated.activateZoning()
        return accessChanges(to: activated, otherHosts: otherHosts)
    }

    /// Per host, the entries `new` gives it that this model does not, and the reverse.
    public func accessChanges(to new: Fabric, otherHosts: Set<String> = []) -> [ZoningHostChange] {
        func index(_ fabric: Fabric) -> [ZonedEntry: Set<String>?] {
            var entries: [ZonedEntry: Set<String>?] = [:]
            let rules = fabric.accessRules
            for target in fabric.targets {
                for (subsystem, port, allowed) in fabric.entryAccess(of: target, rules: rules) {
                    let key = ZonedEntry(
                        target: target.alias,
                        subsystemNQN: subsystem.nqn,
                        portID: port.portID,
                        transportAddress: port.transportAddress,
                        transportServiceIdentifier: port.transportServiceIdentifier
                    )
                    entries[key] = .some(allowed)
                }
            }
            return entries
        }
        let before = index(self)
        let after = index(new)
        var everyone = otherHosts
        for host in hosts { if let nqn = host.nqn { everyone.insert(nqn) } }
        for host in new.hosts { if let nqn = host.nqn { everyone.insert(nqn) } }
        func members(_ allowed: Set<String>??) -> Set<String> {
            switch allowed {
            case .none: []  // no entry
            case .some(.none): everyone  // any host
            case .some(.some(let hosts)): hosts
            }
        }
        // Hosts named by a zone or an access list count too (they may be unknown otherwise).
        for allowed in before.values { if let allowed { everyone.formUnion(allowed) } }
        for allowed in after.values { if let allowed { everyone.formUnion(allowed) } }
        var gained: [String: [ZonedEntry]] = [:]
        var lost: [String: [ZonedEntry]] = [:]
        for key in Set(before.keys).union(after.keys) {
            let old = before[key]
            let new = after[key]
            if old == new { continue }
            let was = members(old)
            let will = members(new)
            for nqn in will.subtracting(was) { gained[nqn, default: []].append(key) }
            for nqn in was.subtracting(will) { lost[nqn, default: []].append(key) }
        }
        var aliases: [String: String] = [:]
        for host in new.hosts { if let nqn = host.nqn { aliases[nqn] = host.alias } }
        return Set(gained.keys).union(lost.keys).sorted().map { nqn in
            ZoningHostChange(
                hostNQN: nqn,
                host: aliases[nqn],
                gained: (gained[nqn] ?? []).sorted(),
                lost: (lost[nqn] ?? []).sorted()
            )
        }
    }
}
