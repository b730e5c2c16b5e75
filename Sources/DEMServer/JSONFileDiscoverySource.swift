import DEMCore
import Foundation

/// Discovery entries from a JSON file, in the field names of nvme-cli's `discover -o json`:
///
/// ```json
/// { "entries": [
///   { "subnqn": "nqn.2024-01.io.example:nullb0", "trtype": "tcp", "adrfam": "ipv4",
///     "traddr": "10.0.2.15", "trsvcid": "4420", "portid": 1,
///     "subtype": "nvme subsystem", "treq": "not specified", "sectype": "none",
///     "hosts": ["nqn.2014-08.org.nvmexpress:uuid:…"] } ] }
/// ```
///
/// `hosts` absent means any host may see the entry. Defaults: subtype "nvme subsystem", treq
/// "not specified", sectype "none", asqsz 32, cntlid 65535, eflags 0. Enumerations take
/// nvme-cli's words or numbers. A file `nvme discover -o json` printed (with `"records"`) is
/// read too.
public struct JSONFileDiscoverySource: DiscoverySource {
    /// The file.
    public let path: String

    public init(path: String) {
        self.path = path
    }

    public var name: String { path }

    public func changeToken() -> String? {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path) else { return "missing" }
        let size = (attributes[.size] as? NSNumber)?.int64Value ?? -1
        let modified = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
        let inode = (attributes[.systemFileNumber] as? NSNumber)?.int64Value ?? 0
        return "\(size)-\(modified)-\(inode)"
    }

    public func load() throws(DiscoverySourceError) -> [SourceEntry] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DiscoverySourceError(field: path, message: "cannot read the file")
        }
        return try Self.parse(data, name: path)
    }

    /// Parses the file format from `data`.
    public static func parse(_ data: Data, name: String = "entries file") throws(DiscoverySourceError) -> [SourceEntry]
    {
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: data)
        } catch {
            throw DiscoverySourceError(
                field: name,
                message: "not valid JSON at \(JSONDiagnostics.syntaxError(in: data) ?? "\(error)")"
            )
        }
        guard let root = object as? [String: Any] else {
            throw DiscoverySourceError(field: name, message: "the top level must be an object with \"entries\"")
        }
        let key = root["entries"] != nil ? "entries" : "records"
        guard let list = root[key] as? [Any] else {
            throw DiscoverySourceError(field: "entries", message: "missing, or not an array")
        }
        var result: [SourceEntry] = []
        result.reserveCapacity(list.count)
        for (index, item) in list.enumerated() {
            let path = "\(key)[\(index)]"
            guard let fields = item as? [String: Any] else {
                throw DiscoverySourceError(field: path, message: "not an object")
            }
            result.append(try parseEntry(fields, path: path))
        }
        return result
    }

    private static func parseEntry(_ f: [String: Any], path: String) throws(DiscoverySourceError) -> SourceEntry {
        func error(_ field: String, _ message: String) -> DiscoverySourceError {
            DiscoverySourceError(field: "\(path).\(field)", message: message)
        }
        func string(_ field: String, required: Bool = true) throws(DiscoverySourceError) -> String? {
            switch f[field] {
            case nil: if required { throw error(field, "missing") } else { return nil }
            case let value as String: return value
            case let value as NSNumber: return value.stringValue
            default: throw error(field, "must be a string")
            }
        }
        func number(_ field: String, default value: Int, range: ClosedRange<Int>) throws(DiscoverySourceError) -> Int {
            let parsed: Int?
            switch f[field] {
            case nil: return value
            case let n as NSNumber: parsed = n.intValue
            case let s as String: parsed = s.hasPrefix("0x") ? Int(s.dropFirst(2), radix: 16) : Int(s)
            default: parsed = nil
            }
            guard let parsed, range.contains(parsed) else {
                throw error(field, "must be a number in \(range.lowerBound)...\(range.upperBound)")
            }
            return parsed
        }
        func word(_ field: String, _ table: [String: Int], default value: Int) throws(DiscoverySourceError) -> Int {
            switch f[field] {
            case nil: return value
            case let n as NSNumber where n.intValue >= 0 && n.intValue <= 255: return n.intValue
            case let s as String:
                if let known = table[s.lowercased()] { return known }
                if let n = Int(s), n >= 0, n <= 255 { return n }
                throw error(field, "\"\(s)\" is not one of \(table.keys.sorted().joined(separator: ", "))")
            default: throw error(field, "must be one of \(table.keys.sorted().joined(separator: ", ")) or a number")
            }
        }

        let trtype = try word("trtype", ["rdma": 1, "fc": 2, "tcp": 3, "loop": 254], default: -1)
        guard trtype >= 0 else { throw error("trtype", "missing") }
        let adrfam = try word(
            "adrfam",
            ["pci": 0, "ipv4": 1, "ipv6": 2, "infiniband": 3, "ib": 3, "fc": 4, "fibre-channel": 4, "loop": 254],
            default: trtype == 3 || trtype == 1 ? 1 : 0
        )
        let subtype = try word(
            "subtype",
            [
                "nvme subsystem": 2, "nvme": 2, "nvm": 2, "discovery subsystem referral": 1, "referral": 1,
                "discovery": 1, "current discovery subsystem": 3, "current": 3,
            ],
            default: 2
        )
        var treq = 0
        if let text = f["treq"] as? String {
            let lower = text.lowercased()
            if lower.hasPrefix("not required") {
                treq = 2
            } else if lower.hasPrefix("required") {
                treq = 1
            } else if lower.hasPrefix("not specified") {
                treq = 0
            } else if let n = Int(lower), (0...255).contains(n) {
                treq = n
            } else {
                throw error("treq", "\"\(text)\" is not \"not specified\", \"required\" or \"not required\"")
            }
            if lower.contains("sq flow control disable") { treq |= 4 }
        } else {
            treq = try number("treq", default: 0, range: 0...255)
        }
        let portid = try number("portid", default: -1, range: -1...0xFFFF)
        guard portid >= 0 else { throw error("portid", "missing") }
        let cntlid = try number("cntlid", default: 0xFFFF, range: 0...0xFFFF)
        let asqsz = try number("asqsz", default: 32, range: 0...0xFFFF)
        var eflags = 0
        if let text = f["eflags"] as? String {
            for part in text.lowercased().split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) {
                switch part {
                case "none", "": break
                case "duplicate returned information", "duplicate_returned_information": eflags |= 1
                case "explicit discovery connections", "explicit persistent connection": eflags |= 2
                case "no cdc connectivity": eflags |= 4
                default:
                    guard let n = Int(part) else { throw error("eflags", "\"\(part)\" is not a known flag") }
                    eflags |= n
                }
            }
        } else {
            eflags = try number("eflags", default: 0, range: 0...0xFFFF)
        }
        guard let subnqn = try string("subnqn") else { throw error("subnqn", "missing") }
        do {
            _ = try NQN(subnqn)
        } catch let nqnError {
            throw error("subnqn", nqnError.reason)
        }
        guard let traddr = try string("traddr") else { throw error("traddr", "missing") }
        guard traddr.utf8.count <= 256 else { throw error("traddr", "longer than 256 bytes") }
        guard let trsvcid = try string("trsvcid") else { throw error("trsvcid", "missing") }
        guard trsvcid.utf8.count <= 32 else { throw error("trsvcid", "longer than 32 bytes") }
        if adrfam == 1 {
            guard IPAddressText.isIPv4(traddr) else { throw error("traddr", "\"\(traddr)\" is not an IPv4 address") }
        } else if adrfam == 2 {
            guard IPAddressText.isIPv6(traddr) else { throw error("traddr", "\"\(traddr)\" is not an IPv6 address") }
        }
        if trtype == 3 || trtype == 1 {
            guard let port = Int(trsvcid), (1...65535).contains(port) else {
                throw error("trsvcid", "\"\(trsvcid)\" is not a port number 1...65535")
            }
        }

        let tsas: TransportSpecificAddressSubtype
        switch trtype {
        case 3:
            let sectype = try word(
                "sectype",
                ["none": 0, "tls12": 1, "tls 1.2": 1, "tls13": 2, "tls 1.3": 2],
                default: 0
            )
            tsas = .tcp(securityType: UInt8(sectype))
        case 1:
            tsas = .rdma(
                queuePairType: UInt8(try word("rdma_qptype", ["connected": 1, "datagram": 2], default: 1)),
                providerType: UInt8(
                    try word(
                        "rdma_prtype",
                        ["not specified": 1, "infiniband": 2, "roce": 3, "roce-v2": 4, "iwarp": 5],
                        default: 1
                    )
                ),
                connectionManagementService: UInt8(try word("rdma_cms", ["rdma-cm": 1], default: 1)),
                partitionKey: UInt16(try number("rdma_pkey", default: 0, range: 0...0xFFFF))
            )
        default:
            tsas = .raw([UInt8](repeating: 0, count: 256))
        }

        var access = HostAccess.anyHost
        if let hosts = f["hosts"] {
            guard let list = hosts as? [String] else { throw error("hosts", "must be an array of host NQNs") }
            for (index, host) in list.enumerated() {
                do {
                    _ = try NQN(host)
                } catch let nqnError {
                    throw error("hosts[\(index)]", nqnError.reason)
                }
            }
            access = .hosts(Set(list))
        }
        if let allowAny = f["allow_any_host"] as? Bool, allowAny {
            access = .anyHost
        }

        let entry = DiscoveryLogEntry(
            transportType: TransportType(rawValue: UInt8(trtype)),
            addressFamily: AddressFamily(rawValue: UInt8(adrfam)),
            subsystemType: SubsystemType(rawValue: UInt8(subtype)),
            transportRequirements: TransportRequirements(rawValue: UInt8(treq)),
            portIdentifier: UInt16(portid),
            controllerIdentifier: UInt16(cntlid),
            adminMaximumSubmissionQueueSize: UInt16(asqsz),
            entryFlags: EntryFlags(rawValue: UInt16(eflags)),
            transportServiceIdentifier: trsvcid,
            subsystemNQN: subnqn,
            transportAddress: traddr,
            transportSpecificAddressSubtype: tsas
        )
        return SourceEntry(entry: entry, access: access)
    }
}
