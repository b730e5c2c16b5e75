import DEMCore
import Foundation

/// Renders a discovery log page as nvme-cli's `discover -o json` does (same keys and words).
public enum DiscoveryLogJSON {
    /// The page as pretty-printed JSON.
    public static func render(_ page: DiscoveryLogPage) -> String {
        let records: [[String: Any]] = page.entries.map(record)
        let object: [String: Any] = ["genctr": page.generationCounter, "records": records]
        let data = try! JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }

    /// One entry as nvme-cli's JSON record.
    public static func record(_ e: DiscoveryLogEntry) -> [String: Any] {
        var r: [String: Any] = [
            "trtype": word(e.transportType.rawValue, [1: "rdma", 2: "fc", 3: "tcp", 254: "loop"]),
            "adrfam": word(
                e.addressFamily.rawValue,
                [0: "pci", 1: "ipv4", 2: "ipv6", 3: "infiniband", 4: "fibre-channel", 254: "loop"]
            ),
            "subtype": word(
                e.subsystemType.rawValue,
                [1: "discovery subsystem referral", 2: "nvme subsystem", 3: "current discovery subsystem"]
            ),
            "treq": treq(e.transportRequirements.rawValue),
            "portid": Int(e.portIdentifier),
            "trsvcid": e.transportServiceIdentifier,
            "subnqn": e.subsystemNQN,
            "traddr": e.transportAddress,
            "eflags": eflags(e.entryFlags),
        ]
        switch e.transportSpecificAddressSubtype {
        case .tcp(let sectype): r["sectype"] = word(sectype, [0: "none", 1: "tls12", 2: "tls13"])
        case .rdma(let qptype, let prtype, let cms, let pkey):
            r["rdma_qptype"] = word(qptype, [1: "connected", 2: "datagram"])
            r["rdma_prtype"] = word(prtype, [1: "not specified", 2: "infiniband", 3: "roce", 4: "roce-v2", 5: "iwarp"])
            r["rdma_cms"] = word(cms, [1: "rdma-cm"])
            r["rdma_pkey"] = Int(pkey)
        case .raw: break
        }
        return r
    }

    private static func word(_ value: UInt8, _ table: [UInt8: String]) -> String {
        table[value] ?? "unrecognized"
    }

    private static func treq(_ value: UInt8) -> String {
        var text = word(value & 0x3, [0: "not specified", 1: "required", 2: "not required"])
        if value & 0x4 != 0 { text += ", sq flow control disable supported" }
        return text
    }

    private static func eflags(_ flags: EntryFlags) -> String {
        var parts: [String] = []
        if flags.contains(.duplicateReturnedInformation) { parts.append("duplicate returned information") }
        if flags.contains(.explicitPersistentConnection) { parts.append("explicit discovery connections") }
        if flags.contains(.noCDCConnectivity) { parts.append("no cdc connectivity") }
        return parts.isEmpty ? "none" : parts.joined(separator: ", ")
    }
}
