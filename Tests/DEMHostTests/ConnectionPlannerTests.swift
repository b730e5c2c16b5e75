import DEMCore
import Testing

@testable import DEMHost

@Suite("connection planner")
struct ConnectionPlannerTests {
    typealias S = HostSample

    private func plan(
        wanted: [DiscoveryLogEntry],
        existing: [KernelController] = [],
        ledger: ConnectionLedger = ConnectionLedger(),
        policy: DisconnectPolicy = .removed
    ) -> [ConnectionAction] {
        ConnectionPlanner.plan(wanted: wanted, existing: existing, ledger: ledger, host: S.host, policy: policy)
    }

    private func connect(_ entry: DiscoveryLogEntry, host: HostConnectParameters = S.host) -> ConnectionAction {
        .connect(ConnectionPlanner.connectOptions(for: entry, host: host)!)
    }

    @Test("a wanted subsystem without a controller is connected with the host's parameters")
    func connectsMissing() {
        var host = S.host
        host.hostIface = "eth1"
        host.ctrlLossTimeout = 600
        let actions = ConnectionPlanner.plan(
            wanted: [S.entry()],
            existing: [],
            ledger: ConnectionLedger(),
            host: host,
            policy: .never
        )
        #expect(
            actions == [
                .connect(
                    ConnectOptions(
                        transport: "tcp",
                        traddr: "10.0.2.15",
                        trsvcid: "4420",
                        nqn: S.volumeA,
                        hostNQN: S.hostNQN,
                        hostID: S.hostID,
                        hostIface: "eth1",
                        ctrlLossTimeout: 600
                    )
                )
            ]
        )
    }

    @Test("an existing controller is kept, also one created by hand (not in the ledger)")
    func skipsExisting() {
        let entries = [S.entry(S.volumeA), S.entry(S.volumeB)]
        let existing = [S.controller("nvme0", nqn: S.volumeA), S.controller("nvme1", nqn: S.volumeB)]
        let ledger = ConnectionLedger(records: [S.record("nvme0", entries[0])])
        #expect(plan(wanted: entries, existing: existing, ledger: ledger).isEmpty)
    }

    @Test("connecting and resetting controllers count as existing; a controller without hostnqn matches any host")
    func connectingCounts() {
        let existing = [
            S.controller("nvme0", nqn: S.volumeA, state: .connecting),
            S.controller("nvme1", nqn: S.volumeB, hostNQN: nil, state: .resetting),
        ]
        #expect(plan(wanted: [S.entry(S.volumeA), S.entry(S.volumeB)], existing: existing).isEmpty)
    }

    @Test("a controller of another host NQN, address, service or transport does not match")
    func otherControllersDoNotMatch() {
        let entry = S.entry()
        for controller in [
            S.controller("nvme0", hostNQN: S.otherHostNQN),
            S.controller("nvme0", traddr: "10.0.2.16"),
            S.controller("nvme0", trsvcid: "4421"),
            S.controller("nvme0", transport: "rdma"),
            S.controller("nvme0", nqn: S.volumeB),
        ] {
            #expect(plan(wanted: [entry], existing: [controller]) == [connect(entry)], "\(controller)")
        }
    }

    @Test("addresses and services compare in canonical form")
    func canonicalAddresses() {
        let entry = S.entry(traddr: "fd00:0:0::15", trsvcid: "04420")
        #expect(plan(wanted: [entry], existing: [S.controller("nvme0", traddr: "FD00::15", trsvcid: "4420")]).isEmpty)
        let v4 = S.entry(traddr: "10.0.2.15")
        #expect(plan(wanted: [v4], existing: [S.controller("nvme0", traddr: " 10.0.2.15")]).isEmpty)
    }

    @Test("a controller that is deleting or dead does not count as existing, and is not disconnected again")
    func deletingDoesNotCount() {
        let entry = S.entry()
        for state in [KernelControllerState.deleting, .deletingNoIO, .dead] {
            #expect(plan(wanted: [entry], existing: [S.controller("nvme0", state: state)]) == [connect(entry)])
            let ledger = ConnectionLedger(records: [S.record("nvme0", entry)])
            #expect(plan(wanted: [], existing: [S.controller("nvme0", state: state)], ledger: ledger).isEmpty)
        }
    }

    @Test("a controller dem-ac did not create is never disconnected")
    func neverDisconnectsForeign() {
        let gone = S.entry(S.volumeB)
        let existing = [S.controller("nvme0", nqn: S.volumeB)]
        // The ledger holds a record for the same connection under another name: the kernel's
        // nvme0 is someone else's.
        let ledger = ConnectionLedger(records: [S.record("nvme5", gone)])
        #expect(plan(wanted: [], existing: existing, ledger: ledger, policy: .removed).isEmpty)
        #expect(plan(wanted: [], existing: existing, ledger: ConnectionLedger(), policy: .removed).isEmpty)
    }

    @Test("a ledger record under the same name but for another connection does not make a controller dem-ac's")
    func reusedNameIsNotOwned() {
        let ledger = ConnectionLedger(records: [S.record("nvme0", S.entry(S.volumeA))])
        let handMade = S.controller("nvme0", nqn: S.volumeB)
        #expect(plan(wanted: [], existing: [handMade], ledger: ledger).isEmpty)
    }

    @Test("policy removed disconnects dem-ac's controllers whose entry left every page")
    func disconnectsRemoved() {
        let kept = S.entry(S.volumeA)
        let gone = S.entry(S.volumeB)
        let existing = [
            S.controller("nvme0", nqn: S.volumeA),
            S.controller("nvme1", nqn: S.volumeB),
            S.controller("nvme2", nqn: "nqn.2024-01.io.dem:by-hand"),
        ]
        let ledger = ConnectionLedger(records: [S.record("nvme0", kept), S.record("nvme1", gone)])
        #expect(
            plan(wanted: [kept], existing: existing, ledger: ledger, policy: .removed) == [.disconnect(name: "nvme1")]
        )
    }

    @Test("policy never keeps them")
    func neverKeeps() {
        let gone = S.entry(S.volumeB)
        let ledger = ConnectionLedger(records: [S.record("nvme1", gone)])
        #expect(
            plan(wanted: [], existing: [S.controller("nvme1", nqn: S.volumeB)], ledger: ledger, policy: .never).isEmpty
        )
    }

    @Test("dem-ac's controller made for another host NQN is disconnected under policy removed")
    func otherHostNQNIsNotWanted() {
        let entry = S.entry()
        var record = S.record("nvme1", entry)
        record.key.hostNQN = S.otherHostNQN
        let controller = S.controller("nvme1", hostNQN: S.otherHostNQN)
        let actions = plan(wanted: [entry], existing: [controller], ledger: ConnectionLedger(records: [record]))
        #expect(actions == [connect(entry), .disconnect(name: "nvme1")])
    }

    @Test("the same subsystem seen through two discovery controllers is connected once")
    func deduplicates() {
        var throughSecondDC = S.entry(portID: 7)
        throughSecondDC.entryFlags = [.duplicateReturnedInformation]
        let other = S.entry(traddr: "fd00::15")
        let actions = plan(wanted: [S.entry(), other, throughSecondDC, S.entry(traddr: "FD00:0::15")])
        #expect(actions == [connect(S.entry()), connect(other)])
    }

    @Test("only NVM subsystems over TCP or RDMA are connected")
    func onlyNVMOverTCPOrRDMA() {
        let wanted = [
            S.entry(S.volumeA, transport: .tcp),
            S.entry(S.volumeB, transport: .rdma),
            S.entry("nqn.fc", transport: .fibreChannel),
            S.entry("nqn.loop", transport: .loop),
            S.entry(S.discoveryNQN, trsvcid: "8009", subtype: .referral),
            S.entry(S.discoveryNQN, trsvcid: "8009", subtype: .currentDiscovery),
        ]
        let actions = plan(wanted: wanted)
        #expect(actions == [connect(wanted[0]), connect(wanted[1])])
        if case .connect(let options) = actions.last { #expect(options.transport == "rdma") }
    }

    @Test("connects come in page order, disconnects after them")
    func order() {
        let a = S.entry(S.volumeA)
        let b = S.entry(S.volumeB)
        let ledger = ConnectionLedger(records: [S.record("nvme4", S.entry("nqn.old"))])
        let actions = plan(wanted: [b, a], existing: [S.controller("nvme4", nqn: "nqn.old")], ledger: ledger)
        #expect(actions == [connect(b), connect(a), .disconnect(name: "nvme4")])
        #expect(actions.map(\.description).last == "disconnect nvme4")
    }
}
