import DEMCore
import Dispatch
import Logging
import Synchronization

/// Which of a target's entries hosts are served.
public enum TargetServing: Sendable, Hashable {
    /// The model's entries (targets dem does not check, or when no monitor runs).
    case model
    /// The model's entries of the subsystems and ports the target has confirmed it serves:
    /// SUBNQN → PORTIDs. Empty: nothing (not confirmed yet, or withdrawn).
    case confirmed([String: Set<Int>])
    /// NVM subsystem entries read from the target's own discovery controller; those of
    /// subsystems the model defines on the target are served, with the model's access rules.
    case harvested([DiscoveryLogEntry])
}

/// Feeds the fabric model's entries into the ``DiscoveryCatalog``, coalescing a burst of changes
/// into one catalog update, so that a connected host gets one change notice for the burst.
///
/// What a target contributes follows its ``TargetServing``: the target monitor sets it for the
/// targets dem manages or reads, so a managed target's entries are served once it has
/// confirmed them and withdrawn when it stops answering.
///
/// A change schedules an update `coalescing` later; changes that arrive meanwhile join it.
/// ``flush()`` applies a pending update at once (the REST API does so before it answers with a
/// host's page, so the page it shows is the one the discovery controller serves).
public final class DiscoveryModelFeed: Sendable {
    private struct State {
        var current: Fabric?
        var serving: [String: TargetServing] = [:]
        var unnamed: (@Sendable (FabricTarget) -> TargetServing)?
        var dirty = false
        var scheduled = false
    }

    /// The catalog fed.
    public let catalog: DiscoveryCatalog
    /// How long a change waits for others to join it.
    public let coalescing: Duration
    private let state = Mutex(State())
    private let queue = DispatchQueue(label: "dem.discovery.feed")
    private let logger: Logger
    private let updated: @Sendable (_ notified: Int) -> Void

    /// - Parameter updated: called after each catalog update with the number of connected
    ///   controllers notified.
    public init(
        catalog: DiscoveryCatalog,
        coalescing: Duration = .milliseconds(50),
        logger: Logger,
        updated: @escaping @Sendable (_ notified: Int) -> Void = { _ in }
    ) {
        self.catalog = catalog
        self.coalescing = coalescing
        self.logger = logger
        self.updated = updated
    }

    /// The catalog entries of `fabric`, each target contributing what `serving` says; a target
    /// it does not name contributes what `unnamed` says (the model's entries by default).
    public static func sourceEntries(
        _ fabric: Fabric,
        serving: [String: TargetServing] = [:],
        unnamed: (@Sendable (FabricTarget) -> TargetServing)? = nil
    ) -> [SourceEntry] {
        func source(_ entry: DiscoveryLogEntry, _ allowed: Set<String>?) -> SourceEntry {
            SourceEntry(entry: entry, access: allowed.map { .hosts($0) } ?? .anyHost)
        }
        if serving.isEmpty, unnamed == nil {
            return fabric.discoveryEntries().map { source($0.entry, $0.allowedHostNQNs) }
        }
        let rules = fabric.accessRules
        var result: [SourceEntry] = []
        for target in fabric.targets {
            switch serving[target.alias] ?? unnamed?(target) ?? .model {
            case .model:
                result += fabric.discoveryEntries(target: target.alias).map { source($0.entry, $0.allowedHostNQNs) }
            case .confirmed(let live):
                for (subsystem, port, allowed) in fabric.entryAccess(of: target, rules: rules)
                where live[subsystem.nqn]?.contains(port.portID) == true {
                    result.append(source(port.discoveryLogEntry(subsystemNQN: subsystem.nqn), allowed))
                }
            case .harvested(let entries):
                var access: [String: Set<String>?] = [:]
                for (subsystem, allowed) in fabric.subsystemAccess(of: target, rules: rules) {
                    access[subsystem.nqn] = .some(allowed)
                }
                var seen = Set<DiscoveryLogEntry>()
                for entry in entries where entry.subsystemType == .nvm {
                    guard let allowed = access[entry.subsystemNQN], seen.insert(entry).inserted else { continue }
                    result.append(source(entry, allowed))
                }
            }
        }
        return result
    }

    /// Loads `fabric` into the catalog now (at start).
    public func load(_ fabric: Fabric) {
        let (serving, unnamed) = state.withLock { state in
            state.current = fabric
            return (state.serving, state.unnamed)
        }
        catalog.update(entries: Self.sourceEntries(fabric, serving: serving, unnamed: unnamed), from: .store)
    }

    /// What a target contributes before ``setServing(_:)`` names it (a target just created):
    /// set by the target monitor, so that no entry is served before the target is checked.
    public func setUnnamedServing(_ unnamed: @escaping @Sendable (FabricTarget) -> TargetServing) {
        state.withLock { $0.unnamed = unnamed }
    }

    /// Schedules an update to `fabric`.
    public func changed(_ fabric: Fabric) {
        schedule { $0.current = fabric }
    }

    /// Schedules an update with what each target contributes (replacing the previous map).
    public func setServing(_ serving: [String: TargetServing]) {
        scheduleIf { state in
            guard state.serving != serving else { return false }
            state.serving = serving
            return true
        }
    }

    /// What each target contributes now.
    public var serving: [String: TargetServing] { state.withLock { $0.serving } }

    private func schedule(_ change: (inout State) -> Void) {
        scheduleIf { state in
            change(&state)
            return true
        }
    }

    /// Schedules an update when `change` says it changed something.
    private func scheduleIf(_ change: (inout State) -> Bool) {
        let schedule = state.withLock { state in
            guard change(&state) else { return false }
            state.dirty = true
            defer { state.scheduled = true }
            return !state.scheduled
        }
        guard schedule else { return }
        let (seconds, attoseconds) = coalescing.components
        let delay = DispatchTimeInterval.nanoseconds(Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000))
        queue.asyncAfter(deadline: .now() + delay) { [self] in apply() }
    }

    /// Applies a pending update now.
    public func flush() {
        queue.sync { apply() }
    }

    private func apply() {
        do {
            let pending: (Fabric, [String: TargetServing], (@Sendable (FabricTarget) -> TargetServing)?)? =
                state.withLock { state in
                    defer {
                        state.dirty = false
                        state.scheduled = false
                    }
                    guard state.dirty, let fabric = state.current else { return nil }
                    return (fabric, state.serving, state.unnamed)
                }
            guard let (fabric, serving, unnamed) = pending else { return }
            let notified = catalog.update(
                entries: Self.sourceEntries(fabric, serving: serving, unnamed: unnamed),
                from: .store
            )
            logger.debug(
                "discovery entries updated from the model",
                metadata: ["generation": "\(catalog.generation)", "controllers-with-a-changed-page": "\(notified)"]
            )
            updated(notified)
        }
    }
}
