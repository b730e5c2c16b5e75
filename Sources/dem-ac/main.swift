import ArgumentParser
import DEMConfig
import DEMCore
import DEMHost
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals

@main
struct DEMAC: AsyncParsableCommand {
    /// The command line completed from `DEM_AC_*` variables and /etc/dem/dem-ac.json.
    static func main() async {
        await LayeredMain.run(DEMAC.self, subcommands: [], prefix: "DEM_AC", defaultFile: "/etc/dem/dem-ac.json")
    }

    static let configuration = CommandConfiguration(
        commandName: "dem-ac",
        abstract: "Keep this host connected to every NVMe-oF subsystem its discovery controllers list.",
        discussion: """
            Holds a persistent connection to each discovery controller (-a, and the lines of \
            /etc/nvme/discovery.conf), reads its page again on each change notification, and \
            connects a kernel controller (/dev/nvme-fabrics) for every NVM subsystem entry. \
            Controllers made by others are left alone.
            """,
        // -h is the host NQN, as in nvme-dem: help is --help only.
        helpNames: [.long]
    )

    @OptionGroup var discovery: DiscoveryFlags

    @OptionGroup var configuration: ConfigurationOptions

    @Option(
        name: .customLong("disconnect"),
        help: "When an entry goes away: never, or removed (disconnect dem-ac's controller)."
    )
    var disconnect: String = DisconnectPolicy.never.rawValue

    @Option(
        name: .customLong("removal-grace"),
        parsing: .unconditional,
        help: "With --disconnect removed: seconds an entry must stay gone before its controller is disconnected."
    )
    var removalGrace: Double = 10

    @Option(
        name: .customLong("ctrl-loss-tmo"),
        parsing: .unconditional,
        help: "ctrl_loss_tmo of the I/O controllers (-1: reconnect for ever)."
    )
    var controllerLossTimeout: Int = -1

    @Option(
        name: .customLong("keep-alive-tmo"),
        parsing: .unconditional,
        help: "keep_alive_tmo of the I/O controllers."
    )
    var keepAliveTimeout: Int?

    @Option(name: .customLong("nr-io-queues"), parsing: .unconditional, help: "nr_io_queues of the I/O controllers.")
    var ioQueues: Int?

    @Option(name: [.customShort("w"), .customLong("host-traddr")], help: "host_traddr of the I/O controllers.")
    var hostTraddr: String?

    @Option(
        name: .customLong("host-iface"),
        help: "host_iface of the I/O controllers (no -f: in nvme-dem -f is the address family)."
    )
    var hostIface: String?

    @Option(name: .customLong("state-dir"), help: "Where dem-ac records the controllers it created.")
    var stateDirectory: String?

    @Option(name: .customLong("sysfs-root"), help: "Where sysfs is mounted.")
    var sysfsRoot: String = "/sys"

    @Option(name: .customLong("fabrics-device"), help: "The kernel's NVMe-oF connect device.")
    var fabricsDevice: String = "/dev/nvme-fabrics"

    func validate() throws {
        guard DisconnectPolicy(rawValue: disconnect) != nil else {
            throw ValidationError("--disconnect must be never or removed, not \"\(disconnect)\"")
        }
        guard removalGrace >= 0, removalGrace <= 86400 else {
            throw ValidationError("--removal-grace must be 0...86400 seconds")
        }
        guard controllerLossTimeout >= -1 else { throw ValidationError("--ctrl-loss-tmo must be -1 or more") }
        if let ioQueues, ioQueues < 1 { throw ValidationError("--nr-io-queues must be 1 or more") }
        if let keepAliveTimeout, keepAliveTimeout < 0 { throw ValidationError("--keep-alive-tmo must be 0 or more") }
    }

    func run() async throws {
        let logger = discovery.bootstrapLogging(label: "dem-ac")
        let controllers = try discovery.controllers()
        let identity = try discovery.identity()
        let directory = StateDirectory.resolve(stateDirectory, name: "dem-ac")
        try FileManager.default.createDirectory(
            atPath: directory,
            withIntermediateDirectories: true,
            attributes: [.posixPermissions: 0o700]
        )
        let fleet = DiscoveryFleet(
            controllers: controllers,
            identity: identity,
            keepAliveMilliseconds: UInt32(discovery.keepAlive * 1000),
            configuration: discovery.watchConfiguration,
            logger: logger
        )
        let host = HostConnectParameters(
            identity: identity,
            hostTraddr: hostTraddr,
            hostIface: hostIface,
            ctrlLossTimeout: controllerLossTimeout,
            keepAliveTimeout: keepAliveTimeout,
            nrIOQueues: ioQueues
        )
        let autoConnect = AutoConnect(
            fleet: fleet,
            connector: FabricsConnector(device: FabricsCharacterDevice(path: fabricsDevice), sysfsRoot: sysfsRoot),
            controllers: FabricsControllers(sysfsRoot: sysfsRoot),
            ledgerFile: ConnectionLedgerFile(stateDirectory: directory),
            host: host,
            policy: DisconnectPolicy(rawValue: disconnect) ?? .never,
            removalGrace: .milliseconds(Int(removalGrace * 1000)),
            logger: logger
        )
        logger.notice(
            "dem-ac started",
            metadata: [
                "controllers": "\(controllers.map(\.description).joined(separator: " "))",
                "mdns": "\(discovery.browsesMDNS(controllers))",
                "hostnqn": "\(identity.hostNQN.value)", "disconnect": "\(disconnect)",
            ]
        )
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [.init(service: AutoConnectService(autoConnect: autoConnect, fleet: fleet))]
                    + (discovery.browsesMDNS(controllers)
                        ? [.init(service: MDNSFollowService(fleet: fleet, browser: MDNSBrowser(logger: logger)))] : []),
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
        logger.notice("dem-ac stopped; the kernel's controllers stay connected")
    }
}

/// Runs ``AutoConnect`` until SIGTERM or SIGINT.
struct AutoConnectService: Service, CustomStringConvertible {
    let autoConnect: AutoConnect
    let fleet: DiscoveryFleet
    var description: String { "AutoConnect" }

    func run() async throws {
        await withGracefulShutdownHandler {
            await autoConnect.run()
        } onGracefulShutdown: {
            Task { await fleet.stop() }
        }
    }
}
