import DEMCore
import DEMHTTP
import Foundation
import Hummingbird

// Zoning (TP8010, NVMe Base 2.1 §8.3.2.3): the configured database is edited zone by zone, its
// effect shown per host by a dry run, and made active in one step.

/// `PUT /zoning/<g>/<z>/subsystem/<nqn>`: the one port the member is limited to, if any.
struct ZoneSubsystemBody: RequestFields {
    var TRADDR: String?
    var TRSVCID: Int?

    enum CodingKeys: String, CodingKey, CaseIterable { case TRADDR, TRSVCID }
    static let fieldNames = names(CodingKeys.self)
}

struct ZoningView: Encodable {
    var ZoneGroups: [FabricZoneGroup]
    var ActiveZoneGroups: [FabricZoneGroup]
    /// Whether the configured database differs from the active one.
    var Pending: Bool
}

struct ZoningChangesView: Encodable {
    /// Per host whose page changes: the entries gained and lost.
    var Hosts: [ZoningHostChange]
    var Pending: Bool
}

extension APIRoutes {
    func addZoningRoutes(_ router: Router<APIRequestContext>) {
        router.get("/zoning") { _, _ in
            let fabric = service.fabric
            return try APIResponse.json(
                ZoningView(
                    ZoneGroups: fabric.zoneGroups,
                    ActiveZoneGroups: fabric.activeZoneGroups,
                    Pending: fabric.zoneGroups != fabric.activeZoneGroups
                )
            )
        }
        router.get("/zoning/diff") { _, _ in
            let fabric = service.fabric
            return try APIResponse.json(
                ZoningChangesView(
                    Hosts: fabric.zoningChanges(otherHosts: otherHosts()),
                    Pending: fabric.zoneGroups != fabric.activeZoneGroups
                )
            )
        }
        router.post("/zoning/activate") { _, _ in
            let others = otherHosts()
            let changes = try await change(.updated, "/zoning/active") { fabric throws(ModelError) in
                let changes = fabric.zoningChanges(otherHosts: others)
                fabric.activateZoning()
                return changes
            }
            return try APIResponse.json(ZoningChangesView(Hosts: changes, Pending: false))
        }
        router.post("/zoning/:g/:z") { _, context in
            let group = try context.parameters.decoded("g")
            let zone = try context.parameters.decoded("z")
            let path = Self.path("zoning", group, zone)
            try await change(.created, path) { fabric throws(ModelError) in
                try fabric.addZone(group: group, zone: zone)
            }
            return try APIResponse.json(
                try read { fabric throws(ModelError) in try zoneOf(fabric, group, zone) },
                status: .created,
                location: path
            )
        }
        router.get("/zoning/:g/:z") { _, context in
            let group = try context.parameters.decoded("g")
            let zone = try context.parameters.decoded("z")
            return try APIResponse.json(try read { fabric throws(ModelError) in try zoneOf(fabric, group, zone) })
        }
        router.delete("/zoning/:g/:z") { _, context in
            let group = try context.parameters.decoded("g")
            let zone = try context.parameters.decoded("z")
            try await change(.deleted, Self.path("zoning", group, zone)) { fabric throws(ModelError) in
                try fabric.deleteZone(group: group, zone: zone)
            }
            return APIResponse.noContent
        }
        for kind in FabricZoneMember.Kind.allCases {
            router.put("/zoning/:g/:z/\(kind.rawValue)/:m") { request, context in
                let group = try context.parameters.decoded("g")
                let zone = try context.parameters.decoded("z")
                let name = try context.parameters.decoded("m")
                var member = FabricZoneMember(kind: kind, nqn: name)
                if let body = try await APIBody.read(request, context: context) {
                    guard kind == .subsystem else {
                        throw APIError(.badRequest, "a host member takes no body: it is its NQN (or alias) only")
                    }
                    let fields = try body.decode(ZoneSubsystemBody.self)
                    member.transportAddress = fields.TRADDR
                    member.transportServiceIdentifier = fields.TRSVCID
                }
                let path = Self.path("zoning", group, zone, kind.rawValue, name)
                let added = try await change(.created, path) { [member] fabric throws(ModelError) in
                    try fabric.addZoneMember(group: group, zone: zone, member)
                }
                let zoneNow = try read { fabric throws(ModelError) in try zoneOf(fabric, group, zone) }
                return try APIResponse.json(zoneNow, status: added ? .created : .ok, location: path)
            }
            router.delete("/zoning/:g/:z/\(kind.rawValue)/:m") { _, context in
                let group = try context.parameters.decoded("g")
                let zone = try context.parameters.decoded("z")
                let name = try context.parameters.decoded("m")
                try await change(.deleted, Self.path("zoning", group, zone, kind.rawValue, name)) {
                    fabric throws(ModelError) in
                    try fabric.removeZoneMember(group: group, zone: zone, kind: kind, nqn: name)
                }
                return APIResponse.noContent
            }
        }
    }

    private func zoneOf(_ fabric: Fabric, _ group: String, _ zone: String) throws(ModelError) -> FabricZone {
        guard let found = try fabric.zoneGroup(group).zones.first(where: { $0.name == zone }) else {
            throw .notFound("Zone", "zone \"\(group)/\(zone)\" does not exist")
        }
        return found
    }

    /// The hosts dem knows besides the model's: registered and seen (for the dry run).
    private func otherHosts() -> Set<String> {
        Set(service.registrations.filter { $0.entityType == DiscoveryEntityType.host.name }.map(\.nqn))
            .union(service.seenHosts.map(\.nqn))
    }
}
