import AsyncHTTPClient
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

/// What `dem-em` runs with; the executable fills it from flags, tests fill it directly.
public struct EndpointOptions: Sendable {
    /// Where the desired state and the ownership ledger are kept.
    public var dataDirectory: String
    /// The nvmet configfs root (a plain folder stands in for it in tests).
    public var nvmetRoot: String = "/sys/kernel/config/nvmet"
    /// SPDK nvmf_tgt's JSON-RPC socket: set, dem-em drives SPDK instead of nvmet.
    public var spdkSocket: String?
    /// How often an SPDK target is asked whether it restarted (and lost what was applied).
    public var restartCheckInterval: Duration = .seconds(2)
    public var sysfsRoot: String = "/sys"
    /// Block devices and files beyond NVMe namespaces and null_blk that may back namespaces
    /// (glob patterns).
    public var allowedDevices: [String] = []
    /// nvme-dem's interface files, reported as fabric interfaces.
    public var legacyInterfaces: [LegacyInterface] = []
    /// The fabric credential file.
    public var credentialPath: String
    public var apiAddress: String = "0.0.0.0"
    public var apiPort: Int = DEMCore.endpointManagerPort
    /// dem's REST API to join at start (`http://head:22345`), if any.
    public var joinURL: String?
    /// The target's alias in dem's model (default: the host name).
    public var alias: String?
    /// The address and port dem reaches this API at (default: the API address, or the first
    /// non-loopback address when it listens on all).
    public var advertiseAddress: String?
    public var advertisePort: Int?
    /// Take over objects in the kernel target that dem-em did not create when the desired
    /// state names them.
    public var adopt = false
    /// How often the kernel target is compared with the desired state.
    public var checkInterval: Duration = .seconds(30)
    /// Re-apply the desired state when drift is found (otherwise drift is only reported).
    public var repairDrift = false
    /// The in-band management channel (off unless it has an address).
    public var inBand = InBandOptions()
    /// Connections the REST API and the in-band channel each take (fitted to the descriptor
    /// limit): dem-em serves dem, and an administrator now and then.
    public var connectionLimits = ConnectionLimits(total: 64, perSource: 16)
    /// How long a host of the in-band channel may take for each setup step and each PDU.
    public var setupTimeout: TimeAmount = .seconds(10)
    /// How long an HTTP request may take to arrive whole (an idle connection is closed after it).
    public var httpTimeout: TimeAmount = .seconds(30)

    public init(dataDirectory: String, credentialPath: String? = nil) {
        self.dataDirectory = dataDirectory
        self.credentialPath = credentialPath ?? dataDirectory + "/" + FabricCredential.fileName
    }
}

/// dem-em assembled: the service, its API and the service group that runs them.
public struct EndpointApplication: Sendable {
    public let service: EndpointService
    public let serviceGroup: ServiceGroup
    public let apiAddress: BoundPort
    /// The in-band channel's port, once it listens.
    public let inBandPort: BoundPort

    /// Reads the credential and the desired state and assembles the services. The desired
    /// state is applied when the group runs.
    public static func build(
        options: EndpointOptions,
        logger: Logger,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        signals: [UnixSignal] = [.sigterm, .sigint]
    ) throws -> EndpointApplication {
        let identity: EndpointIdentity?
        do {
            identity = try EndpointIdentity.load(dataDirectory: options.dataDirectory)
        } catch {
            throw EndpointStartError("\(error)")
        }
        var options = options
        if let identity {
            if let alias = options.alias, alias != identity.alias {
                throw EndpointStartError(
                    "--alias \(alias) is not the alias this dem-em enrolled as (\(identity.alias), its certificate's): drop --alias, or enrol again"
                )
            }
            options.alias = identity.alias
            // dem verifies this API's certificate against the address it calls: one the
            // certificate does not name fails every call until dem-em enrols again.
            let advertised = options.advertiseAddress ?? DesiredStateKeeper.defaultAdvertiseAddress(options.apiAddress)
            if options.joinURL != nil, !identity.names.contains(SubjectName(advertised)) {
                logger.warning(
                    "dem will reach this API at an address its certificate does not name: enrol again (--token, --ca-hash) for it",
                    metadata: [
                        "advertised": "\(advertised)",
                        "certificate-names": "\(identity.names.map(\.description).joined(separator: ", "))",
                    ]
                )
            }
        }
        // An enrolled dem-em's API takes dem's certificate: the fabric credential is needed only
        // by the in-band channel and for hosts' sealed DH-HMAC-CHAP keys (enrolment brings it).
        let credential: String? =
            identity != nil && !FileManager.default.fileExists(atPath: options.credentialPath)
            ? nil : try FabricCredential.load(path: options.credentialPath)
        let credentials: EndpointCredentials?
        do {
            credentials = try identity.map {
                try EndpointCredentials(identity: $0, dataDirectory: options.dataDirectory, logger: logger)
            }
        } catch {
            throw EndpointStartError("TLS: \(error)")
        }
        let tls = credentials?.context
        try StateDirectory.prepare(options.dataDirectory)
        // One dem-em per data directory: a second one, or dem-em import, is refused meanwhile.
        let lock = try StateDirectoryLock.acquire(directory: options.dataDirectory, owner: "dem-em serve")
        let service = try EndpointService.open(
            dataDirectory: options.dataDirectory,
            nvmetRoot: options.nvmetRoot,
            spdkSocket: options.spdkSocket,
            sysfsRoot: options.sysfsRoot,
            allowedDevices: options.allowedDevices,
            legacyInterfaces: options.legacyInterfaces,
            credential: credential,
            logger: logger
        )
        let fitted = DescriptorLimit.fit(
            [options.connectionLimits, options.connectionLimits],
            descriptors: DescriptorLimit.current().soft
        )
        let apiGate = ConnectionGate(name: "REST API", limits: fitted[0], logger: logger)
        let inBandGate = ConnectionGate(name: "in-band", limits: fitted[1], logger: logger)
        let shutdown = Mutex<ServiceGroup?>(nil)
        let routes = EndpointRoutes(
            service: service,
            credential: identity == nil ? credential : nil,
            credentials: credentials,
            gates: [apiGate, inBandGate]
        ) {
            guard let group = shutdown.withLock({ $0 }) else { return }
            Task { await group.triggerGracefulShutdown() }
        }
        let bound = BoundPort()
        let httpTimeout = options.httpTimeout
        let api = HTTPServer(
            responder: routes.router().buildResponder(),
            configuration: .init(
                address: options.apiAddress,
                port: options.apiPort,
                serverName: "dem-em",
                gate: apiGate,
                requestTimeout: httpTimeout,
                listenerHandlers: { [AcceptBackoff(name: apiGate.name, gate: apiGate, logger: logger)] },
                tls: tls,
                requiredPeerRole: tls == nil ? nil : .dem
            ),
            group: group,
            logger: logger,
            onServerRunning: { [options] channel in
                let port = channel.localAddress?.port ?? options.apiPort
                bound.bound(port)
                logger.notice(
                    "REST API listening",
                    metadata: [
                        "address": "\(options.apiAddress)", "port": "\(port)",
                        "target": "\(options.spdkSocket.map { "spdk at \($0)" } ?? "nvmet at \(options.nvmetRoot)")",
                        "tls":
                            "\(identity.map { "TLS 1.3, as \($0.alias) (certificate until \($0.expires)); only dem's certificate is taken" } ?? "none: plain HTTP with the fabric credential (enrol with --join URL --token … --ca-hash …)")",
                    ]
                )
            }
        )
        let keeper = DesiredStateKeeper(
            service: service,
            options: options,
            credential: credential,
            identity: identity,
            bound: bound,
            group: group,
            logger: logger
        )
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: StateDirectoryLockService(lock: lock)),
            .init(
                service: ListeningService(
                    api,
                    what: "REST API",
                    address: options.apiAddress,
                    port: options.apiPort,
                    option: "--api-port"
                )
            ),
            .init(service: keeper),
        ]
        let inBandPort = BoundPort()
        if let address = options.inBand.address {
            guard let credential else {
                throw EndpointStartError(
                    "the in-band channel (--inband-address) needs the fabric credential, \(options.credentialPath): enrol again, or copy dem's fabric.key there (mode 0600)"
                )
            }
            let nqn =
                options.inBand.nqn
                ?? InBandManagement.managementNQN(alias: options.alias ?? service.inventory().hostname ?? "target")
            guard NQN.isValid(nqn) else {
                throw EndpointStartError("the in-band management NQN \"\(nqn)\" is not a valid NQN; set --inband-nqn")
            }
            for host in options.inBand.allowedHosts where !NQN.isValid(host) {
                throw EndpointStartError("--inband-allow-host \"\(host)\" is not a valid NQN")
            }
            services.append(
                .init(
                    service: InBandListener(
                        address: address,
                        transport: options.inBand.transport,
                        port: options.inBand.port,
                        nqn: nqn,
                        endpoint: InBandEndpoint(
                            routes: routes,
                            credential: credential,
                            allowedHosts: options.inBand.allowedHosts,
                            logger: logger
                        ),
                        allowedHosts: options.inBand.allowedHosts.count,
                        setupTimeout: options.setupTimeout,
                        gate: inBandGate,
                        bound: inBandPort,
                        group: group,
                        logger: logger
                    )
                )
            )
        }
        let serviceGroup = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: services,
                gracefulShutdownSignals: signals,
                logger: logger
            )
        )
        shutdown.withLock { $0 = serviceGroup }
        return EndpointApplication(
            service: service,
            serviceGroup: serviceGroup,
            apiAddress: bound,
            inBandPort: inBandPort
        )
    }
}

/// dem-em cannot start as configured.
public struct EndpointStartError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// Serves the in-band management channel over NVMe/TCP or NVMe/RDMA until shutdown.
struct InBandListener: Service, CustomStringConvertible {
    let address: String
    let transport: NVMeTransport
    let port: Int
    let nqn: String
    let endpoint: InBandEndpoint
    let allowedHosts: Int
    let setupTimeout: TimeAmount
    let gate: ConnectionGate
    let bound: BoundPort
    let group: any EventLoopGroup
    let logger: Logger

    var description: String { "InBandListener" }

    func run() async throws {
        var configuration = DiscoveryControllerConfiguration(uniqueNQN: nqn)
        configuration.setupTimeout = setupTimeout
        configuration.serialNumber = "DEM-EM"
        configuration.modelNumber = "DEM endpoint manager in-band"
        let close: () async -> Void
        let port: Int
        switch transport {
        case .tcp:
            let channel: any Channel
            do {
                channel = try await NVMeTCPDiscoveryListener.bindManagement(
                    host: address,
                    port: self.port,
                    configuration: configuration,
                    management: endpoint,
                    gate: gate,
                    group: group,
                    logger: logger
                )
            } catch {
                throw ListenError.from(
                    error,
                    what: "in-band channel",
                    address: address,
                    port: self.port,
                    option: "--inband-port"
                )
                    ?? error
            }
            port = channel.localAddress?.port ?? self.port
            close = { try? await channel.close() }
        case .rdma:
            let listener = try await NVMeRDMAListener.bind(
                host: address,
                port: self.port,
                configuration: configuration,
                serving: .management(endpoint),
                logger: logger
            )
            port = listener.port
            close = { await listener.close() }
        }
        bound.bound(port)
        logger.notice(
            "in-band management channel listening",
            metadata: [
                "transport": "\(transport.rawValue)", "address": "\(address)", "port": "\(port)", "nqn": "\(nqn)",
                "allowed-hosts": "\(allowedHosts == 0 ? "any with the credential" : "\(allowedHosts)")",
            ]
        )
        // Until dem-em shuts down (a future's get() does not end when its task is cancelled).
        try? await gracefulShutdown()
        await close()
    }
}

/// Applies the desired state at start, joins dem when asked, and compares the kernel target
/// with the desired state every check interval.
struct DesiredStateKeeper: Service, CustomStringConvertible {
    let service: EndpointService
    let options: EndpointOptions
    /// The fabric credential, sent when dem-em has not enrolled.
    let credential: String?
    /// The enrolled identity: dem-em joins with its certificate.
    let identity: EndpointIdentity?
    let bound: BoundPort
    let group: any EventLoopGroup
    let logger: Logger

    /// What logs show of it: never the credential.
    var description: String { "DesiredStateKeeper" }

    func run() async throws {
        await applyDesired()
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { tasks in
                if let url = options.joinURL {
                    tasks.addTask { await join(url) }
                }
                tasks.addTask { await check() }
                if options.spdkSocket != nil {
                    tasks.addTask { await watchRestarts() }
                }
            }
        }
    }

    /// Compares the kernel target with the desired state every check interval; drift is
    /// logged when it appears and when it goes, and repaired with `repairDrift`.
    private func check() async {
        var reported: [EndpointDrift] = []
        while !Task.isCancelled {
            do { try await Task.sleep(for: options.checkInterval) } catch { return }
            let status = service.status()
            if status.drift != reported {
                if status.drift.isEmpty {
                    logger.notice("the kernel target matches the desired state again")
                } else {
                    for drift in status.drift {
                        logger.warning(
                            "drift",
                            metadata: [
                                "object": "\(drift.object)", "attribute": "\(drift.attribute ?? "-")",
                                "expected": "\(drift.expected ?? "-")", "actual": "\(drift.actual ?? "-")",
                            ]
                        )
                    }
                }
                reported = status.drift
            }
            if !status.drift.isEmpty, options.repairDrift {
                _ = await service.applyDesired()
            }
        }
    }

    /// Applies the desired state again when the target lost it: SPDK keeps nothing across a
    /// restart, and a target that comes up after dem-em has nothing yet.
    private func watchRestarts() async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: options.restartCheckInterval) } catch { return }
            guard service.backend.lostState() else { continue }
            logger.notice(
                "the target answers on a new connection (restarted, or up at last): applying the desired state"
            )
            await applyDesired()
        }
    }

    /// Applies the desired state and logs what it left.
    private func applyDesired() async {
        let status = await service.applyDesired(adopt: options.adopt)
        logger.notice(
            "desired state applied",
            metadata: [
                "generation": "\(status.generation)", "subsystems-live": "\(status.live.count)",
                "errors": "\(status.errors.count)", "foreign": "\(status.foreign.count)",
                "drift": "\(status.drift.count)",
            ]
        )
    }

    /// Announces this target to dem, retrying with backoff until dem takes it.
    private func join(_ url: String) async {
        let port = await bound.port()
        let address = options.advertiseAddress ?? Self.defaultAdvertiseAddress(options.apiAddress)
        let join = EndpointJoin(
            alias: options.alias ?? service.inventory().hostname ?? "target",
            interface: ManagementInterface(
                family: IPAddressText.isIPv6(address) ? "ipv6" : "ipv4",
                address: address,
                port: options.advertisePort ?? port,
                tls: identity == nil ? nil : true
            ),
            inventory: service.inventory()
        )
        // A refused connection is an answer: no retries inside one attempt (which made each
        // attempt to a dem that is down take 10 s), a short connect timeout.
        var configuration = HTTPClient.Configuration()
        if let identity {
            do {
                configuration.tlsConfiguration = try identity.clientConfiguration()
            } catch {
                logger.error("cannot join: dem-em's certificate cannot be used", metadata: ["error": "\(error)"])
                return
            }
        }
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout = .init(connect: .seconds(3), read: .seconds(10))
        let client = HTTPClient(eventLoopGroupProvider: .shared(group), configuration: configuration)
        var delay = 1.0
        defer { Task { try? await client.shutdown() } }
        while !Task.isCancelled {
            do {
                var request = HTTPClientRequest(url: url.hasSuffix("/") ? url + "dem/join" : url + "/dem/join")
                request.method = .POST
                if identity == nil, let credential {
                    request.headers.add(name: "Authorization", value: "Bearer \(credential)")
                }
                request.headers.add(name: "Content-Type", value: "application/json")
                request.body = .bytes(ByteBuffer(bytes: try APIResponse.encoder().encode(join)))
                let response = try await client.execute(request, timeout: .seconds(10))
                let body = try await response.body.collect(upTo: 1 << 20)
                if (200..<300).contains(Int(response.status.code)) {
                    logger.notice(
                        "joined dem",
                        metadata: [
                            "dem": "\(url)", "alias": "\(join.alias)",
                            "advertised": "\(address):\(join.interface.port ?? port)",
                        ]
                    )
                    return
                }
                let text = String(decoding: body.readableBytesView, as: UTF8.self)
                logger.error(
                    "dem refused the join",
                    metadata: ["dem": "\(url)", "status": "\(response.status.code)", "answer": "\(text)"]
                )
                // A refusal (bad credential, bad alias) does not mend by itself; retry slowly.
                delay = 60
            } catch {
                logger.warning(
                    "cannot reach dem to join; retrying",
                    metadata: [
                        "dem": "\(url)", "error": "\(ConnectionFailure.describe(error))", "retry-in": "\(Int(delay)) s",
                    ]
                )
            }
            do { try await Task.sleep(for: .seconds(delay)) } catch { return }
            delay = min(delay * 2, 60)
        }
    }

    /// The API address, or when it listens on every address the first non-loopback IPv4 one.
    static func defaultAdvertiseAddress(_ apiAddress: String) -> String {
        guard apiAddress == "0.0.0.0" || apiAddress == "::" else { return apiAddress }
        let addresses = NetworkAddress.system().filter { !$0.isLoopback }
        return addresses.first { $0.family == "ipv4" }?.address ?? addresses.first?.address ?? "127.0.0.1"
    }
}
