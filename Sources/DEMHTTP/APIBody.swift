import DEMCore
import Foundation
import Hummingbird

/// A JSON request body: read whole (up to ``maximumSize``), its keys checked against the ones
/// the route knows, and decoded with errors that name the field.
public struct APIBody: Sendable {
    /// The largest body a route reads (1 MiB); a larger one is a 413.
    public static let maximumSize = 1 << 20

    public let data: Data
    public let keys: Set<String>

    /// The body of `request`, or nil when it is empty.
    /// - Parameter allowed: the keys the route accepts; any other is a 400 naming it.
    public static func read(
        _ request: Request,
        context: some RequestContext,
        allowed: Set<String>
    ) async throws -> APIBody? {
        let buffer = try await request.body.collect(upTo: maximumSize)
        guard buffer.readableBytes > 0 else { return nil }
        let data = Data(buffer.readableBytesView)
        if data.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) { return nil }
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
        } catch {
            throw APIError(
                .badRequest,
                "the body is not valid JSON (\(JSONDiagnostics.syntaxError(in: data) ?? "\(error)"))"
            )
        }
        guard let dictionary = object as? [String: Any] else {
            throw APIError(.badRequest, "the body must be a JSON object")
        }
        for key in dictionary.keys.sorted() where !allowed.contains(key) {
            throw APIError(
                .badRequest,
                field: key,
                "unknown field \"\(key)\"; this route accepts \(allowed.sorted().joined(separator: ", "))"
            )
        }
        return APIBody(data: data, keys: Set(dictionary.keys))
    }

    /// The body decoded as `type`.
    public func decode<T: Decodable>(_ type: T.Type) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: data)
        } catch let error as DecodingError {
            throw Self.apiError(error)
        } catch let error as ModelError {
            throw APIError(error)
        }
    }

    /// The body decoded as `type`, with `key` set to `value` when the body does not give it (a
    /// key the route has in its path, such as the alias of `POST /target/<t>`).
    public func decode<T: Decodable>(_ type: T.Type, filling key: String, with value: JSONAny) throws -> T {
        var object = try decode([String: JSONAny].self)
        if object[key] == nil { object[key] = value }
        return try JSONAny.decode(type, from: object)
    }

    public static func apiError(_ error: DecodingError) -> APIError {
        func path(_ keys: [any CodingKey]) -> String { JSONDiagnostics.path(keys) }
        switch error {
        case .keyNotFound(let key, let context):
            return APIError(.badRequest, field: path(context.codingPath + [key]), "\(key.stringValue) is required")
        case .typeMismatch(let type, let context):
            let detail =
                context.debugDescription.hasPrefix("Expected to decode") ? "expected \(type)" : context.debugDescription
            return APIError(.badRequest, field: path(context.codingPath), "wrong type: \(detail)")
        case .valueNotFound(_, let context):
            return APIError(.badRequest, field: path(context.codingPath), "must not be null")
        case .dataCorrupted(let context):
            return APIError(.badRequest, field: path(context.codingPath), context.debugDescription)
        @unknown default:
            return APIError(.badRequest, "\(error)")
        }
    }
}

/// JSON responses.
public enum APIResponse {
    public static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }

    public static func json(
        _ value: some Encodable,
        status: HTTPResponse.Status = .ok,
        location: String? = nil
    ) throws
        -> Response
    {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let location { headers[.location] = location }
        let data = try encoder().encode(value)
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    public static func object(_ value: [String: Any], status: HTTPResponse.Status = .ok) throws -> Response {
        let data = try JSONSerialization.data(withJSONObject: value, options: [.sortedKeys])
        return Response(
            status: status,
            headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: data))
        )
    }

    public static func message(_ text: String, status: HTTPResponse.Status = .ok) throws -> Response {
        try json(["message": text], status: status)
    }

    public static let noContent = Response(status: .noContent)
}

extension Parameters {
    /// A path parameter, percent-decoded.
    public func decoded(_ name: String) throws -> String {
        let raw = try require(name)
        guard let value = raw.removingPercentEncoding, !value.isEmpty else {
            throw APIError(.badRequest, field: name, "\"\(raw)\" is not a valid path segment")
        }
        return value
    }

    /// An integer path parameter.
    public func integer(_ name: String, field: String) throws -> Int {
        let text = try decoded(name)
        guard let value = Int(text) else { throw APIError(.badRequest, field: field, "\"\(text)\" is not an integer") }
        return value
    }
}

extension Request {
    /// Whether the query sets flag `name`: present with no value, or `1`, `true` or `yes`;
    /// absent, `0`, `false` or `no` is off.
    ///
    /// - Throws: a 400 naming the parameter for any other value (never a silent "off").
    public func flag(_ name: String) throws -> Bool {
        guard let value = uri.queryParameters[Substring(name)] else { return false }
        switch value.lowercased() {
        case "", "1", "true", "yes": return true
        case "0", "false", "no": return false
        default:
            throw APIError(
                .badRequest,
                field: name,
                "?\(name)= takes 1, true or yes (or 0, false, no), not \"\(value)\""
            )
        }
    }
}
