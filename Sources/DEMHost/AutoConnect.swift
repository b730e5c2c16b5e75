import DEMCore
import Foundation
import Logging

/// dem-ac's work: whenever a watched discovery controller's page changes, make sure a kernel
/// controller exists for every NVM subsystem entry (and, by policy, disconnect the controllers
/// dem-ac created whose entry went away).
///
/// A controller that is lost keeps its last entries: an outage of a discovery controller is not
/// a removal. With the `removed` policy, a controller is disconnected only when its entry has
/// been missing for `removalGrace` (a discovery controller that restarts may list less until
/// it has read its targets again). A connect that fails is tried again after a backoff (1 s
/// doubling to 60 s) while it keeps failing; nothing else is polled.
public final class AutoConnect: Sendable {
    private let fleet: DiscoveryFleet
    private let connector: FabricsConnector
    private let controllers: FabricsControllers
    private let ledgerFile: ConnectionLedgerFile
    private let host: HostConnectParameters
    private let policy: DisconnectPolicy
    private let removalGrace: Duration
    private let logger: Logger

    public init(
        fleet: DiscoveryFleet,
        connector: FabricsConnector,
        controllers: FabricsControllers,
        ledgerFile: ConnectionLedgerFile,
        host: HostConnectParameters,
        policy: DisconnectPolicy,
        removalGrace: Duration = .seconds(10),
        logger: Logger
    ) {
        self.removalGrace = removalGrace
        self.fleet = fleet
        self.connector = connector
        self.controllers = controllers
        self.ledgerFile = ledgerFile
        self.host = host
        self.policy = policy
        self.logger = logger
    }

    private enum Input: Sendable {
        case report(DiscoveryFleet.Report, ContinuousClock.Instant)
        case retry
        case graceOver
    }

    /// Runs until the fleet's reports end (``DiscoveryFleet/stop()``).
    public func run() async {
        let (loaded, damage) = ledgerFile.loadSettingAsideDamage()
        var ledger = loaded
        if let damage {
            logger.error(
                "cannot read the record of the controllers dem-ac created; starting with none, so none of them will be disconnected by dem-ac",
                metadata: [
                    "error": "\(damage.error)",
                    "kept-as": "\(damage.keptAs ?? "(it could not be moved aside)")",
                    "fix":
                        "disconnect controllers dem-ac made before by hand (nvme disconnect) if they must go; see the kept file",
                ]
            )
        }
        let (inputs, input) = AsyncStream.makeStream(of: Input.self)
        let forward = Task { [fleet] in
            for await report in fleet.reports { input.yield(.report(report, .now)) }
            input.finish()
        }
        defer { forward.cancel() }
        fleet.start()
        var pages: [DiscoveryControllerKey: [DiscoveryLogEntry]] = [:]
        var retryDelay: Duration = .seconds(1)
        var retryTask: Task<Void, Never>? = nil
        var missingSince: [String: ContinuousClock.Instant] = [:]
        var graceTask: Task<Void, Never>? = nil
        for await item in inputs {
            var noticed: ContinuousClock.Instant? = nil
            switch item {
            case .report(let report, let at):
                switch report.report {
                case .page(let entries, _):
                    pages[report.controller.key] = entries
                    noticed = at
                case .lost(let reason):
                    logger.warning(
                        "discovery controller lost; its entries are kept until it answers",
                        metadata: ["nvme.dc": "\(report.controller)", "reason": "\(reason)"]
                    )
                    continue
                case .back:
                    logger.notice("discovery controller back", metadata: ["nvme.dc": "\(report.controller)"])
                    continue
                case .connected:
                    continue
                }
            case .retry:
                retryTask = nil
            case .graceOver:
                graceTask = nil
            }
            let wanted = pages.keys.sorted { $0.description < $1.description }.flatMap { pages[$0] ?? [] }
            let (failed, nextGrace) = await reconcile(
                wanted: wanted,
                ledger: &ledger,
                missingSince: &missingSince,
                noticed: noticed
            )
            if let nextGrace, graceTask == nil {
                graceTask = Task {
                    try? await Task.sleep(until: nextGrace)
                    if !Task.isCancelled { input.yield(.graceOver) }
                }
            }
            if failed {
                if retryTask == nil {
                    let delay = retryDelay
                    retryTask = Task {
                        try? await Task.sleep(for: delay)
                        if !Task.isCancelled { input.yield(.retry) }
                    }
                    retryDelay = min(retryDelay * 2, .seconds(60))
                }
            } else {
                retryDelay = .seconds(1)
            }
        }
        retryTask?.cancel()
        graceTask?.cancel()
    }

    /// Plans and carries out the connects and disconnects for `wanted`.
    /// - Returns: whether a connect failed, and when the next controller's removal grace ends.
    private func reconcile(
        wanted: [DiscoveryLogEntry],
        ledger: inout ConnectionLedger,
        missingSince: inout [String: ContinuousClock.Instant],
        noticed: ContinuousClock.Instant?
    ) async -> (failed: Bool, nextGrace: ContinuousClock.Instant?) {
        let existing: [KernelController]
        do {
            existing = try await controllers.scan()
        } catch {
            logger.error("cannot read the kernel's controllers", metadata: ["error": "\(error)"])
            return (true, nil)
        }
        ledger = ledger.pruned(existing: existing)
        let actions = ConnectionPlanner.plan(
            wanted: wanted,
            existing: existing,
            ledger: ledger,
            host: host,
            policy: policy
        )
        var failed = false
        let now = ContinuousClock.now
        var nextGrace: ContinuousClock.Instant? = nil
        let leaving = Set(
            actions.compactMap { action -> String? in
                if case .disconnect(let name) = action { return name }
                return nil
            }
        )
        // Entries that came back before their grace ended.
        missingSince = missingSince.filter { leaving.contains($0.key) }
        for action in actions {
            switch action {
            case .connect(let options):
                do {
                    switch try await connector.connect(options) {
                    case .connected(let controller):
                        ledger.recordConnected(name: controller.name, options: options)
                        var metadata: Logger.Metadata = [
                            "controller": "\(controller.name)", "subnqn": "\(options.nqn)",
                            "traddr": "\(options.traddr)", "trsvcid": "\(options.trsvcid)",
                        ]
                        if let noticed {
                            let elapsed = ContinuousClock.now - noticed
                            metadata["since-page"] = "\(Self.milliseconds(elapsed)) ms"
                        }
                        logger.notice("connected", metadata: metadata)
                    case .alreadyConnected:
                        logger.info("already connected", metadata: ["subnqn": "\(options.nqn)"])
                    }
                } catch {
                    failed = true
                    logger.error(
                        "connect failed; retrying later",
                        metadata: ["subnqn": "\(options.nqn)", "traddr": "\(options.traddr)", "error": "\(error)"]
                    )
                }
            case .disconnect(let name):
                let since = missingSince[name] ?? now
                missingSince[name] = since
                guard now - since >= removalGrace else {
                    let end = since + removalGrace
                    nextGrace = min(nextGrace ?? end, end)
                    logger.info(
                        "entry gone; disconnecting when it stays gone",
                        metadata: ["controller": "\(name)", "grace": "\(removalGrace)"]
                    )
                    continue
                }
                missingSince[name] = nil
                do {
                    _ = try await connector.disconnect(controller: name)
                    ledger.forget(name: name)
                    logger.notice("disconnected: its entry is gone", metadata: ["controller": "\(name)"])
                } catch {
                    logger.error("disconnect failed", metadata: ["controller": "\(name)", "error": "\(error)"])
                }
            }
        }
        if !actions.isEmpty {
            do {
                try ledgerFile.save(ledger)
            } catch {
                logger.error("cannot record the controllers dem-ac created", metadata: ["error": "\(error)"])
            }
        }
        return (failed, nextGrace)
    }

    static func milliseconds(_ duration: Duration) -> Int {
        let (seconds, attoseconds) = duration.components
        return Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000)
    }
}
