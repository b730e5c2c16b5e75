import DEMCore
import Dispatch
import Foundation
import Logging
import Synchronization

/// dem-em's one writer: it keeps the desired state (in `desired.json` in its data directory,
/// so it survives a reboot that empties configfs or a restart of SPDK), applies it to the target
/// through its ``TargetBackend`` (nvmet or SPDK) one change at a time, and answers what it
/// applied and what it found.
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
        /// Why nothing is applied now (see ``EndpointStatus/hold``).
        var hold: String?
        var owner: EndpointOwner?
    }

    public let backend: any TargetBackend
    public let scanner: InventoryScanner
    private let statePath: String
    private let ownerPath: String
    private let state: Mutex<State>
    private let writer = DispatchQueue(label: "dem-em.writer")
    private let logger: Logger

    /// Loads the desired state from `dataDirectory/desired.json` and the owner from
    /// `dataDirectory/owner.json`.
    ///
    /// A desired state that is missing while the ledger owns objects, or that cannot be read, is
    /// never taken for an empty one (which would remove everything dem-em created): the service
    /// holds — applies nothing, says why in its status — until a configuration is pushed.
    public init(dataDirectory: String, backend: any TargetBackend, scanner: InventoryScanner, logger: Logger) throws {
        self.backend = backend
        self.scanner = scanner
        self.logger = logger
        statePath = dataDirectory + "/desired.json"
        ownerPath = dataDirectory + "/owner.json"
        var stored = Stored(generation: 0, configuration: EndpointConfiguration())
        var hold: String? = nil
        let owned = backend.ownedCount
        let remedy =
            "nothing in the kernel target is changed until dem pushes its configuration (it does when it next reaches dem-em) or an operator sets one (PUT /config, PUT /nvmetcli; DELETE /config removes what dem-em created)"
        if FileManager.default.fileExists(atPath: statePath) {
            do {
                let data = try Data(contentsOf: URL(fileURLWithPath: statePath))
                stored = try JSONDecoder().decode(Stored.self, from: data)
            } catch {
                hold = "the desired state \(statePath) cannot be read (\(Self.describe(error))); \(remedy)"
            }
        } else if owned > 0 {
            hold =
                "the desired state \(statePath) is missing while dem-em owns \(owned) objects in the kernel target (\(backend.ledgerPath)); \(remedy)"
        }
        var owner: EndpointOwner? = nil
        if FileManager.default.fileExists(atPath: ownerPath) {
            do {
                let decoder = JSONDecoder()
                decoder.dateDecodingStrategy = .iso8601
                owner = try decoder.decode(EndpointOwner.self, from: Data(contentsOf: URL(fileURLWithPath: ownerPath)))
            } catch {
                throw NvmetBackendError(
                    "cannot read \(ownerPath), which names the target this dem-em belongs to (\(Self.describe(error))): restore it, or remove it to let the next dem that configures dem-em own it"
                )
            }
        }
        if let hold {
            logger.error("holding: the kernel target is left as it is", metadata: ["reason": "\(hold)"])
        }
        state = Mutex(State(stored: stored, hold: hold, owner: owner))
    }

    private static func describe(_ error: any Error) -> String {
        if let error = error as? DecodingError {
            switch error {
            case .dataCorrupted(let context):
                return "not JSON: \(context.underlyingError.map { "\($0)" } ?? context.debugDescription)"
            case .keyNotFound(let key, _): return "no \(key.stringValue)"
            case .typeMismatch(_, let context), .valueNotFound(_, let context):
                return "\(context.codingPath.map(\.stringValue).joined(separator: ".")): \(context.debugDescription)"
            @unknown default: return "\(error)"
            }
        }
        return "\(error)"
    }

    /// The service on the real (or, in tests, a folder's) configfs: the data directory made
    /// (mode 0700), the ownership ledger `owned.json` and the desired state `desired.json` in it.
    public static func open(
        dataDirectory: String,
        nvmetRoot: String,
        spdkSocket: String? = nil,
        sysfsRoot: String = "/sys",
        allowedDevices: [String] = [],
        legacyInterfaces: [LegacyInterface] = [],
        credential: String? = nil,
        logger: Logger
    ) throws -> EndpointService {
        try StateDirectory.prepare(dataDirectory)
        // A folder standing in for configfs gets its ports/, subsystems/ and hosts/ made.
        let backend: any TargetBackend
        if let spdkSocket {
            // SPDK's objects have their own ledger: switching backends never confuses the two.
            backend = try SPDKBackend(
                client: SPDKRPCClient(socketPath: spdkSocket),
                ledgerPath: dataDirectory + "/owned-spdk.json",
                logger: logger
            )
        } else {
            backend = try NvmetBackend(
                root: nvmetRoot,
                ledgerPath: dataDirectory + "/owned.json",
                logger: logger,
                credential: credential
            )
        }
        return try EndpointService(
            dataDirectory: dataDirectory,
            backend: backend,
            scanner: InventoryScanner(
                sysfsRoot: sysfsRoot,
                allowedPaths: allowedDevices,
                legacyInterfaces: legacyInterfaces
            ),
            logger: logger
        )
    }

    /// Why nothing is applied now, or nil.
    public var hold: String? { state.withLock { $0.hold } }

    /// The target and dem this dem-em belongs to, once recorded.
    public var owner: EndpointOwner? { state.withLock { $0.owner } }

    /// The desired state.
    public var desired: EndpointConfiguration { state.withLock { $0.stored.configuration } }

    /// Applies the desired state (at start: configfs is empty after a reboot).
    public func applyDesired(adopt: Bool = false) async -> EndpointStatus {
        await onWriter { self.applyLocked(adopt: adopt) }
    }

    /// Replaces the desired state, keeps it, and applies it.
    ///
    /// - Parameter owner: who sends it (dem names its target and itself): recorded as this
    ///   dem-em's owner the first time; any other is refused.
    /// - Throws: ``ModelError`` when it cannot be applied (or comes from another owner); nothing
    ///   changes then.
    public func replace(
        _ configuration: EndpointConfiguration,
        adopt: Bool = false,
        from owner: EndpointOwner? = nil
    ) async throws(ModelError) -> EndpointStatus {
        try await change(adopt: adopt, from: owner) { desired throws(ModelError) in desired = configuration }
    }

    /// Changes the desired state with `body`, keeps it, and applies it. A change lifts a hold.
    /// - Throws: ``ModelError`` from `body` or when the result cannot be applied; nothing
    ///   changes then.
    public func change(
        adopt: Bool = false,
        from owner: EndpointOwner? = nil,
        _ body: @escaping @Sendable (inout EndpointConfiguration) throws(ModelError) -> Void
    ) async throws(ModelError) -> EndpointStatus {
        let result: Result<EndpointStatus, ModelError> = await onWriter {
            if let owner {
                do throws(ModelError) { try self.claim(for: owner) } catch { return .failure(error) }
            }
            var configuration = self.desired
            do throws(ModelError) {
                try body(&configuration)
            } catch {
                return .failure(error)
            }
            configuration = EndpointConfiguration(
                ports: configuration.ports,
                hosts: configuration.hosts,
                subsystems: configuration.subsystems,
                hostKeys: configuration.hostKeys
            )
            if let problem = configuration.problem() { return .failure(problem) }
            let held = self.state.withLock { $0.hold != nil }
            if configuration != self.desired || held {
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
                if held {
                    self.state.withLock { $0.hold = nil }
                    self.logger.notice(
                        "a configuration was set: no longer holding",
                        metadata: ["generation": "\(stored.generation)"]
                    )
                }
            }
            return .success(self.applyLocked(adopt: adopt))
        }
        return try result.get()
    }

    /// Records `owner` as this dem-em's owner when it has none; refuses any other (on the
    /// writer).
    private func claim(for owner: EndpointOwner) throws(ModelError) {
        if let current = state.withLock({ $0.owner }) {
            guard current.isSame(as: owner) else {
                throw .conflict(
                    "target",
                    "this dem-em belongs to target \"\(current.target)\" of the dem whose host NQN is \(current.dem); it refuses the configuration of target \"\(owner.target)\" (\(owner.dem)). A dem-em manages one target: give \"\(owner.target)\" the address of its own dem-em, or release this one (DELETE /owner, or remove \(ownerPath) while dem-em is stopped)"
                )
            }
            return
        }
        var recorded = owner
        recorded.since = Date()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        do {
            try AtomicFile.write(try encoder.encode(recorded), to: ownerPath, mode: 0o600, folderMode: 0o700)
        } catch {
            throw .invalid("target", "cannot record the owner in \(ownerPath): \(error)")
        }
        state.withLock { $0.owner = recorded }
        logger.notice(
            "dem-em now belongs to a target",
            metadata: ["target": "\(recorded.target)", "dem": "\(recorded.dem)"]
        )
    }

    /// Forgets the owner: the next dem that pushes a configuration owns this dem-em.
    /// - Returns: the owner it had.
    public func releaseOwner() async -> EndpointOwner? {
        await onWriter {
            let previous = self.state.withLock { state in
                defer { state.owner = nil }
                return state.owner
            }
            if previous != nil {
                unlink(self.ownerPath)
                self.logger.notice(
                    "owner released",
                    metadata: ["was": "\(previous.map { "\($0.target) (\($0.dem))" } ?? "-")"]
                )
            }
            return previous
        }
    }

    /// Removes what dem-em created (or, with `all`, everything in the kernel target) and empties
    /// the desired state.
    public func reset(all: Bool) async throws(ModelError) -> EndpointStatus {
        let status = try await change { desired throws(ModelError) in desired = EndpointConfiguration() }
        guard all else { return status }
        return await onWriter {
            let result = self.backend.resetTarget(all: true)
            self.log(result, what: "reset")
            return self.status(errors: result.errors)
        }
    }

    /// The status: the desired generation, what is live, drift against the desired state.
    public func status() -> EndpointStatus {
        status(errors: state.withLock { $0.lastErrors })
    }

    private func status(errors: [String]) -> EndpointStatus {
        let (generation, applied, desired, hold, owner) = state.withLock {
            ($0.stored.generation, $0.appliedGeneration, $0.stored.configuration, $0.hold, $0.owner)
        }
        let check = backend.check(desired)
        return EndpointStatus(
            generation: generation,
            appliedGeneration: applied,
            live: check.live,
            // While holding, the desired state is not known: nothing is compared with it.
            drift: hold == nil ? check.drift : [],
            foreign: hold == nil ? check.foreign : [],
            errors: errors,
            hold: hold,
            owner: owner,
            backend: backend.describe()
        )
    }

    /// What the machine has now.
    public func inventory() -> EndpointInventory {
        var inventory = scanner.scan()
        backend.inventory(&inventory)
        return inventory
    }

    private func applyLocked(adopt: Bool) -> EndpointStatus {
        let (generation, desired, hold) = state.withLock { ($0.stored.generation, $0.stored.configuration, $0.hold) }
        if let hold {
            logger.warning("holding: nothing applied", metadata: ["reason": "\(hold)"])
            return status(errors: state.withLock { $0.lastErrors })
        }
        let result = backend.apply(desired, adopt: adopt)
        log(result, what: "apply")
        let errors = result.errors
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
            errors: errors,
            owner: state.withLock { $0.owner },
            backend: backend.describe()
        )
    }

    private func log(_ result: TargetApplyResult, what: String) {
        for line in result.operations { logger.info("applied", metadata: ["op": "\(line)"]) }
        for note in result.notes { logger.notice("left alone", metadata: ["note": "\(note)"]) }
        for error in result.errors { logger.error("operation failed", metadata: ["error": "\(error)"]) }
        logger.info(
            "\(what) done",
            metadata: [
                "operations": "\(result.operations.count)", "errors": "\(result.errors.count)",
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
