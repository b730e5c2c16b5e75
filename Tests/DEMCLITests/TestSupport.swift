import DEMCore
import Testing

@testable import dem_cli

/// A JSON value compared as data: an object is a dictionary (its key order does not matter), a
/// number an integer. The expected bodies of the command table are written with these literals.
enum Plain: Equatable, Sendable, CustomStringConvertible {
    case null
    case bool(Bool)
    case int(Int)
    /// A number that is not an integer, in its JSON text.
    case number(String)
    case string(String)
    case array([Plain])
    case object([String: Plain])

    /// A key that appears twice in one object.
    struct DuplicateKey: Error, CustomStringConvertible {
        var key: String
        var description: String { "the key \"\(key)\" appears twice" }
    }

    /// `json` as data; a repeated key is an error (a dictionary would hide it).
    init(_ json: JSONValue) throws {
        switch json {
        case .null: self = .null
        case .bool(let flag): self = .bool(flag)
        case .number(let text): self = Int(text).map(Plain.int) ?? .number(text)
        case .string(let text): self = .string(text)
        case .array(let elements): self = .array(try elements.map(Plain.init))
        case .object(let members):
            var dictionary: [String: Plain] = [:]
            for member in members {
                guard dictionary[member.key] == nil else { throw DuplicateKey(key: member.key) }
                dictionary[member.key] = try Plain(member.value)
            }
            self = .object(dictionary)
        }
    }

    /// The JSON text `text` as data.
    init(parsing text: String) throws {
        try self.init(JSONValue(parsing: text))
    }

    var description: String {
        switch self {
        case .null: "null"
        case .bool(let flag): "\(flag)"
        case .int(let value): "\(value)"
        case .number(let text): text
        case .string(let text): "\"\(text)\""
        case .array(let elements): "[" + elements.map(\.description).joined(separator: ",") + "]"
        case .object(let members):
            "{" + members.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\($0.value)" }.joined(separator: ",") + "}"
        }
    }
}

extension Plain: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByDictionaryLiteral,
    ExpressibleByBooleanLiteral
{
    init(stringLiteral value: String) { self = .string(value) }
    init(booleanLiteral value: Bool) { self = .bool(value) }
    init(integerLiteral value: Int) { self = .int(value) }
    init(dictionaryLiteral elements: (String, Plain)...) {
        self = .object(Dictionary(uniqueKeysWithValues: elements))
    }
}

/// The requests a command line asks for, or an issue when it asks for help or the version.
func requests(_ argv: [String]) throws -> [CLIRequest] {
    guard case .run(_, let requests) = try parseCommandLine(argv) else {
        Issue.record("\(argv) does not run requests")
        return []
    }
    return requests
}

/// The options a command line sets, or an issue when it asks for help or the version.
func options(_ argv: [String]) throws -> CLIOptions {
    guard case .run(let options, _) = try parseCommandLine(argv) else {
        Issue.record("\(argv) does not run requests")
        return CLIOptions()
    }
    return options
}

/// The body `request` puts on the wire, parsed back from its JSON text.
func wireBody(_ request: CLIRequest) throws -> Plain? {
    guard let body = request.body else { return nil }
    return try Plain(parsing: body.serialized(pretty: false))
}

/// What dem-cli prints for an answer with `body` (JSON text) to the command `argv`.
func answer(
    _ httpStatus: Int,
    _ body: String,
    to argv: [String],
    format: OutputFormat = .text,
    token: TokenResolution = TokenResolution()
) throws -> ResponseOutcome {
    let request = try #require(try requests(argv).first)
    return outcome(httpStatus: httpStatus, body: Array(body.utf8), request: request, format: format, token: token)
}
