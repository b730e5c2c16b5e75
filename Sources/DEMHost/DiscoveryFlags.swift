import ArgumentParser
import DEMConfig
import DEMCore
import Foundation
import Logging

/// The discovery controllers and host identity dem-ac and dem-dm share.
public struct DiscoveryFlags: ParsableArguments {
    public init() {}

    @Option(
        name: [.customShort("t"), .customLong("transport")],
        help: "Transport of the discovery controllers given with -a: tcp, or rdma (a build with the RDMA trait)."
    )
    public var transport: String = "tcp"

    @Option(
        name: [.customShort("f"), .customLong("adrfam")],
        help: "Address family of -a: ipv4 or ipv6 (nvme-dem's -f; checked against each address)."
    )
    public var addressFamily: String?

    @Option(name: [.customShort("a"), .customLong("traddr")], help: "A discovery controller's address (repeatable).")
    public var addresses: [String] = []

    @Option(name: [.customShort("s"), .customLong("trsvcid")], help: "Their port.")
    public var serviceIdentifier: String = "8009"

    @Option(name: .customLong("discovery-conf"), help: "nvme-cli's discovery configuration (a missing file is fine).")
    public var discoveryConfiguration: String = DiscoveryConfigurationFile.defaultPath

    @Option(
        name: [.customShort("q"), .customShort("h"), .customLong("hostnqn")],
        help: "Host NQN (default: /etc/nvme/hostnqn; -h as in nvme-dem, --help for help)."
    )
    public var hostNQN: String?

    @Option(name: [.customShort("I"), .customLong("hostid")], help: "Host ID, a UUID (default: /etc/nvme/hostid).")
    public var hostID: String?

    @Option(name: .customLong("hostnqn-file"), help: "Where the host NQN is kept.")
    public var hostNQNFile: String = HostIdentity.defaultHostNQNPath

    @Option(name: .customLong("hostid-file"), help: "Where the host ID is kept.")
    public var hostIDFile: String = HostIdentity.defaultHostIDPath

    @Option(
        name: .customLong("dhchap-secret"),
        help:
            "The host's DH-HMAC-CHAP secret (DHHC-1:hh:…:), for discovery and I/O controllers that ask (default: --dhchap-secret-file, else the host's dhchap_key in nvme-cli's config.json)."
    )
    public var dhchapSecret: String?

    @Option(name: .customLong("dhchap-secret-file"), help: "A file holding the host's DH-HMAC-CHAP secret.")
    public var dhchapSecretFile: String?

    @Option(
        name: .customLong("dhchap-ctrl-secret"),
        help: "The controllers' DH-HMAC-CHAP secret: they must prove themselves too (two-way)."
    )
    public var dhchapControllerSecret: String?

    @Option(name: .customLong("dhchap-ctrl-secret-file"), help: "A file holding the controllers' secret.")
    public var dhchapControllerSecretFile: String?

    @Option(name: .customLong("nvme-config"), help: "nvme-cli's JSON configuration (a missing file is fine).")
    public var nvmeConfiguration: String = "/etc/nvme/config.json"

    @Option(
        name: .customLong("kato"),
        parsing: .unconditional,
        help: "Keep-alive timeout of the discovery connections, in seconds."
    )
    public var keepAlive: Int = 30

    @Option(
        name: .customLong("backoff-cap"),
        parsing: .unconditional,
        help: "Longest wait between reconnection attempts, in seconds."
    )
    public var backoffCap: Int = 60

    @Flag(
        name: .customLong("mdns"),
        help:
            "Also find discovery controllers by multicast DNS (_nvme-disc._tcp, TP8009) and follow them; the default when no controller is configured."
    )
    public var mdns = false

    @OptionGroup public var logging: LoggingOptions

    @Flag(
        name: [.customShort("S"), .customLong("standalone")],
        help: "Run in the foreground, as it always does (nvme-dem's -S)."
    )
    public var standalone = false

    public func validate() throws {
        switch transport {
        case "tcp": break
        case "rdma":
            guard NVMeRDMATransport.isAvailable else {
                throw ValidationError("-t rdma: \(NVMeRDMATransport.Unavailable())")
            }
        default:
            throw ValidationError("-t must be tcp or rdma, not \"\(transport)\"")
        }
        if let addressFamily {
            switch addressFamily {
            case "ipv4", "ipv6":
                for address in addresses {
                    let other = addressFamily == "ipv4" ? IPAddressText.isIPv6(address) : IPAddressText.isIPv4(address)
                    if other {
                        throw ValidationError(
                            "-a \(address) is not an \(addressFamily == "ipv4" ? "IPv4" : "IPv6") address (-f \(addressFamily))"
                        )
                    }
                }
            case "ib", "fc":
                throw ValidationError(
                    "-f \(addressFamily): discovery controllers are reached over tcp or rdma, with ipv4 or ipv6 addresses"
                )
            default:
                throw ValidationError("-f must be ipv4 or ipv6, not \"\(addressFamily)\"")
            }
        }
        guard let port = Int(serviceIdentifier), (1...65535).contains(port) else {
            throw ValidationError("-s must be a port 1...65535, not \"\(serviceIdentifier)\"")
        }
        guard (1...3600).contains(keepAlive) else { throw ValidationError("--kato must be 1...3600 seconds") }
        guard (1...3600).contains(backoffCap) else { throw ValidationError("--backoff-cap must be 1...3600 seconds") }
    }

    /// Whether to browse multicast DNS for controllers: --mdns, or none configured.
    public func browsesMDNS(_ controllers: [DiscoveryControllerAddress]) -> Bool { mdns || controllers.isEmpty }

    /// The controllers of -a and of the discovery configuration file, without repeats (none:
    /// they are found by multicast DNS).
    public func controllers() throws -> [DiscoveryControllerAddress] {
        var result = addresses.map {
            DiscoveryControllerAddress(
                transportType: transport == "rdma" ? .rdma : .tcp,
                transportAddress: $0,
                transportServiceIdentifier: serviceIdentifier
            )
        }
        do {
            result += try DiscoveryConfigurationFile.read(path: discoveryConfiguration)
        } catch .notFound {
        } catch {
            throw ValidationError("\(error)")
        }
        var seen = Set<DiscoveryControllerKey>()
        return result.filter { seen.insert($0.key).inserted }
    }

    public func identity() throws -> HostIdentity {
        var identity: HostIdentity
        do {
            identity = try HostIdentity.load(
                hostNQN: hostNQN,
                hostID: hostID,
                hostNQNPath: hostNQNFile,
                hostIDPath: hostIDFile
            )
        } catch {
            throw ValidationError("\(error)")
        }
        identity.dhchapSecret = try Self.secret(
            dhchapSecret,
            file: dhchapSecretFile,
            flag: "--dhchap-secret",
            fallback: {
                Self.configuredKey(path: nvmeConfiguration, hostNQN: identity.hostNQN.value, field: "dhchap_key")
            }
        )
        identity.dhchapControllerSecret = try Self.secret(
            dhchapControllerSecret,
            file: dhchapControllerSecretFile,
            flag: "--dhchap-ctrl-secret",
            fallback: { nil }
        )
        if identity.dhchapControllerSecret != nil && identity.dhchapSecret == nil {
            throw ValidationError("--dhchap-ctrl-secret needs the host's own secret too (--dhchap-secret)")
        }
        return identity
    }

    /// A secret from its flag, else its file, else `fallback`; an unreadable one names its source.
    static func secret(
        _ text: String?,
        file: String?,
        flag: String,
        fallback: () -> (text: String, source: String)?
    ) throws -> DHCHAPSecret? {
        if text != nil && file != nil { throw ValidationError("give \(flag) or \(flag)-file, not both") }
        var value: (text: String, source: String)?
        if let text { value = (text, flag) }
        if let file {
            guard let contents = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw ValidationError("\(flag)-file: cannot read \(file)")
            }
            value = (contents.trimmingCharacters(in: .whitespacesAndNewlines), "\(flag)-file \(file)")
        }
        guard let value = value ?? fallback() else { return nil }
        do {
            return try DHCHAPSecret(parsing: value.text)
        } catch {
            throw ValidationError("\(value.source): \(error)")
        }
    }

    /// The host's secret in nvme-cli's config.json (`hosts[].dhchap_key` of this host NQN).
    static func configuredKey(path: String, hostNQN: String, field: String) -> (text: String, source: String)? {
        guard let data = FileManager.default.contents(atPath: path),
            let configuration = try? JSONValue(parsing: Array(data)),
            let hosts = configuration["hosts"]?.arrayValue,
            let key = hosts.first(where: { $0["hostnqn"]?.stringValue == hostNQN })?[field]?.stringValue,
            !key.isEmpty
        else { return nil }
        return (key, "\(path) (\(field) of \(hostNQN))")
    }

    public var watchConfiguration: DiscoveryWatch.Configuration {
        DiscoveryWatch.Configuration(keepAliveTimeout: .seconds(keepAlive), maximumBackoff: .seconds(backoffCap))
    }

    public func bootstrapLogging(label: String) -> Logger {
        logging.bootstrap(label: label)
    }
}
