import NIOCore

/// Who a discovery controller is serving: what a Connect said, and where the connection arrived.
public struct DiscoveryHostContext: Sendable, Hashable {
    /// HOSTNQN from the Connect data.
    public var hostNQN: String
    /// HOSTID from the Connect data (16 bytes).
    public var hostIdentifier: [UInt8]
    /// The subsystem NQN the host connected to (well-known or the DC's unique NQN).
    public var subsystemNQN: String
    /// The local IP address the connection arrived at, when known (for wildcard listeners).
    public var localAddress: String?
    /// The remote address of the host, for logs.
    public var remoteAddress: String?

    public init(
        hostNQN: String,
        hostIdentifier: [UInt8],
        subsystemNQN: String,
        localAddress: String? = nil,
        remoteAddress: String? = nil
    ) {
        self.hostNQN = hostNQN
        self.hostIdentifier = hostIdentifier
        self.subsystemNQN = subsystemNQN
        self.localAddress = localAddress
        self.remoteAddress = remoteAddress
    }
}

/// What a controller demands of a host that connected.
public enum HostAuthentication: Sendable, Hashable {
    /// Nothing: the host is whoever its Connect says.
    case notRequired
    /// DH-HMAC-CHAP with this policy before any other command (AUTHREQ in the Connect response).
    case required(DHCHAPPolicy)
    /// The Connect is refused (Connect Invalid Host): keys are required and the host has none.
    case refused(String)
}

/// How a controller learns what to demand of each host, and tells of the outcome. Shared by
/// every connection and thread-safe; the calls are synchronous and must be quick.
public protocol HostAuthenticationService: Sendable {
    /// What the controller demands of `host`, asked once per Connect.
    func authentication(for host: DiscoveryHostContext) -> HostAuthentication
    /// `host` proved itself with its policy's `hostKeys[keyIndex]`.
    func hostAuthenticated(_ host: DiscoveryHostContext, keyIndex: Int)
    /// `host` failed to authenticate (the association ends).
    func authenticationFailed(_ host: DiscoveryHostContext, reason: String)
}

extension HostAuthenticationService {
    /// No authentication.
    public func authentication(for host: DiscoveryHostContext) -> HostAuthentication { .notRequired }
    /// Nothing to record.
    public func hostAuthenticated(_ host: DiscoveryHostContext, keyIndex: Int) {}
    /// Nothing to record.
    public func authenticationFailed(_ host: DiscoveryHostContext, reason: String) {}
}

/// What a discovery controller asks of the service around it. Implementations are shared by
/// every connection and must be thread-safe; the calls are synchronous and must be quick.
public protocol DiscoveryControllerService: HostAuthenticationService {
    /// The discovery log page (header and entries, encoded) that `host` may see now.
    func discoveryLogPage(for host: DiscoveryHostContext) -> ByteBuffer
    /// A fresh controller ID for the dynamic controller model (1...FFEFh).
    func allocateControllerIdentifier() -> UInt16
    /// Starts calling `onChange` whenever the page `host` sees changes; returns a token for
    /// ``controllerRemoved(_:)``.
    func controllerCreated(_ host: DiscoveryHostContext, onChange: @escaping @Sendable () -> Void) -> UInt64
    /// Stops the calls registered under `token`.
    func controllerRemoved(_ token: UInt64)
    /// A Get Log Page command for the discovery log was answered (for metrics).
    func logPageRead(offset: UInt64, length: UInt64)
    /// A discovery change notice (an AER completion) was sent (for metrics).
    func asynchronousEventSent()
    /// Carries out a Discovery Information Management command (TP8010 registration) that the
    /// controller checked, from `host`'s association; returns the command's status. Called off
    /// the event loop; it may take time (a durable write).
    func discoveryInformation(_ request: DiscoveryInformationRequest, host: DiscoveryHostContext) async -> NVMeStatus
}

extension DiscoveryControllerService {
    /// No change notices: the page never changes.
    public func controllerCreated(_ host: DiscoveryHostContext, onChange: @escaping @Sendable () -> Void) -> UInt64 {
        0
    }
    /// Nothing to stop.
    public func controllerRemoved(_ token: UInt64) {}
    /// Not counted.
    public func logPageRead(offset: UInt64, length: UInt64) {}
    /// Not counted.
    public func asynchronousEventSent() {}
    /// No registrations: the command is not supported.
    public func discoveryInformation(
        _ request: DiscoveryInformationRequest,
        host: DiscoveryHostContext
    ) async -> NVMeStatus {
        .invalidOpcode.withDoNotRetry
    }
}

/// What the administrative controller of dem-em's in-band channel asks of the service around it
/// (``InBandManagement``). Shared by every connection and thread-safe; only ``perform(_:host:)``
/// may take time, and it is called off the event loop.
public protocol ManagementControllerService: HostAuthenticationService {
    /// Whether `hostNQN` may connect at all (the allow-list); others get Connect Invalid Host.
    func hostAllowed(_ hostNQN: String) -> Bool
    /// A fresh controller ID (1...FFEFh).
    func allocateControllerIdentifier() -> UInt16
    /// Carries out an authenticated host's request message and returns the response message.
    func perform(_ request: ByteBuffer, host: DiscoveryHostContext) async -> ByteBuffer
}

/// The fixed parameters of a discovery controller.
public struct DiscoveryControllerConfiguration: Sendable, Hashable {
    /// The controller's unique discovery NQN (TP8013); the well-known NQN is always accepted too.
    public var uniqueNQN: String
    /// MAXH2CDATA offered in ICResp.
    public var maximumH2CDataLength: UInt32 = 131_072
    /// The most data bytes put in one C2HData PDU; longer transfers are split.
    public var maximumC2HDataLength: Int = 32_768
    /// The most in-capsule data bytes accepted in a command capsule (8 KiB for an admin queue).
    public var maximumInCapsuleDataLength: Int = 8192
    /// The most data one command may bring from the host, in its capsule or fetched by the
    /// transport (an R2T over NVMe/TCP, an RDMA READ over NVMe/RDMA); a command announcing more
    /// is completed with Data SGL Length Invalid.
    public var maximumHostDataLength: Int = 65_536
    /// The largest Get Log Page transfer served, in bytes (reported as MDTS).
    public var maximumTransferLength: Int = 16 << 20
    /// Whether commands may carry Keyed SGL Data Blocks (NVMe/RDMA): reported in Identify's
    /// SGLS, which Linux's nvme-rdma requires.
    public var keyedSGLs = false
    /// How many Asynchronous Event Requests a host may park.
    public var asynchronousEventRequestLimit: Int = 4
    /// The keep-alive timeout used when a host connects with KATO 0, so idle connections end.
    public var defaultKeepAliveTimeout: TimeAmount = .seconds(120)
    /// How long a host may take for each step of setting up the association (the ICReq after
    /// the connection opens, the Connect after the ICResp) and to send the rest of a PDU it has
    /// begun; a host that stalls longer is disconnected.
    public var setupTimeout: TimeAmount = .seconds(10)
    /// DCTYPE reported by Identify.
    public var discoveryControllerType: UInt8 = IdentifyControllerData.DiscoveryControllerType.centralized
    /// SN reported by Identify.
    public var serialNumber: String = "DEM"
    /// MN reported by Identify.
    public var modelNumber: String = "DEM discovery controller"
    /// FR reported by Identify.
    public var firmwareRevision: String = "0.1"

    public init(uniqueNQN: String) {
        self.uniqueNQN = uniqueNQN
    }

    /// The largest PDU a host may send: a capsule with the largest in-capsule data, digests and
    /// padding, or an H2CData PDU of MAXH2CDATA.
    public var maximumPDULength: Int {
        max(72 + 4 + 128 + maximumInCapsuleDataLength + 4, 24 + 4 + 128 + Int(maximumH2CDataLength) + 4)
    }
}

/// Which controller a connection serves: a discovery controller, or the administrative
/// controller of dem-em's in-band management channel.
public enum ControllerService: Sendable {
    case discovery(any DiscoveryControllerService)
    case management(any ManagementControllerService)

    /// Who decides what hosts must prove.
    public var authentication: any HostAuthenticationService {
        switch self {
        case .discovery(let service): service
        case .management(let service): service
        }
    }
}
