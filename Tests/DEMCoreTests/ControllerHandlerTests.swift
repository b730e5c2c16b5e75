import DEMCore
import NIOCore
import NIOEmbedded
import Testing

/// A fixed page and counting controller IDs: the handler's service in these tests.
private final class FixedPageService: DiscoveryControllerService {
    let page: ByteBuffer
    init(entries: Int = 1) {
        let entry = DiscoveryLogEntry(
            transportType: .tcp,
            addressFamily: .ipv4,
            subsystemType: .nvm,
            portIdentifier: 1,
            transportServiceIdentifier: "4420",
            subsystemNQN: "nqn.2024-01.io.example:fixed",
            transportAddress: "192.0.2.1"
        )
        page = DiscoveryLogPage(generationCounter: 9, entries: Array(repeating: entry, count: entries)).encoded()
    }
    func discoveryLogPage(for host: DiscoveryHostContext) -> ByteBuffer { page }
    func allocateControllerIdentifier() -> UInt16 { 5 }
}

@Suite("NVMeTCPControllerHandler on an EmbeddedChannel")
struct ControllerHandlerTests {
    let hostNQN = "nqn.2014-08.org.nvmexpress:uuid:aaaaaaaa-0000-4000-8000-000000000001"

    func makeChannel(setupTimeout: TimeAmount = .seconds(10)) throws -> EmbeddedChannel {
        var configuration = DiscoveryControllerConfiguration(
            uniqueNQN: "nqn.2014-08.org.nvmexpress:uuid:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
        )
        configuration.setupTimeout = setupTimeout
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers(
            ByteToMessageHandler(
                NVMeTCPFrameDecoder(
                    maximumPDULength: configuration.maximumPDULength,
                    firstPDULength: 128,
                    reportsPartialPDUs: true
                )
            ),
            NVMeTCPControllerHandler(
                configuration: configuration,
                service: FixedPageService(),
                localAddress: "127.0.0.1",
                remoteAddress: "127.0.0.1:5",
                logger: .init(label: "test")
            )
        )
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 8009)).wait()
        return channel
    }

    func send(_ channel: EmbeddedChannel, _ pdu: NVMeTCPPDU) throws {
        var buffer = ByteBuffer()
        buffer.writeNVMeTCPPDU(pdu)
        try channel.writeInbound(buffer)
    }

    /// Every PDU the handler wrote, decoded.
    func received(_ channel: EmbeddedChannel) throws -> [NVMeTCPPDU] {
        var bytes = ByteBuffer()
        while var chunk = try channel.readOutbound(as: ByteBuffer.self) { bytes.writeBuffer(&chunk) }
        var decoder = NVMeTCPFrameDecoder(maximumPDULength: 1 << 20)
        var pdus: [NVMeTCPPDU] = []
        while let frame = try decoder.nextFrame(&bytes) {
            pdus.append(try NVMeTCPPDU.decode(frame: frame, digests: []))
        }
        return pdus
    }

    func connect(_ channel: EmbeddedChannel, kato: UInt32) throws {
        try send(channel, .initializeConnectionRequest(InitializeConnectionRequest()))
        var data = ByteBuffer()
        data.writeConnectData(
            ConnectData(
                hostIdentifier: Array(repeating: 1, count: 16),
                subsystemNQN: DEMCore.wellKnownDiscoveryNQN,
                hostNQN: hostNQN
            )
        )
        try send(
            channel,
            .capsuleCommand(
                CapsuleCommand(
                    command: ConnectCommand(keepAliveTimeout: kato).submissionQueueEntry(commandIdentifier: 1),
                    data: data
                )
            )
        )
    }

    @Test("ICReq, Connect: ICResp then a successful Connect response carrying the CNTLID")
    func connects() throws {
        let channel = try makeChannel()
        try connect(channel, kato: 10_000)
        let pdus = try received(channel)
        #expect(pdus.count == 2)
        guard case .initializeConnectionResponse = pdus.first, case .capsuleResponse(let response) = pdus.last else {
            Issue.record("unexpected PDUs \(pdus)")
            return
        }
        #expect(response.completion.status == .success)
        #expect(response.completion.result == 5)
        #expect(channel.isActive)
        _ = try? channel.finish()
    }

    @Test("keep-alive expiry closes the connection; traffic before the deadline keeps it open")
    func keepAliveExpiry() throws {
        let channel = try makeChannel()
        try connect(channel, kato: 2_000)
        _ = try received(channel)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1_500))
        try send(
            channel,
            .capsuleCommand(CapsuleCommand(command: AsynchronousEvent.keepAliveEntry(commandIdentifier: 2)))
        )
        _ = try received(channel)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1_500))
        #expect(channel.isActive, "a command 1.5 s ago restarted the 2 s keep-alive timeout")
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(600))
        #expect(!channel.isActive)
    }

    @Test("a connection with no ICReq, or with half an ICReq, is closed at the setup timeout")
    func noICReq() throws {
        let silent = try makeChannel(setupTimeout: .seconds(3))
        silent.embeddedEventLoop.advanceTime(by: .milliseconds(2_900))
        #expect(silent.isActive)
        silent.embeddedEventLoop.advanceTime(by: .milliseconds(200))
        #expect(!silent.isActive)

        let half = try makeChannel(setupTimeout: .seconds(3))
        try half.writeInbound(ByteBuffer(bytes: [0x00, 0x00, 0x80, 0x00, 0x80, 0x00, 0x00, 0x00]))
        half.embeddedEventLoop.advanceTime(by: .milliseconds(3_100))
        #expect(!half.isActive)
    }

    @Test("after Connect, a PDU begun and not ended within the setup timeout closes the connection; whole PDUs do not")
    func stalledPDU() throws {
        let channel = try makeChannel(setupTimeout: .seconds(3))
        try connect(channel, kato: 60_000)
        _ = try received(channel)
        channel.embeddedEventLoop.advanceTime(by: .seconds(5))
        #expect(channel.isActive, "an idle association lives by its keep-alive timeout, not the setup timeout")
        // 8 bytes of a 72-byte command capsule, then nothing.
        try channel.writeInbound(ByteBuffer(bytes: [0x04, 0x00, 0x48, 0x00, 0x48, 0x00, 0x00, 0x00]))
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(2_900))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(200))
        #expect(!channel.isActive)
    }

    @Test("a PDU that arrives in pieces, the last of them ending it, does not count as stalled afterwards")
    func pduInPieces() throws {
        let channel = try makeChannel(setupTimeout: .seconds(3))
        try connect(channel, kato: 60_000)
        _ = try received(channel)
        var keepAlive = ByteBuffer()
        keepAlive.writeNVMeTCPPDU(
            .capsuleCommand(CapsuleCommand(command: SubmissionQueueEntry(opcode: 0x18, commandIdentifier: 9)))
        )
        let length = keepAlive.readableBytes
        try channel.writeInbound(keepAlive.getSlice(at: 0, length: 30)!)
        try channel.writeInbound(keepAlive.getSlice(at: 30, length: length - 30)!)
        #expect(try received(channel).count == 1, "the keep-alive is answered")
        channel.embeddedEventLoop.advanceTime(by: .seconds(5))
        #expect(channel.isActive, "no PDU is partly received any more")
    }

    @Test("a framing error (PLEN beyond the limit) gets a C2HTermReq and a close")
    func framingError() throws {
        let channel = try makeChannel()
        try connect(channel, kato: 0)
        _ = try received(channel)
        let hostile = ByteBuffer(bytes: [0x04, 0x00, 0x48, 0x48, 0x00, 0x00, 0x00, 0x10])  // PLEN 256 MiB
        // The handler turns the framing error into a termination request; nothing propagates.
        try channel.writeInbound(hostile)
        let pdus = try received(channel)
        guard case .controllerToHostTerminationRequest(let term) = pdus.last else {
            Issue.record("no C2HTermReq in \(pdus)")
            return
        }
        #expect(term.status == .invalidHeaderField)
        #expect(term.fieldErrorInformation == 4)
        #expect(!channel.isActive)
    }
}
