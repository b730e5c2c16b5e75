/// The words nvme-cli (`nvme discover`, its `-o json`) uses for the fields of a discovery log
/// entry, so that DEM's pages and reports read the same; values it does not know are
/// `unrecognized`, as in nvme-cli.
public enum NVMeCLIWords {
    public static func transport(_ value: TransportType) -> String {
        word(value.rawValue, [1: "rdma", 2: "fc", 3: "tcp", 254: "loop"])
    }

    public static func addressFamily(_ value: AddressFamily) -> String {
        word(value.rawValue, [0: "pci", 1: "ipv4", 2: "ipv6", 3: "infiniband", 4: "fibre-channel", 254: "loop"])
    }

    public static func subtype(_ value: SubsystemType) -> String {
        word(
            value.rawValue,
            [1: "discovery subsystem referral", 2: "nvme subsystem", 3: "current discovery subsystem"]
        )
    }

    public static func transportRequirements(_ value: TransportRequirements) -> String {
        var text = word(value.rawValue & 0x3, [0: "not specified", 1: "required", 2: "not required"])
        if value.rawValue & 0x4 != 0 { text += ", sq flow control disable supported" }
        return text
    }

    public static func entryFlags(_ flags: EntryFlags) -> String {
        var parts: [String] = []
        if flags.contains(.duplicateReturnedInformation) { parts.append("duplicate returned information") }
        if flags.contains(.explicitPersistentConnection) { parts.append("explicit discovery connections") }
        if flags.contains(.noCDCConnectivity) { parts.append("no cdc connectivity") }
        return parts.isEmpty ? "none" : parts.joined(separator: ", ")
    }

    /// TCP's SECTYPE.
    public static func securityType(_ value: UInt8) -> String {
        word(value, [0: "none", 1: "tls12", 2: "tls13"])
    }

    public static func rdmaQueuePairType(_ value: UInt8) -> String {
        word(value, [1: "connected", 2: "datagram"])
    }

    public static func rdmaProviderType(_ value: UInt8) -> String {
        word(value, [1: "not specified", 2: "infiniband", 3: "roce", 4: "roce-v2", 5: "iwarp"])
    }

    public static func rdmaConnectionManagement(_ value: UInt8) -> String {
        word(value, [1: "rdma-cm"])
    }

    static func word(_ value: UInt8, _ table: [UInt8: String]) -> String {
        table[value] ?? "unrecognized"
    }
}
