import AsyncHTTPClient
import DEMCore
import DEMHTTP
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle
import Synchronization
import X509

/// What dem knows of a target at run time: whether it answers, what it serves, how it differs
/// from the model. `GET /target/<t>/status`, `GET /dem/targets` and `dem-cli` show it.
public struct TargetStatus: Codable, Sendable, Hashable {
    public enum State: String, Codable, Sendable, Hashable, CaseIterable {
        /// Not contacted yet.
        case unknown
        /// Its dem-em joined, and dem has not reached it since.
        case joined
        /// It answers, and serves what the model says.
        case reachable
        /// It does not answer (or answers with errors).
        case unreachable
        /// It answers, but the kernel target differs from the model (see Drift and Errors).
        case drifted
    }

    public var alias: String
    public var managementMode: ManagementMode
    public var state: State
    /// Whether its dem-em joined dem (since dem started).
    public var joined: Bool
    /// When dem last had an answer from it.
    public var lastContact: Date?
    /// When dem last tried.
    public var lastAttempt: Date?
    /// The last failure, while it lasts.
    public var lastError: String?
    /// Managed targets: what the kernel target serves, as its dem-em last reported.
    public var live: [LiveSubsystem]?
    /// Managed targets: the differences its dem-em reported.
    public var drift: [EndpointDrift]
    /// Managed targets: objects in the way that dem-em did not create.
    public var foreign: [String]
    /// Managed targets: the errors of the last apply.
    public var errors: [String]
    /// Local targets: entries read from its discovery controller at the last harvest.
    public var harvested: Int?
    /// Discovery log entries of this target hosts are served now.
    public var serving: Int
    /// Entries of this target in the model that no host is served now (not confirmed, not read,
    /// withdrawn); `dem-cli logpage host H` says why for each.
    public var withheld: Int
    /// Enrolled targets: the certificate its dem-em last reported.
    public var certificate: EndpointCertificate?
    /// Managed targets: the target software its dem-em drives (nvmet or spdk), as last reported.
    public var backend: EndpointBackend?

    enum CodingKeys: String, CodingKey {
        case certificate = "Certificate"
        case backend = "Backend"
        case alias = "Alias"
        case managementMode = "MgmtMode"
        case state = "State"
        case joined = "Joined"
        case lastContact = "LastContact"
        case lastAttempt = "LastAttempt"
        case lastError = "LastError"
        case live = "Live"
        case drift = "Drift"
        case foreign = "Foreign"
        case errors = "Errors"
        case harvested = "Harvested"
        case serving = "Serving"
        case withheld = "Withheld"
    }

    init(alias: String, managementMode: ManagementMode) {
        self.alias = alias
        self.managementMode = managementMode
        self.state = .unknown
        self.joined = false
        self.drift = []
        self.foreign = []
        self.errors = []
        self.serving = 0
        self.withheld = 0
    }
}

/// What dem does with the entries of a target that stops answering.
public enum UnreachablePolicy: String, Sendable, Hashable, CaseIterable {
    /// Take them off every host's page (hosts are notified).
    case withdraw
    /// Keep serving what the target last confirmed; the target is flagged unreachable.
    case keep
}

/// Watches every target of the model and keeps what hosts are served in step with what the
/// targets really serve.
///
/// - OutOfBandMgmt and InBandMgmt: pushes the target's slice of the model to its dem-em whenever
///   it changes (and after the target comes back), asks for its status every probe interval,
///   reads its inventory at the first contact and every `Refresh` minutes. Its entries are
///   served once dem-em has confirmed the subsystem is live on the port. The two modes differ
///   only in the channel: HTTP to the out-of-band Interface, or NVMe-MI over the storage fabric
///   to the in-band Interface's management controller (``InBandEndpointSession``).
/// - LocalMgmt: reads the target's own discovery controller (its in-band interface address, or
///   each TCP port) at start, when the model changes the target, every `Refresh` minutes and
///   on demand; the entries of subsystems the model defines on the target are served with the
///   model's access rules. While unreachable it is retried every probe interval.
/// - A target that stops answering is marked unreachable (`/events`, `/metrics`, REST) and its
///   entries follow the ``UnreachablePolicy``; when it answers again it converges.
public final class TargetMonitor: Sendable {
    /// What the monitor needs.
    public struct Configuration: Sendable {
        /// The fabric credential, and each enrolled target's own (see ``TargetCredentials``).
        public var credentials: TargetCredentials
        /// How often targets are checked.
        public var probeInterval: Duration = .seconds(5)
        /// How long a call to a target may take.
        public var callTimeout: Duration = .seconds(10)
        public var unreachablePolicy: UnreachablePolicy = .withdraw
        /// How long a target that was answering may fail before it is marked unreachable (a
        /// dem-em restart does not take its entries away).
        public var unreachableAfter: Duration = .seconds(15)
        /// The host NQN dem uses when it reads local targets' discovery controllers.
        public var hostNQN: String
        public var hostIdentifier: [UInt8]
        /// The fabric CA and dem's certificate: TLS towards enrolled targets (Interface TLS),
        /// and their certificates' renewal; nil when dem has no fabric CA (the site's PKI).
        public var authority: FabricAuthority?
        /// With several dem replicas on one store: who manages each target (nil: this dem
        /// manages every target).
        public var coordinator: (any TargetCoordinator)?

        /// With `credential` for every target (no enrolment kept): set ``credentials`` for dem's.
        public init(credential: String, hostNQN: String, hostIdentifier: [UInt8]) {
            // An in-memory record cannot fail to read.
            self.credentials = try! TargetCredentials(fabric: credential)
            self.hostNQN = hostNQN
            self.hostIdentifier = hostIdentifier
        }
    }

    /// A target's policy state and the driver's handles for it.
    private struct Runtime: Sendable {
        var watch: TargetWatch
        var wake: AsyncStream<Reason>.Continuation?
        var worker: Task<Void, Never>?
        /// InBandMgmt: the association with its dem-em's in-band channel.
        var inBand: InBandEndpointSession?

        /// Stops the worker and ends the in-band association.
        mutating func stop() {
            wake?.finish()
            worker?.cancel()
            closeInBand()
        }

        mutating func closeInBand() {
            if let session = inBand { Task { await session.close() } }
            inBand = nil
        }
    }

    private let service: FabricService
    private let feed: DiscoveryModelFeed
    private let configuration: Configuration
    /// The credentials dem uses with targets (the enrol route records enrolments in it).
    public var credentials: TargetCredentials { configuration.credentials }
    private let http: HTTPClient
    private let group: any EventLoopGroup
    let logger: Logger
    private let runtimes = Mutex<[String: Runtime]>([:])
    /// With replicas: the targets this one manages now (holds the lease of).
    private let managing = Mutex<Set<String>>([])
    /// When a renewal of each target's certificate was last tried.
    private let renewalTries = Mutex<[String: Date]>([:])
    /// Targets whose certificate is being renewed now (a probe does not start another).
    private let renewing = Mutex<Set<String>>([])
    /// Targets said to use the fabric credential.
    private let sharedCredentialWarned = Mutex<Set<String>>([])
    private let clock: TargetMonitorClock
    private var policy: TargetWatch.Policy {
        TargetWatch.Policy(
            unreachablePolicy: configuration.unreachablePolicy,
            unreachableAfter: configuration.unreachableAfter
        )
    }

    public convenience init(
        service: FabricService,
        feed: DiscoveryModelFeed,
        configuration: Configuration,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger
    ) {
        self.init(
            service: service,
            feed: feed,
            configuration: configuration,
            clock: .continuous,
            group: group,
            logger: logger
        )
    }

    init(
        service: FabricService,
        feed: DiscoveryModelFeed,
        configuration: Configuration,
        clock: TargetMonitorClock,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger
    ) {
        self.service = service
        self.feed = feed
        self.configuration = configuration
        self.clock = clock
        self.group = group
        self.logger = logger
        var http = HTTPClient.Configuration()
        http.timeout = .init(connect: .seconds(3), read: TimeAmount(configuration.callTimeout))
        self.http = HTTPClient(eventLoopGroupProvider: .shared(group), configuration: http)
        feed.setUnnamedServing(unnamedServing)
    }

    // MARK: Reading

    /// Every target's status, by alias.
    public var statuses: [TargetStatus] {
        runtimes.withLock { $0.values.map(\.watch.status) }.sorted { $0.alias < $1.alias }
    }

    /// Target `alias`'s status, or nil when the monitor does not know it (yet).
    public func status(_ alias: String) -> TargetStatus? {
        runtimes.withLock { $0[alias]?.watch.status }
    }

    // MARK: Running

    /// Follows the model until `stop` is cancelled: one worker per target.
    func run() async {
        let (events, cancel) = service.subscribe()
        defer { cancel() }
        synchronizeWorkers(wakeAll: false)
        for await event in events where !event.path.hasSuffix("/status") {
            // Hosts and groups change access lists on every target; a target's own change
            // wakes only its worker.
            synchronizeWorkers(wakeAll: !event.path.hasPrefix("/target/"))
        }
    }

    /// Stops every worker and the HTTP client. A worker in the middle of a call to a target is
    /// not waited for: dem's shutdown does not hang on a target that does not answer.
    func shutdown() async {
        runtimes.withLock { runtimes in
            for key in runtimes.keys { runtimes[key]?.stop() }
        }
        await releaseTargets()
        try? await http.shutdown()
    }

    /// Starts workers for new targets, stops those of deleted ones and wakes those whose part
    /// of the model changed.
    private func synchronizeWorkers(wakeAll: Bool) {
        let fabric = service.fabric
        let targets = Dictionary(uniqueKeysWithValues: fabric.targets.map { ($0.alias, $0) })
        var started: [String] = []
        var removed = false
        var sliceChanged = false
        runtimes.withLock { runtimes in
            for alias in runtimes.keys where targets[alias] == nil {
                runtimes[alias]?.stop()
                runtimes[alias] = nil
                removed = true
            }
            for (alias, target) in targets {
                if var runtime = runtimes[alias] {
                    let mode = runtime.watch.status.managementMode
                    let changed = runtime.watch.modelChanged(target)
                    if mode != target.managementMode { runtime.closeInBand() }
                    sliceChanged = sliceChanged || changed
                    runtimes[alias] = runtime
                    if changed || wakeAll { runtime.wake?.yield(.modelChanged) }
                } else {
                    runtimes[alias] = Runtime(watch: TargetWatch(target: target, policy: policy))
                    started.append(alias)
                }
            }
        }
        for alias in started { startWorker(alias) }
        // Entry counts follow the model; what each target serves is recomputed by the feed.
        if removed || !started.isEmpty || sliceChanged || wakeAll { publishServing() }
    }

    private func startWorker(_ alias: String) {
        // One stream of reasons per target: model changes, and a tick every probe interval.
        let (wakes, wake) = AsyncStream.makeStream(of: Reason.self, bufferingPolicy: .bufferingNewest(4))
        let worker = Task { [self, configuration, clock] in
            let ticks = Task {
                while !Task.isCancelled {
                    try? await clock.sleep(configuration.probeInterval)
                    wake.yield(.probe)
                }
            }
            defer { ticks.cancel() }
            await pass(alias, reason: .start)
            for await reason in wakes {
                if Task.isCancelled { break }
                await pass(alias, reason: reason)
            }
        }
        runtimes.withLock { runtimes in
            runtimes[alias]?.wake = wake
            runtimes[alias]?.worker = worker
        }
    }

    // MARK: Passes

    /// Reads target `alias` now: its dem-em's status and inventory, or its discovery
    /// controller's log page. - Returns: the failure, or nil.
    public func refresh(_ alias: String) async -> EndpointCallError? {
        synchronizeWorkers(wakeAll: false)
        return await pass(alias, reason: .refresh)
    }

    /// Pushes target `alias`'s configuration to its dem-em now. - Returns: the failure, or nil.
    public func reconfigure(_ alias: String) async -> EndpointCallError? {
        synchronizeWorkers(wakeAll: false)
        return await pass(alias, reason: .reconfig)
    }

    typealias Reason = TargetWatch.Reason
    private typealias Outcome = TargetWatch.Outcome

    /// One look at target `alias`: push, probe, read inventory or harvest as `reason` and its
    /// state call for. - Throws: the failure, for the REST routes that asked.
    @discardableResult
    func pass(_ alias: String, reason: Reason) async -> EndpointCallError? {
        var reason = reason
        // With replicas, one manages each target: the others record what it shares. An
        // administrator's refresh or reconfiguration is carried out by the replica asked. A
        // replica that takes a target over looks at it as at a start.
        if let coordinator = configuration.coordinator, reason != .refresh, reason != .reconfig {
            let manages = await coordinator.claim(alias)
            let changed = managing.withLock { managing in
                manages ? managing.insert(alias).inserted : managing.remove(alias) != nil
            }
            if changed {
                logger.notice(
                    manages ? "this replica manages the target now" : "another replica manages the target now",
                    metadata: ["target": "\(alias)"]
                )
            }
            guard manages else { return nil }
            if changed { reason = .start }
        }
        guard
            let (target, watch) = runtimes.withLock({ r in
                r[alias].flatMap { rt in rt.watch.slice.map { ($0, rt.watch) } }
            })
        else { return nil }
        let now = clock.now()
        let desired: EndpointConfiguration?
        switch target.managementMode {
        case .inBand, .outOfBand:
            desired = (try? service.fabric.endpointConfiguration(target: alias)).map {
                service.addingHostKeys(to: $0, credential: configuration.credentials.credential(for: alias))
            }
        case .local: desired = nil
        }
        let outcome: Outcome
        var failure: EndpointCallError? = nil
        switch watch.plan(reason, desired: desired, now: now) {
        case .nothing:
            outcome = .nothing
        case .managed(let push, let readInventory):
            guard let desired else {
                outcome = .nothing
                break
            }
            do throws(EndpointCallError) {
                let client = try endpointClient(target)
                var pushed: EndpointConfiguration? = nil
                var status: EndpointStatus
                let owner = EndpointOwner(target: alias, dem: configuration.hostNQN)
                if push {
                    status = try await client.apply(desired, owner: owner)
                    pushed = desired
                } else {
                    status = try await client.status()
                    if TargetWatch.mustPush(after: status) {
                        // It lost its desired state (and applies nothing meanwhile): the model's
                        // is pushed now.
                        logger.warning(
                            "target's dem-em holds; pushing the model's configuration",
                            metadata: ["target": "\(alias)", "reason": "\(status.hold ?? "")"]
                        )
                        status = try await client.apply(desired, owner: owner)
                        pushed = desired
                    }
                }
                if let certificate = status.certificate, let authority = configuration.authority,
                    let reason = authority.renewalReason(certificate), renewalDue(alias)
                {
                    do throws(EndpointCallError) {
                        status.certificate = try await renewCertificate(target, client: client, because: reason)
                        renewalTries.withLock { $0[alias] = nil }
                    } catch {
                        // The target is still managed with its current certificate; tried again later.
                        logger.warning(
                            "cannot renew the target's certificate; trying again in 10 minutes",
                            metadata: ["target": "\(alias)", "because": "\(reason)", "error": "\(error.message)"]
                        )
                    }
                }
                let inventory = readInventory ? try await client.inventory() : nil
                outcome = .managed(status, pushed: pushed, inventory: inventory)
            } catch {
                outcome = .failed(error.message)
                failure = error
            }
        case .harvest:
            do throws(EndpointCallError) {
                outcome = .harvested(try await harvest(target))
            } catch {
                outcome = .failed(error.message)
                failure = error
            }
        }
        if case .managed(_, _, let inventory?) = outcome {
            let fabric = service.fabric
            if let current = try? fabric.target(alias),
                current.reportedDevices != inventory.devices || current.reportedInterfaces != inventory.interfaces
            {
                _ = try? await service.change(.updated, path: "/target/\(alias)") { fabric throws(ModelError) in
                    try fabric.setReportedInventory(
                        target: alias,
                        devices: inventory.devices,
                        interfaces: inventory.interfaces
                    )
                }
            }
        }
        record(alias, outcome, at: now)
        if let coordinator = configuration.coordinator, let shared = SharedTargetOutcome(outcome) {
            await coordinator.share(alias, shared)
        }
        return failure
    }

    /// Records what the replica that manages target `alias` found there (shared through the
    /// store), as if this replica had found it.
    public func recordShared(_ alias: String, _ shared: SharedTargetOutcome) {
        guard let outcome = shared.outcome, managing.withLock({ !$0.contains(alias) }) else { return }
        synchronizeWorkers(wakeAll: false)
        record(alias, outcome, at: clock.now())
    }

    /// Gives up the targets this replica manages (at shutdown), so that another takes them now.
    func releaseTargets() async {
        guard let coordinator = configuration.coordinator else { return }
        managing.withLock { $0.removeAll() }
        await coordinator.releaseAll()
    }

    /// Says once per target that it has not enrolled, and so shares the fabric credential.
    private func warnSharedCredential(_ alias: String) {
        guard !configuration.credentials.isEnrolled(alias),
            sharedCredentialWarned.withLock({ $0.insert(alias).inserted })
        else { return }
        logger.warning(
            "target uses the fabric credential (a copy of fabric.key): enrol its dem-em so that it has a credential of its own (dem-cli add join-token; dem-em --join URL or --enrol URL, --token, --ca-hash)",
            metadata: ["target": "\(alias)"]
        )
    }

    // MARK: Certificates

    /// Whether a renewal of target `alias`'s certificate may be tried now: not within 10
    /// minutes of the last try (a dem-em that cannot renew is not asked every probe).
    private func renewalDue(_ alias: String) -> Bool {
        let now = Date()
        if renewing.withLock({ $0.contains(alias) }) { return false }
        return renewalTries.withLock { tries in
            if let last = tries[alias], now.timeIntervalSince(last) < 600 { return false }
            tries[alias] = now
            return true
        }
    }

    /// Gives target `alias`'s dem-em a new certificate of the fabric CA that issues now, and
    /// the CAs to trust (`dem-cli rotate target`). - Returns: the certificate, as dem-em serves it.
    public func renewCertificate(_ alias: String) async throws(EndpointCallError) -> EndpointCertificate {
        guard let target = try? service.fabric.target(alias) else {
            throw EndpointCallError(kind: .refused(status: 404), message: "no target \"\(alias)\"")
        }
        guard target.managementMode != .local else {
            throw EndpointCallError(
                kind: .refused(status: 409),
                message: "target \"\(alias)\" is LocalMgmt: it has no dem-em, and so no certificate of the fabric"
            )
        }
        let client = try endpointClient(target)
        let certificate = try await renewCertificate(target, client: client, because: "it was rotated")
        _ = await pass(alias, reason: .refresh)
        return certificate
    }

    private func renewCertificate(
        _ target: FabricTarget,
        client: EndpointClient,
        because reason: String
    ) async throws(EndpointCallError) -> EndpointCertificate {
        guard let authority = configuration.authority else {
            throw EndpointCallError(
                kind: .refused(status: 409),
                message:
                    "dem runs with the site's PKI and has no fabric CA to issue target \"\(target.alias)\"'s certificate"
            )
        }
        renewing.withLock { _ = $0.insert(target.alias) }
        defer { renewing.withLock { _ = $0.remove(target.alias) } }
        let request = try await client.certificateRequest()
        var names: [SubjectName] = []
        for name in request.Names where FabricPKI.isValidName(name) { names.append(SubjectName(name)) }
        let issued: (certificate: Certificate, certificatePEM: String, trustPEM: String)
        do {
            issued = try authority.issueTarget(alias: target.alias, csrPEM: request.CSR, names: names)
        } catch {
            throw EndpointCallError(
                kind: .refused(status: 0),
                message: "dem-em at \(client.location) sent a certificate request dem cannot sign: \(error)"
            )
        }
        let installed = try await client.installCertificate(
            EndpointCertificateInstall(Certificate: issued.certificatePEM, CA: issued.trustPEM)
        )
        logger.notice(
            "renewed the target's certificate",
            metadata: [
                "target": "\(target.alias)", "because": "\(reason)", "expires": "\(installed.expires)",
                "issuer": "\(installed.issuer ?? "-")", "names": "\(names.map(\.description).joined(separator: ", "))",
            ]
        )
        return installed
    }

    /// The client for a managed target's dem-em: HTTP to its out-of-band Interface, or its
    /// in-band association (made now, or again when the Interface changed).
    private func endpointClient(_ target: FabricTarget) throws(EndpointCallError) -> EndpointClient {
        let timeout = TimeAmount(configuration.callTimeout)
        if target.managementMode == .outOfBand {
            guard let url = EndpointClient.baseURL(of: target.interface) else {
                throw EndpointCallError(
                    kind: .unreachable,
                    message:
                        "target \"\(target.alias)\" has no Interface ADDRESS: set its out-of-band interface, or let its dem-em join"
                )
            }
            var tls: TLSConfiguration? = nil
            if target.interface?.tls == true {
                guard let configuration = configuration.authority?.targetsConfiguration else {
                    throw EndpointCallError(
                        kind: .unreachable,
                        message:
                            "target \"\(target.alias)\" is enrolled (Interface TLS) but dem has no fabric CA to present a certificate of (it runs with the site's PKI)"
                    )
                }
                tls = configuration
            }
            if tls == nil { warnSharedCredential(target.alias) }
            return EndpointClient(
                baseURL: url,
                credential: configuration.credentials.credential(for: target.alias),
                http: http,
                tls: tls,
                timeout: timeout
            )
        }
        guard let interface = target.interface, let address = interface.transportAddress, !address.isEmpty else {
            throw EndpointCallError(
                kind: .unreachable,
                message:
                    "target \"\(target.alias)\" has no in-band Interface TRADDR: dem-cli set inband \(target.alias) tcp ipv4 ADDRESS \(DEMCore.endpointInBandPort)"
            )
        }
        let trtype = interface.transportType ?? "tcp"
        guard let transport = NVMeTransport(rawValue: trtype) else {
            throw EndpointCallError(
                kind: .unreachable,
                message: "target \"\(target.alias)\": in-band TRTYPE \(trtype) is not one dem speaks (tcp or rdma)"
            )
        }
        if transport == .rdma && !NVMeRDMATransport.isAvailable {
            throw EndpointCallError(
                kind: .unreachable,
                message: "target \"\(target.alias)\": in-band TRTYPE rdma: \(NVMeRDMATransport.Unavailable())"
            )
        }
        let port = interface.transportServiceIdentifier ?? DEMCore.endpointInBandPort
        let nqn = InBandManagement.managementNQN(alias: target.alias)
        // Its own once it enrolled: an association made with the fabric's is made again.
        let credential = configuration.credentials.credential(for: target.alias)
        warnSharedCredential(target.alias)
        let session = runtimes.withLock { runtimes -> InBandEndpointSession? in
            guard var runtime = runtimes[target.alias] else { return nil }
            if let existing = runtime.inBand, existing.host == address, existing.port == port,
                existing.options.subsystemNQN == nqn, existing.options.transport == transport,
                existing.options.credential == credential
            {
                return existing
            }
            runtime.closeInBand()
            var options = InBandClientOptions(
                hostNQN: configuration.hostNQN,
                hostIdentifier: configuration.hostIdentifier,
                subsystemNQN: nqn,
                credential: credential
            )
            options.transport = transport
            // The probe keeps the association alive; a dem that vanishes is noticed in a minute.
            options.keepAliveTimeout = UInt32(
                clamping: max(60, 3 * configuration.probeInterval.components.seconds) * 1000
            )
            let session = InBandEndpointSession(host: address, port: port, options: options, group: group)
            runtime.inBand = session
            runtimes[target.alias] = runtime
            return session
        }
        guard let session else {
            throw EndpointCallError(kind: .unreachable, message: "target \"\(target.alias)\" was removed")
        }
        return EndpointClient(inBand: session, timeout: timeout)
    }

    /// Reads the discovery log of a local target: as dem's host NQN, and as each host NQN the
    /// model allows on its restricted subsystems (the kernel target lists a restricted
    /// subsystem only to its hosts).
    private func harvest(_ target: FabricTarget) async throws(EndpointCallError) -> [DiscoveryLogEntry] {
        var addresses: [(host: String, port: Int)] = []
        if let interface = target.interface, let address = interface.transportAddress {
            addresses.append((address, interface.transportServiceIdentifier ?? DEMCore.discoveryPort))
        } else {
            for port in target.ports where port.transportType == "tcp" {
                addresses.append((port.transportAddress, port.transportServiceIdentifier))
            }
        }
        guard !addresses.isEmpty else {
            throw EndpointCallError(
                kind: .unreachable,
                message:
                    "target \"\(target.alias)\" has neither a TCP port nor an in-band Interface, so dem does not know where its discovery controller is: dem-cli set portid, or dem-cli set local \(target.alias) tcp ipv4 ADDRESS 8009"
            )
        }
        var hostNQNs = [configuration.hostNQN]
        let fabric = service.fabric
        let nqnByAlias = Dictionary(fabric.hosts.map { ($0.alias, $0.nqn) }, uniquingKeysWith: { a, _ in a })
        for subsystem in target.subsystems where !subsystem.allowAnyHost {
            for alias in subsystem.hosts {
                if let nqn = nqnByAlias[alias] ?? nil, !hostNQNs.contains(nqn), hostNQNs.count < 16 {
                    hostNQNs.append(nqn)
                }
            }
        }
        var entries: [DiscoveryLogEntry] = []
        var lastError: (any Error)? = nil
        var reached = false
        for (host, port) in addresses {
            for hostNQN in hostNQNs {
                var options = DiscoveryClientOptions(hostNQN: hostNQN, hostIdentifier: configuration.hostIdentifier)
                options.commandTimeout = TimeAmount(configuration.callTimeout)
                options.connectTimeout = TimeAmount(min(configuration.callTimeout, .seconds(3)))
                do {
                    let client = try await DiscoveryClient.connect(
                        host: host,
                        port: port,
                        options: options,
                        group: group
                    )
                    defer { Task { await client.close() } }
                    let page = try await client.readDiscoveryLogPage()
                    reached = true
                    for entry in page.entries where entry.subsystemType == .nvm && !entries.contains(entry) {
                        entries.append(entry)
                    }
                } catch {
                    lastError = error
                    // The address does not answer: no point trying it as another host.
                    if !reached { break }
                }
            }
        }
        guard reached else {
            throw EndpointCallError(
                kind: .unreachable,
                message:
                    "the discovery controller of target \"\(target.alias)\" at \(addresses.map { "\($0.host):\($0.port)" }.joined(separator: ", ")) does not answer: \(lastError.map { ConnectionFailure.describe($0) } ?? "no address")"
            )
        }
        return entries
    }

    private func record(_ alias: String, _ outcome: Outcome, at now: ContinuousClock.Instant) {
        let date = Date()
        let change = runtimes.withLock { runtimes -> TargetWatch.Change? in
            runtimes[alias]?.watch.record(outcome, now: now, date: date)
        }
        guard let change else { return }
        let servingChanged = change.servingChanged
        // A probe that finds the same as before changes nothing hosts are served.
        if servingChanged { publishServing() }
        guard let change = change.state else { return }
        let level: Logger.Level = change.new == .unreachable ? .warning : .notice
        logger.log(
            level: level,
            "target state changed",
            metadata: [
                "target": "\(alias)", "from": "\(change.old.rawValue)", "to": "\(change.new.rawValue)",
                "error": "\(status(alias)?.lastError ?? "-")",
            ]
        )
        service.publish(.updated, path: "/target/\(alias)/status")
    }

    /// Marks target `alias` as joined (its dem-em called `POST /dem/join`) and looks at it now.
    func joined(_ alias: String) {
        synchronizeWorkers(wakeAll: false)
        let wake = runtimes.withLock { runtimes -> AsyncStream<Reason>.Continuation? in
            runtimes[alias]?.watch.joined()
            return runtimes[alias]?.wake
        }
        wake?.yield(.modelChanged)
    }

    /// What a target the monitor has not looked at yet contributes: nothing for a managed one
    /// (until its dem-em confirms), nothing for a local one (until it is read) unless the policy
    /// keeps entries.
    var unnamedServing: @Sendable (FabricTarget) -> TargetServing {
        let policy = policy
        return { target in TargetWatch.unnamedServing(target, policy: policy) }
    }

    /// What each target contributes to hosts' pages, to the feed; and each status's Serving.
    /// dem calls it once before it loads the catalog, so that no entry is served unconfirmed.
    func publishServing() {
        let fabric = service.fabric
        let serving: [String: TargetServing] = runtimes.withLock { runtimes in
            var serving: [String: TargetServing] = [:]
            for (alias, runtime) in runtimes { serving[alias] = runtime.watch.serving }
            // Targets the monitor has not seen yet serve nothing until it has.
            for target in fabric.targets where serving[target.alias] == nil {
                serving[target.alias] = unnamedServing(target)
            }
            return serving
        }
        let entries = DiscoveryModelFeed.sourceEntries(fabric, serving: serving, unnamed: unnamedServing)
        var counts: [String: Int] = [:]
        var aliasByNQN: [String: [String]] = [:]
        for target in fabric.targets {
            for subsystem in target.subsystems { aliasByNQN[subsystem.nqn, default: []].append(target.alias) }
        }
        for entry in entries {
            for alias in aliasByNQN[entry.entry.subsystemNQN] ?? [] { counts[alias, default: 0] += 1 }
        }
        var modelCounts: [String: Int] = [:]
        for entry in fabric.discoveryEntries() { modelCounts[entry.targetAlias, default: 0] += 1 }
        runtimes.withLock { runtimes in
            for alias in runtimes.keys {
                runtimes[alias]?.watch.setCounts(
                    serving: counts[alias] ?? 0,
                    withheld: max(0, (modelCounts[alias] ?? 0) - (counts[alias] ?? 0))
                )
            }
        }
        feed.setServing(serving)
    }
}

extension TargetMonitor {
    /// Why subsystem `nqn` on port `portID` of target `alias` is not served now, in a sentence
    /// an administrator can act on.
    public func whyWithheld(target alias: String, subsystem nqn: String, portID: Int) -> String {
        guard let watch = runtimes.withLock({ $0[alias]?.watch }) else {
            return "dem has not looked at target \"\(alias)\" yet"
        }
        return watch.whyWithheld(subsystem: nqn, portID: portID)
    }
}

/// The monitor's clock: the time now, and a sleep (virtual in tests).
struct TargetMonitorClock: Sendable {
    var now: @Sendable () -> ContinuousClock.Instant
    var sleep: @Sendable (Duration) async throws -> Void

    static let continuous = TargetMonitorClock(
        now: { ContinuousClock.now },
        sleep: { try await Task.sleep(for: $0) }
    )
}

/// Runs the ``TargetMonitor`` in dem's service group.
struct TargetMonitorService: Service {
    let monitor: TargetMonitor

    func run() async throws {
        await cancelWhenGracefulShutdown {
            await monitor.run()
        }
        await monitor.shutdown()
    }
}
