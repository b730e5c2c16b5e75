import DEMCore
import NIOHTTP1

// The pure half of dem-cli: argv in, the HTTP requests to send (or a usage error) out.

/// How dem-cli prints a successful answer.
enum OutputFormat: Equatable, Sendable {
    /// Tables and sentences for a person (the default).
    case text
    /// The server's JSON, indented (`-j`).
    case json
    /// The body exactly as received (`-r`).
    case raw
}

/// dem-cli's options: where dem is, how to print, which token to send and which CA to trust.
struct CLIOptions: Equatable, Sendable {
    /// `-s/--server`: dem's REST address (a name, an IPv4 or an IPv6 address), with `http://` for
    /// a dem serving plain HTTP (`--insecure-http`), `https://` (the default) otherwise.
    var server = "127.0.0.1"
    /// `-p/--port`: dem's REST port.
    var port = 22345
    /// `-j` or `-r`.
    var format = OutputFormat.text
    /// `-f/--force/--yes`: delete (or shut down) without asking.
    var force = false
    /// `-t/--token`.
    var token: String?
    /// `--token-file`.
    var tokenFile: String?
    /// `--cacert`: the CA to verify dem's certificate with.
    var caCertificate: String?

    /// Whether dem is reached in plain HTTP (`-s http://…`).
    var plainHTTP: Bool { server.lowercased().hasPrefix("http://") }

    /// The server without its scheme and brackets.
    var host: String {
        var host = Substring(server)
        for scheme in ["http://", "https://"] where host.lowercased().hasPrefix(scheme) {
            host = host.dropFirst(scheme.count)
        }
        while host.hasSuffix("/") { host = host.dropLast() }
        if host.hasPrefix("["), host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        return String(host)
    }

    /// `https://HOST:PORT` (`http://` with `-s http://…`), with an IPv6 address in brackets.
    var baseURL: String {
        let host = self.host.contains(":") ? "[\(self.host)]" : self.host
        return "\(plainHTTP ? "http" : "https")://\(host):\(port)"
    }
}

/// What the command line asks for.
enum CLICommand: Equatable, Sendable {
    /// `-h/--help`: print ``CommandTable/helpText``.
    case help
    /// `--version`.
    case version
    /// `--generate-completion-script SHELL`: print ``Completion/script(for:)``.
    case completionScript(CompletionShell)
    /// Send these requests, in order, with these options.
    case run(CLIOptions, [CLIRequest])
}

/// One HTTP request dem-cli sends, and how to show its answer.
struct CLIRequest: Equatable, Sendable {
    var method: HTTPMethod
    /// The path, its segments already percent-encoded (``percentEncodedPathSegment(_:)``).
    var path: String
    /// The JSON body, if any.
    var body: JSONValue?
    /// How to print a successful answer in text mode.
    var rendering: Rendering
    /// The question to ask before a delete (`Delete target 't1'?`), nil when none is needed.
    var confirmation: String?

    init(
        _ method: HTTPMethod,
        _ path: String,
        body: JSONValue? = nil,
        rendering: Rendering,
        confirmation: String? = nil
    ) {
        self.method = method
        self.path = path
        self.body = body
        self.rendering = rendering
        self.confirmation = confirmation
    }
}

/// How a successful answer is printed in text mode (see `Render.swift`).
enum Rendering: Equatable, Sendable {
    /// One name per line from the array under this key (`{"Targets":[…]}`).
    case names(key: String)
    /// `GET /dem`: `ID: trtype adrfam addr:svc` lines.
    case config
    /// `GET /target/<t>`.
    case target
    /// `GET /dem/targets`: a table of the targets' run-time states.
    case targetStates
    /// `GET /target/<t>/status`.
    case targetStatus
    /// `GET /host/<h>`.
    case host
    /// `GET /group/<g>`.
    case group
    /// `GET /dem/tokens`.
    case tokens
    /// `GET /dem/audit`.
    case audit
    /// `GET /registration`: registered and seen hosts.
    case registrations
    /// `POST /registration/<r>/adopt`: the host or target made.
    case adopted
    /// `GET /zoning`: the configured and the active zoning databases.
    case zoning
    /// `GET /zoning/diff`, `POST /zoning/activate`: per host, the entries gained and lost.
    case zoningChanges(activated: Bool)
    /// Not a request: `dem-cli trust` pins dem's CA after showing its fingerprint (or checking
    /// the one given).
    case trust(fingerprint: String?)
    /// `POST /dem/tokens`: the new token's secret.
    case tokenCreated
    /// `GET /host/<h>/logpage`.
    case hostLogPage
    /// `GET /target/<t>/logpage`.
    case targetLogPage
    /// A change: print this sentence.
    case done(String)
    /// An action: print the server's `message`, or this sentence when there is none.
    case action(String)
    /// Anything else: the server's `message`, or its JSON.
    case generic
}

/// A command line dem-cli cannot run: what is wrong, and the usage of the command when known.
struct UsageError: Error, Equatable, Sendable {
    var message: String
    var usage: String?

    init(_ message: String, usage: String? = nil) {
        self.message = message
        self.usage = usage
    }
}

// MARK: - Verbs and objects

/// A dem-cli verb. It matches its full name or any prefix of three letters or more (`del`).
enum Verb: String, CaseIterable, Sendable {
    case list, add, set, get, delete, rename, link, unlink, edit, refresh, reconfigure, usage, config, shutdown
    case show
    case adopt
    case diff
    case activate
    case logpage
    case audit
    case trust
    case rotate

    /// The verb `word` names, if any.
    static func match(_ word: String) -> Verb? {
        let word = word.lowercased()
        guard word.count >= 3 else { return nil }
        return allCases.first { $0.rawValue.hasPrefix(word) }
    }
}

/// A dem-cli object. As in nvme-dem, a word names the object that starts with the same letter
/// (`t`, `tgt`, `targets` are all target), except the objects that share a first letter with
/// another: `token` is written `tok…`, `join-token` `join…`, and `registration` `reg…`.
enum CLIObject: String, CaseIterable, Sendable {
    case group, target, host, subsystem, portid, acl, ns, local, inband, outofband, refresh, token
    case joinToken = "join-token"
    case registration
    case zone

    /// The objects named by a longer prefix than their first letter, with that prefix.
    static let prefixed: [(prefix: String, object: CLIObject)] = [
        ("tok", .token), ("join", .joinToken), ("reg", .registration),
    ]

    /// The object `word` names, if any.
    static func match(_ word: String) -> CLIObject? {
        let word = word.lowercased()
        if let named = prefixed.first(where: { word.hasPrefix($0.prefix) }) { return named.object }
        guard let first = word.first else { return nil }
        return allCases.first { object in
            !prefixed.contains { $0.object == object } && object.rawValue.first == first
        }
    }
}

// MARK: - Options

/// Parses dem-cli's whole command line (without the program name).
///
/// Options may come before, between or after the words (`--` ends them); a word that looks like
/// a negative number (`-1`) is an argument. `-h` or `--help` anywhere wins over every error.
func parseCommandLine(_ arguments: [String]) throws(UsageError) -> CLICommand {
    var options = CLIOptions()
    var words: [String] = []
    var firstError: UsageError?
    var wantsHelp = false
    var wantsVersion = false
    var sawJSON = false
    var sawRaw = false
    var completion: CompletionShell?
    var keyMembers: [JSONMember] = []
    var removeKey = false

    func note(_ error: UsageError) { if firstError == nil { firstError = error } }

    var index = 0
    var optionsEnded = false
    while index < arguments.count {
        let argument = arguments[index]
        index += 1
        if optionsEnded || !argument.hasPrefix("-") || argument == "-" || isNegativeNumber(argument) {
            words.append(argument)
            continue
        }
        if argument == "--" {
            optionsEnded = true
            continue
        }

        // Split into (name, inline value): --name=value, -sHOST, or a cluster of flags -jf.
        var pending: [(name: String, inline: String?)] = []
        if argument.hasPrefix("--") {
            let body = argument.dropFirst(2)
            if let equals = body.firstIndex(of: "=") {
                pending.append(("--" + body[..<equals], String(body[body.index(after: equals)...])))
            } else {
                pending.append((argument, nil))
            }
        } else {
            var letters = Substring(argument.dropFirst())
            while let letter = letters.first {
                letters = letters.dropFirst()
                let name = "-\(letter)"
                if OptionName.takesValue(name) {
                    pending.append((name, letters.isEmpty ? nil : String(letters)))
                    break
                }
                pending.append((name, nil))
            }
        }

        for (name, inline) in pending {
            guard let option = OptionName(name) else {
                note(UsageError("unknown option '\(name)'"))
                continue
            }
            var value: String?
            if OptionName.takesValue(name) {
                if let inline {
                    value = inline
                } else if index < arguments.count {
                    value = arguments[index]
                    index += 1
                } else {
                    note(UsageError("option '\(name)' needs a value"))
                    continue
                }
            } else if inline != nil {
                note(UsageError("option '\(name)' takes no value"))
                continue
            }
            switch option {
            case .server:
                if value!.isEmpty { note(UsageError("option '\(name)' needs a host")) }
                options.server = value!
            case .port:
                if let port = Int(value!), (1...65535).contains(port) {
                    options.port = port
                } else {
                    note(UsageError("option '\(name)': '\(value!)' is not a port number (1-65535)"))
                }
            case .json: sawJSON = true
            case .raw: sawRaw = true
            case .force: options.force = true
            case .token: options.token = value!
            case .tokenFile: options.tokenFile = value!
            case .caCertificate: options.caCertificate = value!
            case .help: wantsHelp = true
            case .version: wantsVersion = true
            case .dhchapSecret:
                if value == "none" {
                    removeKey = true
                } else {
                    keyMembers.append(JSONMember(key: "Secret", value: .string(value!)))
                }
            case .dhchapControllerSecret:
                keyMembers.append(JSONMember(key: "ControllerSecret", value: .string(value == "none" ? "" : value!)))
            case .dhchapHash: keyMembers.append(JSONMember(key: "Hash", value: .string(value!)))
            case .dhchapGroup: keyMembers.append(JSONMember(key: "DHGroup", value: .string(value!)))
            case .completionScript:
                if let shell = CompletionShell(rawValue: value!) {
                    completion = shell
                } else {
                    note(UsageError("option '\(name)': '\(value!)' is not a shell (bash or zsh)"))
                }
            }
        }
    }

    if wantsHelp { return .help }
    if wantsVersion { return .version }
    if let firstError { throw firstError }
    if let completion { return .completionScript(completion) }
    if sawJSON && sawRaw { throw UsageError("-j/--json and -r/--raw cannot be used together") }
    options.format = sawRaw ? .raw : sawJSON ? .json : .text
    guard !keyMembers.isEmpty || removeKey else { return .run(options, try CommandTable.requests(for: words)) }
    // DH-HMAC-CHAP keys go with `set host <alias> [<hostnqn> [hostid]]`.
    guard words.count >= 3, Verb.match(words[0]) == .set, CLIObject.match(words[1]) == .host else {
        throw UsageError("--dhchap-* options go with 'dem-cli set host <alias> [<hostnqn> [hostid]]'")
    }
    if removeKey && !keyMembers.isEmpty {
        throw UsageError("--dhchap-secret none removes the host's keys; it takes no other --dhchap-* option")
    }
    let alias = words[2]
    var requests = words.count > 3 ? try CommandTable.requests(for: words) : []
    if removeKey {
        requests.append(
            CLIRequest(
                .DELETE,
                path("host", alias, "dhchap"),
                rendering: .done("Host '\(alias)' has no DH-HMAC-CHAP key now")
            )
        )
    } else {
        requests.append(CLIRequest(.PUT, path("host", alias, "dhchap"), body: .object(keyMembers), rendering: .generic))
    }
    return .run(options, requests)
}

/// dem-cli's options, once: the parser, `--help` and the shell completions read them from here.
enum OptionName: CaseIterable, Sendable {
    case server, port, json, raw, force, token, tokenFile, caCertificate, help, version, completionScript
    case dhchapSecret, dhchapControllerSecret, dhchapHash, dhchapGroup

    /// Every spelling, short ones first.
    var spellings: [String] {
        switch self {
        case .server: ["-s", "--server"]
        case .port: ["-p", "--port"]
        case .json: ["-j", "--json"]
        case .raw: ["-r", "--raw"]
        case .force: ["-f", "-y", "--force", "--yes"]
        case .token: ["-t", "--token"]
        case .tokenFile: ["--token-file"]
        case .caCertificate: ["--cacert"]
        case .help: ["-h", "--help"]
        case .version: ["--version"]
        case .completionScript: ["--generate-completion-script"]
        case .dhchapSecret: ["--dhchap-secret"]
        case .dhchapControllerSecret: ["--dhchap-ctrl-secret"]
        case .dhchapHash: ["--dhchap-hash"]
        case .dhchapGroup: ["--dhchap-dhgroup"]
        }
    }

    /// The name of its value in the help, nil for a flag.
    var valueName: String? {
        switch self {
        case .server: "HOST"
        case .port: "N"
        case .token: "TOKEN"
        case .tokenFile, .caCertificate: "FILE"
        case .completionScript: "SHELL"
        case .dhchapSecret, .dhchapControllerSecret: "SECRET"
        case .dhchapHash: "HASH"
        case .dhchapGroup: "GROUP"
        case .json, .raw, .force, .help, .version: nil
        }
    }

    /// One line for `--help` and the completions.
    var summary: String {
        switch self {
        case .server: "dem's REST address (default 127.0.0.1; http://HOST for a dem without TLS)"
        case .port: "dem's REST port (default 22345)"
        case .json: "print the server's JSON, indented ({} when there is no body)"
        case .raw: "print the server's body exactly as received"
        case .force: "delete (or shut down) without asking"
        case .token: "the API token to send"
        case .tokenFile: "read the API token from FILE"
        case .caCertificate: "verify dem's certificate with this CA (PEM; default: pinned, dem's data directory)"
        case .help: "print this help"
        case .version: "print dem-cli's version"
        case .completionScript: "print the bash or zsh completion script"
        case .dhchapSecret:
            "set host: the host's DH-HMAC-CHAP secret (generate, DHHC-1:hh:…:, or none to remove its keys)"
        case .dhchapControllerSecret:
            "set host: dem's secret for two-way authentication (generate, DHHC-1:hh:…:, or none)"
        case .dhchapHash: "set host: the hash dem picks (sha256, sha384, sha512)"
        case .dhchapGroup: "set host: the DH group dem picks (null, ffdhe2048 … ffdhe8192)"
        }
    }

    init?(_ name: String) {
        guard let option = Self.allCases.first(where: { $0.spellings.contains(name) }) else { return nil }
        self = option
    }

    static func takesValue(_ name: String) -> Bool { OptionName(name)?.valueName != nil }
}

/// Whether `word` is a negative integer such as `-1` (an argument, not an option).
private func isNegativeNumber(_ word: String) -> Bool {
    word.count > 1 && word.hasPrefix("-") && word.dropFirst().allSatisfy(\.isASCIIDigit)
}

extension Character {
    fileprivate var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}

// MARK: - Paths

/// `segment` percent-encoded for a URL path: every byte outside the unreserved set
/// (`A-Z a-z 0-9 - . _ ~`) and `:` `@` becomes `%XX`; `.` and `..` are encoded whole so they
/// cannot climb the path.
func percentEncodedPathSegment(_ segment: String) -> String {
    if segment == "." || segment == ".." { return String(repeating: "%2E", count: segment.count) }
    var encoded = ""
    for byte in segment.utf8 {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
            UInt8(ascii: "~"), UInt8(ascii: ":"), UInt8(ascii: "@"):
            encoded.unicodeScalars.append(Unicode.Scalar(byte))
        default:
            let hex = String(byte, radix: 16, uppercase: true)
            encoded += "%" + (hex.count == 1 ? "0" : "") + hex
        }
    }
    return encoded
}

/// A path from its segments, each percent-encoded: `path("target", "t 1")` is `/target/t%201`.
func path(_ segments: String...) -> String {
    "/" + segments.map(percentEncodedPathSegment).joined(separator: "/")
}

// MARK: - Commands

/// One command of the table: its words, its arguments, and how it becomes requests.
struct CommandSpec: Sendable {
    var verb: Verb
    var object: CLIObject?
    /// Required arguments, as shown in the usage (`<alias>`).
    var arguments: [String]
    /// Optional trailing arguments (`[devnsid]`).
    var optional: [String] = []
    /// The last required argument may be repeated (`delete target t1 t2`); the command is built
    /// once per value.
    var repeatsLast = false
    /// One line for `--help`.
    var summary: String
    /// The requests for exactly `arguments` (plus any optional ones given).
    var build: @Sendable ([String]) throws(UsageError) -> [CLIRequest]

    /// `dem-cli verb object <args…>`.
    var usage: String {
        var words = ["dem-cli", verb.rawValue]
        if let object { words.append(object.rawValue) }
        for (index, argument) in arguments.enumerated() {
            words.append(repeatsLast && index == arguments.count - 1 ? argument + "..." : argument)
        }
        words += optional
        return words.joined(separator: " ")
    }
}

/// Every command dem-cli knows, and the functions that read a command line with them.
enum CommandTable {
    /// The requests `words` (verb, object, arguments; options already removed) ask for.
    static func requests(for words: [String]) throws(UsageError) -> [CLIRequest] {
        guard let verbWord = words.first else {
            throw UsageError("missing verb (one of: \(Verb.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        guard let verb = Verb.match(verbWord) else {
            throw UsageError(
                "unknown verb '\(verbWord)' (one of: \(Verb.allCases.map(\.rawValue).joined(separator: ", ")))"
            )
        }
        let forVerb = commands.filter { $0.verb == verb }
        let spec: CommandSpec
        var arguments: ArraySlice<String>
        if forVerb.count == 1, forVerb[0].object == nil {
            spec = forVerb[0]
            arguments = words.dropFirst()
        } else {
            let objects = forVerb.compactMap(\.object).map(\.rawValue).joined(separator: ", ")
            guard words.count > 1 else {
                throw UsageError("missing object for '\(verb.rawValue)' (one of: \(objects))")
            }
            guard let object = CLIObject.match(words[1]),
                let found = forVerb.first(where: { $0.object == object })
            else {
                throw UsageError("'\(verb.rawValue)' does not take object '\(words[1])' (one of: \(objects))")
            }
            spec = found
            arguments = words.dropFirst(2)
        }

        let required = spec.arguments.count
        let given = arguments.count
        let name = [spec.verb.rawValue, spec.object?.rawValue].compactMap { $0 }.joined(separator: " ")
        if given < required {
            let missing = spec.arguments[given...].joined(separator: " ")
            throw UsageError("'\(name)' is missing \(missing)", usage: spec.usage)
        }
        if !spec.repeatsLast && given > required + spec.optional.count {
            let extra = arguments.dropFirst(required + spec.optional.count).joined(separator: " ")
            throw UsageError("'\(name)' takes no more arguments, but got: \(extra)", usage: spec.usage)
        }
        if let empty = arguments.firstIndex(of: "") {
            let position = empty - arguments.startIndex
            // Past the optional ones, an argument is another value of a repeated last argument.
            let label =
                position < required
                ? spec.arguments[position]
                : position - required < spec.optional.count
                    ? spec.optional[position - required] : spec.arguments[required - 1]
            throw UsageError("'\(name)': \(label) is empty", usage: spec.usage)
        }

        do {
            guard spec.repeatsLast else { return try spec.build(Array(arguments)) }
            let fixed = Array(arguments.prefix(required - 1))
            var requests: [CLIRequest] = []
            for value in arguments.dropFirst(required - 1) {
                requests += try spec.build(fixed + [value])
            }
            return requests
        } catch {
            throw UsageError(error.message, usage: error.usage ?? spec.usage)
        }
    }

    /// dem-cli's `--help` text.
    static var helpText: String {
        var lines = [
            "Usage: dem-cli [options] <verb> [object] [arguments...]",
            "",
            "The administrator's command line over dem's REST API. A verb may be shortened to its first",
            "three letters (del = delete); an object to its first letter (t = target, s = subsystem,",
            "p = portid, a = acl, n = ns, h = host, g = group, l = local, i = inband, o = outofband,",
            "r = refresh), except token, written token or tok.",
            "",
            "Commands:",
        ]
        let width = 52
        for spec in commands {
            let usage = "  " + spec.usage.dropFirst("dem-cli ".count)
            if usage.count < width {
                lines.append(usage + String(repeating: " ", count: width - usage.count) + spec.summary)
            } else {
                lines.append(usage)
                lines.append(String(repeating: " ", count: width) + spec.summary)
            }
        }
        lines += [
            "",
            "Options:",
        ]
        for option in OptionName.allCases {
            let short = option.spellings.filter { !$0.hasPrefix("--") }
            var names = (short.isEmpty ? "    " : "") + option.spellings.joined(separator: ", ")
            if let value = option.valueName { names += " " + value }
            let column = 28
            lines.append(
                "  " + names
                    + (names.count < column
                        ? String(repeating: " ", count: column - names.count)
                        : "\n" + String(repeating: " ", count: column + 2))
                    + option.summary
            )
        }
        lines += [
            "",
            "The token is the first of: --token, $DEM_TOKEN, --token-file, $DEM_TOKEN_FILE, then dem's",
            "admin token, admin.token in $DEM_DATA_DIR if set, else /var/lib/dem/admin.token if readable,",
            "else ${XDG_STATE_HOME:-$HOME/.local/state}/dem/admin.token. It is sent as",
            "'Authorization: Bearer <token>'.",
            "",
            "Deletes ask 'Delete target 't1'? (N/y)' on the terminal unless -f is given; without a",
            "terminal they are refused unless -f is given.",
            "",
            "Exit status:",
            "  0  success",
            "  1  dem refused the request (a 4xx answer other than 401/403), or a delete was not confirmed",
            "  2  usage error: unknown verb, object or option, wrong arguments",
            "  3  dem is not running or cannot be reached",
            "  4  authentication or permission refused (401/403)",
            "  5  server error (5xx) or an answer dem-cli cannot read",
            "",
            "When several objects are named (delete target t1 t2), dem-cli goes on after a refusal and",
            "exits with the highest status.",
        ]
        return lines.joined(separator: "\n") + "\n"
    }

    /// The command table, in the order `--help` lists it.
    static let commands: [CommandSpec] = [
        // dem itself
        CommandSpec(verb: .config, arguments: [], summary: "dem's discovery listeners (GET /dem)") { _ in
            [CLIRequest(.GET, path("dem"), rendering: .config)]
        },
        CommandSpec(verb: .shutdown, arguments: [], summary: "stop dem") { _ in
            [
                CLIRequest(
                    .POST,
                    path("dem", "shutdown"),
                    rendering: .action("dem is shutting down"),
                    confirmation:
                        "Stop dem? Hosts lose discovery and change notices, and the REST API stops, until it is started again."
                )
            ]
        },

        CommandSpec(
            verb: .trust,
            arguments: [],
            optional: ["[sha256:<fingerprint>]"],
            summary: "pin dem's CA for this server after showing its fingerprint (or checking the one given)"
        ) { a throws(UsageError) in
            let fingerprint = a.first?.lowercased()
            if let fingerprint {
                let hex = fingerprint.dropFirst("sha256:".count)
                guard fingerprint.hasPrefix("sha256:"), hex.count == 64, hex.allSatisfy(\.isHexDigit) else {
                    throw UsageError(
                        "the fingerprint must be sha256: and 64 hex digits, as dem logs it (tls-ca-fingerprint)"
                    )
                }
            }
            return [CLIRequest(.GET, path("health"), rendering: .trust(fingerprint: fingerprint))]
        },
        CommandSpec(
            verb: .rotate,
            arguments: ["<server|target|ca>"],
            optional: ["[alias|overlap-seconds|finish]", "[force]"],
            summary:
                "issue dem's certificate again, a target's, or the fabric CA (ca [seconds]: start, overlap 604800 s unless given; ca finish [force])"
        ) { a throws(UsageError) in
            let usage =
                "dem-cli rotate server | rotate target <alias> | rotate ca [overlap-seconds] | rotate ca finish [force]"
            var body: [(String, JSONValue)] = []
            switch a[0].lowercased() {
            case "server":
                guard a.count == 1 else { throw UsageError("'rotate server' takes no more arguments", usage: usage) }
                body = [("What", .string("server"))]
            case "target":
                guard a.count == 2 else {
                    throw UsageError("'rotate target' takes the target's alias, and only it", usage: usage)
                }
                body = [("What", .string("target")), ("Target", .string(a[1]))]
            case "ca":
                body = [("What", .string("ca"))]
                switch (a.count > 1 ? a[1].lowercased() : nil, a.count > 2 ? a[2].lowercased() : nil) {
                case (nil, nil):
                    break
                case ("finish", nil):
                    body.append(("Finish", .bool(true)))
                case ("finish", "force"):
                    body += [("Finish", .bool(true)), ("Force", .bool(true))]
                case (let seconds?, nil):
                    body.append(
                        ("Overlap", .number(String(try integer(seconds, named: "overlap-seconds", in: 0...31_536_000))))
                    )
                default:
                    throw UsageError("'rotate ca' takes overlap seconds, or finish [force]", usage: usage)
                }
            default:
                throw UsageError("'rotate' rotates server, target or ca, not '\(a[0])'", usage: usage)
            }
            let finishing = body.contains { $0.0 == "Finish" }
            return [
                CLIRequest(
                    .POST,
                    path("dem", "rotate"),
                    body: .members(body),
                    rendering: .action("rotated"),
                    confirmation: finishing
                        ? "Finish the CA rotation? The old CA goes: a target or client that trusts only it refuses dem until it is enrolled or trusts again."
                        : nil
                )
            ]
        },
        CommandSpec(
            verb: .audit,
            arguments: [],
            optional: ["[count]"],
            summary: "the last changes asked of dem and refused credentials (default 20): who, from where, what, answer"
        ) { a throws(UsageError) in
            let count = a.first ?? "20"
            guard let number = Int(count), (1...100_000).contains(number) else {
                throw UsageError("the count must be a number 1...100000, not '\(count)'")
            }
            return [CLIRequest(.GET, path("dem", "audit") + "?limit=\(number)", rendering: .audit)]
        },

        // groups
        CommandSpec(verb: .list, object: .group, arguments: [], summary: "list the groups") { _ in
            [CLIRequest(.GET, path("group"), rendering: .names(key: "Groups"))]
        },
        CommandSpec(verb: .add, object: .group, arguments: ["<name>"], summary: "create a group") { a in
            [CLIRequest(.POST, path("group", a[0]), rendering: .done("Group '\(a[0])' added"))]
        },
        CommandSpec(verb: .set, object: .group, arguments: ["<name>"], summary: "create a group (PUT)") { a in
            [
                CLIRequest(
                    .PUT,
                    path("group"),
                    body: .members(["Name": .string(a[0])]),
                    rendering: .done("Group '\(a[0])' added")
                )
            ]
        },
        CommandSpec(verb: .get, object: .group, arguments: ["<name>"], summary: "show a group's members") { a in
            [CLIRequest(.GET, path("group", a[0]), rendering: .group)]
        },
        CommandSpec(
            verb: .delete,
            object: .group,
            arguments: ["<name>"],
            repeatsLast: true,
            summary: "delete groups"
        ) { a in
            [
                CLIRequest(
                    .DELETE,
                    path("group", a[0]),
                    rendering: .done("Group '\(a[0])' deleted"),
                    confirmation: "Delete group '\(a[0])'?"
                )
            ]
        },
        CommandSpec(verb: .rename, object: .group, arguments: ["<old>", "<new>"], summary: "rename a group") { a in
            [
                CLIRequest(
                    .PATCH,
                    path("group", a[0]),
                    body: .members(["Name": .string(a[1])]),
                    rendering: .done("Group '\(a[0])' renamed to '\(a[1])'")
                )
            ]
        },
        CommandSpec(
            verb: .link,
            object: .target,
            arguments: ["<alias>", "<group>"],
            summary: "put a target in a group"
        ) { a in
            [
                CLIRequest(
                    .POST,
                    path("group", a[1], "target", a[0]),
                    rendering: .done("Target '\(a[0])' linked to group '\(a[1])'")
                )
            ]
        },
        CommandSpec(
            verb: .unlink,
            object: .target,
            arguments: ["<alias>", "<group>"],
            summary: "take a target out of a group"
        ) { a in
            [
                CLIRequest(
                    .DELETE,
                    path("group", a[1], "target", a[0]),
                    rendering: .done("Target '\(a[0])' unlinked from group '\(a[1])'")
                )
            ]
        },
        CommandSpec(verb: .link, object: .host, arguments: ["<alias>", "<group>"], summary: "put a host in a group") {
            a in
            [
                CLIRequest(
                    .POST,
                    path("group", a[1], "host", a[0]),
                    rendering: .done("Host '\(a[0])' linked to group '\(a[1])'")
                )
            ]
        },
        CommandSpec(
            verb: .unlink,
            object: .host,
            arguments: ["<alias>", "<group>"],
            summary: "take a host out of a group"
        ) { a in
            [
                CLIRequest(
                    .DELETE,
                    path("group", a[1], "host", a[0]),
                    rendering: .done("Host '\(a[0])' unlinked from group '\(a[1])'")
                )
            ]
        },

        // targets
        CommandSpec(verb: .list, object: .target, arguments: [], summary: "list the targets and their states") { _ in
            [CLIRequest(.GET, path("dem", "targets"), rendering: .targetStates)]
        },
        CommandSpec(verb: .add, object: .target, arguments: ["<alias>"], summary: "create a target") { a in
            [CLIRequest(.POST, path("target", a[0]), rendering: .done("Target '\(a[0])' added"))]
        },
        CommandSpec(verb: .set, object: .target, arguments: ["<alias>"], summary: "create a target (PUT)") { a in
            [
                CLIRequest(
                    .PUT,
                    path("target"),
                    body: .members(["Alias": .string(a[0])]),
                    rendering: .done("Target '\(a[0])' added")
                )
            ]
        },
        CommandSpec(
            verb: .get,
            object: .target,
            arguments: ["<alias>"],
            summary: "show a target: mode, ports, subsystems, ACLs, then its state"
        ) { a in
            [
                CLIRequest(.GET, path("target", a[0]), rendering: .target),
                CLIRequest(.GET, path("target", a[0], "status"), rendering: .targetStatus),
            ]
        },
        CommandSpec(
            verb: .delete,
            object: .target,
            arguments: ["<alias>"],
            repeatsLast: true,
            summary: "delete targets"
        ) { a in
            [
                CLIRequest(
                    .DELETE,
                    path("target", a[0]),
                    rendering: .done("Target '\(a[0])' deleted"),
                    confirmation: "Delete target '\(a[0])'?"
                )
            ]
        },
        CommandSpec(verb: .rename, object: .target, arguments: ["<old>", "<new>"], summary: "rename a target") {
            a in
            [
                CLIRequest(
                    .PATCH,
                    path("target", a[0]),
                    body: .members(["Alias": .string(a[1])]),
                    rendering: .done("Target '\(a[0])' renamed to '\(a[1])'")
                )
            ]
        },
        CommandSpec(
            verb: .set,
            object: .local,
            arguments: ["<alias>"],
            optional: ["[trtype]", "[adrfam]", "[traddr]", "[trsvcid]"],
            summary: "manage a target locally; dem reads its discovery controller (at this address, else at its ports)"
        ) { a throws(UsageError) in
            var members = [JSONMember(key: "MgmtMode", value: "LocalMgmt")]
            var where_ = ""
            if a.count > 1 {
                guard a.count == 5 else {
                    throw UsageError("give the discovery controller's <trtype> <adrfam> <traddr> <trsvcid>, all four")
                }
                let service = try integer(a[4], named: "<trsvcid>", in: 1...65535)
                let interface = JSONValue.members([
                    "TRTYPE": .string(a[1]), "ADRFAM": .string(a[2]), "TRADDR": .string(a[3]),
                    "TRSVCID": .int(service),
                ])
                members.append(JSONMember(key: "Interface", value: interface))
                where_ = "; dem reads its discovery controller at \(a[1]) \(a[2]) \(hostPort(a[3], service))"
            }
            return [
                CLIRequest(
                    .PATCH,
                    path("target", a[0]),
                    body: .object(members),
                    rendering: .done("Target '\(a[0])' is managed locally\(where_)")
                )
            ]
        },
        CommandSpec(
            verb: .set,
            object: .inband,
            arguments: ["<alias>", "<trtype>", "<adrfam>", "<traddr>", "<trsvcid>"],
            summary: "manage a target in band"
        ) { a throws(UsageError) in
            let service = try integer(a[4], named: "<trsvcid>", in: 0...65535)
            let interface = JSONValue.members([
                "TRTYPE": .string(a[1]), "ADRFAM": .string(a[2]), "TRADDR": .string(a[3]), "TRSVCID": .int(service),
            ])
            return [
                CLIRequest(
                    .PATCH,
                    path("target", a[0]),
                    body: .members(["MgmtMode": "InBandMgmt", "Interface": interface]),
                    rendering: .done(
                        "Target '\(a[0])' is managed in band through \(a[1]) \(a[2]) \(hostPort(a[3], service))"
                    )
                )
            ]
        },
        CommandSpec(
            verb: .set,
            object: .outofband,
            arguments: ["<alias>", "<family>", "<address>", "<port>"],
            summary: "manage a target out of band (dem-em)"
        ) { a throws(UsageError) in
            let port = try integer(a[3], named: "<port>", in: 0...65535)
            let interface = JSONValue.members([
                "FAMILY": .string(a[1]), "ADDRESS": .string(a[2]), "PORT": .int(port),
            ])
            return [
                CLIRequest(
                    .PATCH,
                    path("target", a[0]),
                    body: .members(["MgmtMode": "OutOfBandMgmt", "Interface": interface]),
                    rendering: .done(
                        "Target '\(a[0])' is managed out of band through \(a[1]) \(hostPort(a[2], port))"
                    )
                )
            ]
        },
        CommandSpec(
            verb: .set,
            object: .refresh,
            arguments: ["<alias>", "<minutes>"],
            summary: "log page refresh period (0 = off)"
        ) { a throws(UsageError) in
            let minutes = try integer(a[1], named: "<minutes>", in: 0...Int(Int32.max))
            let sentence =
                minutes == 0
                ? "Target '\(a[0])' refresh turned off"
                : "Target '\(a[0])' refreshed every \(minutes) minute\(minutes == 1 ? "" : "s")"
            return [
                CLIRequest(
                    .PATCH,
                    path("target", a[0]),
                    body: .members(["Refresh": .int(minutes)]),
                    rendering: .done(sentence)
                )
            ]
        },
        CommandSpec(
            verb: .refresh,
            object: .target,
            arguments: ["<alias>"],
            summary: "fetch the target's log pages again"
        ) { a in
            [
                CLIRequest(
                    .POST,
                    path("target", a[0], "refresh"),
                    rendering: .action("Target '\(a[0])' refresh requested")
                )
            ]
        },
        CommandSpec(
            verb: .reconfigure,
            object: .target,
            arguments: ["<alias>"],
            summary: "push the whole configuration to the target again"
        ) { a in
            [
                CLIRequest(
                    .POST,
                    path("target", a[0], "reconfig"),
                    rendering: .action("Target '\(a[0])' reconfiguration requested")
                )
            ]
        },
        CommandSpec(verb: .usage, object: .target, arguments: ["<alias>"], summary: "the target's usage") { a in
            [CLIRequest(.GET, path("target", a[0], "usage"), rendering: .generic)]
        },
        CommandSpec(
            verb: .logpage,
            object: .target,
            arguments: ["<alias>"],
            summary: "the discovery entries of a target"
        ) { a in
            [CLIRequest(.GET, path("target", a[0], "logpage"), rendering: .targetLogPage)]
        },

        // subsystems
        CommandSpec(
            verb: .add,
            object: .subsystem,
            arguments: ["<alias>", "<subnqn>"],
            summary: "create a subsystem open to any host"
        ) { a in
            [
                CLIRequest(
                    .POST,
                    path("target", a[0], "subsystem", a[1]),
                    rendering: .done("Subsystem '\(a[1])' added to target '\(a[0])'")
                )
            ]
        },
        CommandSpec(
            verb: .set,
            object: .subsystem,
            arguments: ["<alias>", "<subnqn>", "<allow_any>"],
            summary: "create a subsystem (allow_any 1 or 0)"
        ) { a throws(UsageError) in
            let allowAny = try allowAnyHost(a[2])
            return [
                CLIRequest(
                    .PUT,
                    path("target", a[0], "subsystem"),
                    body: .members(["SUBNQN": .string(a[1]), "AllowAnyHost": .int(allowAny)]),
                    rendering: .done("Subsystem '\(a[1])' added to target '\(a[0])'")
                )
            ]
        },
        CommandSpec(
            verb: .edit,
            object: .subsystem,
            arguments: ["<alias>", "<subnqn>", "<allow_any>"],
            summary: "open a subsystem to any host (1) or not (0)"
        ) { a throws(UsageError) in
            let allowAny = try allowAnyHost(a[2])
            return [
                CLIRequest(
                    .PUT,
                    path("target", a[0], "subsystem", a[1]),
                    body: .members(["AllowAnyHost": .int(allowAny)]),
                    rendering: .done(
                        "Subsystem '\(a[1])' of target '\(a[0])' "
                            + (allowAny == 1 ? "allows any host" : "allows only the hosts of its access list")
                    )
                )
            ]
        },
        CommandSpec(
            verb: .delete,
            object: .subsystem,
            arguments: ["<alias>", "<subnqn>"],
            repeatsLast: true,
            summary: "delete subsystems"
        ) { a in
            [
                CLIRequest(
                    .DELETE,
                    path("target", a[0], "subsystem", a[1]),
                    rendering: .done("Subsystem '\(a[1])' deleted from target '\(a[0])'"),
                    confirmation: "Delete subsystem '\(a[1])' of target '\(a[0])'?"
                )
            ]
        },
        CommandSpec(
            verb: .rename,
            object: .subsystem,
            arguments: ["<alias>", "<subnqn>", "<newnqn>"],
            summary: "change a subsystem's NQN"
        ) { a in
            [
                CLIRequest(
                    .PATCH,
                    path("target", a[0], "subsystem", a[1]),
                    body: .members(["SUBNQN": .string(a[2])]),
                    rendering: .done("Subsystem '\(a[1])' of target '\(a[0])' renamed to '\(a[2])'")
                )
            ]
        },

        // ports
        CommandSpec(
            verb: .set,
            object: .portid,
            arguments: ["<alias>", "<portid>", "<trtype>", "<adrfam>", "<traddr>", "<trsvcid>"],
            summary: "create a port"
        ) { a throws(UsageError) in
            let (portID, body) = try portBody(a)
            return [
                CLIRequest(
                    .PUT,
                    path("target", a[0], "portid"),
                    body: body,
                    rendering: .done("PORTID \(portID) added to target '\(a[0])'")
                )
            ]
        },
        CommandSpec(
            verb: .edit,
            object: .portid,
            arguments: ["<alias>", "<portid>", "<trtype>", "<adrfam>", "<traddr>", "<trsvcid>"],
            summary: "change a port"
        ) { a throws(UsageError) in
            let (portID, body) = try portBody(a)
            return [
                CLIRequest(
                    .PUT,
                    path("target", a[0], "portid", String(portID)),
                    body: body,
                    rendering: .done("PORTID \(portID) updated in target '\(a[0])'")
                )
            ]
        },
        CommandSpec(
            verb: .delete,
            object: .portid,
            arguments: ["<alias>", "<portid>"],
            repeatsLast: true,
            summary: "delete ports"
        ) { a throws(UsageError) in
            let portID = try integer(a[1], named: "<portid>", in: 0...65535)
            return [
                CLIRequest(
                    .DELETE,
                    path("target", a[0], "portid", String(portID)),
                    rendering: .done("PORTID \(portID) deleted from target '\(a[0])'"),
                    confirmation: "Delete PORTID \(portID) of target '\(a[0])'?"
                )
            ]
        },

        // access lists
        CommandSpec(
            verb: .set,
            object: .acl,
            arguments: ["<alias>", "<subnqn>", "<host>"],
            summary: "allow a host on a subsystem"
        ) { a in
            [
                CLIRequest(
                    .PUT,
                    path("target", a[0], "subsystem", a[1], "host"),
                    body: .members(["Alias": .string(a[2])]),
                    rendering: .done("Host '\(a[2])' allowed on subsystem '\(a[1])' of target '\(a[0])'")
                )
            ]
        },
        CommandSpec(
            verb: .delete,
            object: .acl,
            arguments: ["<alias>", "<subnqn>", "<host>"],
            repeatsLast: true,
            summary: "remove hosts from a subsystem's access list"
        ) { a in
            [
                CLIRequest(
                    .DELETE,
                    path("target", a[0], "subsystem", a[1], "host", a[2]),
                    rendering: .done("Host '\(a[2])' removed from subsystem '\(a[1])' of target '\(a[0])'"),
                    confirmation:
                        "Delete host '\(a[2])' from the access list of subsystem '\(a[1])' of target '\(a[0])'?"
                )
            ]
        },

        // namespaces
        CommandSpec(
            verb: .set,
            object: .ns,
            arguments: ["<alias>", "<subnqn>", "<nsid>", "<devid|nullb0|/dev/path>"],
            optional: ["[devnsid]"],
            summary: "create or change a namespace"
        ) { a throws(UsageError) in
            let nsid = try integer(a[2], named: "<nsid>", in: 1...Int(UInt32.max - 1))
            var members = [JSONMember(key: "NSID", value: .int(nsid))]
            let device: String
            if a[3] == "nullb0" {
                members.append(JSONMember(key: "DeviceID", value: .int(-1)))
                device = "nullb0"
            } else if a[3].hasPrefix("/") {
                guard a.count == 4 else {
                    throw UsageError("a device path (\(a[3])) takes no [devnsid]")
                }
                members.append(JSONMember(key: "DevicePath", value: .string(a[3])))
                device = a[3]
            } else {
                let deviceID = try integer(a[3], named: "<devid>", in: -1...Int(Int32.max))
                members.append(JSONMember(key: "DeviceID", value: .int(deviceID)))
                device = deviceID == -1 ? "nullb0" : "device \(deviceID)"
            }
            var deviceText = device
            if a.count == 5 {
                let deviceNSID = try integer(a[4], named: "[devnsid]", in: 0...Int(UInt32.max))
                members.append(JSONMember(key: "DeviceNSID", value: .int(deviceNSID)))
                deviceText += " NSID \(deviceNSID)"
            }
            return [
                CLIRequest(
                    .PUT,
                    path("target", a[0], "subsystem", a[1], "nsid"),
                    body: .object(members),
                    rendering: .done("NSID \(nsid) of subsystem '\(a[1])' of target '\(a[0])' set to \(deviceText)")
                )
            ]
        },
        CommandSpec(
            verb: .delete,
            object: .ns,
            arguments: ["<alias>", "<subnqn>", "<nsid>"],
            repeatsLast: true,
            summary: "delete namespaces"
        ) { a throws(UsageError) in
            let nsid = try integer(a[2], named: "<nsid>", in: 1...Int(UInt32.max - 1))
            return [
                CLIRequest(
                    .DELETE,
                    path("target", a[0], "subsystem", a[1], "nsid", String(nsid)),
                    rendering: .done("NSID \(nsid) deleted from subsystem '\(a[1])' of target '\(a[0])'"),
                    confirmation: "Delete NSID \(nsid) of subsystem '\(a[1])' of target '\(a[0])'?"
                )
            ]
        },

        // hosts
        CommandSpec(verb: .list, object: .host, arguments: [], summary: "list the hosts") { _ in
            [CLIRequest(.GET, path("host"), rendering: .names(key: "Hosts"))]
        },
        CommandSpec(
            verb: .get,
            object: .host,
            arguments: ["<alias>"],
            summary: "show a host and the subsystems it may use"
        ) { a in
            [CLIRequest(.GET, path("host", a[0]), rendering: .host)]
        },
        CommandSpec(
            verb: .show,
            object: .host,
            arguments: ["<alias>"],
            summary: "show host-key: the host's DH-HMAC-CHAP secrets, to install on it (admin token)"
        ) { a in
            [CLIRequest(.GET, path("host", a[0], "dhchap"), rendering: .generic)]
        },
        CommandSpec(verb: .add, object: .host, arguments: ["<alias>"], summary: "create a host (no NQN yet)") { a in
            [CLIRequest(.POST, path("host", a[0]), rendering: .done("Host '\(a[0])' added"))]
        },
        CommandSpec(
            verb: .set,
            object: .host,
            arguments: ["<alias>", "<hostnqn>"],
            optional: ["[hostid]"],
            summary: "create a host with its NQN"
        ) { a in
            var members = [
                JSONMember(key: "Alias", value: .string(a[0])), JSONMember(key: "HOSTNQN", value: .string(a[1])),
            ]
            if a.count == 3 { members.append(JSONMember(key: "HOSTID", value: .string(a[2]))) }
            return [CLIRequest(.PUT, path("host"), body: .object(members), rendering: .done("Host '\(a[0])' added"))]
        },
        CommandSpec(
            verb: .edit,
            object: .host,
            arguments: ["<alias>", "<hostnqn>"],
            optional: ["[hostid]"],
            summary: "change a host's NQN"
        ) { a in
            var members = [JSONMember(key: "HOSTNQN", value: .string(a[1]))]
            if a.count == 3 { members.append(JSONMember(key: "HOSTID", value: .string(a[2]))) }
            return [
                CLIRequest(
                    .PUT,
                    path("host", a[0]),
                    body: .object(members),
                    rendering: .done("Host '\(a[0])' updated")
                )
            ]
        },
        CommandSpec(
            verb: .delete,
            object: .host,
            arguments: ["<alias>"],
            repeatsLast: true,
            summary: "delete hosts"
        ) { a in
            [
                CLIRequest(
                    .DELETE,
                    path("host", a[0]),
                    rendering: .done("Host '\(a[0])' deleted"),
                    confirmation: "Delete host '\(a[0])'?"
                )
            ]
        },
        CommandSpec(verb: .rename, object: .host, arguments: ["<alias>", "<new>"], summary: "rename a host") { a in
            [
                CLIRequest(
                    .PATCH,
                    path("host", a[0]),
                    body: .members(["Alias": .string(a[1])]),
                    rendering: .done("Host '\(a[0])' renamed to '\(a[1])'")
                )
            ]
        },
        CommandSpec(
            verb: .logpage,
            object: .host,
            arguments: ["<alias>"],
            summary: "the discovery log page a host reads"
        ) { a in
            [CLIRequest(.GET, path("host", a[0], "logpage"), rendering: .hostLogPage)]
        },

        // discovery registrations (TP8010)
        CommandSpec(
            verb: .list,
            object: .registration,
            arguments: [],
            summary: "list who registered with dem's discovery controller, and hosts seen without registering"
        ) { _ in
            [CLIRequest(.GET, path("registration"), rendering: .registrations)]
        },
        CommandSpec(
            verb: .get,
            object: .registration,
            arguments: ["<nqn|name>"],
            summary: "show a registration: what the entity sent, and when"
        ) { a in
            [CLIRequest(.GET, path("registration", a[0]), rendering: .generic)]
        },
        CommandSpec(
            verb: .adopt,
            object: .registration,
            arguments: ["<nqn|name>"],
            optional: ["[alias]"],
            summary: "make a registered (or seen) host a host, or a registered DDC a local target (alias: its name)"
        ) { a in
            [
                CLIRequest(
                    .POST,
                    path("registration", a[0], "adopt"),
                    body: a.count == 2 ? .members(["Alias": .string(a[1])]) : nil,
                    rendering: .adopted
                )
            ]
        },
        CommandSpec(
            verb: .delete,
            object: .registration,
            arguments: ["<nqn|name>"],
            repeatsLast: true,
            summary: "forget registrations (the entity may register again)"
        ) { a in
            [
                CLIRequest(
                    .DELETE,
                    path("registration", a[0]),
                    rendering: .done("Registration '\(a[0])' deleted"),
                    confirmation: "Delete the registration of '\(a[0])'?"
                )
            ]
        },

        // zoning (TP8010)
        CommandSpec(
            verb: .list,
            object: .zone,
            arguments: [],
            summary: "the configured zoning database, and whether it differs from the active one"
        ) { _ in
            [CLIRequest(.GET, path("zoning"), rendering: .zoning)]
        },
        CommandSpec(
            verb: .add,
            object: .zone,
            arguments: ["<zonegroup>", "<zone>"],
            summary: "create an empty zone (and its zone group) in the configured database"
        ) { a in
            [CLIRequest(.POST, path("zoning", a[0], a[1]), rendering: .done("Zone '\(a[0])/\(a[1])' added"))]
        },
        CommandSpec(
            verb: .delete,
            object: .zone,
            arguments: ["<zonegroup>", "<zone>"],
            summary: "delete a zone from the configured database (activate to apply)"
        ) { a in
            [
                CLIRequest(
                    .DELETE,
                    path("zoning", a[0], a[1]),
                    rendering: .done("Zone '\(a[0])/\(a[1])' deleted"),
                    confirmation: "Delete zone '\(a[0])/\(a[1])'?"
                )
            ]
        },
        CommandSpec(
            verb: .link,
            object: .zone,
            arguments: ["<zonegroup>", "<zone>", "<host|subsystem>", "<name>"],
            optional: ["[traddr]", "[trsvcid]"],
            summary: "put a host (alias or NQN) or a subsystem (NQN, perhaps one port) in a zone"
        ) { a throws(UsageError) in
            let kind = try zoneMemberKind(a[2])
            var body: JSONValue? = nil
            if a.count > 4 {
                guard kind == "subsystem" else {
                    throw UsageError("only a subsystem member names a TRADDR and TRSVCID")
                }
                var members: [(String, JSONValue)] = [("TRADDR", .string(a[4]))]
                if a.count == 6 {
                    members.append(("TRSVCID", .number(String(try integer(a[5], named: "<trsvcid>", in: 0...65535)))))
                }
                body = .members(members)
            }
            return [
                CLIRequest(
                    .PUT,
                    path("zoning", a[0], a[1], kind, a[3]),
                    body: body,
                    rendering: .done("\(kind.capitalized) '\(a[3])' is in zone '\(a[0])/\(a[1])'")
                )
            ]
        },
        CommandSpec(
            verb: .unlink,
            object: .zone,
            arguments: ["<zonegroup>", "<zone>", "<host|subsystem>", "<name>"],
            summary: "take a host or a subsystem out of a zone"
        ) { a throws(UsageError) in
            let kind = try zoneMemberKind(a[2])
            return [
                CLIRequest(
                    .DELETE,
                    path("zoning", a[0], a[1], kind, a[3]),
                    rendering: .done("\(kind.capitalized) '\(a[3])' is out of zone '\(a[0])/\(a[1])'")
                )
            ]
        },
        CommandSpec(
            verb: .diff,
            object: .zone,
            arguments: [],
            summary: "dry run: per host, the entries activating the configured zoning would add and remove"
        ) { _ in
            [CLIRequest(.GET, path("zoning", "diff"), rendering: .zoningChanges(activated: false))]
        },
        CommandSpec(
            verb: .activate,
            object: .zone,
            arguments: [],
            summary: "make the configured zoning active (hosts whose page changes get a change notice)"
        ) { _ in
            [CLIRequest(.POST, path("zoning", "activate"), rendering: .zoningChanges(activated: true))]
        },

        // API tokens
        CommandSpec(verb: .list, object: .token, arguments: [], summary: "list the API tokens") { _ in
            [CLIRequest(.GET, path("dem", "tokens"), rendering: .tokens)]
        },
        CommandSpec(
            verb: .add,
            object: .token,
            arguments: ["<name>"],
            optional: ["[admin|read]"],
            summary: "create an API token (default read)"
        ) { a throws(UsageError) in
            let role = a.count == 2 ? a[1].lowercased() : "read"
            guard role == "admin" || role == "read" else {
                throw UsageError("the role must be admin or read, not '\(a[1])'")
            }
            return [
                CLIRequest(
                    .POST,
                    path("dem", "tokens"),
                    body: .members(["Name": .string(a[0]), "Role": .string(role)]),
                    rendering: .tokenCreated
                )
            ]
        },
        CommandSpec(
            verb: .add,
            object: .joinToken,
            arguments: [],
            optional: ["[name]", "[seconds]"],
            summary: "create a one-time join token for a target's dem-em (expires in 3600 s unless given)"
        ) { a throws(UsageError) in
            var body: [(String, JSONValue)] = [("Name", .string(a.first ?? "join")), ("Role", .string("join"))]
            if a.count == 2 {
                body.append(("ExpiresIn", .number(String(try integer(a[1], named: "seconds", in: 60...604_800)))))
            }
            return [CLIRequest(.POST, path("dem", "tokens"), body: .members(body), rendering: .tokenCreated)]
        },
        CommandSpec(
            verb: .delete,
            object: .token,
            arguments: ["<id>"],
            repeatsLast: true,
            summary: "revoke API tokens"
        ) { a in
            [
                CLIRequest(
                    .DELETE,
                    path("dem", "tokens", a[0]),
                    rendering: .done("Token '\(a[0])' deleted"),
                    confirmation: "Delete token '\(a[0])'?"
                )
            ]
        },
    ]
}

// MARK: - Argument values

/// `host` or `subsystem` (any prefix of three letters or more), for a zone member.
func zoneMemberKind(_ text: String) throws(UsageError) -> String {
    let word = text.lowercased()
    for kind in ["host", "subsystem"] where word.count >= 3 && kind.hasPrefix(word) { return kind }
    throw UsageError("a zone member is a host or a subsystem, not '\(text)'")
}

/// `text` as a decimal integer in `range`, or a usage error naming the argument.
func integer(_ text: String, named name: String, in range: ClosedRange<Int>) throws(UsageError) -> Int {
    guard let value = Int(text) else { throw UsageError("\(name) must be a number, not '\(text)'") }
    guard range.contains(value) else {
        throw UsageError("\(name) must be \(range.lowerBound)...\(range.upperBound), not \(value)")
    }
    return value
}

/// `AllowAnyHost` from `1`/`0` (also `yes`/`no`, `true`/`false`, `y`/`n`).
func allowAnyHost(_ text: String) throws(UsageError) -> Int {
    switch text.lowercased() {
    case "1", "y", "yes", "true": return 1
    case "0", "n", "no", "false": return 0
    default: throw UsageError("<allow_any> must be 1 (any host) or 0 (only the access list), not '\(text)'")
    }
}

/// The body of `set/edit portid <alias> <portid> <trtype> <adrfam> <traddr> <trsvcid>`.
private func portBody(_ a: [String]) throws(UsageError) -> (Int, JSONValue) {
    let portID = try integer(a[1], named: "<portid>", in: 0...65535)
    let service = try integer(a[5], named: "<trsvcid>", in: 0...65535)
    let body = JSONValue.members([
        "PORTID": .int(portID), "TRTYPE": .string(a[2]), "ADRFAM": .string(a[3]), "TRADDR": .string(a[4]),
        "TRSVCID": .int(service),
    ])
    return (portID, body)
}

/// `address:port`, with an IPv6 address in brackets.
func hostPort(_ address: String, _ port: some CustomStringConvertible) -> String {
    address.contains(":") && !address.hasPrefix("[") ? "[\(address)]:\(port)" : "\(address):\(port)"
}
