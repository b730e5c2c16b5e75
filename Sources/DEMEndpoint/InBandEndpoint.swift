import DEMCore
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// Where and how dem-em serves its in-band management channel.
public struct InBandOptions: Sendable {
    /// The address to listen at (nil: no in-band channel).
    public var address: String?
    /// NVMe/TCP, or NVMe/RDMA (the `RDMA` trait; an RDMA device must have ``address``).
    public var transport: NVMeTransport = .tcp
    /// TRSVCID.
    public var port: Int = DEMCore.endpointInBandPort
    /// The management NQN (default ``InBandManagement/managementNQN(alias:)`` of the alias).
    public var nqn: String?
    /// Host NQNs that may connect; empty: any host that answers the challenge.
    public var allowedHosts: [String] = []

    public init() {}
}

/// dem-em's side of the in-band management channel (``InBandManagement``, `docs/inband.md`):
/// each authenticated request runs through the very router of the REST API, so the channel
/// offers exactly the same operations, bodies and errors.
public final class InBandEndpoint: ManagementControllerService {
    private let responder: RouterResponder<EndpointRequestContext>
    /// Two-way DH-HMAC-CHAP with keys derived from the fabric credential.
    private let policy: DHCHAPPolicy
    private let allowed: Set<String>
    private let logger: Logger
    private let controllerIdentifiers = Mutex<UInt16>(0)

    public init(routes: EndpointRoutes, credential: String, allowedHosts: [String], logger: Logger) {
        self.responder = routes.router().buildResponder()
        self.policy = InBandManagement.policy(credential: credential)
        self.allowed = Set(allowedHosts)
        self.logger = logger
    }

    public func hostAllowed(_ hostNQN: String) -> Bool {
        let allowed = self.allowed.isEmpty || self.allowed.contains(hostNQN)
        if !allowed {
            logger.warning("in-band connection refused: host NQN not allowed", metadata: ["hostnqn": "\(hostNQN)"])
        }
        return allowed
    }

    /// Every host proves it holds the fabric credential with two-way DH-HMAC-CHAP.
    public func authentication(for host: DiscoveryHostContext) -> HostAuthentication {
        .required(policy)
    }

    public func authenticationFailed(_ host: DiscoveryHostContext, reason: String) {
        logger.warning(
            "in-band connection refused: DH-HMAC-CHAP failed (is fabric.key the same as dem's?)",
            metadata: ["hostnqn": "\(host.hostNQN)", "reason": "\(reason)"]
        )
    }

    public func allocateControllerIdentifier() -> UInt16 {
        controllerIdentifiers.withLock { next in
            next = next >= 0xFFEF ? 1 : next + 1
            return next
        }
    }

    public func perform(_ message: ByteBuffer, host: DiscoveryHostContext) async -> ByteBuffer {
        let request: InBandRequest
        do {
            request = try InBandRequest(decoding: message)
        } catch {
            return Self.errorResponse(400, "in-band request: \(error)")
        }
        var logger = self.logger
        logger[metadataKey: "hostnqn"] = "\(host.hostNQN)"
        let method: HTTPRequest.Method
        switch request.method {
        case .get: method = .get
        case .put: method = .put
        case .post: method = .post
        case .delete: method = .delete
        }
        var fields = HTTPFields()
        if request.body.readableBytes > 0 { fields[.contentType] = "application/json" }
        fields[.contentLength] = "\(request.body.readableBytes)"
        let head = HTTPRequest(method: method, scheme: nil, authority: nil, path: request.path, headerFields: fields)
        do {
            let response = try await responder.respond(
                to: Request(head: head, body: RequestBody(buffer: request.body)),
                context: EndpointRequestContext(inBandLogger: logger)
            )
            let collected = Collected()
            try await response.body.write(Collector(into: collected))
            let body = collected.buffer.withLock { $0 }
            logger.debug(
                "in-band request",
                metadata: ["request": "\(request.method.name) \(request.path)", "status": "\(response.status.code)"]
            )
            return InBandResponse(status: response.status.code, body: body).encoded()
        } catch {
            return Self.errorResponse(500, "\(error)")
        }
    }

    private static func errorResponse(_ status: Int, _ message: String) -> ByteBuffer {
        let body = (try? JSONSerialization.data(withJSONObject: ["error": status, "message": message])) ?? Data()
        return InBandResponse(status: status, body: ByteBuffer(bytes: body)).encoded()
    }

    /// A response body, as collected.
    private final class Collected: Sendable {
        let buffer = Mutex(ByteBuffer())
    }

    /// Collects a response body.
    private struct Collector: ResponseBodyWriter {
        let into: Collected
        mutating func write(_ part: ByteBuffer) async throws {
            into.buffer.withLock { buffer in
                var part = part
                buffer.writeBuffer(&part)
            }
        }
        consuming func finish(_ trailingHeaders: HTTPFields?) async throws {}
    }
}
