import DEMCore
import NIOCore
import Testing

@Suite("NVMe/RDMA binding: private data and keyed SGLs")
struct NVMeRDMAWireTests {
    @Test("RDMA_CM_REQUEST private data as the Linux host sends it for an admin queue of 32")
    func connectRequest() throws {
        // nvme_rdma_route_resolved: recfmt 0, qid 0, hrqsize 32, hsqsize 31, 24 reserved bytes.
        let bytes: [UInt8] = [0, 0, 0, 0, 32, 0, 31, 0] + [UInt8](repeating: 0, count: 24)
        let request = try #require(NVMeRDMA.ConnectRequest(bytes))
        #expect(request == NVMeRDMA.ConnectRequest(hostReceiveQueueSize: 32, hostSendQueueSize: 31))
        #expect(request.bytes == bytes)
        let answer = NVMeRDMA.answer(connectRequest: bytes, maximumQueueSize: 1024)
        #expect(try answer.get().accept.bytes == [0, 0, 32, 0] + [UInt8](repeating: 0, count: 28))
    }

    @Test(
        "a queue the controller cannot give is rejected with the status naming why",
        arguments: [
            ([UInt8](repeating: 0, count: 4), NVMeRDMA.ConnectReject.invalidLength),
            ([1, 0, 0, 0, 32, 0, 31, 0], NVMeRDMA.ConnectReject.invalidRecordFormat),
            ([0, 0, 1, 0, 32, 0, 31, 0], NVMeRDMA.ConnectReject.invalidQueueIdentifier),
            ([0, 0, 0, 0, 32, 0, 0, 0], NVMeRDMA.ConnectReject.invalidHostSendQueueSize),
            ([0, 0, 0, 0, 32, 0, 0, 4], NVMeRDMA.ConnectReject.invalidHostSendQueueSize),
            ([0, 0, 0, 0, 0, 0, 31, 0], NVMeRDMA.ConnectReject.invalidHostReceiveQueueSize),
        ]
    )
    func rejected(_ bytes: [UInt8], _ status: UInt16) {
        switch NVMeRDMA.answer(connectRequest: bytes, maximumQueueSize: 1024) {
        case .success(let accepted): Issue.record("accepted \(accepted)")
        case .failure(let reject):
            #expect(reject.status == status)
            #expect(reject.bytes.prefix(4) == [0, 0, UInt8(status), 0])
            #expect(NVMeRDMA.ConnectReject(reject.bytes) == reject)
        }
    }

    @Test("a Keyed SGL Data Block round-trips through the SQE: 3-byte length, 4-byte key, identifier 4xh")
    func keyedDescriptor() throws {
        let descriptor = SGLDescriptor.keyed(
            address: 0x1122_3344_5566_7788,
            length: 0x01_0203,
            key: 0xA1B2_C3D4,
            invalidate: true
        )
        var buffer = ByteBuffer()
        buffer.writeSubmissionQueueEntry(SubmissionQueueEntry(opcode: 0x02, dataPointer: descriptor))
        let bytes = Array(buffer.readableBytesView)
        #expect(
            Array(bytes[24..<40]) == [
                0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x03, 0x02, 0x01, 0xD4, 0xC3, 0xB2, 0xA1, 0x4F,
            ]
        )
        let entry = buffer.readSubmissionQueueEntry()
        let read = try #require(entry).dataPointer
        #expect(read == descriptor)
        #expect(read.isKeyed)
        #expect(read.keyedLength == 0x01_0203)
        #expect(read.key == 0xA1B2_C3D4)
        #expect(!SGLDescriptor.transport(length: 16).isKeyed)
    }

    @Test("data direction comes from the opcode, or from FCTYPE for a Fabrics command")
    func directions() {
        #expect(NVMeRDMA.dataDirection(of: SubmissionQueueEntry(opcode: AdminOpcode.getLogPage)) == .controllerToHost)
        #expect(NVMeRDMA.dataDirection(of: SubmissionQueueEntry(opcode: AdminOpcode.nvmeMISend)) == .hostToController)
        #expect(NVMeRDMA.dataDirection(of: SubmissionQueueEntry(opcode: AdminOpcode.keepAlive)) == .none)
        let connect = ConnectCommand(keepAliveTimeout: 0).submissionQueueEntry(commandIdentifier: 0)
        #expect(NVMeRDMA.dataDirection(of: connect) == .hostToController)
        let propertyGet = FabricsCommand.propertyGetEntry(commandIdentifier: 0, offset: 0, size8: true)
        #expect(NVMeRDMA.dataDirection(of: propertyGet) == .none)
    }
}

/// A host's side of the binding for these tests: SQEs with keyed blocks in SENDs.
private struct RDMAHost {
    var queue: NVMeRDMAControllerBinding
    /// The host's memory: keyed blocks by key.
    var memory: [UInt32: [UInt8]] = [:]
    var nextKey: UInt32 = 0x100

    /// Sends `entry` with `data` (read by the controller) or room for `receive` bytes (written
    /// by it), carrying out RDMA READs and WRITEs; returns the CQEs SENT back and the bytes
    /// written into the receive block.
    mutating func run(
        _ entry: SubmissionQueueEntry,
        data: [UInt8]? = nil,
        receive: Int = 0
    ) -> (completions: [CompletionQueueEntry], written: [UInt8], writes: Int, other: [NVMeRDMAControllerBinding.Action])
    {
        var entry = entry
        let key = nextKey
        nextKey += 1
        let address: UInt64 = 0x7F00_0000_0000 + UInt64(key) << 20
        if let data {
            memory[key] = data
            entry.dataPointer = .keyed(address: address, length: UInt32(data.count), key: key, invalidate: true)
        } else if receive > 0 {
            memory[key] = [UInt8](repeating: 0, count: receive)
            entry.dataPointer = .keyed(address: address, length: UInt32(receive), key: key, invalidate: true)
        } else {
            entry.dataPointer = .keyed(address: 0, length: 0, key: 0)
        }
        var capsule = ByteBuffer()
        capsule.writeSubmissionQueueEntry(entry)
        var pending = queue.capsuleReceived(capsule, now: TestValues.start)
        var completions: [CompletionQueueEntry] = []
        var other: [NVMeRDMAControllerBinding.Action] = []
        var writes = 0
        while !pending.isEmpty {
            let action = pending.removeFirst()
            switch action {
            case .send(var bytes):
                #expect(bytes.readableBytes == CompletionQueueEntry.size)
                if let completion = bytes.readCompletionQueueEntry() { completions.append(completion) }
            case .read(let token, let readAddress, let readKey, let length):
                #expect(readAddress == address && readKey == key)
                let bytes = memory[readKey] ?? []
                #expect(length == bytes.count)
                pending += queue.readCompleted(token, data: ByteBuffer(bytes: bytes), now: TestValues.start)
            case .write(let bytes, let writeAddress, let writeKey):
                #expect(writeKey == key)
                writes += 1
                let offset = Int(writeAddress - address)
                memory[writeKey]!.replaceSubrange(
                    offset..<offset + bytes.readableBytes,
                    with: Array(bytes.readableBytesView)
                )
                #expect(completions.isEmpty, "the data is written before the response is sent")
            default:
                other.append(action)
            }
        }
        return (completions, receive > 0 ? memory[key]! : [], writes, other)
    }

    /// Connect (its data read from the host) and CC.EN.
    mutating func connect(subsystemNQN: String, hostNQN: String = TestValues.hostNQN) -> CompletionQueueEntry? {
        let data = HostPDU.connectData(subsystemNQN: subsystemNQN, hostNQN: hostNQN)
        let connected = run(
            ConnectCommand(keepAliveTimeout: 5000).submissionQueueEntry(commandIdentifier: 1),
            data: Array(data.readableBytesView)
        )
        _ = run(
            FabricsCommand.propertySetEntry(
                commandIdentifier: 2,
                offset: ControllerProperty.configuration,
                value: TestValues.enabledConfiguration
            )
        )
        return connected.completions.first
    }
}

@Suite("NVMe/RDMA controller queue over the shared controller state machine")
struct NVMeRDMAControllerBindingTests {
    private static func discoveryHost(_ service: FakeDiscoveryService = FakeDiscoveryService()) -> RDMAHost {
        RDMAHost(
            queue: NVMeRDMAControllerBinding(
                configuration: TestValues.configuration(),
                serving: .discovery(service),
                maximumReadLength: 8192
            )
        )
    }

    @Test("no ICReq: Connect's data is fetched with an RDMA READ, Identify and the log page come by RDMA WRITE")
    func discoverySession() throws {
        let service = FakeDiscoveryService()
        var host = Self.discoveryHost(service)
        let completion = host.connect(subsystemNQN: DEMCore.wellKnownDiscoveryNQN)
        let connected = try #require(completion)
        #expect(connected.status == .success)
        #expect(connected.result == 1, "CNTLID 1")
        let identify = host.run(
            IdentifyCommand(controllerOrNamespaceStructure: IdentifyCommand.CNS.controller)
                .submissionQueueEntry(commandIdentifier: 3),
            receive: IdentifyControllerData.size
        )
        #expect(identify.completions.map(\.status) == [.success])
        var identifyBytes = ByteBuffer(bytes: identify.written)
        let identified = identifyBytes.readIdentifyControllerData()
        let data = try #require(identified)
        #expect(data.controllerType == IdentifyControllerData.ControllerType.discovery)
        let length = FakeDiscoveryService.samplePageBytes.readableBytes
        let page = host.run(
            GetLogPageCommand(
                logPageIdentifier: LogPageIdentifier.discovery,
                numberOfDwords: UInt64(length / 4),
                offset: 0
            )
            .submissionQueueEntry(commandIdentifier: 4),
            receive: length
        )
        #expect(page.completions.map(\.status) == [.success])
        #expect(page.written == Array(FakeDiscoveryService.samplePageBytes.readableBytesView))
        #expect(service.pageRequests.first?.hostNQN == TestValues.hostNQN)
        #expect(page.other.contains(.session(.logPageRead(offset: 0, length: UInt64(length)))))
    }

    @Test("host data above the limit is refused with Data SGL Length Invalid, without a READ")
    func oversizedRead() throws {
        var host = Self.discoveryHost()
        _ = host.connect(subsystemNQN: DEMCore.wellKnownDiscoveryNQN)
        let sent = host.run(
            SubmissionQueueEntry(opcode: AdminOpcode.nvmeMISend, commandIdentifier: 5),
            data: [UInt8](repeating: 1, count: 8193)
        )
        #expect(sent.completions.map(\.status) == [.dataSGLLengthInvalid.withDoNotRetry])
        #expect(host.queue.pendingReads == 0)
    }

    @Test("a SEND shorter than an SQE disconnects the queue")
    func shortCapsule() {
        var host = Self.discoveryHost()
        let actions = host.queue.capsuleReceived(ByteBuffer(bytes: [1, 2, 3]), now: TestValues.start)
        #expect(actions.count == 1)
        if case .disconnect = actions.first {} else { Issue.record("expected a disconnect, got \(actions)") }
        #expect(host.queue.capsuleReceived(ByteBuffer(bytes: [1, 2, 3]), now: TestValues.start).isEmpty)
    }

    @Test("a descriptor NVMe/RDMA cannot carry data for is refused before the controller, and the queue serves on")
    func transportDataBlockRefused() throws {
        var host = Self.discoveryHost()
        _ = host.connect(subsystemNQN: DEMCore.wellKnownDiscoveryNQN)
        // An Identify whose data pointer is an NVMe/TCP transport data block: the queue has no
        // keyed block to write the data to.
        var identify = IdentifyCommand(controllerOrNamespaceStructure: IdentifyCommand.CNS.controller)
            .submissionQueueEntry(commandIdentifier: 7)
        identify.dataPointer = .transport(length: UInt32(IdentifyControllerData.size))
        var capsule = ByteBuffer()
        capsule.writeSubmissionQueueEntry(identify)
        let actions = host.queue.capsuleReceived(capsule, now: TestValues.start)
        #expect(actions.count == 1)
        guard case .send(var bytes) = actions.first, let completion = bytes.readCompletionQueueEntry() else {
            Issue.record("expected one completion, got \(actions)")
            return
        }
        #expect(completion.commandIdentifier == 7)
        #expect(completion.status == .sglDescriptorTypeInvalid.withDoNotRetry)
        let again = host.run(
            IdentifyCommand(controllerOrNamespaceStructure: IdentifyCommand.CNS.controller)
                .submissionQueueEntry(commandIdentifier: 8),
            receive: IdentifyControllerData.size
        )
        #expect(again.completions.map(\.status) == [.success])
    }

    @Test("a log page larger than an NVMe/TCP C2HData PDU is one RDMA WRITE")
    func oneWrite() throws {
        let service = FakeDiscoveryService(page: ByteBuffer(bytes: (0..<16_384).map { UInt8(truncatingIfNeeded: $0) }))
        var configuration = TestValues.configuration()
        configuration.maximumC2HDataLength = 4096
        var host = RDMAHost(
            queue: NVMeRDMAControllerBinding(
                configuration: configuration,
                serving: .discovery(service),
                maximumReadLength: 8192
            )
        )
        _ = host.connect(subsystemNQN: DEMCore.wellKnownDiscoveryNQN)
        let page = host.run(
            GetLogPageCommand(logPageIdentifier: LogPageIdentifier.discovery, numberOfDwords: 4096, offset: 0)
                .submissionQueueEntry(commandIdentifier: 4),
            receive: 16_384
        )
        #expect(page.completions.map(\.status) == [.success])
        #expect(page.writes == 1)
        #expect(page.written == (0..<16_384).map { UInt8(truncatingIfNeeded: $0) })
    }

    @Test("a queue whose host never sends its Connect is disconnected after the setup timeout")
    func setupTimeout() {
        var host = Self.discoveryHost()
        #expect(
            host.queue.connectionOpened(now: TestValues.start) == [
                .session(.scheduleKeepAliveCheck(after: .seconds(10)))
            ]
        )
        #expect(
            host.queue.keepAliveTimerFired(now: TestValues.start + .seconds(4))
                == [.session(.scheduleKeepAliveCheck(after: .seconds(6)))]
        )
        let late = host.queue.keepAliveTimerFired(now: TestValues.start + .seconds(10))
        #expect(late == [.disconnect(reason: "no Connect within the setup timeout of 10 s")])
    }

    @Test("a discovery controller's Connect to another NQN is refused as over NVMe/TCP")
    func wrongNQN() throws {
        var host = Self.discoveryHost()
        let completion = host.connect(subsystemNQN: "nqn.2024-01.io.example:not-here")
        let connected = try #require(completion)
        #expect(connected.status == .connectInvalidParameters.withDoNotRetry)
    }

    @Test("the in-band channel over RDMA: challenge by WRITE, answer and request segments by READ")
    func inBandRequest() throws {
        let nqn = InBandManagement.managementNQN(alias: "t1")
        let service = EchoManagementService()
        var host = RDMAHost(
            queue: NVMeRDMAControllerBinding(
                configuration: DiscoveryControllerConfiguration(uniqueNQN: nqn),
                serving: .management(service),
                maximumReadLength: 8192
            )
        )
        let connected = host.connect(subsystemNQN: nqn)
        #expect(connected?.status == .success)
        func entry(
            _ opcode: UInt8,
            _ operation: UInt8,
            cid: UInt16,
            total: UInt32 = 0,
            length: Int
        ) -> SubmissionQueueEntry {
            InBandCommand(opcode: opcode, operation: operation, tag: 9, offset: 0, messageLength: total)
                .submissionQueueEntry(commandIdentifier: cid, dataLength: length)
        }
        // Two-way DH-HMAC-CHAP: Send data fetched with RDMA READ, Receive data placed with WRITE.
        let keys = InBandManagement.keys(credential: "s3cret")
        var exchange = DHCHAPHostExchange(
            hostNQN: TestValues.hostNQN,
            subsystemNQN: nqn,
            hostKey: keys.host,
            controllerKey: keys.controller
        )
        var outgoing: AuthenticationMessage? = exchange.start()
        var cid: UInt16 = 3
        var authenticated = false
        while let message = outgoing {
            let bytes = Array(message.bytes.readableBytesView)
            let sent = host.run(
                AuthenticationCommand.sendEntry(commandIdentifier: cid, length: bytes.count),
                data: bytes
            )
            #expect(sent.completions.map(\.status) == [.success], "\(message.name)")
            cid += 1
            outgoing = nil
            if authenticated { break }
            let received = host.run(
                AuthenticationCommand.receiveEntry(commandIdentifier: cid, length: 4096),
                receive: 4096
            )
            cid += 1
            switch exchange.received(ByteBuffer(bytes: received.written)) {
            case .send(let next): outgoing = next
            case .sendAndFinish(let next):
                outgoing = next
                authenticated = true
            case .finished, .failed(_, _): Issue.record("authentication did not complete")
            }
        }
        #expect(authenticated)
        let message: [UInt8] = Array("GET /inventory".utf8)
        let request = host.run(
            entry(
                AdminOpcode.nvmeMISend,
                InBandManagement.Opcode.requestSegment,
                cid: 5,
                total: UInt32(message.count),
                length: message.count
            ),
            data: message
        )
        #expect(request.completions.isEmpty, "the final segment completes when the request has run")
        let associated = try #require(host.queue.machine.host)
        #expect(request.other == [.session(.performManagementRequest(ByteBuffer(bytes: message), host: associated))])
        var done = host.queue.managementRequestCompleted(ByteBuffer(bytes: message))
        #expect(done.count == 1)
        guard case .send(var bytes) = done.removeFirst(), let completion = bytes.readCompletionQueueEntry() else {
            Issue.record("no response SEND")
            return
        }
        #expect(completion.commandIdentifier == 5)
        #expect(completion.result == UInt32(message.count))
        let response = host.run(
            entry(AdminOpcode.nvmeMIReceive, InBandManagement.Opcode.responseSegment, cid: 6, length: message.count),
            receive: message.count
        )
        #expect(response.completions.map(\.status) == [.success])
        #expect(response.written == message)
    }
}
