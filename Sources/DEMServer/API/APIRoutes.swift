import DEMCore
import DEMHTTP
import Foundation
import Hummingbird
import ServiceLifecycle
import X509

/// dem's REST API: nvme-dem's routes and JSON keys (`/dem`, `/target`, `/host`, `/group` and
/// everything under them) with standard status codes, plus `/host/<h>/logpage`, `/events`,
/// `/metrics`, `/health` and token management. docs/openapi.yaml describes it.
public struct APIRoutes: Sendable {
    /// The largest request body accepted (413 beyond).
    public static let maximumBodySize = APIBody.maximumSize

    let service: FabricService
    let feed: DiscoveryModelFeed
    let metrics: DEMMetrics
    let corsOrigin: String?
    let shutdown: @Sendable () -> Void
    /// Watches the targets; nil in tests that look at the model alone.
    let monitor: TargetMonitor?
    /// The fabric credential dem-em joins with; nil refuses joins.
    let fabricCredential: String?
    /// The fabric CA and dem's certificate: it signs enrolling targets' certificates, and is
    /// rotated through `POST /dem/rotate` (nil: no enrolment).
    let authority: FabricAuthority?
    /// The audit trail (nil: requests are published as events only).
    let audit: AuditLog?
    /// Answers of the model's reads, encoded once per revision.
    let answers = EncodedAnswers()

    var catalog: DiscoveryCatalog { feed.catalog }

    /// - Parameters:
    ///   - corsOrigin: the origin allowed to call from a browser (`*` for any); nil sends no CORS
    ///     headers.
    ///   - shutdown: stops dem (`POST /dem/shutdown`).
    public init(
        service: FabricService,
        feed: DiscoveryModelFeed,
        metrics: DEMMetrics,
        corsOrigin: String? = nil,
        monitor: TargetMonitor? = nil,
        fabricCredential: String? = nil,
        authority: FabricAuthority? = nil,
        audit: AuditLog? = nil,
        shutdown: @escaping @Sendable () -> Void
    ) {
        self.authority = authority
        self.monitor = monitor
        self.audit = audit
        self.fabricCredential = fabricCredential
        self.service = service
        self.feed = feed
        self.metrics = metrics
        self.corsOrigin = corsOrigin
        self.shutdown = shutdown
    }

    /// The router with every route and middleware.
    public func router() -> Router<APIRequestContext> {
        let router = Router(context: APIRequestContext.self)
        router.add(middleware: MetricsMiddleware(metrics: metrics))
        router.add(middleware: APIErrorMiddleware())
        if let corsOrigin {
            router.add(
                middleware: CORSMiddleware(
                    allowOrigin: corsOrigin == "*" ? .all : .custom(corsOrigin),
                    allowHeaders: [.accept, .authorization, .contentType, .origin],
                    allowMethods: [.get, .put, .post, .patch, .delete, .options]
                )
            )
        }
        router.add(
            middleware: AuthenticationMiddleware(service: service, fabricCredential: fabricCredential, audit: audit)
        )
        addServiceRoutes(router)
        addConsoleRoutes(router)
        addTargetRoutes(router)
        addSubsystemRoutes(router)
        addHostRoutes(router)
        addGroupRoutes(router)
        addRegistrationRoutes(router)
        addZoningRoutes(router)
        return router
    }

    // MARK: Changes

    /// Runs a change through the service, answering its errors as API errors.
    @discardableResult
    func change<Result: Sendable>(
        _ action: ChangeEvent.Action,
        _ path: String,
        _ body: @escaping @Sendable (inout Fabric) throws(ModelError) -> Result
    ) async throws -> Result {
        do {
            return try await service.change(action, path: path, body)
        } catch {
            throw APIError(error)
        }
    }

    /// The model's answer to a lookup, as an API error when it fails.
    func read<Result>(_ body: (Fabric) throws(ModelError) -> Result) throws -> Result {
        do {
            return try body(service.fabric)
        } catch {
            throw APIError(error)
        }
    }

    /// The model's answer to a lookup as JSON, encoded once per model revision (`key` names
    /// what is looked up); a failed lookup is an API error, as in ``read(_:)``.
    func readJSON(_ key: String, _ body: (Fabric) throws(ModelError) -> some Encodable) throws -> Response {
        let (fabric, revision) = service.snapshot
        let encoded = try answers.answer(key, revision: revision) {
            let value: any Encodable
            do throws(ModelError) {
                value = try body(fabric)
            } catch {
                throw APIError(error)
            }
            return ByteBuffer(bytes: try APIResponse.encoder().encode(value))
        }
        return APIResponse.json(encoded: encoded)
    }

    static func path(_ segments: String...) -> String {
        "/"
            + segments.map { $0.addingPercentEncoding(withAllowedCharacters: segmentCharacters) ?? $0 }.joined(
                separator: "/"
            )
    }

    static let segmentCharacters: CharacterSet = {
        var set = CharacterSet.alphanumerics
        set.insert(charactersIn: "-._~:@")
        return set
    }()

    // MARK: /dem, /health, /metrics, /events

    struct Interface: Encodable {
        var ID: Int
        var TRTYPE: String
        var ADRFAM: String
        var TRADDR: String
        var TRSVCID: Int
    }

    /// `PUT /dem/config`'s answer: the configuration now, and what the replacement removed.
    struct ConfigurationAnswer: Encodable {
        var configuration: Fabric
        var removed: FabricReplacement

        func encode(to encoder: any Encoder) throws {
            try configuration.encode(to: encoder)
            var container = encoder.container(keyedBy: Key.self)
            try container.encode(removed, forKey: Key(stringValue: "Removed")!)
        }

        struct Key: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init?(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }
    }

    struct DEMInfo: Encodable {
        var Interfaces: [Interface]
        var NQN: String
        var Version: String
    }

    struct TokenView: Encodable {
        var ID: String
        var Name: String
        var Role: String
        var Created: Date
        var LastUsed: Date?
        var Expires: Date?
        var Token: String?
        /// A new join token's answer: the fabric CA's fingerprint, which dem-em checks.
        var CAHash: String?

        /// A token as listed; `secret` only in the answer that made it.
        init(_ token: APIToken, secret: String? = nil) {
            ID = token.id
            Name = token.name
            Role = token.role.rawValue
            Created = token.created
            LastUsed = token.lastUsed
            Expires = token.expires
            Token = secret
        }
    }

    struct EnrolmentRequest: RequestFields {
        var Alias: String
        var CSR: String
        var Names: [String]?

        enum CodingKeys: String, CodingKey, CaseIterable { case Alias, CSR, Names }
        static let fieldNames = names(CodingKeys.self)
    }

    struct EnrolmentAnswer: Encodable {
        var Alias: String
        var Certificate: String
        var CA: String
        var Expires: Date
        /// The target's own credential (derived from the fabric credential, which never leaves
        /// dem), for the in-band channel's DH-HMAC-CHAP and its hosts' sealed keys.
        var FabricKey: String?
    }

    struct RotationRequest: RequestFields {
        /// `server`, `target` or `ca`.
        var What: String
        var Target: String?
        /// A CA rotation's overlap, in seconds.
        var Overlap: Int?
        /// Finish the CA rotation in progress.
        var Finish: Bool?
        /// Finish it even though some targets have no certificate of the new CA yet.
        var Force: Bool?

        enum CodingKeys: String, CodingKey, CaseIterable { case What, Target, Overlap, Finish, Force }
        static let fieldNames = names(CodingKeys.self)
    }

    struct RotatedTarget: Encodable {
        var Alias: String
        var Certificate: EndpointCertificate?
        var Error: String?
    }

    struct RotationAnswer: Encodable {
        var message: String
        var What: String
        /// dem's certificate (`server`), or the fabric's issuing CA (`ca`), as `sha256:…`.
        var Fingerprint: String
        var Expires: Date?
        /// A CA rotation's overlap end.
        var Until: Date?
        var Targets: [RotatedTarget]?
    }

    struct TokenRequest: RequestFields {
        var Name: String
        var Role: String?
        var ExpiresIn: Int?

        enum CodingKeys: String, CodingKey, CaseIterable { case Name, Role, ExpiresIn }
        static let fieldNames = names(CodingKeys.self)
    }

    /// `POST /dem/rotate {"What":"ca"}`: starts a CA rotation, or finishes it, and renews every
    /// enrolled target's certificate at once (the monitor renews those it could not reach when
    /// they answer again).
    func rotateCA(_ rotation: RotationRequest, authority: FabricAuthority) async throws -> Response {
        let enrolled = (monitor?.statuses ?? []).filter { $0.certificate != nil }
        let fingerprint: String
        let until: Date?
        if rotation.Finish == true {
            guard let current = authority.rotationUntil else {
                throw APIError(
                    .conflict,
                    field: "Finish",
                    "no CA rotation is in progress (dem-cli rotate ca starts one)"
                )
            }
            let issuing = authority.issuingFingerprint
            let behind = enrolled.filter { $0.certificate?.issuer != issuing }.map(\.alias)
            if !behind.isEmpty, rotation.Force != true {
                throw APIError(
                    .conflict,
                    field: "Force",
                    "targets without a certificate of the new CA would refuse dem once the old CA goes: \(behind.joined(separator: ", ")); bring them up (or enrol them again afterwards) and finish with Force (dem-cli rotate ca finish force), or wait: the overlap ends at \(current)"
                )
            }
            do {
                fingerprint = try authority.finishRotation()
            } catch {
                throw APIError(.internalServerError, "cannot finish the CA rotation: \(error)")
            }
            until = nil
        } else {
            let overlap = rotation.Overlap ?? Int(FabricAuthority.defaultOverlap)
            guard (0...(365 * 86400)).contains(overlap) else {
                throw APIError(
                    .unprocessableContent,
                    field: "Overlap",
                    "the overlap is 0 to 31536000 seconds, not \(overlap)"
                )
            }
            do {
                (fingerprint, until) = try authority.startRotation(overlap: TimeInterval(overlap))
            } catch let error as AuthorityError {
                throw APIError(.conflict, field: "What", error.description)
            } catch {
                throw APIError(.internalServerError, "cannot start a CA rotation: \(error)")
            }
        }
        var renewed: [RotatedTarget] = []
        if let monitor {
            renewed = await withTaskGroup(of: RotatedTarget.self) { group in
                for target in enrolled {
                    group.addTask {
                        do throws(EndpointCallError) {
                            return RotatedTarget(
                                Alias: target.alias,
                                Certificate: try await monitor.renewCertificate(target.alias)
                            )
                        } catch {
                            return RotatedTarget(Alias: target.alias, Error: error.message)
                        }
                    }
                }
                var all: [RotatedTarget] = []
                for await result in group { all.append(result) }
                return all.sorted { $0.Alias < $1.Alias }
            }
        }
        let failed = renewed.filter { $0.Error != nil }
        var lines = [
            until.map { "CA rotation started: new CA \(fingerprint), trusted beside the old one until \($0)" }
                ?? "CA rotation finished: \(fingerprint) is the only CA; a remote dem-cli trusts it again with dem-cli trust"
        ]
        lines.append("\(renewed.count - failed.count) of \(renewed.count) enrolled targets renewed")
        for target in failed { lines.append("  \(target.Alias): \(target.Error ?? "")") }
        if !failed.isEmpty, until != nil {
            lines.append("targets not renewed now are renewed when they answer again, before the overlap ends")
        }
        return try APIResponse.json(
            RotationAnswer(
                message: lines.joined(separator: "\n"),
                What: "ca",
                Fingerprint: fingerprint,
                Until: until,
                Targets: renewed
            )
        ).auditing(
            (until == nil ? "CA rotation finished: " : "CA rotation started: ") + fingerprint
                + ", \(renewed.count - failed.count) of \(renewed.count) targets renewed"
        )
    }

    func addServiceRoutes(_ router: Router<APIRequestContext>) {
        router.get("/health") { _, _ in
            try APIResponse.json(["status": "ok"])
        }
        router.get("/metrics") { _, _ in
            Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4"],
                body: ResponseBody(
                    byteBuffer: ByteBuffer(
                        string: metrics.render(catalog: catalog, service: service, targets: monitor?.statuses ?? [])
                    )
                )
            )
        }
        router.get("/events") { _, _ in
            let (events, cancel) = service.subscribe()
            return Response(
                status: .ok,
                headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
                body: ResponseBody { writer in
                    defer { cancel() }
                    try await writer.write(ByteBuffer(string: ": dem change events\n\n"))
                    let encoder = APIResponse.encoder()
                    for await event in events.cancelOnGracefulShutdown() {
                        let data = String(decoding: try encoder.encode(event), as: UTF8.self)
                        try await writer.write(
                            ByteBuffer(
                                string: "id: \(event.sequence)\nevent: \(event.action.rawValue)\ndata: \(data)\n\n"
                            )
                        )
                    }
                    try await writer.finish(nil)
                }
            )
        }
        router.get("/dem") { _, _ in
            let interfaces = catalog.listeners.enumerated().map { index, listener in
                Interface(
                    ID: index + 1,
                    TRTYPE: "tcp",
                    ADRFAM: IPAddressText.isIPv6(listener.address) ? "ipv6" : "ipv4",
                    TRADDR: listener.address,
                    TRSVCID: listener.port
                )
            }
            return try APIResponse.json(
                DEMInfo(Interfaces: interfaces, NQN: catalog.uniqueNQN, Version: DEMVersion.string)
            )
        }
        router.post("/dem/shutdown") { _, context in
            context.logger.notice("shutdown requested through the REST API")
            shutdown()
            return try APIResponse.message("dem is shutting down", status: .accepted)
        }
        // Certificates on demand: dem's own, a target's, or the fabric CA (started with an
        // overlap, then finished).
        router.post("/dem/rotate") { request, context in
            guard let authority else {
                throw APIError(
                    .conflict,
                    "dem runs with the site's PKI and has no fabric CA: rotate the certificates there"
                )
            }
            guard let body = try await APIBody.read(request, context: context) else {
                throw APIError(.badRequest, field: "What", "the body must name what to rotate: server, target or ca")
            }
            let rotation = try body.decode(RotationRequest.self)
            switch rotation.What {
            case "server":
                do {
                    try authority.renewServer(force: true)
                } catch {
                    throw APIError(.internalServerError, "cannot issue dem's certificate: \(error)")
                }
                let certificate = authority.serverCertificate
                let fingerprint = (try? FabricPKI.fingerprint(certificate)) ?? ""
                return try APIResponse.json(
                    RotationAnswer(
                        message:
                            "dem's certificate was issued again (\(fingerprint), until \(certificate.notValidAfter)); new connections get it",
                        What: "server",
                        Fingerprint: fingerprint,
                        Expires: certificate.notValidAfter
                    )
                )
                .auditing("dem's certificate: \(fingerprint)")
            case "target":
                guard let alias = rotation.Target, !alias.isEmpty else {
                    throw APIError(
                        .unprocessableContent,
                        field: "Target",
                        "rotating a target's certificate names the target"
                    )
                }
                guard let monitor else { throw APIError(.conflict, "dem does not manage targets here") }
                let certificate: EndpointCertificate
                do throws(EndpointCallError) {
                    certificate = try await monitor.renewCertificate(alias)
                } catch {
                    if case .refused(let status) = error.kind, status == 404 || status == 409 {
                        throw APIError(HTTPResponse.Status(code: status), field: "Target", error.message)
                    }
                    throw error.apiError
                }
                return try APIResponse.json(
                    RotationAnswer(
                        message:
                            "target '\(alias)' has a new certificate (\(certificate.fingerprint), until \(certificate.expires))",
                        What: "target",
                        Fingerprint: certificate.fingerprint,
                        Expires: certificate.expires
                    )
                ).auditing("target \(alias)'s certificate: \(certificate.fingerprint)")
            case "ca":
                return try await rotateCA(rotation, authority: authority)
            default:
                throw APIError(
                    .unprocessableContent,
                    field: "What",
                    "\"\(rotation.What)\" is not something dem rotates: server, target or ca"
                )
            }
        }
        router.get("/dem/targets") { _, _ in
            let fabric = service.fabric
            let statuses = fabric.targets.map { target in
                monitor?.status(target.alias)
                    ?? TargetStatus(alias: target.alias, managementMode: target.managementMode)
            }
            return try APIResponse.json(["Targets": statuses])
        }
        // dem-em enrols: with a join token (used up here) and a key of its own (in a CSR), it
        // receives a certificate of the fabric CA for its target, with which it joins.
        router.post("/dem/enrol") { request, context in
            guard let authority else {
                throw APIError(
                    .conflict,
                    "dem runs with the site's PKI and has no fabric CA: issue the target's certificate there"
                )
            }
            guard let body = try await APIBody.read(request, context: context) else {
                throw APIError(.badRequest, field: "Alias", "the body must be an enrolment request")
            }
            let enrolment = try body.decode(EnrolmentRequest.self)
            do throws(ModelError) {
                try FabricValidation.checkName(enrolment.Alias, field: "Alias")
            } catch {
                throw APIError(error)
            }
            var names: [SubjectName] = []
            for name in enrolment.Names ?? [] {
                guard FabricPKI.isValidName(name) else {
                    throw APIError(
                        .unprocessableContent,
                        field: "Names",
                        "\"\(name)\" is not an IP address or a host name"
                    )
                }
                names.append(SubjectName(name))
            }
            let issued: (certificate: Certificate, certificatePEM: String, trustPEM: String)
            do {
                issued = try authority.issueTarget(alias: enrolment.Alias, csrPEM: enrolment.CSR, names: names)
            } catch {
                throw APIError(.unprocessableContent, field: "CSR", "\(error)")
            }
            // The token is used up before the certificate is given: of two requests with one
            // token, one gets it.
            guard let token = context.token else { throw APIError.unauthorized }
            let consumed: Bool
            do throws(FabricService.ChangeError) {
                consumed = try await service.deleteToken(id: token.id)
            } catch {
                throw APIError(error)
            }
            guard consumed else {
                var error = APIError.unauthorized
                error.message = "the join token \(token.id) was used already"
                throw error
            }
            // The target's own credential, recorded before it is given: from now on dem uses it
            // with this target (the in-band channel, its hosts' sealed keys), not fabric.key.
            var targetCredential: String? = nil
            if let credentials = monitor?.credentials {
                do {
                    targetCredential = try credentials.enrol(enrolment.Alias)
                } catch {
                    throw APIError(.internalServerError, "cannot record the enrolment: \(error)")
                }
            }
            context.logger.notice(
                "target enrolled",
                metadata: [
                    "target": "\(enrolment.Alias)", "join-token": "\(token.id) (\(token.name))",
                    "names": "\(names.map(\.description).joined(separator: ", "))",
                    "expires": "\(issued.certificate.notValidAfter)",
                ]
            )
            return try APIResponse.json(
                EnrolmentAnswer(
                    Alias: enrolment.Alias,
                    Certificate: issued.certificatePEM,
                    CA: issued.trustPEM,
                    Expires: issued.certificate.notValidAfter,
                    FabricKey: targetCredential
                ),
                status: .created
            )
        }
        // dem-em announces itself: the target is created (or updated) as OutOfBandMgmt with the
        // address and inventory it sends. Authenticated with its certificate (enrolled) or the
        // fabric credential.
        router.post("/dem/join") { request, context in
            let body = try await APIBody.read(request, context: context)
            guard let body else { throw APIError(.badRequest, "the body must be a join request") }
            let join = try body.decode(EndpointJoin.self)
            guard join.interface.address?.isEmpty == false else {
                throw APIError(.unprocessableContent, field: "Interface.ADDRESS", "ADDRESS is required")
            }
            // An enrolled dem-em's certificate is for its own target only.
            let enrolled = context.peer?.role == .target
            if let peer = context.peer, enrolled, peer.name != join.alias {
                throw APIError(
                    .forbidden,
                    field: "Alias",
                    "this certificate is target \"\(peer.name)\"'s: it cannot join as \"\(join.alias)\""
                )
            }
            let created = try await change(.updated, "/target/\(join.alias)") { fabric throws(ModelError) -> Bool in
                let interface = ManagementInterface(
                    family: join.interface.family
                        ?? (IPAddressText.isIPv6(join.interface.address ?? "") ? "ipv6" : "ipv4"),
                    address: join.interface.address,
                    port: join.interface.port ?? DEMCore.endpointManagerPort,
                    tls: enrolled ? true : nil
                )
                let created: Bool
                if (try? fabric.target(join.alias)) == nil {
                    try fabric.addTarget(
                        FabricTarget(alias: join.alias, managementMode: .outOfBand, interface: interface)
                    )
                    created = true
                } else {
                    try fabric.updateTarget(join.alias, .init(managementMode: .outOfBand, interface: interface))
                    created = false
                }
                try fabric.setReportedInventory(
                    target: join.alias,
                    devices: join.inventory.devices,
                    interfaces: join.inventory.interfaces
                )
                return created
            }
            context.logger.notice(
                "dem-em joined",
                metadata: [
                    "target": "\(join.alias)", "address": "\(join.interface.address ?? "-")", "created": "\(created)",
                ]
            )
            monitor?.joined(join.alias)
            return try APIResponse.json(
                try read { fabric throws(ModelError) in try fabric.target(join.alias) },
                status: created ? .created : .ok,
                location: "/target/\(join.alias)"
            )
        }
        router.get("/dem/config") { _, _ in
            try readJSON("configuration") { fabric in fabric }
        }
        router.put("/dem/config") { request, context in
            guard let body = try await APIBody.read(request, context: context)
            else {
                throw APIError(.badRequest, "the body must be a configuration {\"Targets\":…,\"Hosts\":…,\"Groups\":…}")
            }
            let imported = try body.decode(Fabric.self)
            let replace = try request.flag("replace")
            let empty = try request.flag("empty")
            // Checked against the model in the same change, so nothing slips in between.
            let removed = try await change(.updated, "/dem/config") { fabric throws(ModelError) in
                let removed = try FabricReplacement.check(
                    old: fabric,
                    new: imported,
                    replace: replace,
                    empty: empty,
                    how: "?replace=1",
                    howEmpty: "?replace=1&empty=1"
                )
                fabric = imported
                return removed
            }
            if !removed.isEmpty {
                context.logger.notice("configuration replaced", metadata: ["removed": "\(removed.summary)"])
            }
            return try APIResponse.json(ConfigurationAnswer(configuration: imported, removed: removed))
        }
        router.get("/dem/audit") { request, _ in
            let limitText = request.uri.queryParameters.get("limit") ?? "100"
            guard let limit = Int(limitText), (1...100_000).contains(limit) else {
                throw APIError(.badRequest, field: "limit", "limit must be 1...100000, not \"\(limitText)\"")
            }
            guard let audit else { return try APIResponse.json(["Records": [AuditRecord]()]) }
            let records: [AuditRecord]
            do {
                records = try audit.tail(limit: limit)
            } catch {
                throw APIError(.internalServerError, "cannot read the audit log \(audit.path): \(error)")
            }
            return try APIResponse.json(["Records": records])
        }
        router.get("/dem/tokens") { _, _ in
            try APIResponse.json(["Tokens": service.tokens.map { TokenView($0) }])
        }
        router.post("/dem/tokens") { request, context in
            guard let body = try await APIBody.read(request, context: context) else {
                throw APIError(.badRequest, field: "Name", "Name is required")
            }
            let tokenRequest = try body.decode(TokenRequest.self)
            let roleText = tokenRequest.Role ?? "read"
            guard let role = APIToken.Role(rawValue: roleText) else {
                throw APIError(
                    .unprocessableContent,
                    field: "Role",
                    "must be \"admin\", \"read\" or \"join\", not \"\(roleText)\""
                )
            }
            // A join token expires within the hour unless told otherwise; the others do not.
            let lifetime = tokenRequest.ExpiresIn ?? (role == .join ? 3600 : nil)
            if let lifetime, !(60...604_800).contains(lifetime) {
                throw APIError(
                    .unprocessableContent,
                    field: "ExpiresIn",
                    "must be 60 to 604800 seconds (a week), not \(lifetime)"
                )
            }
            let made: (token: APIToken, secret: String)
            do throws(FabricService.ChangeError) {
                made = try await service.createToken(
                    name: tokenRequest.Name,
                    role: role,
                    expires: lifetime.map { Date().addingTimeInterval(TimeInterval($0)) }
                )
            } catch {
                throw APIError(error)
            }
            var view = TokenView(made.token, secret: made.secret)
            if role == .join { view.CAHash = authority?.servingFingerprint }
            return try APIResponse.json(
                view,
                status: .created,
                location: Self.path("dem", "tokens", made.token.id)
            )
        }
        router.delete("/dem/tokens/:id") { _, context in
            let id = try context.parameters.decoded("id")
            if id == context.token?.id {
                throw APIError(.conflict, field: "ID", "a token cannot revoke itself; use another admin token")
            }
            let existed: Bool
            do throws(FabricService.ChangeError) {
                existed = try await service.deleteToken(id: id)
            } catch {
                throw APIError(error)
            }
            guard existed else { throw APIError(.notFound, field: "ID", "token \"\(id)\" does not exist") }
            return APIResponse.noContent
        }
    }
}

/// dem's version, as `/dem` and `--version` report it.
public enum DEMVersion {
    public static let string = "0.3.0"
}
