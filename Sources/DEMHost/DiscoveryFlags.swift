import ArgumentParser
import DEMCore
import Logging

/// The discovery controllers and host identity dem-ac and dem-dm share.
public struct DiscoveryFlags: ParsableArguments {
    public init() {}

    @Option(
        name: [.customShort("t"), .customLong("transport")],
        help: "Transport of the discovery controllers given with -a."
    )
    public var transport: String = "tcp"

    @Option(name: [.customShort("a"), .customLong("traddr")], help: "A discovery controller's address (repeatable).")
    public var addresses: [String] = []

    @Option(name: [.customShort("s"), .customLong("trsvcid")], help: "Their port.")
    public var serviceIdentifier: String = "8009"

    @Option(name: .customLong("discovery-conf"), help: "nvme-cli's discovery configuration (a missing file is fine).")
    public var discoveryConfiguration: String = DiscoveryConfigurationFile.defaultPath

    @Option(name: [.customShort("q"), .customLong("hostnqn")], help: "Host NQN (default: /etc/nvme/hostnqn).")
    public var hostNQN: String?

    @Option(name: [.customShort("I"), .customLong("hostid")], help: "Host ID, a UUID (default: /etc/nvme/hostid).")
    public var hostID: String?

    @Option(name: .customLong("hostnqn-file"), help: "Where the host NQN is kept.")
    public var hostNQNFile: String = HostIdentity.defaultHostNQNPath

    @Option(name: .customLong("hostid-file"), help: "Where the host ID is kept.")
    public var hostIDFile: String = HostIdentity.defaultHostIDPath

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

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    public var logLevel: Logger.Level = .info

    public func validate() throws {
        guard transport == "tcp" else { throw ValidationError("-t: only tcp discovery controllers are supported") }
        guard let port = Int(serviceIdentifier), (1...65535).contains(port) else {
            throw ValidationError("-s must be a port 1...65535, not \"\(serviceIdentifier)\"")
        }
        guard (1...3600).contains(keepAlive) else { throw ValidationError("--kato must be 1...3600 seconds") }
        guard (1...3600).contains(backoffCap) else { throw ValidationError("--backoff-cap must be 1...3600 seconds") }
    }

    /// The controllers of -a and of the discovery configuration file, without repeats.
    public func controllers() throws -> [DiscoveryControllerAddress] {
        var result = addresses.map {
            DiscoveryControllerAddress(
                transportType: .tcp,
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
        result = result.filter { seen.insert($0.key).inserted }
        guard !result.isEmpty else {
            throw ValidationError(
                "no discovery controller: give -a ADDRESS, or list controllers in \(discoveryConfiguration)"
            )
        }
        return result
    }

    public func identity() throws -> HostIdentity {
        do {
            return try HostIdentity.load(
                hostNQN: hostNQN,
                hostID: hostID,
                hostNQNPath: hostNQNFile,
                hostIDPath: hostIDFile
            )
        } catch {
            throw ValidationError("\(error)")
        }
    }

    public var watchConfiguration: DiscoveryWatch.Configuration {
        DiscoveryWatch.Configuration(keepAliveTimeout: .seconds(keepAlive), maximumBackoff: .seconds(backoffCap))
    }

    public func bootstrapLogging(label: String) -> Logger {
        let level = logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        return Logger(label: label)
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
