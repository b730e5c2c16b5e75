import DEMCore

/// Discovery log entries and pages as nvme-cli's `discover -o json` writes them: the same keys
/// (`trtype`, `adrfam`, `subtype`, `treq`, `portid`, `trsvcid`, `subnqn`, `traddr`, `eflags`,
/// `sectype` or the `rdma_*` keys) and the same words, in nvme-cli's order.
public enum DiscoveryRecordJSON {
    /// One entry as a one-line JSON object.
    public static func record(_ entry: DiscoveryLogEntry) -> String {
        object(entry).serialized(pretty: false)
    }

    /// A page as `{"genctr":N,"records":[...]}`: one line, or indented by two spaces when
    /// `pretty`.
    public static func page(_ page: DiscoveryLogPage, pretty: Bool = false) -> String {
        object(page).serialized(pretty: pretty)
    }

    static func object(_ page: DiscoveryLogPage) -> JSONValue {
        .members([
            ("genctr", .integer(page.generationCounter)),
            ("records", .array(page.entries.map(object))),
        ])
    }

    static func object(_ e: DiscoveryLogEntry) -> JSONValue {
        var members: [(String, JSONValue)] = [
            ("trtype", .string(NVMeCLIWords.transport(e.transportType))),
            ("adrfam", .string(NVMeCLIWords.addressFamily(e.addressFamily))),
            ("subtype", .string(NVMeCLIWords.subtype(e.subsystemType))),
            ("treq", .string(NVMeCLIWords.transportRequirements(e.transportRequirements))),
            ("portid", .integer(e.portIdentifier)),
            ("trsvcid", .string(e.transportServiceIdentifier)),
            ("subnqn", .string(e.subsystemNQN)),
            ("traddr", .string(e.transportAddress)),
            ("eflags", .string(NVMeCLIWords.entryFlags(e.entryFlags))),
        ]
        for (key, value) in tsasFields(e.transportSpecificAddressSubtype) {
            members.append((key, value))
        }
        return .members(members)
    }

    /// The TSAS fields of an entry: `sectype` for TCP, the `rdma_*` fields for RDMA, none for
    /// other transports.
    static func tsasFields(_ tsas: TransportSpecificAddressSubtype) -> [(String, JSONValue)] {
        switch tsas {
        case .tcp(let sectype):
            [("sectype", .string(NVMeCLIWords.securityType(sectype)))]
        case .rdma(let qptype, let prtype, let cms, let pkey):
            [
                ("rdma_prtype", .string(NVMeCLIWords.rdmaProviderType(prtype))),
                ("rdma_qptype", .string(NVMeCLIWords.rdmaQueuePairType(qptype))),
                ("rdma_cms", .string(NVMeCLIWords.rdmaConnectionManagement(cms))),
                ("rdma_pkey", .integer(pkey)),
            ]
        case .raw: []
        }
    }
}
