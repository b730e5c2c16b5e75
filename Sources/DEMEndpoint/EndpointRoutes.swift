import DEMCore
import DEMHTTP
import Foundation
import Hummingbird
import Logging

/// A request to dem-em's API.
public struct EndpointRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The request came over the in-band channel, whose host answered the credential's
    /// challenge when it connected.
    public var authenticatedInBand = false
    /// Who the client's TLS certificate names (verified against the fabric CA in the handshake).
    public var peer: FabricIdentity?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        if case .string(let text)? = source.logger[metadataKey: "tls.peer"] { peer = FabricIdentity(text) }
    }

    /// A request from the in-band channel.
    init(inBandLogger logger: Logger) {
        struct Source: RequestContextSource { var logger: Logger }
        coreContext = .init(source: Source(logger: logger))
        authenticatedInBand = true
    }

    public var maxUploadSize: Int { APIBody.maximumSize }
}

/// Every route but `/health` needs dem: over TLS, its certificate of the fabric CA (the server
/// required it in the handshake, with dem's role); in plain HTTP (a dem-em that has not
/// enrolled), the fabric credential as a bearer token; in band, the channel's authentication.
struct FabricCredentialMiddleware: RouterMiddleware {
    typealias Context = EndpointRequestContext
    /// nil: only dem's certificate (or the in-band channel) is taken.
    let credential: String?

    func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        if request.uri.path == "/health" || context.authenticatedInBand || context.peer?.role == .dem {
            return try await next(request, context)
        }
        guard let credential, let header = request.headers[.authorization], header.count > 7,
            header.prefix(7).lowercased() == "bearer ",
            FabricCredential.matches(header.dropFirst(7).trimmingCharacters(in: .whitespaces), credential)
        else {
            throw APIError.unauthorized(
                realm: "dem-em",
                hint: "dem-em takes the fabric credential, the fabric.key file dem creates in its data directory"
            )
        }
        return try await next(request, context)
    }
}

/// dem-em's REST API: nvme-dem's dem-em routes (`/nsdev`, `/interface`, `/portid/<p>`,
/// `/subsystem/<n>/…`, `/host/<h>`, `/config`), authenticated, with JSON errors naming the
/// field, plus the whole desired state at once (`PUT /config`, what dem uses), `/status`,
/// `/inventory`, `/reconcile` and nvmetcli's `config.json` (`/nvmetcli`).
public struct EndpointRoutes: Sendable {
    let service: EndpointService
    /// The fabric credential the API takes (nil: dem's certificate only).
    let credential: String?
    /// The ports' connection gates, whose counts `/metrics` shows.
    let gates: [ConnectionGate]
    /// The enrolled identity, which dem renews (nil: not enrolled).
    let credentials: EndpointCredentials?
    let shutdown: @Sendable () -> Void

    public init(
        service: EndpointService,
        credential: String?,
        credentials: EndpointCredentials? = nil,
        gates: [ConnectionGate] = [],
        shutdown: @escaping @Sendable () -> Void
    ) {
        self.credentials = credentials
        self.service = service
        self.credential = credential
        self.gates = gates
        self.shutdown = shutdown
    }

    public func router() -> Router<EndpointRequestContext> {
        let router = Router(context: EndpointRequestContext.self)
        router.add(middleware: APIErrorMiddleware())
        router.add(middleware: FabricCredentialMiddleware(credential: credential))
        addStateRoutes(router)
        addObjectRoutes(router)
        return router
    }

    /// Runs a change of the desired state, answering its refusal as an API error.
    func change(
        adopt: Bool = false,
        from owner: EndpointOwner? = nil,
        _ body: @escaping @Sendable (inout EndpointConfiguration) throws(ModelError) -> Void
    ) async throws -> Response {
        var status: EndpointStatus
        do throws(ModelError) {
            status = try await service.change(adopt: adopt, from: owner, body)
        } catch {
            throw APIError(error)
        }
        status.certificate = credentials?.status
        return try APIResponse.json(status)
    }

    /// The status, with the certificate when enrolled.
    func status() -> EndpointStatus {
        var status = service.status()
        status.certificate = credentials?.status
        return status
    }

    /// The owner a push names (`?target=ALIAS&dem=NQN`, what dem sends), or nil.
    static func owner(_ request: Request) throws -> EndpointOwner? {
        let target = request.uri.queryParameters["target"].map(String.init)
        let dem = request.uri.queryParameters["dem"].map(String.init)
        switch (target, dem) {
        case (nil, nil): return nil
        case (let target?, let dem?) where !target.isEmpty && !dem.isEmpty:
            return EndpointOwner(target: target, dem: dem)
        default:
            throw APIError(
                .badRequest,
                field: "target",
                "a push names both its target and its dem (?target=ALIAS&dem=NQN)"
            )
        }
    }

    // MARK: The state as a whole

    private func addStateRoutes(_ router: Router<EndpointRequestContext>) {
        router.get("/health") { _, _ in try APIResponse.json(["status": "ok"]) }
        router.get("/inventory") { _, _ in try APIResponse.json(service.inventory()) }
        router.get("/nsdev") { _, _ in try APIResponse.json(["NSDevices": service.inventory().devices]) }
        router.get("/interface") { _, _ in try APIResponse.json(["Interfaces": service.inventory().interfaces]) }
        router.get("/status") { _, _ in try APIResponse.json(status()) }
        // dem renews this dem-em's certificate: a request for a new key's, then the certificate.
        router.post("/certificate/request") { _, _ in
            guard let credentials else {
                throw APIError(.conflict, "this dem-em has not enrolled: it has no certificate to renew")
            }
            do {
                return try APIResponse.json(try credentials.request())
            } catch {
                throw APIError(.internalServerError, "cannot make a certificate request: \(error)")
            }
        }
        router.put("/certificate") { request, context in
            guard let credentials else {
                throw APIError(.conflict, "this dem-em has not enrolled: it has no certificate to renew")
            }
            guard let body = try await APIBody.read(request, context: context) else {
                throw APIError(.badRequest, field: "Certificate", "the body must hold Certificate and CA")
            }
            let install = try body.decode(EndpointCertificateInstall.self)
            do {
                return try APIResponse.json(try credentials.install(install))
            } catch let error as TLSSetupError {
                throw APIError(
                    .unprocessableContent,
                    field: error.description.hasPrefix("CA ") ? "CA" : "Certificate",
                    error.description
                )
            }
        }
        router.get("/config") { _, _ in try APIResponse.json(service.desired) }
        router.put("/config") { request, context in
            let body = try await APIBody.read(request, context: context)
            let configuration = try body?.decode(EndpointConfiguration.self) ?? EndpointConfiguration()
            return try await change(adopt: try request.flag("adopt"), from: try Self.owner(request)) {
                desired throws(ModelError) in
                desired = configuration
            }
        }
        router.get("/owner") { _, _ in
            guard let owner = service.owner else {
                throw APIError(.notFound, "no dem has configured this dem-em yet")
            }
            return try APIResponse.json(owner)
        }
        router.delete("/owner") { _, _ in
            guard let owner = await service.releaseOwner() else {
                throw APIError(.notFound, "no dem has configured this dem-em yet")
            }
            return try APIResponse.message(
                "released: this dem-em no longer belongs to target \"\(owner.target)\" (\(owner.dem))",
                status: .ok
            )
        }
        router.get("/metrics") { _, _ in
            Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4"],
                body: ResponseBody(
                    byteBuffer: ByteBuffer(string: EndpointMetrics.render(service.status(), gates: gates))
                )
            )
        }
        router.delete("/config") { request, _ in
            let status: EndpointStatus
            let all = try request.flag("all")
            do throws(ModelError) {
                status = try await service.reset(all: all)
            } catch {
                throw APIError(error)
            }
            return try APIResponse.json(status)
        }
        router.post("/reconcile") { request, _ in
            try APIResponse.json(await service.applyDesired(adopt: try request.flag("adopt")))
        }
        router.get("/nvmetcli") { _, _ in
            let data: Data
            do {
                data = try NvmetcliConfig.encode(try service.backend.actual())
            } catch {
                throw APIError(.internalServerError, "cannot read the kernel target: \(error)")
            }
            return Response(
                status: .ok,
                headers: [.contentType: "application/json"],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: data))
            )
        }
        router.put("/nvmetcli") { request, context in
            let buffer = try await request.body.collect(upTo: APIBody.maximumSize)
            let configuration: EndpointConfiguration
            do {
                configuration = try NvmetcliConfig.decode(Data(buffer.readableBytesView))
            } catch {
                throw APIError(.badRequest, "not an nvmetcli config.json: \(error)")
            }
            return try await change(adopt: try request.flag("adopt")) { desired throws(ModelError) in
                desired = configuration
            }
        }
        router.post("/shutdown") { _, context in
            context.logger.notice("shutdown requested through the REST API")
            shutdown()
            return try APIResponse.message("dem-em is shutting down", status: .accepted)
        }
    }

    // MARK: nvme-dem's object routes

    struct PortBody: Decodable {
        var port: FabricPort
        init(from decoder: any Decoder) throws { port = try FabricPort(from: decoder) }
    }

    private func addObjectRoutes(_ router: Router<EndpointRequestContext>) {
        router.post("/portid/:p") { request, context in
            let id = try context.parameters.integer("p", field: "PORTID")
            guard let body = try await APIBody.read(request, context: context) else {
                throw APIError(.badRequest, "the body must be a port")
            }
            let port = try body.decode(FabricPort.self, filling: "PORTID", with: .integer(id))
            guard port.portID == id else {
                throw APIError(.unprocessableContent, field: "PORTID", "the body's PORTID differs from the path's")
            }
            return try await change { desired throws(ModelError) in
                desired.ports.removeAll { $0.portID == id }
                desired.ports.append(port)
            }
        }
        router.delete("/portid/:p") { _, context in
            let id = try context.parameters.integer("p", field: "PORTID")
            return try await change { desired throws(ModelError) in
                guard desired.ports.contains(where: { $0.portID == id }) else {
                    throw .notFound("PORTID", "no port \(id)")
                }
                desired.ports.removeAll { $0.portID == id }
                for i in desired.subsystems.indices { desired.subsystems[i].ports.removeAll { $0 == id } }
            }
        }
        let addSubsystem: @Sendable (Request, EndpointRequestContext, String?) async throws -> Response = {
            request,
            context,
            pathNQN in
            let body = try await APIBody.read(request, context: context)
            struct Fields: RequestFields {
                var SUBNQN: String?
                var AllowAnyHost: JSONValue?
                var Serial: String?
                var Model: String?

                enum CodingKeys: String, CodingKey, CaseIterable { case SUBNQN, AllowAnyHost, Serial, Model }
                static let fieldNames = names(CodingKeys.self)
            }
            let fields = try body?.decode(Fields.self)
            guard let nqn = pathNQN ?? fields?.SUBNQN else {
                throw APIError(.badRequest, field: "SUBNQN", "SUBNQN is required")
            }
            let allowAny: Bool?
            switch fields?.AllowAnyHost {
            case .bool(let value)?: allowAny = value
            case .number(let text)?: allowAny = (Double(text) ?? 0) != 0
            case .string(let value)?: allowAny = value == "1" || value == "true"
            case nil, .null?: allowAny = nil
            default: throw APIError(.badRequest, field: "AllowAnyHost", "must be 0, 1, true or false")
            }
            return try await change { desired throws(ModelError) in
                if let index = desired.subsystems.firstIndex(where: { $0.nqn == nqn }) {
                    if let allowAny { desired.subsystems[index].allowAnyHost = allowAny }
                    if let serial = fields?.Serial { desired.subsystems[index].serial = serial }
                    if let model = fields?.Model { desired.subsystems[index].model = model }
                } else {
                    desired.subsystems.append(
                        EndpointSubsystem(
                            nqn: nqn,
                            allowAnyHost: allowAny ?? false,
                            serial: fields?.Serial,
                            model: fields?.Model
                        )
                    )
                }
            }
        }
        router.post("/subsystem") { request, context in try await addSubsystem(request, context, nil) }
        router.post("/subsystem/:n") { request, context in
            try await addSubsystem(request, context, try context.parameters.decoded("n"))
        }
        router.delete("/subsystem/:n") { _, context in
            let nqn = try context.parameters.decoded("n")
            return try await change { desired throws(ModelError) in
                guard desired.subsystems.contains(where: { $0.nqn == nqn }) else {
                    throw .notFound("SUBNQN", "no subsystem \(nqn)")
                }
                desired.subsystems.removeAll { $0.nqn == nqn }
            }
        }
        let addNamespace: @Sendable (Request, EndpointRequestContext, Int?) async throws -> Response = {
            request,
            context,
            pathNSID in
            let nqn = try context.parameters.decoded("n")
            guard let body = try await APIBody.read(request, context: context) else {
                throw APIError(.badRequest, "the body must be a namespace")
            }
            let namespace: FabricNamespace
            if let pathNSID {
                namespace = try body.decode(FabricNamespace.self, filling: "NSID", with: .integer(pathNSID))
            } else {
                namespace = try body.decode(FabricNamespace.self)
            }
            do throws(ModelError) {
                try FabricValidation.checkNamespace(namespace)
            } catch {
                throw APIError(error)
            }
            guard let path = namespace.resolvedDevicePath else {
                throw APIError(.unprocessableContent, field: "DevicePath", "a namespace needs a device")
            }
            let endpointNamespace = EndpointNamespace(
                namespaceID: namespace.namespaceID,
                devicePath: path,
                uuid: namespace.uuid,
                nguid: namespace.nguid
            )
            return try await change { desired throws(ModelError) in
                guard let index = desired.subsystems.firstIndex(where: { $0.nqn == nqn }) else {
                    throw .notFound("SUBNQN", "no subsystem \(nqn)")
                }
                desired.subsystems[index].namespaces.removeAll { $0.namespaceID == endpointNamespace.namespaceID }
                desired.subsystems[index].namespaces.append(endpointNamespace)
            }
        }
        router.post("/subsystem/:n/namespace") { request, context in try await addNamespace(request, context, nil) }
        router.post("/subsystem/:n/namespace/:nsid") { request, context in
            try await addNamespace(request, context, try context.parameters.integer("nsid", field: "NSID"))
        }
        router.delete("/subsystem/:n/namespace/:nsid") { _, context in
            let nqn = try context.parameters.decoded("n")
            let nsid = try context.parameters.integer("nsid", field: "NSID")
            return try await change { desired throws(ModelError) in
                guard let index = desired.subsystems.firstIndex(where: { $0.nqn == nqn }),
                    desired.subsystems[index].namespaces.contains(where: { $0.namespaceID == nsid })
                else { throw .notFound("NSID", "no namespace \(nsid) in \(nqn)") }
                desired.subsystems[index].namespaces.removeAll { $0.namespaceID == nsid }
            }
        }
        router.post("/host") { request, context in
            let hostNQN = try await Self.hostNQN(request, context)
            return try await change { desired throws(ModelError) in
                if !desired.hosts.contains(hostNQN) { desired.hosts.append(hostNQN) }
            }
        }
        router.delete("/host/:h") { _, context in
            let hostNQN = try context.parameters.decoded("h")
            return try await change { desired throws(ModelError) in
                guard desired.hosts.contains(hostNQN) else { throw .notFound("HOSTNQN", "no host \(hostNQN)") }
                desired.hosts.removeAll { $0 == hostNQN }
                for i in desired.subsystems.indices { desired.subsystems[i].hosts.removeAll { $0 == hostNQN } }
            }
        }
        router.post("/subsystem/:n/host") { request, context in
            let nqn = try context.parameters.decoded("n")
            let hostNQN = try await Self.hostNQN(request, context)
            return try await change { desired throws(ModelError) in
                guard let index = desired.subsystems.firstIndex(where: { $0.nqn == nqn }) else {
                    throw .notFound("SUBNQN", "no subsystem \(nqn)")
                }
                if !desired.hosts.contains(hostNQN) { desired.hosts.append(hostNQN) }
                if !desired.subsystems[index].hosts.contains(hostNQN) {
                    desired.subsystems[index].hosts.append(hostNQN)
                }
            }
        }
        router.delete("/subsystem/:n/host/:h") { _, context in
            let nqn = try context.parameters.decoded("n")
            let hostNQN = try context.parameters.decoded("h")
            return try await change { desired throws(ModelError) in
                guard let index = desired.subsystems.firstIndex(where: { $0.nqn == nqn }),
                    desired.subsystems[index].hosts.contains(hostNQN)
                else { throw .notFound("HOSTNQN", "\(hostNQN) is not on \(nqn)'s access list") }
                desired.subsystems[index].hosts.removeAll { $0 == hostNQN }
            }
        }
        router.post("/subsystem/:n/portid") { request, context in
            let nqn = try context.parameters.decoded("n")
            guard let body = try await APIBody.read(request, context: context) else {
                throw APIError(.badRequest, field: "PORTID", "PORTID is required")
            }
            struct Link: RequestFields {
                static let fieldNames = ["PORTID"]
                var port: Int
                init(from decoder: any Decoder) throws {
                    let c = try decoder.container(keyedBy: AnyKey.self)
                    port = try c.decodeLenientInt(forKey: AnyKey("PORTID"))
                }
            }
            let port = try body.decode(Link.self).port
            return try await change { desired throws(ModelError) in
                guard let index = desired.subsystems.firstIndex(where: { $0.nqn == nqn }) else {
                    throw .notFound("SUBNQN", "no subsystem \(nqn)")
                }
                if !desired.subsystems[index].ports.contains(port) { desired.subsystems[index].ports.append(port) }
            }
        }
        router.delete("/subsystem/:n/portid/:p") { _, context in
            let nqn = try context.parameters.decoded("n")
            let port = try context.parameters.integer("p", field: "PORTID")
            return try await change { desired throws(ModelError) in
                guard let index = desired.subsystems.firstIndex(where: { $0.nqn == nqn }),
                    desired.subsystems[index].ports.contains(port)
                else { throw .notFound("PORTID", "\(nqn) is not on port \(port)") }
                desired.subsystems[index].ports.removeAll { $0 == port }
            }
        }
    }

    static func hostNQN(_ request: Request, _ context: EndpointRequestContext) async throws -> String {
        guard let body = try await APIBody.read(request, context: context) else {
            throw APIError(.badRequest, field: "HOSTNQN", "HOSTNQN is required")
        }
        struct Host: RequestFields {
            var HOSTNQN: String
            enum CodingKeys: String, CodingKey, CaseIterable { case HOSTNQN }
            static let fieldNames = names(CodingKeys.self)
        }
        let nqn = try body.decode(Host.self).HOSTNQN
        guard !nqn.isEmpty, !nqn.contains("/") else {
            throw APIError(.unprocessableContent, field: "HOSTNQN", "HOSTNQN must be a non-empty NQN without '/'")
        }
        return nqn
    }
}

/// A coding key made from a string.
struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ string: String) { stringValue = string }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}
