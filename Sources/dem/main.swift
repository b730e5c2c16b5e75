import ArgumentParser
import DEMConfig
import DEMCore
import DEMHTTP
import DEMServer
import Foundation
import Logging
import NIOCore

/// The options `dem serve` and `dem logpage` share: where discovery listens, the entries file,
/// the unique NQN and the data directory.
struct ModelFlags: ParsableArguments {
    @Option(name: .customLong("address"), help: "Address to listen on (repeatable). Default: 127.0.0.1.")
    var addresses: [String] = []

    @Option(parsing: .unconditional, help: "Discovery port (NVMe/TCP, and NVMe/RDMA's port space).")
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

    @Option(
        name: .customLong("interfaces"),
        help:
            "nvme-dem's interface files (TRTYPE, ADRFAM, TRADDR, TRSVCID): a discovery listener for each file of this folder, when it exists (\"\" for none)."
    )
    var interfaces: String = LegacyInterface.defaultFolder

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0...65535, not \(port)") }
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

    /// dem's options as far as these flags go: the unique NQN, the data directory, the listeners
    /// (with nvme-dem's interface files) and the entries file.
    func options(logger: Logger) throws -> DEMOptions {
        let directory = DataDirectory.resolve(dataDirectory)
        let nqn: String
        if let discoveryNQN {
            nqn = discoveryNQN
        } else {
            // The directory first: an unusable one is the error to report, not a passing NQN.
            do {
                try StateDirectory.prepare(directory)
            } catch {
                throw DEMStartError(error.description)
            }
            nqn = try DataDirectory.uniqueDiscoveryNQN(in: directory).nqn
        }
        var options = DEMOptions(uniqueNQN: nqn, dataDirectory: directory)
        options.uniqueNQNGiven = discoveryNQN != nil
        // nvme-dem's interface files: a listener for each (on its TRSVCID, else 4420 as nvme-dem
        // took); with files and no --address, dem listens on them only, as nvme-dem did.
        let legacy: [LegacyInterface]
        do {
            legacy = interfaces.isEmpty ? [] : try LegacyInterface.read(folder: interfaces)
        } catch {
            throw DEMStartError("nvme-dem interface file \(error)")
        }
        for interface in legacy where interface.transportType == "rdma" && !NVMeRDMATransport.isAvailable {
            throw DEMStartError(
                "nvme-dem interface file \(interface.file): TRTYPE=rdma: \(NVMeRDMATransport.Unavailable())"
            )
        }
        options.moreListeners = legacy.map { interface in
            let port = interface.transportServiceIdentifier ?? LegacyInterface.defaultServiceIdentifier
            return DiscoveryEndpoint(
                transport: interface.transportType == "rdma" ? .rdma : .tcp,
                address: interface.transportAddress,
                port: port,
                option: "TRSVCID in \(interface.file)",
                advice: interface.transportServiceIdentifier == nil
                    ? "\(interface.file) has no TRSVCID, so dem listens on \(port) as nvme-dem did, where an NVMe-oF target on this machine (nvmet) listens too: set TRSVCID=4422 in it, as nvme-dem's examples did for a dem beside a target"
                    : "another program listens there, perhaps a target on this machine: choose another TRSVCID in \(interface.file)"
            )
        }
        if !legacy.isEmpty {
            logger.info(
                "listening as nvme-dem's interface files say",
                metadata: ["folder": "\(interfaces)", "files": "\(legacy.map(\.file).joined(separator: ", "))"]
            )
        }
        options.addresses = addresses.isEmpty ? (legacy.isEmpty ? ["127.0.0.1"] : []) : addresses
        options.rdmaAddresses = rdmaAddresses
        options.port = port
        options.entriesPath = entries
        return options
    }
}

/// The options of `dem serve`: where dem listens and keeps its state (shared with `dem logpage`), and how it serves.
struct ServeFlags: ParsableArguments {
    @OptionGroup var model: ModelFlags

    @Option(name: .customLong("api-address"), help: "Address the REST API listens on.")
    var apiAddress: String = "127.0.0.1"

    @Option(
        name: [.customShort("p"), .customLong("api-port")],
        parsing: .unconditional,
        help: "REST API port (nvme-dem's -p)."
    )
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
        name: .customLong("tls-cert"),
        help:
            "The site's certificate (PEM, chain after it) for the REST API, instead of one issued from the fabric CA (with --tls-key)."
    )
    var tlsCertificate: String?

    @Option(name: .customLong("tls-key"), help: "The key of --tls-cert (PEM).")
    var tlsKey: String?

    @Option(
        name: .customLong("tls-ca"),
        help: "The site CA clients are to trust with --tls-cert (PEM; default: the last certificate of --tls-cert)."
    )
    var tlsCA: String?

    @Option(
        name: .customLong("tls-name"),
        help:
            "Another name or address the REST API is reached by (a DNS alias, a NAT or proxy address), for the certificate dem issues (repeatable)."
    )
    var tlsNames: [String] = []

    @Option(
        name: .customLong("store"),
        help:
            "The store: a PostgreSQL URL (postgres://USER@HOST[:PORT]/DATABASE, no password in it) that several dem replicas share (default: SQLite in the data directory)."
    )
    var store: String?

    @Option(
        name: .customLong("store-password-file"),
        help:
            "A file holding the PostgreSQL password of --store (mode 0600); without it libpq's PGPASSWORD, PGPASSFILE or ~/.pgpass."
    )
    var storePasswordFile: String?

    @Flag(
        name: .customLong("no-mdns"),
        help:
            "Do not advertise the discovery controller over multicast DNS (by default dem announces _nvme-disc._tcp with the _cdc subtype on the non-loopback IPv4 interfaces it listens on)."
    )
    var noMDNS = false

    @Flag(
        name: .customLong("insecure-http"),
        help:
            "Serve the REST API in plain HTTP instead of TLS; on a non-loopback --api-address tokens cross the network in the clear (a warning is logged)."
    )
    var insecureHTTP = false

    @Option(
        name: .customLong("hostnqn"),
        help:
            "The host NQN dem connects to targets with (default: hostnqn in the data directory, made at the first start)."
    )
    var hostNQN: String?

    @Option(
        name: .customLong("probe-interval"),
        parsing: .unconditional,
        help: "Seconds between checks of each target."
    )
    var probeInterval: Double = 5

    @Option(name: .customLong("target-timeout"), parsing: .unconditional, help: "Seconds a call to a target may take.")
    var targetTimeout: Double = 10

    @Option(
        name: .customLong("auth"),
        help:
            "Hosts without a DH-HMAC-CHAP key: optional (they connect unauthenticated) or required (refused). Hosts with a key always authenticate."
    )
    var auth: String = HostKeyring.Requirement.optional.rawValue

    @Option(
        name: .customLong("unreachable"),
        help: "Entries of a target that stops answering: withdraw (hosts are notified) or keep."
    )
    var unreachable: String = UnreachablePolicy.withdraw.rawValue

    @Option(
        name: .customLong("unreachable-after"),
        parsing: .unconditional,
        help: "Seconds a target that was answering may fail before it is marked unreachable."
    )
    var unreachableAfter: Double = 15

    @Option(
        name: .customLong("max-connections"),
        parsing: .unconditional,
        help: "Connections the discovery controller takes in all (fitted to the descriptor limit)."
    )
    var maxConnections: Int = 4096

    @Option(
        name: .customLong("max-connections-per-source"),
        parsing: .unconditional,
        help: "Discovery connections one source address may hold."
    )
    var maxConnectionsPerSource: Int = 256

    @Option(
        name: .customLong("api-max-connections"),
        parsing: .unconditional,
        help: "Connections the REST API takes in all (fitted to the descriptor limit)."
    )
    var apiMaxConnections: Int = 512

    @Option(
        name: .customLong("api-max-connections-per-source"),
        parsing: .unconditional,
        help: "REST API connections one source address may hold."
    )
    var apiMaxConnectionsPerSource: Int = 64

    @Option(
        name: .customLong("setup-timeout"),
        parsing: .unconditional,
        help: "Seconds a host may take for its ICReq, for its Connect, and for the rest of a PDU it began."
    )
    var setupTimeout: Double = 10

    @Option(
        name: .customLong("http-timeout"),
        parsing: .unconditional,
        help: "Seconds an HTTP request may take to arrive whole; an idle REST connection is closed after it too."
    )
    var httpTimeout: Double = 30

    func validate() throws {
        for (name, value) in [
            ("--max-connections", maxConnections), ("--max-connections-per-source", maxConnectionsPerSource),
            ("--api-max-connections", apiMaxConnections),
            ("--api-max-connections-per-source", apiMaxConnectionsPerSource),
        ] where !(1...1_000_000).contains(value) {
            throw ValidationError("\(name) must be 1...1000000, not \(value)")
        }
        guard setupTimeout >= 0.1, setupTimeout <= 3600 else {
            throw ValidationError("--setup-timeout must be 0.1...3600 seconds")
        }
        guard httpTimeout >= 0.1, httpTimeout <= 3600 else {
            throw ValidationError("--http-timeout must be 0.1...3600 seconds")
        }
        if let hostNQN, !NQN.isValid(hostNQN) {
            throw ValidationError("--hostnqn \"\(hostNQN)\" is not a valid NQN")
        }
        guard HostKeyring.Requirement(rawValue: auth) != nil else {
            throw ValidationError("--auth must be optional or required, not \"\(auth)\"")
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
        guard (0...65535).contains(apiPort) else {
            throw ValidationError("--api-port must be 0...65535, not \(apiPort)")
        }
        guard IPAddressText.isIPv4(apiAddress) || IPAddressText.isIPv6(apiAddress) else {
            throw ValidationError("--api-address \"\(apiAddress)\" is not an IPv4 or IPv6 address")
        }
        if (tlsCertificate == nil) != (tlsKey == nil) {
            throw ValidationError("--tls-cert and --tls-key go together: the site's certificate and its key")
        }
        if tlsCA != nil && tlsCertificate == nil {
            throw ValidationError("--tls-ca names the site CA of --tls-cert; without --tls-cert dem uses its fabric CA")
        }
        for name in tlsNames where !FabricPKI.isValidName(name) {
            throw ValidationError("--tls-name \"\(name)\" is not an IP address or a host name")
        }
        if !tlsNames.isEmpty && tlsCertificate != nil {
            throw ValidationError(
                "--tls-name adds names to the certificate dem issues: with --tls-cert the site's certificate has its own"
            )
        }
        if insecureHTTP && tlsCertificate != nil {
            throw ValidationError("--insecure-http serves plain HTTP: it cannot go with --tls-cert")
        }
    }

    /// TLS, with the site's certificate or one from the fabric CA; plain HTTP only with
    /// --insecure-http.
    var apiTransport: DEMOptions.APITransport {
        if let tlsCertificate, let tlsKey { return .site(certificate: tlsCertificate, key: tlsKey, ca: tlsCA) }
        return insecureHTTP ? .plain : .fabricCA
    }

    func options(logger: Logger) throws -> DEMOptions {
        var options = try model.options(logger: logger)
        options.apiAddress = apiAddress
        options.apiPort = apiPort
        options.corsOrigin = corsOrigin
        options.fabricCredentialPath = fabricKey
        options.hostNQN = hostNQN
        options.probeInterval = .milliseconds(Int(probeInterval * 1000))
        options.targetTimeout = .milliseconds(Int(targetTimeout * 1000))
        options.unreachablePolicy = UnreachablePolicy(rawValue: unreachable) ?? .withdraw
        options.authentication = HostKeyring.Requirement(rawValue: auth) ?? .optional
        options.unreachableAfter = .milliseconds(Int(unreachableAfter * 1000))
        options.discoveryLimits = ConnectionLimits(total: maxConnections, perSource: maxConnectionsPerSource)
        options.apiLimits = ConnectionLimits(total: apiMaxConnections, perSource: apiMaxConnectionsPerSource)
        options.controller.setupTimeout = .milliseconds(Int64(setupTimeout * 1000))
        options.httpTimeout = .milliseconds(Int64(httpTimeout * 1000))
        options.apiTransport = apiTransport
        options.tlsNames = tlsNames
        options.mdns = !noMDNS
        if let store {
            guard PostgresLocation.isURL(store) else {
                throw DEMStartError(
                    "--store \"\(store)\" is not a PostgreSQL URL (postgres://USER@HOST[:PORT]/DATABASE); without --store dem keeps its store in the data directory"
                )
            }
            var password: String?
            if let storePasswordFile {
                guard let data = FileManager.default.contents(atPath: storePasswordFile) else {
                    throw DEMStartError(
                        "--store-password-file \(storePasswordFile): cannot read it (\(Errno.describe(errno)))"
                    )
                }
                password = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)
            }
            do {
                options.postgres = try PostgresLocation(url: store, password: password)
            } catch {
                throw DEMStartError("--store: \(error)")
            }
        } else if storePasswordFile != nil {
            throw DEMStartError("--store-password-file is for a PostgreSQL --store; none is given")
        }
        if insecureHTTP && !FabricPKI.isLoopback(apiAddress) {
            logger.warning(
                "the REST API serves plain HTTP on a network address (--insecure-http): tokens and the fabric credential cross the network in the clear",
                metadata: ["api-address": "\(apiAddress)"]
            )
        }
        return options
    }
}

@main
struct DEM: AsyncParsableCommand {
    /// The command line completed from `DEM_*` variables and /etc/dem/dem.json.
    static func main() async {
        await LayeredMain.run(
            DEM.self,
            subcommands: [
                ("serve", Serve.self), ("logpage", LogPage.self), ("import", Import.self), ("export", Export.self),
                ("backup", Backup.self), ("restore", Restore.self), ("check", Check.self),
            ],
            prefix: "DEM",
            defaultFile: "/etc/dem/dem.json"
        )
    }

    static let configuration = CommandConfiguration(
        commandName: "dem",
        abstract: "DEM's central NVMe over Fabrics discovery controller.",
        discussion: """
            Serves each host its own discovery log page over NVMe/TCP (port 8009), on the \
            well-known discovery NQN and on a unique NQN, with change notifications.
            """,
        subcommands: [Serve.self, LogPage.self, Import.self, Export.self, Backup.self, Restore.self, Check.self],
        defaultSubcommand: Serve.self
    )
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the discovery controller (the default).")

    @OptionGroup var flags: ServeFlags

    @OptionGroup var configuration: ConfigurationOptions

    @OptionGroup var logging: LoggingOptions

    @Flag(
        name: [.customShort("s"), .customLong("standalone")],
        help: "Run in the foreground, as dem always does (nvme-dem's -s; dem never daemonizes)."
    )
    var standalone = false

    func run() async throws {
        let logger = logging.bootstrap(label: "dem")
        do {
            // Every connection is a descriptor: take what the system allows this process.
            let descriptors = DescriptorLimit.raise()
            if descriptors.raised {
                logger.info(
                    "raised the descriptor limit",
                    metadata: ["soft": "\(descriptors.soft)", "hard": "\(descriptors.hard)"]
                )
            }
            let options = try flags.options(logger: logger)
            let application: DEMApplication
            do {
                application = try await DEMApplication.build(options: options, logger: logger)
            } catch let error as DiscoverySourceError {
                throw DEMStartError("entries file: \(error)")
            }
            try await application.serviceGroup.run()
        } catch {
            // A start-up failure (or a listener lost while running) ends dem with one sentence
            // naming the cause, and a non-zero exit.
            logger.critical("dem cannot run", metadata: ["error": "\(error)"])
            throw ExitCode(1)
        }
        logger.notice("dem stopped")
    }
}

struct LogPage: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logpage",
        abstract:
            "Print the discovery log page dem would serve a host (from the store and the entries file), without serving it."
    )

    @OptionGroup var flags: ModelFlags

    @OptionGroup var configuration: ConfigurationOptions

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
        // dem's next start serves the first generation after those its store has reserved.
        var generation: UInt64 = 1
        if FileManager.default.fileExists(atPath: storePath) {
            let store = try SQLiteFabricStore(path: storePath, readOnly: true)
            catalog.update(entries: DiscoveryModelFeed.sourceEntries(try store.loadFabric()), from: .store)
            generation = try store.reservedGeneration() + 1
        }
        if let path = options.entriesPath {
            do {
                catalog.update(entries: try JSONFileDiscoverySource(path: path).load())
            } catch {
                throw CommandFailure("entries file: \(error)")
            }
        }
        let page = catalog.discoveryLogPage(hostNQN: hostNQN)
        let served = DiscoveryLogPage(generationCounter: generation, entries: page.entries)
        if let raw {
            let bytes = served.encoded()
            try Data(bytes.readableBytesView).write(to: URL(fileURLWithPath: raw))
        }
        if json || raw == nil {
            print(DiscoveryLogJSON.render(served))
        }
    }
}

/// The `--data-dir` option of the store commands (and `--config`, which may set it).
struct StoreFlags: ParsableArguments {
    @OptionGroup var configuration: ConfigurationOptions

    @Option(
        name: .customLong("data-dir"),
        help: "State directory (default: /var/lib/dem as root, else $XDG_STATE_HOME/dem)."
    )
    var dataDirectory: String?

    var directory: String { DataDirectory.resolve(dataDirectory) }
    var storePath: String { directory + "/dem.sqlite" }

    /// The data directory, made when missing, locked for `owner`: refused while dem (or another
    /// store command) uses it.
    func lock(_ owner: String) throws -> StateDirectoryLock {
        do {
            try StateDirectory.prepare(directory)
            return try StateDirectoryLock.acquire(directory: directory, owner: owner)
        } catch let error as StateDirectoryError {
            throw CommandFailure(error.description)
        } catch let error as StateDirectoryLockError {
            throw CommandFailure(error.description)
        }
    }
}

/// A command failed for a reason that is not its command line (no usage is printed): the
/// message names the file or the resource, and dem exits with status 1.
struct CommandFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Runs a store command, with its failure as one line naming the file and exit status 1.
func storeCommand(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as StoreError {
        FileHandle.standardError.write(Data("dem: \(error)\n".utf8))
        throw ExitCode(1)
    }
}

/// `dem import`: nvme-dem's configuration file into the store, checked as a whole.
struct Import: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load a configuration in nvme-dem's format ({\"Targets\",\"Hosts\",\"Groups\"}) into the store.",
        discussion: """
            With dem stopped (refused while dem runs on the data directory; use PUT /dem/config \
            then). The file is checked as a whole (errors name the field, such as \
            Targets[0].PortIDs[1].TRADDR) and replaces the model in one transaction; nothing \
            changes when it is refused. An import that would remove targets, subsystems, hosts or \
            groups needs --replace (an empty file --replace --empty); what it removed is printed.
            """
    )

    @Argument(help: "The configuration file (nvme-dem's /etc/nvme/nvmeof-dem/config, or dem export's output).")
    var file: String

    @OptionGroup var store: StoreFlags

    @Flag(help: "Replace the model even when that removes targets, subsystems, hosts or groups.")
    var replace = false

    @Flag(help: "With --replace: accept a configuration with nothing in it (it empties the store).")
    var empty = false

    func run() async throws {
        guard let data = FileManager.default.contents(atPath: file) else {
            throw CommandFailure("cannot read \(file): \(Errno.describe(errno))")
        }
        let fabric: Fabric
        do {
            fabric = try JSONDecoder().decode(Fabric.self, from: data)
        } catch let error as ModelError {
            throw CommandFailure("\(file): \(error)")
        } catch {
            throw CommandFailure("\(file): \(JSONDiagnostics.describe(error, in: data))")
        }
        let lock = try store.lock("dem import")
        defer { lock.release() }
        try storeCommand {
            let database = try SQLiteFabricStore(path: store.storePath)
            let old = try database.loadFabric()
            let removed: FabricReplacement
            do throws(ModelError) {
                removed = try FabricReplacement.check(
                    old: old,
                    new: fabric,
                    replace: replace,
                    empty: empty,
                    how: "--replace",
                    howEmpty: "--replace --empty"
                )
            } catch {
                throw CommandFailure("\(file): \(error.message)")
            }
            try database.commit(from: old, to: fabric)
            let subsystems = fabric.targets.reduce(0) { $0 + $1.subsystems.count }
            print(
                "imported \(fabric.targets.count) targets, \(subsystems) subsystems, \(fabric.hosts.count) hosts, \(fabric.groups.count) groups into \(database.path)"
            )
            if !removed.isEmpty { print("removed \(removed.summary)") }
        }
    }
}

/// `dem export`: the store's model in nvme-dem's configuration format.
struct Export: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the store's model in nvme-dem's configuration format.",
        discussion: """
            Reads the store without writing to it, whether dem runs or not, and reads a store \
            that failed its check as far as it can (to save what it holds).
            """
    )

    @OptionGroup var store: StoreFlags

    func run() async throws {
        try storeCommand {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            let data = try encoder.encode(try SQLiteFabricStore(path: store.storePath, readOnly: true).loadFabric())
            print(String(decoding: data, as: UTF8.self))
        }
    }
}

/// `dem backup`: a consistent copy of the store, while dem runs.
struct Backup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy the store to a new file with SQLite's online backup (dem may be running).",
        discussion: "The copy is checked (integrity_check) before the command succeeds. Restore it with dem restore."
    )

    @Argument(help: "The new file.")
    var file: String

    @OptionGroup var store: StoreFlags

    func run() async throws {
        try storeCommand {
            try SQLiteFabricStore(path: store.storePath, readOnly: true).backup(to: file)
            print("backed up \(store.storePath) to \(file)")
        }
    }
}

/// `dem restore`: a backup in place of the store, with dem stopped.
struct Restore: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replace the store with a backup made by dem backup (with dem stopped).",
        discussion: """
            The backup is checked first (integrity_check); the store it replaces, damaged or not, \
            is kept beside it as dem.sqlite.replaced-TIME.
            """
    )

    @Argument(help: "The backup file.")
    var file: String

    @OptionGroup var store: StoreFlags

    func run() async throws {
        let lock = try store.lock("dem restore")
        defer { lock.release() }
        try storeCommand {
            let problems = try SQLiteFabricStore.check(path: file, full: true)
            guard problems.isEmpty else {
                throw StoreError(
                    path: file,
                    message: "is damaged too (\(problems.prefix(3).joined(separator: "; "))); choose another backup"
                )
            }
            // The copy is made beside the store, then renamed over it: whole or not at all.
            let staging = store.storePath + ".restoring"
            try? FileManager.default.removeItem(atPath: staging)
            try SQLiteFabricStore(path: file, readOnly: true).backup(to: staging)
            let manager = FileManager.default
            // The discovery generation counters the replaced store handed out stay used: hosts
            // must not see one GENCTR for two pages. When it cannot be read, the restored store
            // starts past any count it could have reached (GENCTR is 64 bits).
            let floor: UInt64
            if manager.fileExists(atPath: store.storePath) {
                if let reserved = try? SQLiteFabricStore(path: store.storePath, readOnly: true).reservedGeneration() {
                    floor = reserved
                } else {
                    floor = UInt64(Date().timeIntervalSince1970 * 1_000_000)
                    print("the replaced store's discovery generation cannot be read; GENCTR continues from \(floor)")
                }
            } else {
                floor = 0
            }
            try SQLiteFabricStore(path: staging, readOnly: false).raiseReservedGeneration(to: floor)
            for suffix in ["-wal", "-shm"] { try? manager.removeItem(atPath: staging + suffix) }
            if manager.fileExists(atPath: store.storePath) {
                let stamp = ISO8601DateFormatter().string(from: Date()).replacingOccurrences(of: ":", with: "")
                let kept = store.storePath + ".replaced-" + stamp
                try manager.moveItem(atPath: store.storePath, toPath: kept)
                print("kept the replaced store as \(kept)")
            }
            // A write-ahead log of the replaced store must not be applied to the restored one.
            for suffix in ["-wal", "-shm"] { try? manager.removeItem(atPath: store.storePath + suffix) }
            guard rename(staging, store.storePath) == 0 else {
                throw StoreError(
                    path: store.storePath,
                    message: "cannot move the restored copy in place: \(Errno.describe(errno))"
                )
            }
            chmod(store.storePath, 0o600)
            print("restored \(file) to \(store.storePath)")
        }
    }
}

/// `dem check`: SQLite's check of the store.
struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Check the store: SQLite's quick_check (as dem does at every start), or with --full its integrity_check.",
        discussion: "Prints ok, or what is damaged, and exits 0 or 1. Writes nothing."
    )

    @OptionGroup var store: StoreFlags

    @Flag(help: "Also check every index against its table (slower).")
    var full = false

    func run() async throws {
        try storeCommand {
            guard FileManager.default.fileExists(atPath: store.storePath) else {
                throw StoreError(path: store.storePath, message: "does not exist (no store in this data directory)")
            }
            let problems = try SQLiteFabricStore.check(path: store.storePath, full: full)
            if problems.isEmpty {
                print("\(store.storePath): ok")
                return
            }
            for problem in problems { print("\(store.storePath): \(problem)") }
            throw StoreError.damaged(path: store.storePath, problems: problems)
        }
    }
}
