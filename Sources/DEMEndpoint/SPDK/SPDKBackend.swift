import DEMCore
import Foundation
import Logging
import Synchronization

/// Makes an SPDK NVMe-oF target (`nvmf_tgt`) match a desired state over its JSON-RPC socket,
/// keeping a ledger of the subsystems, bdevs, NVMe controllers and discovery listeners it made
/// so it never changes anything else. SPDK keeps nothing across a restart: when the connection
/// is made again after it was lost, ``lostState()`` says so and the desired state is applied
/// again.
public final class SPDKBackend: Sendable {
    public let client: SPDKRPCClient
    public let ledger: OwnershipLedger<SPDKOwnership>
    private let logger: Logger
    private let owned: Mutex<SPDKOwnership>
    private struct Seen {
        /// The connection the version was asked on.
        var versionOn = 0
        var version: String?
        /// The connection the last apply read the target on: another one since means the
        /// target may have restarted empty.
        var appliedOn = 0
    }
    private let seen = Mutex(Seen())

    public init(client: SPDKRPCClient, ledgerPath: String, logger: Logger) throws {
        self.client = client
        self.ledger = OwnershipLedger(path: ledgerPath)
        self.logger = logger
        self.owned = Mutex(try ledger.load())
    }

    /// What dem-em owns now.
    public var ownership: SPDKOwnership { owned.withLock { $0 } }

    /// The target as it is now.
    public func state() throws(SPDKRPCError) -> SPDKState {
        var state = try SPDKState.read(from: client)
        state.version = version()
        return state
    }

    /// SPDK's version string, asked once per connection.
    private func version() -> String? {
        let connections = client.connectionsMade
        if let known = seen.withLock({ $0.versionOn == connections ? $0.version : nil }) { return known }
        let text = (try? client.call("spdk_get_version"))?["version"]?.stringValue
        seen.withLock {
            $0.version = text
            $0.versionOn = client.connectionsMade
        }
        return text
    }

    /// The plan an apply would follow now.
    public func plan(_ desired: EndpointConfiguration, adopt: Bool = false) throws(SPDKRPCError) -> SPDKPlan {
        SPDKPlanner.plan(desired: desired, actual: try state(), owned: ownership, adopt: adopt)
    }

    /// Brings the target to `desired`: reads it, plans, calls operation by operation (recording
    /// what it makes before the call and forgetting what it deletes after), reads it back.
    public func reconcile(_ desired: EndpointConfiguration, adopt: Bool = false) -> TargetApplyResult {
        owned.withLock { owned in
            if let problem = desired.problem() {
                return TargetApplyResult(errors: ["\(problem.field): \(problem.message)"])
            }
            let before: SPDKState
            do {
                before = try state()
            } catch {
                return TargetApplyResult(errors: ["reading the target: \(error)"])
            }
            seen.withLock { $0.appliedOn = client.connectionsMade }
            var result = TargetApplyResult()
            forgetMissing(&owned, in: before, into: &result)
            let plan = SPDKPlanner.plan(desired: desired, actual: before, owned: owned, adopt: adopt)
            if !plan.adopted.isEmpty {
                for object in plan.adopted { owned.insert(object) }
                logger.notice("spdk: adopting objects dem-em did not make", metadata: ["objects": "\(plan.adopted)"])
                persist(owned, into: &result)
            }
            result.errors += plan.problems
            execute(plan.operations, owned: &owned, into: &result)
            do {
                let after = try state()
                forgetMissing(&owned, in: after, into: &result)
                let check = SPDKPlanner.plan(desired: desired, actual: after, owned: owned)
                result.foreign = check.foreign
                result.drift = check.drift
                result.notes = check.notes
                result.live = Self.live(after, desired: desired)
            } catch {
                result.errors.append("reading the target back: \(error)")
            }
            return result
        }
    }

    /// Compares the target with `desired` without changing anything. An unreachable target is
    /// drift: nothing of the desired state is served.
    public func check(
        _ desired: EndpointConfiguration
    ) -> (drift: [EndpointDrift], foreign: [String], live: [LiveSubsystem]) {
        do {
            let state = try state()
            let plan = SPDKPlanner.plan(desired: desired, actual: state, owned: ownership.present(in: state))
            return (plan.drift, plan.foreign, Self.live(state, desired: desired))
        } catch {
            return (
                [EndpointDrift(object: "SPDK target \(client.socketPath)", expected: "answering", actual: "\(error)")],
                [], []
            )
        }
    }

    /// Removes what dem-em made, or with `all` every subsystem, bdev, controller and discovery
    /// listener.
    public func reset(all: Bool) -> TargetApplyResult {
        owned.withLock { owned in
            let before: SPDKState
            do {
                before = try state()
            } catch {
                return TargetApplyResult(errors: ["reading the target: \(error)"])
            }
            var result = TargetApplyResult()
            forgetMissing(&owned, in: before, into: &result)
            var scope = all ? SPDKOwnership.everything(in: before) : owned
            // Bdevs of attached controllers go with their controller.
            scope.bdevs = scope.bdevs.filter { name, _ in !scope.controllers.contains { name.hasPrefix($0 + "n") } }
            let plan = SPDKPlanner.plan(desired: EndpointConfiguration(), actual: before, owned: scope)
            execute(plan.operations, owned: &owned, into: &result)
            if let after = try? state() {
                forgetMissing(&owned, in: after, into: &result)
                result.live = Self.live(after, desired: EndpointConfiguration())
                result.foreign = SPDKOwnership.everything(in: after).objects.filter { object in
                    !owned.objects.contains(object)
                }.map(\.description)
            }
            result.notes = plan.notes
            return result
        }
    }

    /// The target as a configuration: its listeners as ports (numbered in address order), its
    /// subsystems, their namespaces as `/spdk/bdev/NAME` devices.
    public func actual() throws -> EndpointConfiguration {
        let state = try state()
        let addresses = Array(Set(state.storageSubsystems.flatMap(\.listeners))).sorted()
        var ids: [SPDKAddress: Int] = [:]
        let ports = addresses.enumerated().map { index, address in
            ids[address] = index + 1
            return FabricPort(
                portID: index + 1,
                transportType: address.transportType,
                addressFamily: address.addressFamily,
                transportAddress: address.address,
                transportServiceIdentifier: Int(address.serviceID) ?? 4420
            )
        }
        let subsystems = state.storageSubsystems.map { subsystem in
            EndpointSubsystem(
                nqn: subsystem.nqn,
                allowAnyHost: subsystem.allowAnyHost,
                serial: subsystem.serial,
                model: subsystem.model,
                namespaces: subsystem.namespaces.map {
                    EndpointNamespace(namespaceID: $0.nsid, devicePath: "/spdk/bdev/\($0.bdev)", uuid: $0.uuid)
                },
                hosts: subsystem.hosts,
                ports: subsystem.listeners.compactMap { ids[$0] }
            )
        }
        return EndpointConfiguration(
            ports: ports,
            hosts: Array(Set(subsystems.flatMap(\.hosts))).sorted(),
            subsystems: subsystems
        )
    }

    /// What is served of the desired state: subsystems with the desired ports they listen on.
    static func live(_ state: SPDKState, desired: EndpointConfiguration) -> [LiveSubsystem] {
        state.storageSubsystems.map { subsystem in
            let listeners = Set(subsystem.listeners)
            return LiveSubsystem(
                nqn: subsystem.nqn,
                ports: desired.ports.filter { listeners.contains(SPDKAddress(port: $0)) }.map(\.portID).sorted(),
                namespaces: subsystem.namespaces.map(\.nsid).sorted()
            )
        }
    }

    /// The kind of a bdev from SPDK's product name.
    static func kind(ofProduct product: String) -> String {
        switch product {
        case "Malloc disk": "malloc"
        case "Null disk": "null"
        case "AIO disk": "aio"
        default: "existing"
        }
    }

    // MARK: Calling

    /// Runs `operations` in order. A failed call is recorded and the next one tried, except
    /// calls that need an object whose making failed, which are skipped. A lost connection
    /// stops the plan: the next apply starts again from what the target has.
    private func execute(
        _ operations: [SPDKOperation],
        owned: inout SPDKOwnership,
        into result: inout TargetApplyResult
    ) {
        var failed = Set<String>()
        for (index, operation) in operations.enumerated() {
            if let missing = operation.needs.first(where: { failed.contains($0) }) {
                result.errors.append("skipped: \(operation) (\(missing) could not be made)")
                if let claim = operation.claim { failed.insert(claim.dependency) }
                continue
            }
            var claimed = false
            if let claim = operation.claim, owned.insert(claim) {
                claimed = true
                persist(owned, into: &result)
            }
            do {
                _ = try client.call(operation.method, operation.params)
                result.operations.append(operation.description)
                logger.debug("spdk: \(operation)")
                if let release = operation.release, owned.remove(release) {
                    persist(owned, into: &result)
                }
            } catch {
                result.errors.append("\(operation.object): \(error)")
                logger.warning("spdk: \(operation.object): \(error)")
                if let claim = operation.claim {
                    failed.insert(claim.dependency)
                    if claimed, case .rpc = error {
                        owned.remove(claim)
                        persist(owned, into: &result)
                    }
                }
                if error.isConnectionFailure {
                    let left = operations.count - index - 1
                    if left > 0 {
                        result.errors.append("skipped: \(left) more operations (the target stopped answering)")
                    }
                    return
                }
            }
        }
    }

    /// Drops ledger entries whose object is gone (deleted by someone else, or the target
    /// restarted).
    private func forgetMissing(_ owned: inout SPDKOwnership, in state: SPDKState, into result: inout TargetApplyResult)
    {
        let kept = owned.present(in: state)
        guard kept != owned else { return }
        let gone = owned.objects.filter { !kept.objects.contains($0) }
        logger.info("spdk: forgetting objects the target no longer has", metadata: ["objects": "\(gone)"])
        owned = kept
        persist(owned, into: &result)
    }

    private func persist(_ owned: SPDKOwnership, into result: inout TargetApplyResult) {
        do {
            try ledger.save(owned)
        } catch {
            result.errors.append("\(ledger.path): \(error)")
            logger.warning("spdk: cannot keep the ledger", metadata: ["error": "\(error)"])
        }
    }
}

extension SPDKBackend: TargetBackend {
    /// The backend as the status reports it. A kept connection answered the last call (a failed
    /// one drops it), so the version asked once per connection is reused: no call of its own
    /// then, only a probe when the connection is down.
    public func describe() -> EndpointBackend {
        let reachable = client.isConnected || (try? client.call("spdk_get_version")) != nil
        return EndpointBackend(
            name: "spdk",
            version: reachable ? version() : seen.withLock { $0.version },
            location: client.socketPath,
            reachable: reachable
        )
    }

    public var ownedCount: Int { ownership.count }
    public var ledgerPath: String { ledger.path }

    public func apply(_ desired: EndpointConfiguration, adopt: Bool) -> TargetApplyResult {
        reconcile(desired, adopt: adopt)
    }

    public func resetTarget(all: Bool) -> TargetApplyResult { reset(all: all) }

    /// Whether the target answers on another connection than the one the last apply read it
    /// on: it restarted (with nothing configured), or came up after dem-em.
    public func lostState() -> Bool {
        // A call makes the connection when it is down.
        guard (try? client.call("spdk_get_version")) != nil else { return false }
        return client.connectionsMade != seen.withLock { $0.appliedOn }
    }

    public func inventory(_ inventory: inout EndpointInventory) {
        var description = describe()
        guard let state = try? state() else {
            inventory.backend = description
            return
        }
        description.transports = state.transports
        description.listeners = state.subsystems.flatMap { subsystem in
            subsystem.listeners.map { "\(subsystem.nqn) \($0)" }
        }
        description.controllers = state.controllers.map { "\($0.name) (\($0.address ?? "-"))" }
        inventory.backend = description
        for bdev in state.bdevs {
            inventory.devices.append(
                ReportedDevice(
                    deviceID: -1,
                    devicePath: "/spdk/bdev/\(bdev.name)",
                    kind: "spdk-bdev",
                    model: bdev.product,
                    size: bdev.blocks * bdev.blockSize
                )
            )
        }
    }
}
