import Testing

@testable import dem_cli

/// One HTTP request a command sends: method, path and the JSON body compared as data.
struct Sent: Sendable, CustomStringConvertible {
    var method: String
    var path: String
    var body: Plain?

    init(_ method: String, _ path: String, _ body: Plain? = nil) {
        self.method = method
        self.path = path
        self.body = body
    }

    var description: String { "\(method) \(path)" + (body.map { " \($0)" } ?? "") }
}

/// A command line and the requests it sends, in order.
struct CommandCase: Sendable, CustomTestStringConvertible {
    var argv: [String]
    var sent: [Sent]

    /// A command line of words without spaces, sending one request.
    init(_ line: String, _ method: String, _ path: String, _ body: Plain? = nil) {
        self.argv = line.split(separator: " ").map(String.init)
        self.sent = [Sent(method, path, body)]
    }

    init(_ argv: [String], _ sent: Sent...) {
        self.argv = argv
        self.sent = sent
    }

    var testDescription: String {
        argv.map { $0.contains(" ") || $0.isEmpty ? "'\($0)'" : $0 }.joined(separator: " ")
    }
}

/// The commands of nvme-dem's dem-cli (same verbs, objects, argument order and requests), plus
/// dem's log pages and API tokens.
@Suite("dem-cli command table")
struct CommandTableTests {
    static let s1 = "nqn.2024-01.io.example:s1"
    static let s2 = "nqn.2024-01.io.example:s2"
    static let h1NQN = "nqn.2014-08.org.nvmexpress:uuid:dad2e259-4f21-4823-88c2-9865a7aa9759"

    static let cases: [CommandCase] = [
        // dem itself
        .init("config", "GET", "/dem"),
        .init("shutdown", "POST", "/dem/shutdown"),
        .init("audit", "GET", "/dem/audit?limit=20"),
        .init("audit 500", "GET", "/dem/audit?limit=500"),
        .init("trust", "GET", "/health"),
        .init("rotate server", "POST", "/dem/rotate", ["What": "server"]),
        .init("rot target t1", "POST", "/dem/rotate", ["What": "target", "Target": "t1"]),
        .init("rotate ca", "POST", "/dem/rotate", ["What": "ca"]),
        .init("rotate ca 3600", "POST", "/dem/rotate", ["What": "ca", "Overlap": 3600]),
        .init("rotate ca finish", "POST", "/dem/rotate", ["What": "ca", "Finish": true]),
        .init("rotate ca finish force", "POST", "/dem/rotate", ["What": "ca", "Finish": true, "Force": true]),
        // groups
        .init("list group", "GET", "/group"),
        .init("add group lab", "POST", "/group/lab"),
        .init("set group lab", "PUT", "/group", ["Name": "lab"]),
        .init("get g lab", "GET", "/group/lab"),
        .init(["delete", "group", "lab", "old"], Sent("DELETE", "/group/lab"), Sent("DELETE", "/group/old")),
        .init("rename group lab bench", "PATCH", "/group/lab", ["Name": "bench"]),
        // link/unlink: the alias comes first, the group second, and the group leads the path
        .init("link target t1 lab", "POST", "/group/lab/target/t1"),
        .init("unl t t1 lab", "DELETE", "/group/lab/target/t1"),
        .init("show host-key h1", "GET", "/host/h1/dhchap"),
        .init(
            [
                "set", "host", "h1", "--dhchap-secret", "generate", "--dhchap-ctrl-secret=generate", "--dhchap-hash",
                "sha512",
            ],
            Sent("PUT", "/host/h1/dhchap", ["Secret": "generate", "ControllerSecret": "generate", "Hash": "sha512"])
        ),
        .init(
            ["set", "host", "h1", h1NQN, "--dhchap-secret", "DHHC-1:00:x:", "--dhchap-dhgroup", "null"],
            Sent("PUT", "/host", ["Alias": "h1", "HOSTNQN": .string(h1NQN)]),
            Sent("PUT", "/host/h1/dhchap", ["Secret": "DHHC-1:00:x:", "DHGroup": "null"])
        ),
        .init("link host h1 lab", "POST", "/group/lab/host/h1"),
        .init("unlink host h1 lab", "DELETE", "/group/lab/host/h1"),
        // targets
        .init("lis t", "GET", "/dem/targets"),
        .init("add target t1", "POST", "/target/t1"),
        .init("set target t1", "PUT", "/target", ["Alias": "t1"]),
        .init(["get", "tgt", "t1"], Sent("GET", "/target/t1"), Sent("GET", "/target/t1/status")),
        .init("delete target t1", "DELETE", "/target/t1"),
        .init("rename target t1 t2", "PATCH", "/target/t1", ["Alias": "t2"]),
        .init("set local t1", "PATCH", "/target/t1", ["MgmtMode": "LocalMgmt"]),
        .init(
            "set local t1 tcp ipv4 192.0.2.10 8009",
            "PATCH",
            "/target/t1",
            [
                "MgmtMode": "LocalMgmt",
                "Interface": ["TRTYPE": "tcp", "ADRFAM": "ipv4", "TRADDR": "192.0.2.10", "TRSVCID": 8009],
            ]
        ),
        .init(
            "set inband t1 rdma ipv4 192.0.2.10 4420",
            "PATCH",
            "/target/t1",
            [
                "MgmtMode": "InBandMgmt",
                "Interface": ["TRTYPE": "rdma", "ADRFAM": "ipv4", "TRADDR": "192.0.2.10", "TRSVCID": 4420],
            ]
        ),
        .init(
            "set o t1 ipv4 192.0.2.20 22334",
            "PATCH",
            "/target/t1",
            ["MgmtMode": "OutOfBandMgmt", "Interface": ["FAMILY": "ipv4", "ADDRESS": "192.0.2.20", "PORT": 22334]]
        ),
        .init("set refresh t1 5", "PATCH", "/target/t1", ["Refresh": 5]),
        .init("refresh target t1", "POST", "/target/t1/refresh"),
        .init("rec t t1", "POST", "/target/t1/reconfig"),
        .init("usage target t1", "GET", "/target/t1/usage"),
        .init("logpage target t1", "GET", "/target/t1/logpage"),
        // subsystems
        .init("add subsystem t1 \(s1)", "POST", "/target/t1/subsystem/\(s1)"),
        .init("set subsystem t1 \(s1) 0", "PUT", "/target/t1/subsystem", ["SUBNQN": .string(s1), "AllowAnyHost": 0]),
        .init("edit s t1 \(s1) yes", "PUT", "/target/t1/subsystem/\(s1)", ["AllowAnyHost": 1]),
        .init(
            ["del", "s", "t1", s1, s2],
            Sent("DELETE", "/target/t1/subsystem/\(s1)"),
            Sent("DELETE", "/target/t1/subsystem/\(s2)")
        ),
        .init("rename subsystem t1 \(s1) \(s2)", "PATCH", "/target/t1/subsystem/\(s1)", ["SUBNQN": .string(s2)]),
        // ports: PORTID and TRSVCID are numbers
        .init(
            "set portid t1 1 tcp ipv4 192.0.2.10 4420",
            "PUT",
            "/target/t1/portid",
            ["PORTID": 1, "TRTYPE": "tcp", "ADRFAM": "ipv4", "TRADDR": "192.0.2.10", "TRSVCID": 4420]
        ),
        .init(
            "edit p t1 2 rdma ipv6 2001:db8::1 4421",
            "PUT",
            "/target/t1/portid/2",
            ["PORTID": 2, "TRTYPE": "rdma", "ADRFAM": "ipv6", "TRADDR": "2001:db8::1", "TRSVCID": 4421]
        ),
        .init(
            ["delete", "portid", "t1", "1", "2"],
            Sent("DELETE", "/target/t1/portid/1"),
            Sent("DELETE", "/target/t1/portid/2")
        ),
        // access lists
        .init("set acl t1 \(s1) h1", "PUT", "/target/t1/subsystem/\(s1)/host", ["Alias": "h1"]),
        .init("del a t1 \(s1) h1", "DELETE", "/target/t1/subsystem/\(s1)/host/h1"),
        // namespaces: nullb0 (or -1) is DeviceID -1, a path is DevicePath
        .init("set ns t1 \(s1) 1 nullb0", "PUT", "/target/t1/subsystem/\(s1)/nsid", ["NSID": 1, "DeviceID": -1]),
        .init("set n t1 \(s1) 4 -1", "PUT", "/target/t1/subsystem/\(s1)/nsid", ["NSID": 4, "DeviceID": -1]),
        .init(
            "set ns t1 \(s1) 2 3 1",
            "PUT",
            "/target/t1/subsystem/\(s1)/nsid",
            ["NSID": 2, "DeviceID": 3, "DeviceNSID": 1]
        ),
        .init(
            "set ns t1 \(s1) 3 /dev/nvme0n1",
            "PUT",
            "/target/t1/subsystem/\(s1)/nsid",
            ["NSID": 3, "DevicePath": "/dev/nvme0n1"]
        ),
        .init("delete ns t1 \(s1) 1", "DELETE", "/target/t1/subsystem/\(s1)/nsid/1"),
        // hosts
        .init("list host", "GET", "/host"),
        .init("get h h1", "GET", "/host/h1"),
        .init("add host h1", "POST", "/host/h1"),
        .init("set host h1 \(h1NQN)", "PUT", "/host", ["Alias": "h1", "HOSTNQN": .string(h1NQN)]),
        .init(
            "set host h1 \(h1NQN) dad2e259-4f21-4823-88c2-9865a7aa9759",
            "PUT",
            "/host",
            ["Alias": "h1", "HOSTNQN": .string(h1NQN), "HOSTID": "dad2e259-4f21-4823-88c2-9865a7aa9759"]
        ),
        .init("edit host h1 \(h1NQN)", "PUT", "/host/h1", ["HOSTNQN": .string(h1NQN)]),
        .init("delete host h1", "DELETE", "/host/h1"),
        .init("ren h h1 h2", "PATCH", "/host/h1", ["Alias": "h2"]),
        .init("logpage host h1", "GET", "/host/h1/logpage"),
        // registrations: `reg`, since `r` is refresh
        .init("list reg", "GET", "/registration"),
        .init("get registration guest", "GET", "/registration/guest"),
        .init("adopt reg guest", "POST", "/registration/guest/adopt"),
        .init("adopt reg \(h1NQN) h1", "POST", "/registration/\(h1NQN)/adopt", ["Alias": "h1"]),
        .init("delete registrations guest", "DELETE", "/registration/guest"),
        // zoning
        .init("list zone", "GET", "/zoning"),
        .init("add zone lab z1", "POST", "/zoning/lab/z1"),
        .init("delete z lab z1", "DELETE", "/zoning/lab/z1"),
        .init("link zone lab z1 host h1", "PUT", "/zoning/lab/z1/host/h1"),
        .init(
            "link zone lab z1 sub \(s1) 10.0.0.1 4420",
            "PUT",
            "/zoning/lab/z1/subsystem/\(s1)",
            ["TRADDR": "10.0.0.1", "TRSVCID": 4420]
        ),
        .init("unlink zone lab z1 subsystem \(s1)", "DELETE", "/zoning/lab/z1/subsystem/\(s1)"),
        .init("diff zone", "GET", "/zoning/diff"),
        .init("activate zone", "POST", "/zoning/activate"),
        // API tokens: `tok`, since `t` is target
        .init("list tok", "GET", "/dem/tokens"),
        .init("add token ci", "POST", "/dem/tokens", ["Name": "ci", "Role": "read"]),
        .init("add tokens ops ADMIN", "POST", "/dem/tokens", ["Name": "ops", "Role": "admin"]),
        .init("delete token 7f3a", "DELETE", "/dem/tokens/7f3a"),
        .init("add join-token", "POST", "/dem/tokens", ["Name": "join", "Role": "join"]),
        .init("add join t1 600", "POST", "/dem/tokens", ["Name": "t1", "Role": "join", "ExpiresIn": 600]),
        // path segments are percent-encoded; `:` and `@` stay, `.`/`..` cannot climb
        .init(
            ["get", "target", "t 1/x%"],
            Sent("GET", "/target/t%201%2Fx%25"),
            Sent("GET", "/target/t%201%2Fx%25/status")
        ),
        .init(["link", "target", "t 1", "g/1"], Sent("POST", "/group/g%2F1/target/t%201")),
        .init(["get", "host", ".."], Sent("GET", "/host/%2E%2E")),
        .init(["add", "host", "hôte@lab"], Sent("POST", "/host/h%C3%B4te@lab")),
    ]

    @Test("argv → method, path and JSON body", arguments: cases)
    func command(_ input: CommandCase) throws {
        let sent = try requests(input.argv)
        #expect(sent.count == input.sent.count)
        for (request, expected) in zip(sent, input.sent) {
            #expect(request.method.rawValue == expected.method)
            #expect(request.path == expected.path)
            #expect(try wireBody(request) == expected.body)
            // Deletes, shutdown and finishing a CA rotation ask first; nothing else does (unlink
            // included).
            let asks =
                [.delete, .shutdown].contains(Verb.match(input.argv[0]))
                || (Verb.match(input.argv[0]) == .rotate && input.argv.contains("finish"))
            #expect((request.confirmation != nil) == asks)
        }
    }

    @Test("every command of the table has a case above")
    func everyCommandCovered() throws {
        var covered: Set<String> = []
        for input in Self.cases {
            let verb = try #require(Verb.match(input.argv[0]))
            let object = input.argv.count > 1 ? CLIObject.match(input.argv[1]) : nil
            let takesObject = CommandTable.commands.contains { $0.verb == verb && $0.object != nil }
            covered.insert("\(verb.rawValue) \(takesObject ? object?.rawValue ?? "" : "")")
        }
        for spec in CommandTable.commands {
            #expect(covered.contains("\(spec.verb.rawValue) \(spec.object?.rawValue ?? "")"), "\(spec.usage)")
        }
    }
}

/// Command lines dem-cli refuses before sending anything (exit status 2).
@Suite("dem-cli usage errors")
struct UsageErrorTests {
    /// A command line and a part of its error message.
    struct Refused: Sendable, CustomTestStringConvertible {
        var argv: [String]
        var message: String
        var testDescription: String { argv.isEmpty ? "(nothing)" : argv.joined(separator: " ") }

        init(_ argv: [String], _ message: String) {
            self.argv = argv
            self.message = message
        }
    }

    static let cases: [Refused] = [
        .init([], "missing verb"),
        .init(["frobnicate", "target"], "unknown verb 'frobnicate'"),
        .init(["li", "target"], "unknown verb 'li'"),
        .init(["list"], "missing object for 'list'"),
        .init(["list", "xyz"], "'list' does not take object 'xyz'"),
        .init(["link", "group", "lab"], "'link' does not take object 'group'"),
        .init(["add", "target"], "'add target' is missing <alias>"),
        .init(
            ["set", "local", "t1", "tcp", "ipv4"],
            "give the discovery controller's <trtype> <adrfam> <traddr> <trsvcid>, all four"
        ),
        .init(["set", "portid", "t1", "1", "tcp"], "'set portid' is missing <adrfam> <traddr> <trsvcid>"),
        .init(["rename", "target", "t1", "t2", "t3"], "'rename target' takes no more arguments, but got: t3"),
        .init(["config", "now"], "'config' takes no more arguments, but got: now"),
        .init(["audit", "all"], "the count must be a number 1...100000, not 'all'"),
        .init(["rotate", "everything"], "'rotate' rotates server, target or ca, not 'everything'"),
        .init(["rotate", "target"], "'rotate target' takes the target's alias, and only it"),
        .init(["rotate", "ca", "-5"], "overlap-seconds must be 0...31536000, not -5"),
        .init(["rotate", "ca", "finish", "now"], "'rotate ca' takes overlap seconds, or finish [force]"),
        .init(
            ["trust", "md5:00"],
            "the fingerprint must be sha256: and 64 hex digits, as dem logs it (tls-ca-fingerprint)"
        ),
        .init(
            ["set", "portid", "t1", "one", "tcp", "ipv4", "192.0.2.1", "4420"],
            "<portid> must be a number, not 'one'"
        ),
        .init(["delete", "portid", "t1", "1", "x"], "<portid> must be a number, not 'x'"),
        .init(["set", "inband", "t1", "tcp", "ipv4", "192.0.2.1", "nvme"], "<trsvcid> must be a number, not 'nvme'"),
        .init(["set", "ns", "t1", "s1", "1", "/dev/nvme0n1", "2"], "takes no [devnsid]"),
        .init(["delete", "target", "t1", ""], "<alias> is empty"),
        .init(["-j", "-r", "list", "target"], "-j/--json and -r/--raw cannot be used together"),
        .init(["--frob", "list", "target"], "unknown option '--frob'"),
        .init(["list", "target", "-x"], "unknown option '-x'"),
        .init(["-p", "http", "list", "target"], "'http' is not a port number"),
        .init(["list", "target", "--json=yes"], "option '--json' takes no value"),
        .init(["list", "target", "-s"], "option '-s' needs a value"),
    ]

    @Test("refused with a message naming the problem", arguments: cases)
    func refused(_ input: Refused) {
        let error = #expect(throws: UsageError.self) { try parseCommandLine(input.argv) }
        #expect(error?.message.contains(input.message) == true, "message: \(error?.message ?? "none")")
    }

    @Test("a wrong argument count shows the command's usage")
    func usageLine() {
        let error = #expect(throws: UsageError.self) { try parseCommandLine(["set", "portid", "t1", "1"]) }
        #expect(error?.usage == "dem-cli set portid <alias> <portid> <trtype> <adrfam> <traddr> <trsvcid>")
        let repeated = #expect(throws: UsageError.self) { try parseCommandLine(["delete", "ns", "t1", "s1"]) }
        #expect(repeated?.usage == "dem-cli delete ns <alias> <subnqn> <nsid>...")
    }

    @Test("a usage error exits 2 before anything is sent")
    func exitStatus() async {
        #expect(await DEMCLI.run(["frobnicate", "target"]) == .usage)
        #expect(await DEMCLI.run(["-j", "-r", "list", "target"]) == .usage)
    }
}

/// `-s/-p/-j/-r/-f/-t/--token-file`, `--` and where options may appear.
@Suite("dem-cli options")
struct OptionTests {
    @Test("defaults: 127.0.0.1:22345, text, asking before deletes, no token")
    func defaults() throws {
        let options = try options(["list", "target"])
        #expect(options == CLIOptions())
        #expect(options.server == "127.0.0.1")
        #expect(options.port == 22345)
        #expect(options.format == .text)
        #expect(!options.force)
        #expect(options.token == nil && options.tokenFile == nil)
        #expect(options.baseURL == "https://127.0.0.1:22345")
        #expect(options.caCertificate == nil)
    }

    /// A command line and the options it sets.
    struct OptionCase: Sendable, CustomTestStringConvertible {
        var argv: [String]
        var expected: CLIOptions
        var testDescription: String { argv.joined(separator: " ") }
    }

    static let cases: [OptionCase] = [
        .init(
            argv: ["-s", "dem.example", "-p", "8080", "-j", "-f", "-t", "abc", "list", "target"],
            expected: CLIOptions(server: "dem.example", port: 8080, format: .json, force: true, token: "abc")
        ),
        .init(
            argv: ["list", "--raw", "target", "--server=192.0.2.1", "--port=1234", "--token-file", "/tmp/t"],
            expected: CLIOptions(server: "192.0.2.1", port: 1234, format: .raw, tokenFile: "/tmp/t")
        ),
        .init(
            argv: ["-jf", "-sdem.example", "-p8080", "-tabc", "list", "target"],
            expected: CLIOptions(server: "dem.example", port: 8080, format: .json, force: true, token: "abc")
        ),
        .init(
            argv: ["--json", "--force", "--token=abc", "--token-file=/tmp/t", "list", "target"],
            expected: CLIOptions(format: .json, force: true, token: "abc", tokenFile: "/tmp/t")
        ),
        .init(argv: ["--yes", "list", "target"], expected: CLIOptions(force: true)),
        .init(argv: ["-y", "list", "target"], expected: CLIOptions(force: true)),
    ]

    @Test("options before, between and after the words", arguments: cases)
    func parsed(_ input: OptionCase) throws {
        #expect(try options(input.argv) == input.expected)
        #expect(try requests(input.argv).map(\.path) == ["/dem/targets"])
    }

    @Test("-- ends the options: what follows is a word even if it starts with -")
    func doubleDash() throws {
        let argv = ["-f", "delete", "--", "target", "-j", "--x"]
        let options = try options(argv)
        #expect(options.force)
        #expect(options.format == .text)
        #expect(try requests(argv).map(\.path) == ["/target/-j", "/target/--x"])
    }

    @Test("an IPv6 server goes in brackets in the URL; TLS unless -s http://")
    func ipv6Server() throws {
        #expect(try options(["-s", "::1", "-p", "8080", "config"]).baseURL == "https://[::1]:8080")
        #expect(try options(["-s", "[fd00::2]", "config"]).baseURL == "https://[fd00::2]:22345")
        #expect(try options(["-s", "http://[fd00::2]", "config"]).baseURL == "http://[fd00::2]:22345")
        #expect(try options(["-s", "https://head.example/", "config"]).baseURL == "https://head.example:22345")
        #expect(try options(["-s", "HTTP://head", "config"]).plainHTTP)
        #expect(try options(["--cacert", "/etc/dem/ca.pem", "config"]).caCertificate == "/etc/dem/ca.pem")
    }

    @Test("the CA: --cacert, else DEM_CACERT, else the pinned one and dem's data directory's that exist")
    func trustLookup() throws {
        let environment = ["HOME": "/home/a", "DEM_DATA_DIR": "/srv/dem"]
        var options = CLIOptions()
        options.server = "https://head.example"
        let pinned = "/home/a/.config/dem/trust/head.example_22345.pem"
        #expect(pinnedCAPath(host: options.host, port: options.port) { environment[$0] } == pinned)
        let both = resolveTrust(options: options, environment: { environment[$0] }, fileExists: { _ in true })
        #expect(both == TrustResolution(found: [pinned, "/srv/dem/fabric-ca.pem"]))
        let none = resolveTrust(options: options, environment: { environment[$0] }, fileExists: { _ in false })
        #expect(none.files.isEmpty)
        let fromEnvironment = resolveTrust(
            options: options,
            environment: { ($0 == "DEM_CACERT" ? "/etc/ca.pem" : environment[$0]) },
            fileExists: { _ in true }
        )
        #expect(fromEnvironment.files == ["/etc/ca.pem"])
        options.caCertificate = "/tmp/ca.pem"
        #expect(
            resolveTrust(options: options, environment: { environment[$0] }, fileExists: { _ in true }).files == [
                "/tmp/ca.pem"
            ]
        )
        // Without DEM_DATA_DIR: /var/lib/dem, then the user's state directory; XDG_CONFIG_HOME for pins.
        let user = ["HOME": "/home/a", "XDG_CONFIG_HOME": "/cfg"]
        #expect(
            dataDirectoryCAPaths { user[$0] } == [
                "/var/lib/dem/fabric-ca.pem", "/home/a/.local/state/dem/fabric-ca.pem",
            ]
        )
        #expect(pinnedCAPath(host: "fd00::2", port: 1) { user[$0] } == "/cfg/dem/trust/fd00__2_1.pem")
    }

    @Test("-h anywhere wins over errors; --version")
    func helpAndVersion() throws {
        #expect(try parseCommandLine(["frobnicate", "--bogus", "-h"]) == .help)
        #expect(try parseCommandLine(["--help"]) == .help)
        #expect(try parseCommandLine(["--version"]) == .version)
        #expect(CommandTable.helpText.contains("link target <alias> <group>"))
    }
}
