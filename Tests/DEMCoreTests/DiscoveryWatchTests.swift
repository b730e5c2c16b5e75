import DEMCore
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing

private struct WatchTestError: Error, CustomStringConvertible {
    var description: String { "boom" }
}

private func nvmEntry(_ index: Int, address: String = "192.0.2.20") -> DiscoveryLogEntry {
    DiscoveryLogEntry(
        transportType: .tcp,
        addressFamily: .ipv4,
        subsystemType: .nvm,
        portIdentifier: UInt16(index),
        transportServiceIdentifier: "4420",
        subsystemNQN: "nqn.2024-01.io.example:subsystem-\(index)",
        transportAddress: address
    )
}

private func referralEntry(_ address: String, port: String = "8009") -> DiscoveryLogEntry {
    DiscoveryLogEntry(
        transportType: .tcp,
        addressFamily: address.contains(":") ? .ipv6 : .ipv4,
        subsystemType: .referral,
        portIdentifier: 1,
        transportServiceIdentifier: port,
        subsystemNQN: DEMCore.wellKnownDiscoveryNQN,
        transportAddress: address
    )
}

// MARK: - The state machine

@Suite("DiscoveryWatch state machine")
struct DiscoveryWatchTests {
    let t0 = ContinuousClock.now
    let change = AsynchronousEvent.discoveryLogPageChange.result
    let page1 = DiscoveryLogPage(generationCounter: 1, entries: [nvmEntry(1), nvmEntry(2)])
    let page2 = DiscoveryLogPage(generationCounter: 2, entries: [nvmEntry(1), nvmEntry(2), nvmEntry(3)])

    func machine(
        keepAliveTimeout: Duration = .seconds(10),
        maximumBackoff: Duration = .seconds(60),
        random: @escaping @Sendable () -> Double = { 0.5 }
    ) -> DiscoveryWatch {
        DiscoveryWatch(
            configuration: DiscoveryWatch.Configuration(
                keepAliveTimeout: keepAliveTimeout,
                maximumBackoff: maximumBackoff
            ),
            random: random
        )
    }

    /// A machine connected, with `page1` read and the AER parked, at `t0 + 1 s`.
    func armed(keepAliveTimeout: Duration = .seconds(10)) -> DiscoveryWatch {
        var watch = machine(keepAliveTimeout: keepAliveTimeout)
        _ = watch.start(now: t0)
        _ = watch.connected(now: t0 + .seconds(1))
        _ = watch.pageRead(page1, now: t0 + .seconds(1))
        return watch
    }

    func scheduledDeadline(_ actions: [DiscoveryWatch.Action]) -> ContinuousClock.Instant? {
        for case .scheduleTimer(.deadline, let instant) in actions { return instant }
        return nil
    }

    func reports(_ actions: [DiscoveryWatch.Action]) -> [DiscoveryWatchReport] {
        actions.compactMap {
            if case .report(let report) = $0 { return report }
            return nil
        }
    }

    func isLost(_ report: DiscoveryWatchReport) -> Bool {
        if case .lost = report { return true }
        return false
    }

    @Test("start connects; connected reports and reads; the page is reported and the AER parked")
    func connectReadArm() {
        var watch = machine()
        #expect(watch.state == .idle)
        #expect(watch.start(now: t0) == [.connect, .scheduleTimer(.deadline, at: t0 + .seconds(30))])
        #expect(watch.state == .connecting)
        #expect(watch.start(now: t0) == [], "a second start does nothing")
        let now = t0 + .seconds(1)
        #expect(
            watch.connected(now: now) == [
                .cancelTimer(.deadline), .report(.connected), .readLogPage,
                .scheduleTimer(.keepAlive, at: now + .seconds(5)),
            ]
        )
        #expect(watch.state == .reading)
        #expect(watch.isConnected)
        #expect(
            watch.pageRead(page1, now: now) == [
                .report(.page(entries: page1.entries, generation: 1)), .armAsynchronousEvent,
            ]
        )
        #expect(watch.state == .armed)
        #expect(watch.lastPage == page1)
    }

    @Test("a change notice re-reads; the same entries are not reported again; changed entries are")
    func changeNotice() {
        var watch = armed()
        let now = t0 + .seconds(2)
        #expect(watch.asynchronousEvent(result: 0x70_F002, now: now) == [.readLogPage])
        #expect(watch.state == .reading)
        // GENCTR moved and the entries came back in another order: nothing to report.
        let reordered = DiscoveryLogPage(generationCounter: 5, entries: page1.entries.reversed())
        #expect(watch.pageRead(reordered, now: now) == [.armAsynchronousEvent])
        #expect(watch.state == .armed)
        #expect(watch.asynchronousEvent(result: change, now: now) == [.readLogPage])
        #expect(
            watch.pageRead(page2, now: now) == [
                .report(.page(entries: page2.entries, generation: 2)), .armAsynchronousEvent,
            ]
        )
        // Back to the first page: it differs from the last one reported, so it is reported.
        #expect(watch.asynchronousEvent(result: change, now: now) == [.readLogPage])
        #expect(reports(watch.pageRead(page1, now: now)) == [.page(entries: page1.entries, generation: 1)])
    }

    @Test("other asynchronous events re-arm without reading")
    func otherEventsRearm() {
        var watch = armed()
        for result: UInt32 in [0x00_0001, 0x03_0002, 0x70_F102, 0x71_F002] {
            #expect(watch.asynchronousEvent(result: result, now: t0 + .seconds(2)) == [.armAsynchronousEvent])
            #expect(watch.state == .armed)
        }
    }

    @Test("a change notice while reading makes the read repeat before the AER is parked again")
    func changeWhileReading() {
        var watch = machine()
        _ = watch.start(now: t0)
        _ = watch.connected(now: t0)
        #expect(watch.asynchronousEvent(result: change, now: t0) == [])
        #expect(
            watch.pageRead(page1, now: t0) == [.report(.page(entries: page1.entries, generation: 1)), .readLogPage]
        )
        #expect(watch.state == .reading)
        #expect(watch.pageRead(page1, now: t0) == [.armAsynchronousEvent])
    }

    @Test("keep-alives every KATO/2 while connected; early or stale timers are ignored")
    func keepAlives() {
        var watch = armed(keepAliveTimeout: .seconds(10))
        let first = t0 + .seconds(6)  // connected at t0 + 1 s
        #expect(watch.keepAliveDue(now: first - .milliseconds(1)) == [])
        #expect(
            watch.keepAliveDue(now: first) == [.sendKeepAlive, .scheduleTimer(.keepAlive, at: first + .seconds(5))]
        )
        #expect(watch.keepAliveDue(now: first + .seconds(1)) == [])
        // Keep-alives go on while the page is read after a change notice.
        _ = watch.asynchronousEvent(result: change, now: first + .seconds(2))
        #expect(watch.keepAliveDue(now: first + .seconds(5)).first == .sendKeepAlive)
        // Once the connection is gone, a keep-alive timer that still fires does nothing.
        _ = watch.connectionLost(WatchTestError(), now: first + .seconds(6))
        #expect(watch.keepAliveDue(now: first + .seconds(20)) == [])
    }

    @Test("no KATO: no keep-alive timer")
    func noKeepAlive() {
        var watch = machine(keepAliveTimeout: .zero)
        _ = watch.start(now: t0)
        #expect(watch.connected(now: t0) == [.cancelTimer(.deadline), .report(.connected), .readLogPage])
        #expect(watch.keepAliveDue(now: t0 + .seconds(100)) == [])
    }

    @Test("connect failures back off with equal jitter: [c/2, c], c doubling from 1 s up to the cap")
    func backoffDoubles() throws {
        let generator = Mutex(SplitMix64(seed: 0xD15C_0BE4))
        let random: @Sendable () -> Double = {
            generator.withLock { Double($0.next() >> 11) / Double(1 << 53) }
        }
        var watch = machine(maximumBackoff: .seconds(20), random: random)
        var now = t0
        var actions = watch.start(now: now)
        var lostReports = 0
        let ceilings: [Duration] = [1, 2, 4, 8, 16, 20, 20, 20].map { .seconds($0) }
        for (index, ceiling) in ceilings.enumerated() {
            #expect(actions.first == .connect)
            now = now + .milliseconds(300)
            actions = watch.connectFailed(WatchTestError(), now: now)
            lostReports += reports(actions).filter(isLost).count
            let until = try #require(scheduledDeadline(actions))
            let delay = until - now
            #expect(
                delay >= ceiling / 2 && delay <= ceiling,
                "failure \(index + 1): \(delay) outside [c/2, c], c=\(ceiling)"
            )
            #expect(watch.state == .backingOff(until: until))
            #expect(watch.consecutiveFailures == index + 1)
            #expect(watch.timerFired(now: until - .milliseconds(1)) == [], "an early timer does not reconnect")
            now = until
            actions = watch.timerFired(now: now)
        }
        #expect(lostReports == 1, "the outage is reported once")
    }

    @Test("the jitter bounds are exact: random 0 gives c/2, random 1 gives c")
    func backoffBounds() {
        let low = (1...8).map {
            DiscoveryWatch.backoffDelay(failures: $0, initial: .seconds(1), maximum: .seconds(60), random: 0)
        }
        #expect(low == [0.5, 1, 2, 4, 8, 16, 30, 30].map { .milliseconds(Int64($0 * 1000)) })
        let high = (1...8).map {
            DiscoveryWatch.backoffDelay(failures: $0, initial: .seconds(1), maximum: .seconds(60), random: 1)
        }
        #expect(high == [1, 2, 4, 8, 16, 32, 60, 60].map { .seconds($0) })
        #expect(
            DiscoveryWatch.backoffCeiling(failures: 10_000, initial: .seconds(1), maximum: .seconds(60)) == .seconds(60)
        )
        #expect(
            DiscoveryWatch.backoffDelay(failures: 3, initial: .seconds(1), maximum: .seconds(60), random: 7)
                == .seconds(4)
        )
    }

    @Test("a page read resets the backoff")
    func successResetsBackoff() throws {
        var watch = machine(random: { 1 })
        var now = t0
        _ = watch.start(now: now)
        for _ in 0..<4 {
            let until = try #require(scheduledDeadline(watch.connectFailed(WatchTestError(), now: now)))
            now = until
            _ = watch.timerFired(now: now)
        }
        #expect(watch.consecutiveFailures == 4)
        _ = watch.connected(now: now)
        #expect(watch.consecutiveFailures == 4, "connecting alone does not reset the backoff")
        _ = watch.pageRead(page1, now: now)
        #expect(watch.consecutiveFailures == 0)
        let actions = watch.connectionLost(WatchTestError(), now: now)
        #expect(try #require(scheduledDeadline(actions)) - now == .seconds(1), "back to the first step")
    }

    @Test("a lost connection is reported once; .back after the first page read again")
    func lostOnceThenBack() throws {
        var watch = armed()
        var now = t0 + .seconds(3)
        var actions = watch.connectionLost(WatchTestError(), now: now)
        var until = try #require(scheduledDeadline(actions))
        #expect(
            actions == [
                .close, .cancelTimer(.keepAlive), .report(.lost(reason: "connection lost: boom")),
                .scheduleTimer(.deadline, at: until),
            ]
        )
        #expect(watch.connectionLost(WatchTestError(), now: now) == [], "already backing off")
        now = until
        #expect(watch.timerFired(now: now) == [.connect, .scheduleTimer(.deadline, at: now + .seconds(30))])
        actions = watch.connectFailed(WatchTestError(), now: now)
        #expect(reports(actions) == [], "the outage was already reported")
        until = try #require(scheduledDeadline(actions))
        now = until
        _ = watch.timerFired(now: now)
        #expect(reports(watch.connected(now: now)) == [.connected])
        #expect(watch.pageRead(page1, now: now) == [.report(.back), .armAsynchronousEvent], "same page: not reported")
        // The next outage is reported again.
        #expect(
            reports(watch.keepAliveFailed(WatchTestError(), now: now)) == [.lost(reason: "keep-alive failed: boom")]
        )
    }

    @Test("the first connection failing counts as an outage too")
    func firstConnectFails() {
        var watch = machine()
        _ = watch.start(now: t0)
        #expect(reports(watch.connectFailed(WatchTestError(), now: t0)) == [.lost(reason: "connecting failed: boom")])
        let until = t0 + .seconds(1)
        _ = watch.timerFired(now: until)
        _ = watch.connected(now: until)
        #expect(
            reports(watch.pageRead(page1, now: until)) == [.back, .page(entries: page1.entries, generation: 1)]
        )
    }

    @Test("read and keep-alive failures close the connection and back off")
    func failuresClose() {
        var reading = machine()
        _ = reading.start(now: t0)
        _ = reading.connected(now: t0)
        let actions = reading.pageReadFailed(WatchTestError(), now: t0)
        #expect(actions.first == .close)
        #expect(actions.contains(.cancelTimer(.keepAlive)))
        #expect(reports(actions) == [.lost(reason: "reading the discovery log page failed: boom")])
        guard case .backingOff = reading.state else {
            Issue.record("state \(reading.state)")
            return
        }
        var armed = armed()
        #expect(armed.keepAliveFailed(WatchTestError(), now: t0).first == .close)
        #expect(armed.pageRead(page1, now: t0) == [], "a late page of the closed connection is ignored")
        #expect(armed.asynchronousEvent(result: change, now: t0) == [])
    }

    @Test("a connection attempt that takes too long is abandoned")
    func connectTimeout() throws {
        var watch = machine()
        _ = watch.start(now: t0)
        #expect(watch.timerFired(now: t0 + .seconds(29)) == [])
        let actions = watch.timerFired(now: t0 + .seconds(30))
        #expect(actions.first == .close)
        #expect(reports(actions) == [.lost(reason: "connecting timed out after 30.0 seconds")])
        #expect(watch.connected(now: t0 + .seconds(31)) == [], "the abandoned attempt's success is ignored")
    }

    @Test("stop closes the connection and cancels timers; events after it are ignored")
    func stopCloses() {
        var watch = armed()
        #expect(watch.stop() == [.close, .cancelTimer(.keepAlive)])
        #expect(watch.state == .idle)
        #expect(watch.stop() == [])
        #expect(watch.asynchronousEvent(result: change, now: t0) == [])
        #expect(watch.keepAliveDue(now: t0 + .seconds(100)) == [])
        #expect(watch.timerFired(now: t0 + .seconds(100)) == [])

        var connecting = machine()
        _ = connecting.start(now: t0)
        #expect(connecting.stop() == [.close, .cancelTimer(.deadline)])

        var backingOff = machine()
        _ = backingOff.start(now: t0)
        _ = backingOff.connectFailed(WatchTestError(), now: t0)
        #expect(backingOff.stop() == [.cancelTimer(.deadline)])
        // A restart is a fresh start: the first page is reported again, without .back.
        _ = backingOff.start(now: t0)
        _ = backingOff.connected(now: t0)
        #expect(reports(backingOff.pageRead(page1, now: t0)) == [.page(entries: page1.entries, generation: 1)])
    }

    @Test("the referrals of the last page are exposed")
    func referrals() {
        var watch = machine()
        _ = watch.start(now: t0)
        _ = watch.connected(now: t0)
        let referral = referralEntry("192.0.2.99")
        _ = watch.pageRead(DiscoveryLogPage(generationCounter: 1, entries: [nvmEntry(1), referral]), now: t0)
        #expect(watch.referrals == [referral])
    }
}

// MARK: - Referrals

@Suite("DiscoveryWatch referral set")
struct DiscoveryWatchReferralSetTests {
    func address(_ traddr: String, _ trsvcid: String = "8009") -> DiscoveryControllerAddress {
        DiscoveryControllerAddress(transportAddress: traddr, transportServiceIdentifier: trsvcid)
    }

    func page(_ referrals: [String]) -> [DiscoveryLogEntry] {
        [nvmEntry(1)] + referrals.map { referralEntry($0) }
    }

    @Test("addresses are compared normalized")
    func normalization() {
        #expect(address("2001:DB8::1").key == address("[2001:db8:0:0::1]").key)
        #expect(address("192.0.2.1", "08009").key == address(" 192.0.2.1 ", "8009").key)
        #expect(address("DC.Example.com").key == address("dc.example.com").key)
        #expect(address("192.0.2.1", "8009").key != address("192.0.2.1", "4420").key)
        #expect(
            DiscoveryControllerAddress(
                transportType: .rdma,
                transportAddress: "192.0.2.1",
                transportServiceIdentifier: "8009"
            )
            .key != address("192.0.2.1").key
        )
        var set = DiscoveryReferralSet(configured: [address("2001:db8::1"), address("2001:DB8:0::1")])
        #expect(set.watched.count == 1, "duplicates among the configured addresses are dropped")
        #expect(set.pageRead(from: address("2001:db8::1"), entries: page(["2001:0db8::0001"])).isEmpty)
    }

    @Test("a referral loop is followed once")
    func loop() {
        let a = address("192.0.2.1")
        var set = DiscoveryReferralSet(configured: [a])
        #expect(set.pageRead(from: a, entries: page(["192.0.2.2"])).added == [address("192.0.2.2")])
        let fromB = set.pageRead(from: address("192.0.2.2"), entries: page(["192.0.2.1", "192.0.2.3", "192.0.2.2"]))
        #expect(fromB.added == [address("192.0.2.3")])
        #expect(fromB.removed == [])
        #expect(set.pageRead(from: address("192.0.2.3"), entries: page(["192.0.2.2", "192.0.2.1"])).isEmpty)
        #expect(set.addresses == [a, address("192.0.2.2"), address("192.0.2.3")])
        #expect(set.entry(for: address("192.0.2.3"))?.depth == 2)
        #expect(set.entry(for: address("192.0.2.3"))?.referredBy == address("192.0.2.2").key)
    }

    @Test("referrals are followed up to the depth limit")
    func depth() {
        for limit in [4, 2, 0] {
            let root = address("192.0.2.1")
            var set = DiscoveryReferralSet(configured: [root], depthLimit: limit)
            var source = root
            for hop in 2...7 {
                let next = address("192.0.2.\(hop)")
                _ = set.pageRead(from: source, entries: page([next.transportAddress]))
                source = next
            }
            #expect(set.watched.count == limit + 1, "depth limit \(limit)")
            #expect(set.watched.map(\.depth) == Array(0...limit))
        }
        #expect(DiscoveryReferralSet().depthLimit == 4)
    }

    @Test("a referral dropped from its page goes, with what only it brought; configured ones stay")
    func removal() {
        let a = address("192.0.2.1")
        let configuredReferral = address("192.0.2.9")
        var set = DiscoveryReferralSet(configured: [a, configuredReferral])
        _ = set.pageRead(from: a, entries: page(["192.0.2.2", "192.0.2.9"]))
        _ = set.pageRead(from: address("192.0.2.2"), entries: page(["192.0.2.3"]))
        // A cycle between 2 and 3 must not keep them alive once 1 stops listing 2.
        _ = set.pageRead(from: address("192.0.2.3"), entries: page(["192.0.2.2"]))
        #expect(set.watched.count == 4)
        let change = set.pageRead(from: a, entries: page([]))
        #expect(change.removed == [address("192.0.2.2"), address("192.0.2.3")])
        #expect(change.added == [])
        #expect(set.addresses == [a, configuredReferral])
        // What a dropped controller listed is forgotten: listing it again starts from its page.
        #expect(set.pageRead(from: a, entries: page(["192.0.2.2"])).added == [address("192.0.2.2")])
        #expect(!set.contains(address("192.0.2.3")))
    }

    @Test("a referral listed by two pages stays while either lists it")
    func twoSources() {
        let a = address("192.0.2.1")
        let b = address("192.0.2.2")
        var set = DiscoveryReferralSet(configured: [a, b])
        _ = set.pageRead(from: a, entries: page(["192.0.2.5"]))
        _ = set.pageRead(from: b, entries: page(["192.0.2.5"]))
        #expect(set.pageRead(from: a, entries: page([])).isEmpty)
        #expect(set.entry(for: address("192.0.2.5"))?.referredBy == b.key)
        #expect(set.pageRead(from: b, entries: page([])).removed == [address("192.0.2.5")])
    }

    @Test(
        "SUBTYPE 1 entries and, when the page lists the port reached, the controller's other ports (SUBTYPE 3) are followed; host-side settings are inherited; unknown sources ignored"
    )
    func referralDetails() throws {
        var source = address("192.0.2.1")
        source.hostInterface = "eth1"
        source.hostTransportAddress = "192.0.2.200"
        var set = DiscoveryReferralSet(configured: [source])
        var current = nvmEntry(1, address: "192.0.2.50")
        current.subsystemType = .currentDiscovery
        var own = nvmEntry(3, address: "192.0.2.1")
        own.subsystemType = .currentDiscovery
        own.transportServiceIdentifier = "8009"
        let change = set.pageRead(
            from: source,
            entries: [own, nvmEntry(2, address: "192.0.2.60"), current, referralEntry("192.0.2.7", port: "4444")]
        )
        #expect(change.added.map(\.transportAddress) == ["192.0.2.50", "192.0.2.7"])
        let otherPort = try #require(change.added.first)
        #expect(otherPort.hostInterface == "eth1")
        let referral = try #require(change.added.last)
        #expect(referral.transportAddress == "192.0.2.7")
        #expect(referral.port == 4444)
        #expect(referral.hostInterface == "eth1")
        #expect(referral.hostTransportAddress == "192.0.2.200")
        #expect(referral.subsystemNQN == DEMCore.wellKnownDiscoveryNQN)
        #expect(set.pageRead(from: address("198.51.100.1"), entries: page(["192.0.2.8"])).isEmpty)
        // A page that does not list the port the host reached (an address translated between
        // them): its other ports are not followed, its referrals are.
        let translated = set.pageRead(from: source, entries: [current, referralEntry("192.0.2.7", port: "4444")])
        #expect(translated.removed.map(\.transportAddress) == ["192.0.2.50"])
        #expect(set.addresses.map(\.transportAddress) == ["192.0.2.1", "192.0.2.7"])
        _ = set.pageRead(
            from: source,
            entries: [own, nvmEntry(2, address: "192.0.2.60"), current, referralEntry("192.0.2.7", port: "4444")]
        )
        #expect(set.removeConfigured(source).removed == [source, otherPort, referral])
        #expect(set.addConfigured(source).added == [source])
    }
}

// MARK: - The driver against DEMCore's discovery controller

/// A discovery service whose page can change, posting change notices to the connected hosts.
private final class ChangingDiscoveryService: DiscoveryControllerService {
    private struct State {
        var page: DiscoveryLogPage
        var listeners: [UInt64: @Sendable () -> Void] = [:]
        var nextToken: UInt64 = 1
        var nextControllerIdentifier: UInt16 = 1
        var noticesSent = 0
        var pageReads = 0
        var controllersCreated = 0
    }
    private let state: Mutex<State>

    init(page: DiscoveryLogPage) { state = Mutex(State(page: page)) }

    func discoveryLogPage(for host: DiscoveryHostContext) -> ByteBuffer { state.withLock { $0.page.encoded() } }

    func allocateControllerIdentifier() -> UInt16 {
        state.withLock { state in
            defer { state.nextControllerIdentifier &+= 1 }
            return state.nextControllerIdentifier
        }
    }

    func controllerCreated(_ host: DiscoveryHostContext, onChange: @escaping @Sendable () -> Void) -> UInt64 {
        state.withLock {
            let token = $0.nextToken
            $0.nextToken += 1
            $0.listeners[token] = onChange
            $0.controllersCreated += 1
            return token
        }
    }

    func controllerRemoved(_ token: UInt64) { state.withLock { _ = $0.listeners.removeValue(forKey: token) } }
    func asynchronousEventSent() { state.withLock { $0.noticesSent += 1 } }
    func logPageRead(offset: UInt64, length: UInt64) { state.withLock { $0.pageReads += 1 } }

    /// Replaces the page and tells every connected host.
    func setPage(_ page: DiscoveryLogPage) {
        let listeners = state.withLock {
            $0.page = page
            return Array($0.listeners.values)
        }
        for listener in listeners { listener() }
    }

    var connectedControllers: Int { state.withLock { $0.listeners.count } }
    var controllersCreated: Int { state.withLock { $0.controllersCreated } }
    var noticesSent: Int { state.withLock { $0.noticesSent } }
    var pageReads: Int { state.withLock { $0.pageReads } }
}

/// Collects a watcher's reports as they come.
private final class ReportLog: Sendable {
    private let reports = Mutex<[DiscoveryWatchReport]>([])
    private let finished = Mutex(false)

    func collect(_ watcher: DiscoveryWatcher) -> Task<Void, Never> {
        Task {
            for await report in watcher.reports { reports.withLock { $0.append(report) } }
            finished.withLock { $0 = true }
        }
    }

    var all: [DiscoveryWatchReport] { reports.withLock { $0 } }
    var isFinished: Bool { finished.withLock { $0 } }
    var lostCount: Int {
        all.filter {
            if case .lost = $0 { return true }
            return false
        }.count
    }
}

/// Waits up to `seconds` for `condition`, polling.
private func waitFor(_ seconds: Double = 10, _ condition: () -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try await Task.sleep(for: .milliseconds(20))
    }
    return condition()
}

@Suite("DiscoveryWatcher against a loopback discovery controller", .serialized)
struct DiscoveryWatcherLoopbackTests {
    let page1 = DiscoveryLogPage(generationCounter: 1, entries: [nvmEntry(1)])
    let page2 = DiscoveryLogPage(generationCounter: 2, entries: [nvmEntry(1), nvmEntry(2)])

    fileprivate func listen(
        _ service: ChangingDiscoveryService,
        port: Int = 0,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> any Channel {
        try await NVMeTCPDiscoveryListener.bind(
            host: "127.0.0.1",
            port: port,
            configuration: DiscoveryControllerConfiguration(uniqueNQN: TestValues.uniqueNQN),
            service: service,
            group: group,
            logger: Logger(label: "test")
        )
    }

    func watcher(port: Int, keepAliveMilliseconds: UInt32 = 30_000) -> DiscoveryWatcher {
        var options = DiscoveryClientOptions(hostNQN: TestValues.hostNQN, hostIdentifier: TestValues.hostID)
        options.keepAliveTimeout = keepAliveMilliseconds
        options.connectTimeout = .seconds(2)
        var configuration = DiscoveryWatch.Configuration(maximumBackoff: .milliseconds(200))
        configuration.initialBackoff = .milliseconds(50)
        configuration.connectTimeout = .seconds(5)
        return DiscoveryWatcher(host: "127.0.0.1", port: port, options: options, configuration: configuration)
    }

    @Test("reads the page, follows change notices, keeps the connection alive, closes on stop")
    func watches() async throws {
        let service = ChangingDiscoveryService(page: page1)
        let listener = try await listen(service)
        let port = try #require(listener.localAddress?.port)
        // KATO 3 s: 1 s was seen to run out under CI's load before the first page was read.
        let watcher = watcher(port: port, keepAliveMilliseconds: 3000)
        let log = ReportLog()
        let collector = log.collect(watcher)
        let running = Task { await watcher.run() }

        // Up to 30 s: the whole suite runs in one process, beside the connection flood tests.
        #expect(try await waitFor(30) { log.all.count >= 2 })
        #expect(log.all == [.connected, .page(entries: page1.entries, generation: 1)])

        service.setPage(page2)
        #expect(try await waitFor { log.all.count >= 3 })
        #expect(log.all.last == .page(entries: page2.entries, generation: 2))
        #expect(service.noticesSent == 1)

        // A notice whose page has the same entries: read again, nothing reported.
        let readsBefore = service.pageReads
        service.setPage(DiscoveryLogPage(generationCounter: 3, entries: page2.entries))
        #expect(try await waitFor { service.noticesSent == 2 && service.pageReads >= readsBefore + 3 })

        // Without Keep Alives every KATO/2 the controller would have closed by now.
        try await Task.sleep(for: .milliseconds(7500))
        #expect(log.all.count == 3, "\(log.all)")
        #expect(service.controllersCreated == 1)
        #expect(service.connectedControllers == 1)

        watcher.stop()
        await running.value
        await collector.value
        #expect(log.isFinished)
        #expect(try await waitFor { service.connectedControllers == 0 }, "the connection is closed")
        try await listener.close()
    }

    @Test("a controller going away is reported once, and its return with .back")
    func outage() async throws {
        let service = ChangingDiscoveryService(page: page1)
        let firstGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let listener = try await listen(service, group: firstGroup)
        let port = try #require(listener.localAddress?.port)
        let watcher = watcher(port: port)
        let log = ReportLog()
        let collector = log.collect(watcher)
        let running = Task { await watcher.run() }
        #expect(try await waitFor { log.all.count >= 2 })

        // Shutting the listener's event loops down closes the listener and every connection.
        try await firstGroup.shutdownGracefully()
        #expect(try await waitFor { log.lostCount == 1 })
        // Reconnection attempts fail every 25–200 ms for a while: still one .lost.
        try await Task.sleep(for: .milliseconds(800))
        #expect(log.lostCount == 1, "\(log.all)")
        #expect(log.all.count == 3)

        let secondGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let again = try await listen(service, port: port, group: secondGroup)
        #expect(try await waitFor { log.all.last == .back })
        let all = log.all
        #expect(all.count == 5, "\(all)")
        #expect(Array(all.prefix(2)) == [.connected, .page(entries: page1.entries, generation: 1)])
        #expect(Array(all.suffix(2)) == [.connected, .back], "the same page is not reported again")

        watcher.stop()
        await running.value
        await collector.value
        try await again.close()
        try await secondGroup.shutdownGracefully()
    }

    @Test("an unreachable controller: one .lost, and stop returns")
    func unreachable() async throws {
        // Bind and close a listener to find a port nobody listens on.
        let service = ChangingDiscoveryService(page: page1)
        let listener = try await listen(service)
        let port = try #require(listener.localAddress?.port)
        try await listener.close()

        let watcher = watcher(port: port)
        let log = ReportLog()
        let collector = log.collect(watcher)
        let running = Task { await watcher.run() }
        #expect(try await waitFor { log.lostCount == 1 })
        try await Task.sleep(for: .milliseconds(500))
        #expect(log.all.count == 1, "\(log.all)")
        watcher.stop()
        await running.value
        await collector.value
        #expect(log.isFinished)
    }

    @Test("cancelling run() stops the watcher too")
    func cancellation() async throws {
        let service = ChangingDiscoveryService(page: page1)
        let listener = try await listen(service)
        let port = try #require(listener.localAddress?.port)
        let watcher = watcher(port: port)
        let log = ReportLog()
        let collector = log.collect(watcher)
        let running = Task { await watcher.run() }
        #expect(try await waitFor { log.all.count >= 2 })
        running.cancel()
        await running.value
        await collector.value
        #expect(try await waitFor { service.connectedControllers == 0 })
        try await listener.close()
    }
}
