/// What a persistent discovery connection tells the code watching it.
public enum DiscoveryWatchReport: Sendable, Hashable {
    /// A connection to the discovery controller is up (sent on every connection).
    case connected
    /// The discovery log page, the first time and whenever its entries changed since the last
    /// report (compared as a multiset: order and GENCTR alone do not count).
    case page(entries: [DiscoveryLogEntry], generation: UInt64)
    /// The controller became unreachable: the connection broke or a connection attempt failed.
    /// Sent once per outage, at its first failure.
    case lost(reason: String)
    /// The first page after a ``lost(reason:)``: the outage is over.
    case back
}

/// A persistent discovery connection to ONE discovery controller, as a pure state machine: it
/// connects, reads the discovery log page, parks an Asynchronous Event Request and waits; a
/// discovery log change notice (AEN 70F002h) makes it read the page again, any other AEN re-arms.
/// While connected it sends Keep Alives every KATO/2. A failure closes the connection and
/// reconnects after an exponential backoff.
///
/// It does no I/O and reads no clock: the caller passes the time in, carries the ``Action``s out
/// and feeds the outcomes back (``DiscoveryWatcher`` does that with a ``DiscoveryClient``).
///
/// States: `idle` → (start) `connecting` → (connected) `reading` → (page read) `armed` →
/// (change notice) `reading` → …; any failure → `backingOff(until:)` → (timer) `connecting`.
///
/// Backoff: the n-th consecutive failure waits a delay drawn with *equal jitter* from
/// `[c/2, c]`, where `c = min(maximumBackoff, initialBackoff × 2^(n−1))`: 0.5–1 s, 1–2 s, 2–4 s, …
/// up to 30–60 s with the defaults. Half the delay is fixed so that a flapping controller is never
/// hammered; the other half spreads hosts apart. The count resets when a page is read.
///
/// Timers: the machine asks for two, each replaced by the next request of its kind:
/// ``Timer/deadline`` (end of a backoff, or the limit of a connection attempt; call
/// ``timerFired(now:)``) and ``Timer/keepAlive`` (call ``keepAliveDue(now:)``). Early or stale
/// firings are ignored.
public struct DiscoveryWatch: Sendable {
    /// The fixed parameters.
    public struct Configuration: Sendable, Hashable {
        /// KATO: Keep Alives go out every half of it while connected; zero sends none.
        public var keepAliveTimeout: Duration
        /// The backoff ceiling after the first failure; it doubles with every further failure.
        public var initialBackoff: Duration = .seconds(1)
        /// The largest backoff ceiling.
        public var maximumBackoff: Duration = .seconds(60)
        /// How long a connection attempt (TCP, ICReq, Connect, CC.EN, Identify) may take.
        public var connectTimeout: Duration = .seconds(30)

        public init(keepAliveTimeout: Duration = .seconds(30), maximumBackoff: Duration = .seconds(60)) {
            self.keepAliveTimeout = keepAliveTimeout
            self.maximumBackoff = maximumBackoff
        }

        /// How often Keep Alives go out: KATO/2, or `nil` without a KATO.
        public var keepAliveInterval: Duration? {
            keepAliveTimeout > .zero ? keepAliveTimeout / 2 : nil
        }
    }

    /// The two timers.
    public enum Timer: Sendable, Hashable {
        /// End of a backoff or of a connection attempt: call ``DiscoveryWatch/timerFired(now:)``.
        case deadline
        /// Time for a Keep Alive: call ``DiscoveryWatch/keepAliveDue(now:)``.
        case keepAlive
    }

    /// What the caller must do.
    public enum Action: Sendable, Hashable {
        /// Connect to the controller; then call ``connected(now:)`` or ``connectFailed(_:now:)``.
        case connect
        /// Read the whole discovery log page; then call ``pageRead(_:now:)`` or
        /// ``pageReadFailed(_:now:)``.
        case readLogPage
        /// Park an Asynchronous Event Request; call ``asynchronousEvent(result:now:)`` when it
        /// completes, ``connectionLost(_:now:)`` when it fails.
        case armAsynchronousEvent
        /// Send a Keep Alive; call ``keepAliveFailed(_:now:)`` when it fails.
        case sendKeepAlive
        /// Start (or restart) a timer for `at`.
        case scheduleTimer(Timer, at: ContinuousClock.Instant)
        /// Stop a timer.
        case cancelTimer(Timer)
        /// Close the connection, or abandon the connection attempt under way: whatever it
        /// still yields must be closed, and outcomes of earlier commands are no longer wanted.
        case close
        /// Tell the watcher's user.
        case report(DiscoveryWatchReport)
    }

    /// Where the machine is.
    public enum State: Sendable, Hashable {
        /// Not started, or stopped.
        case idle
        /// A connection attempt is under way.
        case connecting
        /// Connected; the log page is being read.
        case reading
        /// Connected; an Asynchronous Event Request is parked.
        case armed
        /// Waiting to reconnect.
        case backingOff(until: ContinuousClock.Instant)
    }

    /// The parameters.
    public let configuration: Configuration
    /// The state.
    public private(set) var state: State = .idle
    /// Failures since the last page was read (the backoff exponent).
    public private(set) var consecutiveFailures = 0
    /// The last page read, if any.
    public private(set) var lastPage: DiscoveryLogPage?

    private let random: @Sendable () -> Double
    private var reportedEntries: [DiscoveryLogEntry: Int]?
    private var outage = false
    private var nextKeepAlive: ContinuousClock.Instant?
    private var connectDeadline: ContinuousClock.Instant?
    private var rereadPending = false

    /// - Parameters:
    ///   - configuration: KATO and backoff.
    ///   - random: the jitter source, returning values in `0..<1` (values outside are clamped).
    public init(
        configuration: Configuration = Configuration(),
        random: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) }
    ) {
        self.configuration = configuration
        self.random = random
    }

    /// Whether a connection is up.
    public var isConnected: Bool {
        switch state {
        case .reading, .armed: return true
        default: return false
        }
    }

    /// The referrals of the last page read, for a coordinator to follow (see
    /// ``DiscoveryReferralSet``): entries of SUBTYPE 1 (another discovery service).
    public var referrals: [DiscoveryLogEntry] { Self.referrals(in: lastPage?.entries ?? []) }

    /// The referral entries (SUBTYPE 1) among `entries`.
    public static func referrals(in entries: [DiscoveryLogEntry]) -> [DiscoveryLogEntry] {
        entries.filter { $0.subsystemType == .referral }
    }

    /// What a page read from `source` asks a host to watch: its referrals (SUBTYPE 1) and the
    /// discovery controller's other ports (SUBTYPE 3, TP8013, such as dem replicas), so that
    /// losing one port leaves the others. The other ports are taken only when the page lists
    /// the port the host reached (the controller sees the host's addresses: no address
    /// translation between them, which would make its addresses wrong for the host).
    public static func controllersToWatch(
        in entries: [DiscoveryLogEntry],
        from source: DiscoveryControllerAddress
    ) -> [DiscoveryLogEntry] {
        let current = entries.filter { $0.subsystemType == .currentDiscovery }
        let listsSource = current.contains { DiscoveryControllerAddress(referral: $0, from: source).key == source.key }
        return entries.filter {
            $0.subsystemType == .referral || (listsSource && $0.subsystemType == .currentDiscovery)
        }
    }

    // MARK: - Events

    /// Starts watching.
    public mutating func start(now: ContinuousClock.Instant) -> [Action] {
        guard case .idle = state else { return [] }
        return beginConnecting(now: now)
    }

    /// The connection is up (ICReq, Connect, CC.EN and Identify done).
    public mutating func connected(now: ContinuousClock.Instant) -> [Action] {
        guard case .connecting = state else { return [] }
        state = .reading
        connectDeadline = nil
        var actions: [Action] = [.cancelTimer(.deadline), .report(.connected), .readLogPage]
        if let interval = configuration.keepAliveInterval {
            let due = now + interval
            nextKeepAlive = due
            actions.append(.scheduleTimer(.keepAlive, at: due))
        }
        return actions
    }

    /// The connection attempt failed.
    public mutating func connectFailed(_ error: any Error, now: ContinuousClock.Instant) -> [Action] {
        guard case .connecting = state else { return [] }
        return fail(reason: "connecting failed: \(error)", now: now, close: false)
    }

    /// The whole page was read.
    public mutating func pageRead(_ page: DiscoveryLogPage, now: ContinuousClock.Instant) -> [Action] {
        guard case .reading = state else { return [] }
        lastPage = page
        consecutiveFailures = 0
        var actions: [Action] = []
        if outage {
            outage = false
            actions.append(.report(.back))
        }
        let entries = Self.multiset(page.entries)
        if reportedEntries != entries {
            reportedEntries = entries
            actions.append(.report(.page(entries: page.entries, generation: page.generationCounter)))
        }
        if rereadPending {
            rereadPending = false
            actions.append(.readLogPage)
        } else {
            state = .armed
            actions.append(.armAsynchronousEvent)
        }
        return actions
    }

    /// Reading the page failed.
    public mutating func pageReadFailed(_ error: any Error, now: ContinuousClock.Instant) -> [Action] {
        guard case .reading = state else { return [] }
        return fail(reason: "reading the discovery log page failed: \(error)", now: now, close: true)
    }

    /// The parked Asynchronous Event Request completed with `result` (CQE DW0).
    public mutating func asynchronousEvent(result: UInt32, now: ContinuousClock.Instant) -> [Action] {
        let isChange = result == AsynchronousEvent.discoveryLogPageChange.result
        switch state {
        case .armed:
            if isChange {
                state = .reading
                return [.readLogPage]
            }
            return [.armAsynchronousEvent]
        case .reading:
            // Not expected (no request is parked while reading); read again after this read.
            if isChange { rereadPending = true }
            return []
        default:
            return []
        }
    }

    /// The keep-alive timer fired.
    public mutating func keepAliveDue(now: ContinuousClock.Instant) -> [Action] {
        guard isConnected, let due = nextKeepAlive, now >= due, let interval = configuration.keepAliveInterval else {
            return []
        }
        let next = now + interval
        nextKeepAlive = next
        return [.sendKeepAlive, .scheduleTimer(.keepAlive, at: next)]
    }

    /// A Keep Alive failed.
    public mutating func keepAliveFailed(_ error: any Error, now: ContinuousClock.Instant) -> [Action] {
        guard isConnected else { return [] }
        return fail(reason: "keep-alive failed: \(error)", now: now, close: true)
    }

    /// The connection broke (the parked Asynchronous Event Request failed, or the transport
    /// reported the close).
    public mutating func connectionLost(_ error: any Error, now: ContinuousClock.Instant) -> [Action] {
        switch state {
        case .reading, .armed:
            return fail(reason: "connection lost: \(error)", now: now, close: true)
        case .connecting:
            return fail(reason: "connecting failed: \(error)", now: now, close: true)
        default:
            return []
        }
    }

    /// The ``Timer/deadline`` timer fired.
    public mutating func timerFired(now: ContinuousClock.Instant) -> [Action] {
        switch state {
        case .backingOff(let until):
            guard now >= until else { return [] }
            return beginConnecting(now: now)
        case .connecting:
            guard let deadline = connectDeadline, now >= deadline else { return [] }
            return fail(reason: "connecting timed out after \(configuration.connectTimeout)", now: now, close: true)
        default:
            return []
        }
    }

    /// Stops watching: closes the connection and forgets the timers. ``start(now:)`` begins anew.
    public mutating func stop() -> [Action] {
        let actions: [Action]
        switch state {
        case .idle: return []
        case .connecting: actions = [.close, .cancelTimer(.deadline)]
        case .reading, .armed: actions = [.close, .cancelTimer(.keepAlive)]
        case .backingOff: actions = [.cancelTimer(.deadline)]
        }
        state = .idle
        consecutiveFailures = 0
        lastPage = nil
        reportedEntries = nil
        outage = false
        nextKeepAlive = nil
        connectDeadline = nil
        rereadPending = false
        return actions
    }

    // MARK: - Backoff

    /// The delay after the `failures`-th consecutive failure (from 1), with `random` in `0...1`
    /// placing it within `[c/2, c]`, `c = min(maximum, initial × 2^(failures−1))`.
    public static func backoffDelay(
        failures: Int,
        initial: Duration,
        maximum: Duration,
        random: Double
    ) -> Duration {
        let ceiling = backoffCeiling(failures: failures, initial: initial, maximum: maximum)
        let fraction = random.isNaN ? 0 : min(max(random, 0), 1)
        return ceiling / 2 + (ceiling / 2) * fraction
    }

    /// `min(maximum, initial × 2^(failures−1))`.
    public static func backoffCeiling(failures: Int, initial: Duration, maximum: Duration) -> Duration {
        var ceiling = min(initial, maximum)
        var doublings = max(failures - 1, 0)
        while doublings > 0, ceiling < maximum {
            ceiling = min(ceiling * 2, maximum)
            doublings -= 1
        }
        return ceiling
    }

    // MARK: - Private

    private mutating func beginConnecting(now: ContinuousClock.Instant) -> [Action] {
        state = .connecting
        let deadline = now + configuration.connectTimeout
        connectDeadline = deadline
        return [.connect, .scheduleTimer(.deadline, at: deadline)]
    }

    private mutating func fail(reason: String, now: ContinuousClock.Instant, close: Bool) -> [Action] {
        var actions: [Action] = close ? [.close] : []
        if nextKeepAlive != nil {
            nextKeepAlive = nil
            actions.append(.cancelTimer(.keepAlive))
        }
        if !outage {
            outage = true
            actions.append(.report(.lost(reason: reason)))
        }
        consecutiveFailures += 1
        let until =
            now
            + Self.backoffDelay(
                failures: consecutiveFailures,
                initial: configuration.initialBackoff,
                maximum: configuration.maximumBackoff,
                random: random()
            )
        state = .backingOff(until: until)
        connectDeadline = nil
        rereadPending = false
        actions.append(.scheduleTimer(.deadline, at: until))
        return actions
    }

    private static func multiset(_ entries: [DiscoveryLogEntry]) -> [DiscoveryLogEntry: Int] {
        var counts: [DiscoveryLogEntry: Int] = [:]
        for entry in entries { counts[entry, default: 0] += 1 }
        return counts
    }
}

// MARK: - Referrals

/// The discovery controllers a host watches: the configured ones, plus the referrals their pages
/// list, followed transitively.
///
/// An address is watched when it is configured, or when a page of a watched controller at most
/// ``depthLimit`` − 1 referral hops from a configured one lists it (so referrals are followed
/// ``depthLimit`` hops deep). Addresses are compared by ``DiscoveryControllerKey`` (normalized
/// TRTYPE, TRADDR, TRSVCID): an address already watched is never added twice, which also stops
/// referral loops. When a referral disappears from the page that brought it, it is dropped —
/// together with whatever only it brought — unless it is configured or another watched page still
/// lists it.
public struct DiscoveryReferralSet: Sendable {
    /// One watched controller.
    public struct Watched: Sendable, Hashable {
        /// Its address (for a referral: host-side settings inherited from the referring page's).
        public var address: DiscoveryControllerAddress
        /// Referral hops from a configured controller (0: configured).
        public var depth: Int
        /// The controller whose page brought it, for a referral (the nearest one).
        public var referredBy: DiscoveryControllerKey?
        /// Whether it is configured.
        public var isConfigured: Bool { depth == 0 }
    }

    /// What changed: controllers to start watching and to stop watching.
    public struct Change: Sendable, Hashable {
        /// Newly watched, in discovery order.
        public var added: [DiscoveryControllerAddress] = []
        /// No longer watched.
        public var removed: [DiscoveryControllerAddress] = []
        /// Whether nothing changed.
        public var isEmpty: Bool { added.isEmpty && removed.isEmpty }

        public init(added: [DiscoveryControllerAddress] = [], removed: [DiscoveryControllerAddress] = []) {
            self.added = added
            self.removed = removed
        }
    }

    /// How many referral hops are followed, by default.
    public static let defaultDepthLimit = 4

    /// How many referral hops are followed.
    public let depthLimit: Int
    /// The configured controllers, without duplicates.
    public private(set) var configured: [DiscoveryControllerAddress] = []
    /// Every watched controller, configured ones first, then referrals in discovery order.
    public private(set) var watched: [Watched] = []

    /// The referrals each watched controller's last page listed, as addresses.
    private var listed: [DiscoveryControllerKey: [DiscoveryControllerAddress]] = [:]

    public init(configured: [DiscoveryControllerAddress] = [], depthLimit: Int = defaultDepthLimit) {
        self.depthLimit = max(depthLimit, 0)
        var seen = Set<DiscoveryControllerKey>()
        self.configured = configured.filter { seen.insert($0.key).inserted }
        recompute()
    }

    /// The addresses of every watched controller.
    public var addresses: [DiscoveryControllerAddress] { watched.map(\.address) }

    /// Whether the controller at `address` is watched.
    public func contains(_ address: DiscoveryControllerAddress) -> Bool { entry(for: address) != nil }

    /// The watched controller at `address`, if it is watched.
    public func entry(for address: DiscoveryControllerAddress) -> Watched? {
        let key = address.key
        return watched.first { $0.address.key == key }
    }

    /// The page of the watched controller `source` was read: follow the referrals among
    /// `entries`, drop the ones that disappeared. Pages of controllers not watched are ignored.
    public mutating func pageRead(
        from source: DiscoveryControllerAddress,
        entries: [DiscoveryLogEntry]
    ) -> Change {
        guard let watchedSource = entry(for: source) else { return Change() }
        listed[source.key] = DiscoveryWatch.controllersToWatch(in: entries, from: watchedSource.address).map {
            DiscoveryControllerAddress(referral: $0, from: watchedSource.address)
        }
        return recompute()
    }

    /// Adds a configured controller (a referral already watched becomes configured).
    public mutating func addConfigured(_ address: DiscoveryControllerAddress) -> Change {
        guard !configured.contains(where: { $0.key == address.key }) else { return Change() }
        configured.append(address)
        return recompute()
    }

    /// Removes a configured controller; it stays watched when a watched page still lists it.
    public mutating func removeConfigured(_ address: DiscoveryControllerAddress) -> Change {
        let key = address.key
        guard configured.contains(where: { $0.key == key }) else { return Change() }
        configured.removeAll { $0.key == key }
        return recompute()
    }

    /// Recomputes the watched set breadth first from the configured controllers and reports the
    /// difference.
    @discardableResult
    private mutating func recompute() -> Change {
        let before = watched
        var result: [Watched] = []
        var seen = Set<DiscoveryControllerKey>()
        for address in configured where seen.insert(address.key).inserted {
            result.append(Watched(address: address, depth: 0, referredBy: nil))
        }
        var next = 0
        while next < result.count {
            let current = result[next]
            next += 1
            guard current.depth < depthLimit else { continue }
            for referral in listed[current.address.key] ?? [] where seen.insert(referral.key).inserted {
                result.append(Watched(address: referral, depth: current.depth + 1, referredBy: current.address.key))
            }
        }
        watched = result
        // Forget what controllers no longer watched listed: if one comes back, its page is read anew.
        listed = listed.filter { seen.contains($0.key) }
        let beforeKeys = Set(before.map(\.address.key))
        return Change(
            added: result.filter { !beforeKeys.contains($0.address.key) }.map(\.address),
            removed: before.filter { !seen.contains($0.address.key) }.map(\.address)
        )
    }
}
