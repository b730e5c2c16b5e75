import DEMCore
import Foundation
import Hummingbird

/// A REST error: a status code and a JSON body naming the field at fault,
/// `{"status":404,"error":"Not Found","field":"Alias","message":"…"}`.
///
/// Every error the API answers with goes through here, so status codes are decided in one place:
/// a malformed body is 400, no or bad credentials 401, a read-only token writing 403, a resource
/// that does not exist 404, one that exists already 409, a body too large 413, a value the
/// model refuses 422, a store that cannot record the change 503, a target that answers wrongly 502 or not in time
/// 504.
public struct APIError: HTTPResponseError, Sendable {
    public var status: HTTPResponse.Status
    public var field: String?
    public var message: String
    public var headers: HTTPFields = [:]

    public init(_ status: HTTPResponse.Status, field: String? = nil, _ message: String) {
        self.status = status
        self.field = field
        self.message = message
    }

    /// The error of a change the model refused.
    public init(_ error: ModelError) {
        switch error.kind {
        case .invalid: self.init(.unprocessableContent, field: error.field, error.message)
        case .notFound: self.init(.notFound, field: error.field, error.message)
        case .conflict: self.init(.conflict, field: error.field, error.message)
        }
    }

    /// No or a wrong bearer token.
    public static func unauthorized(realm: String, hint: String) -> APIError {
        var error = APIError(.unauthorized, "no valid bearer token: send \"Authorization: Bearer <token>\" (\(hint))")
        error.headers[.wwwAuthenticate] = "Bearer realm=\"\(realm)\""
        return error
    }

    public static let forbidden = APIError(.forbidden, "this token is read-only")

    struct Body: Encodable {
        var status: Int
        var error: String
        var field: String?
        var message: String
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers = self.headers
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: try encodedBody()))
    }

    /// The JSON body every API error has: `{"error","field","message","status"}`.
    public func encodedBody() throws -> ByteBuffer {
        let body = Body(status: status.code, error: status.reasonPhrase, field: field, message: message)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return ByteBuffer(bytes: try encoder.encode(body))
    }
}

/// Turns every error a handler or Hummingbird throws into an ``APIError`` response, so that
/// every error body has the same shape.
public struct APIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    public init() {}

    public func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return try error.response(from: request, context: context)
        } catch let error as HTTPResponseError {
            let message: String
            switch error.status {
            case .notFound: message = "no such path: \(request.method.rawValue) \(request.uri.path)"
            case .contentTooLarge: message = "the request body is larger than \(APIBody.maximumSize) bytes"
            default: message = "\(error)"
            }
            return try APIError(error.status, message).response(from: request, context: context)
        } catch {
            context.logger.error("request failed", metadata: ["error": "\(error)"])
            return try APIError(.internalServerError, "\(error)").response(from: request, context: context)
        }
    }
}
