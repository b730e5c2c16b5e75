/// DEMCore: the NVMe over Fabrics wire format (NVMe/TCP PDUs, SQE/CQE, Fabrics and Admin
/// commands, Identify data, the discovery log page), the pure controller and host state
/// machines, and the SwiftNIO transport that drives them.
///
/// Everything here is shared by two or more of DEM's programs.
public enum DEMCore {
    /// The well-known discovery subsystem NQN (NVMe Base 2.1 §3.1.2.1.1).
    public static let wellKnownDiscoveryNQN = "nqn.2014-08.org.nvmexpress.discovery"
    /// IANA-assigned TCP port for NVMe-oF discovery.
    public static let discoveryPort = 8009
    /// dem-em's REST API port (nvme-dem's).
    public static let endpointManagerPort = 22334
    /// dem-em's in-band management channel (NVMe/TCP or RDMA): its default TRSVCID.
    public static let endpointInBandPort = 22335
    /// dem's REST API port (nvme-dem's).
    public static let managementPort = 22345
}
