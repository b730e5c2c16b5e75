import DEMCore

/// What an apply or reset did and what it left, whatever the target software.
public struct TargetApplyResult: Sendable, Hashable {
    /// The operations performed, one line each.
    public var operations: [String]
    /// The failures, one line each, naming the object and the operation.
    public var errors: [String]
    /// Desired objects left alone because dem-em does not own them.
    public var foreign: [String]
    /// Differences from the desired state remaining after the operations.
    public var drift: [EndpointDrift]
    /// What the target serves, as read back.
    public var live: [LiveSubsystem]
    /// What was chosen not to be done and why.
    public var notes: [String]

    public init(
        operations: [String] = [],
        errors: [String] = [],
        foreign: [String] = [],
        drift: [EndpointDrift] = [],
        live: [LiveSubsystem] = [],
        notes: [String] = []
    ) {
        self.operations = operations
        self.errors = errors
        self.foreign = foreign
        self.drift = drift
        self.live = live
        self.notes = notes
    }

    /// Whether every operation succeeded.
    public var succeeded: Bool { errors.isEmpty }
}

/// The NVMe-oF target software dem-em drives: the kernel's nvmet (configfs) or SPDK's nvmf_tgt
/// (JSON-RPC). Each plans with a pure planner, applies operation by operation and keeps a ledger
/// of what it made, so it never touches anything else. Calls are synchronous; the service runs
/// them on its writer.
public protocol TargetBackend: Sendable {
    /// `nvmet` or `spdk`, with its version and where it is driven.
    func describe() -> EndpointBackend
    /// How many objects the ledger records.
    var ownedCount: Int { get }
    /// The ledger's file.
    var ledgerPath: String { get }
    /// Brings the target to `desired`; with `adopt`, desired objects dem-em did not make are
    /// taken over.
    func apply(_ desired: EndpointConfiguration, adopt: Bool) -> TargetApplyResult
    /// Compares the target with `desired` without changing anything.
    func check(_ desired: EndpointConfiguration) -> (drift: [EndpointDrift], foreign: [String], live: [LiveSubsystem])
    /// Removes what dem-em made, or with `all` everything.
    func resetTarget(all: Bool) -> TargetApplyResult
    /// The target as it is, as a configuration (for export).
    func actual() throws -> EndpointConfiguration
    /// Whether the target lost its configuration since the last call (SPDK keeps nothing
    /// across a restart): the desired state is then applied again.
    func lostState() -> Bool
    /// Adds what the target software itself knows to the machine's inventory.
    func inventory(_ inventory: inout EndpointInventory)
}

extension NvmetBackend: TargetBackend {
    public func describe() -> EndpointBackend {
        EndpointBackend(name: "nvmet", location: fileSystem.root)
    }

    public var ownedCount: Int { ownership.objects.count }
    public var ledgerPath: String { ledger.path }

    public func apply(_ desired: EndpointConfiguration, adopt: Bool) -> TargetApplyResult {
        reconcile(desired, adopt: adopt).summary
    }

    public func resetTarget(all: Bool) -> TargetApplyResult {
        reset(all: all).summary
    }

    /// The kernel target keeps its configuration while the machine runs (a reboot restarts
    /// dem-em too, which applies at start).
    public func lostState() -> Bool { false }

    public func inventory(_ inventory: inout EndpointInventory) {
        inventory.backend = describe()
    }
}

extension NvmetReconcileResult {
    /// The backend-neutral result.
    public var summary: TargetApplyResult {
        TargetApplyResult(
            operations: operations,
            errors: errorLines,
            foreign: foreign,
            drift: drift,
            live: live,
            notes: notes
        )
    }
}
