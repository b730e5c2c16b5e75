import Foundation

/// Where a discovery controller is and how a host reaches it: one line of `discovery.conf`, a
/// configured address or a referral found in a discovery log page.
public struct DiscoveryControllerAddress: Sendable, Hashable, CustomStringConvertible {
    /// TRTYPE.
    public var transportType: TransportType
    /// TRADDR (an IP address for TCP and RDMA; a host name is resolved when connecting).
    public var transportAddress: String
    /// TRSVCID (the TCP port for TCP); empty for transports without one.
    public var transportServiceIdentifier: String
    /// `--host-traddr`: the local address to connect from.
    public var hostTransportAddress: String?
    /// `--host-iface`: the local interface to connect through.
    public var hostInterface: String?
    /// `--hostnqn`: the host NQN to use for this controller instead of the host's own.
    public var hostNQN: String?
    /// `--hostid`: the 16-byte host ID to use for this controller instead of the host's own.
    public var hostIdentifier: [UInt8]?
    /// `--nqn`: the discovery subsystem NQN to connect to (the well-known one by default).
    public var subsystemNQN: String

    /// - Parameter transportServiceIdentifier: `nil` for the transport's discovery default
    ///   (``defaultServiceIdentifier(for:)``).
    public init(
        transportType: TransportType = .tcp,
        transportAddress: String,
        transportServiceIdentifier: String? = nil,
        hostTransportAddress: String? = nil,
        hostInterface: String? = nil,
        hostNQN: String? = nil,
        hostIdentifier: [UInt8]? = nil,
        subsystemNQN: String = DEMCore.wellKnownDiscoveryNQN
    ) {
        self.transportType = transportType
        self.transportAddress = transportAddress
        self.transportServiceIdentifier =
            transportServiceIdentifier ?? Self.defaultServiceIdentifier(for: transportType)
        self.hostTransportAddress = hostTransportAddress
        self.hostInterface = hostInterface
        self.hostNQN = hostNQN
        self.hostIdentifier = hostIdentifier
        self.subsystemNQN = subsystemNQN
    }

    /// The address a referral entry points at, reached the way `source` is reached: the host-side
    /// settings (`host_traddr`, `host_iface`, `hostnqn`, `hostid`) are inherited from `source`.
    public init(referral entry: DiscoveryLogEntry, from source: DiscoveryControllerAddress? = nil) {
        self.init(
            transportType: entry.transportType,
            transportAddress: entry.transportAddress,
            transportServiceIdentifier: entry.transportServiceIdentifier.isEmpty
                ? nil : entry.transportServiceIdentifier,
            hostTransportAddress: source?.hostTransportAddress,
            hostInterface: source?.hostInterface,
            hostNQN: source?.hostNQN,
            hostIdentifier: source?.hostIdentifier,
            subsystemNQN: entry.subsystemNQN.isEmpty ? DEMCore.wellKnownDiscoveryNQN : entry.subsystemNQN
        )
    }

    /// The TRSVCID used when none is given, as nvme-cli picks it for discovery: 8009 for TCP,
    /// 4420 for RDMA, none for the other transports.
    public static func defaultServiceIdentifier(for transportType: TransportType) -> String {
        switch transportType {
        case .tcp: return String(DEMCore.discoveryPort)
        case .rdma: return "4420"
        default: return ""
        }
    }

    /// The TCP port, when TRSVCID is a port number.
    public var port: Int? {
        guard let port = Int(transportServiceIdentifier), (1...65_535).contains(port) else { return nil }
        return port
    }

    /// What identifies the controller: TRTYPE, TRADDR and TRSVCID, normalized.
    public var key: DiscoveryControllerKey {
        DiscoveryControllerKey(
            transportType: transportType,
            transportAddress: transportAddress,
            transportServiceIdentifier: transportServiceIdentifier
        )
    }

    public var description: String { key.description }
}

/// TRTYPE, TRADDR and TRSVCID of a discovery controller, normalized so that two spellings of one
/// address compare equal: surrounding blanks and IPv6 brackets removed, IP addresses in their
/// canonical text form, other addresses lower-cased, numeric service identifiers without leading
/// zeros.
public struct DiscoveryControllerKey: Sendable, Hashable, CustomStringConvertible {
    /// TRTYPE.
    public let transportType: TransportType
    /// TRADDR, normalized.
    public let transportAddress: String
    /// TRSVCID, normalized.
    public let transportServiceIdentifier: String

    public init(transportType: TransportType, transportAddress: String, transportServiceIdentifier: String) {
        self.transportType = transportType
        self.transportAddress = Self.normalizedAddress(transportAddress)
        let service = transportServiceIdentifier.trimmingCharacters(in: .whitespacesAndNewlines)
        if !service.isEmpty, service.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let number = Int(service) {
            self.transportServiceIdentifier = String(number)
        } else {
            self.transportServiceIdentifier = service.lowercased()
        }
    }

    public var description: String {
        let name = DiscoveryConfigurationFile.transportName(transportType)
        let address = transportAddress.contains(":") ? "[\(transportAddress)]" : transportAddress
        return transportServiceIdentifier.isEmpty
            ? "\(name) \(address)" : "\(name) \(address):\(transportServiceIdentifier)"
    }

    private static func normalizedAddress(_ text: String) -> String {
        var address = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if address.hasPrefix("["), address.hasSuffix("]") { address = String(address.dropFirst().dropLast()) }
        var ipv4 = in_addr()
        if inet_pton(AF_INET, address, &ipv4) == 1, let text = ntop(AF_INET, &ipv4) { return text }
        var ipv6 = in6_addr()
        if inet_pton(AF_INET6, address, &ipv6) == 1, let text = ntop(AF_INET6, &ipv6) { return text }
        return address.lowercased()
    }

    private static func ntop<Address>(_ family: Int32, _ address: inout Address) -> String? {
        var buffer = [CChar](repeating: 0, count: 64)
        let written = withUnsafeBytes(of: &address) { raw in
            buffer.withUnsafeMutableBufferPointer { pointer in
                inet_ntop(family, raw.baseAddress, pointer.baseAddress, socklen_t(pointer.count))
            }
        }
        guard written != nil else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// Why `discovery.conf` could not be read.
public enum DiscoveryConfigurationFileError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The file does not exist.
    case notFound(path: String)
    /// The file exists but could not be read.
    case unreadable(path: String, reason: String)
    /// A line is wrong; `line` counts from 1.
    case invalidLine(path: String?, line: Int, reason: String)

    public var description: String {
        switch self {
        case .notFound(let path): return "\(path) does not exist"
        case .unreadable(let path, let reason): return "\(path) cannot be read: \(reason)"
        case .invalidLine(let path, let line, let reason):
            return "\(path ?? "discovery configuration"), line \(line): \(reason)"
        }
    }
}

/// nvme-cli's `/etc/nvme/discovery.conf`: one discovery controller per line, written as the
/// options of `nvme discover` (`--transport=tcp --traddr=192.0.2.1 --trsvcid=8009`, or the short
/// forms `-t tcp -a 192.0.2.1 -s 8009`); `#` starts a comment, blank lines are skipped.
///
/// Understood: `--transport`/`-t`, `--traddr`/`-a`, `--trsvcid`/`-s`, `--host-traddr`/`-w`,
/// `--host-iface`/`-f`, `--hostnqn`/`-q`, `--hostid`/`-I` and `--nqn`/`-n`. nvme-cli's other
/// connect options (queue counts, timeouts, digests, keys, `--persistent`…) are accepted and
/// ignored; anything else is an error naming the line. Values follow the option after `=` or a
/// blank, or directly after a short option (`-ttcp`). When an option repeats, the last one wins
/// (as with getopt). Unlike nvme-cli, which skips lines it cannot parse, every error is reported.
public enum DiscoveryConfigurationFile {
    /// Where nvme-cli keeps the file.
    public static let defaultPath = "/etc/nvme/discovery.conf"

    /// Reads and parses the file at `path`.
    ///
    /// - Throws: ``DiscoveryConfigurationFileError``: `.notFound` when there is no file (callers
    ///   may treat that as no controllers), otherwise an error naming the file and line.
    public static func read(
        path: String = defaultPath
    ) throws(DiscoveryConfigurationFileError)
        -> [DiscoveryControllerAddress]
    {
        guard FileManager.default.fileExists(atPath: path) else { throw .notFound(path: path) }
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw .unreadable(path: path, reason: error.localizedDescription)
        }
        return try parse(text, path: path)
    }

    /// Parses the text of a `discovery.conf`; `path` only names the file in errors.
    public static func parse(
        _ text: String,
        path: String? = nil
    ) throws(DiscoveryConfigurationFileError)
        -> [DiscoveryControllerAddress]
    {
        var addresses: [DiscoveryControllerAddress] = []
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            do {
                if let address = try parseLine(String(line)) { addresses.append(address) }
            } catch {
                throw .invalidLine(path: path, line: index + 1, reason: error.reason)
            }
        }
        return addresses
    }

    /// What is wrong with one line.
    public struct LineError: Error, Sendable, Hashable, CustomStringConvertible {
        /// The problem.
        public var reason: String
        public var description: String { reason }
    }

    /// Parses one line: `nil` for a blank or comment line.
    public static func parseLine(_ line: String) throws(LineError) -> DiscoveryControllerAddress? {
        let tokens = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }).map(String.init)
        var values: [String: String] = [:]
        var sawOption = false
        var index = 0
        tokenLoop: while index < tokens.count {
            let token = tokens[index]
            index += 1
            if token.hasPrefix("#") { break tokenLoop }
            sawOption = true
            if token.hasPrefix("--"), token.count > 2 {
                var name = String(token.dropFirst(2))
                var value: String? = nil
                if let equals = name.firstIndex(of: "=") {
                    value = String(name[name.index(after: equals)...])
                    name = String(name[..<equals])
                }
                if flagOptions.contains(name) {
                    guard value == nil else { throw LineError(reason: "--\(name) takes no value") }
                    continue
                }
                guard let canonical = valueOptions[name] else { throw LineError(reason: "unknown option --\(name)") }
                if value == nil {
                    guard index < tokens.count else { throw LineError(reason: "--\(name) needs a value") }
                    value = tokens[index]
                    index += 1
                }
                if canonical != ignored { values[canonical] = value }
            } else if token.hasPrefix("-"), token.count > 1, !token.hasPrefix("--") {
                // Short options; flags may be grouped (-gG); a value may be attached (-ttcp, -t=tcp).
                var rest = Substring(token.dropFirst())
                while let letter = rest.first {
                    rest = rest.dropFirst()
                    if shortFlags.contains(letter) { continue }
                    guard let canonical = shortValueOptions[letter] else {
                        throw LineError(reason: "unknown option -\(letter)")
                    }
                    var value = rest.hasPrefix("=") ? String(rest.dropFirst()) : String(rest)
                    rest = ""
                    if value.isEmpty {
                        guard index < tokens.count else { throw LineError(reason: "-\(letter) needs a value") }
                        value = tokens[index]
                        index += 1
                    }
                    if canonical != ignored { values[canonical] = value }
                }
            } else {
                throw LineError(reason: "unexpected \"\(token)\" (options start with - or --)")
            }
        }
        if !sawOption { return nil }
        return try address(from: values)
    }

    private static func address(from values: [String: String]) throws(LineError) -> DiscoveryControllerAddress {
        guard let transportName = values["transport"], !transportName.isEmpty else {
            throw LineError(reason: "no --transport (-t)")
        }
        guard let transportType = transportType(named: transportName) else {
            throw LineError(reason: "unknown transport \"\(transportName)\" (tcp, rdma, fc or loop)")
        }
        guard let transportAddress = values["traddr"], !transportAddress.isEmpty else {
            throw LineError(reason: "no --traddr (-a)")
        }
        var address = DiscoveryControllerAddress(
            transportType: transportType,
            transportAddress: transportAddress,
            transportServiceIdentifier: values["trsvcid"]
        )
        if transportType == .tcp || transportType == .rdma {
            guard address.port != nil else {
                throw LineError(
                    reason: "--trsvcid \"\(address.transportServiceIdentifier)\" is not a port number (1-65535)"
                )
            }
        }
        address.hostTransportAddress = values["host-traddr"]
        address.hostInterface = values["host-iface"]
        if let hostNQN = values["hostnqn"] {
            do {
                address.hostNQN = try NQN(hostNQN).value
            } catch {
                throw LineError(reason: "--hostnqn: \(error)")
            }
        }
        if let hostID = values["hostid"] {
            guard let bytes = HostIdentity.hostIdentifier(fromUUID: hostID) else {
                throw LineError(reason: "--hostid \"\(hostID)\" is not a UUID")
            }
            address.hostIdentifier = bytes
        }
        if let nqn = values["nqn"] {
            do {
                address.subsystemNQN = try NQN(nqn).value
            } catch {
                throw LineError(reason: "--nqn: \(error)")
            }
        }
        return address
    }

    /// The TRTYPE of nvme-cli's transport name (`tcp`, `rdma`, `fc`, `loop`).
    public static func transportType(named name: String) -> TransportType? {
        switch name.lowercased() {
        case "tcp": return .tcp
        case "rdma": return .rdma
        case "fc": return .fibreChannel
        case "loop": return .loop
        default: return nil
        }
    }

    /// nvme-cli's name of a TRTYPE.
    public static func transportName(_ type: TransportType) -> String {
        switch type {
        case .tcp: return "tcp"
        case .rdma: return "rdma"
        case .fibreChannel: return "fc"
        case .loop: return "loop"
        default: return "trtype \(type.rawValue)"
        }
    }

    /// The key of options that are accepted and ignored.
    private static let ignored = "-"

    /// Long options with a value that DEM records, by name, to the key they are stored under.
    private static let valueOptions: [String: String] = [
        "transport": "transport", "traddr": "traddr", "trsvcid": "trsvcid", "host-traddr": "host-traddr",
        "host-iface": "host-iface", "hostnqn": "hostnqn", "hostid": "hostid", "nqn": "nqn",
        // nvme-cli connect options with a value that do not concern discovery: accepted, ignored.
        "dhchap-secret": "-", "dhchap-ctrl-secret": "-", "keyring": "-", "tls-key": "-",
        "tls-key-identity": "-", "nr-io-queues": "-", "nr-write-queues": "-", "nr-poll-queues": "-",
        "queue-size": "-", "keep-alive-tmo": "-", "reconnect-delay": "-", "ctrl-loss-tmo": "-",
        "fast_io_fail_tmo": "-", "tos": "-", "tls_key": "-",
    ]

    private static let shortValueOptions: [Character: String] = [
        "t": "transport", "a": "traddr", "s": "trsvcid", "w": "host-traddr", "f": "host-iface",
        "q": "hostnqn", "I": "hostid", "n": "nqn",
        "S": "-", "C": "-", "i": "-", "W": "-", "P": "-", "Q": "-", "k": "-", "c": "-", "l": "-",
        "F": "-", "T": "-",
    ]

    /// nvme-cli flags (no value), accepted and ignored.
    private static let flagOptions: Set<String> = [
        "duplicate-connect", "disable-sqflow", "hdr-digest", "data-digest", "tls", "concat", "persistent",
        "force", "quiet",
    ]

    private static let shortFlags: Set<Character> = ["D", "g", "G", "p"]
}
