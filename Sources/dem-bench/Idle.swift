import DEMCore
import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// One open persistent discovery connection with its parked Asynchronous Event Request.
struct IdleConnection: Sendable {
    var client: DiscoveryClient
    var generation: UInt64
    var entryCount: Int
    var event: EventLoopFuture<NVMeCommandResult>
}

/// The open connections, shared with the keep-alive pacer while they are being opened.
private final class ConnectionRegistry: Sendable {
    private let connections = Mutex<[IdleConnection]>([])
    private let cursor = Mutex<Int>(0)
    let keepAlivesSent = Atomic<Int>(0)
    let keepAliveFailures = Atomic<Int>(0)

    func append(_ connection: IdleConnection) { connections.withLock { $0.append(connection) } }
    var all: [IdleConnection] { connections.withLock { $0 } }
    var count: Int { connections.withLock { $0.count } }

    /// The next `count` connections round robin, for keep-alives.
    func nextBatch(_ count: Int) -> [IdleConnection] {
        connections.withLock { list in
            guard !list.isEmpty else { return [] }
            return cursor.withLock { cursor in
                var batch: [IdleConnection] = []
                batch.reserveCapacity(min(count, list.count))
                for _ in 0..<min(count, list.count) {
                    if cursor >= list.count { cursor = 0 }
                    batch.append(list[cursor])
                    cursor += 1
                }
                return batch
            }
        }
    }
}

/// When each connection heard of a change and when it held the new page.
private final class ChangeCollector: Sendable {
    struct Record: Sendable {
        var notified: ContinuousClock.Instant?
        var held: ContinuousClock.Instant?
        var changed = false
        var error: String?
        /// The page's GENCTR after the read, and the AER parked after it, for the next change.
        var generation: UInt64 = 0
        var nextEvent: EventLoopFuture<NVMeCommandResult>?
    }

    private let state: Mutex<(records: [Record], finished: Int)>

    init(count: Int) {
        state = Mutex((Array(repeating: Record(), count: count), 0))
    }

    func finish(_ index: Int, _ record: Record) {
        state.withLock { state in
            state.records[index] = record
            state.finished += 1
        }
    }

    var finished: Int { state.withLock { $0.finished } }
    var records: [Record] { state.withLock { $0.records } }
}

/// What one change measured.
private struct ChangeResult {
    var notified: LatencySummary
    var held: LatencySummary
    var heldCount: Int
    var errors: [String]
    var unchanged: Int
    var missing: Int
    var waited: Double
    var demCPU: Double
    var benchCPU: Double
    var machineBusy: Double
    var otherLoad: Double
    var notifiedByDEM: String
    var residentKiB: Int
}

/// `dem-bench idle`.
enum IdleBenchmark {
    struct Settings {
        var connections: Int
        var keepAliveTimeoutMilliseconds: UInt32
        var entries: Int
        var openConcurrency: Int
        var sharedHostNQN: Bool
        var settle: Double
        var changeTimeout: Double
        var changes: Int
        var demPath: String?
    }

    static func run(_ settings: Settings) async throws {
        let openFiles = raiseOpenFileLimit()
        guard openFiles >= settings.connections + 200 else {
            throw BenchError(
                "RLIMIT_NOFILE is \(openFiles) (hard limit); \(settings.connections) connections need more (ulimit -Hn)"
            )
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        let launched = try await launchDEM(executable: settings.demPath, entries: settings.entries, group: group)
        let (dem, demPath, port) = (launched.process, launched.executable, launched.port)
        let (directory, entriesPath) = (launched.directory, launched.entriesPath)
        defer { dem.stop() }

        // One session first, so that what dem sets up once is in the baseline.
        let warmup = try await SessionLoad.session(port: port, options: benchClientOptions(host: 0), group: group)
        try await Task.sleep(for: .seconds(1))
        guard let rssBefore = ProcFS.residentKiB(dem.pid) else { throw BenchError("cannot read dem's VmRSS") }
        let fdsBefore = ProcFS.openFileCount(dem.pid)

        // Open the connections, `openConcurrency` at a time, while a pacer sends each one a Keep
        // Alive every KATO/2 (spread evenly, as independent hosts would).
        let registry = ConnectionRegistry()
        let keepAliveInterval = Double(settings.keepAliveTimeoutMilliseconds) / 2000
        let pacer = Task {
            let tick = 0.1
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(100))
                let total = registry.count
                guard total > 0 else { continue }
                let perTick = Int((Double(total) * tick / keepAliveInterval).rounded(.up))
                for connection in registry.nextBatch(perTick) {
                    connection.client.connection.submitFuture(AsynchronousEvent.keepAliveEntry(commandIdentifier: 0))
                        .whenComplete { result in
                            switch result {
                            case .success(let done) where done.completion.status.isSuccess:
                                registry.keepAlivesSent.add(1, ordering: .relaxed)
                            default:
                                registry.keepAliveFailures.add(1, ordering: .relaxed)
                            }
                        }
                }
            }
        }
        defer { pacer.cancel() }

        let kato = settings.keepAliveTimeoutMilliseconds
        let shared = settings.sharedHostNQN
        note("opening \(settings.connections) persistent connections, \(settings.openConcurrency) at a time")
        let openStart = ContinuousClock.now
        var openErrors = 0
        var firstOpenError: String?
        await withTaskGroup(of: Result<IdleConnection, any Error>.self) { tasks in
            var next = 0
            while next < min(settings.openConcurrency, settings.connections) {
                let index = next
                tasks.addTask { await open(index: index, port: port, kato: kato, shared: shared, group: group) }
                next += 1
            }
            while let result = await tasks.next() {
                switch result {
                case .success(let connection): registry.append(connection)
                case .failure(let error):
                    openErrors += 1
                    if firstOpenError == nil { firstOpenError = "\(error)" }
                }
                if next < settings.connections {
                    let index = next
                    tasks.addTask { await open(index: index, port: port, kato: kato, shared: shared, group: group) }
                    next += 1
                }
            }
        }
        let openSeconds = openStart.duration(to: .now).seconds
        let connections = registry.all
        guard !connections.isEmpty else {
            throw BenchError("no connection opened: \(firstOpenError ?? "?")\n\(dem.logTail())")
        }
        note("opened \(connections.count) in \(fmt(openSeconds)) s; settling \(fmt(settings.settle)) s")
        try await Task.sleep(for: .seconds(settings.settle))
        guard dem.isRunning, let rssAfter = ProcFS.residentKiB(dem.pid) else {
            throw BenchError("dem is gone:\n\(dem.logTail())")
        }
        let fdsAfter = ProcFS.openFileCount(dem.pid)
        let perConnectionKiB = Double(rssAfter - rssBefore) / Double(connections.count)

        // Each change: one more entry any host may see, then SIGHUP. T0 is taken before the file
        // is replaced, so the time includes dem reading and parsing the file.
        var events = connections.map(\.event)
        var generations = connections.map(\.generation)
        var changes: [ChangeResult] = []
        for change in 1...settings.changes {
            let collector = ChangeCollector(count: connections.count)
            let expectedEntries = warmup.entries.count + change
            for (index, connection) in connections.enumerated() {
                let before = generations[index]
                events[index].whenComplete { result in
                    let notified = ContinuousClock.now
                    switch result {
                    case .failure(let error):
                        collector.finish(index, .init(notified: nil, held: nil, changed: false, error: "\(error)"))
                    case .success:
                        Task {
                            do {
                                let page = try await connection.client.readDiscoveryLogPage()
                                let held = ContinuousClock.now
                                let next = connection.client.connection.submitFuture(
                                    AsynchronousEvent.requestEntry(commandIdentifier: 0)
                                )
                                let changed = page.generationCounter != before && page.entries.count == expectedEntries
                                collector.finish(
                                    index,
                                    .init(
                                        notified: notified,
                                        held: held,
                                        changed: changed,
                                        error: nil,
                                        generation: page.generationCounter,
                                        nextEvent: next
                                    )
                                )
                            } catch {
                                collector.finish(
                                    index,
                                    .init(notified: notified, held: nil, changed: false, error: "\(error)")
                                )
                            }
                        }
                    }
                }
            }
            try await Task.sleep(for: .milliseconds(500))
            note(
                "change \(change)/\(settings.changes): entries file rewritten with \(settings.entries + change) entries, SIGHUP"
            )
            let demCPUBefore = ProcFS.cpuSeconds(dem.pid)
            let benchCPUBefore = ProcFS.cpuSeconds()
            let machineBefore = ProcFS.machineCPU()
            let t0 = ContinuousClock.now
            try BenchEntries.write(count: settings.entries + change, to: entriesPath)
            dem.signal(SIGHUP)
            let changeDeadline = t0 + .seconds(settings.changeTimeout)
            while collector.finished < connections.count && ContinuousClock.now < changeDeadline {
                try await Task.sleep(for: .milliseconds(5))
            }
            let waited = t0.duration(to: .now).seconds
            let demCPU = ProcFS.cpuSeconds(dem.pid) - demCPUBefore
            let benchCPU = ProcFS.cpuSeconds() - benchCPUBefore
            let machineAfter = ProcFS.machineCPU()
            let machineBusy =
                (machineAfter.busy - machineBefore.busy) / max(0.001, machineAfter.total - machineBefore.total)
            let otherLoad =
                max(0, (machineAfter.busy - machineBefore.busy) - demCPU - benchCPU)
                / max(0.001, machineAfter.total - machineBefore.total)

            let records = collector.records
            let notified = records.compactMap { $0.notified.map { t0.duration(to: $0).seconds * 1000 } }
            let held = records.compactMap { record in
                record.changed ? record.held.map { t0.duration(to: $0).seconds * 1000 } : nil
            }
            // dem logs each reload with the generation and how many connections it notified; a
            // poll that sees the same file again logs the same generation with notified=0.
            let notifiedByDEM = dem.logTail(400).split(separator: "\n")
                .filter { $0.contains("discovery entries loaded") && $0.contains(" generation=\(change + 1) ") }
                .compactMap { line in
                    line.split(separator: " ").first(where: { $0.hasPrefix("notified=") }).flatMap {
                        Int($0.dropFirst(9))
                    }
                }
                .max()
                .map(String.init)
            changes.append(
                ChangeResult(
                    notified: LatencySummary(notified),
                    held: LatencySummary(held),
                    heldCount: held.count,
                    errors: records.compactMap(\.error),
                    unchanged: records.filter { $0.held != nil && !$0.changed }.count,
                    missing: connections.count - collector.finished,
                    waited: waited,
                    demCPU: demCPU,
                    benchCPU: benchCPU,
                    machineBusy: machineBusy,
                    otherLoad: otherLoad,
                    notifiedByDEM: notifiedByDEM ?? "?",
                    residentKiB: ProcFS.residentKiB(dem.pid) ?? -1
                )
            )
            if let error = records.compactMap(\.error).first { note("first error: \(error)") }
            guard held.count == connections.count else { break }
            events = records.map { $0.nextEvent! }
            generations = records.map(\.generation)
        }
        let rssAfterChange = ProcFS.residentKiB(dem.pid) ?? -1
        let peak = ProcFS.peakResidentKiB(dem.pid) ?? -1
        pacer.cancel()

        say(
            "### \(settings.connections) idle persistent connections"
                + (settings.sharedHostNQN ? ", one host NQN for all" : "")
        )
        say()
        say("- machine: \(System.coreCount) cores (\(cpuModel())), Linux \(kernelRelease()); everything on 127.0.0.1")
        say(
            "- dem: `\(demPath)` (pid \(dem.pid), RLIMIT_NOFILE \(ProcFS.openFileLimit(dem.pid))), entries file of \(settings.entries) entries; "
                + "page of \(warmup.entries.count) entries (\(DiscoveryLogPageHeader.size + warmup.entries.count * DiscoveryLogEntry.size) bytes)"
        )
        say(
            "- each connection: DiscoveryClient.connect with KATO \(settings.keepAliveTimeoutMilliseconds) ms, readDiscoveryLogPage, "
                + "one parked Asynchronous Event Request; Keep Alive every KATO/2, spread evenly; "
                + (settings.sharedHostNQN
                    ? "all connections use one host NQN" : "each connection is its own host (host NQN)")
        )
        say(
            "- opened \(connections.count) of \(settings.connections) (\(openErrors) errors\(firstOpenError.map { ", first: \($0)" } ?? "")) "
                + "in \(fmt(openSeconds)) s (\(fmt(Double(connections.count) / openSeconds, 0))/s, \(settings.openConcurrency) at a time); "
                + "dem's open files \(fdsBefore) → \(fdsAfter)"
        )
        say()
        say("| measure | value | goal |")
        say("|---|---:|---|")
        say("| dem VmRSS before (after one session) | \(rssBefore) KiB | |")
        say(
            "| dem VmRSS with \(connections.count) connections (after \(fmt(settings.settle, 0)) s) | \(rssAfter) KiB | |"
        )
        say(
            "| **memory per connection** | **\(fmt(perConnectionKiB, 1)) KiB** | ≤ 64 KiB: \(perConnectionKiB <= 64 ? "met" : "missed") |"
        )
        say(
            "| dem VmRSS after \(changes.count == 1 ? "the change" : "the \(changes.count) changes") / peak (VmHWM) | \(rssAfterChange) KiB / \(peak) KiB | |"
        )
        say(
            "| Keep Alives answered / failed | \(registry.keepAlivesSent.load(ordering: .relaxed)) / \(registry.keepAliveFailures.load(ordering: .relaxed)) | 0 failed |"
        )
        say()
        say(
            "Each change: the entries file gains one entry any host may see, then SIGHUP; T0 is just before the file is replaced. "
                + "Every connection, on its AEN, reads the page again (as at connect) and parks a new AER."
        )
        say()
        say(
            "| change | dem notified | AEN received p50 / max | new page held p50 / p99 | **all \(connections.count) hold the new page** | CPU dem / dem-bench | machine busy / other load¹ | dem VmRSS after | goal < 1 s |"
        )
        say("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for (index, change) in changes.enumerated() {
            let all = change.heldCount == connections.count
            let total =
                all
                ? "**\(fmt(change.held.max)) ms**" : "**not all: \(change.heldCount) after \(fmt(change.waited)) s**"
            say(
                "| \(index + 1) | \(change.notifiedByDEM) | \(fmt(change.notified.p50)) / \(fmt(change.notified.max)) ms | "
                    + "\(fmt(change.held.p50)) / \(fmt(change.held.p99)) ms | \(total) | \(fmt(change.demCPU, 2)) s / \(fmt(change.benchCPU, 2)) s | \(fmt(change.machineBusy * 100, 0)) % / \(fmt(change.otherLoad * 100, 0)) % | \(change.residentKiB / 1024) MiB | "
                    + "\(all && change.held.max < 1000 ? "met" : "missed") |"
            )
            if !change.errors.isEmpty || change.unchanged > 0 || change.missing > 0 {
                say(
                    "|   | errors \(change.errors.count), unchanged pages \(change.unchanged), no answer \(change.missing) | | | | | | | |"
                )
            }
        }
        say()
        say(
            "¹ the share of the machine's CPU time used by anything but dem-bench and the server under test "
                + "(other processes, hypervisor steal), from /proc/stat; above a few % the numbers are disturbed."
        )
        say()

        dem.stop()
        try? await group.shutdownGracefully()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Opens persistent connection `index` to 127.0.0.1:`port` (3 tries): it reads the page and
    /// parks an Asynchronous Event Request.
    static func open(
        index: Int,
        port: Int,
        kato: UInt32,
        shared: Bool,
        group: any EventLoopGroup
    ) async
        -> Result<IdleConnection, any Error>
    {
        let options = benchClientOptions(host: shared ? 1_000_000 : 1_000_000 + index, keepAliveTimeout: kato)
        var lastError: any Error = BenchError("not tried")
        for _ in 0..<3 {
            do {
                let client = try await DiscoveryClient.connect(
                    host: "127.0.0.1",
                    port: port,
                    options: options,
                    group: group
                )
                do {
                    let page = try await client.readDiscoveryLogPage()
                    let event = client.connection.submitFuture(AsynchronousEvent.requestEntry(commandIdentifier: 0))
                    return .success(
                        IdleConnection(
                            client: client,
                            generation: page.generationCounter,
                            entryCount: page.entries.count,
                            event: event
                        )
                    )
                } catch {
                    await client.connection.close()
                    throw error
                }
            } catch {
                lastError = error
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
        return .failure(lastError)
    }
}
