import DEMCore
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// Watches several discovery controllers at once, each with its own persistent connection
/// (``DiscoveryWatcher``), and follows the referrals their pages list (loop-free, up to a depth
/// limit). Every watcher's reports arrive, tagged with the controller, on one stream.
public final class DiscoveryFleet: Sendable {
    /// One controller's report.
    public struct Report: Sendable {
        public var controller: DiscoveryControllerAddress
        public var report: DiscoveryWatchReport
    }

    private struct State {
        var referrals: DiscoveryReferralSet
        var watchers: [DiscoveryControllerKey: (watcher: DiscoveryWatcher, task: Task<Void, Never>)] = [:]
        var stopped = false
        /// The controllers mDNS found (``setDiscovered(_:)``).
        var discovered: [DiscoveryControllerAddress] = []
    }

    public let reports: AsyncStream<Report>
    private let continuation: AsyncStream<Report>.Continuation
    private let state: Mutex<State>
    private let identity: HostIdentity
    private let keepAliveMilliseconds: UInt32
    private let configuration: DiscoveryWatch.Configuration
    private let followReferrals: Bool
    private let group: any EventLoopGroup
    private let logger: Logger

    public init(
        controllers: [DiscoveryControllerAddress],
        identity: HostIdentity,
        keepAliveMilliseconds: UInt32 = DiscoveryWatcher.defaultKeepAliveTimeout,
        configuration: DiscoveryWatch.Configuration = DiscoveryWatch.Configuration(),
        followReferrals: Bool = true,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger
    ) {
        (reports, continuation) = AsyncStream.makeStream(of: Report.self)
        state = Mutex(State(referrals: DiscoveryReferralSet(configured: controllers)))
        self.identity = identity
        self.keepAliveMilliseconds = keepAliveMilliseconds
        self.configuration = configuration
        self.followReferrals = followReferrals
        self.group = group
        self.logger = logger
    }

    /// Starts a watcher for every configured controller; referrals start theirs as pages list
    /// them. Returns at once.
    public func start() {
        let addresses = state.withLock { $0.referrals.addresses }
        for address in addresses { startWatcher(address) }
    }

    /// Stops every watcher and ends ``reports`` once they have closed their connections.
    public func stop() async {
        let watchers = state.withLock { state in
            state.stopped = true
            defer { state.watchers = [:] }
            return Array(state.watchers.values)
        }
        for (watcher, _) in watchers { watcher.stop() }
        for (_, task) in watchers { await task.value }
        continuation.finish()
    }

    private func startWatcher(_ address: DiscoveryControllerAddress) {
        let watcher = DiscoveryWatcher(
            address: address,
            identity: identity,
            keepAliveMilliseconds: keepAliveMilliseconds,
            configuration: configuration,
            group: group,
            logger: logger
        )
        let task = Task { [self] in
            await withTaskGroup(of: Void.self) { tasks in
                tasks.addTask { await watcher.run() }
                tasks.addTask { [self] in
                    for await report in watcher.reports { received(report, from: address) }
                }
            }
        }
        let started = state.withLock { state -> Bool in
            guard !state.stopped, state.watchers[address.key] == nil else { return false }
            state.watchers[address.key] = (watcher, task)
            return true
        }
        if !started {
            watcher.stop()
        } else {
            logger.info("watching discovery controller", metadata: ["nvme.dc": "\(address)"])
        }
    }

    private func received(_ report: DiscoveryWatchReport, from address: DiscoveryControllerAddress) {
        continuation.yield(Report(controller: address, report: report))
        guard followReferrals, case .page(let entries, _) = report else { return }
        let change = state.withLock { state in state.referrals.pageRead(from: address, entries: entries) }
        apply(change, why: "a referral from \(address)")
    }

    /// The controllers multicast DNS finds now (TP8009): watched like configured ones; one no
    /// longer found (gone, or moved to another address) stops being watched, and what it listed
    /// is reported as an empty page.
    public func setDiscovered(_ addresses: [DiscoveryControllerAddress]) {
        let change = state.withLock { state -> DiscoveryReferralSet.Change in
            var change = DiscoveryReferralSet.Change()
            let keys = Set(addresses.map(\.key))
            for old in state.discovered where !keys.contains(old.key) {
                let step = state.referrals.removeConfigured(old)
                change.added += step.added
                change.removed += step.removed
            }
            for new in addresses {
                let step = state.referrals.addConfigured(new)
                change.added += step.added
                change.removed += step.removed
            }
            state.discovered = addresses
            return change
        }
        apply(change, why: "mDNS")
    }

    private func apply(_ change: DiscoveryReferralSet.Change, why: String) {
        for added in change.added {
            logger.notice("watching a discovery controller", metadata: ["nvme.dc": "\(added)", "found by": "\(why)"])
            startWatcher(added)
        }
        for removed in change.removed {
            let entry = state.withLock { $0.watchers.removeValue(forKey: removed.key) }
            entry?.watcher.stop()
            logger.notice("discovery controller gone; no longer watched", metadata: ["nvme.dc": "\(removed)"])
            // What it listed is no longer known: an empty page stands for it.
            continuation.yield(Report(controller: removed, report: .page(entries: [], generation: 0)))
        }
    }
}
