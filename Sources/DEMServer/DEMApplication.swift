import Crypto
import DEMCore
import DEMHTTP
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle
import Synchronization
import UnixSignals

/// What `dem` runs with; the executable fills it from flags, tests fill it directly.
public struct DEMOptions: Sendable {
    /// Addresses the discovery controller listens on.
    public var addresses: [String] = ["127.0.0.1"]
    /// Addresses the discovery controller serves over NVMe/RDMA too (the `RDMA` trait), on
    /// ``port``.
    public var rdmaAddresses: [String] = []
    /// More listeners, each with its own transport and port (nvme-dem's interface files).
    public var moreListeners: [DiscoveryEndpoint] = []
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
    /// Where the store (`dem.sqlite`) and the admin token (`admin.token`) are kept.
    public var dataDirectory: String
    /// The REST API's address.
    public var apiAddress: String = "127.0.0.1"
    /// The REST API's port (22345), 0 for any free port.
    public var apiPort: Int = 22345
    /// The browser origin allowed to call the API (`*` for any); nil sends no CORS headers.
    public var corsOrigin: String?
    /// How long a change to the model waits for others before hosts are notified.
    public var coalescing: Duration = .milliseconds(50)
    /// The fabric credential file (dem and every dem-em share it); nil: `fabric.key` in the
    /// data directory, created at the first start.
    public var fabricCredentialPath: String?
    /// The host NQN dem connects to targets with (in-band channels, local targets' discovery
    /// controllers); nil: the one kept in `hostnqn` in the data directory, made at the first start.
    public var hostNQN: String?
    /// How often targets are checked.
    public var probeInterval: Duration = .seconds(5)
    /// How long a call to a target may take.
    public var targetTimeout: Duration = .seconds(10)
    /// What happens to the entries of a target that stops answering.
    public var unreachablePolicy: UnreachablePolicy = .withdraw
    /// Whether hosts without a DH-HMAC-CHAP key may use the discovery controller (hosts with
    /// one must always authenticate).
    public var authentication: HostKeyring.Requirement = .optional
    /// How long a target that was answering may fail before it is marked unreachable.
    public var unreachableAfter: Duration = .seconds(15)
    /// Connections the discovery controller takes (its NVMe/TCP listeners together), before
    /// they are fitted to the descriptor limit.
    public var discoveryLimits = ConnectionLimits(total: 4096, perSource: 256)
    /// Connections the REST API takes, likewise.
    public var apiLimits = ConnectionLimits(total: 512, perSource: 64)
    /// How long an HTTP request may take to arrive whole, from the connection opening or the
    /// previous response ending (an idle connection is closed after it too).
    public var httpTimeout: TimeAmount = .seconds(30)
    /// Plain HTTP or TLS on the REST API, and with which certificate.
    public var apiTransport: APITransport = .plain
    /// More names dem's certificate is for (`--tls-name`), beside those it listens on.
    public var tlsNames: [String] = []
    /// Whether dem advertises its discovery controller over multicast DNS (TP8009) on the
    /// non-loopback IPv4 interfaces its listeners serve.
    public var mdns = true
    /// The PostgreSQL store that dem replicas share (`--store`); nil: SQLite in the data
    /// directory.
    public var postgres: PostgresLocation?
    /// Whether ``uniqueNQN`` was given (`--dc-nqn`) rather than made: replicas on a PostgreSQL
    /// store share the first one's NQN, and a given one that differs is refused.
    public var uniqueNQNGiven = false

    /// Plain HTTP or TLS, and with which certificate.
    public enum APITransport: Sendable, Equatable {
        /// Plain HTTP (loopback, or `--insecure-http`).
        case plain
        /// TLS 1.3 with a certificate dem issues itself from the fabric CA in its data directory,
        /// for every name the API is reached by, renewed by itself.
        case fabricCA
        /// TLS 1.3 with the site's certificate (chain) and key files, and the site CA that
        /// clients are to trust (nil: the chain's own).
        case site(certificate: String, key: String, ca: String?)

        public var isTLS: Bool { self != .plain }
    }

    public init(uniqueNQN: String, dataDirectory: String = DataDirectory.resolve(nil)) {
        self.uniqueNQN = uniqueNQN
        self.controller = DiscoveryControllerConfiguration(uniqueNQN: uniqueNQN)
        self.dataDirectory = dataDirectory
    }
}

/// TLS as dem has it: its API's context, the CA its clients trust, and with the fabric CA what
/// enrols and renews targets and what dem presents to them.
struct DEMTLS {
    /// The REST API's TLS context (nil: plain HTTP).
    var context: TLSContextBox?
    /// The CA clients are to trust, and its fingerprint (nil: plain HTTP).
    var trust: (path: String, fingerprint: String)?
    /// The fabric CA and dem's certificate (nil with the site's PKI).
    var authority: FabricAuthority?
}

extension DEMApplication {
    /// dem's TLS. The fabric CA is made at the first start whatever the API serves, so that it is
    /// there when the API is opened to the network, and so is dem's certificate, which it also
    /// presents to enrolled targets; the API serves it unless --insecure-http. The API asks
    /// clients for a certificate of the fabric CA without requiring one: an enrolled dem-em
    /// presents its own, dem-cli and browsers none.
    static func apiTLS(_ options: DEMOptions, logger: Logger) throws -> DEMTLS {
        do {
            if case .site(let certificate, let key, let ca) = options.apiTransport {
                let chain = try FabricPKI.readText(certificate)
                let settings = TLSServerSettings(certificateChainPEM: chain, keyPEM: try FabricPKI.readText(key))
                let trustPath = ca ?? certificate
                let anchor = try FabricPKI.readCertificates(trustPath).last!
                return DEMTLS(
                    context: TLSContextBox(try settings.makeContext()),
                    trust: (trustPath, try FabricPKI.fingerprint(anchor)),
                    authority: nil
                )
            }
            var names = FabricPKI.names(listeningOn: options.apiAddress)
            for name in options.tlsNames.map(SubjectName.init) where !names.contains(name) { names.append(name) }
            let authority = try FabricAuthority(
                directory: options.dataDirectory,
                caName: "DEM fabric CA \(options.uniqueNQN.split(separator: ":").last ?? "")",
                names: names,
                servesAPI: options.apiTransport == .fabricCA,
                logger: logger
            )
            guard let context = authority.context else { return DEMTLS(authority: authority) }
            return DEMTLS(
                context: context,
                trust: (authority.trustPath, authority.servingFingerprint),
                authority: authority
            )
        } catch let error as TLSSetupError {
            throw DEMStartError("TLS: \(error)")
        } catch let error as FileWriteError {
            throw DEMStartError("TLS: \(error)")
        } catch let error as NIOSSLError {
            throw DEMStartError("TLS: dem's certificate or the fabric CA cannot be used: \(error)")
        }
    }
}

/// Where the REST API listens, once it does.
public typealias APIServerAddress = BoundPort

/// Lets `POST /dem/shutdown` stop the service group built after the routes.
final class ShutdownTrigger: Sendable {
    private let group = Mutex<ServiceGroup?>(nil)

    func set(_ serviceGroup: ServiceGroup) { group.withLock { $0 = serviceGroup } }

    func trigger() {
        guard let serviceGroup = group.withLock({ $0 }) else { return }
        Task { await serviceGroup.triggerGracefulShutdown() }
    }
}

/// Ends `/events` streams when dem shuts down, so the HTTP server can drain.
struct EventStreamCloser: Service {
    let service: FabricService

    func run() async throws {
        try? await gracefulShutdown()
        service.finishSubscribers()
    }
}

/// Takes in what other dem replicas write to the shared PostgreSQL store, until shutdown.
struct StoreWatchService: Service {
    let store: PostgresFabricStore
    let service: FabricService
    let catalog: DiscoveryCatalog
    let monitor: TargetMonitor
    let coordinator: PostgresTargetCoordinator

    func run() async throws {
        let (catalog, monitor, coordinator) = (self.catalog, self.monitor, self.coordinator)
        let stop = service.follow(store) { change in
            switch change {
            case .target(let alias):
                Task {
                    if let shared = await coordinator.sharedOutcome(alias) { monitor.recordShared(alias, shared) }
                }
            case .generations:
                // Off the watch's thread: the catalog asks the store again.
                Task { await offThread { catalog.storedGenerationsChanged() } }
            case .enrolments:
                Task { await offThread { Self.reloadEnrolments(monitor) } }
            case .everything:
                Task {
                    await offThread {
                        catalog.storedGenerationsChanged()
                        Self.reloadEnrolments(monitor)
                    }
                }
            default: break
            }
        }
        try? await gracefulShutdown()
        stop()
    }

    private static func reloadEnrolments(_ monitor: TargetMonitor) {
        do {
            try monitor.credentials.reload()
        } catch {
            monitor.logger.error(
                "cannot read the enrolled targets from the store: a target enrolled through another replica is taken for one that uses fabric.key until it can",
                metadata: ["error": "\(error)"]
            )
        }
    }
}

/// Says in the shared store that this replica is alive, with its discovery listeners, every
/// ``interval``, and lists the other live replicas' listeners on this one's pages (SUBTYPE 3):
/// a replica silent for ``liveWithin`` is no longer listed. Leaves on a graceful shutdown.
struct ReplicaPresenceService: Service {
    let store: PostgresFabricStore
    let catalog: DiscoveryCatalog
    let listeners: [PostgresFabricStore.Replica.Listener]
    let logger: Logger
    /// This replica's identity (also in the target leases).
    let id: String
    var interval: Duration = .seconds(2)
    var liveWithin: Double = 6

    func run() async throws {
        let me = PostgresFabricStore.Replica(
            listeners: listeners.filter { !DiscoveryListenerAddress(address: $0.address, port: $0.port).isWildcard },
            started: Date().timeIntervalSince1970
        )
        if me.listeners.count < listeners.count {
            logger.warning(
                "a discovery listener on a wildcard address is not listed by the other replicas: give --address the addresses hosts reach"
            )
        }
        var listed: [DiscoveryListenerAddress] = []
        let (store, id, liveWithin) = (self.store, self.id, self.liveWithin)
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                let beat = await offThread { Result { try store.heartbeat(id: id, me, liveWithin: liveWithin) } }
                let others = try beat.get()
                let peers = others.values.flatMap(\.listeners)
                    .filter { $0.transport == "tcp" }
                    .map { DiscoveryListenerAddress(address: $0.address, port: $0.port) }
                    .sorted { ($0.address, $0.port) < ($1.address, $1.port) }
                if peers != listed {
                    logger.notice(
                        "the other replicas' discovery listeners",
                        metadata: ["listeners": "\(peers.map { "\($0.address):\($0.port)" })"]
                    )
                    listed = peers
                    catalog.setPeers(peers)
                }
            } catch {
                // The pages keep what they list until the store answers again.
                logger.warning("cannot reach the store for the replicas' heartbeat", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: interval)
        }
        await offThread { try? store.leave(id: id) }
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
    /// The fabric model and its store.
    public let service: FabricService
    /// Feeds the model into the catalog.
    public let feed: DiscoveryModelFeed
    /// The REST API's routes.
    public let routes: APIRoutes
    /// Where the REST API listens.
    public let apiAddress: APIServerAddress
    /// The admin token file, and whether this start created it.
    public let adminToken: (path: String, created: Bool)
    /// Watches the targets.
    public let monitor: TargetMonitor

    /// Loads the entries, binds the listeners and assembles the services.
    ///
    /// - Throws: ``DiscoverySourceError`` for a bad entries file, or the bind error.
    /// dem's host NQN and host ID: `options.hostNQN`, or the NQN kept in `hostnqn` in the data
    /// directory (made from a random UUID at the first start); the host ID is the NQN's UUID
    /// when it has one, as nvme-cli does, or a fixed digest of the NQN.
    static func hostIdentity(_ options: DEMOptions) throws -> (nqn: String, identifier: [UInt8]) {
        var nqn = options.hostNQN
        if nqn == nil {
            let path = options.dataDirectory + "/hostnqn"
            if let text = try? String(contentsOfFile: path, encoding: .utf8) {
                nqn = text.trimmingCharacters(in: .whitespacesAndNewlines)
            } else {
                if DataDirectory.hasRun(options.dataDirectory) {
                    // Allowed (a data directory from before hostnqn existed), but in-band channels
                    // that allow only the old NQN will refuse dem until they allow this one.
                    Logger(label: "dem").warning(
                        "hostnqn is missing from the data directory; dem makes a new host NQN, which dem-em's --inband-allow-host must name",
                        metadata: ["path": "\(path)"]
                    )
                }
                let made = "nqn.2014-08.org.nvmexpress:uuid:\(UUID().uuidString.lowercased())"
                try AtomicFile.write(Data((made + "\n").utf8), to: path, mode: 0o600, folderMode: 0o700)
                nqn = made
            }
        }
        guard let nqn, NQN.isValid(nqn) else {
            throw DEMStartError(
                "the host NQN \"\(nqn ?? "")\" is not a valid NQN (--hostnqn, or hostnqn in the data directory)"
            )
        }
        if let range = nqn.range(of: ":uuid:"), let uuid = UUID(uuidString: String(nqn[range.upperBound...])) {
            return (nqn, withUnsafeBytes(of: uuid.uuid) { Array($0) })
        }
        return (nqn, Array(SHA256.hash(data: Array(nqn.utf8)).prefix(16)))
    }

    /// Opens the PostgreSQL store when one is configured, with the discovery NQN the replicas
    /// on it share (they are one discovery controller with several ports).
    static func openSharedStore(
        _ options: DEMOptions,
        logger: Logger
    ) throws -> (options: DEMOptions, store: PostgresFabricStore?) {
        guard let location = options.postgres else { return (options, nil) }
        var options = options
        do {
            let shared = try PostgresFabricStore(location)
            let nqn = try shared.sharedDiscoveryNQN(proposed: options.uniqueNQN)
            if nqn != options.uniqueNQN {
                guard !options.uniqueNQNGiven else {
                    throw DEMStartError(
                        "--dc-nqn \(options.uniqueNQN) differs from the discovery NQN the other replicas on \(location) use (\(nqn)): give that one, or none"
                    )
                }
                logger.notice(
                    "discovery NQN: the one the replicas on this store share",
                    metadata: ["nqn": "\(nqn)", "not": "\(options.uniqueNQN)"]
                )
                options.uniqueNQN = nqn
                options.controller.uniqueNQN = nqn
            }
            return (options, shared)
        } catch let error as DEMStartError {
            throw error
        } catch {
            throw DEMStartError("\(error)")
        }
    }

    public static func build(
        options: DEMOptions,
        logger: Logger,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        signals: [UnixSignal] = [.sigterm, .sigint]
    ) async throws -> DEMApplication {
        let (options, shared) = try openSharedStore(options, logger: logger)
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
        // The first page a host sees from a new store has GENCTR 1.
        let keyring = HostKeyring(requirement: options.authentication)
        do {
            try StateDirectory.prepare(options.dataDirectory)
        } catch {
            throw DEMStartError(error.description)
        }
        // The store holds the API tokens: only dem's user may read the directory and the file.
        chmod(options.dataDirectory, 0o700)
        // One dem per data directory: a second one (or dem import) is refused while this one runs.
        let lock: StateDirectoryLock
        do {
            lock = try StateDirectoryLock.acquire(directory: options.dataDirectory, owner: "dem serve")
        } catch {
            throw DEMStartError(error.description)
        }
        // Checked before anything is written to it: a damaged store is refused.
        let store: any FabricStore
        if let shared {
            store = shared
            logger.notice(
                "store: PostgreSQL, shared with the other dem replicas",
                metadata: ["url": "\(shared.location)"]
            )
        } else {
            store = try SQLiteFabricStore(path: options.dataDirectory + "/dem.sqlite")
            chmod(options.dataDirectory + "/dem.sqlite", 0o600)
        }
        let catalog = DiscoveryCatalog(uniqueNQN: options.uniqueNQN, listeners: [], entries: entries, keyring: keyring)
        // GENCTR grows across restarts: the store reserves the counters before any is served.
        try catalog.reserveGenerations(using: { try store.reserveGenerations($0) }, logger: logger)
        // Replicas give a page the same GENCTR: the one the shared store keeps for its content.
        if let shared { catalog.useStoredGenerations(shared, logger: logger) }
        // The listeners are bound before anything that needs shutting down is made, so a port in
        // use ends the start with nothing left behind.
        var controller = options.controller
        controller.uniqueNQN = options.uniqueNQN
        // Every connection is a descriptor: the limits are fitted to the process's.
        let descriptors = DescriptorLimit.current()
        let fitted = DescriptorLimit.fit([options.discoveryLimits, options.apiLimits], descriptors: descriptors.soft)
        let discoveryGate = ConnectionGate(name: "discovery", limits: fitted[0], logger: logger)
        let apiGate = ConnectionGate(name: "REST API", limits: fitted[1], logger: logger)
        logger.info(
            "connection limits",
            metadata: [
                "descriptor-limit": "\(descriptors.soft) (hard \(descriptors.hard))",
                "discovery": "\(fitted[0].total) (\(fitted[0].perSource) per source)",
                "rest-api": "\(fitted[1].total) (\(fitted[1].perSource) per source)",
                "setup-timeout": "\(controller.setupTimeout)", "http-timeout": "\(options.httpTimeout)",
            ]
        )
        let listeners = try await DiscoveryListenerService.bind(
            options.rdmaAddresses.map { DiscoveryEndpoint(transport: .rdma, address: $0, port: options.port) }
                + options.addresses.map { DiscoveryEndpoint(transport: .tcp, address: $0, port: options.port) }
                + options.moreListeners,
            configuration: controller,
            catalog: catalog,
            gate: discoveryGate,
            group: group,
            logger: logger
        )
        var monitor: TargetMonitor? = nil
        do {
            let feed = DiscoveryModelFeed(catalog: catalog, coalescing: options.coalescing, logger: logger)
            let service = try FabricService(store: store, logger: logger) { fabric in feed.changed(fabric) }
            service.attach(keyring)
            catalog.setRegistrar(service)
            logger.notice(
                "host authentication (DH-HMAC-CHAP)",
                metadata: [
                    "auth": "\(options.authentication.rawValue)",
                    "hosts-with-keys": "\(keyring.count)",
                    "meaning":
                        "\(options.authentication == .required ? "every host must have a key and authenticate" : "hosts with a key must authenticate; hosts without one connect unauthenticated")",
                ]
            )
            let credentialPath =
                options.fabricCredentialPath ?? options.dataDirectory + "/" + FabricCredential.fileName
            if !FileManager.default.fileExists(atPath: credentialPath), DataDirectory.hasRun(options.dataDirectory) {
                // A new key would lock every dem-em out: the lost one is to be put back.
                throw DEMStartError(
                    "the fabric credential \(credentialPath) is missing, but dem has run with this data directory (admin.token is there) and every dem-em has a copy of it: copy one back (mode 0600), or pass --fabric-key FILE"
                )
            }
            let credential = try FabricCredential.ensure(path: credentialPath)
            // dem's identity towards targets: stable, so that dem-em's in-band allow-list can name it.
            let identity = try Self.hostIdentity(options)
            let tls = try Self.apiTLS(options, logger: logger)
            var monitorConfiguration = TargetMonitor.Configuration(
                credential: credential.secret,
                hostNQN: identity.nqn,
                hostIdentifier: identity.identifier
            )
            // Replicas keep the enrolled targets in the database: any of them can manage them.
            monitorConfiguration.credentials = try TargetCredentials(
                fabric: credential.secret,
                directory: options.dataDirectory,
                shared: shared
            )
            monitorConfiguration.authority = tls.authority
            monitorConfiguration.probeInterval = options.probeInterval
            monitorConfiguration.callTimeout = options.targetTimeout
            monitorConfiguration.unreachablePolicy = options.unreachablePolicy
            monitorConfiguration.unreachableAfter = options.unreachableAfter
            // Replicas: one manages each target; a lease outlives a few missed probes.
            let replicaID = UUID().uuidString.lowercased()
            let coordinator = shared.map {
                PostgresTargetCoordinator(store: $0, replica: replicaID, lease: options.probeInterval * 3)
            }
            monitorConfiguration.coordinator = coordinator
            let targetMonitor = TargetMonitor(
                service: service,
                feed: feed,
                configuration: monitorConfiguration,
                group: group,
                logger: logger
            )
            monitor = targetMonitor
            // Managed targets serve nothing until they confirm, read ones until they are read.
            targetMonitor.publishServing()
            feed.load(service.fabric)
            let adminToken = try await service.ensureAdminTokenFile(in: options.dataDirectory)
            let trigger = ShutdownTrigger()
            let audit: AuditLog
            do {
                audit = try AuditLog(path: options.dataDirectory + "/" + AuditLog.fileName)
            } catch {
                throw DEMStartError("cannot open the audit log: \(error)")
            }
            let routes = APIRoutes(
                service: service,
                feed: feed,
                metrics: DEMMetrics(gates: [discoveryGate, apiGate]),
                corsOrigin: options.corsOrigin,
                monitor: targetMonitor,
                fabricCredential: credential.secret,
                authority: tls.authority,
                audit: audit,
                shutdown: { trigger.trigger() }
            )
            let apiAddress = APIServerAddress()
            let discovery = listeners.boundAddresses
            let httpTimeout = options.httpTimeout
            let api = HTTPServer(
                responder: routes.router().buildResponder(),
                configuration: .init(
                    address: options.apiAddress,
                    port: options.apiPort,
                    serverName: "dem",
                    gate: apiGate,
                    requestTimeout: httpTimeout,
                    // An accept that fails for want of descriptors must pause, not spin.
                    listenerHandlers: { [AcceptBackoff(name: apiGate.name, gate: apiGate, logger: logger)] },
                    tls: tls.context
                ),
                group: group,
                logger: logger,
                onServerRunning: { [adminToken] channel in
                    let port = channel.localAddress?.port ?? options.apiPort
                    apiAddress.bound(port)
                    // Said once every listener is up: a port in use fails the start before.
                    for listener in discovery {
                        logger.notice(
                            "discovery controller listening",
                            metadata: [
                                "address": "\(listener.address)", "port": "\(listener.port)",
                                "nqn": "\(options.uniqueNQN)",
                                "try": "nvme discover -t tcp -a \(listener.address) -s \(listener.port)",
                            ]
                        )
                    }
                    let host = options.apiAddress.contains(":") ? "[\(options.apiAddress)]" : options.apiAddress
                    // A wildcard address is reached on loopback too (its certificate names 127.0.0.1).
                    let wildcard = options.apiAddress == "0.0.0.0" || options.apiAddress == "::"
                    let reach = wildcard ? "127.0.0.1" : host
                    var security: Logger.Metadata = [:]
                    if let trust = tls.trust {
                        security["tls-ca"] = "\(trust.path)"
                        security["tls-ca-fingerprint"] = "\(trust.fingerprint)"
                    }
                    logger.notice(
                        "REST API listening",
                        metadata: security.merging(
                            [
                                "url": "\(tls.context == nil ? "http" : "https")://\(host):\(port)",
                                "admin-token":
                                    "\(adminToken.path)\(adminToken.created ? " (created now, mode 0600)" : "")",
                                "fabric-credential":
                                    "\(credentialPath)\(credential.created ? " (created now, mode 0600; it stays here: enrolled targets get credentials of their own derived from it)" : "")",
                                "host-nqn": "\(identity.nqn) (allow it on dem-em's in-band channel)",
                                "try":
                                    "dem-cli -s \(tls.context == nil ? "http://" : "")\(reach) -p \(port) list target",
                            ],
                            uniquingKeysWith: { a, _ in a }
                        )
                    )
                }
            )
            var watcher: DiscoverySourceWatcher? = nil
            if let source {
                watcher = DiscoverySourceWatcher(
                    source: source,
                    catalog: catalog,
                    pollInterval: options.pollInterval,
                    logger: logger
                )
            }
            // Graceful shutdown ends services last to first: the lock is given up last.
            var services: [any Service] = [
                StateDirectoryLockService(lock: lock),
                listeners,
                ListeningService(
                    api,
                    what: "REST API",
                    address: options.apiAddress,
                    port: options.apiPort,
                    option: "--api-port"
                ),
                EventStreamCloser(service: service),
                TargetMonitorService(monitor: targetMonitor),
            ]
            if let watcher { services.append(watcher) }
            if let shared, let coordinator {
                services.append(
                    StoreWatchService(
                        store: shared,
                        service: service,
                        catalog: catalog,
                        monitor: targetMonitor,
                        coordinator: coordinator
                    )
                )
                let advertised = listeners.boundAddresses.map {
                    PostgresFabricStore.Replica.Listener(transport: "tcp", address: $0.address, port: $0.port)
                }
                services.append(
                    ReplicaPresenceService(
                        store: shared,
                        catalog: catalog,
                        listeners: advertised,
                        logger: logger,
                        id: replicaID
                    )
                )
            }
            if let authority = tls.authority { services.append(CertificateMaintenance(authority: authority)) }
            var configurations = services.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) }
            if options.mdns {
                let tcp = options.addresses + options.moreListeners.filter { $0.transport == .tcp }.map(\.address)
                // mDNS is an extra: its end (nothing to advertise on) does not end dem.
                configurations.append(
                    ServiceGroupConfiguration.ServiceConfiguration(
                        service: MDNSResponderService(
                            listenAddresses: tcp,
                            port: listeners.boundAddresses.first?.port ?? options.port,
                            nqn: options.uniqueNQN,
                            logger: logger
                        ),
                        successTerminationBehavior: .ignore,
                        failureTerminationBehavior: .ignore
                    )
                )
            }
            let serviceGroup = ServiceGroup(
                configuration: ServiceGroupConfiguration(
                    services: configurations,
                    gracefulShutdownSignals: signals,
                    logger: logger
                )
            )
            trigger.set(serviceGroup)
            return DEMApplication(
                catalog: catalog,
                listeners: listeners,
                watcher: watcher,
                serviceGroup: serviceGroup,
                service: service,
                feed: feed,
                routes: routes,
                apiAddress: apiAddress,
                adminToken: adminToken,
                monitor: targetMonitor
            )
        } catch {
            await monitor?.shutdown()
            await listeners.close()
            throw error
        }
    }
}

/// Where dem keeps its state: `--data-dir`, else `/var/lib/dem` for root, else
/// `$XDG_STATE_HOME/dem` (or `~/.local/state/dem`).
public enum DataDirectory {
    /// The directory to use.
    public static func resolve(_ explicit: String?) -> String {
        StateDirectory.resolve(explicit, name: "dem")
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
                throw DEMStartError(
                    "\(path) does not hold a valid NQN (\(error.reason)): restore it from a backup, set it with --dc-nqn, or write a new unique NQN into it (hosts that name the old one must be told)"
                )
            }
        }
        // A lost file is not a first start: hosts may know the NQN it held.
        if hasRun(directory) {
            throw DEMStartError(
                "\(path) is missing, but dem has run with this data directory (admin.token is there), so hosts may know the discovery NQN it held: restore it from a backup, set it with --dc-nqn, or write a new unique NQN into it"
            )
        }
        let nqn = NQN.uuid().value
        do {
            try FileManager.default.createDirectory(
                atPath: directory,
                withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o700]
            )
            try (nqn + "\n").write(toFile: path, atomically: true, encoding: .utf8)
            return (nqn, true)
        } catch {
            return (nqn, false)
        }
    }
}

extension DataDirectory {
    /// Whether dem has run with `directory`: its first start made `admin.token` (a store alone
    /// may come from dem import).
    public static func hasRun(_ directory: String) -> Bool {
        FileManager.default.fileExists(atPath: directory + "/admin.token")
    }
}

/// dem cannot start as configured.
public struct DEMStartError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
