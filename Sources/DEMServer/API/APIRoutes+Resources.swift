import DEMCore
import DEMHTTP
import Foundation
import Hummingbird

// The resource routes of nvme-dem's API: /target, /target/<t>/subsystem, /host, /group.

struct TargetChangesBody: RequestFields {
    var Alias: String?
    var Refresh: Int?
    var MgmtMode: ManagementMode?
    var Interface: ManagementInterface?

    enum CodingKeys: String, CodingKey, CaseIterable { case Alias, Refresh, MgmtMode, Interface }
    static let fieldNames = names(CodingKeys.self)

    var changes: Fabric.TargetChanges {
        .init(alias: Alias, refresh: Refresh, managementMode: MgmtMode, interface: Interface)
    }
}

struct InterfaceBody: RequestFields {
    var Interface: ManagementInterface

    enum CodingKeys: String, CodingKey, CaseIterable { case Interface }
    static let fieldNames = names(CodingKeys.self)
}

struct SubsystemChangesBody: RequestFields {
    var SUBNQN: String?
    var AllowAnyHost: Bool?
    var Serial: String?
    var Model: String?

    enum CodingKeys: String, CodingKey, CaseIterable { case SUBNQN, AllowAnyHost, Serial, Model }
    static let fieldNames = names(CodingKeys.self)

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        SUBNQN = try c.decodeIfPresent(String.self, forKey: .SUBNQN)
        Serial = try c.decodeIfPresent(String.self, forKey: .Serial)
        Model = try c.decodeIfPresent(String.self, forKey: .Model)
        AllowAnyHost = try c.decodeFlagIfPresent(forKey: .AllowAnyHost)
    }

    var changes: Fabric.SubsystemChanges {
        .init(nqn: SUBNQN, allowAnyHost: AllowAnyHost, serial: Serial, model: Model)
    }
}

/// A change of an existing subsystem, in a body that may name any of a subsystem's fields (those
/// it cannot change are refused by name).
struct SubsystemUpdateBody: RequestFields {
    var changes: SubsystemChangesBody
    static let fieldNames = FabricSubsystem.fieldNames
    init(from decoder: any Decoder) throws { changes = try SubsystemChangesBody(from: decoder) }
}

struct AliasBody: RequestFields {
    var Alias: String

    enum CodingKeys: String, CodingKey, CaseIterable { case Alias }
    static let fieldNames = names(CodingKeys.self)
}

struct NameBody: RequestFields {
    var Name: String

    enum CodingKeys: String, CodingKey, CaseIterable { case Name }
    static let fieldNames = names(CodingKeys.self)
}

struct HostChangesBody: RequestFields {
    var Alias: String?
    var HOSTNQN: String?
    var HOSTID: String?

    enum CodingKeys: String, CodingKey, CaseIterable { case Alias, HOSTNQN, HOSTID }
    static let fieldNames = names(CodingKeys.self)

    var changes: Fabric.HostChanges { .init(alias: Alias, nqn: HOSTNQN, hostID: HOSTID) }
}

/// `PUT /host/<h>/dhchap`: the host's DH-HMAC-CHAP keys. A secret is `generate` or a
/// `DHHC-1:…` text; an empty ControllerSecret removes it.
struct HostKeyBody: RequestFields {
    var Secret: String?
    var ControllerSecret: String?
    var Hash: String?
    var DHGroup: String?

    enum CodingKeys: String, CodingKey, CaseIterable { case Secret, ControllerSecret, Hash, DHGroup }
    static let fieldNames = names(CodingKeys.self)

    /// The keys `current` becomes.
    func applied(to current: HostKey?) throws -> HostKey {
        let hashName = Hash ?? current?.hash ?? "sha256"
        guard let hash = DHCHAP.Hash(name: hashName) else {
            throw APIError(
                .unprocessableContent,
                field: "Hash",
                "must be sha256, sha384 or sha512, not \"\(hashName)\""
            )
        }
        let groupName = DHGroup ?? current?.group ?? "ffdhe2048"
        guard let group = DHCHAP.Group(name: groupName) else {
            throw APIError(
                .unprocessableContent,
                field: "DHGroup",
                "must be null, ffdhe2048, ffdhe3072, ffdhe4096, ffdhe6144 or ffdhe8192, not \"\(groupName)\""
            )
        }
        func secret(_ text: String, field: String) throws -> String {
            if text == "generate" { return try DHCHAPSecret.generate(length: hash.length).text }
            do {
                return try DHCHAPSecret(parsing: text).text
            } catch {
                throw APIError(.unprocessableContent, field: field, error.description)
            }
        }
        guard let secretText = Secret.map({ $0 }) ?? current?.secret else {
            throw APIError(.badRequest, field: "Secret", "Secret is required (generate, or a DHHC-1:hh:…: secret)")
        }
        var key = HostKey(
            secret: Secret == nil ? secretText : try secret(secretText, field: "Secret"),
            controllerSecret: current?.controllerSecret,
            previousSecret: current?.previousSecret,
            hash: hash.description,
            group: group.description
        )
        if let ControllerSecret {
            key.controllerSecret =
                ControllerSecret.isEmpty ? nil : try secret(ControllerSecret, field: "ControllerSecret")
        }
        return key
    }
}

struct HostView: Encodable {
    var host: FabricHost
    var shared: [SubsystemReference]
    var restricted: [SubsystemReference]

    enum CodingKeys: String, CodingKey { case Shared, Restricted }

    func encode(to encoder: any Encoder) throws {
        try host.encode(to: encoder)
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(shared, forKey: .Shared)
        try c.encode(restricted, forKey: .Restricted)
    }
}

struct TargetUsage: Encodable {
    var Alias: String
    var MgmtMode: String
    var PortIDs: Int
    var Subsystems: Int
    var Namespaces: Int
    var RestrictedSubsystems: Int
    var AllowedHosts: Int
    var DiscoveryEntries: Int
}

extension APIRoutes {
    /// What a change of an existing subsystem may set (not its namespaces or hosts).
    static let subsystemChangeKeys: Set<String> = Set(SubsystemChangesBody.fieldNames)

    // MARK: /target

    func addTargetRoutes(_ router: Router<APIRequestContext>) {
        router.get("/target") { request, _ in
            var targets = service.fabric.targets
            if let mode = request.uri.queryParameters["mode"] {
                guard let wanted = ManagementMode(rawValue: String(mode)) else {
                    throw APIError(.badRequest, field: "mode", "must be LocalMgmt, InBandMgmt or OutOfBandMgmt")
                }
                targets = targets.filter { $0.managementMode == wanted }
            }
            if let fabric = request.uri.queryParameters["fabric"] {
                targets = targets.filter { $0.ports.contains { $0.transportType == String(fabric) } }
            }
            return try APIResponse.json(["Targets": targets.map(\.alias)])
        }
        router.put("/target") { request, context in
            guard let body = try await APIBody.read(request, context: context) else {
                throw APIError(.badRequest, field: "Alias", "Alias is required")
            }
            let target = try body.decode(FabricTarget.self)
            return try await createTarget(target)
        }
        router.post("/target/:t") { request, context in
            let alias = try context.parameters.decoded("t")
            var target = FabricTarget(alias: alias)
            if let body = try await APIBody.read(request, context: context) {
                target = try body.decode(FabricTarget.self, filling: "Alias", with: .string(alias))
                guard target.alias == alias else {
                    throw APIError(.badRequest, field: "Alias", "differs from the alias in the path; rename with PATCH")
                }
            }
            return try await createTarget(target)
        }
        router.get("/target/:t") { _, context in
            let alias = try context.parameters.decoded("t")
            return try readJSON("target \(alias)") { fabric throws(ModelError) in try fabric.target(alias) }
        }
        let update: @Sendable (Request, APIRequestContext) async throws -> Response = { request, context in
            let alias = try context.parameters.decoded("t")
            guard let body = try await APIBody.read(request, context: context) else {
                throw APIError(.badRequest, "the body must name at least one of Alias, Refresh, MgmtMode, Interface")
            }
            let changes = try body.decode(TargetChangesBody.self).changes
            let newAlias = changes.alias ?? alias
            try await change(.updated, Self.path("target", alias)) { fabric throws(ModelError) in
                try fabric.updateTarget(alias, changes)
            }
            return try APIResponse.json(try read { fabric throws(ModelError) in try fabric.target(newAlias) })
        }
        router.put("/target/:t", use: update)
        router.patch("/target/:t", use: update)
        router.delete("/target/:t") { _, context in
            let alias = try context.parameters.decoded("t")
            try await change(.deleted, Self.path("target", alias)) { fabric throws(ModelError) in
                try fabric.deleteTarget(alias)
            }
            return APIResponse.noContent
        }
        router.put("/target/:t/interface") { request, context in
            let alias = try context.parameters.decoded("t")
            guard let body = try await APIBody.read(request, context: context) else {
                throw APIError(.badRequest, field: "Interface", "Interface is required")
            }
            let interface = try body.decode(InterfaceBody.self).Interface
            try await change(.updated, Self.path("target", alias)) { fabric throws(ModelError) in
                let target = try fabric.target(alias)
                guard target.managementMode != .local || interface.transportAddress != nil else {
                    throw ModelError.invalid(
                        "Interface",
                        "target \"\(alias)\" is LocalMgmt: its Interface is its discovery controller's TRTYPE, ADRFAM, TRADDR and TRSVCID"
                    )
                }
                try fabric.updateTarget(alias, .init(interface: interface))
            }
            return try APIResponse.json(try read { fabric throws(ModelError) in try fabric.target(alias) })
        }
        router.post("/target/:t/refresh") { _, context in
            let alias = try context.parameters.decoded("t")
            let target = try read { fabric throws(ModelError) in try fabric.target(alias) }
            guard let monitor else {
                feed.flush()
                return try APIResponse.message("Target '\(alias)': its entries come from the model and are current")
            }
            if let failure = await monitor.refresh(alias) { throw failure.apiError }
            feed.flush()
            return try APIResponse.json(
                monitor.status(alias) ?? TargetStatus(alias: alias, managementMode: target.managementMode)
            )
        }
        router.post("/target/:t/reconfig") { _, context -> Response in
            let alias = try context.parameters.decoded("t")
            let target = try read { fabric throws(ModelError) in try fabric.target(alias) }
            switch target.managementMode {
            case .local:
                throw APIError(
                    .conflict,
                    field: "MgmtMode",
                    "target \"\(alias)\" is LocalMgmt: dem does not configure it"
                )
            case .inBand, .outOfBand:
                guard let monitor else { throw APIError(.serviceUnavailable, "dem is not watching targets") }
                if let failure = await monitor.reconfigure(alias) { throw failure.apiError }
                feed.flush()
                return try APIResponse.json(
                    monitor.status(alias) ?? TargetStatus(alias: alias, managementMode: target.managementMode)
                )
            }
        }
        router.get("/target/:t/status") { _, context in
            let alias = try context.parameters.decoded("t")
            let target = try read { fabric throws(ModelError) in try fabric.target(alias) }
            return try APIResponse.json(
                monitor?.status(alias) ?? TargetStatus(alias: alias, managementMode: target.managementMode)
            )
        }
        router.get("/target/:t/usage") { _, context in
            let alias = try context.parameters.decoded("t")
            let fabric = service.fabric
            let target = try read { fabric throws(ModelError) in try fabric.target(alias) }
            let entries = fabric.discoveryEntries(target: alias)
            return try APIResponse.json(
                TargetUsage(
                    Alias: alias,
                    MgmtMode: target.managementMode.rawValue,
                    PortIDs: target.ports.count,
                    Subsystems: target.subsystems.count,
                    Namespaces: target.subsystems.reduce(0) { $0 + $1.namespaces.count },
                    RestrictedSubsystems: target.subsystems.filter { !$0.allowAnyHost }.count,
                    AllowedHosts: Set(target.subsystems.flatMap(\.hosts)).count,
                    DiscoveryEntries: entries.count
                )
            )
        }
        router.get("/target/:t/logpage") { _, context in
            let alias = try context.parameters.decoded("t")
            let fabric = service.fabric
            _ = try read { fabric throws(ModelError) in try fabric.target(alias) }
            let records: [[String: Any]] = fabric.discoveryEntries(target: alias).map { entry in
                var record = DiscoveryLogJSON.record(entry.entry)
                if let hosts = entry.allowedHostNQNs { record["hosts"] = hosts.sorted() }
                return record
            }
            return try APIResponse.object(["Alias": alias, "records": records])
        }
        // Ports.
        router.put("/target/:t/portid") { request, context in
            let alias = try context.parameters.decoded("t")
            guard let body = try await APIBody.read(request, context: context) else {
                throw APIError(.badRequest, field: "PORTID", "the body must be a port")
            }
            let port = try body.decode(FabricPort.self)
            let created = try await change(.updated, Self.path("target", alias, "portid", String(port.portID))) {
                fabric throws(ModelError) in try fabric.setPort(target: alias, port)
            }
            return try APIResponse.json(
                port,
                status: created ? .created : .ok,
                location: Self.path("target", alias, "portid", String(port.portID))
            )
        }
        router.put("/target/:t/portid/:p") { request, context in
            let alias = try context.parameters.decoded("t")
            let portID = try context.parameters.integer("p", field: "PORTID")
            guard let body = try await APIBody.read(request, context: context) else {
                throw APIError(.badRequest, "the body must be a port")
            }
            let final = try body.decode(FabricPort.self, filling: "PORTID", with: .integer(portID))
            try await change(.updated, Self.path("target", alias, "portid", String(portID))) {
                fabric throws(ModelError) in try fabric.setPort(target: alias, final, replacing: portID)
            }
            return try APIResponse.json(final)
        }
        router.get("/target/:t/portid/:p") { _, context in
            let alias = try context.parameters.decoded("t")
            let portID = try context.parameters.integer("p", field: "PORTID")
            let target = try read { fabric throws(ModelError) in try fabric.target(alias) }
            guard let port = target.ports.first(where: { $0.portID == portID }) else {
                throw APIError(.notFound, field: "PORTID", "port \(portID) does not exist on target \"\(alias)\"")
            }
            return try APIResponse.json(port)
        }
        router.delete("/target/:t/portid/:p") { _, context in
            let alias = try context.parameters.decoded("t")
            let portID = try context.parameters.integer("p", field: "PORTID")
            try await change(.deleted, Self.path("target", alias, "portid", String(portID))) {
                fabric throws(ModelError) in try fabric.deletePort(target: alias, portID: portID)
            }
            return APIResponse.noContent
        }
    }

    func createTarget(_ target: FabricTarget) async throws -> Response {
        let path = Self.path("target", target.alias)
        try await change(.created, path) { fabric throws(ModelError) in try fabric.addTarget(target) }
        return try APIResponse.json(
            try read { fabric throws(ModelError) in try fabric.target(target.alias) },
            status: .created,
            location: path
        )
    }

    // MARK: /target/<t>/subsystem

    func addSubsystemRoutes(_ router: Router<APIRequestContext>) {
        router.put("/target/:t/subsystem") { request, context in
            let alias = try context.parameters.decoded("t")
            guard let body = try await APIBody.read(request, context: context) else {
                throw APIError(.badRequest, field: "SUBNQN", "SUBNQN is required")
            }
            let (subsystem, keys) = try body.decodeFields(FabricSubsystem.self)
            return try await upsertSubsystem(target: alias, subsystem, keys: keys)
        }
        router.post("/target/:t/subsystem/:n") { request, context in
            let alias = try context.parameters.decoded("t")
            let nqn = try context.parameters.decoded("n")
            let body = try await APIBody.read(request, context: context)
            let exists = (try? service.fabric.subsystem(target: alias, nqn: nqn)) != nil
            if exists, let body {
                return try await updateSubsystem(target: alias, nqn: nqn, body: body)
            }
            if exists {
                throw APIError(.conflict, field: "SUBNQN", "subsystem \"\(nqn)\" already exists on target \"\(alias)\"")
            }
            var subsystem = FabricSubsystem(nqn: nqn)
            if let body {
                subsystem = try body.decode(FabricSubsystem.self, filling: "SUBNQN", with: .string(nqn))
                guard subsystem.nqn == nqn else {
                    throw APIError(.badRequest, field: "SUBNQN", "differs from the NQN in the path; rename with PATCH")
                }
            }
            let created = subsystem
            let path = Self.path("target", alias, "subsystem", nqn)
            try await change(.created, path) { fabric throws(ModelError) in
                try fabric.addSubsystem(target: alias, created)
            }
            return try APIResponse.json(
                try read { fabric throws(ModelError) in try fabric.subsystem(target: alias, nqn: nqn) },
                status: .created,
                location: path
            )
        }
        router.get("/target/:t/subsystem/:n") { _, context in
            let alias = try context.parameters.decoded("t")
            let nqn = try context.parameters.decoded("n")
            return try readJSON("subsystem \(alias) \(nqn)") { fabric throws(ModelError) in
                try fabric.subsystem(target: alias, nqn: nqn)
            }
        }
        let update: @Sendable (Request, APIRequestContext) async throws -> Response = { request, context in
            let alias = try context.parameters.decoded("t")
            let nqn = try context.parameters.decoded("n")
            guard let body = try await APIBody.read(request, context: context) else {
                throw APIError(.badRequest, "the body must name at least one of SUBNQN, AllowAnyHost, Serial, Model")
            }
            return try await updateSubsystem(target: alias, nqn: nqn, body: body)
        }
        router.put("/target/:t/subsystem/:n", use: update)
        router.patch("/target/:t/subsystem/:n", use: update)
        router.delete("/target/:t/subsystem/:n") { _, context in
            let alias = try context.parameters.decoded("t")
            let nqn = try context.parameters.decoded("n")
            try await change(.deleted, Self.path("target", alias, "subsystem", nqn)) { fabric throws(ModelError) in
                try fabric.deleteSubsystem(target: alias, nqn: nqn)
            }
            return APIResponse.noContent
        }
        // Namespaces.
        let setNamespace: @Sendable (Request, APIRequestContext) async throws -> Response = { request, context in
            let alias = try context.parameters.decoded("t")
            let nqn = try context.parameters.decoded("n")
            guard let body = try await APIBody.read(request, context: context) else {
                throw APIError(.badRequest, field: "NSID", "the body must be a namespace")
            }
            var namespace: FabricNamespace
            if let id = context.parameters.get("id").flatMap({ Int($0) }) {
                namespace = try body.decode(FabricNamespace.self, filling: "NSID", with: .integer(id))
            } else {
                let (decoded, keys) = try body.decodeFields(FabricNamespace.self)
                guard keys.contains("NSID") else { throw APIError(.badRequest, field: "NSID", "NSID is required") }
                namespace = decoded
            }
            let final = namespace
            let path = Self.path("target", alias, "subsystem", nqn, "nsid", String(final.namespaceID))
            let created = try await change(.updated, path) { fabric throws(ModelError) in
                try fabric.setNamespace(target: alias, subsystem: nqn, final)
            }
            namespace = final
            return try APIResponse.json(namespace, status: created ? .created : .ok, location: path)
        }
        router.put("/target/:t/subsystem/:n/nsid", use: setNamespace)
        router.put("/target/:t/subsystem/:n/nsid/:id", use: setNamespace)
        router.delete("/target/:t/subsystem/:n/nsid/:id") { _, context in
            let alias = try context.parameters.decoded("t")
            let nqn = try context.parameters.decoded("n")
            let id = try context.parameters.integer("id", field: "NSID")
            try await change(.deleted, Self.path("target", alias, "subsystem", nqn, "nsid", String(id))) {
                fabric throws(ModelError) in try fabric.deleteNamespace(target: alias, subsystem: nqn, namespaceID: id)
            }
            return APIResponse.noContent
        }
        // Access lists.
        let allow: @Sendable (Request, APIRequestContext) async throws -> Response = { request, context in
            let alias = try context.parameters.decoded("t")
            let nqn = try context.parameters.decoded("n")
            let host: String
            if let fromPath = context.parameters.get("h") {
                host = try context.parameters.decoded("h")
                _ = fromPath
            } else {
                guard let body = try await APIBody.read(request, context: context) else {
                    throw APIError(.badRequest, field: "Alias", "Alias is required")
                }
                host = try body.decode(AliasBody.self).Alias
            }
            let path = Self.path("target", alias, "subsystem", nqn, "host", host)
            let added = try await change(.created, path) { fabric throws(ModelError) in
                try fabric.allowHost(target: alias, subsystem: nqn, host: host)
            }
            return try APIResponse.json(
                try read { fabric throws(ModelError) in try fabric.subsystem(target: alias, nqn: nqn) },
                status: added ? .created : .ok,
                location: path
            )
        }
        router.put("/target/:t/subsystem/:n/host", use: allow)
        router.put("/target/:t/subsystem/:n/host/:h", use: allow)
        router.post("/target/:t/subsystem/:n/host/:h", use: allow)
        router.delete("/target/:t/subsystem/:n/host/:h") { _, context in
            let alias = try context.parameters.decoded("t")
            let nqn = try context.parameters.decoded("n")
            let host = try context.parameters.decoded("h")
            try await change(.deleted, Self.path("target", alias, "subsystem", nqn, "host", host)) {
                fabric throws(ModelError) in try fabric.disallowHost(target: alias, subsystem: nqn, host: host)
            }
            return APIResponse.noContent
        }
    }

    func upsertSubsystem(target alias: String, _ subsystem: FabricSubsystem, keys: Set<String>) async throws -> Response
    {
        let path = Self.path("target", alias, "subsystem", subsystem.nqn)
        if (try? service.fabric.subsystem(target: alias, nqn: subsystem.nqn)) != nil {
            for key in keys.sorted() where !Self.subsystemChangeKeys.contains(key) {
                throw APIError(.badRequest, field: key, "cannot be changed here; use the NSIDs and host routes")
            }
        }
        let created = try await change(.updated, path) { fabric throws(ModelError) in
            if (try? fabric.subsystem(target: alias, nqn: subsystem.nqn)) == nil {
                try fabric.addSubsystem(target: alias, subsystem)
                return true
            }
            try fabric.updateSubsystem(
                target: alias,
                nqn: subsystem.nqn,
                .init(
                    allowAnyHost: keys.contains("AllowAnyHost") ? subsystem.allowAnyHost : nil,
                    serial: subsystem.serial,
                    model: subsystem.model
                )
            )
            return false
        }
        return try APIResponse.json(
            try read { fabric throws(ModelError) in try fabric.subsystem(target: alias, nqn: subsystem.nqn) },
            status: created ? .created : .ok,
            location: path
        )
    }

    func updateSubsystem(target alias: String, nqn: String, body: APIBody) async throws -> Response {
        let (update, keys) = try body.decodeFields(SubsystemUpdateBody.self)
        for key in keys.sorted() where !Self.subsystemChangeKeys.contains(key) {
            throw APIError(.badRequest, field: key, "cannot be changed here; use the NSIDs and host routes")
        }
        let changes = update.changes.changes
        try await change(.updated, Self.path("target", alias, "subsystem", nqn)) { fabric throws(ModelError) in
            try fabric.updateSubsystem(target: alias, nqn: nqn, changes)
        }
        return try APIResponse.json(
            try read { fabric throws(ModelError) in try fabric.subsystem(target: alias, nqn: changes.nqn ?? nqn) }
        )
    }

    // MARK: /host

    func addHostRoutes(_ router: Router<APIRequestContext>) {
        router.get("/host") { _, _ in
            try APIResponse.json(["Hosts": service.fabric.hosts.map(\.alias)])
        }
        router.put("/host") { request, context in
            guard let body = try await APIBody.read(request, context: context) else {
                throw APIError(.badRequest, field: "Alias", "Alias is required")
            }
            return try await createHost(try body.decode(FabricHost.self))
        }
        router.post("/host/:h") { request, context in
            let alias = try context.parameters.decoded("h")
            let body = try await APIBody.read(request, context: context)
            if (try? service.fabric.host(alias)) != nil {
                guard let body else { throw APIError(.conflict, field: "Alias", "host \"\(alias)\" already exists") }
                return try await updateHost(alias, try body.decode(HostChangesBody.self).changes)
            }
            let fields = try body?.decode(HostChangesBody.self)
            if let other = fields?.Alias, other != alias {
                throw APIError(.badRequest, field: "Alias", "differs from the alias in the path")
            }
            return try await createHost(FabricHost(alias: alias, nqn: fields?.HOSTNQN, hostID: fields?.HOSTID))
        }
        router.get("/host/:h") { _, context in
            let alias = try context.parameters.decoded("h")
            return try readJSON("host \(alias)") { fabric throws(ModelError) in
                let visible = try fabric.subsystems(visibleTo: alias)
                return HostView(host: try fabric.host(alias), shared: visible.shared, restricted: visible.restricted)
            }
        }
        let update: @Sendable (Request, APIRequestContext) async throws -> Response = { request, context in
            let alias = try context.parameters.decoded("h")
            guard let body = try await APIBody.read(request, context: context) else {
                throw APIError(.badRequest, "the body must name at least one of Alias, HOSTNQN, HOSTID")
            }
            return try await updateHost(alias, try body.decode(HostChangesBody.self).changes)
        }
        router.put("/host/:h", use: update)
        router.patch("/host/:h", use: update)
        router.delete("/host/:h") { _, context in
            let alias = try context.parameters.decoded("h")
            try await change(.deleted, Self.path("host", alias)) { fabric throws(ModelError) in
                try fabric.deleteHost(alias)
            }
            return APIResponse.noContent
        }
        router.get("/host/:h/dhchap") { _, context in
            let alias = try context.parameters.decoded("h")
            _ = try read { fabric throws(ModelError) in try fabric.host(alias) }
            guard let key = service.hostKey(alias) else {
                throw APIError(.notFound, field: "Secret", "host \"\(alias)\" has no DH-HMAC-CHAP key")
            }
            return try APIResponse.json(key)
        }
        router.put("/host/:h/dhchap") { request, context in
            let alias = try context.parameters.decoded("h")
            guard let body = try await APIBody.read(request, context: context) else {
                throw APIError(.badRequest, field: "Secret", "Secret is required (generate, or a DHHC-1:hh:…: secret)")
            }
            let current = service.hostKey(alias)
            let key = try body.decode(HostKeyBody.self).applied(to: current)
            let stored: HostKey?
            do throws(FabricService.ChangeError) {
                stored = try await service.setHostKey(alias, key)
            } catch {
                throw APIError(error)
            }
            return try APIResponse.json(stored, status: current == nil ? .created : .ok)
        }
        router.delete("/host/:h/dhchap") { _, context in
            let alias = try context.parameters.decoded("h")
            guard service.hostKey(alias) != nil else {
                throw APIError(.notFound, field: "Secret", "host \"\(alias)\" has no DH-HMAC-CHAP key")
            }
            do throws(FabricService.ChangeError) {
                _ = try await service.setHostKey(alias, nil)
            } catch {
                throw APIError(error)
            }
            return APIResponse.noContent
        }
        router.get("/host/:h/logpage") { _, context in
            let alias = try context.parameters.decoded("h")
            let host = try read { fabric throws(ModelError) in try fabric.host(alias) }
            guard let nqn = host.nqn else {
                throw APIError(
                    .conflict,
                    field: "HOSTNQN",
                    "host \"\(alias)\" has no HOSTNQN, so no discovery log page"
                )
            }
            feed.flush()
            let page = catalog.discoveryLogPage(hostNQN: nqn)
            // The model's entries this host may use that it is not served now, each with why.
            struct Key: Hashable {
                var nqn: String
                var address: String
                var service: String
            }
            let served = Set(
                page.entries.map {
                    Key(nqn: $0.subsystemNQN, address: $0.transportAddress, service: $0.transportServiceIdentifier)
                }
            )
            // Each served entry with its target and why this host sees it.
            let fabric = service.fabric
            let rules = fabric.accessRules
            var targetOf: [Key: String] = [:]
            var withheld: [[String: Any]] = []
            let models = fabric.discoveryEntries()
            for model in models {
                let entry = model.entry
                targetOf[
                    Key(
                        nqn: entry.subsystemNQN,
                        address: entry.transportAddress,
                        service: entry.transportServiceIdentifier
                    )
                ] = model.targetAlias
            }
            let records = page.entries.map { entry -> [String: Any] in
                var record = DiscoveryLogJSON.record(entry)
                let key = Key(
                    nqn: entry.subsystemNQN,
                    address: entry.transportAddress,
                    service: entry.transportServiceIdentifier
                )
                if let target = targetOf[key] {
                    record["target"] = target
                    record["reason"] =
                        fabric.visibility(host: alias, target: target, subsystem: entry.subsystemNQN, rules: rules)
                        ?? "served"
                } else if entry.subsystemType == .currentDiscovery {
                    record["reason"] = "dem's discovery controller: every host"
                } else if entry.subsystemType == .referral {
                    record["reason"] = "a referral to another discovery controller"
                } else {
                    record["reason"] = "from dem's entries file"
                }
                return record
            }
            for model in models {
                if let allowed = model.allowedHostNQNs, !allowed.contains(nqn) { continue }
                let entry = model.entry
                let key = Key(
                    nqn: entry.subsystemNQN,
                    address: entry.transportAddress,
                    service: entry.transportServiceIdentifier
                )
                guard !served.contains(key) else { continue }
                var record = DiscoveryLogJSON.record(entry)
                record["target"] = model.targetAlias
                record["reason"] =
                    monitor?.whyWithheld(
                        target: model.targetAlias,
                        subsystem: entry.subsystemNQN,
                        portID: Int(entry.portIdentifier)
                    ) ?? "not served"
                withheld.append(record)
            }
            return try APIResponse.object([
                "Alias": alias, "HOSTNQN": nqn, "genctr": page.generationCounter,
                "records": records, "withheld": withheld,
            ])
        }
    }

    func createHost(_ host: FabricHost) async throws -> Response {
        let path = Self.path("host", host.alias)
        try await change(.created, path) { fabric throws(ModelError) in try fabric.addHost(host) }
        return try APIResponse.json(host, status: .created, location: path)
    }

    func updateHost(_ alias: String, _ changes: Fabric.HostChanges) async throws -> Response {
        try await change(.updated, Self.path("host", alias)) { fabric throws(ModelError) in
            try fabric.updateHost(alias, changes)
        }
        return try APIResponse.json(try read { fabric throws(ModelError) in try fabric.host(changes.alias ?? alias) })
    }

    // MARK: /group

    func addGroupRoutes(_ router: Router<APIRequestContext>) {
        router.get("/group") { _, _ in
            try APIResponse.json(["Groups": service.fabric.groups.map(\.name)])
        }
        router.put("/group") { request, context in
            guard let body = try await APIBody.read(request, context: context) else {
                throw APIError(.badRequest, field: "Name", "Name is required")
            }
            return try await createGroup(try body.decode(NameBody.self).Name)
        }
        router.post("/group/:g") { request, context in
            let name = try context.parameters.decoded("g")
            if let body = try await APIBody.read(request, context: context),
                try body.decode(NameBody.self).Name != name
            {
                throw APIError(.badRequest, field: "Name", "differs from the name in the path; rename with PATCH")
            }
            return try await createGroup(name)
        }
        router.get("/group/:g") { _, context in
            let name = try context.parameters.decoded("g")
            return try readJSON("group \(name)") { fabric throws(ModelError) in try fabric.group(name) }
        }
        let rename: @Sendable (Request, APIRequestContext) async throws -> Response = { request, context in
            let name = try context.parameters.decoded("g")
            guard let body = try await APIBody.read(request, context: context) else {
                throw APIError(.badRequest, field: "Name", "Name is required")
            }
            let newName = try body.decode(NameBody.self).Name
            try await change(.updated, Self.path("group", name)) { fabric throws(ModelError) in
                try fabric.renameGroup(name, to: newName)
            }
            return try APIResponse.json(try read { fabric throws(ModelError) in try fabric.group(newName) })
        }
        router.put("/group/:g", use: rename)
        router.patch("/group/:g", use: rename)
        router.delete("/group/:g") { _, context in
            let name = try context.parameters.decoded("g")
            try await change(.deleted, Self.path("group", name)) { fabric throws(ModelError) in
                try fabric.deleteGroup(name)
            }
            return APIResponse.noContent
        }
        for kind in ["target", "host"] {
            let add: @Sendable (Request, APIRequestContext) async throws -> Response = { request, context in
                let name = try context.parameters.decoded("g")
                let member: String
                if context.parameters.get("m") != nil {
                    member = try context.parameters.decoded("m")
                } else {
                    guard let body = try await APIBody.read(request, context: context) else {
                        throw APIError(.badRequest, field: "Alias", "Alias is required")
                    }
                    member = try body.decode(AliasBody.self).Alias
                }
                let path = Self.path("group", name, kind, member)
                let added = try await change(.created, path) { fabric throws(ModelError) in
                    kind == "target"
                        ? try fabric.addGroupMember(group: name, target: member)
                        : try fabric.addGroupMember(group: name, host: member)
                }
                return try APIResponse.json(
                    try read { fabric throws(ModelError) in try fabric.group(name) },
                    status: added ? .created : .ok,
                    location: path
                )
            }
            router.put("/group/:g/\(kind)", use: add)
            router.put("/group/:g/\(kind)/:m", use: add)
            router.post("/group/:g/\(kind)/:m", use: add)
            router.delete("/group/:g/\(kind)/:m") { _, context in
                let name = try context.parameters.decoded("g")
                let member = try context.parameters.decoded("m")
                try await change(.deleted, Self.path("group", name, kind, member)) { fabric throws(ModelError) in
                    kind == "target"
                        ? try fabric.removeGroupMember(group: name, target: member)
                        : try fabric.removeGroupMember(group: name, host: member)
                }
                return APIResponse.noContent
            }
        }
    }

    func createGroup(_ name: String) async throws -> Response {
        let path = Self.path("group", name)
        try await change(.created, path) { fabric throws(ModelError) in try fabric.addGroup(name) }
        return try APIResponse.json(
            try read { fabric throws(ModelError) in try fabric.group(name) },
            status: .created,
            location: path
        )
    }
}
