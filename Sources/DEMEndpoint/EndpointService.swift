import DEMCore
import Dispatch
import Foundation
import Logging
import Synchronization

/// dem-em's one writer: it keeps the desired state (in `desired.json` in its data directory,
/// so it survives a reboot that empties configfs), applies it to the kernel target through the
/// ``NvmetBackend`` one change at a time, and answers what it applied and what it found.
public final class EndpointService: Sendable {
    /// The desired state as it is kept on disk.
    struct Stored: Codable {
        var generation: Int
        var configuration: EndpointConfiguration

        enum CodingKeys: String, CodingKey {
            case generation = "Generation"
            case configuration = "Configuration"
        }
    }

    private struct State {
        var stored: Stored
        var appliedGeneration: Int?
        var lastErrors: [String] = []
    }

    public let backend: NvmetBackend
    public let scanner: InventoryScanner
    private let statePath: String
    private let state: Mutex<State>
    private let writer = DispatchQueue(label: "dem-em.writer")
    private let logger: Logger

    /// Loads the desired state from `dataDirectory/desired.json` (empty when there is none).
    public init(dataDirectory: String, backend: NvmetBackend, scanner: InventoryScanner, logger: Logger) throws {
        self.backend = backend
        self.scanner = scanner
        self.logger = logger
        statePath = dataDirectory + "/desired.json"
        var stored = Stored(generation: 0, configuration: EndpointConfiguration())
        if let data = FileManager.default.contents(atPath: statePath) {
            do {
                stored = try JSONDecoder().decode(Stored.self, from: data)
            } catch {
                throw NvmetBackendError("cannot read the desired state \(statePath): \(error)")
            }
        }
        state = Mutex(State(stored: stored))
    }

    /// The service on the real (or, in tests, a folder's) configfs: the data directory made
    /// (mode 0700), the ownership ledger `owned.json` and the desired state `desired.json` in it.
    public static func open(
        dataDirectory: String,
        nvmetRoot: String,
        sysfsRoot: String = "/sys",
        allowedDevices: [String] = [],
        logger: Logger
    ) throws -> EndpointService {
        try FileManager.default.createDirectory(
            atPath: dataDirectory,
            withIntermediateDirectories: true,
            attributes: [.posixPermissions: 0o700]
        )
        let backend = try NvmetBackend(
            fileSystem: PosixNvmetFileSystem(root: nvmetRoot),
            ledgerPath: dataDirectory + "/owned.json",
            logger: logger
        )
        return try EndpointService(
            dataDirectory: dataDirectory,
            backend: backend,
            scanner: InventoryScanner(sysfsRoot: sysfsRoot, allowedPaths: allowedDevices),
            logger: logger
        )
    }

    /// The desired state.
    public var desired: EndpointConfiguration { state.withLock { $0.stored.configuration } }

    /// Applies the desired state (at start: configfs is empty after a reboot).
    public func applyDesired(adopt: Bool = false) async -> EndpointStatus {
        await onWriter { self.applyLocked(adopt: adopt) }
    }

    /// Replaces the desired state, keeps it, and applies it.
    /// - Throws: ``ModelError`` when it cannot be applied; nothing changes then.
    public func replace(
        _ configuration: EndpointConfiguration,
        adopt: Bool = false
    ) async throws(ModelError) -> EndpointStatus {
        try await change(adopt: adopt) { desired throws(ModelError) in desired = configuration }
    }

    /// Changes the desired state with `body`, keeps it, and applies it.
    /// - Throws: ``ModelError`` from `body` or when the result cannot be applied; nothing
    ///   changes then.
    public func change(
        adopt: Bool = false,
        _ body: @escaping @Sendable (inout EndpointConfiguration) throws(ModelError) -> Void
    ) async throws(ModelError) -> EndpointStatus {
        let result: Result<EndpointStatus, ModelError> = await onWriter {
            var configuration = self.desired
            do throws(ModelError) {
                try body(&configuration)
            } catch {
                return .failure(error)
            }
            configuration = EndpointConfiguration(
                ports: configuration.ports,
                hosts: configuration.hosts,
                subsystems: configuration.subsystems
            )
            if let problem = configuration.problem() { return .failure(problem) }
            if configuration != self.desired {
                let stored = self.state.withLock { state in
                    state.stored = Stored(generation: state.stored.generation + 1, configuration: configuration)
                    return state.stored
                }
                do {
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                    try SecretFile.write(
                        String(decoding: try encoder.encode(stored), as: UTF8.self) + "\n",
                        to: self.statePath
                    )
                } catch {
                    // Applied but not kept: say so loudly; the next change retries.
                    self.logger.error(
                        "cannot keep the desired state; it is applied but a restart would lose it",
                        metadata: ["path": "\(self.statePath)", "error": "\(error)"]
                    )
                }
            }
            return .success(self.applyLocked(adopt: adopt))
        }
        return try result.get()
    }

    /// Removes what dem-em created (or, with `all`, everything in the kernel target) and empties
    /// the desired state.
    public func reset(all: Bool) async throws(ModelError) -> EndpointStatus {
        let status = try await change { desired throws(ModelError) in desired = EndpointConfiguration() }
        guard all else { return status }
        return await onWriter {
            let result = self.backend.reset(all: true)
            self.log(result, what: "reset")
            return self.status(errors: result.errorLines)
        }
    }

    /// The status: the desired generation, what is live, drift against the desired state.
    public func status() -> EndpointStatus {
        status(errors: state.withLock { $0.lastErrors })
    }

    private func status(errors: [String]) -> EndpointStatus {
        let (generation, applied, desired) = state.withLock {
            ($0.stored.generation, $0.appliedGeneration, $0.stored.configuration)
        }
        let check = backend.check(desired)
        return EndpointStatus(
            generation: generation,
            appliedGeneration: applied,
            live: check.live,
            drift: check.drift,
            foreign: check.foreign,
            errors: errors
        )
    }

    /// What the machine has now.
    public func inventory() -> EndpointInventory { scanner.scan() }

    private func applyLocked(adopt: Bool) -> EndpointStatus {
        let (generation, desired) = state.withLock { ($0.stored.generation, $0.stored.configuration) }
        let result = backend.reconcile(desired, adopt: adopt)
        log(result, what: "apply")
        let errors = result.errorLines
        state.withLock { state in
            state.lastErrors = errors
            if result.succeeded { state.appliedGeneration = generation }
        }
        return EndpointStatus(
            generation: generation,
            appliedGeneration: state.withLock { $0.appliedGeneration },
            live: result.live,
            drift: result.drift,
            foreign: result.foreign,
            errors: errors
        )
    }

    private func log(_ result: NvmetReconcileResult, what: String) {
        for line in result.operations { logger.info("nvmet", metadata: ["op": "\(line)"]) }
        for note in result.notes { logger.notice("nvmet left alone", metadata: ["note": "\(note)"]) }
        for error in result.errorLines { logger.error("nvmet operation failed", metadata: ["error": "\(error)"]) }
        logger.info(
            "\(what) done",
            metadata: [
                "operations": "\(result.operationCount)", "errors": "\(result.errorLines.count)",
                "foreign": "\(result.foreign.count)", "drift": "\(result.drift.count)",
            ]
        )
    }

    private func onWriter<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            writer.async { continuation.resume(returning: body()) }
        }
    }
}
