import NIOCore
import NIOPosix

/// NVMe/RDMA host connections (the `RDMA` package trait).
public enum NVMeRDMAHostConnection {
    /// Opens an admin queue to the controller at `host`:`port` over the RDMA device that routes
    /// to it: RDMA CM address and route resolution, then the connection with the NVMe/RDMA
    /// private data. Commands carry their data in Keyed SGL Data Blocks the controller reads
    /// and writes.
    ///
    /// - Throws: ``NVMeRDMATransport/Unavailable`` in a build without the trait;
    ///   ``NVMeHostError`` when the controller cannot be reached or refuses the queue.
    public static func connect(
        host: String,
        port: Int,
        queueSize: Int = 32,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        connectTimeout: TimeAmount = .seconds(10)
    ) async throws -> any NVMeHostConnection {
        #if RDMA
        return try await RDMAHostConnection.connect(
            host: host,
            port: port,
            queueSize: queueSize,
            eventLoop: group.next(),
            timeout: connectTimeout
        )
        #else
        throw NVMeRDMATransport.Unavailable()
        #endif
    }
}
