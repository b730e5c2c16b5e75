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
            "Load generator for dem: discovery sessions against dem and a canned-bytes floor, idle persistent connections, the REST API, and the model at scale.",
        discussion: """
            Everything runs on 127.0.0.1. `sessions`, `idle` and `management` start dem themselves (a \
            release build next to dem-bench, or --dem) and stop it at the end; `scale` runs dem's model, \
            store and catalog in this process. scripts/bench runs them all.
            """,
        subcommands: [
            Sessions.self, Idle.self, Management.self, Scale.self, Replicas.self, Authentication.self, Floor.self,
        ]
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

    @Flag(
        help:
            "Each client connects once and then reads the log page again and again (header, entries, header), as a host does after a change notice, instead of running whole sessions."
    )
    var rereads = false

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
                    retries: retries,
                    rereads: rereads
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

struct Management: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "dem's REST API: reads and durable mutations per second against GET /health, and the cost of a commit."
    )

    @Option(parsing: .upToNextOption, help: "Concurrent requests; several values run one after the other.")
    var concurrency: [Int] = [1, 4, 16, 64]

    @Option(help: "Measured seconds per request kind and concurrency (split over the rounds).")
    var duration: Double = 3

    @Option(help: "Rounds of the request kinds back to back per concurrency.")
    var rounds: Int = 3

    @Option(help: "Unmeasured seconds before each measurement.")
    var warmup: Double = 0.25

    @Option(help: "Targets in the model (one port and --subsystems subsystems each).")
    var targets: Int = 10

    @Option(help: "Subsystems per target.")
    var subsystems: Int = 10

    @Option(help: "Hosts in the model.")
    var hosts: Int = 100

    @Option(
        name: .customLong("store-seconds"),
        help: "Seconds for each in-process measure of commits (fsync, the store, FabricService)."
    )
    var storeSeconds: Double = 2

    @Option(help: "The dem executable (default: dem next to dem-bench).")
    var dem: String?

    @Option(help: "Give up after this many seconds in all.")
    var timeout: Double = 900

    func validate() throws {
        guard !concurrency.isEmpty, concurrency.allSatisfy({ $0 >= 1 }) else {
            throw ValidationError("--concurrency must be ≥ 1")
        }
        guard duration > 0, rounds >= 1, warmup >= 0, storeSeconds > 0 else {
            throw ValidationError("bad --duration/--rounds/--warmup/--store-seconds")
        }
        guard targets >= 1, subsystems >= 0, hosts >= 0 else {
            throw ValidationError("bad --targets/--subsystems/--hosts")
        }
    }

    func run() async throws {
        installSignalCleanup()
        startWatchdog(seconds: timeout, what: "dem-bench management")
        do {
            try await ManagementBenchmark.run(
                .init(
                    concurrencies: concurrency,
                    duration: duration,
                    rounds: rounds,
                    warmup: warmup,
                    targets: targets,
                    subsystemsPerTarget: subsystems,
                    hosts: hosts,
                    storeSeconds: storeSeconds,
                    demPath: dem
                )
            )
        } catch {
            stopAllChildren()
            throw error
        }
    }
}

struct Scale: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "The model and the discovery catalog with many hosts and subsystems, in process: one host's page, and all views after one change."
    )

    @Option(help: "Hosts in the model (each with a HOSTNQN).")
    var hosts: Int = 10_000

    @Option(help: "Subsystems in the model.")
    var subsystems: Int = 10_000

    @Option(help: "Targets they are spread over (one TCP port each).")
    var targets: Int = 100

    @Option(
        name: .customLong("restricted-every"),
        help: "Every Nth subsystem has an access list of 1–3 hosts instead of AllowAnyHost."
    )
    var restrictedEvery: Int = 10

    @Option(name: .customLong("group-targets"), help: "Targets in the group rack-a (0: no group).")
    var groupTargets: Int = 2

    @Option(name: .customLong("group-hosts"), help: "Hosts in the group rack-a.")
    var groupHosts: Int = 200

    @Option(help: "How many times each change is measured.")
    var repeats: Int = 3

    @Option(help: "Hosts per kind for the page times.")
    var samples: Int = 20

    @Option(
        name: .customLong("serve-private"),
        help: "Hosts with their own page served after the changes (each page is encoded and held)."
    )
    var servePrivate: Int = 20

    @Option(help: "Give up after this many seconds in all.")
    var timeout: Double = 900

    func validate() throws {
        guard hosts >= 100, subsystems >= 1, targets >= 1, targets <= subsystems else {
            throw ValidationError("need --hosts ≥ 100 and 1 ≤ --targets ≤ --subsystems")
        }
        guard restrictedEvery >= 1, groupTargets >= 0, groupTargets < targets, groupHosts >= 0, groupHosts <= hosts
        else {
            throw ValidationError("bad --restricted-every/--group-targets/--group-hosts")
        }
        guard repeats >= 1, samples >= 1, servePrivate >= 0 else {
            throw ValidationError("bad --repeats/--samples/--serve-private")
        }
    }

    func run() async throws {
        startWatchdog(seconds: timeout, what: "dem-bench scale")
        try await ScaleBenchmark.run(
            .init(
                hosts: hosts,
                subsystems: subsystems,
                targets: targets,
                restrictedEvery: restrictedEvery,
                groupTargets: groupTargets,
                groupHosts: groupHosts,
                repeats: repeats,
                samples: samples,
                servePrivate: servePrivate
            )
        )
    }
}
