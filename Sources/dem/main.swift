import ArgumentParser
import DEMCore
import DEMServer
import Foundation
import Logging
import NIOCore

/// The options `dem serve` and `dem logpage` share.
struct DiscoveryFlags: ParsableArguments {
    @Option(name: .customLong("address"), help: "Address to listen on (repeatable). Default: 127.0.0.1.")
    var addresses: [String] = []

    @Option(help: "Discovery port (NVMe/TCP, and NVMe/RDMA's port space).")
    var port: Int = DEMCore.discoveryPort

    @Option(
        name: .customLong("rdma-address"),
        help:
            "Address to serve discovery on over NVMe/RDMA too (repeatable; an RDMA device must have it; needs a build with the RDMA trait)."
    )
    var rdmaAddresses: [String] = []

    @Option(help: "JSON file of discovery entries; reloaded on SIGHUP and when it changes.")
    var entries: String?

    @Option(
        name: .customLong("dc-nqn"),
        help: "Unique discovery controller NQN (default: generated once, kept in the data directory)."
    )
    var discoveryNQN: String?

    @Option(
        name: .customLong("data-dir"),
        help: "State directory (default: /var/lib/dem as root, else $XDG_STATE_HOME/dem)."
    )
    var dataDirectory: String?

    @Option(name: .customLong("api-address"), help: "Address the REST API listens on.")
    var apiAddress: String = "127.0.0.1"

    @Option(name: .customLong("api-port"), help: "REST API port.")
    var apiPort: Int = 22345

    @Option(
        name: .customLong("cors-origin"),
        help: "Browser origin allowed to call the REST API (\"*\" for any). Default: no CORS headers."
    )
    var corsOrigin: String?

    @Option(
        name: .customLong("fabric-key"),
        help:
            "The credential dem and dem-em share (default: fabric.key in the data directory, created at the first start)."
    )
    var fabricKey: String?

    @Option(
        name: .customLong("hostnqn"),
        help:
            "The host NQN dem connects to targets with (default: hostnqn in the data directory, made at the first start)."
    )
    var hostNQN: String?

    @Option(name: .customLong("probe-interval"), help: "Seconds between checks of each target.")
    var probeInterval: Double = 5

    @Option(name: .customLong("target-timeout"), help: "Seconds a call to a target may take.")
    var targetTimeout: Double = 10

    @Option(
        name: .customLong("unreachable"),
        help: "Entries of a target that stops answering: withdraw (hosts are notified) or keep."
    )
    var unreachable: String = UnreachablePolicy.withdraw.rawValue

    @Option(
        name: .customLong("unreachable-after"),
        help: "Seconds a target that was answering may fail before it is marked unreachable."
    )
    var unreachableAfter: Double = 15

    func validate() throws {
        if let hostNQN, !NQN.isValid(hostNQN) {
            throw ValidationError("--hostnqn \"\(hostNQN)\" is not a valid NQN")
        }
        guard UnreachablePolicy(rawValue: unreachable) != nil else {
            throw ValidationError("--unreachable must be withdraw or keep, not \"\(unreachable)\"")
        }
        guard probeInterval >= 0.1, probeInterval <= 86400 else {
            throw ValidationError("--probe-interval must be 0.1...86400 seconds")
        }
        guard unreachableAfter >= 0, unreachableAfter <= 86400 else {
            throw ValidationError("--unreachable-after must be 0...86400 seconds")
        }
        guard targetTimeout >= 0.1, targetTimeout <= 600 else {
            throw ValidationError("--target-timeout must be 0.1...600 seconds")
        }
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0...65535, not \(port)") }
        guard (0...65535).contains(apiPort) else {
            throw ValidationError("--api-port must be 0...65535, not \(apiPort)")
        }
        guard IPAddressText.isIPv4(apiAddress) || IPAddressText.isIPv6(apiAddress) else {
            throw ValidationError("--api-address \"\(apiAddress)\" is not an IPv4 or IPv6 address")
        }
        for address in addresses where !IPAddressText.isIPv4(address) && !IPAddressText.isIPv6(address) {
            throw ValidationError("--address \"\(address)\" is not an IPv4 or IPv6 address")
        }
        for address in rdmaAddresses where !IPAddressText.isIPv4(address) && !IPAddressText.isIPv6(address) {
            throw ValidationError("--rdma-address \"\(address)\" is not an IPv4 or IPv6 address")
        }
        if !rdmaAddresses.isEmpty && !NVMeRDMATransport.isAvailable {
            throw ValidationError("--rdma-address: \(NVMeRDMATransport.Unavailable())")
        }
        if let discoveryNQN {
            do { _ = try NQN(discoveryNQN) } catch { throw ValidationError("--dc-nqn: \(error.reason)") }
            guard discoveryNQN != DEMCore.wellKnownDiscoveryNQN else {
                throw ValidationError("--dc-nqn must be a unique NQN, not the well-known discovery NQN")
            }
        }
    }

    func options(logger: Logger) throws -> DEMOptions {
        let nqn: String
        if let discoveryNQN {
            nqn = discoveryNQN
        } else {
            let directory = DataDirectory.resolve(dataDirectory)
            let (generated, persisted) = try DataDirectory.uniqueDiscoveryNQN(in: directory)
            if !persisted {
                logger.warning(
                    "cannot write the data directory; the discovery NQN will change at the next start",
                    metadata: ["data-dir": "\(directory)"]
                )
            }
            nqn = generated
        }
        var options = DEMOptions(uniqueNQN: nqn, dataDirectory: DataDirectory.resolve(dataDirectory))
        options.addresses = addresses.isEmpty ? ["127.0.0.1"] : addresses
        options.rdmaAddresses = rdmaAddresses
        options.port = port
        options.entriesPath = entries
        options.apiAddress = apiAddress
        options.apiPort = apiPort
        options.corsOrigin = corsOrigin
        options.fabricCredentialPath = fabricKey
        options.hostNQN = hostNQN
        options.probeInterval = .milliseconds(Int(probeInterval * 1000))
        options.targetTimeout = .milliseconds(Int(targetTimeout * 1000))
        options.unreachablePolicy = UnreachablePolicy(rawValue: unreachable) ?? .withdraw
        options.unreachableAfter = .milliseconds(Int(unreachableAfter * 1000))
        return options
    }
}

@main
struct DEM: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dem",
        abstract: "DEM's central NVMe over Fabrics discovery controller.",
        discussion: """
            Serves each host its own discovery log page over NVMe/TCP (port 8009), on the \
            well-known discovery NQN and on a unique NQN, with change notifications.
            """,
        subcommands: [Serve.self, LogPage.self, Import.self, Export.self],
        defaultSubcommand: Serve.self
    )
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the discovery controller (the default).")

    @OptionGroup var flags: DiscoveryFlags

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    func run() async throws {
        let level = logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "dem")
        let options = try flags.options(logger: logger)
        let application: DEMApplication
        do {
            application = try await DEMApplication.build(options: options, logger: logger)
        } catch let error as DiscoverySourceError {
            throw ValidationError("entries file: \(error)")
        }
        for listener in application.listeners.boundAddresses {
            logger.notice(
                "discovery controller listening",
                metadata: [
                    "address": "\(listener.address)", "port": "\(listener.port)",
                    "nqn": "\(options.uniqueNQN)",
                    "try": "nvme discover -t tcp -a \(listener.address) -s \(listener.port)",
                ]
            )
        }
        try await application.serviceGroup.run()
        logger.notice("dem stopped")
    }
}

struct LogPage: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logpage",
        abstract:
            "Print the discovery log page dem would serve a host (from the store and the entries file), without serving it."
    )

    @OptionGroup var flags: DiscoveryFlags

    @Option(name: .customLong("host-nqn"), help: "The host NQN whose page to print.")
    var hostNQN: String

    @Option(help: "Write the raw page (header and 1024-byte entries) to this file.")
    var raw: String?

    @Flag(help: "Print the entries as JSON (nvme-cli's field names).")
    var json = false

    func validate() throws {
        do { _ = try NQN(hostNQN) } catch { throw ValidationError("--host-nqn: \(error.reason)") }
    }

    func run() async throws {
        let logger = Logger(label: "dem")
        let options = try flags.options(logger: logger)
        let catalog = DiscoveryCatalog(
            uniqueNQN: options.uniqueNQN,
            listeners: options.addresses.map { DiscoveryListenerAddress(address: $0, port: options.port) }
        )
        let storePath = options.dataDirectory + "/dem.sqlite"
        if FileManager.default.fileExists(atPath: storePath) {
            let fabric = try SQLiteFabricStore(path: storePath).loadFabric()
            catalog.update(entries: DiscoveryModelFeed.sourceEntries(fabric), from: .store)
        }
        if let path = options.entriesPath {
            do {
                catalog.update(entries: try JSONFileDiscoverySource(path: path).load())
            } catch {
                throw ValidationError("entries file: \(error)")
            }
        }
        // A fresh dem serves the first generation.
        let page = catalog.discoveryLogPage(hostNQN: hostNQN)
        let served = DiscoveryLogPage(generationCounter: 1, entries: page.entries)
        if let raw {
            let bytes = served.encoded()
            try Data(bytes.readableBytesView).write(to: URL(fileURLWithPath: raw))
        }
        if json || raw == nil {
            print(DiscoveryLogJSON.render(served))
        }
    }
}

/// `dem import`: nvme-dem's configuration file into the store, checked as a whole.
struct Import: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load a configuration in nvme-dem's format ({\"Targets\",\"Hosts\",\"Groups\"}) into the store.",
        discussion: """
            With dem stopped; while it runs, use PUT /dem/config instead. The file is checked as a \
            whole (errors name the field, such as Targets[0].PortIDs[1].TRADDR) and replaces the \
            model in one transaction; nothing changes when it is refused.
            """
    )

    @Argument(help: "The configuration file (nvme-dem's /etc/nvme/nvmeof-dem/config, or dem export's output).")
    var file: String

    @Option(
        name: .customLong("data-dir"),
        help: "State directory (default: /var/lib/dem as root, else $XDG_STATE_HOME/dem)."
    )
    var dataDirectory: String?

    func run() async throws {
        guard let data = FileManager.default.contents(atPath: file) else {
            throw ValidationError("cannot read \(file)")
        }
        let fabric: Fabric
        do {
            fabric = try JSONDecoder().decode(Fabric.self, from: data)
        } catch let error as ModelError {
            throw ValidationError("\(file): \(error)")
        } catch {
            throw ValidationError("\(file): \(error)")
        }
        let directory = DataDirectory.resolve(dataDirectory)
        try FileManager.default.createDirectory(
            atPath: directory,
            withIntermediateDirectories: true,
            attributes: [.posixPermissions: 0o700]
        )
        let store = try SQLiteFabricStore(path: directory + "/dem.sqlite")
        try store.commit(from: try store.loadFabric(), to: fabric)
        let subsystems = fabric.targets.reduce(0) { $0 + $1.subsystems.count }
        print(
            "imported \(fabric.targets.count) targets, \(subsystems) subsystems, \(fabric.hosts.count) hosts, \(fabric.groups.count) groups into \(store.path)"
        )
    }
}

/// `dem export`: the store's model in nvme-dem's configuration format.
struct Export: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the store's model in nvme-dem's configuration format."
    )

    @Option(
        name: .customLong("data-dir"),
        help: "State directory (default: /var/lib/dem as root, else $XDG_STATE_HOME/dem)."
    )
    var dataDirectory: String?

    func run() async throws {
        let path = DataDirectory.resolve(dataDirectory) + "/dem.sqlite"
        guard FileManager.default.fileExists(atPath: path) else { throw ValidationError("no store at \(path)") }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(try SQLiteFabricStore(path: path).loadFabric())
        print(String(decoding: data, as: UTF8.self))
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
