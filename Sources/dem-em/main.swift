import ArgumentParser
import DEMConfig
import DEMCore
import DEMEndpoint
import Foundation
import Logging
import NIOPosix

struct CommonFlags: ParsableArguments {
    @Option(
        name: .customLong("data-dir"),
        help: "State directory (default: /var/lib/dem-em as root, else $XDG_STATE_HOME/dem-em)."
    )
    var dataDirectory: String?

    @Option(
        name: .customLong("backend"),
        help:
            "The NVMe-oF target to drive: nvmet (the kernel's, through configfs) or spdk (SPDK's nvmf_tgt, through its RPC socket)."
    )
    var backend: String = "nvmet"

    @Option(name: .customLong("nvmet-root"), help: "The nvmet configfs directory (--backend nvmet).")
    var nvmetRoot: String = "/sys/kernel/config/nvmet"

    @Option(name: .customLong("spdk-socket"), help: "SPDK nvmf_tgt's JSON-RPC socket (--backend spdk).")
    var spdkSocket: String = "/var/tmp/spdk.sock"

    @Option(name: .customLong("sysfs-root"), help: "Where sysfs is mounted.")
    var sysfsRoot: String = "/sys"

    @Option(
        name: .customLong("allow-device"),
        help:
            "A block device or file (glob) that may back namespaces, besides NVMe namespaces and null_blk (repeatable)."
    )
    var allowedDevices: [String] = []

    @OptionGroup var configuration: ConfigurationOptions

    var resolvedDataDirectory: String { StateDirectory.resolve(dataDirectory, name: "dem-em") }

    /// The SPDK socket with --backend spdk, nil with nvmet.
    var resolvedSPDKSocket: String? { backend == "spdk" ? spdkSocket : nil }

    func validate() throws {
        guard backend == "nvmet" || backend == "spdk" else {
            throw ValidationError("--backend \"\(backend)\": must be nvmet or spdk")
        }
        guard !spdkSocket.isEmpty else { throw ValidationError("--spdk-socket must name a socket file") }
    }
}

@main
struct DEMEM: AsyncParsableCommand {
    /// The command line completed from `DEM_EM_*` variables and /etc/dem/dem-em.json.
    static func main() async {
        await LayeredMain.run(
            DEMEM.self,
            subcommands: [
                ("serve", Serve.self), ("inventory", Inventory.self), ("status", Status.self), ("import", Import.self),
                ("export", Export.self),
            ],
            prefix: "DEM_EM",
            defaultFile: "/etc/dem/dem-em.json"
        )
    }

    static let configuration = CommandConfiguration(
        commandName: "dem-em",
        abstract:
            "DEM's endpoint manager: applies dem's configuration to this machine's NVMe-oF target (the kernel's or SPDK's).",
        discussion: """
            Keeps the desired state dem sends (ports, subsystems, namespaces, hosts) in its data \
            directory and makes the target match it, touching only what it created: the kernel \
            target (nvmet, through configfs), or with --backend spdk SPDK's nvmf_tgt (through \
            its JSON-RPC socket; the desired state is applied again when nvmf_tgt restarts). \
            Reports the devices and fabric interfaces it finds.
            """,
        subcommands: [Serve.self, Inventory.self, Status.self, Import.self, Export.self],
        defaultSubcommand: Serve.self
    )
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the endpoint manager (the default).")

    @OptionGroup var common: CommonFlags

    @Option(
        name: .customLong("fabric-key"),
        help:
            "The credential dem and dem-em share: a copy of dem's fabric.key (default: fabric.key in the data directory)."
    )
    var fabricKey: String?

    @Option(name: .customLong("api-address"), help: "Address the REST API listens on.")
    var apiAddress: String = "0.0.0.0"

    @Option(
        name: [.customShort("p"), .customLong("api-port")],
        parsing: .unconditional,
        help: "REST API port (nvme-dem's out-of-band -p)."
    )
    var apiPort: Int = DEMCore.endpointManagerPort

    @Option(
        name: .customLong("join"),
        help:
            "dem's REST API to join at start, e.g. https://head:22345 (with --token and --ca-hash the first time: enrolment)."
    )
    var join: String?

    @Option(
        name: .customLong("enrol"),
        help:
            "dem's REST API to enrol with (with --token and --ca-hash) without joining it: a target dem manages in band."
    )
    var enrol: String?

    @Option(
        name: .customLong("token"),
        help:
            "A join token (dem-cli add join-token): enrol with dem at --join, receiving a certificate of its fabric CA."
    )
    var token: String?

    @Option(
        name: .customLong("ca-hash"),
        help: "The fabric CA's fingerprint, sha256:… (dem logs it at start as tls-ca-fingerprint); needed with --token."
    )
    var caHash: String?

    @Option(name: .customLong("alias"), help: "This target's alias in dem (default: the host name).")
    var alias: String?

    @Option(
        name: .customLong("advertise-address"),
        help: "The address dem reaches this API at (default: the API address, or the first non-loopback one)."
    )
    var advertiseAddress: String?

    @Option(
        name: .customLong("advertise-port"),
        parsing: .unconditional,
        help: "The port dem reaches this API at (default: the API port)."
    )
    var advertisePort: Int?

    @Flag(help: "Take over kernel target objects dem-em did not create when the desired state names them.")
    var adopt = false

    @Option(name: .customLong("check-interval"), parsing: .unconditional, help: "Seconds between drift checks.")
    var checkInterval: Double = 30

    @Flag(name: .customLong("repair-drift"), help: "Re-apply the desired state when drift is found.")
    var repairDrift = false

    @Option(
        name: [.customShort("a"), .customLong("inband-address")],
        help: "Serve the in-band management channel at this address (default: none, no channel)."
    )
    var inBandAddress: String?

    @Option(
        name: [.customShort("t"), .customLong("inband-transport")],
        help:
            "The in-band channel's transport: tcp, or rdma (an RDMA device must have --inband-address; needs a build with the RDMA trait)."
    )
    var inBandTransport: String = NVMeTransport.tcp.rawValue

    @Option(
        name: [.customShort("s"), .customLong("inband-port")],
        parsing: .unconditional,
        help: "The in-band channel's TRSVCID."
    )
    var inBandPort: Int = DEMCore.endpointInBandPort

    @Option(
        name: .customLong("inband-nqn"),
        help: "The in-band channel's management NQN (default: nqn.2014-08.org.nvmexpress.dem:em:<alias>)."
    )
    var inBandNQN: String?

    @Option(
        name: .customLong("inband-allow-host"),
        help: "A host NQN that may connect to the in-band channel (repeatable; default: any host with the credential)."
    )
    var inBandAllowedHosts: [String] = []

    @Option(
        name: .customLong("max-connections"),
        parsing: .unconditional,
        help: "Connections the REST API and the in-band channel each take (fitted to the descriptor limit)."
    )
    var maxConnections: Int = 64

    @Option(
        name: .customLong("max-connections-per-source"),
        parsing: .unconditional,
        help: "Connections one source address may hold on each."
    )
    var maxConnectionsPerSource: Int = 16

    @Option(
        name: .customLong("setup-timeout"),
        parsing: .unconditional,
        help: "Seconds an in-band host may take for its ICReq, for its Connect, and for the rest of a PDU it began."
    )
    var setupTimeout: Double = 10

    @Option(
        name: .customLong("http-timeout"),
        parsing: .unconditional,
        help: "Seconds an HTTP request may take to arrive whole; an idle REST connection is closed after it too."
    )
    var httpTimeout: Double = 30

    @Option(
        name: [.customShort("f"), .customLong("inband-adrfam")],
        help: "The in-band address's family, ipv4 or ipv6 (nvme-dem's -f; checked against -a)."
    )
    var inBandAddressFamily: String?

    @Option(
        name: .customLong("interfaces"),
        help:
            "nvme-dem's interface files: reported as fabric interfaces, from this folder when it exists (\"\" for none)."
    )
    var interfaces: String = LegacyInterface.defaultFolder

    @OptionGroup var logging: LoggingOptions

    @Flag(
        name: [.customShort("S"), .customLong("standalone")],
        help: "Run in the foreground, as dem-em always does (nvme-dem's -S)."
    )
    var standalone = false

    func validate() throws {
        if token != nil && ((enrol ?? join) == nil || caHash == nil) {
            throw ValidationError(
                "--token enrols: it needs --join (or --enrol) https://HEAD:22345 and --ca-hash sha256:…"
            )
        }
        if token == nil && (caHash != nil || enrol != nil) {
            throw ValidationError(
                "\(caHash != nil ? "--ca-hash" : "--enrol") goes with --token (a join token): enrolment"
            )
        }
        guard (1...1_000_000).contains(maxConnections) else {
            throw ValidationError("--max-connections must be 1...1000000, not \(maxConnections)")
        }
        guard (1...1_000_000).contains(maxConnectionsPerSource) else {
            throw ValidationError("--max-connections-per-source must be 1...1000000, not \(maxConnectionsPerSource)")
        }
        guard setupTimeout >= 0.1, setupTimeout <= 3600 else {
            throw ValidationError("--setup-timeout must be 0.1...3600 seconds")
        }
        guard httpTimeout >= 0.1, httpTimeout <= 3600 else {
            throw ValidationError("--http-timeout must be 0.1...3600 seconds")
        }
        guard (0...65535).contains(apiPort) else { throw ValidationError("--api-port must be 0...65535") }
        if let advertisePort, !(1...65535).contains(advertisePort) {
            throw ValidationError("--advertise-port must be 1...65535")
        }
        guard IPAddressText.isIPv4(apiAddress) || IPAddressText.isIPv6(apiAddress) else {
            throw ValidationError("--api-address \"\(apiAddress)\" is not an IPv4 or IPv6 address")
        }
        if let advertiseAddress, !IPAddressText.isIPv4(advertiseAddress), !IPAddressText.isIPv6(advertiseAddress) {
            throw ValidationError("--advertise-address \"\(advertiseAddress)\" is not an IPv4 or IPv6 address")
        }
        if let join {
            guard let url = URL(string: join), url.scheme == "http" || url.scheme == "https", url.host != nil else {
                throw ValidationError("--join must be dem's REST URL, such as http://head:22345, not \"\(join)\"")
            }
        }
        guard checkInterval >= 1, checkInterval <= 86400 else {
            throw ValidationError("--check-interval must be 1...86400 seconds")
        }
        if let inBandAddress, !IPAddressText.isIPv4(inBandAddress), !IPAddressText.isIPv6(inBandAddress) {
            throw ValidationError("--inband-address \"\(inBandAddress)\" is not an IPv4 or IPv6 address")
        }
        guard (0...65535).contains(inBandPort) else { throw ValidationError("--inband-port must be 0...65535") }
        if let family = inBandAddressFamily {
            guard ["ipv4", "ipv6"].contains(family) else {
                throw ValidationError(
                    "-f/--inband-adrfam must be ipv4 or ipv6, not \"\(family)\" (ib and fc are not families dem-em's channel speaks)"
                )
            }
            guard let address = inBandAddress else {
                throw ValidationError("-f/--inband-adrfam needs the in-band address (-a/--inband-address)")
            }
            let matches = family == "ipv4" ? IPAddressText.isIPv4(address) : IPAddressText.isIPv6(address)
            guard matches else {
                throw ValidationError(
                    "-a \(address) is not an \(family == "ipv4" ? "IPv4" : "IPv6") address (-f \(family))"
                )
            }
        }
        guard let transport = NVMeTransport(rawValue: inBandTransport) else {
            throw ValidationError("--inband-transport must be tcp or rdma, not \"\(inBandTransport)\"")
        }
        if transport == .rdma && !NVMeRDMATransport.isAvailable {
            throw ValidationError("--inband-transport rdma: \(NVMeRDMATransport.Unavailable())")
        }
        if let inBandNQN, !NQN.isValid(inBandNQN) {
            throw ValidationError("--inband-nqn \"\(inBandNQN)\" is not a valid NQN")
        }
        for host in inBandAllowedHosts where !NQN.isValid(host) {
            throw ValidationError("--inband-allow-host \"\(host)\" is not a valid NQN")
        }
    }

    func run() async throws {
        let logger = logging.bootstrap(label: "dem-em")
        var options = EndpointOptions(dataDirectory: common.resolvedDataDirectory, credentialPath: fabricKey)
        options.nvmetRoot = common.nvmetRoot
        options.spdkSocket = common.resolvedSPDKSocket
        options.sysfsRoot = common.sysfsRoot
        options.allowedDevices = common.allowedDevices
        do {
            options.legacyInterfaces = interfaces.isEmpty ? [] : try LegacyInterface.read(folder: interfaces)
        } catch {
            logger.critical("dem-em cannot start", metadata: ["error": "nvme-dem interface file \(error)"])
            throw ExitCode(1)
        }
        options.apiAddress = apiAddress
        options.apiPort = apiPort
        options.joinURL = join
        options.alias = alias
        options.advertiseAddress = advertiseAddress
        options.advertisePort = advertisePort
        options.adopt = adopt
        options.checkInterval = .milliseconds(Int(checkInterval * 1000))
        options.repairDrift = repairDrift
        options.inBand.address = inBandAddress
        options.inBand.port = inBandPort
        options.inBand.transport = NVMeTransport(rawValue: inBandTransport) ?? .tcp
        options.inBand.nqn = inBandNQN
        options.inBand.allowedHosts = inBandAllowedHosts
        options.connectionLimits = ConnectionLimits(total: maxConnections, perSource: maxConnectionsPerSource)
        options.setupTimeout = .milliseconds(Int64(setupTimeout * 1000))
        options.httpTimeout = .milliseconds(Int64(httpTimeout * 1000))
        let descriptors = DescriptorLimit.raise()
        if descriptors.raised {
            logger.info(
                "raised the descriptor limit",
                metadata: ["soft": "\(descriptors.soft)", "hard": "\(descriptors.hard)"]
            )
        }
        // validate() made sure --token comes with a URL and --ca-hash.
        if let token, let url = enrol ?? join, let caHash {
            do {
                _ = try await EndpointEnrolment.enrol(
                    url: url,
                    token: token,
                    caHash: caHash,
                    alias: alias ?? EndpointEnrolment.defaultAlias,
                    names: EndpointEnrolment.names(options: options),
                    dataDirectory: options.dataDirectory,
                    credentialPath: options.credentialPath,
                    group: MultiThreadedEventLoopGroup.singleton,
                    logger: logger
                )
            } catch {
                logger.critical("dem-em cannot enrol", metadata: ["error": "\(error)"])
                throw ExitCode(1)
            }
        }
        let application: EndpointApplication
        do {
            application = try EndpointApplication.build(options: options, logger: logger)
        } catch let error as FabricCredential.Failure {
            logger.critical(
                "dem-em cannot start",
                metadata: [
                    "error": "\(error)",
                    "fix":
                        "copy dem's fabric.key (in dem's data directory) to \(options.credentialPath), mode 0600, or pass --fabric-key",
                ]
            )
            throw ExitCode(1)
        } catch {
            logger.critical("dem-em cannot start", metadata: ["error": "\(error)"])
            throw ExitCode(1)
        }
        do {
            try await application.serviceGroup.run()
        } catch {
            // A listener that cannot open (a port in use) ends dem-em with one sentence.
            logger.critical("dem-em cannot run", metadata: ["error": "\(error)"])
            throw ExitCode(1)
        }
        logger.notice("dem-em stopped")
    }
}

/// Prints what the machine has.
struct Inventory: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the devices and fabric interfaces found, as JSON.")

    @OptionGroup var common: CommonFlags

    func run() throws {
        let scanner = InventoryScanner(sysfsRoot: common.sysfsRoot, allowedPaths: common.allowedDevices)
        try printJSON(scanner.scan())
    }
}

/// Compares the kernel target with the desired state, without changing anything.
struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print what the kernel target serves and how it differs from the desired state, as JSON.",
        discussion: "Exits 0 when it matches, 1 when it differs."
    )

    @OptionGroup var common: CommonFlags

    func run() throws {
        let service = try makeService(common)
        let status = service.status()
        try printJSON(status)
        if !status.drift.isEmpty || !status.foreign.isEmpty { throw ExitCode(1) }
    }
}

/// Takes nvmetcli's config.json as the desired state.
struct Import: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Take an nvmetcli config.json as the desired state and apply it.",
        discussion: "Objects it names that dem-em did not create are left alone unless --adopt is given."
    )

    @OptionGroup var common: CommonFlags

    @Argument(help: "The nvmetcli config.json (- for standard input).")
    var file: String

    @Flag(help: "Take over kernel target objects the file names that dem-em did not create.")
    var adopt = false

    func run() async throws {
        let data: Data
        if file == "-" {
            data = FileHandle.standardInput.readDataToEndOfFile()
        } else {
            guard let contents = FileManager.default.contents(atPath: file) else {
                throw ValidationError("cannot read \(file)")
            }
            data = contents
        }
        let configuration: EndpointConfiguration
        do {
            configuration = try NvmetcliConfig.decode(data)
        } catch {
            throw ValidationError("\(file): \(error)")
        }
        // Not while dem-em serves this data directory: the two would apply different states.
        let directory = common.resolvedDataDirectory
        try StateDirectory.prepare(directory)
        let lock = try StateDirectoryLock.acquire(directory: directory, owner: "dem-em import")
        defer { lock.release() }
        let service = try makeService(common)
        let status: EndpointStatus
        do throws(ModelError) {
            status = try await service.replace(configuration, adopt: adopt)
        } catch {
            throw ValidationError("\(file): \(error.field): \(error.message)")
        }
        try printJSON(status)
        if !status.errors.isEmpty { throw ExitCode(1) }
    }
}

/// Prints the kernel target as nvmetcli's config.json.
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the kernel target as an nvmetcli config.json.")

    @OptionGroup var common: CommonFlags

    @Flag(help: "Print the desired state instead of what the kernel target has.")
    var desired = false

    func run() throws {
        let service = try makeService(common)
        let data = try NvmetcliConfig.encode(desired ? service.desired : try service.backend.actual())
        FileHandle.standardOutput.write(data)
        FileHandle.standardOutput.write(Data("\n".utf8))
    }
}

func makeService(_ common: CommonFlags) throws -> EndpointService {
    var logger = Logger(label: "dem-em")
    logger.logLevel = .warning
    return try EndpointService.open(
        dataDirectory: common.resolvedDataDirectory,
        nvmetRoot: common.nvmetRoot,
        spdkSocket: common.resolvedSPDKSocket,
        sysfsRoot: common.sysfsRoot,
        allowedDevices: common.allowedDevices,
        logger: logger
    )
}

func printJSON(_ value: some Encodable) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    encoder.dateEncodingStrategy = .iso8601
    FileHandle.standardOutput.write(try encoder.encode(value))
    FileHandle.standardOutput.write(Data("\n".utf8))
}
