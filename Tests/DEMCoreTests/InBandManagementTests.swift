import DEMCore
import NIOCore
import Synchronization
import Testing

@Suite("the in-band channel's keys")
struct InBandKeyTests {
    static let credential = "demfabric_0123456789abcdef0123456789abcdef"

    /// The expected keys come from Python's hmac module over the documented labels, not from
    /// our own code.
    @Test("the keys are HMAC-SHA-256 of the documented labels under the credential, as Python's hmac computes them")
    func knownKeys() {
        let keys = InBandManagement.keys(credential: Self.credential)
        #expect(
            keys.host.key.map { String(format: "%02x", $0) }.joined()
                == "30d2fc886dfb6d824f87bf0fd1ad42a350fbd04fa42d9319651e5efd07da108b"
        )
        #expect(
            keys.controller.key.map { String(format: "%02x", $0) }.joined()
                == "036843de8f1ea2d6dd110d636018f213b16957267932c8e69f357a4fb2a47bb2"
        )
        #expect(keys.host.transformation == nil)
        let other = InBandManagement.keys(credential: Self.credential + "x")
        #expect(other.host != keys.host && other.controller != keys.controller)
        let policy = InBandManagement.policy(credential: Self.credential)
        #expect(policy.hostKeys == [keys.host] && policy.controllerKey == keys.controller)
    }

    @Test("the admin token compares equal only to itself")
    func tokenMatches() {
        #expect(FabricCredential.matches(Self.credential, Self.credential))
        #expect(!FabricCredential.matches(Self.credential + "0", Self.credential))
        #expect(!FabricCredential.matches("", Self.credential))
    }
}

/// A management service that answers every request with its own bytes, status 200.
final class EchoManagementService: ManagementControllerService {
    let allowed: Set<String>
    let requests = Mutex<[ByteBuffer]>([])

    init(allowed: Set<String> = []) { self.allowed = allowed }

    func hostAllowed(_ hostNQN: String) -> Bool { allowed.isEmpty || allowed.contains(hostNQN) }
    func authentication(for host: DiscoveryHostContext) -> HostAuthentication {
        .required(InBandManagement.policy(credential: "s3cret"))
    }
    func allocateControllerIdentifier() -> UInt16 { 7 }
    func perform(_ request: ByteBuffer, host: DiscoveryHostContext) async -> ByteBuffer {
        requests.withLock { $0.append(request) }
        return request
    }
}

@Suite("In-band management controller state machine")
struct InBandControllerTests {
    static let nqn = InBandManagement.managementNQN(alias: "t1")

    /// ICReq, Connect to the management NQN, CC.EN.
    static func connected(
        _ service: EchoManagementService = EchoManagementService(),
        hostNQN: String = TestValues.hostNQN
    ) -> (NVMeTCPControllerBinding, [Action]) {
        var machine = NVMeTCPControllerBinding(
            configuration: DiscoveryControllerConfiguration(uniqueNQN: nqn),
            management: service
        )
        _ = machine.pduReceived(HostPDU.icreq(), now: TestValues.start)
        let connect = machine.pduReceived(
            HostPDU.connect(cid: 1, subsystemNQN: nqn, hostNQN: hostNQN),
            now: TestValues.start
        )
        _ = machine.pduReceived(HostPDU.enable(cid: 2), now: TestValues.start)
        return (machine, connect)
    }

    static func command(
        _ opcode: UInt8,
        _ operation: UInt8,
        cid: UInt16,
        tag: UInt16 = 0,
        offset: UInt32 = 0,
        total: UInt32 = 0,
        data: [UInt8]? = nil,
        receive: Int = 0
    ) -> NVMeTCPPDU {
        let entry = InBandCommand(opcode: opcode, operation: operation, tag: tag, offset: offset, messageLength: total)
            .submissionQueueEntry(commandIdentifier: cid, dataLength: data?.count ?? receive)
        return HostPDU.command(entry, data: data.map { ByteBuffer(bytes: $0) })
    }

    /// Two-way DH-HMAC-CHAP with the keys of `credential`; the final Send (Success2) has CID 4.
    /// - Returns: the actions of the last command (Success2's completion, or the Failure1).
    static func authenticate(
        _ machine: inout NVMeTCPControllerBinding,
        credential: String = "s3cret"
    ) -> [Action] {
        let keys = InBandManagement.keys(credential: credential)
        var host = DHCHAPHostExchange(
            hostNQN: TestValues.hostNQN,
            subsystemNQN: nqn,
            hostKey: keys.host,
            controllerKey: keys.controller
        )
        func send(_ message: AuthenticationMessage, cid: UInt16) -> [Action] {
            let bytes = message.bytes
            let entry = AuthenticationCommand.sendEntry(commandIdentifier: cid, length: bytes.readableBytes)
            return machine.pduReceived(HostPDU.command(entry, data: bytes), now: TestValues.start)
        }
        _ = send(host.start(), cid: 30)
        var cid: UInt16 = 31
        for _ in 0..<3 {
            let entry = AuthenticationCommand.receiveEntry(commandIdentifier: cid, length: 4096)
            let received = machine.pduReceived(HostPDU.command(entry), now: TestValues.start)
            cid += 1
            guard let data = received.controllerToHostData.first?.data else { return received }
            switch host.received(data) {
            case .send(let message):
                _ = send(message, cid: cid)
                cid += 1
            case .sendAndFinish(let message):
                return send(message, cid: 4)
            case .finished, .failed:
                return received
            }
        }
        return []
    }

    @Test("Connect: only the management NQN, only allowed hosts (Connect Invalid Host); Identify says administrative")
    func connect() {
        var machine = NVMeTCPControllerBinding(
            configuration: DiscoveryControllerConfiguration(uniqueNQN: Self.nqn),
            management: EchoManagementService()
        )
        _ = machine.pduReceived(HostPDU.icreq(), now: TestValues.start)
        expectCompletion(
            machine.pduReceived(HostPDU.connect(cid: 1), now: TestValues.start),
            cid: 1,
            status: .connectInvalidParameters.withDoNotRetry
        )
        let (_, refused) = Self.connected(EchoManagementService(allowed: ["nqn.2024-01.io.dem:someone-else"]))
        expectCompletion(refused, cid: 1, status: .connectInvalidHost.withDoNotRetry)
        var (machine2, accepted) = Self.connected()
        // CNTLID 7, AUTHREQ.ATR: the channel always authenticates.
        expectCompletion(accepted, cid: 1, result: 7 | 0x2 << 16)
        expectCompletion(Self.authenticate(&machine2), cid: 4)
        let identify = machine2.pduReceived(HostPDU.identify(cid: 5), now: TestValues.start)
        var data = identify.controllerToHostData.first!.data
        let identified = data.readIdentifyControllerData()!
        #expect(identified.controllerType == IdentifyControllerData.ControllerType.administrative)
        #expect(identified.subsystemNQN == Self.nqn)
        // No discovery log page and no AERs here.
        expectCompletion(
            machine2.pduReceived(HostPDU.getLogPage(cid: 6, length: 1024), now: TestValues.start),
            cid: 6,
            status: .invalidOpcode.withDoNotRetry
        )
    }

    @Test(
        "before DH-HMAC-CHAP, request and response segments get Authentication Required; a wrong credential gets AUTH_Failure1 and the end"
    )
    func authenticationRequired() throws {
        var (machine, connect) = Self.connected()
        #expect(connect.completions.first.map { $0.result >> 16 } == 0x2, "AUTHREQ.ATR in the Connect response")
        expectCompletion(
            machine.pduReceived(
                Self.command(
                    AdminOpcode.nvmeMISend,
                    InBandManagement.Opcode.requestSegment,
                    cid: 9,
                    total: 8,
                    data: [1, 1, 0, 0, 0, 0, 0, 0]
                ),
                now: TestValues.start
            ),
            cid: 9,
            status: .authenticationRequired.withDoNotRetry
        )
        expectCompletion(
            machine.pduReceived(
                Self.command(AdminOpcode.nvmeMIReceive, InBandManagement.Opcode.responseSegment, cid: 10, receive: 8),
                now: TestValues.start
            ),
            cid: 10,
            status: .authenticationRequired.withDoNotRetry
        )
        let refused = Self.authenticate(&machine, credential: "wrong")
        let data = try #require(refused.controllerToHostData.first?.data)
        guard case .failure1(let failure) = try AuthenticationMessage(parsing: data) else {
            Issue.record("expected AUTH_Failure1: \(refused)")
            return
        }
        #expect(failure.reason == .failed)
        #expect(refused.contains { if case .close = $0 { true } else { false } })

        var (again, _) = Self.connected()
        expectCompletion(Self.authenticate(&again), cid: 4)
        // The old challenge operations are gone.
        expectCompletion(
            again.pduReceived(
                Self.command(AdminOpcode.nvmeMIReceive, 0xC2, cid: 11, receive: 32),
                now: TestValues.start
            ),
            cid: 11,
            status: .invalidField.withDoNotRetry
        )
    }

    @Test(
        "a request in two segments runs once; its final segment completes with the response length; segments out of order are refused"
    )
    func segments() {
        let service = EchoManagementService()
        var (machine, _) = Self.connected(service)
        expectCompletion(Self.authenticate(&machine), cid: 4)
        let message = Array(
            InBandRequest(method: .put, path: "/config", body: ByteBuffer(string: "{}")).encoded().readableBytesView
        )
        let total = UInt32(message.count)
        // A first segment, then one at the wrong offset: refused, and the request is dropped.
        expectCompletion(
            machine.pduReceived(
                Self.command(
                    AdminOpcode.nvmeMISend,
                    InBandManagement.Opcode.requestSegment,
                    cid: 20,
                    tag: 5,
                    total: total,
                    data: Array(message[0..<4])
                ),
                now: TestValues.start
            ),
            cid: 20
        )
        expectCompletion(
            machine.pduReceived(
                Self.command(
                    AdminOpcode.nvmeMISend,
                    InBandManagement.Opcode.requestSegment,
                    cid: 21,
                    tag: 5,
                    offset: 6,
                    total: total,
                    data: Array(message[6...])
                ),
                now: TestValues.start
            ),
            cid: 21,
            status: .invalidField.withDoNotRetry
        )
        // In order: the last segment passes the whole message out and waits.
        _ = machine.pduReceived(
            Self.command(
                AdminOpcode.nvmeMISend,
                InBandManagement.Opcode.requestSegment,
                cid: 22,
                tag: 6,
                total: total,
                data: Array(message[0..<4])
            ),
            now: TestValues.start
        )
        let last = machine.pduReceived(
            Self.command(
                AdminOpcode.nvmeMISend,
                InBandManagement.Opcode.requestSegment,
                cid: 23,
                tag: 6,
                offset: 4,
                total: total,
                data: Array(message[4...])
            ),
            now: TestValues.start
        )
        #expect(last.completions.isEmpty)
        guard case .session(.performManagementRequest(let request, let host)) = last.first else {
            Issue.record("expected the request to be passed out: \(last)")
            return
        }
        #expect(Array(request.readableBytesView) == message)
        #expect(host.hostNQN == TestValues.hostNQN)
        // Another request while it runs: Command Sequence Error.
        expectCompletion(
            machine.pduReceived(
                Self.command(
                    AdminOpcode.nvmeMISend,
                    InBandManagement.Opcode.requestSegment,
                    cid: 24,
                    tag: 7,
                    total: total,
                    data: message
                ),
                now: TestValues.start
            ),
            cid: 24,
            status: .commandSequenceError
        )
        let response = InBandResponse(status: 200, body: ByteBuffer(string: "{\"ok\":1}")).encoded()
        expectCompletion(machine.managementRequestCompleted(response), cid: 23, result: UInt32(response.readableBytes))
        // The response, read in two pieces; reading past its end is refused.
        let first = machine.pduReceived(
            Self.command(
                AdminOpcode.nvmeMIReceive,
                InBandManagement.Opcode.responseSegment,
                cid: 25,
                tag: 6,
                receive: 10
            ),
            now: TestValues.start
        )
        let second = machine.pduReceived(
            Self.command(
                AdminOpcode.nvmeMIReceive,
                InBandManagement.Opcode.responseSegment,
                cid: 26,
                tag: 6,
                offset: 10,
                receive: response.readableBytes - 10
            ),
            now: TestValues.start
        )
        let read =
            first.controllerToHostData.flatMap { Array($0.data.readableBytesView) }
            + second.controllerToHostData.flatMap { Array($0.data.readableBytesView) }
        #expect(read == Array(response.readableBytesView))
        expectCompletion(
            machine.pduReceived(
                Self.command(
                    AdminOpcode.nvmeMIReceive,
                    InBandManagement.Opcode.responseSegment,
                    cid: 27,
                    tag: 6,
                    offset: 10,
                    receive: response.readableBytes
                ),
                now: TestValues.start
            ),
            cid: 27,
            status: .invalidField.withDoNotRetry
        )
        // Another tag's response is not there.
        expectCompletion(
            machine.pduReceived(
                Self.command(
                    AdminOpcode.nvmeMIReceive,
                    InBandManagement.Opcode.responseSegment,
                    cid: 28,
                    tag: 5,
                    receive: 8
                ),
                now: TestValues.start
            ),
            cid: 28,
            status: .invalidField.withDoNotRetry
        )
    }

    @Test("request and response messages: round trip, and bad ones named")
    func messages() throws {
        let request = InBandRequest(method: .delete, path: "/config?all=1", body: ByteBuffer(string: "{}"))
        let encoded = request.encoded()
        #expect(Array(encoded.readableBytesView.prefix(8)) == [1, 4, 13, 0, 2, 0, 0, 0])
        #expect(try InBandRequest(decoding: encoded) == request)
        #expect(throws: InBandRequest.FormatError.self) {
            try InBandRequest(decoding: ByteBuffer(bytes: [1, 9, 1, 0, 0, 0, 0, 0, 0x2F]))
        }
        #expect(throws: InBandRequest.FormatError.self) {
            try InBandRequest(decoding: ByteBuffer(bytes: [1, 1, 5, 0, 0, 0, 0, 0, 0x2F]))
        }
        #expect(throws: InBandRequest.FormatError.self) {
            try InBandRequest(decoding: ByteBuffer(bytes: [1, 1, 1, 0, 0, 0, 0, 0, 0x78]))
        }
        let response = InBandResponse(status: 422, body: ByteBuffer(string: "{}"))
        #expect(Array(response.encoded().readableBytesView.prefix(8)) == [1, 0, 0xA6, 0x01, 2, 0, 0, 0])
        #expect(try InBandResponse(decoding: response.encoded()) == response)
    }
}

/// Host data a command names in a transport data block instead of sending it in the capsule:
/// the NVMe/TCP binding asks for it with an R2T and hands the command to the controller with the
/// H2CData PDUs' bytes.
@Suite("NVMe/TCP R2T and H2CData")
struct ReadyToTransferTests {
    typealias Channel = InBandControllerTests

    /// A request segment whose data is fetched with an R2T.
    static func segment(cid: UInt16, message: [UInt8]) -> NVMeTCPPDU {
        var entry = InBandCommand(
            opcode: AdminOpcode.nvmeMISend,
            operation: InBandManagement.Opcode.requestSegment,
            tag: 7,
            offset: 0,
            messageLength: UInt32(message.count)
        ).submissionQueueEntry(commandIdentifier: cid, dataLength: message.count)
        entry.dataPointer = .transport(length: UInt32(message.count))
        return HostPDU.command(entry, data: nil)
    }

    static func data(cid: UInt16, tag: UInt16, offset: Int, _ bytes: ArraySlice<UInt8>, last: Bool) -> NVMeTCPPDU {
        .hostToControllerData(
            HostToControllerData(
                commandIdentifier: cid,
                transferTag: tag,
                dataOffset: UInt32(offset),
                data: ByteBuffer(bytes: Array(bytes)),
                isLast: last
            )
        )
    }

    static let message = Array(
        InBandRequest(method: .put, path: "/config", body: ByteBuffer(string: String(repeating: "x", count: 300)))
            .encoded().readableBytesView
    )

    /// A management channel, authenticated, and the R2T its segment got.
    static func requested() -> (NVMeTCPControllerBinding, ReadyToTransfer) {
        var (machine, _) = Channel.connected()
        _ = Channel.authenticate(&machine)
        let actions = machine.pduReceived(segment(cid: 30, message: message), now: TestValues.start)
        guard case .send(.readyToTransfer(let r2t)) = actions.first, actions.count == 1 else {
            Issue.record("expected one R2T, got \(actions)")
            return (machine, ReadyToTransfer(commandIdentifier: 0, transferTag: 0, offset: 0, length: 0))
        }
        return (machine, r2t)
    }

    @Test("the segment's data is asked for with one R2T, arrives in two H2CData PDUs and reaches the controller")
    func transfer() {
        var (machine, r2t) = Self.requested()
        #expect(r2t.commandIdentifier == 30)
        #expect(r2t.offset == 0)
        #expect(Int(r2t.length) == Self.message.count)
        #expect(machine.pendingTransfers == 1)
        let half = Self.message.count / 2
        let first = machine.pduReceived(
            Self.data(cid: 30, tag: r2t.transferTag, offset: 0, Self.message[..<half], last: false),
            now: TestValues.start
        )
        #expect(first.isEmpty)
        let last = machine.pduReceived(
            Self.data(cid: 30, tag: r2t.transferTag, offset: half, Self.message[half...], last: true),
            now: TestValues.start
        )
        guard case .session(.performManagementRequest(let request, _)) = last.first else {
            Issue.record("expected the request to be passed out: \(last)")
            return
        }
        #expect(Array(request.readableBytesView) == Self.message)
        #expect(machine.pendingTransfers == 0)
        // The tag is free again: the same data through a new R2T is a new transfer.
    }

    @Test(
        "H2CData that does not continue the transfer ends the connection with the status that names it",
        arguments: [
            (
                "unknown TTAG", 1 as UInt16, 30 as UInt16, 0, 16, true, NVMeTCPFatalErrorStatus.invalidHeaderField,
                10 as UInt32
            ),
            ("CCCID of another command", 0, 31, 0, 16, false, .invalidHeaderField, 8),
            ("offset past what arrived", 0, 30, 8, 16, false, .dataTransferOutOfRange, 12),
            ("more than the R2T asked", 0, 30, 0, 4096, true, .dataTransferOutOfRange, 12),
            ("LAST_PDU before the end", 0, 30, 0, 16, true, .pduSequenceError, 0),
            ("the end without LAST_PDU", 0, 30, 0, -1, false, .pduSequenceError, 0),
        ]
    )
    func badData(
        _ name: String,
        _ tagDelta: UInt16,
        _ cid: UInt16,
        _ offset: Int,
        _ count: Int,
        _ last: Bool,
        _ status: NVMeTCPFatalErrorStatus,
        _ fei: UInt32
    ) {
        var (machine, r2t) = Self.requested()
        let length = count < 0 ? Self.message.count : count
        let bytes = ArraySlice([UInt8](repeating: 0x55, count: length))
        let actions = machine.pduReceived(
            Self.data(cid: cid, tag: r2t.transferTag &+ tagDelta, offset: offset, bytes, last: last),
            now: TestValues.start
        )
        expectTermination(actions, status, fei: fei)
    }

    @Test("a command naming more host data than a command may bring is refused without an R2T; the queue serves on")
    func tooLong() {
        var (machine, _) = Channel.connected()
        _ = Channel.authenticate(&machine)
        var entry = InBandCommand(
            opcode: AdminOpcode.nvmeMISend,
            operation: InBandManagement.Opcode.requestSegment,
            tag: 7,
            offset: 0,
            messageLength: 1 << 20
        ).submissionQueueEntry(commandIdentifier: 40, dataLength: 1 << 20)
        entry.dataPointer = .transport(length: 1 << 20)
        let actions = machine.pduReceived(HostPDU.command(entry, data: nil), now: TestValues.start)
        expectCompletion(actions, cid: 40, status: .dataSGLLengthInvalid.withDoNotRetry)
        #expect(machine.pendingTransfers == 0)
        #expect(!machine.isClosed)
    }

    @Test("H2CData whose data digest does not match: the command completes with Transient Transport Error")
    func digestMismatch() {
        var (machine, r2t) = Self.requested()
        var pdu = HostToControllerData(
            commandIdentifier: 30,
            transferTag: r2t.transferTag,
            dataOffset: 0,
            data: ByteBuffer(bytes: Self.message),
            isLast: true
        )
        pdu.dataDigestMismatch = true
        let actions = machine.pduReceived(.hostToControllerData(pdu), now: TestValues.start)
        expectCompletion(actions, cid: 30, status: .transientTransportError)
        #expect(!machine.isClosed)
    }

    @Test("a discovery controller asks for the data too, then refuses the command it cannot use (Invalid Field)")
    func discoveryController() {
        var session = ControllerSession()
        session.connectAndEnable()
        var entry = SubmissionQueueEntry(opcode: 0x09, commandIdentifier: 5, cdw10: 0x80)
        entry.dataPointer = .transport(length: 16)
        let asked = session.receive(HostPDU.command(entry))
        guard case .send(.readyToTransfer(let r2t)) = asked.first else {
            Issue.record("expected an R2T, got \(asked)")
            return
        }
        let done = session.receive(
            .hostToControllerData(
                HostToControllerData(
                    commandIdentifier: 5,
                    transferTag: r2t.transferTag,
                    dataOffset: 0,
                    data: ByteBuffer(repeating: 0, count: 16),
                    isLast: true
                )
            )
        )
        expectCompletion(done, cid: 5, status: .invalidField.withDoNotRetry)
    }
}
