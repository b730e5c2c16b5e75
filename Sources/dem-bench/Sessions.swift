import DEMCore
import Foundation
import NIOCore
import NIOPosix

/// What one server did under load from N clients, over one or more rounds.
struct LoadResult {
    var sessions = 0
    var errors = 0
    var firstError: String?
    var seconds = 0.0
    var latenciesMilliseconds: [Double] = []
    var serverCPUSeconds = 0.0
    var clientCPUSeconds = 0.0
    /// CPU seconds the whole machine spent outside dem-bench and the server (other processes).
    var otherCPUSeconds = 0.0
    var machineSeconds = 0.0

    var sessionsPerSecond: Double { seconds > 0 ? Double(sessions) / seconds : .nan }
    var serverCPUMicrosecondsPerSession: Double { sessions > 0 ? serverCPUSeconds * 1e6 / Double(sessions) : .nan }
    var clientCPUMicrosecondsPerSession: Double { sessions > 0 ? clientCPUSeconds * 1e6 / Double(sessions) : .nan }
    /// The share of the machine's CPU other processes used meanwhile.
    var otherLoad: Double { machineSeconds > 0 ? max(0, otherCPUSeconds / machineSeconds) : .nan }

    mutating func add(_ other: LoadResult) {
        sessions += other.sessions
        errors += other.errors
        firstError = firstError ?? other.firstError
        seconds += other.seconds
        latenciesMilliseconds += other.latenciesMilliseconds
        serverCPUSeconds += other.serverCPUSeconds
        clientCPUSeconds += other.clientCPUSeconds
        otherCPUSeconds += other.otherCPUSeconds
        machineSeconds += other.machineSeconds
    }
}

/// The server a load round runs against.
struct BenchTarget {
    var name: String
    var port: Int
    var process: ChildProcess
}

enum SessionLoad {
    /// One complete discovery session: connect (ICReq … Identify), read the log page, close.
    static func session(
        port: Int,
        options: DiscoveryClientOptions,
        group: any EventLoopGroup
    ) async throws -> DiscoveryLogPage {
        let client = try await DiscoveryClient.connect(host: "127.0.0.1", port: port, options: options, group: group)
        do {
            let page = try await client.readDiscoveryLogPage()
            await client.close()
            return page
        } catch {
            await client.connection.close()
            throw error
        }
    }

    /// `clients` tasks run sessions back to back against `target` for `seconds` (plus `warmup`
    /// seconds not counted).
    ///
    /// With `rereads`, each task connects once (before the clock starts) and then reads the log
    /// page back to back, each read counted as a session.
    static func run(
        target: BenchTarget,
        clients: Int,
        seconds: Double,
        warmup: Double,
        rereads: Bool = false,
        options: @escaping @Sendable (Int) -> DiscoveryClientOptions = { benchClientOptions(host: $0) },
        group: any EventLoopGroup
    ) async -> LoadResult {
        if warmup > 0 {
            _ = await measure(
                target: target,
                clients: clients,
                seconds: warmup,
                rereads: rereads,
                options: options,
                group: group
            )
        }
        return await measure(
            target: target,
            clients: clients,
            seconds: seconds,
            rereads: rereads,
            options: options,
            group: group
        )
    }

    private static func measure(
        target: BenchTarget,
        clients: Int,
        seconds: Double,
        rereads: Bool,
        options makeOptions: @escaping @Sendable (Int) -> DiscoveryClientOptions,
        group: any EventLoopGroup
    ) async -> LoadResult {
        // The connections of a re-read run are made before anything is measured.
        var connected: [DiscoveryClient?] = Array(repeating: nil, count: clients)
        if rereads {
            for index in 0..<clients {
                connected[index] = try? await DiscoveryClient.connect(
                    host: "127.0.0.1",
                    port: target.port,
                    options: makeOptions(index + 1),
                    group: group
                )
            }
        }
        let clientsConnected = connected
        let port = target.port
        let serverCPUBefore = ProcFS.cpuSeconds(target.process.pid)
        let clientCPUBefore = ProcFS.cpuSeconds()
        let machineBefore = ProcFS.machineCPU()
        let start = ContinuousClock.now
        let deadline = start + .seconds(seconds)
        var result = await withTaskGroup(of: LoadResult.self) { tasks in
            for index in 0..<clients {
                tasks.addTask {
                    // Each client task is one host: its own host NQN.
                    let options = makeOptions(index + 1)
                    let client = clientsConnected[index]
                    var local = LoadResult()
                    local.latenciesMilliseconds.reserveCapacity(Int(seconds * 2000 / Double(clients)) + 16)
                    if rereads, client == nil {
                        local.errors += 1
                        local.firstError = "could not connect"
                        return local
                    }
                    while ContinuousClock.now < deadline {
                        let began = ContinuousClock.now
                        do {
                            if let client {
                                _ = try await client.readDiscoveryLogPage()
                            } else {
                                _ = try await session(port: port, options: options, group: group)
                            }
                            local.latenciesMilliseconds.append(began.duration(to: .now).seconds * 1000)
                            local.sessions += 1
                        } catch {
                            local.errors += 1
                            if local.firstError == nil { local.firstError = "\(error)" }
                            try? await Task.sleep(for: .milliseconds(10))
                        }
                    }
                    return local
                }
            }
            var total = LoadResult()
            for await local in tasks { total.add(local) }
            return total
        }
        result.seconds = start.duration(to: .now).seconds
        result.serverCPUSeconds = ProcFS.cpuSeconds(target.process.pid) - serverCPUBefore
        result.clientCPUSeconds = ProcFS.cpuSeconds() - clientCPUBefore
        let machineAfter = ProcFS.machineCPU()
        for client in clientsConnected { await client?.close() }
        result.machineSeconds = machineAfter.total - machineBefore.total
        result.otherCPUSeconds =
            (machineAfter.busy - machineBefore.busy) - result.serverCPUSeconds - result.clientCPUSeconds
        return result
    }
}

/// `dem-bench sessions`.
enum SessionsBenchmark {
    struct Settings {
        var clients: [Int]
        var duration: Double
        var rounds: Int
        var warmup: Double
        var entries: Int
        var demPath: String?
        var maximumOtherLoad: Double
        var retries: Int
        /// Page re-reads on connections made once, instead of whole sessions.
        var rereads = false
    }

    static func run(_ settings: Settings) async throws {
        let openFiles = raiseOpenFileLimit()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        let launched = try await launchDEM(executable: settings.demPath, entries: settings.entries, group: group)
        let (dem, demPath, demPort, directory) = (
            launched.process, launched.executable, launched.port, launched.directory
        )
        defer { dem.stop() }

        let floorPort = try freeLoopbackPort()
        let floor = try ChildProcess(
            name: "floor",
            executable: ProcFS.selfExecutable(),
            arguments: ["floor", "--port", String(floorPort), "--upstream-port", String(demPort)],
            logPath: directory + "/floor.log"
        )
        defer { floor.stop() }
        try await waitForListener(port: floorPort, child: floor, timeout: 30, group: group)

        // Both must serve the same page, byte for byte.
        let demPage = try await SessionLoad.session(port: demPort, options: benchClientOptions(host: 1), group: group)
        let floorPage = try await SessionLoad.session(
            port: floorPort,
            options: benchClientOptions(host: 1),
            group: group
        )
        guard demPage == floorPage else { throw BenchError("the floor's page differs from dem's") }
        let floorScript = floor.logTail(1)

        // What one measured unit is: a whole session, or one re-read of the page.
        let unit = settings.rereads ? "re-read" : "session"
        say(
            settings.rereads
                ? "### Discovery log page re-reads: dem vs. the canned-bytes floor"
                : "### Discovery sessions: dem vs. the canned-bytes floor"
        )
        say()
        say("- machine: \(System.coreCount) cores (\(cpuModel())), Linux \(kernelRelease()); everything on 127.0.0.1")
        say(
            "- dem: `\(demPath)` (pid \(dem.pid)), entries file of \(settings.entries) entries "
                + "(the page: \(demPage.entries.count) entries with dem's own, \(DiscoveryLogPageHeader.size + demPage.entries.count * DiscoveryLogEntry.size) bytes)"
        )
        say(
            "- floor: `dem-bench floor` in its own process (pid \(floor.pid)), \(System.coreCount) event loops like dem; \(floorScript)"
        )
        say(
            "- load: dem-bench in a third process, \(System.coreCount) event loops; a session is DiscoveryClient.connect "
                + "(ICReq, Connect, Property Get CAP, Property Set CC.EN, Property Get CSTS, Identify), readDiscoveryLogPage "
                + "(header, entries in 4 KiB reads, header again), close (Property Set CC.SHN, TCP close); "
                + "each client task is one host NQN and runs sessions back to back"
                + (settings.rereads
                    ? "; here each client connects once, before the measurement, and then only reads the page "
                        + "(header, entries, header) back to back: what a host does after a change notice"
                    : "")
        )
        say(
            "- per client count: \(settings.rounds) rounds of dem and floor back to back (dem first in odd rounds, floor first in even ones), "
                + "\(fmt(settings.duration / Double(settings.rounds))) s each "
                + "after \(fmt(settings.warmup)) s of warm-up; a round with more than \(fmt(settings.maximumOtherLoad * 100, 0)) % other load¹ "
                + "is run again (up to \(settings.retries) times); RLIMIT_NOFILE \(openFiles)"
        )
        say()
        say(
            "| clients | server | \(unit)s/s | p50 ms | p99 ms | max ms | server CPU µs/\(unit) | client CPU µs/\(unit) | other load¹ | errors |"
        )
        say("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")

        var ratios:
            [(clients: Int, repeated: Int, pairs: [Double], throughput: Double, p50: Double, p99: Double, cpu: Double)] =
                []
        let targets = [
            BenchTarget(name: "dem", port: demPort, process: dem),
            BenchTarget(name: "floor", port: floorPort, process: floor),
        ]
        for clients in settings.clients {
            var results = [LoadResult(), LoadResult()]
            // Per round, floor sessions/s ÷ dem sessions/s of the two back-to-back runs.
            var pairs: [Double] = []
            var repeated = 0
            for round in 0..<settings.rounds {
                // dem, floor, floor, dem, …: drift in the machine's speed hits both alike.
                let order = round % 2 == 0 ? [0, 1] : [1, 0]
                var roundResults = [LoadResult(), LoadResult()]
                for attempt in 0...settings.retries {
                    for index in order {
                        let target = targets[index]
                        note("\(clients) clients, round \(round + 1)/\(settings.rounds): \(target.name)")
                        roundResults[index] = await SessionLoad.run(
                            target: target,
                            clients: clients,
                            seconds: settings.duration / Double(settings.rounds),
                            warmup: settings.warmup,
                            rereads: settings.rereads,
                            group: group
                        )
                    }
                    // A round that other processes (or the hypervisor) disturbed is run again.
                    let other = max(roundResults[0].otherLoad, roundResults[1].otherLoad)
                    guard other > settings.maximumOtherLoad, attempt < settings.retries else { break }
                    note("other load \(fmt(other * 100, 0)) % in this round: running it again")
                    repeated += 1
                }
                results[0].add(roundResults[0])
                results[1].add(roundResults[1])
                pairs.append(roundResults[1].sessionsPerSecond / roundResults[0].sessionsPerSecond)
            }
            for (index, target) in targets.enumerated() {
                let result = results[index]
                let latency = LatencySummary(result.latenciesMilliseconds)
                say(
                    "| \(clients) | \(target.name) | \(fmt(result.sessionsPerSecond, 0)) | \(fmt(latency.p50, 2)) | "
                        + "\(fmt(latency.p99, 2)) | \(fmt(latency.max, 1)) | \(fmt(result.serverCPUMicrosecondsPerSession, 0)) | "
                        + "\(fmt(result.clientCPUMicrosecondsPerSession, 0)) | \(fmt(result.otherLoad * 100, 0)) % | \(result.errors) |"
                )
                if let error = result.firstError { note("\(target.name), \(clients) clients, first error: \(error)") }
            }
            let demLatency = LatencySummary(results[0].latenciesMilliseconds)
            let floorLatency = LatencySummary(results[1].latenciesMilliseconds)
            ratios.append(
                (
                    clients,
                    repeated,
                    pairs,
                    results[1].sessionsPerSecond / results[0].sessionsPerSecond,
                    demLatency.p50 / floorLatency.p50,
                    demLatency.p99 / floorLatency.p99,
                    results[0].serverCPUMicrosecondsPerSession / results[1].serverCPUMicrosecondsPerSession
                )
            )
        }
        say()
        say(
            "¹ the share of the machine's CPU time used by anything but dem-bench and the server under test "
                + "(other processes, hypervisor steal), from /proc/stat; above a few % the numbers are disturbed."
        )
        say()
        say(
            settings.rereads
                ? "Ratio dem/floor. The goal (≤ 1.3) is on the server's CPU per re-read (what the 10,000-host fan-out "
                    + "spends); the time per re-read, floor re-reads/s ÷ dem re-reads/s, is taken per round (dem and "
                    + "floor back to back) and then the median over the rounds; the pooled ratio is next to it."
                : "Ratio dem/floor. The goal (≤ 1.3) is on the time per session, floor sessions/s ÷ dem sessions/s, "
                    + "taken per round (dem and floor back to back) and then the median over the rounds, so that a "
                    + "disturbed round does not decide it; the pooled ratio is next to it."
        )
        say()
        say(
            "| clients | time per \(unit): median of rounds (each round) | rounds run again | pooled | p50 latency | p99 latency | server CPU per \(unit) | goal ≤ 1.3 |"
        )
        say("|---:|---:|---:|---:|---:|---:|---:|---|")
        for ratio in ratios {
            let median = medianOf(ratio.pairs)
            let rounds = ratio.pairs.map { fmt($0, 2) }.joined(separator: ", ")
            say(
                "| \(ratio.clients) | **\(fmt(median, 2))** (\(rounds)) | \(ratio.repeated) | \(fmt(ratio.throughput, 2)) | \(fmt(ratio.p50, 2)) | "
                    + "\(fmt(ratio.p99, 2)) | \(fmt(ratio.cpu, 2)) | \((settings.rereads ? ratio.cpu : median) <= 1.3 ? "met" : "missed") |"
            )
        }
        say()
        dem.stop()
        floor.stop()
        try? await group.shutdownGracefully()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// The CPU model, for the report.
func cpuModel() -> String {
    guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "?" }
    for line in text.split(separator: "\n") where line.hasPrefix("model name") {
        return line.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "?"
    }
    return "?"
}

/// `uname -r`.
func kernelRelease() -> String {
    var name = utsname()
    uname(&name)
    return withUnsafeBytes(of: &name.release) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
}
