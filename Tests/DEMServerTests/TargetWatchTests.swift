import DEMCore
import Foundation
import Testing

@testable import DEMServer

/// The target monitor's policy, in virtual time: instants are made, never waited for.
@Suite("a target's watch: push, probe, grace period, withdraw or keep, converge")
struct TargetWatchTests {
    static let t0 = ContinuousClock.now
    static let date = Date(timeIntervalSince1970: 1_800_000_000)
    static let nqn = "nqn.2024-01.io.example:disk"

    static func managed(refresh: Int = 0) -> FabricTarget {
        FabricTarget(alias: "t1", refresh: refresh, managementMode: .outOfBand)
    }

    static let desired = EndpointConfiguration(
        subsystems: [EndpointSubsystem(nqn: nqn, allowAnyHost: true, ports: [1])]
    )
    static let live = EndpointStatus(live: [LiveSubsystem(nqn: nqn, ports: [1], namespaces: [1])])

    static func at(_ seconds: Int) -> ContinuousClock.Instant { t0 + .seconds(seconds) }

    /// A managed target that answered once at t0 (pushed, live on port 1).
    static func answered(_ policy: TargetWatch.Policy = .init()) -> TargetWatch {
        var watch = TargetWatch(target: managed(refresh: 1), policy: policy)
        _ = watch.record(.managed(live, pushed: desired, inventory: EndpointInventory()), now: at(0), date: date)
        return watch
    }

    @Test("a managed target is pushed first, then only probed; its inventory is read again after Refresh minutes")
    func managedPlan() {
        var watch = TargetWatch(target: Self.managed(refresh: 1), policy: .init())
        #expect(watch.plan(.start, desired: Self.desired, now: Self.at(0)) == .managed(push: true, readInventory: true))
        let change = watch.record(
            .managed(Self.live, pushed: Self.desired, inventory: EndpointInventory()),
            now: Self.at(0),
            date: Self.date
        )
        #expect(change.state! == (.unknown, .reachable))
        #expect(change.servingChanged)
        #expect(watch.serving == .confirmed([Self.nqn: [1]]))
        #expect(
            watch.plan(.probe, desired: Self.desired, now: Self.at(5)) == .managed(push: false, readInventory: false)
        )
        #expect(
            watch.plan(.probe, desired: Self.desired, now: Self.at(60)) == .managed(push: false, readInventory: true)
        )
        #expect(
            watch.plan(.reconfig, desired: Self.desired, now: Self.at(5)) == .managed(push: true, readInventory: false)
        )
        #expect(
            watch.plan(.refresh, desired: Self.desired, now: Self.at(5)) == .managed(push: false, readInventory: true)
        )
        // A new model is pushed.
        var changed = Self.desired
        changed.hosts = ["nqn.2024-01.io.example:h"]
        #expect(
            watch.plan(.modelChanged, desired: changed, now: Self.at(6)) == .managed(push: true, readInventory: false)
        )
        // The same answer again changes nothing hosts see.
        let again = watch.record(.managed(Self.live, pushed: nil, inventory: nil), now: Self.at(5), date: Self.date)
        #expect(again == TargetWatch.Change(state: nil, servingChanged: false))
    }

    @Test("a target that was answering keeps its entries for the grace period, then is withdrawn")
    func gracePeriod() {
        var watch = Self.answered()
        let first = watch.record(.failed("connection refused"), now: Self.at(10), date: Self.date)
        #expect(first == TargetWatch.Change(state: nil, servingChanged: false))
        #expect(watch.status.state == .reachable)
        #expect(watch.status.lastError == "connection refused")
        let within = watch.record(.failed("connection refused"), now: Self.at(24), date: Self.date)
        #expect(within == TargetWatch.Change(state: nil, servingChanged: false))
        let after = watch.record(.failed("connection refused"), now: Self.at(25), date: Self.date)
        #expect(after.state! == (.reachable, .unreachable))
        #expect(after.servingChanged)
        #expect(watch.serving == .confirmed([:]))
        #expect(watch.whyWithheld(subsystem: Self.nqn, portID: 1).contains("is unreachable: connection refused"))
        // While unreachable every probe reads everything again, and the answer converges.
        #expect(
            watch.plan(.probe, desired: Self.desired, now: Self.at(30)) == .managed(push: true, readInventory: true)
        )
        let back = watch.record(
            .managed(Self.live, pushed: Self.desired, inventory: nil),
            now: Self.at(30),
            date: Self.date
        )
        #expect(back.state! == (.unreachable, .reachable))
        #expect(back.servingChanged)
        #expect(watch.status.lastError == nil)
    }

    @Test("with --unreachable keep, an unreachable target's last confirmed entries stay")
    func keepPolicy() {
        var watch = Self.answered(.init(unreachablePolicy: .keep, unreachableAfter: .seconds(15)))
        _ = watch.record(.failed("timeout"), now: Self.at(1), date: Self.date)
        let change = watch.record(.failed("timeout"), now: Self.at(16), date: Self.date)
        #expect(change.state! == (.reachable, .unreachable))
        #expect(!change.servingChanged)
        #expect(watch.serving == .confirmed([Self.nqn: [1]]))
    }

    @Test(
        "a target that never answered is unreachable at its first failure; a grace period starts anew after an answer"
    )
    func neverAnswered() {
        var watch = TargetWatch(target: Self.managed(), policy: .init())
        let change = watch.record(.failed("no route"), now: Self.at(0), date: Self.date)
        #expect(change.state! == (.unknown, .unreachable))
        #expect(watch.whyWithheld(subsystem: Self.nqn, portID: 1).contains("unreachable: no route"))
        _ = watch.record(.managed(Self.live, pushed: Self.desired, inventory: nil), now: Self.at(100), date: Self.date)
        // Failing since 200: not since the first failure at 0.
        _ = watch.record(.failed("x"), now: Self.at(200), date: Self.date)
        #expect(watch.status.state == .reachable)
        _ = watch.record(.failed("x"), now: Self.at(214), date: Self.date)
        #expect(watch.status.state == .reachable)
    }

    @Test("drift, foreign objects and a holding dem-em show as drifted, with the hold among the errors")
    func drifted() {
        var watch = TargetWatch(target: Self.managed(), policy: .init())
        let held = EndpointStatus(live: Self.live.live, hold: "desired.json is missing")
        #expect(TargetWatch.mustPush(after: held))
        #expect(!TargetWatch.mustPush(after: Self.live))
        _ = watch.record(.managed(held, pushed: nil, inventory: nil), now: Self.at(0), date: Self.date)
        #expect(watch.status.state == .drifted)
        #expect(watch.status.errors == ["dem-em holds: desired.json is missing"])
        // Live, but not on the port asked about.
        #expect(watch.whyWithheld(subsystem: Self.nqn, portID: 2).contains("live on PORTID 1 but not on 2"))
    }

    @Test("a local target is read at start, on demand, every Refresh minutes, and on every probe while unreachable")
    func localPlan() {
        var watch = TargetWatch(target: FabricTarget(alias: "l1", refresh: 2), policy: .init())
        #expect(watch.serving == .harvested([]))
        #expect(watch.plan(.start, desired: nil, now: Self.at(0)) == .harvest)
        let entry = DiscoveryLogEntry(
            transportType: .tcp,
            addressFamily: .ipv4,
            subsystemType: .nvm,
            portIdentifier: 1,
            transportServiceIdentifier: "4420",
            subsystemNQN: Self.nqn,
            transportAddress: "10.0.0.1"
        )
        let read = watch.record(.harvested([entry]), now: Self.at(0), date: Self.date)
        #expect(read.state! == (.unknown, .reachable))
        #expect(watch.serving == .harvested([entry]))
        #expect(watch.plan(.probe, desired: nil, now: Self.at(60)) == .nothing)
        #expect(watch.plan(.probe, desired: nil, now: Self.at(120)) == .harvest)
        #expect(watch.plan(.refresh, desired: nil, now: Self.at(1)) == .harvest)
        _ = watch.record(.failed("refused"), now: Self.at(121), date: Self.date)
        _ = watch.record(.failed("refused"), now: Self.at(136), date: Self.date)
        #expect(watch.status.state == .unreachable)
        #expect(watch.plan(.probe, desired: nil, now: Self.at(137)) == .harvest)
        #expect(watch.serving == .harvested([]))
        // keep: a local target not read yet serves the model's entries.
        let keep = TargetWatch.Policy(unreachablePolicy: .keep)
        #expect(TargetWatch(target: FabricTarget(alias: "l2"), policy: keep).serving == .model)
        #expect(TargetWatch.unnamedServing(FabricTarget(alias: "l2"), policy: keep) == .model)
        #expect(TargetWatch.unnamedServing(Self.managed(), policy: keep) == .confirmed([:]))
    }

    @Test("a join pushes again; a change of management mode starts over")
    func joinAndModeChange() {
        var watch = Self.answered()
        watch.joined()
        #expect(watch.status.joined)
        #expect(watch.status.state == .reachable)
        #expect(
            watch.plan(.modelChanged, desired: Self.desired, now: Self.at(1))
                == .managed(push: true, readInventory: true)
        )
        var unreachable = TargetWatch(target: Self.managed(), policy: .init())
        _ = unreachable.record(.failed("x"), now: Self.at(0), date: Self.date)
        unreachable.joined()
        #expect(unreachable.status.state == .joined)
        #expect(unreachable.whyWithheld(subsystem: Self.nqn, portID: 1).hasPrefix("not confirmed yet"))

        let same = watch.modelChanged(Self.managed(refresh: 1))
        #expect(!same)
        let local = watch.modelChanged(FabricTarget(alias: "t1", refresh: 1, managementMode: .local))
        #expect(local)
        #expect(watch.status.state == .unknown)
        #expect(watch.serving == .harvested([]))
        #expect(watch.plan(.probe, desired: nil, now: Self.at(2)) == .harvest)
    }
}
