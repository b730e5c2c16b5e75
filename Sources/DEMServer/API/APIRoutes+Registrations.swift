import DEMCore
import DEMHTTP
import Foundation
import Hummingbird

// The discovery registrations (TP8010): who registered with dem's discovery controller, who
// connected without registering, and adopting either into the model.

/// `POST /registration/<r>/adopt`: the alias to give (the entity's name when absent).
struct AdoptBody: RequestFields {
    var Alias: String?

    enum CodingKeys: String, CodingKey, CaseIterable { case Alias }
    static let fieldNames = names(CodingKeys.self)
}

/// A registration, or a host seen, as `GET /registration` shows it: with the host (or, for a
/// DDC, the target) adopted from it, if any.
struct AdoptedView<Item: Encodable>: Encodable {
    var item: Item
    var adopted: String?

    enum CodingKeys: String, CodingKey { case adopted = "Adopted" }

    func encode(to encoder: any Encoder) throws {
        try item.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(adopted, forKey: .adopted)
    }
}

struct RegistrationsView: Encodable {
    var Registrations: [AdoptedView<DiscoveryRegistration>]
    /// Hosts that connected since dem started and have not registered.
    var Seen: [AdoptedView<SeenHost>]
}

extension APIRoutes {
    func addRegistrationRoutes(_ router: Router<APIRequestContext>) {
        router.get("/registration") { _, _ in
            let fabric = service.fabric
            let registrations = service.registrations
            let registered = Set(registrations.map(\.nqn))
            return try APIResponse.json(
                RegistrationsView(
                    Registrations: registrations.map {
                        AdoptedView(item: $0, adopted: adopted($0, fabric))
                    },
                    Seen: service.seenHosts.filter { !registered.contains($0.nqn) }.map { seen in
                        AdoptedView(item: seen, adopted: fabric.hosts.first { $0.nqn == seen.nqn }?.alias)
                    }
                )
            )
        }
        router.get("/registration/:r") { _, context in
            let registration = try lookUp(try context.parameters.decoded("r"))
            return try APIResponse.json(
                AdoptedView(item: registration, adopted: adopted(registration, service.fabric))
            )
        }
        router.delete("/registration/:r") { _, context in
            let registration = try lookUp(try context.parameters.decoded("r"))
            do throws(FabricService.ChangeError) {
                _ = try await service.deleteRegistration(registration.nqn)
            } catch {
                throw APIError(error)
            }
            return APIResponse.noContent
        }
        router.post("/registration/:r/adopt") { request, context in
            let name = try context.parameters.decoded("r")
            let alias = try await APIBody.read(request, context: context)?.decode(AdoptBody.self).Alias
            let registration: DiscoveryRegistration
            if let found = try? lookUp(name) {
                registration = found
            } else if let seen = service.seenHosts.first(where: { $0.nqn == name }) {
                registration = DiscoveryRegistration(
                    nqn: seen.nqn,
                    entityType: DiscoveryEntityType.host.name,
                    hostID: seen.hostID,
                    registered: seen.lastSeen,
                    updated: seen.lastSeen
                )
            } else {
                throw APIError(.notFound, field: "NQN", "no registration or host seen with the NQN or name \"\(name)\"")
            }
            return try await adopt(registration, alias: alias)
        }
    }

    /// The registration `name` names: its NQN, or its name when one registration has it.
    private func lookUp(_ name: String) throws -> DiscoveryRegistration {
        let registrations = service.registrations
        if let found = registrations.first(where: { $0.nqn == name }) { return found }
        let named = registrations.filter { $0.name == name }
        if named.count == 1 { return named[0] }
        if named.count > 1 {
            throw APIError(
                .conflict,
                field: "Name",
                "\(named.count) registrations have the name \"\(name)\": name one by its NQN (\(named.map(\.nqn).joined(separator: ", ")))"
            )
        }
        throw APIError(.notFound, field: "NQN", "no registration with the NQN or name \"\(name)\"")
    }

    /// The host (for a host) or target (for a DDC) made from `registration`, if any.
    private func adopted(_ registration: DiscoveryRegistration, _ fabric: Fabric) -> String? {
        if registration.entityType == DiscoveryEntityType.directDiscoveryController.name {
            return fabric.targets.first { target in
                guard target.managementMode == .local, let interface = target.interface else { return false }
                return registration.addresses.contains {
                    $0.address == interface.transportAddress
                        && Int($0.service) ?? DEMCore.discoveryPort == interface.transportServiceIdentifier
                }
            }?.alias
        }
        return fabric.hosts.first { $0.nqn == registration.nqn }?.alias
    }

    /// A host with the registration's NQN and host ID; for a DDC, a locally managed target whose
    /// discovery controller is where it registered (dem reads its page there, as
    /// `dem-cli set local ALIAS TRTYPE ADRFAM TRADDR TRSVCID` makes it).
    private func adopt(_ registration: DiscoveryRegistration, alias: String?) async throws -> Response {
        let alias = alias ?? registration.suggestedAlias
        switch registration.entityType {
        case DiscoveryEntityType.host.name:
            return try await createHost(FabricHost(alias: alias, nqn: registration.nqn, hostID: registration.hostID))
        case DiscoveryEntityType.directDiscoveryController.name:
            guard let address = registration.addresses.first(where: { $0.transport == "tcp" && !$0.address.isEmpty })
            else {
                throw APIError(
                    .unprocessableContent,
                    field: "Addresses",
                    "DDC \(registration.nqn) registered no TCP address where dem could read its discovery log"
                )
            }
            let target = FabricTarget(
                alias: alias,
                managementMode: .local,
                interface: ManagementInterface(
                    transportType: "tcp",
                    addressFamily: address.family == "ipv6" ? "ipv6" : "ipv4",
                    transportAddress: address.address,
                    transportServiceIdentifier: Int(address.service) ?? DEMCore.discoveryPort
                )
            )
            let path = Self.path("target", alias)
            try await change(.created, path) { fabric throws(ModelError) in try fabric.addTarget(target) }
            return try APIResponse.json(target, status: .created, location: path)
        default:
            throw APIError(
                .unprocessableContent,
                field: "Type",
                "\(registration.nqn) registered as a \(registration.entityType), which is not adopted: only hosts and DDCs are"
            )
        }
    }
}
