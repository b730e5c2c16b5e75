import DEMCore
import Foundation
import Testing

@Suite("JSONValue: the package's one JSON value")
struct JSONValueTests {
    @Test("read and written back: key order and number text kept, strings escaped")
    func roundTrip() throws {
        let text = #"{"z":1,"a":[true,null,1.50,-2e3],"m":{"q":"x\"y\u2028"}}"#
        let value = try JSONValue(parsing: text)
        #expect(value.objectMembers?.map(\.key) == ["z", "a", "m"])
        #expect(value.serialized(pretty: false) == #"{"z":1,"a":[true,null,1.50,-2e3],"m":{"q":"x\"y\u2028"}}"#)
        #expect(
            JSONValue.members([("b", .integer(UInt64.max)), ("a", "text")]).serialized(pretty: true)
                == "{\n  \"b\": 18446744073709551615,\n  \"a\": \"text\"\n}"
        )
        #expect(throws: JSONParseError.self) { try JSONValue(parsing: "{\"a\":}") }
    }

    @Test(
        "decoded with JSONDecoder as a field of any type, and encoded back",
        arguments: [
            ("true", JSONValue.bool(true)), ("1", .number("1")), ("\"1\"", .string("1")), ("null", .null),
            ("[1,\"a\"]", .array([.number("1"), .string("a")])), ("{\"k\":false}", .members([("k", .bool(false))])),
        ]
    )
    func codable(_ text: String, _ expected: JSONValue) throws {
        struct Body: Codable { var field: JSONValue }
        let body = try JSONDecoder().decode(Body.self, from: Data(#"{"field":\#(text)}"#.utf8))
        #expect(body.field == expected)
        let again = try JSONDecoder().decode(Body.self, from: JSONEncoder().encode(body))
        #expect(again.field == expected)
    }
}
