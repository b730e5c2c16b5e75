import AsyncHTTPClient
import DEMCore
import DEMHTTP
import Foundation
import NIOCore
import NIOHTTP1

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

/// dem's side of dem-em's REST API: the calls dem makes to one target.
public struct EndpointClient: Sendable {
    /// The base URL, such as `http://10.0.0.5:22334`.
    public var baseURL: String
    let credential: String
    let http: HTTPClient
    let timeout: TimeAmount

    public init(baseURL: String, credential: String, http: HTTPClient, timeout: TimeAmount = .seconds(10)) {
        self.baseURL = baseURL
        self.credential = credential
        self.http = http
        self.timeout = timeout
    }

    /// The URL of a target's out-of-band interface (`FAMILY`/`ADDRESS`/`PORT`), or nil.
    public static func baseURL(of interface: ManagementInterface?) -> String? {
        guard let interface, let address = interface.address, !address.isEmpty else { return nil }
        let host = address.contains(":") ? "[\(address)]" : address
        return "http://\(host):\(interface.port ?? DEMCore.endpointManagerPort)"
    }

    /// Replaces the target's desired state and returns what it applied.
    public func apply(_ configuration: EndpointConfiguration) async throws(EndpointCallError) -> EndpointStatus {
        try await call(.PUT, "/config", body: configuration)
    }

    /// The target's status (it re-reads configfs).
    public func status() async throws(EndpointCallError) -> EndpointStatus {
        try await call(.GET, "/status")
    }

    /// What the target has.
    public func inventory() async throws(EndpointCallError) -> EndpointInventory {
        try await call(.GET, "/inventory")
    }

    private struct Nothing: Encodable {}

    private func call<Result: Decodable>(
        _ method: HTTPMethod,
        _ path: String,
        body: (some Encodable)? = Nothing?.none
    ) async throws(EndpointCallError) -> Result {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(credential)")
        request.headers.add(name: "Accept", value: "application/json")
        if let body {
            do {
                request.body = .bytes(ByteBuffer(bytes: try APIResponse.encoder().encode(body)))
            } catch {
                throw EndpointCallError(kind: .refused(status: 0), message: "cannot encode the request: \(error)")
            }
            request.headers.add(name: "Content-Type", value: "application/json")
        }
        let response: HTTPClientResponse
        let bytes: ByteBuffer
        do {
            response = try await http.execute(request, timeout: timeout)
            bytes = try await response.body.collect(upTo: 64 << 20)
        } catch let error as HTTPClientError
            where error == .deadlineExceeded || error == .readTimeout
            || error == .connectTimeout
        {
            throw EndpointCallError(kind: .timeout, message: "dem-em at \(baseURL) did not answer \(path) in time")
        } catch {
            throw EndpointCallError(kind: .unreachable, message: "dem-em at \(baseURL) is unreachable: \(error)")
        }
        let data = Data(bytes.readableBytesView)
        guard (200..<300).contains(Int(response.status.code)) else {
            let detail =
                (try? JSONDecoder().decode(ErrorBody.self, from: data)).map { body in
                    body.field.map { "\(body.message) (field \($0))" } ?? body.message
                } ?? String(decoding: data.prefix(200), as: UTF8.self)
            throw EndpointCallError(
                kind: .refused(status: Int(response.status.code)),
                message: "dem-em at \(baseURL) answered \(path) with \(response.status.code): \(detail)"
            )
        }
        do {
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .iso8601
            return try decoder.decode(Result.self, from: data)
        } catch {
            throw EndpointCallError(
                kind: .refused(status: Int(response.status.code)),
                message: "dem-em at \(baseURL) answered \(path) with a body dem cannot read: \(error)"
            )
        }
    }

    private struct ErrorBody: Decodable {
        var message: String
        var field: String?
    }
}
