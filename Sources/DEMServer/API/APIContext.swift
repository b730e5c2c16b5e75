import DEMCore
import DEMHTTP
import Foundation
import HTTPTypes
import Hummingbird
import Prometheus
import Synchronization

/// A REST request's context: Hummingbird's, plus the client's address and the token that
/// authenticated it.
public struct APIRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The caller's token (set by the authentication middleware).
    public var token: APIToken?
    /// The client's address (`ip:port`), for the audit trail.
    public var source: String
    /// Who the client's TLS certificate names, when it presented one of the fabric CA (the
    /// server verified it in the handshake): an enrolled target's dem-em.
    public var peer: FabricIdentity?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        token = nil
        if case .string(let text)? = source.logger[metadataKey: "tls.peer"] {
            peer = FabricIdentity(text)
        } else {
            peer = nil
        }
        let remote = source.channel.remoteAddress
        self.source =
            remote.map { address in
                guard let ip = address.ipAddress, let port = address.port else { return "\(address)" }
                return ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
            } ?? "-"
    }

    public var maxUploadSize: Int { APIBody.maximumSize }
}

/// Bearer-token authentication on every path but `/health` and the console's page, style sheet
/// and script (and CORS preflights): 401 without a
/// valid token, 403 when a read-only token asks for anything but GET or HEAD, or for the tokens
/// themselves.
///
/// `POST /dem/join` takes an enrolled dem-em's certificate of the fabric CA (its TLS client
/// certificate; the route checks it names the target that joins), or the fabric credential, and
/// nothing else. A join token (role `join`) is good for `POST /dem/enrol` alone, which takes
/// nothing else; a token past its expiry is refused like an unknown one.
///
/// Every request that may change something (any method but GET, HEAD and OPTIONS), and every
/// refusal of a credential, goes to the audit trail with who asked, from where, and the answer.
struct AuthenticationMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext
    let service: FabricService
    let fabricCredential: String?
    let audit: AuditLog?

    func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        if request.uri.path == "/health" || request.method == .options
            || (request.method == .get && ConsoleAssets.isAsset(request.uri.path))
        {
            return try await next(request, context)
        }
        let changing = request.method != .get && request.method != .head
        var actor = "-"
        do {
            var response = try await authenticated(request, context: context, actor: &actor, next: next)
            // What the change named: where it is, or what a route says of it for the trail only.
            let detail = response.headers[.location] ?? response.headers[.auditDetail]
            response.headers[.auditDetail] = nil
            if changing {
                record(request, context: context, actor: actor, status: response.status.code, detail: detail)
            }
            return response
        } catch {
            let status: Int
            var detail: String?
            if let error = error as? APIError {
                status = error.status.code
                detail = error.message
            } else if let error = error as? HTTPResponseError {
                status = error.status.code
            } else {
                status = 500
            }
            if changing || status == 401 || status == 403 {
                record(request, context: context, actor: actor, status: status, detail: detail)
            }
            throw error
        }
    }

    private func authenticated(
        _ request: Request,
        context: Context,
        actor: inout String,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let offered: String? = request.headers[.authorization].flatMap { header in
            let bytes = header.utf8
            guard bytes.count > 7, bytes.prefix(7).map({ $0 | 0x20 }).elementsEqual("bearer ".utf8) else { return nil }
            let blank: (UInt8) -> Bool = { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }
            let token = bytes.dropFirst(7).drop(while: blank).reversed().drop(while: blank).reversed()
            return String(decoding: token, as: UTF8.self)
        }
        if request.uri.path == "/dem/join" {
            if let peer = context.peer, peer.role == .target {
                actor = "certificate \(peer)"
                return try await next(request, context)
            }
            guard let offered, let fabricCredential, FabricCredential.matches(offered, fabricCredential) else {
                throw APIError.unauthorized(
                    realm: "dem-fabric",
                    hint: "dem-em joins with the fabric credential, the fabric.key file in dem's data directory"
                )
            }
            actor = "fabric credential"
            return try await next(request, context)
        }
        guard let offered, let token = service.token(secret: offered) else {
            throw APIError.unauthorized
        }
        actor = "\(token.name) (\(token.id))"
        if let expires = token.expires, expires <= Date() {
            var error = APIError.unauthorized
            error.message = "the token \(token.id) (\(token.name)) expired at \(expires.formatted(.iso8601))"
            throw error
        }
        let enrolling = request.uri.path == "/dem/enrol"
        if enrolling != (token.role == .join) {
            throw APIError(
                .forbidden,
                enrolling
                    ? "enrolment takes a join token (dem-cli add join-token), not token \(token.id)"
                    : "token \(token.id) is a join token: it only enrols a target (POST /dem/enrol)"
            )
        }
        if token.role == .read {
            let reading = request.method == .get || request.method == .head
            // Secrets are for admin tokens only: the tokens, and hosts' DH-HMAC-CHAP keys.
            if !reading || request.uri.path.hasPrefix("/dem/tokens") || request.uri.path.hasSuffix("/dhchap") {
                throw APIError.forbidden
            }
        }
        var context = context
        context.token = token
        return try await next(request, context)
    }

    private func record(_ request: Request, context: Context, actor: String, status: Int, detail: String?) {
        let record = AuditRecord(
            actor: actor,
            source: context.source,
            method: request.method.rawValue,
            path: request.uri.path,
            status: status,
            detail: detail
        )
        if let audit, !audit.append(record) {
            context.logger.error("cannot append to the audit log", metadata: ["path": "\(audit.path)"])
        }
        service.publish(.audited, path: request.uri.path, audit: record)
    }
}

/// dem's Prometheus metrics: REST calls (count and latency by route), fabric changes, and the
/// discovery controller's connections, log page reads and change notices.
public final class DEMMetrics: Sendable {
    /// The registry `/metrics` emits.
    public let registry = PrometheusCollectorRegistry()
    static let latencyBuckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2.5),
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5),
    ]

    /// The ports' connection gates, whose counts `/metrics` shows.
    let gates: [ConnectionGate]

    public init(gates: [ConnectionGate] = []) {
        self.gates = gates
    }

    /// A label value with `\`, `"` and newlines escaped, as the exposition format wants.
    static func escape(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }

    /// A REST call's series: its counter by method, route and status, its histogram by method
    /// and route.
    private struct CallKey: Hashable {
        var method: String
        var route: String
        var status: Int
    }
    private let callSeries = Mutex<[CallKey: (calls: Counter, duration: DurationHistogram)]>([:])

    /// Records one REST call.
    func apiCall(method: String, route: String, status: Int, duration: Duration) {
        let key = CallKey(method: method, route: route, status: status)
        // The registry's series are looked up once per kind of call, not on every call.
        let series =
            callSeries.withLock { $0[key] }
            ?? {
                let made = (
                    calls: registry.makeCounter(
                        descriptor: .init(
                            namespace: "dem",
                            metricName: "api_requests",
                            unitName: "total",
                            helpText: "REST API calls"
                        ),
                        labels: [("method", method), ("route", route), ("status", String(status))]
                    ),
                    duration: registry.makeDurationHistogram(
                        descriptor: .init(
                            namespace: "dem",
                            metricName: "api_request_duration",
                            unitName: "seconds",
                            helpText: "REST API call latency"
                        ),
                        labels: [("method", method), ("route", route)],
                        buckets: Self.latencyBuckets
                    )
                )
                callSeries.withLock { $0[key] = made }
                return made
            }()
        series.calls.increment()
        series.duration.record(duration)
    }

    /// Records one store commit.
    func storeCommit(duration: Duration) {
        registry.makeDurationHistogram(
            descriptor: .init(
                namespace: "dem",
                metricName: "store_commit_duration",
                unitName: "seconds",
                helpText: "Durable commits of fabric changes"
            ),
            buckets: Self.latencyBuckets
        ).record(duration)
    }

    /// The exposition text, with the discovery controller's figures read now from `catalog`.
    func render(catalog: DiscoveryCatalog, service: FabricService, targets: [TargetStatus]) -> String {
        var text = registry.emitToString()
        func metric(_ name: String, _ type: String, _ help: String, _ value: Int) {
            text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n\(name) \(value)\n"
        }
        metric(
            "dem_discovery_controllers",
            "gauge",
            "Discovery controllers (connected hosts) now",
            catalog.registeredControllerCount
        )
        metric(
            "dem_discovery_log_page_reads_total",
            "counter",
            "Get Log Page commands for the discovery log answered",
            catalog.logPageReadCount.load(ordering: .relaxed)
        )
        metric(
            "dem_discovery_change_notices_total",
            "counter",
            "Discovery log change notices (AER completions) sent",
            catalog.changeNoticeCount.load(ordering: .relaxed)
        )
        metric("dem_discovery_generation", "gauge", "The discovery catalog's generation", Int(catalog.generation))
        let fabric = service.fabric
        metric("dem_fabric_targets", "gauge", "Targets in the model", fabric.targets.count)
        metric("dem_fabric_hosts", "gauge", "Hosts in the model", fabric.hosts.count)
        metric(
            "dem_fabric_subsystems",
            "gauge",
            "Subsystems in the model",
            fabric.targets.reduce(0) { $0 + $1.subsystems.count }
        )
        metric("dem_event_subscribers", "gauge", "Clients of /events now", service.subscriberCount)
        // One series per target and state (1 for its state now), and the count by state.
        text +=
            "# HELP dem_target_state The state of each target (1 for its state now)\n# TYPE dem_target_state gauge\n"
        for target in targets {
            for state in TargetStatus.State.allCases {
                text +=
                    "dem_target_state{target=\"\(Self.escape(target.alias))\",state=\"\(state.rawValue)\"} \(target.state == state ? 1 : 0)\n"
            }
        }
        text += "# HELP dem_targets Targets by state\n# TYPE dem_targets gauge\n"
        for state in TargetStatus.State.allCases {
            text += "dem_targets{state=\"\(state.rawValue)\"} \(targets.filter { $0.state == state }.count)\n"
        }
        // Connections by port: open now, and since the start accepted, refused (a limit) and
        // closed for stalling (a timeout).
        let connectionSeries: [(String, String, String, KeyPath<ConnectionGate.Counts, Int>)] = [
            ("dem_connections_open", "gauge", "Connections open now, by port", \.open),
            ("dem_connections_accepted_total", "counter", "Connections accepted, by port", \.accepted),
            ("dem_connections_refused_total", "counter", "Connections refused at a limit, by port", \.refused),
            (
                "dem_connections_timed_out_total", "counter",
                "Connections closed because the peer stalled (setup, a PDU, an HTTP request, keep-alive), by port",
                \.timedOut
            ),
        ]
        for (name, type, help, field) in connectionSeries {
            text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for gate in gates {
                text += "\(name){port=\"\(Self.escape(gate.name))\"} \(gate.counts[keyPath: field])\n"
            }
        }
        text += "# HELP dem_connections_limit Connections each port takes (total)\n# TYPE dem_connections_limit gauge\n"
        for gate in gates { text += "dem_connections_limit{port=\"\(Self.escape(gate.name))\"} \(gate.limits.total)\n" }
        metric("dem_descriptor_limit", "gauge", "The process's open-file limit (soft)", DescriptorLimit.current().soft)
        text += "# HELP dem_target_entries_served Discovery log entries of each target served to hosts\n"
        text += "# TYPE dem_target_entries_served gauge\n"
        for target in targets {
            text += "dem_target_entries_served{target=\"\(Self.escape(target.alias))\"} \(target.serving)\n"
        }
        return text
    }
}

/// Counts and times every REST call, by method, route and status.
struct MetricsMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext
    let metrics: DEMMetrics

    func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let start = ContinuousClock.now
        let response = try await next(request, context)
        let route = context.endpointPath ?? "unmatched"
        // A method no route takes is counted as "other": a client cannot add series at will.
        let method: String
        switch request.method {
        case .get, .head, .put, .post, .patch, .delete, .options: method = request.method.rawValue
        default: method = "other"
        }
        metrics.apiCall(
            method: method,
            route: route,
            status: response.status.code,
            duration: ContinuousClock.now - start
        )
        return response
    }
}

extension APIError {
    /// The error of a change the service refused.
    public init(_ error: FabricService.ChangeError) {
        switch error {
        case .model(let error): self.init(error)
        case .store(let message):
            self.init(.serviceUnavailable, "the store could not record the change; nothing changed: \(message)")
        }
    }

    static let unauthorized = APIError.unauthorized(
        realm: "dem",
        hint: "the admin token is in dem's data directory, admin.token"
    )
}

extension HTTPField.Name {
    /// What a change's route says of it for the audit trail (never sent to the client).
    static let auditDetail = HTTPField.Name("DEM-Audit-Detail")!
}

extension Response {
    /// This response, with `detail` recorded in the audit trail for its request.
    func auditing(_ detail: String) -> Response {
        var response = self
        response.headers[.auditDetail] = detail
        return response
    }
}
