import AsyncHTTPClient
import NIOCore
import Testing

@testable import dem_cli

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What dem-cli prints for dem's answers, and its exit statuses.
@Suite("dem-cli output")
struct RenderTests {
    /// An HTTP status and the exit status it gives.
    struct StatusCase: Sendable, CustomTestStringConvertible {
        var http: Int
        var exit: dem_cli.ExitStatus
        var testDescription: String { "HTTP \(http) → exit \(exit.rawValue)" }
    }

    static let statuses: [StatusCase] = [
        .init(http: 200, exit: .success), .init(http: 201, exit: .success), .init(http: 204, exit: .success),
        .init(http: 400, exit: .refused), .init(http: 404, exit: .refused), .init(http: 409, exit: .refused),
        .init(http: 401, exit: .unauthorized), .init(http: 403, exit: .unauthorized),
        .init(http: 500, exit: .serverError), .init(http: 503, exit: .serverError),
    ]

    @Test("2xx → 0, 4xx → 1, 401/403 → 4, 5xx → 5", arguments: statuses)
    func exitStatus(_ input: StatusCase) throws {
        let body = input.http < 300 ? "" : #"{"status":\#(input.http),"error":"E","message":"no"}"#
        let result = try answer(input.http, body, to: ["delete", "target", "t1"])
        #expect(result.status == input.exit)
        #expect(dem_cli.ExitStatus(httpStatus: input.http) == input.exit)
        if input.exit == .success {
            #expect(result.standardOutput == "Target 't1' deleted\n")
            #expect(result.standardError.isEmpty)
        } else {
            #expect(result.standardOutput.isEmpty)
            #expect(result.standardError.hasPrefix("Error: no\n"))
        }
    }

    @Test("an error prints `Error: <message> (field <field>)`, or the text, or the status")
    func errorLine() throws {
        let notFound = #"{"status":404,"error":"Not Found","field":"Alias","message":"no target 't9'"}"#
        #expect(
            try answer(404, notFound, to: ["get", "target", "t9"]).standardError
                == "Error: no target 't9' (field Alias)\n"
        )
        let conflict = #"{"status":409,"error":"Conflict","message":"exists"}"#
        #expect(try answer(409, conflict, to: ["add", "target", "t1"]).standardError == "Error: exists\n")
        #expect(try answer(502, "upstream down\n", to: ["config"]).standardError == "Error: HTTP 502: upstream down\n")
        #expect(try answer(500, "", to: ["config"]).standardError == "Error: HTTP 500\n")
    }

    @Test("401 without a token says where dem-cli looked and how to pass one")
    func unauthorizedHint() throws {
        let token = TokenResolution(
            token: nil,
            origin: nil,
            searched: [SearchedFile(path: "/var/lib/dem/admin.token", reason: "Permission denied")]
        )
        let result = try answer(401, #"{"message":"a token is required"}"#, to: ["list", "target"], token: token)
        #expect(result.status == .unauthorized)
        #expect(result.standardError.hasPrefix("Error: a token is required\ndem-cli sent no token"))
        #expect(result.standardError.contains("/var/lib/dem/admin.token (Permission denied)"))
        #expect(result.standardError.contains("-t TOKEN"))
    }

    @Test("-j prints {} for a 204, the JSON indented in the server's key order otherwise; -r the body")
    func jsonAndRaw() throws {
        let deleted = try answer(204, "", to: ["-j", "delete", "target", "t1"], format: .json)
        #expect(deleted.standardOutput == "{}\n")
        #expect(deleted.status == .success)
        let body = #"{"Targets":["t2","t1"],"Count":2}"#
        let pretty = try answer(200, body, to: ["list", "target"], format: .json)
        #expect(pretty.standardOutput == "{\n  \"Targets\": [\n    \"t2\",\n    \"t1\"\n  ],\n  \"Count\": 2\n}\n")
        #expect(try answer(200, body, to: ["list", "target"], format: .raw).standardOutput == body)
        #expect(try answer(204, "", to: ["delete", "target", "t1"], format: .raw).standardOutput == "")
    }

    @Test("lists print one name a line, and nothing when empty")
    func names() throws {
        #expect(try answer(200, #"{"Groups":["g1","g2"]}"#, to: ["list", "group"]).standardOutput == "g1\ng2\n")
        #expect(try answer(200, #"{"Hosts":[]}"#, to: ["list", "host"]).standardOutput == "")
    }

    @Test("list token: ID, name, role, creation and last use (never, when not used yet), no secret")
    func tokens() throws {
        let body = """
            {"Tokens":[
              {"ID":"0a1b2c3d","Name":"admin","Role":"admin","Created":"2026-12-05T10:00:00Z",
               "LastUsed":"2026-12-05T11:00:00Z"},
              {"ID":"4e5f6a7b","Name":"grafana","Role":"read","Created":"2026-12-05T10:05:00Z"}]}
            """
        let lines = try answer(200, body, to: ["list", "token"]).standardOutput.split(separator: "\n")
        #expect(lines.count == 3)
        #expect(lines[0].split(separator: " ") == ["ID", "NAME", "ROLE", "CREATED", "LASTUSED"])
        #expect(lines[1].split(separator: " ").last == "2026-12-05T11:00:00Z")
        #expect(lines[2].split(separator: " ").last == "never")
    }

    @Test("audit: a table of who asked what from where and the answer, oldest first")
    func audit() throws {
        let body = """
            {"Records":[
              {"Time":"2026-12-05T10:00:00Z","Actor":"admin (0a1b2c3d)","Source":"192.0.2.1:50000",
               "Method":"POST","Path":"/target/t1","Status":201,"Detail":"/target/t1"},
              {"Time":"2026-12-05T10:01:00Z","Actor":"-","Source":"192.0.2.9:40000",
               "Method":"DELETE","Path":"/target/t1","Status":401}]}
            """
        let lines = try answer(200, body, to: ["audit"]).standardOutput.split(separator: "\n")
        #expect(lines.count == 3)
        #expect(lines[0].split(separator: " ") == ["TIME", "ACTOR", "SOURCE", "METHOD", "PATH", "STATUS", "DETAIL"])
        #expect(lines[1].contains("admin (0a1b2c3d)") && lines[1].contains("201"))
        #expect(lines[2].split(separator: " ").dropFirst().first == "-")
    }

    @Test("list target: a table of each target's mode, state, entries served and last error")
    func targetStates() throws {
        let body = """
            {"Targets":[
              {"Alias":"t1","MgmtMode":"OutOfBandMgmt","State":"reachable","Joined":true,"Serving":2,
               "Drift":[],"Foreign":[],"Errors":[]},
              {"Alias":"t2","MgmtMode":"LocalMgmt","State":"unreachable","Joined":false,"Serving":0,
               "LastError":"no answer","Drift":[],"Foreign":[],"Errors":[]}]}
            """
        #expect(
            try answer(200, body, to: ["list", "target"]).standardOutput == """
                ALIAS  MODE           STATE        ENTRIES  LAST ERROR
                t1     OutOfBandMgmt  reachable    2
                t2     LocalMgmt      unreachable  0        no answer

                """
        )
        #expect(try answer(200, #"{"Targets":[]}"#, to: ["list", "target"]).standardOutput == "")
        // Withheld entries are counted, and the way to see why is said once.
        let withheld = """
            {"Targets":[{"Alias":"t1","MgmtMode":"LocalMgmt","State":"unreachable","Joined":false,"Serving":0,
              "Withheld":2,"LastError":"refused","Drift":[],"Foreign":[],"Errors":[]}]}
            """
        #expect(
            try answer(200, withheld, to: ["list", "target"]).standardOutput == """
                ALIAS  MODE       STATE        ENTRIES         LAST ERROR
                t1     LocalMgmt  unreachable  0 (2 withheld)  refused
                Withheld entries are in the model but not served to hosts now; 'dem-cli logpage host HOST' says why.

                """
        )
    }

    @Test("a host's page lists its withheld entries with the reason")
    func withheldEntries() throws {
        let page = """
            {"Alias":"h1","HOSTNQN":"nqn.2014-08.org.nvmexpress:uuid:aaaaaaaa-0000-4000-8000-000000000001",
             "genctr":1,"records":[],
             "withheld":[{"trtype":"tcp","adrfam":"ipv4","portid":1,"trsvcid":"4420","traddr":"10.0.2.15",
               "subnqn":"nqn.2024-01.io.example:shared","target":"t1","reason":"dem cannot read it"}]}
            """
        #expect(
            try answer(200, page, to: ["logpage", "host", "h1"]).standardOutput == """
                Host 'h1' (nqn.2014-08.org.nvmexpress:uuid:aaaaaaaa-0000-4000-8000-000000000001), generation counter 1, 0 records, 1 withheld
                Withheld (in the model, not served now):
                  nqn.2024-01.io.example:shared on t1 PORTID 1 (tcp 10.0.2.15:4420)
                    why: dem cannot read it

                """
        )
    }

    @Test("a target's status: state, entries, what is live, drift and errors")
    func targetStatus() throws {
        let body = """
            {"Alias":"t1","MgmtMode":"OutOfBandMgmt","State":"drifted","Joined":true,"Serving":1,
             "Live":[{"SUBNQN":"nqn.x:s1","PortIDs":[1],"NSIDs":[1]}],
             "Drift":[{"Object":"subsystems/nqn.x:s1/namespaces/1","Attribute":"enable","Expected":"1","Actual":"0"}],
             "Foreign":["ports/9"],"Errors":[]}
            """
        // `get target` asks for the target, then for its status: the second answer.
        let request = try requests(["get", "target", "t1"])[1]
        let text = outcome(
            httpStatus: 200,
            body: Array(body.utf8),
            request: request,
            format: .text,
            token: TokenResolution()
        ).standardOutput
        #expect(text.contains("State:"))
        #expect(text.contains("drifted"))
        #expect(text.contains("Joined:"))
        #expect(text.contains("subsystems/nqn.x:s1/namespaces/1  enable     1         0"))
        #expect(text.contains("Left alone (not created by dem-em):\n  ports/9"))
    }

    @Test("a target: settings, a port table, subsystems with access lists and namespaces")
    func target() throws {
        let body = """
            {"Alias":"t1","Refresh":5,"MgmtMode":"InBandMgmt",
             "Interface":{"TRTYPE":"tcp","ADRFAM":"ipv4","TRADDR":"192.0.2.10","TRSVCID":4420},
             "PortIDs":[
              {"PORTID":1,"TRTYPE":"tcp","ADRFAM":"ipv4","TRADDR":"192.0.2.10","TRSVCID":"4420"},
              {"PORTID":2,"TRTYPE":"rdma","ADRFAM":"ipv6","TRADDR":"2001:db8::1","TRSVCID":"4420"}],
             "Subsystems":[
              {"SUBNQN":"nqn.2024-01.io.example:s1","AllowAnyHost":0,"Hosts":["h1","h2"],
               "NSIDs":[{"NSID":1,"DeviceID":-1},{"NSID":2,"DevicePath":"/dev/nvme0n1"}]},
              {"SUBNQN":"nqn.2024-01.io.example:s2","AllowAnyHost":1,"NSIDs":[]}]}
            """
        let result = try answer(200, body, to: ["get", "target", "t1"])
        #expect(result.status == .success)
        #expect(
            result.standardOutput == """
                Target:    t1
                Mode:      InBandMgmt
                Refresh:   every 5 minutes
                Interface: tcp ipv4 192.0.2.10:4420

                Ports:
                  PORTID  TRTYPE  ADRFAM  TRADDR       TRSVCID
                  1       tcp     ipv4    192.0.2.10   4420
                  2       rdma    ipv6    2001:db8::1  4420

                Subsystems:
                  nqn.2024-01.io.example:s1
                    AllowAnyHost: 0 (only the hosts of its access list)
                    Hosts:        h1, h2
                    NSIDs:
                      NSID  DEVICE        DEVNSID
                      1     nullb0
                      2     /dev/nvme0n1
                  nqn.2024-01.io.example:s2
                    AllowAnyHost: 1 (any host)
                    Hosts:        none
                    NSIDs:        none

                """
        )
    }

    @Test("a host: its NQN, then Shared and Restricted as target / subnqn")
    func host() throws {
        let body = """
            {"Alias":"h1","HOSTNQN":"nqn.2014-08.org.nvmexpress:uuid:dad2e259-4f21-4823-88c2-9865a7aa9759",
             "Shared":[{"Alias":"t1","SUBNQN":"nqn.2024-01.io.example:s2"}],
             "Restricted":[{"Alias":"t1","SUBNQN":"nqn.2024-01.io.example:s1"},
                           {"Alias":"t2","SUBNQN":"nqn.2024-01.io.example:s3"}]}
            """
        let output = try answer(200, body, to: ["get", "host", "h1"]).standardOutput
        #expect(
            output == """
                Host:    h1
                HOSTNQN: nqn.2014-08.org.nvmexpress:uuid:dad2e259-4f21-4823-88c2-9865a7aa9759

                Shared (subsystems open to any host):
                  t1 / nqn.2024-01.io.example:s2

                Restricted (subsystems whose access list names this host):
                  t1 / nqn.2024-01.io.example:s1
                  t2 / nqn.2024-01.io.example:s3

                """
        )
    }

    @Test("log pages as nvme discover lists them; a target's with the hosts of each entry")
    func logPages() throws {
        let hostPage = """
            {"Alias":"h1","HOSTNQN":"nqn.2024-01.io.example:host1","genctr":7,"records":[
             {"trtype":"tcp","adrfam":"ipv4","subtype":"nvme subsystem","treq":"not specified","portid":1,
              "trsvcid":"4420","subnqn":"nqn.2024-01.io.example:s1","traddr":"192.0.2.10","eflags":"none"}]}
            """
        #expect(
            try answer(200, hostPage, to: ["logpage", "host", "h1"]).standardOutput == """
                Host 'h1' (nqn.2024-01.io.example:host1), generation counter 7, 1 record
                PORTID  TRTYPE  ADRFAM  TRADDR      TRSVCID  SUBNQN
                1       tcp     ipv4    192.0.2.10  4420     nqn.2024-01.io.example:s1

                """
        )
        let targetPage = """
            {"Alias":"t1","records":[
             {"portid":1,"trtype":"tcp","adrfam":"ipv4","traddr":"192.0.2.10","trsvcid":"4420",
              "subnqn":"nqn.2024-01.io.example:s1","hosts":["nqn.2024-01.io.example:host1"]},
             {"portid":1,"trtype":"tcp","adrfam":"ipv4","traddr":"192.0.2.10","trsvcid":"4420",
              "subnqn":"nqn.2024-01.io.example:s2"}]}
            """
        #expect(
            try answer(200, targetPage, to: ["logpage", "target", "t1"]).standardOutput == """
                Target 't1', 2 records
                PORTID  TRTYPE  ADRFAM  TRADDR      TRSVCID  SUBNQN                     HOSTS
                1       tcp     ipv4    192.0.2.10  4420     nqn.2024-01.io.example:s1  nqn.2024-01.io.example:host1
                1       tcp     ipv4    192.0.2.10  4420     nqn.2024-01.io.example:s2  any

                """
        )
    }

    @Test("a new token's secret alone on standard output, the note on standard error")
    func tokenCreated() throws {
        let body = #"{"ID":"7f3a","Name":"ci","Role":"read","Created":"2026-01-01T00:00:00Z","Token":"s3cr3t"}"#
        let result = try answer(201, body, to: ["add", "token", "ci"])
        #expect(result.standardOutput == "s3cr3t\n")
        #expect(result.standardError.hasPrefix("Token 'ci' added (ID 7f3a, role read)."))
    }

    @Test("an unreadable 200 answer exits 5")
    func unreadableAnswer() throws {
        let result = try answer(200, "<html>", to: ["get", "target", "t1"])
        #expect(result.status == .serverError)
        #expect(result.standardError.hasPrefix("Error: cannot read dem's answer (HTTP 200): "))
    }
}

/// A request that got no HTTP answer.
@Suite("dem-cli connection failures")
struct TransportFailureTests {
    /// An error that wraps others, as NIO's connection errors wrap one per address tried.
    struct Wrapper: Error {
        var host: String
        var errors: [any Error]
    }

    @Test("connection refused → exit 3, `Error: dem is not running at https://HOST:PORT`")
    func refused() throws {
        let refused = IOError(errnoCode: ECONNREFUSED, reason: "connect")
        let failure = transportFailure(refused, baseURL: "http://127.0.0.1:22345")
        #expect(failure.message == "Error: dem is not running at http://127.0.0.1:22345")
        #expect(failure.status == .notRunning)

        let wrapped = Wrapper(host: "::1", errors: [IOError(errnoCode: ECONNREFUSED, reason: "connect")])
        let options = try options(["-s", "::1", "-p", "8080", "config"])
        let wrappedFailure = transportFailure(wrapped, baseURL: options.baseURL)
        #expect(wrappedFailure.message == "Error: dem is not running at https://[::1]:8080")
        #expect(wrappedFailure.status == .notRunning)
    }

    /// An error as BoringSSL reports a certificate it could not verify.
    struct VerifyFailed: Error, CustomStringConvertible {
        var description: String {
            "handshakeFailed(sslError([error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED]))"
        }
    }

    @Test("a certificate dem-cli cannot verify exits 3, naming the CAs tried and how to trust dem")
    func untrusted() {
        let failure = transportFailure(
            VerifyFailed(),
            baseURL: "https://head:22345",
            trusted: ["/srv/dem/fabric-ca.pem"]
        )
        #expect(failure.status == .notRunning)
        #expect(failure.message.hasPrefix("Error: dem's certificate at https://head:22345 is not trusted"))
        #expect(failure.message.contains("/srv/dem/fabric-ca.pem"))
        #expect(failure.message.contains("--cacert") && failure.message.contains("dem-cli -s HOST trust"))
    }

    @Test("other connection failures exit 3; a timeout or a dropped connection after connecting exits 5")
    func otherFailures() {
        let unreachable = transportFailure(
            IOError(errnoCode: EHOSTUNREACH, reason: "connect"),
            baseURL: "http://192.0.2.1:22345"
        )
        #expect(unreachable.message.hasPrefix("Error: cannot connect to dem at http://192.0.2.1:22345: "))
        #expect(unreachable.status == .notRunning)
        #expect(transportFailure(HTTPClientError.connectTimeout, baseURL: "http://h:1").status == .notRunning)
        let timeout = transportFailure(HTTPClientError.readTimeout, baseURL: "http://h:1")
        #expect(timeout.message == "Error: dem at http://h:1 did not answer in time")
        #expect(timeout.status == .serverError)
        #expect(transportFailure(HTTPClientError.remoteConnectionClosed, baseURL: "http://h:1").status == .serverError)
    }
}
