import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// SQLite commits without GRDB or the store: one row inserted or deleted per transaction, in WAL
/// mode, with `synchronous` FULL or NORMAL, side by side, to show what syncing every commit
/// costs on this machine. Uses the libsqlite3 dem-bench is already linked with (through GRDB),
/// found with dlsym.
enum SQLiteProbe {
    private typealias Open = @convention(c) (UnsafePointer<CChar>, UnsafeMutablePointer<OpaquePointer?>) -> Int32
    private typealias Exec =
        @convention(c) (
            OpaquePointer?, UnsafePointer<CChar>, OpaquePointer?, UnsafeMutableRawPointer?,
            UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
        ) -> Int32
    private typealias Close = @convention(c) (OpaquePointer?) -> Int32

    /// Commits per second and their latency summary (ms) for each `synchronous` mode, measured
    /// in `rounds` alternating slices of `seconds / (2 × rounds)` each.
    static func measure(
        directory: String,
        seconds: Double,
        rounds: Int = 4
    ) throws -> [(mode: String, perSecond: Double, latency: LatencySummary)] {
        let handle = dlopen(nil, RTLD_NOW)
        guard let openSymbol = dlsym(handle, "sqlite3_open"), let execSymbol = dlsym(handle, "sqlite3_exec"),
            let closeSymbol = dlsym(handle, "sqlite3_close")
        else { throw BenchError("libsqlite3 is not loaded") }
        let open = unsafeBitCast(openSymbol, to: Open.self)
        let exec = unsafeBitCast(execSymbol, to: Exec.self)
        let close = unsafeBitCast(closeSymbol, to: Close.self)

        var results: [(mode: String, perSecond: Double, latency: LatencySummary)] = []
        var samples: [String: (count: Int, seconds: Double, latencies: [Double])] = [:]
        let modes = ["FULL", "NORMAL"]
        var databases: [String: OpaquePointer] = [:]
        for mode in modes {
            var database: OpaquePointer?
            let path = directory + "/sqlite-probe-\(mode.lowercased()).sqlite"
            guard open(path, &database) == 0, let database else { throw BenchError("cannot open \(path)") }
            let setup =
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = \(mode); "
                + "CREATE TABLE host (alias TEXT PRIMARY KEY NOT NULL, body TEXT NOT NULL);"
            guard exec(database, setup, nil, nil, nil) == 0 else { throw BenchError("SQLite setup failed") }
            databases[mode] = database
        }
        defer { for database in databases.values { _ = close(database) } }
        let body = String(repeating: "x", count: 200)
        for round in 0..<rounds {
            for mode in round % 2 == 0 ? modes : modes.reversed() {
                let database = databases[mode]!
                var latencies: [Double] = []
                var index = 0
                let start = ContinuousClock.now
                let deadline = start + .seconds(seconds / Double(2 * rounds))
                while ContinuousClock.now < deadline {
                    let sql =
                        index % 2 == 0
                        ? "INSERT INTO host (alias, body) VALUES ('probe-host', '\(body)')"
                        : "DELETE FROM host WHERE alias = 'probe-host'"
                    index += 1
                    let began = ContinuousClock.now
                    guard exec(database, sql, nil, nil, nil) == 0 else { throw BenchError("SQLite commit failed") }
                    latencies.append(began.duration(to: .now).seconds * 1000)
                }
                if index % 2 == 1 { _ = exec(database, "DELETE FROM host", nil, nil, nil) }
                var sample = samples[mode] ?? (0, 0, [])
                sample.count += latencies.count
                sample.seconds += start.duration(to: .now).seconds
                sample.latencies += latencies
                samples[mode] = sample
            }
        }
        for mode in modes {
            let sample = samples[mode]!
            results.append((mode, Double(sample.count) / sample.seconds, LatencySummary(sample.latencies)))
        }
        return results
    }
}
