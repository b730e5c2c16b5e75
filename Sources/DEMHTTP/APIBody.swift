import DEMCore
import Foundation
import Hummingbird
import Synchronization

/// A JSON request body, read whole (up to ``maximumSize``) and decoded once: the decoder refuses
/// a key the type's own CodingKeys do not name (``RequestFields``) and answers every decoding
/// error as a 400 that names the field.
public struct APIBody: Sendable {
    /// The largest body a route reads (1 MiB); a larger one is a 413.
    public static let maximumSize = 1 << 20

    public let data: Data

    /// A value a route takes from its path for a key the body may leave out (the alias of
    /// `POST /target/<t>`, the PORTID of `POST /target/<t>/portid/<p>`).
    public enum PathValue: Sendable {
        case string(String)
        case integer(Int)
    }

    /// The body of `request`, or nil when it is empty (or only white space).
    public static func read(_ request: Request, context: some RequestContext) async throws -> APIBody? {
        let buffer = try await request.body.collect(upTo: maximumSize)
        guard buffer.readableBytes > 0 else { return nil }
        let data = Data(buffer.readableBytesView)
        if data.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) { return nil }
        return APIBody(data: data)
    }

    /// The body decoded as `type`.
    public func decode<T: RequestFields>(_ type: T.Type) throws -> T {
        try decodeFields(type).value
    }

    /// The body decoded as `type`, with `key` taken as `value` when the body does not give it.
    public func decode<T: RequestFields>(_ type: T.Type, filling key: String, with value: PathValue) throws -> T {
        try decodeFields(type, filling: (key, value)).value
    }

    /// The body decoded as `type`, and the keys it gave.
    public func decodeFields<T: RequestFields>(
        _ type: T.Type,
        filling: (key: String, value: PathValue)? = nil
    ) throws -> (value: T, keys: Set<String>) {
        let decoder = JSONDecoder()
        if let filling { decoder.userInfo[FilledKey.userInfoKey] = FilledKey(key: filling.key, value: filling.value) }
        do {
            let checked = try decoder.decode(CheckedBody<T>.self, from: data)
            return (checked.value, checked.keys)
        } catch let error as DecodingError {
            // Only when the decoder gave up on the document itself is the syntax looked at again,
            // to say where it breaks.
            if case .dataCorrupted(let context) = error, context.codingPath.isEmpty,
                let syntax = JSONDiagnostics.syntaxError(in: data)
            {
                throw APIError(.badRequest, "the body is not valid JSON (\(syntax))")
            }
            throw Self.apiError(error)
        } catch let error as ModelError {
            throw APIError(error)
        }
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

/// Any key of a JSON object.
private struct BodyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

/// The key a route fills from its path, passed to ``CheckedBody`` through the decoder.
private struct FilledKey: @unchecked Sendable {
    static let userInfoKey = CodingUserInfoKey(rawValue: "dem.filledKey")!
    var key: String
    var value: APIBody.PathValue
}

/// `T` from a body that is a JSON object naming only `T`'s fields: the keys are checked on the
/// same parse `T` is decoded from.
private struct CheckedBody<T: RequestFields>: Decodable {
    var value: T
    var keys: Set<String>

    init(from decoder: any Decoder) throws {
        let container: KeyedDecodingContainer<BodyKey>
        do {
            container = try decoder.container(keyedBy: BodyKey.self)
        } catch DecodingError.typeMismatch {
            throw APIError(.badRequest, "the body must be a JSON object")
        }
        let given = container.allKeys.map(\.stringValue)
        let allowed = T.fieldNames
        for key in given.sorted() where !allowed.contains(key) {
            throw APIError(
                .badRequest,
                field: key,
                "unknown field \"\(key)\"; this route accepts \(allowed.sorted().joined(separator: ", "))"
            )
        }
        keys = Set(given)
        if let filled = decoder.userInfo[FilledKey.userInfoKey] as? FilledKey, !keys.contains(filled.key) {
            value = try T(from: FilledDecoder(base: decoder, filled: filled))
        } else {
            value = try T(from: decoder)
        }
    }
}

/// A decoder that reads its top-level object with one more key (``FilledKey``).
private struct FilledDecoder: Decoder {
    let base: any Decoder
    let filled: FilledKey

    var codingPath: [any CodingKey] { base.codingPath }
    var userInfo: [CodingUserInfoKey: Any] { base.userInfo }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        KeyedDecodingContainer(FilledContainer(base: try base.container(keyedBy: type), filled: filled))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer { try base.unkeyedContainer() }
    func singleValueContainer() throws -> any SingleValueDecodingContainer { try base.singleValueContainer() }
}

private struct FilledContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let base: KeyedDecodingContainer<Key>
    let filled: FilledKey

    var codingPath: [any CodingKey] { base.codingPath }
    var allKeys: [Key] { base.allKeys + (Key(stringValue: filled.key).map { [$0] } ?? []) }

    private func isFilled(_ key: Key) -> Bool { key.stringValue == filled.key }

    func contains(_ key: Key) -> Bool { isFilled(key) || base.contains(key) }
    func decodeNil(forKey key: Key) throws -> Bool { isFilled(key) ? false : try base.decodeNil(forKey: key) }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        guard isFilled(key) else { return try base.decode(type, forKey: key) }
        switch filled.value {
        case .string(let text):
            if let value = text as? T { return value }
        case .integer(let number):
            if let value = number as? T { return value }
            if let value = String(number) as? T { return value }
        }
        throw DecodingError.typeMismatch(
            type,
            .init(codingPath: codingPath + [key], debugDescription: "the path gives \(filled.key) as \(filled.value)")
        )
    }

    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try decode(type as Bool.Type, key) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try decode(type as String.Type, key) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try decode(type as Double.Type, key) }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try decode(type as Float.Type, key) }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try decode(type as Int.Type, key) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try decode(type as Int8.Type, key) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try decode(type as Int16.Type, key) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try decode(type as Int32.Type, key) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try decode(type as Int64.Type, key) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try decode(type as UInt.Type, key) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try decode(type as UInt8.Type, key) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try decode(type as UInt16.Type, key) }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try decode(type as UInt32.Type, key) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try decode(type as UInt64.Type, key) }

    /// The concrete overloads above, through the generic one.
    private func decode<T: Decodable>(_ type: T.Type, _ key: Key) throws -> T {
        let generic: (T.Type, Key) throws -> T = { try self.decode($0, forKey: $1) }
        return try generic(type, key)
    }

    func nestedContainer<NestedKey: CodingKey>(
        keyedBy type: NestedKey.Type,
        forKey key: Key
    ) throws -> KeyedDecodingContainer<NestedKey> {
        try base.nestedContainer(keyedBy: type, forKey: key)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try base.nestedUnkeyedContainer(forKey: key)
    }

    func superDecoder() throws -> any Decoder { try base.superDecoder() }
    func superDecoder(forKey key: Key) throws -> any Decoder { try base.superDecoder(forKey: key) }
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

    /// A JSON answer from bytes already encoded.
    public static func json(encoded: ByteBuffer, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: encoded))
    }
}

/// JSON answers encoded once per revision of what they show: a read of the same resource asked
/// again before the next change reuses the bytes. Entries of an older revision are dropped as
/// soon as a newer one is asked for; at most `capacity` are kept.
public final class EncodedAnswers: Sendable {
    private let state = Mutex<(revision: UInt64, answers: [String: ByteBuffer])>((0, [:]))
    private let capacity: Int

    public init(capacity: Int = 1024) { self.capacity = capacity }

    /// The answer kept for `key` at `revision`, or `encode`'s, kept for the next asker.
    public func answer(
        _ key: String,
        revision: UInt64,
        encode: () throws -> ByteBuffer
    ) throws -> ByteBuffer {
        let kept: ByteBuffer? = state.withLock { state in
            state.revision == revision ? state.answers[key] : nil
        }
        if let kept { return kept }
        let encoded = try encode()
        state.withLock { state in
            if state.revision != revision {
                // An answer of an older revision than the one kept is not kept.
                guard revision > state.revision else { return }
                state = (revision, [:])
            }
            if state.answers.count >= capacity { state.answers.removeAll(keepingCapacity: true) }
            state.answers[key] = encoded
        }
        return encoded
    }
}

extension Parameters {
    /// A path parameter, percent-decoded.
    public func decoded(_ name: String) throws -> String {
        let raw = try require(name)
        // Most segments have nothing to decode (Foundation's decoder is the slow part of a read).
        if !raw.isEmpty, !raw.utf8.contains(UInt8(ascii: "%")) { return raw }
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
