import Logging
import NIOCore
import NIOPosix
import Synchronization

/// A persistent discovery connection to one discovery controller: runs a ``DiscoveryWatch`` with
/// a real ``DiscoveryClient`` and yields its ``DiscoveryWatchReport``s on ``reports``.
///
/// It connects (and enables discovery log change notices with Set Features when the controller's
/// OAES offers them), reads the log page, parks an Asynchronous Event Request in one task while
/// another sends Keep Alives every KATO/2, re-reads the page on a change notice, and reconnects
/// with backoff when anything fails. Every command is abandoned as soon as the connection
/// closes, so a dead connection never leaves the watcher waiting (the AER has no time limit).
///
/// ```swift
/// let watcher = DiscoveryWatcher(host: "192.0.2.1", options: identity.clientOptions)
/// Task { await watcher.run() }
/// for await report in watcher.reports { … }
/// ```
public final class DiscoveryWatcher: Sendable {
    /// The KATO used when the options ask for none: a persistent connection needs keep-alives
    /// (nvme-cli uses 30 s for persistent discovery controllers too).
    public static let defaultKeepAliveTimeout: UInt32 = 30_000

    /// The controller's host name or IP address.
    public let host: String
    /// The controller's TCP port.
    public let port: Int
    /// How each connection is made (KATO never 0: see ``defaultKeepAliveTimeout``).
    public let options: DiscoveryClientOptions
    /// The state machine's parameters (its KATO is the options' one).
    public let configuration: DiscoveryWatch.Configuration
    /// What happens, in order; finishes when ``run()`` returns. One consumer only.
    public let reports: AsyncStream<DiscoveryWatchReport>

    private let reportContinuation: AsyncStream<DiscoveryWatchReport>.Continuation
    private let events: AsyncStream<Event>
    private let eventContinuation: AsyncStream<Event>.Continuation
    private let group: any EventLoopGroup
    private let logger: Logger
    private let random: @Sendable () -> Double
    private let shared = Mutex(Shared())

    /// What the connecting tasks and ``run()`` share: whether ``run()`` has started or ended, and
    /// the open clients (so that none is left open when it ends).
    private struct Shared {
        var started = false
        var finished = false
        var clients: [ObjectIdentifier: DiscoveryClient] = [:]
    }

    /// What the tasks tell the run loop. `epoch` is the connection the outcome belongs to:
    /// outcomes of a connection already closed or abandoned are ignored.
    private enum Event: Sendable {
        case connected(DiscoveryClient, epoch: UInt64)
        case connectFailed(any Error, epoch: UInt64)
        case pageRead(DiscoveryLogPage, epoch: UInt64)
        case pageReadFailed(any Error, epoch: UInt64)
        case asynchronousEvent(UInt32, epoch: UInt64)
        case asynchronousEventFailed(any Error, epoch: UInt64)
        case keepAliveFailed(any Error, epoch: UInt64)
        case timer(DiscoveryWatch.Timer, token: UInt64, at: ContinuousClock.Instant)
        case closed(UInt64)
        case stop
    }

    /// - Parameters:
    ///   - host: the discovery controller's host name or IP address.
    ///   - port: its TCP port.
    ///   - options: host NQN, host ID, subsystem NQN, KATO (0 becomes ``defaultKeepAliveTimeout``),
    ///     timeouts.
    ///   - configuration: backoff and connection-attempt limits; its `keepAliveTimeout` is
    ///     replaced by the options' KATO.
    ///   - group: the event loops connections run on.
    ///   - logger: where state changes are logged (debug level).
    ///   - random: the backoff jitter source, values in `0..<1`.
    public init(
        host: String,
        port: Int = DEMCore.discoveryPort,
        options: DiscoveryClientOptions,
        configuration: DiscoveryWatch.Configuration = DiscoveryWatch.Configuration(),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "dem.discovery-watcher"),
        random: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) }
    ) {
        var options = options
        if options.keepAliveTimeout == 0 { options.keepAliveTimeout = Self.defaultKeepAliveTimeout }
        var configuration = configuration
        configuration.keepAliveTimeout = .milliseconds(Int64(options.keepAliveTimeout))
        self.host = host
        self.port = port
        self.options = options
        self.configuration = configuration
        self.group = group
        var logger = logger
        logger[metadataKey: "nvme.dc"] = "\(host):\(port)"
        self.logger = logger
        self.random = random
        (reports, reportContinuation) = AsyncStream.makeStream(of: DiscoveryWatchReport.self)
        (events, eventContinuation) = AsyncStream.makeStream(of: Event.self)
    }

    /// A watcher of the NVMe/TCP discovery controller at `address`, connecting as `identity`
    /// (or as the host NQN and ID the address names), with `keepAliveMilliseconds` as KATO.
    public convenience init(
        address: DiscoveryControllerAddress,
        identity: HostIdentity,
        keepAliveMilliseconds: UInt32 = DiscoveryWatcher.defaultKeepAliveTimeout,
        configuration: DiscoveryWatch.Configuration = DiscoveryWatch.Configuration(),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "dem.discovery-watcher")
    ) {
        var options = address.clientOptions(for: identity)
        options.keepAliveTimeout = keepAliveMilliseconds
        self.init(
            host: address.transportAddress,
            port: address.port ?? DEMCore.discoveryPort,
            options: options,
            configuration: configuration,
            group: group,
            logger: logger
        )
    }

    /// Watches until ``stop()`` is called or the calling task is cancelled, then closes the
    /// connection and finishes ``reports``. Runs once: later calls return at once.
    public func run() async {
        let first = shared.withLock { shared -> Bool in
            guard !shared.started else { return false }
            shared.started = true
            return true
        }
        guard first else { return }
        let loop = RunLoop(watcher: self)
        loop.perform(loop.machine.start(now: .now))
        for await event in events {
            if case .stop = event { break }
            loop.handle(event)
        }
        loop.perform(loop.machine.stop())
        loop.cancelTimers()
        let leftovers = shared.withLock { shared -> [DiscoveryClient] in
            shared.finished = true
            defer { shared.clients = [:] }
            return Array(shared.clients.values)
        }
        for client in leftovers { await Self.shutDown(client) }
        for task in loop.closing.values { await task.value }
        eventContinuation.finish()
        reportContinuation.finish()
        logger.debug("discovery watch stopped")
    }

    /// Makes ``run()`` close the connection and return.
    public func stop() {
        eventContinuation.yield(.stop)
    }

    // MARK: - The run loop

    /// The run loop's state: the machine, the connection, the timers. Used by ``run()`` only.
    private final class RunLoop {
        let watcher: DiscoveryWatcher
        var machine: DiscoveryWatch
        /// The connection in use.
        var client: DiscoveryClient?
        /// The connection the machine is dealing with: bumped by every connect and every close.
        var epoch: UInt64 = 0
        var timers: [DiscoveryWatch.Timer: (token: UInt64, task: Task<Void, Never>)] = [:]
        var nextToken: UInt64 = 0
        /// Connections being closed, until their close ends.
        var closing: [UInt64: Task<Void, Never>] = [:]
        var nextClosing: UInt64 = 0

        init(watcher: DiscoveryWatcher) {
            self.watcher = watcher
            self.machine = DiscoveryWatch(configuration: watcher.configuration, random: watcher.random)
        }

        func handle(_ event: Event) {
            let now = ContinuousClock.now
            switch event {
            case .connected(let client, let epoch):
                guard epoch == self.epoch, self.client == nil, case .connecting = machine.state else {
                    close(client)
                    return
                }
                self.client = client
                perform(machine.connected(now: now))
            case .connectFailed(let error, let epoch):
                guard epoch == self.epoch else { return }
                perform(machine.connectFailed(error, now: now))
            case .pageRead(let page, let epoch):
                guard epoch == self.epoch else { return }
                perform(machine.pageRead(page, now: now))
            case .pageReadFailed(let error, let epoch):
                guard epoch == self.epoch else { return }
                perform(machine.pageReadFailed(error, now: now))
            case .asynchronousEvent(let result, let epoch):
                guard epoch == self.epoch else { return }
                perform(machine.asynchronousEvent(result: result, now: now))
            case .asynchronousEventFailed(let error, let epoch):
                guard epoch == self.epoch else { return }
                perform(machine.connectionLost(error, now: now))
            case .keepAliveFailed(let error, let epoch):
                guard epoch == self.epoch else { return }
                perform(machine.keepAliveFailed(error, now: now))
            case .timer(let timer, let token, let instant):
                guard timers[timer]?.token == token else { return }
                timers[timer] = nil
                // A sleep ends at or after its deadline; never hand the machine an earlier time.
                let firedAt = max(now, instant)
                switch timer {
                case .deadline: perform(machine.timerFired(now: firedAt))
                case .keepAlive: perform(machine.keepAliveDue(now: firedAt))
                }
            case .closed(let identifier):
                closing[identifier] = nil
            case .stop:
                break
            }
        }

        func perform(_ actions: [DiscoveryWatch.Action]) {
            for action in actions {
                switch action {
                case .connect:
                    epoch &+= 1
                    watcher.logger.debug("connecting")
                    startConnecting(epoch: epoch)
                case .readLogPage:
                    let epoch = self.epoch
                    run(
                        { try await $0.readDiscoveryLogPage() },
                        success: { .pageRead($0, epoch: epoch) },
                        failure: { .pageReadFailed($0, epoch: epoch) }
                    )
                case .armAsynchronousEvent:
                    let epoch = self.epoch
                    run(
                        { try await $0.nextAsynchronousEvent().result },
                        success: { .asynchronousEvent($0, epoch: epoch) },
                        failure: { .asynchronousEventFailed($0, epoch: epoch) }
                    )
                case .sendKeepAlive:
                    let epoch = self.epoch
                    run({ try await $0.keepAlive() }, success: { nil }, failure: { .keepAliveFailed($0, epoch: epoch) })
                case .scheduleTimer(let timer, let instant):
                    timers[timer]?.task.cancel()
                    nextToken &+= 1
                    let token = nextToken
                    let continuation = watcher.eventContinuation
                    let task = Task {
                        do {
                            try await Task.sleep(until: instant, clock: .continuous)
                        } catch {
                            return
                        }
                        continuation.yield(.timer(timer, token: token, at: instant))
                    }
                    timers[timer] = (token, task)
                case .cancelTimer(let timer):
                    timers.removeValue(forKey: timer)?.task.cancel()
                case .close:
                    epoch &+= 1
                    if let client {
                        self.client = nil
                        close(client)
                    }
                case .report(let report):
                    switch report {
                    case .lost(let reason):
                        watcher.logger.debug("discovery controller lost", metadata: ["reason": "\(reason)"])
                    case .back: watcher.logger.debug("discovery controller back")
                    case .connected: watcher.logger.debug("connected")
                    case .page(let entries, let generation):
                        watcher.logger.debug(
                            "discovery log page",
                            metadata: ["entries": "\(entries.count)", "genctr": "\(generation)"]
                        )
                    }
                    watcher.reportContinuation.yield(report)
                }
            }
        }

        func cancelTimers() {
            for timer in timers.values { timer.task.cancel() }
            timers.removeAll()
        }

        /// Runs `operation` on the current connection in a task of its own and posts the event
        /// its outcome maps to.
        private func run<T: Sendable>(
            _ operation: @escaping @Sendable (DiscoveryClient) async throws -> T,
            success: @escaping @Sendable (T) -> Event?,
            failure: @escaping @Sendable (any Error) -> Event
        ) {
            let continuation = watcher.eventContinuation
            guard let client else {
                continuation.yield(failure(NVMeHostError.connectionClosed))
                return
            }
            Task {
                do {
                    let value = try await DiscoveryWatcher.guarded(client) { try await operation(client) }
                    if let event = success(value) { continuation.yield(event) }
                } catch {
                    continuation.yield(failure(error))
                }
            }
        }

        private func startConnecting(epoch: UInt64) {
            let watcher = self.watcher
            Task {
                let client: DiscoveryClient
                do {
                    client = try await DiscoveryClient.connect(
                        host: watcher.host,
                        port: watcher.port,
                        options: watcher.options,
                        group: watcher.group
                    )
                } catch {
                    watcher.eventContinuation.yield(.connectFailed(error, epoch: epoch))
                    return
                }
                let kept = watcher.shared.withLock { shared -> Bool in
                    guard !shared.finished else { return false }
                    shared.clients[ObjectIdentifier(client)] = client
                    return true
                }
                guard kept else {
                    await DiscoveryWatcher.shutDown(client)
                    return
                }
                do {
                    try await DiscoveryWatcher.enableChangeNotices(client, watcher: watcher)
                } catch {
                    await DiscoveryWatcher.shutDown(client)
                    watcher.shared.withLock { _ = $0.clients.removeValue(forKey: ObjectIdentifier(client)) }
                    watcher.eventContinuation.yield(.connectFailed(error, epoch: epoch))
                    return
                }
                watcher.eventContinuation.yield(.connected(client, epoch: epoch))
            }
        }

        /// Closes `client` in a task of its own, tracked in ``closing``.
        private func close(_ client: DiscoveryClient) {
            nextClosing &+= 1
            let identifier = nextClosing
            let watcher = self.watcher
            closing[identifier] = Task {
                await DiscoveryWatcher.shutDown(client)
                watcher.shared.withLock { _ = $0.clients.removeValue(forKey: ObjectIdentifier(client)) }
                watcher.eventContinuation.yield(.closed(identifier))
            }
        }
    }

    // MARK: - Connections

    /// Runs `operation` on `client`, failing with ``NVMeHostError/connectionClosed`` as soon as
    /// the connection closes: a command written after the channel closed is never answered.
    private static func guarded<T: Sendable>(
        _ client: DiscoveryClient,
        _ operation: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        let connection = client.connection
        let promise = connection.eventLoop.makePromise(of: T.self)
        connection.closeFuture.whenComplete { _ in promise.fail(NVMeHostError.connectionClosed) }
        Task {
            do {
                promise.succeed(try await operation())
            } catch {
                promise.fail(error)
            }
        }
        return try await promise.futureResult.get()
    }

    /// Enables discovery log change notices (Asynchronous Event Configuration bit 31) when the
    /// controller's OAES offers them, as Linux does; nvmet sends none otherwise. A controller
    /// refusing the command is logged, not fatal.
    private static func enableChangeNotices(_ client: DiscoveryClient, watcher: DiscoveryWatcher) async throws {
        let notices = AsynchronousEventConfiguration.discoveryLogPageChange
        guard client.identify.optionalAsynchronousEventsSupported & notices != 0 else { return }
        let command = FeaturesCommand(
            featureIdentifier: FeatureIdentifier.asynchronousEventConfiguration,
            value: notices
        )
        .setFeaturesEntry(commandIdentifier: 0)
        let timeout = watcher.options.commandTimeout
        let result = try await guarded(client) {
            let connection = client.connection
            let future = connection.submitFuture(command)
            let timer = connection.eventLoop.scheduleTask(in: timeout) { connection.abort() }
            defer { timer.cancel() }
            return try await future.get()
        }
        if !result.completion.status.isSuccess {
            watcher.logger.debug(
                "Set Features (Asynchronous Event Configuration) failed",
                metadata: ["status": "\(result.completion.status)"]
            )
        }
    }

    /// Shuts the controller down and closes the connection (just closes it when already closed).
    private static func shutDown(_ client: DiscoveryClient) async {
        if client.connection.isActive {
            _ = try? await guarded(client) { await client.close() }
        }
        await client.connection.close()
    }
}
