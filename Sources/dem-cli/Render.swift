import DEMCore

// The pure half of dem-cli's output: an HTTP answer in, the text to print and the exit status out.

/// dem-cli's exit statuses (also in `--help` and dem-cli(8)).
enum ExitStatus: Int32, Comparable, Sendable {
    /// The request succeeded.
    case success = 0
    /// dem refused the request (a 4xx other than 401/403), or a delete was not confirmed.
    case refused = 1
    /// The command line is wrong.
    case usage = 2
    /// dem is not running or cannot be reached.
    case notRunning = 3
    /// Authentication or permission refused (401/403).
    case unauthorized = 4
    /// A server error (5xx) or an answer dem-cli cannot read.
    case serverError = 5

    static func < (lhs: ExitStatus, rhs: ExitStatus) -> Bool { lhs.rawValue < rhs.rawValue }

    /// The exit status for an HTTP status code.
    init(httpStatus: Int) {
        switch httpStatus {
        case 200..<300: self = .success
        case 401, 403: self = .unauthorized
        case 400..<500: self = .refused
        default: self = .serverError
        }
    }
}

/// What to print for one answer and the exit status it implies. Standard error is written first.
struct ResponseOutcome: Equatable, Sendable {
    var standardOutput = ""
    var standardError = ""
    var status = ExitStatus.success
}

/// What dem-cli prints for an answer of `httpStatus` with `body` to `request`.
///
/// Errors go to standard error as `Error: <message> (field <field>)`, with a hint on 401/403
/// drawn from `token`. Successes print according to `format`: the body as received (`raw`), the
/// JSON indented or `{}` when there is no body (`json`), or the request's ``Rendering``.
func outcome(
    httpStatus: Int,
    body: [UInt8],
    request: CLIRequest,
    format: OutputFormat,
    token: TokenResolution
) -> ResponseOutcome {
    let status = ExitStatus(httpStatus: httpStatus)
    guard status == .success else {
        var text = "Error: " + errorMessage(httpStatus: httpStatus, body: body) + "\n"
        if httpStatus == 401 || httpStatus == 403 {
            text += authenticationHint(httpStatus: httpStatus, token: token)
        }
        return ResponseOutcome(standardError: text, status: status)
    }

    switch format {
    case .raw:
        return ResponseOutcome(standardOutput: String(decoding: body, as: UTF8.self))
    case .json:
        guard !isBlank(body) else { return ResponseOutcome(standardOutput: "{}\n") }
        do {
            return ResponseOutcome(standardOutput: try JSONValue(parsing: body).serialized(pretty: true) + "\n")
        } catch {
            return unreadable(httpStatus: httpStatus, reason: error.description)
        }
    case .text:
        if case .done(let sentence) = request.rendering { return ResponseOutcome(standardOutput: sentence + "\n") }
        let json: JSONValue
        if isBlank(body) {
            json = .object([])
        } else {
            do { json = try JSONValue(parsing: body) } catch {
                return unreadable(httpStatus: httpStatus, reason: error.description)
            }
        }
        if request.rendering == .tokenCreated {
            guard let secret = json["Token"]?.stringValue else {
                return unreadable(httpStatus: httpStatus, reason: "the answer has no \"Token\"")
            }
            return ResponseOutcome(standardOutput: secret + "\n", standardError: tokenCreatedNote(json))
        }
        let text = render(request.rendering, json)
        return ResponseOutcome(standardOutput: text.isEmpty || text.hasSuffix("\n") ? text : text + "\n")
    }
}

private func isBlank(_ body: [UInt8]) -> Bool {
    body.allSatisfy { $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }
}

private func unreadable(httpStatus: Int, reason: String) -> ResponseOutcome {
    ResponseOutcome(
        standardError: "Error: cannot read dem's answer (HTTP \(httpStatus)): \(reason)\n",
        status: .serverError
    )
}

/// The message of an error answer: the JSON body's `message` (and `field`), else its text, else
/// the status.
func errorMessage(httpStatus: Int, body: [UInt8]) -> String {
    if let json = try? JSONValue(parsing: body), json.objectMembers != nil {
        let message = json["message"]?.stringValue ?? json["error"]?.stringValue ?? "HTTP \(httpStatus)"
        if let field = json["field"]?.stringValue, !field.isEmpty { return "\(message) (field \(field))" }
        return message
    }
    let text = String(decoding: body, as: UTF8.self).trimmingWhitespace
    return text.isEmpty ? "HTTP \(httpStatus)" : "HTTP \(httpStatus): \(text)"
}

/// Where dem-cli looked for a token, and how to pass one, after a 401 or 403.
func authenticationHint(httpStatus: Int, token: TokenResolution) -> String {
    guard let origin = token.origin else {
        var looked = "dem-cli sent no token: no -t/--token or --token-file, DEM_TOKEN and DEM_TOKEN_FILE are unset"
        if !token.searched.isEmpty {
            let files = token.searched.map { "\($0.path) (\($0.reason))" }
            looked += ", and no admin token in " + files.joined(separator: " or ")
        }
        return looked + ".\n"
            + "Pass one with -t TOKEN, --token-file FILE or DEM_TOKEN=TOKEN. dem writes its admin token to\n"
            + "admin.token in its data directory: set DEM_DATA_DIR to that directory, or run dem-cli as a user\n"
            + "who can read the file.\n"
    }
    if httpStatus == 403 {
        return "The token from \(origin.description) may not do this; a read token can only list and get. "
            + "Use an admin token.\n"
    }
    return "dem refused the token from \(origin.description). "
        + "Check it, or make a new one with 'dem-cli add token <name> admin' as an administrator.\n"
}

private func tokenCreatedNote(_ json: JSONValue) -> String {
    let name = json["Name"]?.displayText ?? ""
    var details: [String] = []
    if let id = json["ID"] { details.append("ID \(id.displayText)") }
    if let role = json["Role"] { details.append("role \(role.displayText)") }
    if let expires = json["Expires"] { details.append("expires \(expires.displayText)") }
    let detail = details.isEmpty ? "" : " (\(details.joined(separator: ", ")))"
    var note = "Token '\(name)' added\(detail). Its secret follows; dem shows it only this once.\n"
    if json["Role"]?.stringValue == "join" {
        note +=
            "It enrols one target, once: on the target run\n"
            + "  dem-em --join https://<dem's address>:<port> --token <the token> --ca-hash \(json["CAHash"]?.displayText ?? "<dem's tls-ca-fingerprint>")\n"
    }
    return note
}

// MARK: - Text renderings

/// The text for `json` in `rendering`.
func render(_ rendering: Rendering, _ json: JSONValue) -> String {
    switch rendering {
    case .names(let key): return renderNames(json, key: key)
    case .config: return renderConfig(json)
    case .target: return renderTarget(json)
    case .targetStates: return renderTargetStates(json)
    case .targetStatus: return renderTargetStatus(json)
    case .host: return renderHost(json)
    case .group: return renderGroup(json)
    case .tokens: return renderTokens(json)
    case .registrations: return renderRegistrations(json)
    case .adopted: return renderAdopted(json)
    case .zoning: return renderZoning(json)
    case .zoningChanges(let activated): return renderZoningChanges(json, activated: activated)
    case .audit: return renderAudit(json)
    case .hostLogPage: return renderLogPage(json, forTarget: false)
    case .targetLogPage: return renderLogPage(json, forTarget: true)
    case .done(let sentence): return sentence
    case .action(let sentence): return json["message"]?.stringValue ?? sentence
    case .tokenCreated, .trust, .generic: return renderGeneric(json)
    }
}

/// The server's `message`, a bare string, `Key: value` lines for an object of plain values
/// (`usage target`), or else the JSON indented.
func renderGeneric(_ json: JSONValue) -> String {
    if let message = json["message"]?.stringValue, json.objectMembers?.count == 1 { return message }
    if let text = json.stringValue { return text }
    if let members = json.objectMembers, !members.isEmpty, !members.contains(where: \.value.isContainer) {
        return labelled(members.map { ($0.key, $0.value.displayText) }).joined(separator: "\n")
    }
    return json.serialized(pretty: true)
}

/// One name per line from `{"<key>":[…]}`; nothing for an empty list.
func renderNames(_ json: JSONValue, key: String) -> String {
    guard let names = json[key]?.arrayValue else { return renderGeneric(json) }
    return names.map { $0.displayText + "\n" }.joined()
}

/// `GET /dem`: `ID: trtype adrfam addr:svc` per listener, then dem's NQN and version.
func renderConfig(_ json: JSONValue) -> String {
    var lines: [String] = []
    for interface in json["Interfaces"]?.arrayValue ?? [] {
        let id = interface["ID"]?.displayText ?? "?"
        let words = [interface["TRTYPE"], interface["ADRFAM"]].map { $0?.displayText ?? "" }
        let address = hostPort(interface["TRADDR"]?.displayText ?? "", interface["TRSVCID"]?.displayText ?? "")
        lines.append("\(id): \((words + [address]).joined(separator: " "))")
    }
    var extra: [(String, String)] = []
    for member in json.objectMembers ?? [] where member.key != "Interfaces" {
        extra.append((member.key, member.value.displayText))
    }
    lines += labelled(extra)
    return lines.joined(separator: "\n")
}

/// `GET /dem/targets`: one line per target, its mode, state and entries served, and the last
/// error while there is one.
func renderTargetStates(_ json: JSONValue) -> String {
    guard let targets = json["Targets"]?.arrayValue else { return renderGeneric(json) }
    guard !targets.isEmpty else { return "" }
    var anyWithheld = false
    let rows = targets.map { target in
        var entries = target["Serving"]?.displayText ?? ""
        if let withheld = target["Withheld"]?.displayText, withheld != "0", !withheld.isEmpty {
            entries += " (\(withheld) withheld)"
            anyWithheld = true
        }
        return [
            target["Alias"]?.displayText ?? "", target["MgmtMode"]?.displayText ?? "",
            target["State"]?.displayText ?? "", entries, target["LastError"]?.displayText ?? "",
        ]
    }
    var lines = table(["ALIAS", "MODE", "STATE", "ENTRIES", "LAST ERROR"], rows, indent: "")
    if anyWithheld {
        lines.append(
            "Withheld entries are in the model but not served to hosts now; 'dem-cli logpage host HOST' says why."
        )
    }
    return lines.joined(separator: "\n") + "\n"
}

/// `GET /target/<t>/status`: the state, when dem last heard from the target, what it serves and
/// how it differs from the model.
func renderTargetStatus(_ json: JSONValue) -> String {
    var pairs: [(String, String)] = [("State", json["State"]?.displayText ?? "")]
    if json["Joined"]?.displayText == "true" { pairs.append(("Joined", "yes")) }
    for key in ["LastContact", "LastError", "Serving", "Withheld", "Harvested"] {
        guard let value = json[key] else { continue }
        if key == "Withheld", value.displayText == "0" { continue }
        let label = key == "Serving" ? "Entries served" : key == "Withheld" ? "Entries withheld" : key
        pairs.append((label, value.displayText))
    }
    if let backend = json["Backend"] {
        // The target software its dem-em drives: nvmet, or SPDK with its version and socket.
        var text = backend["Name"]?.displayText ?? "-"
        if let version = backend["Version"]?.displayText { text += " (\(version))" }
        if let location = backend["Location"]?.displayText { text += " at \(location)" }
        if backend["Reachable"]?.displayText == "false" { text += ", not answering" }
        pairs.append(("Backend", text))
    }
    if let certificate = json["Certificate"] {
        // An enrolled target's: until when, by which CA, and which CAs its dem-em trusts.
        let trusts = certificate["Trusts"]?.arrayValue?.map(\.displayText) ?? []
        pairs.append(("Certificate", certificate["Fingerprint"]?.displayText ?? ""))
        pairs.append(("  expires", certificate["Expires"]?.displayText ?? ""))
        pairs.append(("  issuer", certificate["Issuer"]?.displayText ?? "-"))
        pairs.append(("  trusts", trusts.joined(separator: ", ")))
    }
    var lines = [""] + labelled(pairs)
    if let live = json["Live"]?.arrayValue, !live.isEmpty {
        lines.append("Live on the target:")
        lines += objectTable(live, columns: ["SUBNQN", "PortIDs", "NSIDs"], indent: "  ")
    }
    if let drift = json["Drift"]?.arrayValue, !drift.isEmpty {
        lines.append("Drift:")
        lines += objectTable(drift, columns: ["Object", "Attribute", "Expected", "Actual"], indent: "  ")
    }
    for key in ["Foreign", "Errors"] {
        if let items = json[key]?.arrayValue, !items.isEmpty {
            lines.append("\(key == "Foreign" ? "Left alone (not created by dem-em)" : "Errors"):")
            lines += items.map { "  " + $0.displayText }
        }
    }
    return lines.joined(separator: "\n")
}

/// `GET /target/<t>`: its settings, then its ports as a table, its subsystems with their
/// namespaces and access lists, and what its endpoint manager reported.
func renderTarget(_ json: JSONValue) -> String {
    guard let members = json.objectMembers else { return renderGeneric(json) }
    var header: [(String, String)] = [("Target", json["Alias"]?.displayText ?? "")]
    if let mode = json["MgmtMode"] { header.append(("Mode", mode.displayText)) }
    if let refresh = json["Refresh"] { header.append(("Refresh", refreshText(refresh))) }
    if let interface = json["Interface"] { header.append(("Interface", interfaceText(interface))) }
    let known: Set = ["Alias", "MgmtMode", "Refresh", "Interface", "PortIDs", "Subsystems", "NSDevices", "Interfaces"]
    for member in members where !known.contains(member.key) {
        header.append((member.key, member.value.displayText))
    }
    var lines = labelled(header)

    let ports = json["PortIDs"]?.arrayValue ?? []
    lines.append("")
    if ports.isEmpty {
        lines.append("Ports: none")
    } else {
        lines.append("Ports:")
        lines += objectTable(ports, columns: ["PORTID", "TRTYPE", "ADRFAM", "TRADDR", "TRSVCID"], indent: "  ")
    }

    let subsystems = json["Subsystems"]?.arrayValue ?? []
    lines.append("")
    lines.append(subsystems.isEmpty ? "Subsystems: none" : "Subsystems:")
    for subsystem in subsystems {
        lines += subsystemLines(subsystem)
    }

    if let devices = json["NSDevices"]?.arrayValue, !devices.isEmpty {
        lines.append("")
        lines.append("Devices reported by the target:")
        // DeviceID -1 is nullb0 to nvme-dem, and any device DevicePath names (an SPDK bdev).
        let shown = devices.map { device -> JSONValue in
            guard device["DeviceID"]?.intValue == -1, case .object(let members) = device else { return device }
            let isNullBlock = device["DevicePath"] == nil || device["Kind"]?.stringValue == "null_blk"
            return .object(
                members.map { member in
                    member.key == "DeviceID"
                        ? JSONMember(key: "DeviceID", value: .string(isNullBlock ? "-1 (nullb0)" : "-1"))
                        : member
                }
            )
        }
        lines += objectTable(shown, columns: ["DeviceID", "DeviceNSID"], indent: "  ")
    }
    if let interfaces = json["Interfaces"]?.arrayValue, !interfaces.isEmpty {
        lines.append("")
        lines.append("Interfaces reported by the target:")
        lines += objectTable(interfaces, columns: ["TRTYPE", "ADRFAM", "TRADDR"], indent: "  ")
    }
    return lines.joined(separator: "\n")
}

private func subsystemLines(_ subsystem: JSONValue) -> [String] {
    guard subsystem.objectMembers != nil else { return ["  " + subsystem.displayText] }
    var lines = ["  " + (subsystem["SUBNQN"]?.displayText ?? "?")]
    var details: [(String, String)] = []
    if let allowAny = subsystem["AllowAnyHost"] {
        let open = allowAny.intValue.map { $0 != 0 } ?? (allowAny == .bool(true))
        details.append(
            ("AllowAnyHost", "\(allowAny.displayText) (\(open ? "any host" : "only the hosts of its access list"))")
        )
    }
    let known: Set = ["SUBNQN", "AllowAnyHost", "NSIDs", "Hosts"]
    for member in subsystem.objectMembers ?? [] where !known.contains(member.key) {
        details.append((member.key, member.value.displayText))
    }
    let hosts = (subsystem["Hosts"]?.arrayValue ?? []).map(\.displayText)
    details.append(("Hosts", hosts.isEmpty ? "none" : hosts.joined(separator: ", ")))
    let namespaces = subsystem["NSIDs"]?.arrayValue ?? []
    if namespaces.isEmpty { details.append(("NSIDs", "none")) }
    lines += labelled(details, indent: "    ")
    if !namespaces.isEmpty {
        lines.append("    NSIDs:")
        lines += namespaceTable(namespaces, indent: "      ")
    }
    return lines
}

/// A namespace table: NSID, the device (nullb0, a path or a device ID), its NSID, then any other
/// keys (UUID, NGUID…).
func namespaceTable(_ namespaces: [JSONValue], indent: String) -> [String] {
    let deviceKeys: Set = ["NSID", "DeviceID", "DeviceNSID", "DevicePath"]
    var extras: [String] = []
    for namespace in namespaces {
        for member in namespace.objectMembers ?? [] where !deviceKeys.contains(member.key) {
            if !extras.contains(member.key) { extras.append(member.key) }
        }
    }
    let rows = namespaces.map { namespace -> [String] in
        let device: String
        if let path = namespace["DevicePath"] {
            device = path.displayText
        } else if let id = namespace["DeviceID"] {
            device = id.intValue == -1 ? "nullb0" : id.displayText
        } else {
            device = ""
        }
        let fixed = [namespace["NSID"]?.displayText ?? "", device, namespace["DeviceNSID"]?.displayText ?? ""]
        return fixed + extras.map { namespace[$0]?.displayText ?? "" }
    }
    return table(["NSID", "DEVICE", "DEVNSID"] + extras.map { $0.uppercased() }, rows, indent: indent)
}

/// `GET /host/<h>`: its alias, NQN and other keys, then the subsystems shared with every host and
/// those whose access list names it, as `target / nqn`.
func renderHost(_ json: JSONValue) -> String {
    guard let members = json.objectMembers else { return renderGeneric(json) }
    var header: [(String, String)] = [("Host", json["Alias"]?.displayText ?? "")]
    for member in members where !["Alias", "Shared", "Restricted"].contains(member.key) {
        header.append((member.key, member.value.displayText))
    }
    var lines = labelled(header)
    for (key, title) in [
        ("Shared", "Shared (subsystems open to any host):"),
        ("Restricted", "Restricted (subsystems whose access list names this host):"),
    ] {
        lines.append("")
        lines.append(title)
        let entries = json[key]?.arrayValue ?? []
        if entries.isEmpty { lines.append("  none") }
        for entry in entries {
            if entry.objectMembers != nil {
                lines.append("  \(entry["Alias"]?.displayText ?? "?") / \(entry["SUBNQN"]?.displayText ?? "?")")
            } else {
                lines.append("  " + entry.displayText)
            }
        }
    }
    return lines.joined(separator: "\n")
}

/// `GET /group/<g>`: its name, targets and hosts.
func renderGroup(_ json: JSONValue) -> String {
    guard let members = json.objectMembers else { return renderGeneric(json) }
    var pairs: [(String, String)] = [("Group", json["Name"]?.displayText ?? "")]
    for key in ["Targets", "Hosts"] {
        let names = (json[key]?.arrayValue ?? []).map(\.displayText)
        pairs.append((key, names.isEmpty ? "none" : names.joined(separator: ", ")))
    }
    for member in members where !["Name", "Targets", "Hosts"].contains(member.key) {
        pairs.append((member.key, member.value.displayText))
    }
    return labelled(pairs).joined(separator: "\n")
}

/// `GET /dem/tokens`: a table ID NAME ROLE CREATED LASTUSED ("never" for a token not used yet);
/// nothing when there are none. dem keeps no secret to show.
func renderTokens(_ json: JSONValue) -> String {
    guard let tokens = json["Tokens"]?.arrayValue else { return renderGeneric(json) }
    guard !tokens.isEmpty else { return "" }
    return objectTable(tokens, columns: ["ID", "Name", "Role", "Created", "LastUsed"], indent: "") { key, value in
        key == "LastUsed" && value == nil ? "never" : value?.displayText ?? ""
    }.joined(separator: "\n")
}

/// `GET /registration`: a table STATE TYPE NAME NQN FROM ADOPTED WHEN, the registered first,
/// then the hosts seen without registering.
func renderRegistrations(_ json: JSONValue) -> String {
    guard let registered = json["Registrations"]?.arrayValue else { return renderGeneric(json) }
    let seen = json["Seen"]?.arrayValue ?? []
    guard !registered.isEmpty || !seen.isEmpty else { return "" }
    func text(_ value: JSONValue?) -> String {
        guard let value, value != .null else { return "-" }
        let shown = value.displayText
        return shown.isEmpty ? "-" : shown
    }
    var rows: [[String]] = registered.map { entry in
        [
            "registered", text(entry["Type"]), text(entry["Name"]), text(entry["NQN"]), text(entry["From"]),
            text(entry["Adopted"]), text(entry["Updated"]),
        ]
    }
    rows += seen.map { entry in
        ["seen", "host", "-", text(entry["NQN"]), text(entry["From"]), text(entry["Adopted"]), text(entry["LastSeen"])]
    }
    return table(["STATE", "TYPE", "NAME", "NQN", "FROM", "ADOPTED", "WHEN"], rows, indent: "").joined(separator: "\n")
}

/// `POST /registration/<r>/adopt`: which host or target was made.
func renderAdopted(_ json: JSONValue) -> String {
    guard let alias = json["Alias"]?.displayText else { return renderGeneric(json) }
    if let nqn = json["HOSTNQN"]?.displayText { return "Host '\(alias)' added with HOSTNQN \(nqn)" }
    return "Target '\(alias)' added (LocalMgmt: dem reads its discovery controller)"
}

/// `GET /zoning`: each zone of the configured database with its members, then whether it is
/// the active one.
func renderZoning(_ json: JSONValue) -> String {
    guard let groups = json["ZoneGroups"]?.arrayValue else { return renderGeneric(json) }
    var lines: [String] = []
    for group in groups {
        for zone in group["Zones"]?.arrayValue ?? [] {
            lines.append("Zone \(group["Name"]?.displayText ?? "")/\(zone["Name"]?.displayText ?? "")")
            for member in zone["Members"]?.arrayValue ?? [] {
                var line = "  \(member["Type"]?.displayText ?? "") \(member["NQN"]?.displayText ?? "")"
                if let address = member["TRADDR"]?.displayText {
                    line += " at \(hostPort(address, member["TRSVCID"]?.displayText ?? "any port"))"
                }
                lines.append(line)
            }
        }
    }
    if lines.isEmpty { lines.append("No zones configured.") }
    let pending = json["Pending"]?.displayText == "true"
    lines.append(
        pending
            ? "The configured zoning is not active: dem-cli diff zone shows what activating it changes."
            : "The configured zoning is the active one."
    )
    return lines.joined(separator: "\n")
}

/// `GET /zoning/diff` and `POST /zoning/activate`: per host, `+` for an entry gained and `-` for
/// one lost.
func renderZoningChanges(_ json: JSONValue, activated: Bool) -> String {
    guard let hosts = json["Hosts"]?.arrayValue else { return renderGeneric(json) }
    var lines: [String] = []
    for host in hosts {
        var title = "Host \(host["HOSTNQN"]?.displayText ?? "")"
        if let alias = host["Host"]?.displayText { title = "Host '\(alias)' (\(host["HOSTNQN"]?.displayText ?? ""))" }
        lines.append(title)
        for (sign, key) in [("+", "Gained"), ("-", "Lost")] {
            for entry in host[key]?.arrayValue ?? [] {
                let address = hostPort(entry["TRADDR"]?.displayText ?? "", entry["TRSVCID"]?.displayText ?? "")
                lines.append(
                    "  \(sign) \(entry["SUBNQN"]?.displayText ?? "") on target '\(entry["Target"]?.displayText ?? "")' port \(entry["PORTID"]?.displayText ?? "") (\(address))"
                )
            }
        }
    }
    if activated {
        lines.append(
            hosts.isEmpty
                ? "Zoning activated; no host's page changed."
                : "Zoning activated; \(hosts.count) host\(hosts.count == 1 ? "'s page" : "s' pages") changed (connected ones are notified)."
        )
    } else if hosts.isEmpty {
        lines.append("Activating the configured zoning changes no host's page.")
    }
    return lines.joined(separator: "\n")
}

/// `GET /dem/audit`: a table TIME ACTOR SOURCE METHOD PATH STATUS DETAIL, oldest first.
func renderAudit(_ json: JSONValue) -> String {
    guard let records = json["Records"]?.arrayValue else { return renderGeneric(json) }
    guard !records.isEmpty else { return "" }
    let columns = ["Time", "Actor", "Source", "Method", "Path", "Status", "Detail"]
    return objectTable(records, columns: columns, indent: "").joined(separator: "\n")
}

/// A discovery log page as `nvme discover` lists it: a summary line, then PORTID TRTYPE ADRFAM
/// TRADDR TRSVCID SUBNQN (and HOSTS for a target's page: `any`, or the host NQNs).
func renderLogPage(_ json: JSONValue, forTarget: Bool) -> String {
    guard let records = json["records"]?.arrayValue else { return renderGeneric(json) }
    var summary: String
    if forTarget {
        summary = "Target '\(json["Alias"]?.displayText ?? "")'"
    } else {
        summary = "Host '\(json["Alias"]?.displayText ?? "")'"
        if let nqn = json["HOSTNQN"]?.displayText, !nqn.isEmpty { summary += " (\(nqn))" }
        if let counter = json["genctr"] { summary += ", generation counter \(counter.displayText)" }
    }
    summary += ", \(records.count) record\(records.count == 1 ? "" : "s")"
    let withheld = json["withheld"]?.arrayValue ?? []
    if !withheld.isEmpty { summary += ", \(withheld.count) withheld" }
    var lines = [summary]
    var columns = ["portid", "trtype", "adrfam", "traddr", "trsvcid", "subnqn"]
    if forTarget { columns.append("hosts") }
    if !records.isEmpty {
        let rows = records.map { record in
            columns.map { key -> String in
                if key == "hosts" {
                    let hosts = (record["hosts"]?.arrayValue ?? []).map(\.displayText)
                    return hosts.isEmpty ? "any" : hosts.joined(separator: ",")
                }
                return record[key]?.displayText ?? ""
            }
        }
        lines += table(columns.map { $0.uppercased() }, rows, indent: "")
    }
    // Entries of the model this host may use that it is not served now, each with why.
    if !withheld.isEmpty {
        lines.append("Withheld (in the model, not served now):")
        for record in withheld {
            let place = ["trtype", "traddr", "trsvcid"].map { record[$0]?.displayText ?? "" }
            lines.append(
                "  \(record["subnqn"]?.displayText ?? "") on \(record["target"]?.displayText ?? "") PORTID \(record["portid"]?.displayText ?? "") (\(place[0]) \(place[1]):\(place[2]))"
            )
            lines.append("    why: \(record["reason"]?.displayText ?? "")")
        }
    }
    return lines.joined(separator: "\n")
}

// MARK: - Layout

/// `label: value` lines with the values aligned.
func labelled(_ pairs: [(String, String)], indent: String = "") -> [String] {
    let width = (pairs.map(\.0.count).max() ?? 0) + 2
    return pairs.map { label, value in
        let head = label + ":"
        return indent + head + String(repeating: " ", count: width - head.count) + value
    }
}

/// A table of objects: `columns` first (headers upper-cased), then any other key found in the
/// objects, in the order first seen. `cell` turns a key's value into text.
func objectTable(
    _ objects: [JSONValue],
    columns: [String],
    indent: String,
    cell: (String, JSONValue?) -> String = { _, value in value?.displayText ?? "" }
) -> [String] {
    var keys = columns
    for object in objects {
        for member in object.objectMembers ?? [] where !keys.contains(member.key) { keys.append(member.key) }
    }
    let rows = objects.map { object in
        object.objectMembers == nil ? [object.displayText] : keys.map { cell($0, object[$0]) }
    }
    return table(keys.map { $0.uppercased() }, rows, indent: indent)
}

/// Left-aligned columns two spaces apart; the last column is not padded.
func table(_ header: [String], _ rows: [[String]], indent: String) -> [String] {
    let all = [header] + rows
    let count = all.map(\.count).max() ?? 0
    var widths = [Int](repeating: 0, count: count)
    for row in all {
        for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) }
    }
    return all.map { row in
        var line = indent
        for (index, cell) in row.enumerated() {
            line += cell
            if index < row.count - 1 { line += String(repeating: " ", count: widths[index] - cell.count + 2) }
        }
        while line.hasSuffix(" ") { line.removeLast() }
        return line
    }
}

/// A refresh period in minutes as a person reads it (`off`, `every 5 minutes`).
func refreshText(_ refresh: JSONValue) -> String {
    switch refresh.intValue {
    case 0: return "off"
    case 1: return "every minute"
    case let minutes?: return "every \(minutes) minutes"
    case nil: return refresh.displayText
    }
}

/// An in-band `{TRTYPE, ADRFAM, TRADDR, TRSVCID}` or out-of-band `{FAMILY, ADDRESS, PORT}`
/// interface on one line.
func interfaceText(_ interface: JSONValue) -> String {
    if let trtype = interface["TRTYPE"] {
        let address = hostPort(interface["TRADDR"]?.displayText ?? "", interface["TRSVCID"]?.displayText ?? "")
        return [trtype.displayText, interface["ADRFAM"]?.displayText ?? "", address].joined(separator: " ")
    }
    if let family = interface["FAMILY"] {
        let address = hostPort(interface["ADDRESS"]?.displayText ?? "", interface["PORT"]?.displayText ?? "")
        return family.displayText + " " + address + (interface["TLS"]?.displayText == "true" ? " (TLS)" : "")
    }
    return interface.displayText
}

extension String {
    /// The string without leading and trailing spaces, tabs and line breaks.
    var trimmingWhitespace: String {
        guard let start = firstIndex(where: { !$0.isWhitespace }), let end = lastIndex(where: { !$0.isWhitespace })
        else {
            return ""
        }
        return String(self[start...end])
    }
}
