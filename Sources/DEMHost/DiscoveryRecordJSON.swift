import DEMCore

/// Discovery log entries and pages as nvme-cli's `discover -o json` writes them: the same keys
/// (`trtype`, `adrfam`, `subtype`, `treq`, `portid`, `trsvcid`, `subnqn`, `traddr`, `eflags`,
/// `sectype` or the `rdma_*` keys) and the same words, in nvme-cli's order.
public enum DiscoveryRecordJSON {
    /// One entry as a one-line JSON object.
    public static func record(_ entry: DiscoveryLogEntry) -> String {
        object(entry).rendered()
    }

    /// A page as `{"genctr":N,"records":[...]}`: one line, or indented by two spaces when
    /// `pretty`.
    public static func page(_ page: DiscoveryLogPage, pretty: Bool = false) -> String {
        object(page).rendered(indent: pretty ? 2 : 0)
    }

    static func object(_ page: DiscoveryLogPage) -> JSONText {
        .object([
            ("genctr", .unsigned(page.generationCounter)),
            ("records", .array(page.entries.map(object))),
        ])
    }

    static func object(_ e: DiscoveryLogEntry) -> JSONText {
        var members: [(String, JSONText)] = [
            ("trtype", .string(transportWord(e.transportType))),
            ("adrfam", .string(addressFamilyWord(e.addressFamily))),
            ("subtype", .string(subtypeWord(e.subsystemType))),
            ("treq", .string(treqWords(e.transportRequirements))),
            ("portid", .integer(Int64(e.portIdentifier))),
            ("trsvcid", .string(e.transportServiceIdentifier)),
            ("subnqn", .string(e.subsystemNQN)),
            ("traddr", .string(e.transportAddress)),
            ("eflags", .string(eflagsWords(e.entryFlags))),
        ]
        for (key, value) in tsasFields(e.transportSpecificAddressSubtype) {
            members.append((key, value))
        }
        return .object(members)
    }

    /// The TSAS fields of an entry: `sectype` for TCP, the `rdma_*` fields for RDMA, none for
    /// other transports.
    static func tsasFields(_ tsas: TransportSpecificAddressSubtype) -> [(String, JSONText)] {
        switch tsas {
        case .tcp(let sectype):
            [("sectype", .string(word(sectype, [0: "none", 1: "tls12", 2: "tls13"])))]
        case .rdma(let qptype, let prtype, let cms, let pkey):
            [
                ("rdma_prtype", .string(rdmaProviderWord(prtype))),
                ("rdma_qptype", .string(word(qptype, [1: "connected", 2: "datagram"]))),
                ("rdma_cms", .string(word(cms, [1: "rdma-cm"]))),
                ("rdma_pkey", .integer(Int64(pkey))),
            ]
        case .raw: []
        }
    }

    static func transportWord(_ value: TransportType) -> String {
        word(value.rawValue, [1: "rdma", 2: "fc", 3: "tcp", 254: "loop"])
    }

    static func addressFamilyWord(_ value: AddressFamily) -> String {
        word(value.rawValue, [0: "pci", 1: "ipv4", 2: "ipv6", 3: "infiniband", 4: "fibre-channel", 254: "loop"])
    }

    static func subtypeWord(_ value: SubsystemType) -> String {
        word(
            value.rawValue,
            [1: "discovery subsystem referral", 2: "nvme subsystem", 3: "current discovery subsystem"]
        )
    }

    static func treqWords(_ value: TransportRequirements) -> String {
        var text = word(value.rawValue & 0x3, [0: "not specified", 1: "required", 2: "not required"])
        if value.rawValue & 0x4 != 0 { text += ", sq flow control disable supported" }
        return text
    }

    static func eflagsWords(_ flags: EntryFlags) -> String {
        var parts: [String] = []
        if flags.contains(.duplicateReturnedInformation) { parts.append("duplicate returned information") }
        if flags.contains(.explicitPersistentConnection) { parts.append("explicit discovery connections") }
        if flags.contains(.noCDCConnectivity) { parts.append("no cdc connectivity") }
        return parts.isEmpty ? "none" : parts.joined(separator: ", ")
    }

    static func rdmaProviderWord(_ value: UInt8) -> String {
        word(value, [1: "not specified", 2: "infiniband", 3: "roce", 4: "roce-v2", 5: "iwarp"])
    }

    static func word(_ value: UInt8, _ table: [UInt8: String]) -> String {
        table[value] ?? "unrecognized"
    }
}
