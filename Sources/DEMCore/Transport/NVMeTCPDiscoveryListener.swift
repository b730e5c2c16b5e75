import Logging
import NIOCore
import NIOPosix

/// Binds NVMe/TCP discovery controller listeners: one `ServerBootstrap` per address, each child
/// channel a ``NVMeTCPFrameDecoder`` followed by a ``NVMeTCPControllerHandler``.
public enum NVMeTCPDiscoveryListener {
    /// Binds a listener on `host`:`port`.
    ///
    /// - Parameters:
    ///   - host: the IP address to bind.
    ///   - port: the TCP port (8009 for discovery), 0 for any free port.
    ///   - configuration: the controller parameters every connection uses.
    ///   - service: log pages, controller IDs and change notices.
    ///   - group: the event loops.
    ///   - logger: the logger connections derive theirs from.
    /// - Returns: the bound server channel.
    public static func bind(
        host: String,
        port: Int,
        configuration: DiscoveryControllerConfiguration,
        service: any DiscoveryControllerService,
        group: any EventLoopGroup,
        logger: Logger
    ) async throws -> any Channel {
        try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 4096)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.socketOption(.so_keepalive), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let handler = NVMeTCPControllerHandler(
                        configuration: configuration,
                        service: service,
                        localAddress: channel.localAddress?.ipAddress,
                        remoteAddress: channel.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" },
                        logger: logger
                    )
                    try channel.pipeline.syncOperations.addHandlers(
                        ByteToMessageHandler(
                            NVMeTCPFrameDecoder(
                                maximumPDULength: configuration.maximumPDULength,
                                firstPDULength: NVMeTCPPDUType.initializeConnectionRequest.headerLength
                            )
                        ),
                        handler
                    )
                }
            }
            .bind(host: host, port: port)
            .get()
    }
}
