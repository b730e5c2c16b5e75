import DEMCore
import Dispatch
import Foundation
import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A benchmark step that failed, with what went wrong.
struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

// MARK: - Child processes

/// The pids of the processes dem-bench started, so a signal or the watchdog can stop them.
let startedChildren = Mutex<Set<pid_t>>([])

/// Stops every child still running (SIGTERM, then SIGKILL after a grace period).
func stopAllChildren() {
    let pids = startedChildren.withLock { $0 }
    for pid in pids { kill(pid, SIGTERM) }
    for _ in 0..<50 {
        if pids.allSatisfy({ kill($0, 0) != 0 }) { return }
        usleep(100_000)
    }
    for pid in pids { kill(pid, SIGKILL) }
}

nonisolated(unsafe) private var signalSources: [any DispatchSourceSignal] = []

/// Makes SIGINT and SIGTERM stop the children before dem-bench exits.
func installSignalCleanup() {
    for sig in [SIGINT, SIGTERM] {
        signal(sig, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
        source.setEventHandler {
            FileHandle.standardError.write(Data("dem-bench: signal \(sig), stopping\n".utf8))
            stopAllChildren()
            exit(128 + sig)
        }
        source.resume()
        signalSources.append(source)
    }
}

/// A hard bound on the whole run: after `seconds`, the children are stopped and dem-bench exits.
func startWatchdog(seconds: Double, what: String) {
    DispatchQueue.global().asyncAfter(deadline: .now() + seconds) {
        FileHandle.standardError.write(
            Data("dem-bench: \(what) did not finish within \(Int(seconds)) s; giving up\n".utf8)
        )
        stopAllChildren()
        exit(3)
    }
}

/// A process dem-bench started (dem, or the floor server), with its output going to a log file.
final class ChildProcess: @unchecked Sendable {
    let name: String
    let logPath: String
    private let process: Process

    init(name: String, executable: String, arguments: [String], logPath: String) throws {
        self.name = name
        self.logPath = logPath
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        guard let log = FileHandle(forWritingAtPath: logPath) else { throw BenchError("cannot write \(logPath)") }
        process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        startedChildren.withLock { _ = $0.insert(process.processIdentifier) }
    }

    var pid: pid_t { process.processIdentifier }
    var isRunning: Bool { process.isRunning }

    func signal(_ sig: Int32) { kill(process.processIdentifier, sig) }

    /// SIGTERM, then SIGKILL if it has not exited within `grace` seconds.
    func stop(grace: Double = 5) {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(grace)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        _ = startedChildren.withLock { $0.remove(process.processIdentifier) }
    }

    /// The last `lines` lines of the log, for error messages.
    func logTail(_ lines: Int = 20) -> String {
        guard let data = FileManager.default.contents(atPath: logPath) else { return "" }
        return String(decoding: data, as: UTF8.self).split(separator: "\n").suffix(lines).joined(separator: "\n")
    }
}

// MARK: - /proc

enum ProcFS {
    /// VmRSS of `pid` in KiB.
    static func residentKiB(_ pid: pid_t) -> Int? { statusField(pid, "VmRSS:") }
    /// VmHWM (peak RSS) of `pid` in KiB.
    static func peakResidentKiB(_ pid: pid_t) -> Int? { statusField(pid, "VmHWM:") }

    private static func statusField(_ pid: pid_t, _ field: String) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(field) {
            return Int(
                line.dropFirst(field.count).trimmingCharacters(in: .whitespaces).split(separator: " ").first ?? ""
            )
        }
        return nil
    }

    /// User plus system CPU time of `pid` (0: this process), in seconds.
    static func cpuSeconds(_ pid: pid_t = 0) -> Double {
        let path = pid == 0 ? "/proc/self/stat" : "/proc/\(pid)/stat"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return 0 }
        // Fields after "comm)": state is field 3; utime and stime are fields 14 and 15.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// The whole machine's busy and total CPU time since boot, in seconds (from /proc/stat).
    static func machineCPU() -> (busy: Double, total: Double) {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") })
        else { return (0, 0) }
        let values = line.split(separator: " ").dropFirst().compactMap { Double($0) }
        guard values.count >= 5 else { return (0, 0) }
        // user nice system idle iowait irq softirq steal (guest time is already in user).
        let total = values.prefix(8).reduce(0, +)
        let idle = values[3] + values[4]
        let tick = Double(sysconf(Int32(_SC_CLK_TCK)))
        return ((total - idle) / tick, total / tick)
    }

    /// How many file descriptors `pid` has open.
    static func openFileCount(_ pid: pid_t) -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
    }

    /// The soft RLIMIT_NOFILE of `pid`, as /proc shows it.
    static func openFileLimit(_ pid: pid_t) -> String {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8) else { return "?" }
        for line in text.split(separator: "\n") where line.hasPrefix("Max open files") {
            return line.split(separator: " ", omittingEmptySubsequences: true).dropFirst(3).first.map(String.init)
                ?? "?"
        }
        return "?"
    }

    /// This executable's path.
    static func selfExecutable() -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (children started later inherit it).
/// - Returns: the new soft limit.
@discardableResult
func raiseOpenFileLimit() -> Int {
    var limit = rlimit()
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    limit.rlim_cur = limit.rlim_max
    setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    return Int(limit.rlim_cur)
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw BenchError("socket() failed") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else { throw BenchError("bind() failed") }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let named = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    guard named == 0 else { throw BenchError("getsockname() failed") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
func waitForListener(port: Int, child: ChildProcess, timeout: Double, group: any EventLoopGroup) async throws {
    let deadline = ContinuousClock.now + .seconds(timeout)
    while ContinuousClock.now < deadline {
        guard child.isRunning else {
            throw BenchError("\(child.name) exited before it listened:\n\(child.logTail())")
        }
        if let channel = try? await ClientBootstrap(group: group).connectTimeout(.milliseconds(200))
            .connect(host: "127.0.0.1", port: port).get()
        {
            try? await channel.close()
            return
        }
        try await Task.sleep(for: .milliseconds(50))
    }
    throw BenchError("\(child.name) did not listen on port \(port) within \(Int(timeout)) s:\n\(child.logTail())")
}

/// The dem executable: `explicit`, else `dem` next to this executable.
func demExecutable(_ explicit: String?) throws -> String {
    let path =
        explicit
        ?? URL(fileURLWithPath: ProcFS.selfExecutable()).deletingLastPathComponent()
        .appendingPathComponent("dem").path
    guard FileManager.default.isExecutableFile(atPath: path) else {
        throw BenchError("no dem executable at \(path) (build it: swift build -c release --product dem, or pass --dem)")
    }
    return path
}

/// A fresh directory under the system temporary directory.
func makeTemporaryDirectory() throws -> String {
    var template = Array((NSTemporaryDirectory() + "/dem-bench.XXXXXX").utf8CString)
    guard let made = mkdtemp(&template) else { throw BenchError("mkdtemp failed") }
    return String(cString: made)
}

// MARK: - Entries

enum BenchEntries {
    /// An entries file of `count` NVMe/TCP subsystems any host may see.
    static func json(count: Int) -> String {
        let entries = (0..<count).map { i in
            """
                {"subnqn": "nqn.2024-01.io.dem.bench:subsystem-\(i)", "trtype": "tcp", "adrfam": "ipv4", \
            "traddr": "10.0.\(i / 250).\(i % 250 + 1)", "trsvcid": "4420", "portid": \(i % 8 + 1), "subtype": "nvme subsystem"}
            """
        }
        return "{\"entries\": [\n" + entries.joined(separator: ",\n") + "\n]}\n"
    }

    /// Writes `count` entries to `path` by writing a temporary file and renaming it over `path`.
    static func write(count: Int, to path: String) throws {
        let temporary = path + ".tmp"
        try json(count: count).write(toFile: temporary, atomically: false, encoding: .utf8)
        guard rename(temporary, path) == 0 else { throw BenchError("rename to \(path) failed") }
    }
}

// MARK: - dem

/// Starts dem on 127.0.0.1:`port` with the entries file, logging to `directory/dem.log`, with
/// connection limits for one source that simulates thousands of hosts.
func startDEM(executable: String, port: Int, entriesPath: String, directory: String) throws -> ChildProcess {
    try ChildProcess(
        name: "dem",
        executable: executable,
        arguments: [
            "--address", "127.0.0.1", "--port", String(port), "--entries", entriesPath,
            "--data-dir", directory + "/data", "--api-port", "0", "--log-level", "info",
            // Every simulated host and REST client comes from 127.0.0.1: lift the per-source
            // limits meant for real hosts (and the totals, within the descriptor limit).
            "--max-connections", "16384", "--max-connections-per-source", "16384",
            "--api-max-connections", "1024", "--api-max-connections-per-source", "1024",
        ],
        logPath: directory + "/dem.log"
    )
}

/// dem as a benchmark runs it: its own process on a free loopback port, serving an entries file
/// of `entries` entries from a fresh temporary directory, already listening.
struct LaunchedDEM {
    var process: ChildProcess
    var executable: String
    var port: Int
    var directory: String
    var entriesPath: String
}

/// Starts dem (see ``LaunchedDEM``) and waits until it listens; stops it if it never does.
func launchDEM(executable explicit: String?, entries: Int, group: any EventLoopGroup) async throws -> LaunchedDEM {
    let executable = try demExecutable(explicit)
    let directory = try makeTemporaryDirectory()
    let entriesPath = directory + "/entries.json"
    try BenchEntries.write(count: entries, to: entriesPath)
    let port = try freeLoopbackPort()
    let process = try startDEM(executable: executable, port: port, entriesPath: entriesPath, directory: directory)
    do {
        try await waitForListener(port: port, child: process, timeout: 30, group: group)
    } catch {
        process.stop()
        throw error
    }
    return LaunchedDEM(
        process: process,
        executable: executable,
        port: port,
        directory: directory,
        entriesPath: entriesPath
    )
}

/// A host NQN in the UUID form, distinct per `index`.
func benchHostNQN(_ index: Int) -> String {
    let hex = String(index, radix: 16)
    let padded = String(repeating: "0", count: max(0, 12 - hex.count)) + hex
    return "nqn.2014-08.org.nvmexpress:uuid:0000be9c-0000-4000-8000-\(padded)"
}

/// Client options for host `index`.
func benchClientOptions(host index: Int, keepAliveTimeout: UInt32 = 0) -> DiscoveryClientOptions {
    var identifier = [UInt8](repeating: 0, count: 16)
    var value = UInt64(index)
    for byte in 0..<8 {
        identifier[15 - byte] = UInt8(truncatingIfNeeded: value)
        value >>= 8
    }
    identifier[0] = 0xBE
    var options = DiscoveryClientOptions(hostNQN: benchHostNQN(index), hostIdentifier: identifier)
    options.keepAliveTimeout = keepAliveTimeout
    return options
}

// MARK: - Statistics

struct LatencySummary {
    var count: Int
    var p50: Double
    var p99: Double
    var max: Double
    var mean: Double

    /// Nearest-rank percentiles of `values` (any unit; the summary keeps it).
    init(_ values: [Double]) {
        let sorted = values.sorted()
        count = sorted.count
        func percentile(_ p: Double) -> Double {
            guard !sorted.isEmpty else { return .nan }
            let rank = Int((p / 100 * Double(sorted.count)).rounded(.up))
            return sorted[min(sorted.count - 1, Swift.max(0, rank - 1))]
        }
        p50 = percentile(50)
        p99 = percentile(99)
        max = sorted.last ?? .nan
        mean = sorted.isEmpty ? .nan : sorted.reduce(0, +) / Double(sorted.count)
    }
}

/// The median (the mean of the middle two for an even count).
func medianOf(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return .nan }
    let middle = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

extension Duration {
    var seconds: Double {
        let parts = components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }
}

/// `value` with `digits` decimals.
func fmt(_ value: Double, _ digits: Int = 1) -> String {
    guard value.isFinite else { return "n/a" }
    return String(format: "%.\(digits)f", value)
}

/// Prints a line to standard output right away.
func say(_ line: String = "") {
    print(line)
    fflush(nil)
}

/// Prints a progress line to standard error.
func note(_ line: String) {
    FileHandle.standardError.write(Data(("  … " + line + "\n").utf8))
}

/// Prints the parts as one line to standard output right away.
func sayJoined(_ parts: String...) {
    say(parts.joined())
}
