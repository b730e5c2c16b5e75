import DEMCore

/// What the kernel's host is asked to connect: the options string written to
/// `/dev/nvme-fabrics`.
public struct ConnectOptions: Sendable, Hashable, Codable {
    /// `transport=`: `tcp` or `rdma`.
    public var transport: String
    /// `traddr=`.
    public var traddr: String
    /// `trsvcid=`; left out of the options string when empty.
    public var trsvcid: String
    /// `nqn=`: the subsystem's NQN.
    public var nqn: String
    /// `hostnqn=`.
    public var hostNQN: String
    /// `hostid=`, a UUID; left out of the options string when empty (the kernel then makes one).
    public var hostID: String
    /// `host_traddr=`: the local address to connect from.
    public var hostTraddr: String?
    /// `host_iface=`: the local interface to connect through (TCP).
    public var hostIface: String?
    /// `ctrl_loss_tmo=` in seconds; -1 retries for ever.
    public var ctrlLossTimeout: Int?
    /// `keep_alive_tmo=` in seconds.
    public var keepAliveTimeout: Int?
    /// `nr_io_queues=`.
    public var nrIOQueues: Int?
    /// `dhchap_secret=`: the host's DH-HMAC-CHAP secret (never encoded, logged or described).
    public var dhchapSecret: DHCHAPSecret?
    /// `dhchap_ctrl_secret=`: the controller's secret, for two-way authentication.
    public var dhchapControllerSecret: DHCHAPSecret?

    // The secrets are not encoded: what is recorded of a connection holds no key.
    enum CodingKeys: String, CodingKey {
        case transport, traddr, trsvcid, nqn, hostNQN, hostID, hostTraddr, hostIface, ctrlLossTimeout
        case keepAliveTimeout, nrIOQueues
    }

    public init(
        transport: String,
        traddr: String,
        trsvcid: String,
        nqn: String,
        hostNQN: String,
        hostID: String,
        hostTraddr: String? = nil,
        hostIface: String? = nil,
        ctrlLossTimeout: Int? = nil,
        keepAliveTimeout: Int? = nil,
        nrIOQueues: Int? = nil,
        dhchapSecret: DHCHAPSecret? = nil,
        dhchapControllerSecret: DHCHAPSecret? = nil
    ) {
        self.dhchapSecret = dhchapSecret
        self.dhchapControllerSecret = dhchapControllerSecret
        self.transport = transport
        self.traddr = traddr
        self.trsvcid = trsvcid
        self.nqn = nqn
        self.hostNQN = hostNQN
        self.hostID = hostID
        self.hostTraddr = hostTraddr
        self.hostIface = hostIface
        self.ctrlLossTimeout = ctrlLossTimeout
        self.keepAliveTimeout = keepAliveTimeout
        self.nrIOQueues = nrIOQueues
    }

    /// The string written to `/dev/nvme-fabrics`:
    /// `nqn=…,transport=…,traddr=…,trsvcid=…,hostnqn=…,hostid=…[,host_traddr=…][,host_iface=…]`
    /// `[,ctrl_loss_tmo=N][,keep_alive_tmo=N][,nr_io_queues=N][,dhchap_secret=…][,dhchap_ctrl_secret=…]`.
    public var optionsString: String {
        var parts = ["nqn=\(nqn)", "transport=\(transport)", "traddr=\(traddr)"]
        if !trsvcid.isEmpty { parts.append("trsvcid=\(trsvcid)") }
        parts.append("hostnqn=\(hostNQN)")
        if !hostID.isEmpty { parts.append("hostid=\(hostID)") }
        if let hostTraddr { parts.append("host_traddr=\(hostTraddr)") }
        if let hostIface { parts.append("host_iface=\(hostIface)") }
        if let ctrlLossTimeout { parts.append("ctrl_loss_tmo=\(ctrlLossTimeout)") }
        if let keepAliveTimeout { parts.append("keep_alive_tmo=\(keepAliveTimeout)") }
        if let nrIOQueues { parts.append("nr_io_queues=\(nrIOQueues)") }
        if let dhchapSecret { parts.append("dhchap_secret=\(dhchapSecret.text)") }
        if let dhchapControllerSecret { parts.append("dhchap_ctrl_secret=\(dhchapControllerSecret.text)") }
        return parts.joined(separator: ",")
    }

    /// The first field that cannot be written safely, or nil when all can: a required field
    /// (transport, traddr, nqn, hostnqn) is empty, or a value holds a comma, a line break or a
    /// NUL, which the kernel would read as the start of another option. Values come from
    /// discovery log pages of remote controllers, so they are checked before every connect.
    public var invalidField: (name: String, value: String)? {
        let required: [(String, String)] = [
            ("transport", transport), ("traddr", traddr), ("nqn", nqn), ("hostnqn", hostNQN),
        ]
        for (name, value) in required where value.isEmpty { return (name, value) }
        let fields: [(String, String?)] = [
            ("transport", transport), ("traddr", traddr), ("trsvcid", trsvcid), ("nqn", nqn),
            ("hostnqn", hostNQN), ("hostid", hostID), ("host_traddr", hostTraddr), ("host_iface", hostIface),
        ]
        for (name, value) in fields {
            guard let value else { continue }
            if value.unicodeScalars.contains(where: { $0 == "," || $0 == "\n" || $0 == "\r" || $0 == "\0" }) {
                return (name, value)
            }
        }
        return nil
    }
}
