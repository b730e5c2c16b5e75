import DEMCore
import Foundation
import Logging
import Synchronization

/// An operation (or a step around it) that failed while applying a plan.
public struct NvmetFailure: Error, Sendable, Hashable, CustomStringConvertible {
    /// The operation, or nil for a failure outside one (the ledger, the configuration, the root).
    public var operation: NvmetOperation?
    /// The full path (or the configuration field) at fault.
    public var path: String
    /// The errno, when the failure is a failed call.
    public var code: Int32?
    /// The errno's text, or what went wrong.
    public var message: String

    public init(operation: NvmetOperation?, path: String, code: Int32? = nil, message: String) {
        self.operation = operation
        self.path = path
        self.code = code
        self.message = message
    }

    init(operation: NvmetOperation, error: NvmetFileError) {
        self.init(operation: operation, path: error.path, code: error.code, message: error.errnoText)
    }

    /// One line, such as `mkdir ports/1 (/sys/kernel/config/nvmet/ports/1): File exists (EEXIST)`.
    public var description: String {
        guard let operation else { return "\(path): \(message)" }
        return "\(operation) (\(path)): \(message)"
    }
}

/// What a reconcile or reset did and what it left.
public struct NvmetReconcileResult: Sendable, Hashable {
    /// The operations performed, one line each.
    public var operations: [String]
    /// Operations that failed, in order; the rest were still attempted.
    public var errors: [NvmetFailure]
    /// Operations not attempted because the folder they needed could not be made.
    public var skipped: [String]
    /// Desired objects left alone because dem-em does not own them (after a reset: every object
    /// left that dem-em does not own).
    public var foreign: [String]
    /// Differences from the desired state remaining after the operations.
    public var drift: [EndpointDrift]
    /// What the kernel target serves, as read back.
    public var live: [LiveSubsystem]
    /// What the planner chose not to do and why.
    public var notes: [String]

    public init(
        operations: [String] = [],
        errors: [NvmetFailure] = [],
        skipped: [String] = [],
        foreign: [String] = [],
        drift: [EndpointDrift] = [],
        live: [LiveSubsystem] = [],
        notes: [String] = []
    ) {
        self.operations = operations
        self.errors = errors
        self.skipped = skipped
        self.foreign = foreign
        self.drift = drift
        self.live = live
        self.notes = notes
    }

    public var operationCount: Int { operations.count }
    /// Whether every operation succeeded.
    public var succeeded: Bool { errors.isEmpty && skipped.isEmpty }
    /// The errors as lines, for ``EndpointStatus/errors``.
    public var errorLines: [String] { errors.map(\.description) + skipped.map { "skipped: \($0)" } }
}

/// The backend cannot start.
public struct NvmetBackendError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { message }
}

/// Makes the kernel target (configfs, or a folder emulating it) match a desired state, keeping a
/// ledger of the ports, subsystems and hosts it created so it never changes anything else
/// unasked. Calls are synchronous and serialised by a lock; the caller runs them off the event
/// loop.
public final class NvmetBackend: Sendable {
    public let fileSystem: any NvmetFileSystem
    public let ledger: NvmetLedger
    private let logger: Logger
    private let owned: Mutex<NvmetOwnership>
    /// The fabric credential the hosts' DH-HMAC-CHAP secrets are sealed under; nil: none can
    /// be opened.
    private let credential: String?

    /// A backend on the nvmet tree at `root` (configfs when statfs says so, otherwise a folder
    /// emulating it, whose `ports`, `subsystems` and `hosts` folders are created when missing),
    /// owning what the ledger at `ledgerPath` records.
    public convenience init(
        root: String,
        ledgerPath: String,
        logger: Logger,
        mode: PosixNvmetFileSystem.Mode = .automatic,
        credential: String? = nil
    ) throws {
        let fileSystem = PosixNvmetFileSystem(root: root, mode: mode)
        guard Self.isDirectory(fileSystem.root) else {
            throw NvmetBackendError("nvmet root \(root) does not exist (is the nvmet module loaded?)")
        }
        if fileSystem.isEmulated {
            for group in ["ports", "subsystems", "hosts"] where !fileSystem.exists(group) {
                try fileSystem.makeDirectory(group)
            }
        }
        try self.init(fileSystem: fileSystem, ledgerPath: ledgerPath, logger: logger, credential: credential)
        logger.info(
            "nvmet backend ready",
            metadata: [
                "root": "\(fileSystem.root)", "configfs": "\(!fileSystem.isEmulated)", "ledger": "\(ledgerPath)",
            ]
        )
    }

    /// A backend on any filesystem implementation.
    public init(fileSystem: any NvmetFileSystem, ledgerPath: String, logger: Logger, credential: String? = nil) throws {
        self.credential = credential
        self.fileSystem = fileSystem
        self.ledger = NvmetLedger(path: ledgerPath)
        self.logger = logger
        self.owned = Mutex(try ledger.load())
    }

    /// What dem-em owns now.
    public var ownership: NvmetOwnership { owned.withLock { $0 } }

    /// The tree as it is now.
    public func tree() -> NvmetTree { NvmetTree.read(from: fileSystem) }

    /// The plan a reconcile would follow now, without applying it.
    public func plan(_ desired: EndpointConfiguration, adopt: Bool = false) -> NvmetPlan {
        let owned = ownership
        let secrets = (try? openSecrets(desired).get()) ?? [:]
        return NvmetPlanner.plan(desired: desired, actual: tree(), owned: owned, adopt: adopt, hostSecrets: secrets)
    }

    /// The hosts' DH-HMAC-CHAP attributes as nvmet takes them, opened from `desired.hostKeys`;
    /// a key that does not open (sealed under another credential, or for another host) fails.
    func openSecrets(_ desired: EndpointConfiguration) -> Result<[String: NvmetHostAuthentication], NvmetFailure> {
        var secrets: [String: NvmetHostAuthentication] = [:]
        for (index, key) in desired.hostKeys.enumerated() {
            func failure(_ field: String) -> NvmetFailure {
                NvmetFailure(
                    operation: nil,
                    path: "HostKeys[\(index)].\(field)",
                    message:
                        "the DH-HMAC-CHAP secret of \(key.hostNQN) does not open with this dem-em's fabric credential (is fabric.key dem's?)"
                )
            }
            guard let credential,
                let secret = HostKeySeal.open(key.sealedSecret, hostNQN: key.hostNQN, credential: credential)
            else { return .failure(failure("SealedSecret")) }
            var controller: DHCHAPSecret?
            if let sealed = key.sealedControllerSecret {
                guard let opened = HostKeySeal.open(sealed, hostNQN: key.hostNQN, credential: credential) else {
                    return .failure(failure("SealedControllerSecret"))
                }
                controller = opened
            }
            secrets[key.hostNQN] = NvmetHostAuthentication(
                key: secret.text,
                controllerKey: controller?.text,
                hash: "hmac(\(key.hash))",
                group: key.group
            )
        }
        return .success(secrets)
    }

    /// Brings the tree to `desired`: reads it, plans, applies operation by operation (recording
    /// ownership as objects are made and forgetting it as they are removed), reads it back.
    /// With `adopt`, desired objects dem-em did not create are taken over.
    public func reconcile(_ desired: EndpointConfiguration, adopt: Bool = false) -> NvmetReconcileResult {
        owned.withLock { owned in
            if let problem = desired.problem() {
                return NvmetReconcileResult(
                    errors: [NvmetFailure(operation: nil, path: problem.field, message: problem.message)],
                    live: tree().live
                )
            }
            guard Self.isDirectory(fileSystem.root) else {
                return NvmetReconcileResult(errors: [missingRoot()])
            }
            let secrets: [String: NvmetHostAuthentication]
            switch openSecrets(desired) {
            case .success(let opened): secrets = opened
            case .failure(let failure):
                // Nothing is applied: a host must not be let in without the key it is to prove.
                return NvmetReconcileResult(errors: [failure], live: tree().live)
            }
            let plan = NvmetPlanner.plan(
                desired: desired,
                actual: tree(),
                owned: owned,
                adopt: adopt,
                hostSecrets: secrets
            )
            var result = NvmetReconcileResult()
            if !plan.adopted.isEmpty {
                for object in plan.adopted { owned.insert(object: object) }
                logger.notice("nvmet: adopting foreign objects", metadata: ["objects": "\(plan.adopted)"])
                persist(owned, into: &result)
            }
            apply(plan.operations, owned: &owned, into: &result)
            forgetMissing(&owned, into: &result)
            let after = tree()
            let check = NvmetPlanner.plan(desired: desired, actual: after, owned: owned, hostSecrets: secrets)
            result.foreign = check.foreign
            result.drift = check.drift
            result.notes = check.notes
            result.live = after.live
            logger.debug(
                "nvmet: reconciled",
                metadata: [
                    "operations": "\(result.operationCount)", "errors": "\(result.errors.count)",
                    "drift": "\(result.drift.count)", "foreign": "\(result.foreign.count)",
                ]
            )
            return result
        }
    }

    /// Compares the tree with `desired` without changing anything.
    public func check(
        _ desired: EndpointConfiguration
    ) -> (
        drift: [EndpointDrift], foreign: [String], live: [LiveSubsystem]
    ) {
        let owned = ownership
        let tree = tree()
        let secrets = (try? openSecrets(desired).get()) ?? [:]
        let plan = NvmetPlanner.plan(desired: desired, actual: tree, owned: owned, hostSecrets: secrets)
        return (plan.drift, plan.foreign, tree.live)
    }

    /// Removes what dem-em owns, or with `all` everything in the tree (links, namespaces,
    /// subsystems, ports, hosts, in that order).
    public func reset(all: Bool) -> NvmetReconcileResult {
        owned.withLock { owned in
            guard Self.isDirectory(fileSystem.root) else {
                return NvmetReconcileResult(errors: [missingRoot()])
            }
            let before = tree()
            let scope = all ? NvmetOwnership.everything(in: before) : owned
            let plan = NvmetPlanner.plan(desired: EndpointConfiguration(), actual: before, owned: scope)
            var result = NvmetReconcileResult()
            apply(plan.operations, owned: &owned, into: &result)
            forgetMissing(&owned, into: &result)
            let after = tree()
            let remaining = NvmetOwnership.everything(in: after).objects
            result.foreign = remaining.filter { !owned.contains(object: $0) }
            result.drift = NvmetPlanner.plan(desired: EndpointConfiguration(), actual: after, owned: owned).drift
            result.notes = plan.notes
            result.live = after.live
            logger.debug(
                "nvmet: reset",
                metadata: [
                    "all": "\(all)", "operations": "\(result.operationCount)", "errors": "\(result.errors.count)",
                ]
            )
            return result
        }
    }

    /// The kernel target as it is, as a configuration (for export).
    public func actual() throws -> EndpointConfiguration {
        guard Self.isDirectory(fileSystem.root) else { throw missingRoot() }
        return tree().configuration
    }

    // MARK: Applying

    /// Runs `operations` in order. A failed operation is recorded and the next one tried,
    /// except operations inside a folder whose mkdir failed (or linking to it), which are
    /// skipped.
    private func apply(
        _ operations: [NvmetOperation],
        owned: inout NvmetOwnership,
        into result: inout NvmetReconcileResult
    ) {
        var failedFolders: [String] = []
        for operation in operations {
            if let folder = failedFolders.first(where: { Self.operation(operation, needs: $0) }) {
                result.skipped.append("\(operation) (mkdir \(folder) failed)")
                logger.warning("nvmet: skipped", metadata: ["operation": "\(operation)", "missing": "\(folder)"])
                continue
            }
            // Claim a new object before making it, so a crash cannot leave it unowned.
            var claimed = false
            if case .makeDirectory(let path) = operation, owned.insert(object: path) {
                claimed = true
                persist(owned, into: &result)
            }
            do {
                try execute(operation)
                result.operations.append(operation.description)
                logger.debug("nvmet: \(operation)")
                if case .removeDirectory(let path) = operation, owned.remove(object: path) {
                    persist(owned, into: &result)
                }
            } catch {
                let failure = NvmetFailure(operation: operation, error: error)
                result.errors.append(failure)
                logger.warning("nvmet: \(failure)")
                if case .makeDirectory(let path) = operation {
                    failedFolders.append(path)
                    if claimed {
                        owned.remove(object: path)
                        persist(owned, into: &result)
                    }
                }
            }
        }
    }

    private func execute(_ operation: NvmetOperation) throws(NvmetFileError) {
        switch operation {
        case .makeDirectory(let path): try fileSystem.makeDirectory(path)
        case .removeDirectory(let path): try fileSystem.removeDirectory(path)
        case .writeAttribute(let path, let value): try fileSystem.writeAttribute(path, value)
        case .createLink(let path, let target): try fileSystem.createLink(path, to: target)
        case .removeLink(let path): try fileSystem.removeLink(path)
        }
    }

    /// Whether `operation` works inside `folder` or links to it.
    private static func operation(_ operation: NvmetOperation, needs folder: String) -> Bool {
        if operation.path.hasPrefix(folder + "/") { return true }
        if case .createLink(_, let target) = operation, target == folder { return true }
        return false
    }

    /// Drops ledger entries whose object is gone (removed by someone else, or never made).
    private func forgetMissing(_ owned: inout NvmetOwnership, into result: inout NvmetReconcileResult) {
        let gone = owned.objects.filter { !fileSystem.exists($0) }
        guard !gone.isEmpty else { return }
        for object in gone { owned.remove(object: object) }
        logger.info("nvmet: forgetting objects that no longer exist", metadata: ["objects": "\(gone)"])
        persist(owned, into: &result)
    }

    private func persist(_ owned: NvmetOwnership, into result: inout NvmetReconcileResult) {
        do {
            try ledger.save(owned)
        } catch {
            let failure = NvmetFailure(operation: nil, path: ledger.path, message: "\(error)")
            result.errors.append(failure)
            logger.warning("nvmet: \(failure)")
        }
    }

    private func missingRoot() -> NvmetFailure {
        NvmetFailure(
            operation: nil,
            path: fileSystem.root,
            code: ENOENT,
            message: "the nvmet root does not exist (is the nvmet module loaded?)"
        )
    }

    private static func isDirectory(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
    }
}
