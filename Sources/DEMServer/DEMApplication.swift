import DEMCore
import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import UnixSignals

/// What `dem` runs with; the executable fills it from flags, tests fill it directly.
public struct DEMOptions: Sendable {
    /// Addresses the discovery controller listens on.
    public var addresses: [String] = ["127.0.0.1"]
    /// The discovery port (8009), 0 for any free port.
    public var port: Int = DEMCore.discoveryPort
    /// The JSON file of discovery entries, if any.
    public var entriesPath: String?
    /// The unique discovery NQN.
    public var uniqueNQN: String
    /// How often the entries file is checked for changes.
    public var pollInterval: Duration = .seconds(1)
    /// The controller's parameters (the unique NQN is filled from ``uniqueNQN``).
    public var controller: DiscoveryControllerConfiguration

    public init(uniqueNQN: String) {
        self.uniqueNQN = uniqueNQN
        self.controller = DiscoveryControllerConfiguration(uniqueNQN: uniqueNQN)
    }
}

/// dem assembled: the catalog, the bound listeners and the service group that runs them.
public struct DEMApplication: Sendable {
    /// Every host's view.
    public let catalog: DiscoveryCatalog
    /// The bound discovery listeners.
    public let listeners: DiscoveryListenerService
    /// The entries watcher, when a file is configured.
    public let watcher: DiscoverySourceWatcher?
    /// Runs everything until SIGTERM/SIGINT (or a test's graceful shutdown).
    public let serviceGroup: ServiceGroup

    /// Loads the entries, binds the listeners and assembles the services.
    ///
    /// - Throws: ``DiscoverySourceError`` for a bad entries file, or the bind error.
    public static func build(
        options: DEMOptions,
        logger: Logger,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        signals: [UnixSignal] = [.sigterm, .sigint]
    ) async throws -> DEMApplication {
        var entries: [SourceEntry] = []
        var source: JSONFileDiscoverySource? = nil
        if let path = options.entriesPath {
            source = JSONFileDiscoverySource(path: path)
            if FileManager.default.fileExists(atPath: path) {
                entries = try source!.load()
            } else {
                logger.warning(
                    "entries file does not exist yet; serving dem's own entries",
                    metadata: ["path": "\(path)"]
                )
            }
        }
        // The first page a host sees has GENCTR 1.
        let catalog = DiscoveryCatalog(uniqueNQN: options.uniqueNQN, listeners: [], entries: entries)
        var watcher: DiscoverySourceWatcher? = nil
        if let source {
            watcher = DiscoverySourceWatcher(
                source: source,
                catalog: catalog,
                pollInterval: options.pollInterval,
                logger: logger
            )
        }
        var controller = options.controller
        controller.uniqueNQN = options.uniqueNQN
        let listeners = try await DiscoveryListenerService.bind(
            addresses: options.addresses,
            port: options.port,
            configuration: controller,
            catalog: catalog,
            group: group,
            logger: logger
        )
        var services: [any Service] = [listeners]
        if let watcher { services.append(watcher) }
        let serviceGroup = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: services.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) },
                gracefulShutdownSignals: signals,
                logger: logger
            )
        )
        return DEMApplication(catalog: catalog, listeners: listeners, watcher: watcher, serviceGroup: serviceGroup)
    }
}

/// Where dem keeps its state: `--data-dir`, else `/var/lib/dem` for root, else
/// `$XDG_STATE_HOME/dem` (or `~/.local/state/dem`).
public enum DataDirectory {
    /// The directory to use.
    public static func resolve(_ explicit: String?) -> String {
        if let explicit { return explicit }
        if getuid() == 0 { return "/var/lib/dem" }
        let environment = ProcessInfo.processInfo.environment
        if let state = environment["XDG_STATE_HOME"], !state.isEmpty { return state + "/dem" }
        return (environment["HOME"] ?? NSTemporaryDirectory()) + "/.local/state/dem"
    }

    /// The unique discovery NQN kept in `directory/discovery-nqn`, created on first use.
    ///
    /// - Returns: the NQN, and whether it could be kept on disk.
    public static func uniqueDiscoveryNQN(in directory: String) throws -> (nqn: String, persisted: Bool) {
        let path = directory + "/discovery-nqn"
        if let data = FileManager.default.contents(atPath: path) {
            let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            do {
                return (try NQN(text).value, true)
            } catch {
                throw DiscoverySourceError(field: path, message: error.reason)
            }
        }
        let nqn = NQN.uuid().value
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try (nqn + "\n").write(toFile: path, atomically: true, encoding: .utf8)
            return (nqn, true)
        } catch {
            return (nqn, false)
        }
    }
}
