import DEMCore
import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import UnixSignals

/// Where a discovery controller listens: a transport, an address and a port.
public struct DiscoveryEndpoint: Sendable, Hashable {
    public var transport: NVMeTransport
    public var address: String
    public var port: Int
    /// What sets the port, for messages: an option, or an interface file.
    public var option: String
    /// What to say when the port is in use, besides the address.
    public var advice: String?

    public init(transport: NVMeTransport, address: String, port: Int, option: String = "--port", advice: String? = nil)
    {
        self.transport = transport
        self.address = address
        self.port = port
        self.option = option
        self.advice = advice
    }
}

/// dem's discovery listeners as a `Service`, NVMe/TCP and NVMe/RDMA: bound by
/// ``bind(addresses:rdmaAddresses:port:configuration:catalog:group:logger:)`` before the service
/// group starts (so a port 0 is known), closed on graceful shutdown.
public final class DiscoveryListenerService: Service {
    /// The bound NVMe/TCP channels.
    public let channels: [any Channel]
    /// The bound NVMe/RDMA listeners.
    public let rdmaListeners: [NVMeRDMAListener]
    private let logger: Logger

    private init(channels: [any Channel], rdmaListeners: [NVMeRDMAListener], logger: Logger) {
        self.channels = channels
        self.rdmaListeners = rdmaListeners
        self.logger = logger
    }

    /// The addresses actually bound.
    public var boundAddresses: [DiscoveryListenerAddress] {
        channels.compactMap { channel in
            guard let address = channel.localAddress, let ip = address.ipAddress, let port = address.port else {
                return nil
            }
            return DiscoveryListenerAddress(address: ip, port: port)
        }
    }

    /// Binds one listener per address and tells the catalog where the NVMe/TCP ones are.
    ///
    /// - Parameter rdmaAddresses: addresses served over NVMe/RDMA too, on the same port (a build
    ///   without the `RDMA` trait refuses them).
    public static func bind(
        addresses: [String],
        rdmaAddresses: [String] = [],
        port: Int,
        configuration: DiscoveryControllerConfiguration,
        catalog: DiscoveryCatalog,
        gate: ConnectionGate? = nil,
        group: any EventLoopGroup,
        logger: Logger
    ) async throws -> DiscoveryListenerService {
        try await bind(
            rdmaAddresses.map { DiscoveryEndpoint(transport: .rdma, address: $0, port: port) }
                + addresses.map { DiscoveryEndpoint(transport: .tcp, address: $0, port: port) },
            configuration: configuration,
            catalog: catalog,
            gate: gate,
            group: group,
            logger: logger
        )
    }

    /// Binds one listener per endpoint (each with its own port and transport) and tells the
    /// catalog where the NVMe/TCP ones are.
    public static func bind(
        _ endpoints: [DiscoveryEndpoint],
        configuration: DiscoveryControllerConfiguration,
        catalog: DiscoveryCatalog,
        gate: ConnectionGate? = nil,
        group: any EventLoopGroup,
        logger: Logger
    ) async throws -> DiscoveryListenerService {
        var channels: [any Channel] = []
        var rdmaListeners: [NVMeRDMAListener] = []
        do {
            for endpoint in endpoints where endpoint.transport == .rdma {
                let listener = try await listening(endpoint) {
                    try await NVMeRDMAListener.bind(
                        host: endpoint.address,
                        port: endpoint.port,
                        configuration: configuration,
                        serving: .discovery(catalog),
                        logger: logger
                    )
                }
                logger.notice(
                    "discovery controller listening",
                    metadata: ["transport": "rdma", "address": "\(endpoint.address)", "port": "\(listener.port)"]
                )
                rdmaListeners.append(listener)
            }
            for endpoint in endpoints where endpoint.transport == .tcp {
                channels.append(
                    try await listening(endpoint) {
                        try await NVMeTCPDiscoveryListener.bind(
                            host: endpoint.address,
                            port: endpoint.port,
                            configuration: configuration,
                            service: catalog,
                            gate: gate,
                            group: group,
                            logger: logger
                        )
                    }
                )
            }
        } catch {
            for channel in channels { try? await channel.close() }
            for listener in rdmaListeners { await listener.close() }
            throw error
        }
        let service = DiscoveryListenerService(channels: channels, rdmaListeners: rdmaListeners, logger: logger)
        catalog.setListeners(service.boundAddresses)
        return service
    }

    /// A bind's failure as a ``ListenError``, with the endpoint's own advice when it has some.
    private static func listening<Result>(
        _ endpoint: DiscoveryEndpoint,
        _ bind: () async throws -> Result
    ) async throws -> Result {
        do {
            return try await bind()
        } catch {
            guard
                var failure = ListenError.from(
                    error,
                    what: "discovery controller",
                    address: endpoint.address,
                    port: endpoint.port,
                    option: endpoint.option
                )
            else { throw error }
            if let advice = endpoint.advice, failure.isAddressInUse { failure.advice = advice }
            throw failure
        }
    }

    /// Closes every listener (and their connections).
    public func close() async {
        for channel in channels { try? await channel.close() }
        for listener in rdmaListeners { await listener.close() }
    }

    public func run() async throws {
        // Ends on graceful shutdown and on cancellation (another service failed): waiting on a
        // close future alone would not end when the task is cancelled.
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await withTaskGroup(of: Void.self) { group in
                    for channel in channels {
                        group.addTask { try? await channel.closeFuture.get() }
                    }
                }
            } onGracefulShutdown: { [channels, logger] in
                logger.info("closing discovery listeners")
                for channel in channels { channel.close(promise: nil) }
            }
        } onCancel: { [channels] in
            for channel in channels { channel.close(promise: nil) }
        }
        for listener in rdmaListeners { await listener.close() }
    }
}

/// Reloads a ``DiscoverySource`` into the ``DiscoveryCatalog`` on SIGHUP and whenever its change
/// token moves (polled), keeping the last good entries when a reload fails.
public struct DiscoverySourceWatcher: Service {
    /// The source.
    public let source: any DiscoverySource
    /// The catalog.
    public let catalog: DiscoveryCatalog
    /// How often the change token is polled.
    public let pollInterval: Duration
    private let logger: Logger

    public init(
        source: any DiscoverySource,
        catalog: DiscoveryCatalog,
        pollInterval: Duration = .seconds(1),
        logger: Logger
    ) {
        self.source = source
        self.catalog = catalog
        self.pollInterval = pollInterval
        self.logger = logger
    }

    /// Loads the source into the catalog now; logs and keeps the old entries on failure.
    /// - Returns: whether the load succeeded.
    @discardableResult
    public func reload(reason: String) -> Bool {
        do {
            let entries = try source.load()
            let notified = catalog.update(entries: entries)
            logger.info(
                "discovery entries loaded",
                metadata: [
                    "source": "\(source.name)", "reason": "\(reason)", "entries": "\(entries.count)",
                    "generation": "\(catalog.generation)", "notified": "\(notified)",
                ]
            )
            return true
        } catch {
            logger.error(
                "discovery entries not reloaded, keeping the previous ones",
                metadata: ["source": "\(source.name)", "error": "\(error)"]
            )
            return false
        }
    }

    public func run() async throws {
        let initialToken = source.changeToken()
        let signals = await UnixSignalsSequence(trapping: .sighup)
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await _ in signals.cancelOnGracefulShutdown() {
                    reload(reason: "SIGHUP")
                }
            }
            group.addTask {
                var token = initialToken
                while !Task.isCancelled && !Task.isShuttingDownGracefully {
                    do {
                        try await Task.sleep(for: pollInterval)
                    } catch {
                        return
                    }
                    let now = source.changeToken()
                    if now != token {
                        token = now
                        reload(reason: "file changed")
                    }
                }
            }
            await group.next()
            group.cancelAll()
        }
    }
}
