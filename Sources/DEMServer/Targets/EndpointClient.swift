import AsyncHTTPClient
import DEMCore
import DEMHTTP
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL

/// Why a call to a target's dem-em failed.
public struct EndpointCallError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// No connection (refused, no route, reset).
        case unreachable
        /// No answer in time.
        case timeout
        /// dem-em answered with an error status or a body dem cannot read.
        case refused(status: Int)
    }

    public var kind: Kind
    public var message: String
    public var description: String { message }

    /// 504 for a timeout, 502 otherwise: the target, not dem, failed.
    public var apiError: APIError {
        APIError(kind == .timeout ? .gatewayTimeout : .badGateway, field: "Interface", message)
    }
}

/// dem's side of dem-em's REST API: the calls dem makes to one target, out-of-band over HTTP or
/// in-band over the storage fabric (``InBandEndpointSession``). Both carry the same requests and
/// bodies, and their answers are read by the same code.
public struct EndpointClient: Sendable {
    /// How requests reach dem-em.
    enum Channel: Sendable {
        /// With `tls`, dem's certificate authenticates it (no credential is sent).
        case http(baseURL: String, credential: String, client: HTTPClient, tls: TLSConfiguration?)
        case inBand(InBandEndpointSession)
    }

    let channel: Channel
    let timeout: TimeAmount

    /// Out-of-band, at `baseURL` such as `http://10.0.0.5:22334`, with the fabric credential; or
    /// at `https://…` with `tls` (dem's certificate, the fabric CA), to an enrolled dem-em.
    public init(
        baseURL: String,
        credential: String,
        http: HTTPClient,
        tls: TLSConfiguration? = nil,
        timeout: TimeAmount = .seconds(10)
    ) {
        self.channel = .http(baseURL: baseURL, credential: credential, client: http, tls: tls)
        self.timeout = timeout
    }

    /// In-band, over `session`.
    public init(inBand session: InBandEndpointSession, timeout: TimeAmount = .seconds(10)) {
        self.channel = .inBand(session)
        self.timeout = timeout
    }

    /// Where dem-em is, for messages.
    public var location: String {
        switch channel {
        case .http(let baseURL, _, _, _): baseURL
        case .inBand(let session): session.location
        }
    }

    /// The URL of a target's out-of-band interface (`FAMILY`/`ADDRESS`/`PORT`), or nil.
    public static func baseURL(of interface: ManagementInterface?) -> String? {
        guard let interface, let address = interface.address, !address.isEmpty else { return nil }
        let host = address.contains(":") ? "[\(address)]" : address
        return "\(interface.tls == true ? "https" : "http")://\(host):\(interface.port ?? DEMCore.endpointManagerPort)"
    }

    /// Replaces the target's desired state and returns what it applied. dem-em records `owner`
    /// at the first push and refuses any other owner's.
    public func apply(
        _ configuration: EndpointConfiguration,
        owner: EndpointOwner
    ) async throws(EndpointCallError) -> EndpointStatus {
        try await call(.put, "/config?" + owner.query, body: configuration)
    }

    /// The target's status (it re-reads configfs).
    public func status() async throws(EndpointCallError) -> EndpointStatus {
        try await call(.get, "/status")
    }

    /// What the target has.
    public func inventory() async throws(EndpointCallError) -> EndpointInventory {
        try await call(.get, "/inventory")
    }

    /// Asks an enrolled dem-em for a certificate signing request of a new key.
    public func certificateRequest() async throws(EndpointCallError) -> EndpointCertificateRequest {
        try await call(.post, "/certificate/request")
    }

    /// Gives an enrolled dem-em its new certificate and the CAs to trust; it serves them at once.
    public func installCertificate(
        _ install: EndpointCertificateInstall
    ) async throws(EndpointCallError) -> EndpointCertificate {
        try await call(.put, "/certificate", body: install)
    }

    private struct Nothing: Encodable {}

    private func call<Result: Decodable>(
        _ method: InBandRequest.Method,
        _ path: String,
        body: (some Encodable)? = Nothing?.none
    ) async throws(EndpointCallError) -> Result {
        var encoded: ByteBuffer? = nil
        if let body {
            do {
                encoded = ByteBuffer(bytes: try APIResponse.encoder().encode(body))
            } catch {
                throw EndpointCallError(kind: .refused(status: 0), message: "cannot encode the request: \(error)")
            }
        }
        let (status, bytes) = try await exchange(method, path, body: encoded)
        let data = Data(bytes.readableBytesView)
        guard (200..<300).contains(status) else {
            let detail =
                (try? JSONDecoder().decode(ErrorBody.self, from: data)).map { body in
                    body.field.map { "\(body.message) (field \($0))" } ?? body.message
                } ?? String(decoding: data.prefix(200), as: UTF8.self)
            throw EndpointCallError(
                kind: .refused(status: status),
                message: "dem-em at \(location) answered \(path) with \(status): \(detail)"
            )
        }
        do {
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .iso8601
            return try decoder.decode(Result.self, from: data)
        } catch {
            throw EndpointCallError(
                kind: .refused(status: status),
                message: "dem-em at \(location) answered \(path) with a body dem cannot read: \(error)"
            )
        }
    }

    /// One request and its answer's status and body, over the client's channel.
    private func exchange(
        _ method: InBandRequest.Method,
        _ path: String,
        body: ByteBuffer?
    ) async throws(EndpointCallError) -> (Int, ByteBuffer) {
        switch channel {
        case .inBand(let session):
            let response = try await session.perform(
                InBandRequest(method: method, path: path, body: body ?? ByteBuffer()),
                timeout: timeout
            )
            return (response.status, response.body)
        case .http(let baseURL, let credential, let http, let tls):
            var request = HTTPClientRequest(url: baseURL + path)
            request.method = HTTPMethod(rawValue: method.name)
            if let tls {
                request.tlsConfiguration = tls
            } else {
                request.headers.add(name: "Authorization", value: "Bearer \(credential)")
            }
            request.headers.add(name: "Accept", value: "application/json")
            if let body {
                request.body = .bytes(body)
                request.headers.add(name: "Content-Type", value: "application/json")
            }
            do {
                let response = try await http.execute(request, timeout: timeout)
                return (Int(response.status.code), try await response.body.collect(upTo: 64 << 20))
            } catch let error as HTTPClientError
                where error == .deadlineExceeded || error == .readTimeout
                || error == .connectTimeout
            {
                throw EndpointCallError(kind: .timeout, message: "dem-em at \(baseURL) did not answer \(path) in time")
            } catch {
                throw EndpointCallError(
                    kind: .unreachable,
                    message: "dem-em at \(baseURL) is unreachable: \(ConnectionFailure.describe(error))"
                )
            }
        }
    }

    private struct ErrorBody: Decodable {
        var message: String
        var field: String?
    }
}
