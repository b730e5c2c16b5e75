import DEMCore
import NIOCore
import Testing

/// The host machine wired to the controller machine through the codec, with no sockets: every
/// PDU is written to bytes, framed and parsed again, in both directions.
@Suite("host state machine against controller state machine")
struct HostControllerWiringTests {
    private final class Service: DiscoveryControllerService {
        let page: ByteBuffer
        init(page: ByteBuffer) { self.page = page }
        func discoveryLogPage(for host: DiscoveryHostContext) -> ByteBuffer { page }
        func allocateControllerIdentifier() -> UInt16 { 42 }
    }

    struct Wire {
        var host = NVMeTCPHostStateMachine<String>()
        var controller: NVMeTCPControllerBinding
        var completions: [(CompletionQueueEntry, ByteBuffer?)] = []
        /// The context each completion handed back.
        var completed: [String] = []
        var now = NIODeadline.uptimeNanoseconds(1_000_000_000)

        /// Carries host actions to the controller and back until both are quiet.
        mutating func deliver(_ hostActions: [NVMeTCPHostStateMachine<String>.Action]) throws {
            var toController: [NVMeTCPPDU] = []
            func takeHost(_ actions: [NVMeTCPHostStateMachine<String>.Action]) {
                for action in actions {
                    switch action {
                    case .send(let pdu): toController.append(pdu)
                    case .commandCompleted(let cqe, let data, let context):
                        completions.append((cqe, data))
                        completed.append(context)
                    case .connectionInitialized: break
                    case .commandFailed(let error, let context): Issue.record("\(context) failed: \(error)")
                    case .close(let error, _): Issue.record("host closed: \(error)")
                    }
                }
            }
            takeHost(hostActions)
            while !toController.isEmpty {
                let pdu = toController.removeFirst()
                var bytes = ByteBuffer()
                bytes.writeNVMeTCPPDU(pdu, digests: host.digests, dataAlignment: host.controllerDataAlignment)
                let parsed = try NVMeTCPPDU.decode(frame: bytes, digests: controller.digests)
                for action in controller.pduReceived(parsed, now: now) {
                    guard case .send(let reply) = action else { continue }
                    var out = ByteBuffer()
                    out.writeNVMeTCPPDU(reply, digests: controller.digests, dataAlignment: controller.hostDataAlignment)
                    takeHost(host.pduReceived(try NVMeTCPPDU.decode(frame: out, digests: host.digests)))
                }
            }
        }
    }

    @Test("a whole discovery session, with digests", arguments: [NVMeTCPDigests(), [.header, .data]])
    func session(digests: NVMeTCPDigests) throws {
        let entry = DiscoveryLogEntry(
            transportType: .tcp,
            addressFamily: .ipv4,
            subsystemType: .nvm,
            portIdentifier: 1,
            transportServiceIdentifier: "4420",
            subsystemNQN: "nqn.2024-01.io.example:wired",
            transportAddress: "192.0.2.1"
        )
        let page = DiscoveryLogPage(generationCounter: 3, entries: [entry, entry, entry])
        var configuration = DiscoveryControllerConfiguration(uniqueNQN: "nqn.2024-01.io.example:dc")
        configuration.maximumC2HDataLength = 1000
        var wire = Wire(
            controller: NVMeTCPControllerBinding(
                configuration: configuration,
                service: Service(page: page.encoded())
            )
        )
        try wire.deliver(wire.host.initialize(InitializeConnectionRequest(digests: digests)))
        #expect(wire.host.isReady)
        #expect(wire.host.digests == digests)

        var data = ByteBuffer()
        data.writeConnectData(
            ConnectData(
                hostIdentifier: Array(repeating: 3, count: 16),
                subsystemNQN: "nqn.2024-01.io.example:dc",
                hostNQN: "nqn.2024-01.io.example:host"
            )
        )
        try wire.deliver(
            wire.host.submit(
                ConnectCommand().submissionQueueEntry(commandIdentifier: 0),
                data: data,
                context: "Connect"
            )
        )
        #expect(wire.completions.last?.0.result == 42)
        try wire.deliver(
            wire.host.submit(
                FabricsCommand.propertySetEntry(
                    commandIdentifier: 0,
                    offset: ControllerProperty.configuration,
                    value: 0x46_0001
                ),
                context: "Property Set"
            )
        )
        try wire.deliver(
            wire.host.submit(
                IdentifyCommand(controllerOrNamespaceStructure: 1).submissionQueueEntry(commandIdentifier: 0),
                expectedDataLength: 4096,
                context: "Identify"
            )
        )
        var identify = try #require(wire.completions.last?.1)
        #expect(identify.readIdentifyControllerData()?.subsystemNQN == "nqn.2024-01.io.example:dc")

        let length = page.byteCount
        try wire.deliver(
            wire.host.submit(
                GetLogPageCommand(logPageIdentifier: 0x70, numberOfDwords: UInt64(length / 4))
                    .submissionQueueEntry(commandIdentifier: 0),
                expectedDataLength: length,
                context: "Get Log Page"
            )
        )
        var bytes = try #require(wire.completions.last?.1)
        #expect(bytes.readableBytes == length)
        #expect(try bytes.readDiscoveryLogPage() == page)
        #expect(wire.completions.allSatisfy { $0.0.status == .success })
        #expect(wire.host.outstandingCount == 0)
        #expect(wire.completed == ["Connect", "Property Set", "Identify", "Get Log Page"])
    }

    @Test("before the ICResp a command fails alone; when the connection closes every outstanding command fails once")
    func failures() {
        var host = NVMeTCPHostStateMachine<String>()
        guard
            case .commandFailed(.protocolViolation, "early") = host.submit(
                SubmissionQueueEntry(opcode: 0x18),
                context: "early"
            ).first
        else {
            Issue.record("a command before the ICResp is failed at once")
            return
        }
        _ = host.initialize(InitializeConnectionRequest(digests: []))
        _ = host.pduReceived(
            .initializeConnectionResponse(
                InitializeConnectionResponse(
                    pduFormatVersion: 0,
                    controllerPDUDataAlignment: 0,
                    digests: [],
                    maximumH2CDataLength: 8192
                )
            )
        )
        #expect(host.isReady)
        _ = host.submit(SubmissionQueueEntry(opcode: 0x18), context: "a")
        _ = host.submit(SubmissionQueueEntry(opcode: 0x02), expectedDataLength: 4096, context: "b")
        let closed = host.channelClosed()
        guard case .close(.connectionClosed, let outstanding) = closed.first else {
            Issue.record("\(closed)")
            return
        }
        #expect(outstanding == ["a", "b"])
        #expect(host.channelClosed().isEmpty, "closed once")
        guard
            case .commandFailed(.connectionClosed, "late") = host.submit(
                SubmissionQueueEntry(opcode: 0x18),
                context: "late"
            ).first
        else {
            Issue.record("a command after the close is failed at once")
            return
        }
    }
}
