import DEMCore
import Foundation
import Testing

@testable import DEMHTTP

/// The REST APIs' one body decoder, without HTTP: the keys a body may hold are the type's own
/// CodingKeys, checked on the same parse the type is decoded from.
@Suite("request bodies: one decode, the type's own fields")
struct APIBodyTests {
    private func body(_ text: String) -> APIBody { APIBody(data: Data(text.utf8)) }

    private func refusal(_ work: () throws -> Void) -> APIError? {
        do {
            try work()
            return nil
        } catch let error as APIError {
            return error
        } catch {
            Issue.record("not an API error: \(error)")
            return nil
        }
    }

    @Test("a key the type's CodingKeys do not name is refused naming it and listing the fields")
    func unknownKey() {
        let error = refusal {
            _ = try body(#"{"PORTID":1,"TRTYPE":"tcp","Bogus":1,"Also":2}"#).decode(FabricPort.self)
        }
        #expect(error?.field == "Also", "the first unknown key in order")
        #expect(error?.message.contains("ADRFAM, PORTID, TRADDR, TREQ, TRSVCID, TRTYPE, TSAS") == true)
        #expect(FabricPort.fieldNames.sorted() == ["ADRFAM", "PORTID", "TRADDR", "TREQ", "TRSVCID", "TRTYPE", "TSAS"])
    }

    @Test("the keys given come back with the value; a path value fills only a key the body leaves out")
    func keysAndFilling() throws {
        let given = body(#"{"SUBNQN":"nqn.2024-01.io.example:s","AllowAnyHost":1}"#)
        let (subsystem, keys) = try given.decodeFields(FabricSubsystem.self)
        #expect(keys == ["SUBNQN", "AllowAnyHost"])
        #expect(subsystem.allowAnyHost)

        let port = try body(#"{"TRTYPE":"tcp","ADRFAM":"ipv4","TRADDR":"10.0.0.1"}"#)
            .decode(FabricPort.self, filling: "PORTID", with: .integer(7))
        #expect(port.portID == 7)
        let own = try body(#"{"PORTID":3,"TRTYPE":"tcp","ADRFAM":"ipv4","TRADDR":"10.0.0.1"}"#)
            .decode(FabricPort.self, filling: "PORTID", with: .integer(7))
        #expect(own.portID == 3, "the body's own value stands")
        let target = try body(#"{"Refresh":5}"#).decode(FabricTarget.self, filling: "Alias", with: .string("t9"))
        #expect(target.alias == "t9" && target.refresh == 5)
    }

    @Test("not JSON says where; not an object says so; a wrong type names its field")
    func malformed() {
        let syntax = refusal { _ = try body("{\n  \"Alias\": ,\n}").decode(FabricHost.self) }
        #expect(syntax?.field == nil)
        #expect(syntax?.message.contains("line 2, column") == true, "\(String(describing: syntax?.message))")
        let array = refusal { _ = try body("[1,2]").decode(FabricHost.self) }
        #expect(array?.message == "the body must be a JSON object")
        let wrong = refusal { _ = try body(#"{"Alias":7}"#).decode(FabricHost.self) }
        #expect(wrong?.field == "Alias")
    }
}
