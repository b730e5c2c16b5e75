import ArgumentParser
import DEMConfig
import DEMCore
import DEMHost
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals

@main
struct DEMDM: AsyncParsableCommand {
    /// The command line completed from `DEM_DM_*` variables and /etc/dem/dem-dm.json.
    static func main() async {
        await LayeredMain.run(DEMDM.self, subcommands: [], prefix: "DEM_DM", defaultFile: "/etc/dem/dem-dm.json")
    }

    static let configuration = CommandConfiguration(
        commandName: "dem-dm",
        abstract: "Watch NVMe-oF discovery controllers and report their entries and every change.",
        discussion: """
            Prints each controller's page, then each change as it happens (an entry added, \
            removed or changed; the controller lost or back), as text or as JSON lines whose \
            entries use the field names of nvme discover -o json. With --once: print the pages \
            and exit 0 (all read), 1 (one unreachable) or 2 (one broke the protocol).
            """,
        // -h is the host NQN, as in nvme-dem: help is --help only.
        helpNames: [.long]
    )

    @OptionGroup var discovery: DiscoveryFlags

    @OptionGroup var configuration: ConfigurationOptions

    @Flag(help: "JSON lines (with --once: nvme-cli's page object per controller).")
    var json = false

    @Flag(help: "Print the pages and exit.")
    var once = false

    func run() async throws {
        var flags = discovery
        if flags.logging.logLevel == .info { flags.logging.logLevel = .warning }
        let logger = flags.bootstrapLogging(label: "dem-dm")
        let controllers = try discovery.controllers()
        let identity = try discovery.identity()
        if once {
            guard !controllers.isEmpty else {
                throw ValidationError(
                    "no discovery controller: give -a ADDRESS, or list controllers in \(discovery.discoveryConfiguration) (--once does not browse mDNS)"
                )
            }
            throw ExitCode(await Self.printOnce(controllers, identity: identity, json: json))
        }
        let fleet = DiscoveryFleet(
            controllers: controllers,
            identity: identity,
            keepAliveMilliseconds: UInt32(discovery.keepAlive * 1000),
            configuration: discovery.watchConfiguration,
            logger: logger
        )
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [.init(service: MonitorService(fleet: fleet, json: json))]
                    + (discovery.browsesMDNS(controllers)
                        ? [.init(service: MDNSFollowService(fleet: fleet, browser: MDNSBrowser(logger: logger)))] : []),
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
    }

    /// Reads each controller's page once. - Returns: the exit status.
    static func printOnce(
        _ controllers: [DiscoveryControllerAddress],
        identity: HostIdentity,
        json: Bool
    ) async -> Int32 {
        var status: Int32 = 0
        for controller in controllers {
            var options = controller.clientOptions(for: identity)
            options.connectTimeout = .seconds(5)
            let client: DiscoveryClient
            do {
                client = try await DiscoveryClient.connect(
                    host: controller.transportAddress,
                    port: controller.port ?? DEMCore.discoveryPort,
                    options: options
                )
            } catch {
                writeError("dem-dm: \(controller): unreachable: \(error)\n")
                status = max(status, 1)
                continue
            }
            do {
                let page = try await client.readDiscoveryLogPage()
                if json {
                    writeOut(DiscoveryRecordJSON.page(page, pretty: true) + "\n")
                } else {
                    let lines = DiscoveryChangeReporter.textLines(.page(page), controller: controller, at: Date())
                    writeOut(lines.joined(separator: "\n") + "\n")
                }
            } catch {
                writeError("dem-dm: \(controller): protocol error: \(error)\n")
                status = 2
            }
            await client.close()
        }
        return status
    }
}

/// Prints the reports of every watched controller until SIGTERM or SIGINT.
struct MonitorService: Service, CustomStringConvertible {
    let fleet: DiscoveryFleet
    let json: Bool
    var description: String { "Monitor" }

    func run() async throws {
        await withGracefulShutdownHandler {
            fleet.start()
            var pages: [DiscoveryControllerKey: [DiscoveryLogEntry]] = [:]
            for await report in fleet.reports {
                let controller = report.controller
                var events: [DiscoveryEvent] = []
                switch report.report {
                case .connected:
                    break
                case .lost(let reason):
                    events = [.lost(reason: reason)]
                case .back:
                    events = [.back]
                case .page(let entries, let generation):
                    if let previous = pages[controller.key] {
                        events = DiscoveryChangeReporter.changes(from: previous, to: entries).map(DiscoveryEvent.init)
                    } else {
                        events = [.page(DiscoveryLogPage(generationCounter: generation, entries: entries))]
                    }
                    pages[controller.key] = entries
                }
                let now = Date()
                for event in events {
                    if json {
                        writeOut(DiscoveryChangeReporter.jsonLine(event, controller: controller, at: now) + "\n")
                    } else {
                        let lines = DiscoveryChangeReporter.textLines(event, controller: controller, at: now)
                        writeOut(lines.joined(separator: "\n") + "\n")
                    }
                }
            }
        } onGracefulShutdown: {
            Task { await fleet.stop() }
        }
    }
}

func writeOut(_ text: String) {
    FileHandle.standardOutput.write(Data(text.utf8))
}

func writeError(_ text: String) {
    FileHandle.standardError.write(Data(text.utf8))
}
