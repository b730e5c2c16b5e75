import ArgumentParser
import DEMCore
import Foundation
import Logging
import NIOCore
import NIOPosix

@main
struct DEMBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dem-bench",
        abstract:
            "Load generator for dem: discovery sessions against dem and a canned-bytes floor, and idle persistent connections.",
        discussion: """
            Everything runs on 127.0.0.1. `sessions` and `idle` start dem themselves (a release build \
            next to dem-bench, or --dem) and stop it at the end; scripts/bench runs both.
            """,
        subcommands: [Sessions.self, Idle.self, Floor.self]
    )
}

struct Sessions: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Complete discovery sessions from N concurrent clients, against dem and against the floor."
    )

    @Option(parsing: .upToNextOption, help: "Concurrent clients; several values run one after the other.")
    var clients: [Int] = [1, 16, 64]

    @Option(help: "Measured seconds per server and client count (split over the rounds).")
    var duration: Double = 10

    @Option(help: "Rounds of dem and floor back to back per client count.")
    var rounds: Int = 10

    @Option(
        name: .customLong("max-other-load"),
        help: "Run a round again when other processes used more than this share of the CPU (0...1)."
    )
    var maximumOtherLoad: Double = 0.25

    @Option(help: "How many times a disturbed round may be run again.")
    var retries: Int = 2

    @Option(help: "Unmeasured seconds before each round.")
    var warmup: Double = 0.5

    @Option(help: "Entries in the entries file dem serves.")
    var entries: Int = 8

    @Option(help: "The dem executable (default: dem next to dem-bench).")
    var dem: String?

    @Option(help: "Give up after this many seconds in all.")
    var timeout: Double = 1800

    func validate() throws {
        guard !clients.isEmpty, clients.allSatisfy({ $0 >= 1 }) else { throw ValidationError("--clients must be ≥ 1") }
        guard duration > 0, rounds >= 1, warmup >= 0, entries >= 0 else {
            throw ValidationError("bad --duration/--rounds/--warmup/--entries")
        }
    }

    func run() async throws {
        installSignalCleanup()
        startWatchdog(seconds: timeout, what: "dem-bench sessions")
        do {
            try await SessionsBenchmark.run(
                .init(
                    clients: clients,
                    duration: duration,
                    rounds: rounds,
                    warmup: warmup,
                    entries: entries,
                    demPath: dem,
                    maximumOtherLoad: maximumOtherLoad,
                    retries: retries
                )
            )
        } catch {
            stopAllChildren()
            throw error
        }
    }
}

struct Idle: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Many idle persistent connections with KATO: dem's memory per connection, and how fast a change reaches all."
    )

    @Option(help: "Persistent connections to open.")
    var connections: Int = 10_000

    @Option(name: .customLong("kato-ms"), help: "Keep Alive Timeout each connection asks for, in milliseconds.")
    var katoMilliseconds: UInt32 = 30_000

    @Option(help: "Entries in the entries file dem serves (the change adds one).")
    var entries: Int = 8

    @Option(name: .customLong("open-concurrency"), help: "Connections being opened at once.")
    var openConcurrency: Int = 200

    @Flag(
        name: .customLong("shared-host-nqn"),
        help: "All connections use one host NQN (default: one host NQN per connection)."
    )
    var sharedHostNQN = false

    @Option(help: "Seconds to wait after opening before reading dem's memory.")
    var settle: Double = 3

    @Option(name: .customLong("change-timeout"), help: "Seconds to wait for every connection to hold the new page.")
    var changeTimeout: Double = 60

    @Option(help: "How many entries changes to time, one after the other.")
    var changes: Int = 3

    @Option(help: "The dem executable (default: dem next to dem-bench).")
    var dem: String?

    @Option(help: "Give up after this many seconds in all.")
    var timeout: Double = 900

    func validate() throws {
        guard connections >= 1, openConcurrency >= 1 else {
            throw ValidationError("--connections and --open-concurrency must be ≥ 1")
        }
        guard changes >= 1 else { throw ValidationError("--changes must be ≥ 1") }
        guard katoMilliseconds >= 1000 else { throw ValidationError("--kato-ms must be at least 1000") }
    }

    func run() async throws {
        installSignalCleanup()
        startWatchdog(seconds: timeout, what: "dem-bench idle")
        do {
            try await IdleBenchmark.run(
                .init(
                    connections: connections,
                    keepAliveTimeoutMilliseconds: katoMilliseconds,
                    entries: entries,
                    openConcurrency: openConcurrency,
                    sharedHostNQN: sharedHostNQN,
                    settle: settle,
                    changeTimeout: changeTimeout,
                    changes: changes,
                    demPath: dem
                )
            )
        } catch {
            stopAllChildren()
            throw error
        }
    }
}

struct Floor: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The floor server: records one session from dem, then answers each PDU with dem's bytes.",
        discussion: """
            Runs one discovery session against dem at --upstream-host:--upstream-port through a \
            recording proxy, then listens on 127.0.0.1:--port and answers every host PDU with the \
            bytes dem sent for it (the CID patched in). Runs until killed.
            """
    )

    @Option(help: "Port to listen on.")
    var port: Int

    @Option(name: .customLong("upstream-port"), help: "dem's port, to record the answers from.")
    var upstreamPort: Int

    @Option(name: .customLong("upstream-host"), help: "dem's address.")
    var upstreamHost: String = "127.0.0.1"

    @Option(help: "Event loop threads (default: one per core, as dem).")
    var threads: Int = System.coreCount

    func run() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        let session = try await FloorCapture.capture(host: upstreamHost, port: upstreamPort, group: group)
        for step in session.script {
            FileHandle.standardError.write(
                Data(
                    "  \(step.request): \(step.requestBytes) bytes → \(step.answerPDUs) PDUs, \(step.answerBytes) bytes\n"
                        .utf8
                )
            )
        }
        FileHandle.standardError.write(Data("canned: \(session.summary)\n".utf8))
        let server = try await FloorServer.bind(host: "127.0.0.1", port: port, session: session, group: group)
        try await server.closeFuture.get()
    }
}
