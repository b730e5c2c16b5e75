import Logging
import NIOCore

/// The NVMe/RDMA transport, when this build has it (the `RDMA` package trait).
public enum NVMeRDMATransport {
    /// Whether this build was made with the `RDMA` trait.
    public static var isAvailable: Bool {
        #if RDMA
        return true
        #else
        return false
        #endif
    }

    /// What a build without the trait answers when RDMA is asked for.
    public struct Unavailable: Error, CustomStringConvertible {
        public init() {}
        public var description: String {
            "this build has no NVMe/RDMA transport: build with `swift build --traits RDMA` "
                + "(needs librdmacm-dev and libibverbs-dev)"
        }
    }
}

/// A bound NVMe/RDMA controller listener: each queue the RDMA CM brings is a controller of the
/// kind given at bind (``ControllerService``), run by ``NVMeRDMAControllerBinding`` on the same
/// ``ControllerStateMachine`` as NVMe/TCP.
public final class NVMeRDMAListener: Sendable {
    /// The address bound.
    public let address: String
    /// The port bound (the RDMA CM's port space is TCP's).
    public let port: Int
    private let closer: @Sendable () async -> Void

    init(address: String, port: Int, closer: @escaping @Sendable () async -> Void) {
        self.address = address
        self.port = port
        self.closer = closer
    }

    /// Binds `host`:`port` (0 for any free port) on the RDMA device that has the address.
    ///
    /// - Throws: ``NVMeRDMATransport/Unavailable`` in a build without the `RDMA` trait;
    ///   ``RDMAError`` when no RDMA device has the address.
    public static func bind(
        host: String,
        port: Int,
        configuration: DiscoveryControllerConfiguration,
        serving service: ControllerService,
        logger: Logger
    ) async throws -> NVMeRDMAListener {
        #if RDMA
        return try await RDMAControllerListener.bind(
            host: host,
            port: port,
            configuration: configuration,
            service: service,
            logger: logger
        )
        #else
        throw NVMeRDMATransport.Unavailable()
        #endif
    }

    /// Stops listening and disconnects the queues it accepted.
    public func close() async {
        await closer()
    }
}
