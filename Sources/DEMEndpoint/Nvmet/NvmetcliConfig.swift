import DEMCore
import Foundation

/// nvmetcli's `config.json` (what `nvmetcli save` writes and `nvmetcli restore` reads), to and
/// from ``EndpointConfiguration``. Port-to-subsystem links live on the port in nvmetcli
/// (`ports[].subsystems`) and on the subsystem in dem (`EndpointSubsystem.ports`).
///
/// Decoding is lenient where nvmetcli files vary (numbers as strings, flags as `"1"`, `1` or
/// `true`, unknown keys, all-zero UUIDs meaning unset, `trsvcid` empty or `none` meaning the
/// default 4420, a missing `enable` meaning enabled, allowed hosts missing from `hosts`) and
/// strict where the result would be wrong; each error names the JSON path at fault.
public enum NvmetcliConfig {
    /// The configuration in `data`.
    public static func decode(_ data: Data) throws(NvmetcliConfigError) -> EndpointConfiguration {
        let root: JSONValue
        do {
            root = try JSONValue(parsing: data)
        } catch {
            throw NvmetcliConfigError(path: "", message: "not JSON: \(error)")
        }
        let document = Node(value: root, path: "")
        _ = try document.object()

        var hosts = Set<String>()
        for host in try document.optionalArray("hosts") {
            hosts.insert(try host.required("nqn").string())
        }

        var ports: [FabricPort] = []
        var portIDs = Set<Int>()
        var links: [(port: Int, nqn: String, path: String)] = []
        for node in try document.optionalArray("ports") {
            let portIDNode = try node.required("portid")
            let portID = try portIDNode.int()
            guard (1...0xFFFE).contains(portID) else { throw portIDNode.error("portid must be 1…65534") }
            guard portIDs.insert(portID).inserted else { throw portIDNode.error("portid \(portID) appears twice") }
            let addr = try node.required("addr")
            let transportType = try addr.required("trtype").string().lowercased()
            guard !transportType.isEmpty else { throw addr.child("trtype").error("trtype must not be empty") }
            let serviceNode = addr.child("trsvcid")
            var serviceID = 4420
            if let text = try serviceNode.optionalLenientText(), !["", "none"].contains(text) {
                guard let value = Int(text), (0...65535).contains(value) else {
                    throw serviceNode.error("trsvcid must be a port number")
                }
                serviceID = value
            }
            let requirements = try addr.child("treq").optionalString()
            let securityType = try addr.child("tsas").optionalString()
            ports.append(
                FabricPort(
                    portID: portID,
                    transportType: transportType,
                    addressFamily: try addr.child("adrfam").optionalString()?.lowercased() ?? "",
                    transportAddress: try addr.child("traddr").optionalString() ?? "",
                    transportServiceIdentifier: serviceID,
                    transportRequirements: requirements.flatMap { $0.isEmpty ? nil : $0 },
                    securityType: transportType == "tcp" && ["none", "tls1.3"].contains(securityType ?? "")
                        ? securityType : nil
                )
            )
            for link in try node.optionalArray("subsystems") {
                links.append((portID, try link.string(), link.path))
            }
        }

        var subsystems: [EndpointSubsystem] = []
        for node in try document.optionalArray("subsystems") {
            let nqnNode = try node.required("nqn")
            let nqn = try nqnNode.string()
            guard !nqn.isEmpty, !nqn.contains("/") else { throw nqnNode.error("nqn must be non-empty without '/'") }
            guard !subsystems.contains(where: { $0.nqn == nqn }) else { throw nqnNode.error("\(nqn) appears twice") }
            let attr = node.child("attr")
            var allowed: [String] = []
            for host in try node.optionalArray("allowed_hosts") { allowed.append(try host.string()) }
            hosts.formUnion(allowed)
            var namespaces: [EndpointNamespace] = []
            for nsNode in try node.optionalArray("namespaces") {
                let nsidNode = try nsNode.required("nsid")
                let nsid = try nsidNode.int()
                guard (1...0xFFFF_FFFE).contains(nsid) else { throw nsidNode.error("nsid must be 1…4294967294") }
                guard !namespaces.contains(where: { $0.namespaceID == nsid }) else {
                    throw nsidNode.error("nsid \(nsid) appears twice")
                }
                let device = try nsNode.required("device")
                let pathNode = try device.required("path")
                let path = try pathNode.string()
                guard path.hasPrefix("/") else { throw pathNode.error("path must be an absolute path") }
                namespaces.append(
                    EndpointNamespace(
                        namespaceID: nsid,
                        devicePath: path,
                        uuid: try device.child("uuid").optionalString().flatMap(NvmetIdentifier.meaningful),
                        nguid: try device.child("nguid").optionalString().flatMap(NvmetIdentifier.meaningful),
                        enabled: try nsNode.child("enable").optionalFlag() ?? true
                    )
                )
            }
            subsystems.append(
                EndpointSubsystem(
                    nqn: nqn,
                    allowAnyHost: try attr.child("allow_any_host").optionalFlag() ?? false,
                    serial: try attr.child("serial").optionalString(),
                    model: try attr.child("model").optionalString(),
                    namespaces: namespaces,
                    hosts: Array(Set(allowed)),
                    ports: []
                )
            )
        }

        for link in links {
            guard let index = subsystems.firstIndex(where: { $0.nqn == link.nqn }) else {
                throw NvmetcliConfigError(path: link.path, message: "subsystem \(link.nqn) is not in subsystems")
            }
            if !subsystems[index].ports.contains(link.port) {
                subsystems[index].ports = (subsystems[index].ports + [link.port]).sorted()
            }
        }

        let configuration = EndpointConfiguration(ports: ports, hosts: Array(hosts), subsystems: subsystems)
        if let problem = configuration.problem() {
            throw NvmetcliConfigError(path: problem.field, message: problem.message)
        }
        return configuration
    }

    /// `configuration` as nvmetcli writes it (sorted keys, two-space indent as `nvmetcli save`).
    public static func encode(_ configuration: EndpointConfiguration) throws(NvmetcliConfigError) -> Data {
        if let problem = configuration.problem() {
            throw NvmetcliConfigError(path: problem.field, message: problem.message)
        }
        let hosts = Set(configuration.hosts).union(configuration.subsystems.flatMap(\.hosts)).sorted()
        let document = Document(
            hosts: hosts.map { Document.Host(nqn: $0) },
            ports: configuration.ports.map { port in
                var addr = [
                    "trtype": port.transportType,
                    "adrfam": port.addressFamily,
                    "traddr": port.transportAddress,
                    "trsvcid": String(port.transportServiceIdentifier),
                ]
                addr["treq"] = port.transportRequirements
                addr["tsas"] = port.securityType
                return Document.Port(
                    portid: port.portID,
                    addr: addr,
                    referrals: [],
                    subsystems: configuration.subsystems.filter { $0.ports.contains(port.portID) }.map(\.nqn).sorted()
                )
            },
            subsystems: configuration.subsystems.map { subsystem in
                var attr = ["allow_any_host": subsystem.allowAnyHost ? "1" : "0"]
                attr["serial"] = subsystem.serial
                attr["model"] = subsystem.model
                return Document.Subsystem(
                    nqn: subsystem.nqn,
                    attr: attr,
                    allowed_hosts: subsystem.hosts.sorted(),
                    namespaces: subsystem.namespaces.map { namespace in
                        var device = ["path": namespace.devicePath]
                        device["uuid"] = namespace.uuid
                        device["nguid"] = namespace.nguid
                        return Document.Namespace(
                            nsid: namespace.namespaceID,
                            enable: namespace.enabled ? 1 : 0,
                            device: device
                        )
                    }
                )
            }
        )
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        do {
            return try encoder.encode(document)
        } catch {
            throw NvmetcliConfigError(path: "", message: "cannot encode: \(error)")
        }
    }

    /// The document `encode` writes.
    private struct Document: Encodable {
        struct Host: Encodable {
            var nqn: String
        }
        struct Port: Encodable {
            var portid: Int
            var addr: [String: String]
            var referrals: [String]
            var subsystems: [String]
        }
        struct Namespace: Encodable {
            var nsid: Int
            var enable: Int
            var device: [String: String]
        }
        struct Subsystem: Encodable {
            var nqn: String
            var attr: [String: String]
            var allowed_hosts: [String]
            var namespaces: [Namespace]
        }
        var hosts: [Host]
        var ports: [Port]
        var subsystems: [Subsystem]
    }
}

/// A `config.json` that cannot be used, with the JSON path at fault (such as
/// `subsystems[2].namespaces[0].device.path`).
public struct NvmetcliConfigError: Error, Sendable, Hashable, CustomStringConvertible {
    public var path: String
    public var message: String

    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { path.isEmpty ? message : "\(path): \(message)" }
}

extension JSONValue {
    /// What this is, for an error that says what was found instead.
    fileprivate var kind: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .number: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }
}

/// A JSON value and its path, with typed accessors that throw errors naming the path.
private struct Node {
    /// nil when the key is absent.
    var value: JSONValue?
    var path: String

    func error(_ message: String) -> NvmetcliConfigError {
        NvmetcliConfigError(path: path, message: message)
    }

    private func mismatch(_ expected: String) -> NvmetcliConfigError {
        error("expected \(expected), found \(value?.kind ?? "nothing")")
    }

    func object() throws(NvmetcliConfigError) -> [JSONMember] {
        guard case .object(let fields) = value else { throw mismatch("an object") }
        return fields
    }

    /// The member `key`; absent when this is not an object or has no such key.
    func child(_ key: String) -> Node {
        var member: JSONValue?
        if case .object(let fields) = value { member = fields.first { $0.key == key }?.value }
        return Node(value: member, path: path.isEmpty ? key : "\(path).\(key)")
    }

    /// The member `key`, which must be there and not null (this must be an object).
    func required(_ key: String) throws(NvmetcliConfigError) -> Node {
        _ = try object()
        let member = child(key)
        switch member.value {
        case nil, .null?: throw member.error("missing")
        default: return member
        }
    }

    /// The elements of array `key`; none when absent or null.
    func optionalArray(_ key: String) throws(NvmetcliConfigError) -> [Node] {
        let member = child(key)
        switch member.value {
        case nil, .null?: return []
        case .array(let elements)?:
            return elements.enumerated().map { Node(value: $1, path: "\(member.path)[\($0)]") }
        default: throw member.mismatch("an array")
        }
    }

    func string() throws(NvmetcliConfigError) -> String {
        guard case .string(let text) = value else { throw mismatch("a string") }
        return text
    }

    func optionalString() throws(NvmetcliConfigError) -> String? {
        if value == nil { return nil }
        if case .null = value { return nil }
        return try string()
    }

    /// A string or a whole number, as text; nil when absent or null.
    func optionalLenientText() throws(NvmetcliConfigError) -> String? {
        switch value {
        case nil, .null?: nil
        case .string(let text)?: text
        case .number(let text)? where Int(text) != nil: text
        default: throw mismatch("a string or a number")
        }
    }

    /// A whole number, or a string of digits.
    func int() throws(NvmetcliConfigError) -> Int {
        switch value {
        case .number(let text)?:
            guard let number = Int(text) else { throw mismatch("an integer") }
            return number
        case .string(let text)?:
            guard let number = Int(text.nvmetTrimmed) else { throw mismatch("an integer") }
            return number
        default: throw mismatch("an integer")
        }
    }

    /// A flag: a boolean, 0 or 1, or such text; nil when absent or null.
    func optionalFlag() throws(NvmetcliConfigError) -> Bool? {
        switch value {
        case nil, .null?: return nil
        case .bool(let flag)?: return flag
        case .number(let text)? where text == "0" || text == "1": return text == "1"
        case .string(let text)?:
            guard let flag = NvmetTree.parseFlag(text) else { throw mismatch("0 or 1") }
            return flag
        default: throw mismatch("0 or 1")
        }
    }
}
