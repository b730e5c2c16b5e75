import DEMCore
import NIOCore
import Testing

/// The controller core driven with no transport at all: commands in, completions and data out.
/// What each binding adds (NVMe/TCP PDUs, RDMA SENDs and WRITEs) is tested beside the binding.
@Suite("Controller core: NVMe without a transport")
struct ControllerStateMachineTests {
    /// The capsule a binding hands the core for `pdu` (a host builder's PDU).
    private func capsule(_ pdu: NVMeTCPPDU) -> CapsuleCommand {
        guard case .capsuleCommand(let capsule) = pdu else { preconditionFailure("not a command: \(pdu)") }
        return capsule
    }

    private func completion(_ actions: [ControllerStateMachine.Action]) -> (CompletionQueueEntry, ByteBuffer?)? {
        for action in actions {
            if case .complete(let entry, let data) = action { return (entry, data) }
        }
        return nil
    }

    private func connected(
        keepAliveTimeout: UInt32 = 0,
        service: FakeDiscoveryService = FakeDiscoveryService()
    ) -> ControllerStateMachine {
        var core = ControllerStateMachine(
            configuration: TestValues.configuration(),
            serving: .discovery(service),
            transportSetupStep: nil
        )
        _ = core.connectionOpened(now: TestValues.start)
        let actions = core.commandReceived(
            capsule(HostPDU.connect(cid: 1, keepAliveTimeout: keepAliveTimeout)),
            now: TestValues.start
        )
        #expect(completion(actions)?.0.status == .success)
        return core
    }

    @Test("Connect, enable, Identify and Get Log Page complete as CQE + data; the session is told who connected")
    func serves() throws {
        let service = FakeDiscoveryService()
        var core = ControllerStateMachine(
            configuration: TestValues.configuration(),
            serving: .discovery(service),
            transportSetupStep: nil
        )
        #expect(!core.isAwaitingTransport)
        _ = core.connectionOpened(now: TestValues.start)
        let connect = core.commandReceived(capsule(HostPDU.connect(cid: 7)), now: TestValues.start)
        let (connected, _) = try #require(completion(connect))
        #expect(connected.commandIdentifier == 7)
        #expect(connected.result & 0xFFFF == 1, "controller ID 1 from the service")
        #expect(connect.contains(.session(.controllerCreated(try #require(core.host), controllerIdentifier: 1))))

        _ = core.commandReceived(capsule(HostPDU.enable(cid: 8)), now: TestValues.start)
        let identify = core.commandReceived(capsule(HostPDU.identify(cid: 9)), now: TestValues.start)
        let (identified, identifyData) = try #require(completion(identify))
        #expect(identified.status == .success)
        #expect(identifyData?.readableBytes == 4096)

        let log = core.commandReceived(
            capsule(HostPDU.getLogPage(cid: 10, length: UInt32(FakeDiscoveryService.samplePageBytes.readableBytes))),
            now: TestValues.start
        )
        let (read, page) = try #require(completion(log))
        #expect(read.status == .success)
        #expect(page == FakeDiscoveryService.samplePageBytes)
        #expect(service.pageRequests.count == 1)
    }

    @Test("no Connect within the setup timeout closes the association, naming the step")
    func setupTimeout() {
        var core = ControllerStateMachine(
            configuration: TestValues.configuration(),
            serving: .discovery(FakeDiscoveryService()),
            transportSetupStep: nil
        )
        let opened = core.connectionOpened(now: TestValues.start)
        #expect(!opened.isEmpty, "a check is scheduled")
        let early = core.keepAliveTimerFired(now: TestValues.start + .seconds(1))
        #expect(!early.contains { if case .close = $0 { true } else { false } }, "still in time: \(early)")
        let late = core.keepAliveTimerFired(now: TestValues.start + .seconds(60))
        #expect(late.contains { if case .close = $0 { true } else { false } })
        #expect(core.isClosed)
    }

    @Test("an unknown admin opcode is Invalid Command Opcode and the controller serves on")
    func unknownOpcode() throws {
        var core = connected()
        _ = core.commandReceived(capsule(HostPDU.enable(cid: 10)), now: TestValues.start)
        let entry = SubmissionQueueEntry(opcode: 0xC1, commandIdentifier: 11)
        let (refused, _) = try #require(
            completion(core.commandReceived(CapsuleCommand(command: entry), now: TestValues.start))
        )
        #expect(refused.commandIdentifier == 11)
        #expect(refused.status == NVMeStatus.invalidOpcode.withDoNotRetry)
        let (identified, _) = try #require(
            completion(core.commandReceived(capsule(HostPDU.identify(cid: 12)), now: TestValues.start))
        )
        #expect(identified.status == .success)
        #expect(!core.isClosed)
    }

    @Test("KATO expiry without traffic fails the association; a Keep Alive in time keeps it")
    func keepAlive() {
        var core = connected(keepAliveTimeout: 5_000)
        _ = core.commandReceived(capsule(HostPDU.keepAlive(cid: 2)), now: TestValues.start + .seconds(4))
        #expect(
            !core.keepAliveTimerFired(now: TestValues.start + .seconds(8)).contains {
                if case .close = $0 { true } else { false }
            }
        )
        let expired = core.keepAliveTimerFired(now: TestValues.start + .seconds(30))
        #expect(expired.contains { if case .close = $0 { true } else { false } })
        #expect(core.isClosed)
    }
}
