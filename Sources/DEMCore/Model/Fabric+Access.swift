/// A discovery log entry the model yields, with the hosts that may see it.
public struct ModelDiscoveryEntry: Sendable, Hashable {
    /// The target whose port it is.
    public var targetAlias: String
    public var entry: DiscoveryLogEntry
    /// The HOSTNQNs that may see it, or nil for every host (also hosts dem does not know).
    public var allowedHostNQNs: Set<String>?

    public init(targetAlias: String, entry: DiscoveryLogEntry, allowedHostNQNs: Set<String>?) {
        self.targetAlias = targetAlias
        self.entry = entry
        self.allowedHostNQNs = allowedHostNQNs
    }
}

/// A subsystem as a host sees it: `{"Alias": target, "SUBNQN": nqn}`.
public struct SubsystemReference: Codable, Sendable, Hashable {
    public var target: String
    public var nqn: String

    enum CodingKeys: String, CodingKey {
        case target = "Alias"
        case nqn = "SUBNQN"
    }

    public init(target: String, nqn: String) {
        self.target = target
        self.nqn = nqn
    }
}

extension Fabric {
    /// Who may use what, as zones. nvme-dem's rules are the zones dem derives from the model: a
    /// subsystem is for any host when AllowAnyHost is set, otherwise for the hosts on its access
    /// list; and a target in at least one group is visible only to hosts that share one of its
    /// groups (a target in no group is visible to every host the subsystem allows). The active
    /// zoning database (TP8010) adds its zones: a host in a zone sees the subsystems in it (on
    /// every port, or on the port a member names). A host sees an entry when any zone, derived
    /// or active, gives it that entry.
    public struct AccessRules: Sendable {
        let groupsOfTarget: [String: Set<String>]
        let groupsOfHost: [String: Set<String>]
        let hostNQNByAlias: [String: String]
        let hostsByGroup: [String: [String]]
        let zones: ZoneIndex

        init(_ fabric: Fabric) {
            zones = ZoneIndex(fabric.activeZoneGroups)
            var groupsOfTarget: [String: Set<String>] = [:]
            var groupsOfHost: [String: Set<String>] = [:]
            var hostsByGroup: [String: [String]] = [:]
            for group in fabric.groups {
                for target in group.targets { groupsOfTarget[target, default: []].insert(group.name) }
                for host in group.hosts { groupsOfHost[host, default: []].insert(group.name) }
                hostsByGroup[group.name] = group.hosts
            }
            self.groupsOfTarget = groupsOfTarget
            self.groupsOfHost = groupsOfHost
            self.hostsByGroup = hostsByGroup
            var nqns: [String: String] = [:]
            for host in fabric.hosts { nqns[host.alias] = host.nqn }
            self.hostNQNByAlias = nqns
        }

        /// Whether host `alias` can see target `target` through the group rule.
        func groupsAllow(host alias: String, target: String) -> Bool {
            guard let targetGroups = groupsOfTarget[target], !targetGroups.isEmpty else { return true }
            guard let hostGroups = groupsOfHost[alias] else { return false }
            return !targetGroups.isDisjoint(with: hostGroups)
        }

        /// The active zones that give host `nqn` subsystem `subsystem` of `target` on any of its
        /// ports, by name.
        func zones(host nqn: String?, subsystem: String, of target: FabricTarget) -> [String] {
            guard let nqn, zones.names(subsystem: subsystem) else { return [] }
            var names: [String] = []
            for port in target.ports {
                for zone in zones.zones(subsystem: subsystem, port: port)
                where zone.hostNQNs.contains(nqn) && !names.contains(zone.name) {
                    names.append(zone.name)
                }
            }
            return names
        }
    }

    /// The access rules of this model, computed once.
    public var accessRules: AccessRules { AccessRules(self) }

    /// Why host `alias` may use subsystem `nqn` of target `target`, in words (the console's
    /// "what does this host see"), or nil when it may not: AllowAnyHost or the access list,
    /// and the groups it shares with the target when the target is in any.
    public func visibility(host alias: String, target: String, subsystem nqn: String, rules: AccessRules) -> String? {
        guard let fabricTarget = try? self.target(target),
            let subsystem = fabricTarget.subsystems.first(where: { $0.nqn == nqn })
        else { return nil }
        let zoned = rules.zones(host: rules.hostNQNByAlias[alias], subsystem: nqn, of: fabricTarget)
        let zoneReason =
            zoned.isEmpty ? nil : "in zone" + (zoned.count == 1 ? " " : "s ") + zoned.joined(separator: ", ")
        guard rules.groupsAllow(host: alias, target: target) else { return zoneReason }
        var reason: String
        if subsystem.allowAnyHost {
            reason = "any host (AllowAnyHost)"
        } else if subsystem.hosts.contains(alias) {
            reason = "on the access list"
        } else {
            return zoneReason
        }
        if let targetGroups = rules.groupsOfTarget[target], !targetGroups.isEmpty {
            let shared = targetGroups.intersection(rules.groupsOfHost[alias] ?? []).sorted()
            reason +=
                ", in group" + (shared.count == 1 ? " " : "s ") + shared.joined(separator: ", ")
                + " with target " + target
        }
        if let zoneReason { reason += "; " + zoneReason }
        return reason
    }

    /// The subsystems host `alias` may use: `Shared` (AllowAnyHost) and `Restricted` (its alias is
    /// on the access list, or an active zone gives it), after the group rule.
    public func subsystems(
        visibleTo alias: String
    ) throws(ModelError) -> (
        shared: [SubsystemReference], restricted: [SubsystemReference]
    ) {
        _ = try host(alias)
        let rules = accessRules
        var shared: [SubsystemReference] = []
        var restricted: [SubsystemReference] = []
        let nqn = rules.hostNQNByAlias[alias]
        for target in targets {
            let grouped = rules.groupsAllow(host: alias, target: target.alias)
            for subsystem in target.subsystems {
                let reference = SubsystemReference(target: target.alias, nqn: subsystem.nqn)
                if grouped && subsystem.allowAnyHost {
                    shared.append(reference)
                } else if grouped && subsystem.hosts.contains(alias)
                    || !rules.zones(host: nqn, subsystem: subsystem.nqn, of: target).isEmpty
                {
                    restricted.append(reference)
                }
            }
        }
        return (shared, restricted)
    }

    /// The hosts that may use each subsystem of `target` through the zones derived from
    /// AllowAnyHost, the access list and the groups: nil for any host (also hosts dem does not
    /// know), otherwise the HOSTNQNs (perhaps none).
    func derivedAccess(
        of target: FabricTarget,
        rules: AccessRules
    ) -> [(subsystem: FabricSubsystem, allowedHostNQNs: Set<String>?)] {
        let targetGroups = rules.groupsOfTarget[target.alias] ?? []
        // Hosts that share one of the target's groups (nil: no group rule).
        var groupHosts: Set<String>? = nil
        if !targetGroups.isEmpty {
            var aliases = Set<String>()
            for group in targetGroups { aliases.formUnion(rules.hostsByGroup[group] ?? []) }
            groupHosts = aliases
        }
        let groupNQNs: Set<String>? = groupHosts.map { Set($0.compactMap { rules.hostNQNByAlias[$0] }) }
        return target.subsystems.map { subsystem in
            if subsystem.allowAnyHost { return (subsystem, groupNQNs) }
            var nqns = Set<String>()
            for alias in subsystem.hosts where groupHosts?.contains(alias) ?? true {
                if let nqn = rules.hostNQNByAlias[alias] { nqns.insert(nqn) }
            }
            return (subsystem, nqns)
        }
    }

    /// The hosts that may see `port`'s entry of subsystem `nqn`: `derived` (its derived zones'
    /// hosts, nil for any host) and the hosts of the active zones that hold that entry.
    func entryAccess(
        _ derived: Set<String>?,
        subsystem nqn: String,
        port: FabricPort,
        rules: AccessRules
    )
        -> Set<String>?
    {
        guard var hosts = derived else { return nil }
        if rules.zones.names(subsystem: nqn) {
            for zone in rules.zones.zones(subsystem: nqn, port: port) { hosts.formUnion(zone.hostNQNs) }
        }
        return hosts
    }

    /// Each entry of `target` (a subsystem on a port, in subsystem and PORTID order) with the
    /// hosts that may see it, after every zone, derived or active; an entry no host may see is
    /// left out.
    public func entryAccess(
        of target: FabricTarget,
        rules: AccessRules
    ) -> [(subsystem: FabricSubsystem, port: FabricPort, allowedHostNQNs: Set<String>?)] {
        var result: [(subsystem: FabricSubsystem, port: FabricPort, allowedHostNQNs: Set<String>?)] = []
        for (subsystem, derived) in derivedAccess(of: target, rules: rules) {
            for port in target.ports {
                let hosts = entryAccess(derived, subsystem: subsystem.nqn, port: port, rules: rules)
                if let hosts, hosts.isEmpty { continue }
                result.append((subsystem, port, hosts))
            }
        }
        return result
    }

    /// The hosts that may use each subsystem of `target` on any of its ports (what the target's
    /// own access list must let in): nil for any host, otherwise the HOSTNQNs, after every zone.
    /// A subsystem nobody may use is left out.
    public func subsystemAccess(
        of target: FabricTarget,
        rules: AccessRules
    ) -> [(subsystem: FabricSubsystem, allowedHostNQNs: Set<String>?)] {
        var result: [(subsystem: FabricSubsystem, allowedHostNQNs: Set<String>?)] = []
        for (subsystem, derived) in derivedAccess(of: target, rules: rules) {
            var allowed = derived
            for port in target.ports where allowed != nil {
                allowed = entryAccess(allowed, subsystem: subsystem.nqn, port: port, rules: rules)
            }
            if let allowed, allowed.isEmpty { continue }
            result.append((subsystem, allowed))
        }
        return result
    }

    /// Every NVM subsystem entry the model yields (one per port of the subsystem's target), in
    /// target, subsystem and PORTID order, with the hosts that may see it: those of the derived
    /// zones and of the active zones that hold the entry. An entry no host may see is left out.
    public func discoveryEntries(target onlyTarget: String? = nil) -> [ModelDiscoveryEntry] {
        let rules = accessRules
        var result: [ModelDiscoveryEntry] = []
        for target in targets where onlyTarget == nil || target.alias == onlyTarget {
            for (subsystem, port, allowed) in entryAccess(of: target, rules: rules) {
                result.append(
                    ModelDiscoveryEntry(
                        targetAlias: target.alias,
                        entry: port.discoveryLogEntry(subsystemNQN: subsystem.nqn),
                        allowedHostNQNs: allowed
                    )
                )
            }
        }
        return result
    }
}

extension FabricPort {
    /// The discovery log entry of subsystem `subsystemNQN` on this port.
    public func discoveryLogEntry(subsystemNQN: String) -> DiscoveryLogEntry {
        let trtype: TransportType
        switch transportType {
        case "rdma": trtype = .rdma
        case "fc": trtype = .fibreChannel
        case "loop": trtype = .loop
        default: trtype = .tcp
        }
        let adrfam: AddressFamily
        switch addressFamily {
        case "ipv6": adrfam = .ipv6
        case "ib": adrfam = .infiniBand
        case "fc": adrfam = .fibreChannel
        case "loop": adrfam = .loop
        default: adrfam = .ipv4
        }
        let treq: TransportRequirements
        switch transportRequirements {
        case "required": treq = .secureChannelRequired
        case "not required": treq = .secureChannelNotRequired
        default: treq = .notSpecified
        }
        let tsas: TransportSpecificAddressSubtype?
        switch trtype {
        case .tcp: tsas = .tcp(securityType: securityType == "tls1.3" ? 2 : 0)
        case .rdma: tsas = .rdma(queuePairType: 1, providerType: 1, connectionManagementService: 1, partitionKey: 0)
        default: tsas = nil
        }
        return DiscoveryLogEntry(
            transportType: trtype,
            addressFamily: adrfam,
            subsystemType: .nvm,
            transportRequirements: treq,
            portIdentifier: UInt16(truncatingIfNeeded: portID),
            transportServiceIdentifier: String(transportServiceIdentifier),
            subsystemNQN: subsystemNQN,
            transportAddress: transportAddress,
            transportSpecificAddressSubtype: tsas
        )
    }
}
