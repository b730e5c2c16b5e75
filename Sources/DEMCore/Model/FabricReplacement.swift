/// What replacing the whole model (`PUT /dem/config`, `dem import`) removes: the targets,
/// subsystems, hosts, groups and zone groups of the old model the new one does not have.
public struct FabricReplacement: Sendable, Hashable, Encodable {
    public var targets: [String]
    /// `target/nqn` of subsystems removed from targets that stay.
    public var subsystems: [String]
    public var hosts: [String]
    public var groups: [String]
    /// Zone groups of the configured or the active zoning database.
    public var zoneGroups: [String]

    enum CodingKeys: String, CodingKey {
        case targets = "Targets"
        case subsystems = "Subsystems"
        case hosts = "Hosts"
        case groups = "Groups"
        case zoneGroups = "ZoneGroups"
    }

    public init(old: Fabric, new: Fabric) {
        let newTargets = Dictionary(new.targets.map { ($0.alias, $0) }, uniquingKeysWith: { a, _ in a })
        targets = old.targets.map(\.alias).filter { newTargets[$0] == nil }
        subsystems = old.targets.flatMap { target -> [String] in
            guard let kept = newTargets[target.alias] else { return [] }
            let nqns = Set(kept.subsystems.map(\.nqn))
            return target.subsystems.map(\.nqn).filter { !nqns.contains($0) }.map { "\(target.alias)/\($0)" }
        }
        let newHosts = Set(new.hosts.map(\.alias))
        hosts = old.hosts.map(\.alias).filter { !newHosts.contains($0) }
        let newGroups = Set(new.groups.map(\.name))
        groups = old.groups.map(\.name).filter { !newGroups.contains($0) }
        let newZoneGroups = Set((new.zoneGroups + new.activeZoneGroups).map(\.name))
        zoneGroups = Set((old.zoneGroups + old.activeZoneGroups).map(\.name)).subtracting(newZoneGroups).sorted()
    }

    /// Whether nothing is removed.
    public var isEmpty: Bool {
        targets.isEmpty && subsystems.isEmpty && hosts.isEmpty && groups.isEmpty && zoneGroups.isEmpty
    }

    /// One line, such as `2 targets (t1, t2), 197 hosts (h1, h2, h3, …), 1 group (g)`.
    public var summary: String {
        func part(_ names: [String], _ one: String, _ many: String) -> String? {
            guard !names.isEmpty else { return nil }
            let shown = names.prefix(5).joined(separator: ", ") + (names.count > 5 ? ", …" : "")
            return "\(names.count) \(names.count == 1 ? one : many) (\(shown))"
        }
        return [
            part(targets, "target", "targets"), part(subsystems, "subsystem", "subsystems"),
            part(hosts, "host", "hosts"), part(groups, "group", "groups"),
            part(zoneGroups, "zone group", "zone groups"),
        ].compactMap { $0 }.joined(separator: ", ")
    }

    /// Checks a replacement against what its caller asked for: one that removes anything needs
    /// `replace`; an empty model in place of a non-empty one needs `empty` too.
    ///
    /// - Parameters:
    ///   - how: how the caller says so, such as `?replace=1` or `--replace`.
    ///   - howEmpty: likewise for an empty model.
    /// - Throws: ``ModelError/conflict(_:_:)`` saying what would be removed and how to ask.
    public static func check(
        old: Fabric,
        new: Fabric,
        replace: Bool,
        empty: Bool,
        how: String,
        howEmpty: String
    ) throws(ModelError) -> FabricReplacement {
        let removed = FabricReplacement(old: old, new: new)
        if new == Fabric(), old != Fabric(), !(replace && empty) {
            throw .conflict(
                "Targets",
                "the configuration is empty: it would remove everything (\(removed.summary)); to empty the model, send it with \(howEmpty)"
            )
        }
        if !removed.isEmpty, !replace {
            throw .conflict(
                "Targets",
                "the configuration replaces the whole model and would remove \(removed.summary); to replace it, send it with \(how)"
            )
        }
        return removed
    }
}
