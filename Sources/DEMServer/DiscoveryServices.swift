import DEMCore
import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import UnixSignals

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
        var channels: [any Channel] = []
        var rdmaListeners: [NVMeRDMAListener] = []
        do {
            for address in rdmaAddresses {
                let listener = try await listening(address, port) {
                    try await NVMeRDMAListener.bind(
                        host: address,
                        port: port,
                        configuration: configuration,
                        serving: .discovery(catalog),
                        logger: logger
                    )
                }
                logger.notice(
                    "discovery controller listening",
                    metadata: ["transport": "rdma", "address": "\(address)", "port": "\(listener.port)"]
                )
                rdmaListeners.append(listener)
            }
            for address in addresses {
                channels.append(
                    try await listening(address, port) {
                        try await NVMeTCPDiscoveryListener.bind(
                            host: address,
                            port: port,
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

    /// A bind's failure as a ``ListenError``.
    private static func listening<Result>(
        _ address: String,
        _ port: Int,
        _ bind: () async throws -> Result
    ) async throws -> Result {
        do {
            return try await bind()
        } catch {
            throw ListenError.from(error, what: "discovery controller", address: address, port: port, option: "--port")
                ?? error
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
