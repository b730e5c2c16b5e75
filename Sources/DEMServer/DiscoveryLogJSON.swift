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
            "trtype": NVMeCLIWords.transport(e.transportType),
            "adrfam": NVMeCLIWords.addressFamily(e.addressFamily),
            "subtype": NVMeCLIWords.subtype(e.subsystemType),
            "treq": NVMeCLIWords.transportRequirements(e.transportRequirements),
            "portid": Int(e.portIdentifier),
            "trsvcid": e.transportServiceIdentifier,
            "subnqn": e.subsystemNQN,
            "traddr": e.transportAddress,
            "eflags": NVMeCLIWords.entryFlags(e.entryFlags),
        ]
        switch e.transportSpecificAddressSubtype {
        case .tcp(let sectype): r["sectype"] = NVMeCLIWords.securityType(sectype)
        case .rdma(let qptype, let prtype, let cms, let pkey):
            r["rdma_qptype"] = NVMeCLIWords.rdmaQueuePairType(qptype)
            r["rdma_prtype"] = NVMeCLIWords.rdmaProviderType(prtype)
            r["rdma_cms"] = NVMeCLIWords.rdmaConnectionManagement(cms)
            r["rdma_pkey"] = Int(pkey)
        case .raw: break
        }
        return r
    }
}
