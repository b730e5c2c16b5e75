import Logging
import NIOCore
import NIOPosix
import Synchronization

/// Binds NVMe/TCP discovery controller listeners: one `ServerBootstrap` per address, each child
/// channel a ``NVMeTCPFrameDecoder`` followed by a ``NVMeTCPControllerHandler``.
public enum NVMeTCPDiscoveryListener {
    /// Binds the in-band management channel's listener on `host`:`port`: each connection is an
    /// administrative controller serving `configuration.uniqueNQN` (``InBandManagement``).
    public static func bindManagement(
        host: String,
        port: Int,
        configuration: DiscoveryControllerConfiguration,
        management: any ManagementControllerService,
        gate: ConnectionGate? = nil,
        group: any EventLoopGroup,
        logger: Logger
    ) async throws -> any Channel {
        try await bind(
            host: host,
            port: port,
            configuration: configuration,
            serving: .management(management),
            gate: gate,
            group: group,
            logger: logger
        )
    }

    /// Binds a discovery controller listener on `host`:`port`.
    public static func bind(
        host: String,
        port: Int,
        configuration: DiscoveryControllerConfiguration,
        service: any DiscoveryControllerService,
        gate: ConnectionGate? = nil,
        group: any EventLoopGroup,
        logger: Logger
    ) async throws -> any Channel {
        try await bind(
            host: host,
            port: port,
            configuration: configuration,
            serving: .discovery(service),
            gate: gate,
            group: group,
            logger: logger
        )
    }

    /// Binds a listener on `host`:`port`.
    ///
    /// - Parameters:
    ///   - host: the IP address to bind.
    ///   - port: the TCP port (8009 for discovery), 0 for any free port.
    ///   - configuration: the controller parameters every connection uses.
    ///   - service: what each connection's controller serves.
    ///   - gate: the limits on connections, and the counts (nil: no limits).
    ///   - group: the event loops.
    ///   - logger: the logger connections derive theirs from.
    /// - Returns: the bound server channel.
    public static func bind(
        host: String,
        port: Int,
        configuration: DiscoveryControllerConfiguration,
        serving service: ControllerService,
        gate: ConnectionGate? = nil,
        group: any EventLoopGroup,
        logger: Logger
    ) async throws -> any Channel {
        let connections = Connections()
        let name = gate?.name ?? "NVMe/TCP \(host):\(port)"
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 4096)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                // Without it, an accept that fails for want of descriptors is retried at once,
                // for ever, on the event loop.
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        AcceptBackoff(name: name, gate: gate, logger: logger)
                    )
                }
            }
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.socketOption(.so_keepalive), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // Over a limit, the connection is closed at once and costs nothing more.
                    if let gate, !gate.admit(channel) { return }
                    let handler = NVMeTCPControllerHandler(
                        configuration: configuration,
                        serving: service,
                        localAddress: channel.localAddress?.ipAddress,
                        remoteAddress: channel.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" },
                        gate: gate,
                        logger: logger
                    )
                    connections.add(channel)
                    try channel.pipeline.syncOperations.addHandlers(
                        ByteToMessageHandler(
                            NVMeTCPFrameDecoder(
                                maximumPDULength: configuration.maximumPDULength,
                                firstPDULength: NVMeTCPPDUType.initializeConnectionRequest.headerLength,
                                reportsPartialPDUs: true
                            )
                        ),
                        handler
                    )
                }
            }
            .bind(host: host, port: port)
            .get()
        // Closing the listener ends its connections too (an accepted channel outlives its
        // server channel otherwise, and would go on being served).
        server.closeFuture.whenComplete { _ in connections.closeAll() }
        return server
    }

    /// The open connections of one listener.
    private final class Connections: Sendable {
        private let channels = Mutex<(closed: Bool, open: [ObjectIdentifier: any Channel])>((false, [:]))

        func add(_ channel: any Channel) {
            let key = ObjectIdentifier(channel)
            let closed = channels.withLock { state -> Bool in
                if !state.closed { state.open[key] = channel }
                return state.closed
            }
            if closed {
                channel.close(promise: nil)
                return
            }
            channel.closeFuture.whenComplete { [self] _ in
                channels.withLock { _ = $0.open.removeValue(forKey: key) }
            }
        }

        func closeAll() {
            let open = channels.withLock { state in
                state.closed = true
                defer { state.open = [:] }
                return Array(state.open.values)
            }
            for channel in open { channel.close(promise: nil) }
        }
    }
}
