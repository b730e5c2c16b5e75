import DEMCore
import Foundation

/// The monitor's policy for one target, as a pure state machine: what a look at the target
/// does (push, status, inventory, harvest), what its outcome does to the target's state and
/// to what hosts are served, and why an entry is withheld. No I/O, no clock: the driver
/// (``TargetMonitor``) passes the time in, so the policy is tested in virtual time.
///
/// States: unknown → (joined) → reachable or drifted while calls succeed; a target that was
/// answering and fails keeps its state and entries for `unreachableAfter`, then turns
/// unreachable; one that never answered turns unreachable at the first failure. Unreachable
/// withdraws its entries or keeps the last ones (``UnreachablePolicy``); an answer converges.
struct TargetWatch: Sendable, Equatable {
    typealias Instant = ContinuousClock.Instant

    struct Policy: Sendable, Equatable {
        var unreachablePolicy: UnreachablePolicy = .withdraw
        var unreachableAfter: Duration = .seconds(15)
    }

    /// Why the target is looked at.
    enum Reason: Sendable, Equatable {
        /// Its worker started.
        case start
        /// Its part of the model (or access lists) changed, or its dem-em joined.
        case modelChanged
        /// The probe interval passed.
        case probe
        /// An administrator asked to read it now.
        case refresh
        /// An administrator asked to push its configuration now.
        case reconfig
    }

    /// What to do in one look.
    enum Plan: Sendable, Equatable {
        /// A managed target: push the configuration (else read the status), then read the
        /// inventory when asked.
        case managed(push: Bool, readInventory: Bool)
        /// A local target: read its discovery controller.
        case harvest
        /// Nothing is due.
        case nothing
    }

    /// What a look found.
    enum Outcome: Sendable, Equatable {
        case managed(EndpointStatus, pushed: EndpointConfiguration?, inventory: EndpointInventory?)
        case harvested([DiscoveryLogEntry])
        case failed(String)
        case nothing
    }

    /// What recording an outcome changed.
    struct Change: Sendable, Equatable {
        /// The state before and after, when it moved.
        var state: (old: TargetStatus.State, new: TargetStatus.State)?
        /// Whether what hosts are served from this target changed.
        var servingChanged: Bool

        static func == (lhs: Change, rhs: Change) -> Bool {
            lhs.state?.old == rhs.state?.old && lhs.state?.new == rhs.state?.new
                && lhs.servingChanged == rhs.servingChanged
        }
    }

    private(set) var status: TargetStatus
    let policy: Policy
    /// The configuration dem-em last accepted; nil forces a push.
    private(set) var pushed: EndpointConfiguration?
    /// The target's part of the model at the last look (a change wakes its worker).
    private(set) var slice: FabricTarget?
    private(set) var lastInventory: Instant?
    private(set) var lastHarvest: Instant?
    /// Local targets: the entries read from its discovery controller (nil: not read yet).
    private(set) var harvestedEntries: [DiscoveryLogEntry]?
    /// Managed targets: the ports each subsystem is confirmed live on (nil: not heard yet).
    private(set) var confirmed: [String: Set<Int>]?
    /// Since when calls to it fail, while they do.
    private(set) var failingSince: Instant?

    init(target: FabricTarget, policy: Policy) {
        self.status = TargetStatus(alias: target.alias, managementMode: target.managementMode)
        self.slice = target
        self.policy = policy
    }

    // MARK: Events

    /// The model's part for this target now. - Returns: whether it differs from the last one.
    /// A change of management mode starts over: nothing pushed, confirmed or read.
    mutating func modelChanged(_ target: FabricTarget) -> Bool {
        if status.managementMode != target.managementMode {
            status = TargetStatus(alias: target.alias, managementMode: target.managementMode)
            pushed = nil
            confirmed = nil
            harvestedEntries = nil
            lastHarvest = nil
            lastInventory = nil
            failingSince = nil
        }
        let changed = slice != target
        slice = target
        return changed
    }

    /// Its dem-em joined: push and read the inventory at the next look.
    mutating func joined() {
        status.joined = true
        if status.state == .unknown || status.state == .unreachable { status.state = .joined }
        pushed = nil
        lastInventory = nil
    }

    /// What to do for `reason` at `now`, `desired` being the model's configuration for a
    /// managed target.
    func plan(_ reason: Reason, desired: EndpointConfiguration?, now: Instant) -> Plan {
        guard let target = slice else { return .nothing }
        switch target.managementMode {
        case .inBand, .outOfBand:
            let push = desired != nil && (pushed != desired || reason == .reconfig)
            let inventory = reason == .refresh || status.state == .unreachable || refreshDue(lastInventory, now: now)
            return .managed(push: push, readInventory: inventory)
        case .local:
            let due = reason != .probe || status.state == .unreachable || refreshDue(lastHarvest, now: now)
            return due ? .harvest : .nothing
        }
    }

    /// Whether the target's `Refresh` minutes have passed since `last` (or it was never done).
    private func refreshDue(_ last: Instant?, now: Instant) -> Bool {
        guard let last else { return true }
        guard let target = slice else { return false }
        return target.refresh > 0 && now - last >= .seconds(target.refresh * 60)
    }

    /// Whether a status read with `status` must be followed by a push: its dem-em lost its
    /// desired state and holds, applying nothing.
    static func mustPush(after status: EndpointStatus) -> Bool { status.hold != nil }

    /// Records what a look found at `now` (`date`: the wall clock, for the status).
    mutating func record(_ outcome: Outcome, now: Instant, date: Date) -> Change {
        let old = status.state
        let served = (confirmed, harvestedEntries)
        switch outcome {
        case .nothing:
            return Change(state: nil, servingChanged: false)
        case .managed(let endpoint, let pushed, let inventory):
            failingSince = nil
            if let pushed { self.pushed = pushed }
            if inventory != nil { lastInventory = now }
            status.lastContact = date
            status.lastError = nil
            status.live = endpoint.live
            status.drift = endpoint.drift
            status.foreign = endpoint.foreign
            status.certificate = endpoint.certificate
            status.backend = endpoint.backend
            status.errors = endpoint.errors + (endpoint.hold.map { ["dem-em holds: \($0)"] } ?? [])
            status.state =
                status.drift.isEmpty && status.errors.isEmpty && status.foreign.isEmpty ? .reachable : .drifted
            var live: [String: Set<Int>] = [:]
            for subsystem in endpoint.live where !subsystem.ports.isEmpty {
                live[subsystem.nqn] = Set(subsystem.ports)
            }
            confirmed = live
        case .harvested(let entries):
            failingSince = nil
            lastHarvest = now
            harvestedEntries = entries
            status.lastContact = date
            status.lastError = nil
            status.harvested = entries.count
            status.state = .reachable
        case .failed(let message):
            let since = failingSince ?? now
            failingSince = since
            status.lastError = message
            // Push again (read again) when it answers: it may have lost its state.
            pushed = nil
            lastHarvest = nil
            // A target that was answering keeps its state and entries for a grace period.
            let answering = old == .reachable || old == .drifted
            if !answering || now - since >= policy.unreachableAfter {
                status.state = .unreachable
                if policy.unreachablePolicy == .withdraw {
                    confirmed = [:]
                    harvestedEntries = []
                }
            }
        }
        status.lastAttempt = date
        return Change(
            state: old != status.state ? (old, status.state) : nil,
            servingChanged: served.0 != confirmed || served.1 != harvestedEntries
        )
    }

    /// Sets the counts of entries served and withheld (the driver computes them for all targets).
    mutating func setCounts(serving: Int, withheld: Int) {
        status.serving = serving
        status.withheld = withheld
    }

    // MARK: What hosts are served

    /// What this target contributes to hosts' pages now.
    var serving: TargetServing {
        switch status.managementMode {
        case .inBand, .outOfBand:
            return .confirmed(confirmed ?? [:])
        case .local:
            if let harvestedEntries { return .harvested(harvestedEntries) }
            return policy.unreachablePolicy == .keep ? .model : .harvested([])
        }
    }

    /// What a target not looked at yet contributes: nothing for a managed one (until its dem-em
    /// confirms), nothing for a local one (until it is read) unless the policy keeps entries.
    static func unnamedServing(_ target: FabricTarget, policy: Policy) -> TargetServing {
        switch target.managementMode {
        case .inBand, .outOfBand: .confirmed([:])
        case .local: policy.unreachablePolicy == .keep ? .model : .harvested([])
        }
    }

    /// Why subsystem `nqn` on port `portID` is not served now, in a sentence an administrator
    /// can act on.
    func whyWithheld(subsystem nqn: String, portID: Int) -> String {
        let alias = status.alias
        let failure = status.lastError.map { ": \($0)" } ?? ""
        switch status.managementMode {
        case .inBand, .outOfBand:
            switch status.state {
            case .unknown, .joined:
                return
                    "not confirmed yet: dem serves a managed target's entries once its dem-em reports them live, and has not heard from target \"\(alias)\"'s dem-em\(failure)"
            case .unreachable:
                return
                    "target \"\(alias)\" is unreachable\(failure); its entries are withdrawn (dem --unreachable keep serves what it last confirmed)"
            case .reachable, .drifted:
                if let live = confirmed?[nqn], !live.contains(portID) {
                    return
                        "target \"\(alias)\"'s dem-em reports the subsystem live on PORTID \(live.sorted().map(String.init).joined(separator: ", ")) but not on \(portID)"
                }
                let errors = status.errors.isEmpty ? "" : " (errors: \(status.errors.joined(separator: "; ")))"
                return "target \"\(alias)\"'s dem-em does not report it live\(errors)"
            }
        case .local:
            switch status.state {
            case .unreachable:
                return
                    "dem cannot read target \"\(alias)\"'s own discovery controller\(failure); a LocalMgmt target's entries are served as its discovery controller lists them (dem --unreachable keep serves the model's entries of a target dem cannot read)"
            case .unknown, .joined:
                return "dem has not read target \"\(alias)\"'s own discovery controller yet\(failure)"
            case .reachable, .drifted:
                return
                    "target \"\(alias)\"'s own discovery controller does not list this subsystem on this address (for the host NQNs dem asked as)"
            }
        }
    }
}
