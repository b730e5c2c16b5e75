import DEMCore
import Foundation
import Testing

/// NVMe Qualified Names (NVMe Base 2.1 §4.7).
@Suite("NQN")
struct NQNTests {
    static let valid: [String] = [
        DEMCore.wellKnownDiscoveryNQN,
        "nqn.2014-08.org.nvmexpress:uuid:dad2e259-4f21-4823-88c2-9865a7aa9759",
        "nqn.2014-08.org.nvmexpress:uuid:DAD2E259-4F21-4823-88C2-9865A7AA9759",
        "nqn.2024-01.io.example:foo",
        "nqn.2024-01.io.nvmeof-lab:nullb0",
        "nqn.1999-12.com.example",
        "nqn.2024-01.io.example:a:b:c with spaces/and.dots",
        "nqn.2024-01.io.example:" + String(repeating: "x", count: 223 - 23),  // exactly 223 bytes
    ]

    @Test("valid NQNs", arguments: valid)
    func validNQN(_ value: String) throws {
        let nqn = try NQN(value)
        #expect(nqn.value == value)
        #expect(nqn.description == value)
        #expect(NQN.isValid(value))
        #expect(value.utf8.count <= 223)
    }

    /// An invalid NQN and a word its reason must contain.
    struct Invalid: Sendable, CustomTestStringConvertible {
        var name: String
        var value: String
        var reasonMentions: String
        var testDescription: String { name }
    }

    static let invalid: [Invalid] = [
        .init(name: "empty", value: "", reasonMentions: "empty"),
        .init(name: "no nqn. prefix", value: "iqn.2024-01.io.example:foo", reasonMentions: "\"nqn.\""),
        .init(name: "upper-case prefix", value: "NQN.2024-01.io.example:foo", reasonMentions: "\"nqn.\""),
        .init(name: "two-digit year", value: "nqn.24-01.io.example:foo", reasonMentions: "date"),
        .init(name: "month 13", value: "nqn.2024-13.io.example:foo", reasonMentions: "date"),
        .init(name: "month 00", value: "nqn.2024-00.io.example:foo", reasonMentions: "date"),
        .init(name: "date without a dash", value: "nqn.202401.io.example:foo", reasonMentions: "date"),
        .init(name: "date not followed by a dot", value: "nqn.2024-01io.example:foo", reasonMentions: "reverse domain"),
        .init(
            name: "224 bytes",
            value: "nqn.2024-01.io.example:" + String(repeating: "x", count: 224 - 23),
            reasonMentions: "224 bytes"
        ),
        .init(name: "bad UUID", value: "nqn.2014-08.org.nvmexpress:uuid:not-a-uuid", reasonMentions: "UUID"),
        .init(
            name: "UUID without dashes",
            value: "nqn.2014-08.org.nvmexpress:uuid:dad2e2594f21482388c29865a7aa9759",
            reasonMentions: "UUID"
        ),
        .init(
            name: "UUID with braces",
            value: "nqn.2014-08.org.nvmexpress:uuid:{dad2e259-4f21-4823-88c2-9865a7aa9759}",
            reasonMentions: "UUID"
        ),
        .init(name: "NUL byte", value: "nqn.2024-01.io.example:f\u{0}oo", reasonMentions: "NUL"),
        .init(name: "empty domain label", value: "nqn.2024-01.io..example:foo", reasonMentions: "reverse domain"),
        .init(name: "domain ending in a dot", value: "nqn.2024-01.io.example.:foo", reasonMentions: "reverse domain"),
        .init(name: "one-label domain", value: "nqn.2024-01.example:foo", reasonMentions: "reverse domain"),
        .init(name: "no domain at all", value: "nqn.2024-01.:foo", reasonMentions: "reverse domain"),
        .init(name: "underscore in the domain", value: "nqn.2024-01.io.ex_ample:foo", reasonMentions: "character"),
    ]

    @Test("invalid NQNs are refused with a reason naming the problem", arguments: invalid)
    func invalidNQN(_ input: Invalid) {
        let error = #expect(throws: NQN.ValidationError.self) { try NQN(input.value) }
        #expect(error?.value == input.value)
        #expect(error?.reason.contains(input.reasonMentions) == true, "reason: \(error?.reason ?? "none")")
        #expect(error?.description.contains(input.reasonMentions) == true)
        #expect(!NQN.isValid(input.value))
    }

    @Test("a fresh UUID NQN is valid and lower-case; the well-known one is the discovery NQN")
    func factories() throws {
        let uuid = UUID(uuidString: "DAD2E259-4F21-4823-88C2-9865A7AA9759")!
        #expect(NQN.uuid(uuid).value == "nqn.2014-08.org.nvmexpress:uuid:dad2e259-4f21-4823-88c2-9865a7aa9759")
        #expect(NQN.isValid(NQN.uuid().value))
        #expect(NQN.wellKnownDiscovery.value == "nqn.2014-08.org.nvmexpress.discovery")
    }

    @Test("Codable: encodes as a string, decoding validates")
    func codable() throws {
        let nqn = try NQN("nqn.2024-01.io.example:foo")
        let data = try JSONEncoder().encode([nqn])
        #expect(String(decoding: data, as: UTF8.self) == #"["nqn.2024-01.io.example:foo"]"#)
        #expect(try JSONDecoder().decode([NQN].self, from: data) == [nqn])
        #expect(throws: NQN.ValidationError.self) {
            try JSONDecoder().decode([NQN].self, from: Data(#"["nqn.2024-13.io.example:foo"]"#.utf8))
        }
    }
}
