import DEMCore
import NIOCore
import Testing

/// The one completion in `actions`, checked against CID and status.
@discardableResult
func expectCompletion(
    _ actions: [Action],
    cid: UInt16,
    status expected: NVMeStatus = .success,
    result: UInt32? = nil,
    sourceLocation: SourceLocation = #_sourceLocation
) -> CompletionQueueEntry? {
    let completions = actions.completions
    #expect(completions.count == 1, "one CapsuleResp in \(actions)", sourceLocation: sourceLocation)
    guard let completion = completions.last else { return nil }
    #expect(completion.commandIdentifier == cid, sourceLocation: sourceLocation)
    #expect(
        completion.status == expected,
        "status \(completion.status), expected \(expected)",
        sourceLocation: sourceLocation
    )
    #expect(completion.submissionQueueIdentifier == 0, sourceLocation: sourceLocation)
    if let result {
        #expect(
            completion.result == result,
            "DW0 \(String(completion.result, radix: 16))",
            sourceLocation: sourceLocation
        )
    }
    #expect(!actions.containsClose, "a command error keeps the connection open", sourceLocation: sourceLocation)
    return completion
}

/// The termination in `actions`: exactly a C2HTermReq and a close.
func expectTermination(
    _ actions: [Action],
    _ status: NVMeTCPFatalErrorStatus,
    fei: UInt32,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(actions.count == 2, "C2HTermReq then close: \(actions)", sourceLocation: sourceLocation)
    guard actions.count == 2 else { return }
    let request = actions[0].terminationRequest
    #expect(request?.status == status, sourceLocation: sourceLocation)
    #expect(request?.fieldErrorInformation == fei, sourceLocation: sourceLocation)
    #expect((request?.pduInError.readableBytes ?? 0) <= 128, sourceLocation: sourceLocation)
    #expect(actions[1].isClose, sourceLocation: sourceLocation)
}

@Suite("Discovery controller state machine: connection setup")
struct ConnectionSetupTests {
    @Test("ICReq → ICResp: PFV 0, CPDA 0, the requested digests echoed, MAXH2CDATA", arguments: DigestOption.all)
    func initializeConnection(_ option: DigestOption) {
        var configuration = TestValues.configuration()
        configuration.maximumH2CDataLength = 65_536
        var session = ControllerSession(configuration: configuration)
        let actions = session.initialize(digests: option.digests, hostPDUDataAlignment: 3)
        #expect(
            actions == [
                .send(
                    .initializeConnectionResponse(
                        InitializeConnectionResponse(
                            pduFormatVersion: 0,
                            controllerPDUDataAlignment: 0,
                            digests: option.digests,
                            maximumH2CDataLength: 65_536
                        )
                    )
                )
            ]
        )
        #expect(session.machine.digests == option.digests)
        #expect(session.machine.hostDataAlignment == 16, "HPDA 3 = 16 bytes")
        #expect(!session.machine.isClosed)
        #expect(session.machine.host == nil)
    }

    @Test("ICReq with unknown DGST bits: only HDGST_ENABLE and DDGST_ENABLE are echoed")
    func unknownDigestBits() {
        var session = ControllerSession()
        let actions = session.receive(HostPDU.icreq(digests: NVMeTCPDigests(rawValue: 0xFF)))
        guard case .send(.initializeConnectionResponse(let response)) = actions.first else {
            Issue.record("no ICResp: \(actions)")
            return
        }
        #expect(response.digests == [.header, .data])
        #expect(session.machine.digests == [.header, .data])
    }

    @Test("ICReq with PFV 1 → C2HTermReq FES 06h Unsupported Parameter, FEI 8 (PFV)")
    func unsupportedPFV() {
        var session = ControllerSession()
        expectTermination(session.receive(HostPDU.icreq(pduFormatVersion: 1)), .unsupportedParameter, fei: 8)
        #expect(session.machine.isClosed)
    }

    @Test("ICReq with HPDA 32 → C2HTermReq FES 01h Invalid PDU Header Field, FEI 10 (HPDA)")
    func hpdaTooLarge() {
        var session = ControllerSession()
        expectTermination(session.receive(HostPDU.icreq(hostPDUDataAlignment: 32)), .invalidHeaderField, fei: 10)
        var accepted = ControllerSession()
        #expect(accepted.receive(HostPDU.icreq(hostPDUDataAlignment: 31)).count == 1)
        #expect(accepted.machine.hostDataAlignment == 128)
    }

    @Test(
        "Connect → success with CNTLID in DW0, .controllerCreated, .scheduleKeepAliveCheck",
        arguments: [DEMCore.wellKnownDiscoveryNQN, TestValues.uniqueNQN]
    )
    func connect(_ subsystemNQN: String) {
        let service = FakeDiscoveryService(firstControllerIdentifier: 0x21)
        var session = ControllerSession(service: service)
        let actions = session.connect(subsystemNQN: subsystemNQN)
        let host = DiscoveryHostContext(
            hostNQN: TestValues.hostNQN,
            hostIdentifier: TestValues.hostID,
            subsystemNQN: subsystemNQN
        )
        #expect(
            actions == [
                .send(
                    .capsuleResponse(
                        CapsuleResponse(
                            completion: CompletionQueueEntry(result: 0x21, submissionQueueHead: 1, commandIdentifier: 0)
                        )
                    )
                ),
                .controllerCreated(host, controllerIdentifier: 0x21),
                .scheduleKeepAliveCheck(after: .seconds(120)),
            ]
        )
        #expect(session.machine.host == host)
        // The next connection gets the next controller ID.
        var second = ControllerSession(service: service)
        let secondActions = second.connect(subsystemNQN: subsystemNQN)
        #expect(secondActions.completions.first?.result == 0x22)
    }

    @Test("Connect with KATO 30000 ms schedules the keep-alive check after 30 s")
    func connectWithKATO() {
        var session = ControllerSession()
        let actions = session.connect(keepAliveTimeout: 30_000)
        #expect(actions.last == .scheduleKeepAliveCheck(after: .milliseconds(30_000)))
    }

    @Test("Connect with KATO 0 uses the configured default keep-alive timeout")
    func connectWithKATOZero() {
        var configuration = TestValues.configuration()
        configuration.defaultKeepAliveTimeout = .seconds(30)
        var session = ControllerSession(configuration: configuration)
        let actions = session.connect(keepAliveTimeout: 0)
        #expect(actions.last == .scheduleKeepAliveCheck(after: .seconds(30)))
    }

    @Test("an I/O queue Connect (QID 1) → Connect Invalid Parameters, DNR, IPO 42 in the SQE")
    func ioQueueConnect() {
        var session = ControllerSession()
        session.initialize()
        let actions = session.receive(HostPDU.connect(cid: 4, queueIdentifier: 1))
        expectCompletion(actions, cid: 4, status: NVMeStatus.connectInvalidParameters.withDoNotRetry, result: 42)
        #expect(actions.count == 1, "no controller is created")
        // The admin queue Connect still works afterwards.
        #expect(session.receive(HostPDU.connect(cid: 5)).completions.first?.status == .success)
    }

    /// A Connect the controller refuses, with the completion it must get.
    struct RefusedConnect: Sendable, CustomTestStringConvertible {
        var name: String
        var pdu: NVMeTCPPDU
        var status: NVMeStatus
        var result: UInt32
        var testDescription: String { name }
    }

    static let refusedConnects: [RefusedConnect] = [
        .init(
            name: "unknown SUBNQN → Connect Invalid Parameters, IATTR 1, IPO 256",
            pdu: HostPDU.connect(subsystemNQN: "nqn.2024-01.io.example:not-here"),
            status: NVMeStatus.connectInvalidParameters.withDoNotRetry,
            result: 0x0001_0100
        ),
        .init(
            name: "CNTLID 0001h (not FFFFh) → Connect Invalid Parameters, IATTR 1, IPO 16",
            pdu: HostPDU.connect(controllerIdentifier: 1),
            status: NVMeStatus.connectInvalidParameters.withDoNotRetry,
            result: 0x0001_0010
        ),
        .init(
            name: "invalid HOSTNQN → Connect Invalid Parameters, IATTR 1, IPO 512",
            pdu: HostPDU.connect(hostNQN: "host-1"),
            status: NVMeStatus.connectInvalidParameters.withDoNotRetry,
            result: 0x0001_0200
        ),
        .init(
            name: "SQSIZE 0 → Connect Invalid Parameters, IPO 44",
            pdu: HostPDU.connect(submissionQueueSize: 0),
            status: NVMeStatus.connectInvalidParameters.withDoNotRetry,
            result: 44
        ),
        .init(
            name: "SQSIZE 1024, above CAP.MQES 1023 → Connect Invalid Parameters, IPO 44",
            pdu: HostPDU.connect(submissionQueueSize: 1024),
            status: NVMeStatus.connectInvalidParameters.withDoNotRetry,
            result: 44
        ),
        .init(
            name: "RECFMT 1 → Connect Incompatible Format",
            pdu: HostPDU.connect(recordFormat: 1),
            status: NVMeStatus.connectIncompatibleFormat.withDoNotRetry,
            result: 0
        ),
        .init(
            name: "512 bytes of Connect data → Data SGL Length Invalid",
            pdu: HostPDU.connect(dataLength: 512),
            status: NVMeStatus.dataSGLLengthInvalid.withDoNotRetry,
            result: 0
        ),
        .init(
            name: "no Connect data at all → Data SGL Length Invalid",
            pdu: HostPDU.connect(dataLength: 0),
            status: NVMeStatus.dataSGLLengthInvalid.withDoNotRetry,
            result: 0
        ),
        .init(
            name: "SGL length 2048 with 1024 bytes in the capsule → Data SGL Length Invalid",
            pdu: HostPDU.connect(dataPointer: .inCapsule(length: 2048)),
            status: NVMeStatus.dataSGLLengthInvalid.withDoNotRetry,
            result: 0
        ),
        .init(
            name: "Connect data not in-capsule (Transport SGL Data Block) → SGL Descriptor Type Invalid",
            pdu: HostPDU.command(
                ConnectCommand().submissionQueueEntry(commandIdentifier: 0).with {
                    $0.dataPointer = .transport(length: 1024)
                }
            ),
            status: NVMeStatus.sglDescriptorTypeInvalid.withDoNotRetry,
            result: 0
        ),
    ]

    @Test(
        "a refused Connect gets its status and the connection stays open, awaiting a Connect",
        arguments: refusedConnects
    )
    func refusedConnect(_ input: RefusedConnect) {
        var session = ControllerSession()
        session.initialize()
        let cid: UInt16 = if case .capsuleCommand(let c) = input.pdu { c.command.commandIdentifier } else { 0 }
        let actions = session.receive(input.pdu)
        expectCompletion(actions, cid: cid, status: input.status, result: input.result)
        #expect(actions.count == 1)
        #expect(session.machine.host == nil)
        #expect(session.receive(HostPDU.connect(cid: 9)).completions.first?.status == .success)
    }

    @Test("Connect whose in-capsule data failed its digest → Transient Transport Error (retryable)")
    func connectDataDigestMismatch() {
        var session = ControllerSession()
        session.initialize(digests: .data)
        guard case .capsuleCommand(var capsule) = HostPDU.connect(cid: 2) else { return }
        capsule.dataDigestMismatch = true
        let actions = session.receive(.capsuleCommand(capsule))
        expectCompletion(actions, cid: 2, status: .transientTransportError)
        #expect(session.receive(HostPDU.connect(cid: 3)).completions.first?.status == .success)
    }

    @Test("commands before Connect → Command Sequence Error with DNR, connection open")
    func commandsBeforeConnect() {
        var session = ControllerSession()
        session.initialize()
        for (cid, pdu) in [
            (UInt16(1), HostPDU.identify(cid: 1)), (2, HostPDU.propertyGet(cid: 2, offset: 0, size8: true)),
            (3, HostPDU.keepAlive(cid: 3)), (4, HostPDU.asynchronousEventRequest(cid: 4)),
            (5, HostPDU.getLogPage(cid: 5, length: 1024)), (6, HostPDU.disconnect(cid: 6)),
        ] {
            expectCompletion(session.receive(pdu), cid: cid, status: NVMeStatus.commandSequenceError.withDoNotRetry)
        }
        #expect(!session.machine.isClosed)
    }

    @Test("a second Connect on a connected queue → Command Sequence Error")
    func secondConnect() {
        var session = ControllerSession()
        session.connectAndEnable()
        expectCompletion(
            session.receive(HostPDU.connect(cid: 7)),
            cid: 7,
            status: NVMeStatus.commandSequenceError.withDoNotRetry
        )
    }
}

extension SubmissionQueueEntry {
    func with(_ change: (inout SubmissionQueueEntry) -> Void) -> SubmissionQueueEntry {
        var copy = self
        change(&copy)
        return copy
    }
}

@Suite("Discovery controller state machine: properties")
struct PropertyTests {
    @Test("Property Get CAP (8 bytes: DW0 and DW1), VS and CSTS before enabling; CC.EN = 1 → CSTS.RDY = 1")
    func propertiesAndEnable() {
        var session = ControllerSession()
        session.connect()
        let cap = expectCompletion(session.receive(HostPDU.propertyGet(cid: 1, offset: 0x00, size8: true)), cid: 1)
        #expect(cap?.result == 0x0F00_03FF && cap?.dw1 == 0x0000_0820)
        #expect(cap?.result64 == ControllerStateMachine.capabilities)
        expectCompletion(session.receive(HostPDU.propertyGet(cid: 2, offset: 0x08)), cid: 2, result: 0x0001_0300)
        expectCompletion(session.receive(HostPDU.propertyGet(cid: 3, offset: 0x1C)), cid: 3, result: 0)
        expectCompletion(session.receive(HostPDU.propertyGet(cid: 4, offset: 0x14)), cid: 4, result: 0)
        // Linux writes CC with EN = 0 first, then EN = 1.
        expectCompletion(session.receive(HostPDU.propertySet(cid: 5, offset: 0x14, value: 0x0046_0000)), cid: 5)
        expectCompletion(session.receive(HostPDU.propertyGet(cid: 6, offset: 0x1C)), cid: 6, result: 0)
        expectCompletion(session.receive(HostPDU.propertySet(cid: 7, offset: 0x14, value: 0x0046_0001)), cid: 7)
        expectCompletion(session.receive(HostPDU.propertyGet(cid: 8, offset: 0x14)), cid: 8, result: 0x0046_0001)
        let csts = expectCompletion(session.receive(HostPDU.propertyGet(cid: 9, offset: 0x1C)), cid: 9)
        #expect(csts?.result == 1, "CSTS.RDY")
    }

    @Test("CC.SHN = 01b → CSTS.SHST = 10b (complete), and admin commands are refused")
    func shutdown() {
        var session = ControllerSession()
        session.connectAndEnable()
        expectCompletion(session.receive(HostPDU.propertySet(cid: 2, offset: 0x14, value: 0x0046_4001)), cid: 2)
        let csts = expectCompletion(session.receive(HostPDU.propertyGet(cid: 3, offset: 0x1C)), cid: 3)
        #expect(((csts?.result ?? 0) >> 2) & 0x3 == 0x2, "SHST: shutdown processing complete")
        expectCompletion(
            session.receive(HostPDU.identify(cid: 4)),
            cid: 4,
            status: NVMeStatus.commandSequenceError.withDoNotRetry
        )
    }

    @Test("CC.EN 1 → 0 (reset) clears CSTS.RDY")
    func reset() {
        var session = ControllerSession()
        session.connectAndEnable()
        expectCompletion(session.receive(HostPDU.propertySet(cid: 2, offset: 0x14, value: 0x0046_0000)), cid: 2)
        expectCompletion(session.receive(HostPDU.propertyGet(cid: 3, offset: 0x1C)), cid: 3, result: 0)
    }

    @Test(
        "bad property accesses → Invalid Field in Command with DNR",
        arguments: [
            ("Property Get CAP as 4 bytes", HostPDU.propertyGet(cid: 1, offset: 0x00, size8: false)),
            ("Property Get VS as 8 bytes", HostPDU.propertyGet(cid: 1, offset: 0x08, size8: true)),
            ("Property Get of offset 0x30", HostPDU.propertyGet(cid: 1, offset: 0x30)),
            ("Property Get of NSSR (0x20)", HostPDU.propertyGet(cid: 1, offset: 0x20)),
            ("Property Set of CSTS (read-only)", HostPDU.propertySet(cid: 1, offset: 0x1C, value: 1)),
            ("Property Set of CAP (read-only)", HostPDU.propertySet(cid: 1, offset: 0x00, value: 1, size8: true)),
            ("Property Set of CC as 8 bytes", HostPDU.propertySet(cid: 1, offset: 0x14, value: 1, size8: true)),
        ]
    )
    func badPropertyAccess(_ name: String, _ pdu: NVMeTCPPDU) {
        var session = ControllerSession()
        session.connect()
        expectCompletion(session.receive(pdu), cid: 1, status: NVMeStatus.invalidField.withDoNotRetry)
    }
}

@Suite("Discovery controller state machine: Identify and Get Log Page")
struct IdentifyAndLogPageTests {
    @Test(
        "Identify CNS 1 → one 4096-byte C2HData (CNTRLTYPE 2, DCTYPE, SUBNQN, OAES, KAS, SGLS, LPA), then the CapsuleResp",
        arguments: [DEMCore.wellKnownDiscoveryNQN, TestValues.uniqueNQN]
    )
    func identifyController(_ subsystemNQN: String) throws {
        var session = ControllerSession()
        session.connectAndEnable(subsystemNQN: subsystemNQN)
        let actions = session.receive(HostPDU.identify(cid: 0x0A))
        #expect(actions.count == 2)
        let data = try #require(actions.first?.controllerToHostData)
        #expect(data.commandIdentifier == 0x0A && data.dataOffset == 0 && data.isLast && !data.isSuccess)
        #expect(data.data.readableBytes == 4096)
        let bytes = data.data.bytes
        #expect(bytes[111] == 2, "CNTRLTYPE: discovery controller")
        #expect(bytes[1806] == session.configuration.discoveryControllerType, "DCTYPE at byte 1806")
        #expect(bytes[1806] == IdentifyControllerData.DiscoveryControllerType.centralized)
        var buffer = data.data
        let identifyRead = buffer.readIdentifyControllerData()
        let identify = try #require(identifyRead)
        #expect(identify.subsystemNQN == subsystemNQN, "SUBNQN is the NQN the host connected to")
        #expect(identify.controllerIdentifier == 1, "CNTLID from Connect")
        #expect(identify.optionalAsynchronousEventsSupported & (1 << 31) != 0, "OAES bit 31: discovery log page change")
        #expect(identify.keepAliveSupport > 0, "KAS: Keep Alive supported")
        #expect(identify.sglSupport & 0x3 != 0, "SGLS: SGLs supported")
        #expect(identify.logPageAttributes & (1 << 2) != 0, "LPA bit 2: extended data (offsets) for Get Log Page")
        #expect(identify.version == ControllerStateMachine.version, "VER equals VS")
        #expect(identify.asynchronousEventRequestLimit == 3, "AERL is 0's based: 4 requests")
        #expect(identify.maximumDataTransferSize == 12, "MDTS 12: 2^12 × 4 KiB = 16 MiB")
        #expect(identify.serialNumber == "DEM" && identify.modelNumber == "DEM discovery controller")
        expectCompletion(Array(actions.dropFirst()), cid: 0x0A)
    }

    @Test("Identify with a small MAXC2HDATA is split into several C2HData PDUs")
    func identifySplit() {
        var session = ControllerSession(configuration: TestValues.configuration(maximumC2HDataLength: 1024))
        session.connectAndEnable()
        let actions = session.receive(HostPDU.identify(cid: 2))
        let data = actions.controllerToHostData
        #expect(data.map(\.dataOffset) == [0, 1024, 2048, 3072])
        #expect(data.map(\.isLast) == [false, false, false, true])
        #expect(actions.last?.completion?.status == .success)
    }

    @Test(
        "Identify CNS 0 (namespace) → Invalid Field; a 1024-byte SGL → Data SGL Length Invalid; in-capsule SGL → SGL Descriptor Type Invalid"
    )
    func identifyErrors() {
        var session = ControllerSession()
        session.connectAndEnable()
        expectCompletion(
            session.receive(HostPDU.identify(cid: 3, cns: 0)),
            cid: 3,
            status: NVMeStatus.invalidField.withDoNotRetry
        )
        let short = IdentifyCommand(controllerOrNamespaceStructure: 1).submissionQueueEntry(commandIdentifier: 4).with {
            $0.dataPointer = .transport(length: 1024)
        }
        expectCompletion(
            session.receive(HostPDU.command(short)),
            cid: 4,
            status: NVMeStatus.dataSGLLengthInvalid.withDoNotRetry
        )
        let inCapsule = IdentifyCommand(controllerOrNamespaceStructure: 1).submissionQueueEntry(commandIdentifier: 5)
            .with { $0.dataPointer = .inCapsule(length: 4096) }
        expectCompletion(
            session.receive(HostPDU.command(inCapsule)),
            cid: 5,
            status: NVMeStatus.sglDescriptorTypeInvalid.withDoNotRetry
        )
    }

    /// Reassembles the C2HData of one command, checking DATAO and LAST_PDU.
    static func reassemble(
        _ actions: [Action],
        cid: UInt16,
        chunk: Int,
        sourceLocation: SourceLocation = #_sourceLocation
    ) -> [UInt8] {
        var bytes: [UInt8] = []
        let data = actions.controllerToHostData
        for (index, pdu) in data.enumerated() {
            #expect(pdu.commandIdentifier == cid, sourceLocation: sourceLocation)
            #expect(Int(pdu.dataOffset) == bytes.count, "DATAO", sourceLocation: sourceLocation)
            #expect(
                pdu.isLast == (index == data.count - 1),
                "LAST_PDU only on the last",
                sourceLocation: sourceLocation
            )
            #expect(!pdu.isSuccess, sourceLocation: sourceLocation)
            #expect(pdu.data.readableBytes <= chunk, sourceLocation: sourceLocation)
            bytes += pdu.data.bytes
        }
        return bytes
    }

    /// A Get Log Page read and what it must return.
    struct Read: Sendable, CustomTestStringConvertible {
        var offset: UInt64
        var length: UInt32
        var testDescription: String { "offset \(offset), \(length) bytes" }
    }

    @Test(
        "Get Log Page with offset and length, across several C2HData PDUs; past the end reads zeros",
        arguments: [
            Read(offset: 0, length: 4096), Read(offset: 0, length: 1024), Read(offset: 1024, length: 1500),
            Read(offset: 3072, length: 2048), Read(offset: 4096, length: 4), Read(offset: 8, length: 8),
            Read(offset: 0, length: 8192),
        ]
    )
    func getLogPage(_ read: Read) {
        let service = FakeDiscoveryService()
        var session = ControllerSession(
            configuration: TestValues.configuration(maximumC2HDataLength: 1024),
            service: service
        )
        session.connectAndEnable()
        let page = service.page.bytes
        #expect(page.count == 4096)
        let actions = session.receive(HostPDU.getLogPage(cid: 0x100A, offset: read.offset, length: read.length))
        let bytes = Self.reassemble(actions, cid: 0x100A, chunk: 1024)
        let start = Int(read.offset)
        let end = start + Int(read.length)
        let expected =
            Array(page[min(start, page.count)..<min(end, page.count)])
            + [UInt8](repeating: 0, count: max(0, end - max(start, page.count)))
        #expect(bytes.count == Int(read.length))
        #expect(bytes == expected)
        #expect(actions.count == actions.controllerToHostData.count + 2)
        #expect(actions[actions.count - 2].completion?.status == .success)
        #expect(actions[actions.count - 2].completion?.commandIdentifier == 0x100A)
        #expect(actions.last == .logPageRead(offset: read.offset, length: UInt64(read.length)))
    }

    @Test("the page is asked for with the connected host's context")
    func pageForHost() {
        let service = FakeDiscoveryService()
        var session = ControllerSession(service: service)
        session.connectAndEnable(subsystemNQN: TestValues.uniqueNQN)
        session.receive(HostPDU.getLogPage(cid: 2, length: 1024))
        #expect(service.pageRequests.map(\.hostNQN) == [TestValues.hostNQN])
        #expect(service.pageRequests.map(\.subsystemNQN) == [TestValues.uniqueNQN])
        #expect(service.pageRequests.first?.hostIdentifier == TestValues.hostID)
    }

    @Test(
        "bad Get Log Page requests get their status and no data",
        arguments: [
            (
                "offset 4100, past the end of the 4096-byte page → Invalid Field",
                HostPDU.getLogPage(cid: 1, offset: 4100, length: 4), NVMeStatus.invalidField.withDoNotRetry
            ),
            (
                "offset 2, not dword aligned → Invalid Field", HostPDU.getLogPage(cid: 1, offset: 2, length: 4),
                NVMeStatus.invalidField.withDoNotRetry
            ),
            (
                "offset 2^40 → Invalid Field", HostPDU.getLogPage(cid: 1, offset: 1 << 40, length: 4),
                NVMeStatus.invalidField.withDoNotRetry
            ),
            (
                "LID 02h (SMART) → Invalid Log Page", HostPDU.getLogPage(cid: 1, length: 512, logPageIdentifier: 0x02),
                NVMeStatus.invalidLogPage.withDoNotRetry
            ),
            (
                "LID 71h (host discovery) → Invalid Log Page",
                HostPDU.getLogPage(cid: 1, length: 512, logPageIdentifier: 0x71),
                NVMeStatus.invalidLogPage.withDoNotRetry
            ),
            (
                "32 MiB, above MDTS → Invalid Field", HostPDU.getLogPage(cid: 1, length: 32 << 20),
                NVMeStatus.invalidField.withDoNotRetry
            ),
            (
                "SGL of 1024 bytes for 4096 asked → Data SGL Length Invalid",
                HostPDU.command(
                    GetLogPageCommand(logPageIdentifier: 0x70, numberOfDwords: 1024).submissionQueueEntry(
                        commandIdentifier: 1
                    ).with { $0.dataPointer = .transport(length: 1024) }
                ),
                NVMeStatus.dataSGLLengthInvalid.withDoNotRetry
            ),
            (
                "in-capsule SGL → SGL Descriptor Type Invalid",
                HostPDU.command(
                    GetLogPageCommand(logPageIdentifier: 0x70, numberOfDwords: 1).submissionQueueEntry(
                        commandIdentifier: 1
                    ).with { $0.dataPointer = .inCapsule(length: 4) }
                ),
                NVMeStatus.sglDescriptorTypeInvalid.withDoNotRetry
            ),
        ]
    )
    func badGetLogPage(_ name: String, _ pdu: NVMeTCPPDU, _ expected: NVMeStatus) {
        var session = ControllerSession()
        session.connectAndEnable()
        let actions = session.receive(pdu)
        expectCompletion(actions, cid: 1, status: expected)
        #expect(actions.controllerToHostData.isEmpty)
    }

    @Test("Get Log Page with NUMD FFFFFFFFh (16 GiB) is refused, not answered with no data")
    func getLogPageLargestNUMD() {
        var session = ControllerSession()
        session.connectAndEnable()
        let entry = SubmissionQueueEntry(
            opcode: 0x02,
            commandIdentifier: 1,
            dataPointer: .transport(length: UInt32.max),
            cdw10: 0xFFFF_0070,
            cdw11: 0xFFFF
        )
        let actions = session.receive(HostPDU.command(entry))
        let completion = actions.completions.first
        #expect(
            completion?.status.isSuccess == false,
            "a 16 GiB read must fail (Invalid Field or Data SGL Length Invalid), got \(actions)"
        )
    }
}

@Suite("Discovery controller state machine: asynchronous events")
struct AsynchronousEventTests {
    static let notice: UInt32 = 0x0070_F002

    @Test("a parked AER is completed by discoveryLogChanged() with 70F002h")
    func parkedThenChanged() {
        var session = ControllerSession()
        session.connectAndEnable()
        #expect(session.receive(HostPDU.asynchronousEventRequest(cid: 0x1F)) == [], "the AER is parked")
        let actions = session.machine.discoveryLogChanged()
        #expect(actions.count == 2)
        let completion = expectCompletion(actions, cid: 0x1F, result: Self.notice)
        #expect(completion?.submissionQueueHead == 3, "Connect 1, CC 2, AER 3")
        #expect(actions.last == .asynchronousEventSent)
        #expect(AsynchronousEvent(result: completion?.result ?? 0) == .discoveryLogPageChange)
    }

    @Test("after a notice, further changes are masked until Get Log Page with RAE = 0")
    func maskedUntilRead() {
        var session = ControllerSession()
        session.connectAndEnable()
        session.receive(HostPDU.asynchronousEventRequest(cid: 0x10))
        expectCompletion(session.machine.discoveryLogChanged(), cid: 0x10, result: Self.notice)
        #expect(session.receive(HostPDU.asynchronousEventRequest(cid: 0x11)) == [])
        #expect(session.machine.discoveryLogChanged() == [], "masked: the host has not read the page")
        // RAE = 1 keeps the event retained, so still masked.
        expectCompletion(
            Array(
                session.receive(HostPDU.getLogPage(cid: 2, length: 1024, retainAsynchronousEvent: true)).filter {
                    $0.completion != nil
                }
            ),
            cid: 2
        )
        #expect(session.machine.discoveryLogChanged() == [], "RAE = 1 does not unmask")
        // RAE = 0 clears it.
        expectCompletion(
            Array(session.receive(HostPDU.getLogPage(cid: 3, length: 4096)).filter { $0.completion != nil }),
            cid: 3
        )
        let actions = session.machine.discoveryLogChanged()
        expectCompletion(actions, cid: 0x11, result: Self.notice)
        #expect(actions.last == .asynchronousEventSent)
    }

    @Test("a change with no parked AER is kept and completes the next AER at once")
    func pendingEvent() {
        var session = ControllerSession()
        session.connectAndEnable()
        #expect(session.machine.discoveryLogChanged() == [])
        #expect(session.machine.discoveryLogChanged() == [], "coalesced")
        let actions = session.receive(HostPDU.asynchronousEventRequest(cid: 5))
        expectCompletion(actions, cid: 5, result: Self.notice)
        #expect(actions.last == .asynchronousEventSent)
        // Only one notice was pending.
        #expect(session.receive(HostPDU.asynchronousEventRequest(cid: 6)) == [])
    }

    @Test("one AER more than the limit → Asynchronous Event Request Limit Exceeded with DNR")
    func tooManyAERs() {
        var session = ControllerSession(configuration: TestValues.configuration(asynchronousEventRequestLimit: 4))
        session.connectAndEnable()
        for cid: UInt16 in 10..<14 {
            #expect(session.receive(HostPDU.asynchronousEventRequest(cid: cid)) == [])
        }
        expectCompletion(
            session.receive(HostPDU.asynchronousEventRequest(cid: 14)),
            cid: 14,
            status: NVMeStatus.asynchronousEventRequestLimitExceeded.withDoNotRetry
        )
        // The first parked request is the one completed.
        expectCompletion(session.machine.discoveryLogChanged(), cid: 10, result: Self.notice)
    }

    @Test("a command reusing the CID of a parked AER → Command ID Conflict with DNR; the AER stays parked")
    func commandIdentifierConflict() {
        var session = ControllerSession()
        session.connectAndEnable()
        session.receive(HostPDU.asynchronousEventRequest(cid: 0x1F))
        expectCompletion(
            session.receive(HostPDU.keepAlive(cid: 0x1F)),
            cid: 0x1F,
            status: NVMeStatus.commandIdentifierConflict.withDoNotRetry
        )
        expectCompletion(
            session.receive(HostPDU.asynchronousEventRequest(cid: 0x1F)),
            cid: 0x1F,
            status: NVMeStatus.commandIdentifierConflict.withDoNotRetry
        )
        expectCompletion(session.machine.discoveryLogChanged(), cid: 0x1F, result: Self.notice)
    }

    @Test("Set Features AEC without bit 31 turns notices off; Get Features reads it back")
    func asynchronousEventConfiguration() {
        var session = ControllerSession()
        session.connectAndEnable()
        expectCompletion(session.receive(HostPDU.getFeatures(cid: 2, feature: 0x0B)), cid: 2, result: 0x8000_0000)
        expectCompletion(session.receive(HostPDU.setFeatures(cid: 3, feature: 0x0B, value: 0)), cid: 3, result: 0)
        session.receive(HostPDU.asynchronousEventRequest(cid: 4))
        #expect(session.machine.discoveryLogChanged() == [])
        expectCompletion(
            session.receive(HostPDU.setFeatures(cid: 5, feature: 0x0B, value: 0x8000_0000)),
            cid: 5,
            result: 0x8000_0000
        )
        expectCompletion(session.machine.discoveryLogChanged(), cid: 4, result: Self.notice)
    }

    @Test("discoveryLogChanged() before Connect or after close does nothing")
    func changeWithoutController() {
        var session = ControllerSession()
        #expect(session.machine.discoveryLogChanged() == [])
        session.initialize()
        #expect(session.machine.discoveryLogChanged() == [])
        session.connectAndEnable()
        session.receive(HostPDU.asynchronousEventRequest(cid: 9))
        session.machine.channelClosed()
        #expect(session.machine.discoveryLogChanged() == [])
    }
}

@Suite("Discovery controller state machine: keep-alive, features, disconnect, errors")
struct KeepAliveAndErrorTests {
    @Test("keepAliveTimerFired before expiry reschedules with the time left; after expiry it closes")
    func keepAliveTimer() {
        var session = ControllerSession()
        session.connectAndEnable(keepAliveTimeout: 10_000)  // at t0 + 0
        session.advance(.seconds(5))
        #expect(session.machine.keepAliveTimerFired(now: session.now) == [.scheduleKeepAliveCheck(after: .seconds(5))])
        session.advance(.seconds(3))  // t0 + 8: any command restarts the timer
        expectCompletion(session.receive(HostPDU.keepAlive(cid: 2)), cid: 2)
        session.advance(.seconds(2))  // t0 + 10
        #expect(session.machine.keepAliveTimerFired(now: session.now) == [.scheduleKeepAliveCheck(after: .seconds(8))])
        session.advance(.seconds(8))  // t0 + 18: expired
        let actions = session.machine.keepAliveTimerFired(now: session.now)
        #expect(actions.count == 1 && actions[0].isClose)
        #expect(session.machine.isClosed)
        #expect(session.receive(HostPDU.keepAlive(cid: 3)) == [])
        #expect(session.machine.keepAliveTimerFired(now: session.now) == [])
    }

    @Test("KATO 0 uses the default timeout for expiry")
    func defaultTimeoutExpiry() {
        var session = ControllerSession()
        session.connectAndEnable(keepAliveTimeout: 0)
        session.advance(.seconds(119))
        #expect(session.machine.keepAliveTimerFired(now: session.now) == [.scheduleKeepAliveCheck(after: .seconds(1))])
        session.advance(.seconds(1))
        #expect(session.machine.keepAliveTimerFired(now: session.now).containsClose)
    }

    @Test("keepAliveTimerFired before Connect does nothing")
    func timerBeforeConnect() {
        var session = ControllerSession()
        #expect(session.machine.keepAliveTimerFired(now: session.now) == [])
        session.initialize()
        session.advance(.seconds(1000))
        #expect(session.machine.keepAliveTimerFired(now: session.now) == [])
    }

    @Test("Set Features KATO changes the timeout and reschedules; Get Features returns it")
    func setFeaturesKATO() {
        var session = ControllerSession()
        session.connectAndEnable(keepAliveTimeout: 30_000)
        expectCompletion(session.receive(HostPDU.getFeatures(cid: 2, feature: 0x0F)), cid: 2, result: 30_000)
        let actions = session.receive(HostPDU.setFeatures(cid: 3, feature: 0x0F, value: 5_000))
        #expect(actions.count == 2)
        expectCompletion(Array(actions.prefix(1)), cid: 3)
        #expect(actions.last == .scheduleKeepAliveCheck(after: .milliseconds(5_000)))
        expectCompletion(session.receive(HostPDU.getFeatures(cid: 4, feature: 0x0F)), cid: 4, result: 5_000)
        session.advance(.seconds(5))
        #expect(session.machine.keepAliveTimerFired(now: session.now).containsClose)
    }

    @Test("Set Features KATO 0 goes back to the default; Get Features reports it")
    func setFeaturesKATOZero() {
        var session = ControllerSession()
        session.connectAndEnable(keepAliveTimeout: 30_000)
        let actions = session.receive(HostPDU.setFeatures(cid: 3, feature: 0x0F, value: 0))
        #expect(actions.last == .scheduleKeepAliveCheck(after: .seconds(120)))
        expectCompletion(session.receive(HostPDU.getFeatures(cid: 4, feature: 0x0F)), cid: 4, result: 120_000)
    }

    @Test("Set Features with SV = 1 → Feature Identifier Not Saveable; unknown features → Invalid Field")
    func featureErrors() {
        var session = ControllerSession()
        session.connectAndEnable()
        expectCompletion(
            session.receive(HostPDU.setFeatures(cid: 2, feature: 0x0F, value: 1000, save: true)),
            cid: 2,
            status: NVMeStatus.featureIdentifierNotSaveable.withDoNotRetry
        )
        expectCompletion(
            session.receive(HostPDU.setFeatures(cid: 3, feature: 0x07, value: 0)),
            cid: 3,
            status: NVMeStatus.invalidField.withDoNotRetry
        )
        expectCompletion(
            session.receive(HostPDU.getFeatures(cid: 4, feature: 0x07)),
            cid: 4,
            status: NVMeStatus.invalidField.withDoNotRetry
        )
    }

    @Test("Disconnect → success, then close; nothing after")
    func disconnect() {
        var session = ControllerSession()
        session.connectAndEnable()
        let actions = session.receive(HostPDU.disconnect(cid: 8))
        #expect(actions.count == 2)
        expectCompletion(Array(actions.prefix(1)), cid: 8)
        #expect(actions.last?.isClose == true)
        #expect(session.machine.isClosed)
        #expect(session.receive(HostPDU.keepAlive(cid: 9)) == [])
        #expect(session.machine.discoveryLogChanged() == [])
        #expect(session.machine.transportErrorCaught(NVMeTCPTransportError(.pduSequenceError, reason: "late")) == [])
    }

    @Test(
        "unknown opcodes → Invalid Command Opcode with DNR",
        arguments: [
            ("Create I/O CQ (05h)", SubmissionQueueEntry(opcode: 0x05, commandIdentifier: 1)),
            ("vendor specific C0h", SubmissionQueueEntry(opcode: 0xC0, commandIdentifier: 1)),
            (
                "Fabric Zoning Receive (22h): target-driven zoning is not served",
                SubmissionQueueEntry(opcode: 0x22, commandIdentifier: 1)
            ),
            ("Fabrics FCTYPE 7Eh", SubmissionQueueEntry(opcode: 0x7F, commandIdentifier: 1, namespaceIdentifier: 0x7E)),
        ]
    )
    func unknownOpcode(_ name: String, _ entry: SubmissionQueueEntry) {
        var session = ControllerSession()
        session.connectAndEnable()
        expectCompletion(
            session.receive(HostPDU.command(entry)),
            cid: 1,
            status: NVMeStatus.invalidOpcode.withDoNotRetry
        )
    }

    @Test("Authentication Send from a host that was not asked to authenticate: Command Sequence Error with DNR")
    func unaskedAuthentication() {
        var session = ControllerSession()
        session.connectAndEnable()
        let negotiate = AuthenticationMessage.negotiate(.init(transactionIdentifier: 0, protocols: [])).bytes
        expectCompletion(
            session.receive(
                HostPDU.command(
                    AuthenticationCommand.sendEntry(commandIdentifier: 1, length: negotiate.readableBytes),
                    data: negotiate
                )
            ),
            cid: 1,
            status: NVMeStatus.commandSequenceError.withDoNotRetry
        )
    }

    @Test("admin commands before CC.EN = 1 → Command Sequence Error with DNR; Fabrics commands are allowed")
    func adminBeforeEnable() {
        var session = ControllerSession()
        session.connect()
        for (cid, pdu) in [
            (UInt16(1), HostPDU.identify(cid: 1)), (2, HostPDU.getLogPage(cid: 2, length: 1024)),
            (3, HostPDU.keepAlive(cid: 3)), (4, HostPDU.asynchronousEventRequest(cid: 4)),
        ] {
            expectCompletion(session.receive(pdu), cid: cid, status: NVMeStatus.commandSequenceError.withDoNotRetry)
        }
        expectCompletion(session.receive(HostPDU.propertyGet(cid: 5, offset: 0x08)), cid: 5)
    }

    @Test("an admin command with in-capsule data → Invalid Field with DNR")
    func adminCommandWithData() {
        var session = ControllerSession()
        session.connectAndEnable()
        let entry = AsynchronousEvent.keepAliveEntry(commandIdentifier: 2).with {
            $0.dataPointer = .inCapsule(length: 16)
        }
        expectCompletion(
            session.receive(HostPDU.command(entry, data: PDUSample.pattern(16))),
            cid: 2,
            status: NVMeStatus.invalidField.withDoNotRetry
        )
    }

    @Test("a data digest mismatch → Transient Transport Error (no DNR), and the queue goes on")
    func dataDigestMismatch() {
        var session = ControllerSession()
        session.connectAndEnable(digests: [.header, .data])
        let capsule = CapsuleCommand(
            command: AsynchronousEvent.keepAliveEntry(commandIdentifier: 2),
            data: PDUSample.pattern(8),
            dataDigestMismatch: true
        )
        expectCompletion(session.receive(.capsuleCommand(capsule)), cid: 2, status: .transientTransportError)
        expectCompletion(session.receive(HostPDU.keepAlive(cid: 3)), cid: 3)
        #expect(!session.machine.isClosed)
    }

    @Test("SQHD counts commands modulo SQSIZE + 1")
    func submissionQueueHead() {
        var session = ControllerSession()
        session.initialize()
        let connect = session.receive(HostPDU.connect(cid: 0, submissionQueueSize: 3))
        #expect(connect.completions.first?.submissionQueueHead == 1)
        var heads: [UInt16] = []
        for cid: UInt16 in 1...6 {
            heads += session.receive(HostPDU.propertyGet(cid: cid, offset: 0x08)).completions.map(\.submissionQueueHead)
        }
        #expect(heads == [2, 3, 0, 1, 2, 3])
    }

    @Test("in-capsule data above the 8 KiB limit → C2HTermReq, close")
    func inCapsuleDataTooLarge() {
        var session = ControllerSession()
        session.connectAndEnable()
        let entry = SubmissionQueueEntry(
            opcode: 0x7F,
            commandIdentifier: 2,
            namespaceIdentifier: 0x04,
            dataPointer: .inCapsule(length: 8196)
        )
        expectTermination(
            session.receive(HostPDU.command(entry, data: PDUSample.pattern(8196))),
            .invalidHeaderField,
            fei: 4
        )
    }

    /// PDUs a host may not send in a state.
    static let illegalPDUs: [(String, NVMeTCPPDU, NVMeTCPFatalErrorStatus)] = [
        ("second ICReq", HostPDU.icreq(), .pduSequenceError),
        (
            "H2CData without an R2T",
            .hostToControllerData(
                HostToControllerData(
                    commandIdentifier: 1,
                    transferTag: 0,
                    dataOffset: 0,
                    data: PDUSample.pattern(8),
                    isLast: true
                )
            ), .pduSequenceError
        ),
        (
            "ICResp from the host",
            .initializeConnectionResponse(InitializeConnectionResponse(maximumH2CDataLength: 4096)), .invalidHeaderField
        ),
        (
            "R2T from the host",
            .readyToTransfer(ReadyToTransfer(commandIdentifier: 1, transferTag: 2, offset: 0, length: 4)),
            .invalidHeaderField
        ),
        (
            "CapsuleResp from the host",
            .capsuleResponse(CapsuleResponse(completion: CompletionQueueEntry(commandIdentifier: 1))),
            .invalidHeaderField
        ),
        (
            "C2HData from the host",
            .controllerToHostData(
                ControllerToHostData(commandIdentifier: 1, dataOffset: 0, data: PDUSample.pattern(4), isLast: true)
            ), .invalidHeaderField
        ),
        (
            "C2HTermReq from the host",
            .controllerToHostTerminationRequest(
                TerminationRequest(status: .pduSequenceError, fieldErrorInformation: 0, pduInError: ByteBuffer())
            ), .invalidHeaderField
        ),
    ]

    @Test(
        "a PDU illegal after ICReq → C2HTermReq (FEI 0, the PDU's header in error), then close",
        arguments: illegalPDUs.map { $0.0 }
    )
    func illegalPDU(_ name: String) {
        let (_, pdu, status) = Self.illegalPDUs.first { $0.0 == name }!
        for connected in [false, true] {
            var session = ControllerSession()
            if connected { session.connectAndEnable() } else { session.initialize() }
            let actions = session.receive(pdu)
            expectTermination(actions, status, fei: 0)
            let excerpt = actions.first?.terminationRequest?.pduInError.bytes ?? []
            #expect(
                excerpt == Array(pdu.encodedBytes().prefix(pdu.type.headerLength)),
                "the PDU in error is its header"
            )
            #expect(session.machine.isClosed)
        }
    }

    @Test("a CapsuleCmd before ICReq → C2HTermReq FES 02h PDU Sequence Error, then close")
    func capsuleBeforeICReq() {
        var session = ControllerSession()
        expectTermination(session.receive(HostPDU.identify(cid: 1)), .pduSequenceError, fei: 0)
    }

    @Test("a host H2CTermReq → close, no reply")
    func hostTermination() {
        for connected in [false, true] {
            var session = ControllerSession()
            if connected { session.connectAndEnable() } else { session.initialize() }
            let actions = session.receive(HostPDU.h2cTermReq(.headerDigestError, fei: 0x1234))
            #expect(actions.count == 1 && actions[0].isClose, "\(actions)")
            #expect(session.machine.isClosed)
        }
    }

    @Test("transportErrorCaught → C2HTermReq with the error's FES, FEI and header, then close; once")
    func transportError() {
        var session = ControllerSession()
        session.connectAndEnable()
        let header = ByteBuffer(bytes: [0x04, 0x01, 72, 0, 76, 0, 0, 0])
        let actions = session.machine.transportErrorCaught(
            NVMeTCPTransportError(.headerDigestError, fieldErrorInformation: 0xCAFE, pduHeader: header, reason: "test")
        )
        #expect(
            actions == [
                .send(
                    .controllerToHostTerminationRequest(
                        TerminationRequest(
                            status: .headerDigestError,
                            fieldErrorInformation: 0xCAFE,
                            pduInError: header
                        )
                    )
                ),
                actions.last!,
            ]
        )
        #expect(actions.last?.isClose == true)
        #expect(session.machine.transportErrorCaught(NVMeTCPTransportError(.headerDigestError, reason: "again")) == [])
    }

    @Test("channelClosed() ends everything")
    func channelClosed() {
        var session = ControllerSession()
        session.connectAndEnable()
        session.machine.channelClosed()
        #expect(session.machine.isClosed)
        #expect(session.receive(HostPDU.keepAlive(cid: 2)) == [])
        #expect(session.machine.host == nil)
    }
}
