import DEMCore
import NIOCore
import Testing

/// The captured Linux 6.1 bytes (host: nvme-tcp + nvme-cli 2.3, target: nvmet-tcp) decode field
/// by field, and re-encode to the same bytes.
@Suite("Wire vectors from Linux 6.1")
struct VectorTests {
    @Test("the fixtures are in the test bundle, whole")
    func fixturesPresent() throws {
        let sizes = [
            Fixture.hostICReq: 128, Fixture.hostConnectDiscovery: 1096, Fixture.nvmetDiscoveryLog: 4096,
            Fixture.nvmetDiscoverySession: 15_072, Fixture.discoverConnectAll: 79_158,
        ]
        for (name, size) in sizes {
            #expect(try Fixture.bytes(name).count == size, "\(name)")
        }
    }

    // MARK: ICReq

    @Test("the host's ICReq: PFV 0, HPDA 0, no digests, MAXR2T 0")
    func hostICReq() throws {
        let bytes = try Fixture.bytes(Fixture.hostICReq)
        #expect(bytes.count == 128)
        #expect(Array(bytes[0..<8]) == [0x00, 0x00, 0x80, 0x00, 0x80, 0x00, 0x00, 0x00])
        let pdu = try NVMeTCPPDU.decode(frame: ByteBuffer(bytes: bytes), digests: [])
        guard case .initializeConnectionRequest(let request) = pdu else {
            Issue.record("not an ICReq: \(pdu)")
            return
        }
        #expect(request.pduFormatVersion == 0)
        #expect(request.hostPDUDataAlignment == 0)
        #expect(request.digests == [])
        #expect(request.maximumR2TOutstanding == 0)
        #expect(pdu.encodedBytes() == bytes, "re-encoding the ICReq gives the captured bytes")
    }

    // MARK: Connect

    @Test("the host's Connect to the well-known discovery NQN, field by field")
    func hostConnect() throws {
        let bytes = try Fixture.bytes(Fixture.hostConnectDiscovery)
        #expect(bytes.count == 1096)
        let pdu = try NVMeTCPPDU.decode(frame: ByteBuffer(bytes: bytes), digests: [])
        guard case .capsuleCommand(let capsule) = pdu else {
            Issue.record("not a CapsuleCmd: \(pdu)")
            return
        }
        let sqe = capsule.command
        #expect(sqe.opcode == 0x7F)
        #expect(sqe.flags == 0x40, "PSDT 01b: SGLs")
        #expect(sqe.commandIdentifier == 0)
        #expect(UInt8(truncatingIfNeeded: sqe.namespaceIdentifier) == 0x01, "FCTYPE 01h Connect")
        guard case .connect(let connect) = FabricsCommand(sqe) else {
            Issue.record("not a Connect: \(FabricsCommand(sqe))")
            return
        }
        // KATO as captured: CDW12, bytes 48–51 of the SQE, 56–59 of the PDU.
        let capturedKATO =
            UInt32(bytes[56]) | UInt32(bytes[57]) << 8 | UInt32(bytes[58]) << 16 | UInt32(bytes[59]) << 24
        #expect(
            connect
                == ConnectCommand(
                    recordFormat: 0,
                    queueIdentifier: 0,
                    submissionQueueSize: 31,
                    attributes: 0,
                    keepAliveTimeout: capturedKATO
                )
        )
        #expect(capturedKATO == 0, "nvme discover connects with KATO 0")
        // SGL: Data Block, subtype Offset (in-capsule), 1024 bytes at offset 0.
        #expect(sqe.dataPointer == SGLDescriptor.inCapsule(length: 1024))
        #expect(sqe.dataPointer.isInCapsule)
        #expect(sqe.dataPointer.type == .dataBlock)
        #expect(sqe.dataPointer.subtype == 0x1)

        var data = try #require(capsule.data)
        #expect(data.readableBytes == 1024)
        #expect(capsule.dataDigestMismatch == false)
        let connectDataRead = data.readConnectData()
        let connectData = try #require(connectDataRead)
        #expect(connectData.hostIdentifier == Array(bytes[72..<88]))
        #expect(connectData.hostIdentifier == TestValues.hostID)
        #expect(connectData.controllerIdentifier == 0xFFFF)
        #expect(connectData.subsystemNQN == DEMCore.wellKnownDiscoveryNQN)
        let capturedHostNQN = String(decoding: bytes[(72 + 512)..<(72 + 768)].prefix { $0 != 0 }, as: UTF8.self)
        #expect(connectData.hostNQN == capturedHostNQN)
        #expect(connectData.hostNQN == TestValues.hostNQN)
        #expect(NQN.isValid(connectData.hostNQN))

        #expect(pdu.encodedBytes() == bytes, "re-encoding the Connect PDU gives the captured bytes")
        var rewritten = ByteBuffer()
        rewritten.writeConnectData(connectData)
        #expect(rewritten.bytes == Array(bytes[72...]), "re-encoding the Connect data gives the captured bytes")
    }

    // MARK: Discovery log page

    @Test("nvmet's 3-record discovery log page, field by field")
    func nvmetDiscoveryLogPage() throws {
        let bytes = try Fixture.bytes(Fixture.nvmetDiscoveryLog)
        #expect(bytes.count == 4096)
        var buffer = ByteBuffer(bytes: bytes)
        var headerBytes = try #require(buffer.getSlice(at: 0, length: 1024))
        let headerRead = headerBytes.readDiscoveryLogPageHeader()
        let header = try #require(headerRead)
        #expect(header == DiscoveryLogPageHeader(generationCounter: 4, numberOfRecords: 3, recordFormat: 0))
        let page = try buffer.readDiscoveryLogPage()
        #expect(buffer.readableBytes == 0)
        #expect(page.generationCounter == 4)
        #expect(page.entries.count == 3)
        #expect(page.byteCount == 4096)
        let expectedNQNs = [
            DEMCore.wellKnownDiscoveryNQN, "nqn.2024-01.io.nvmeof-lab:nullb0", "nqn.2024-01.io.nvmeof-lab:nullb1",
        ]
        for (index, entry) in page.entries.enumerated() {
            #expect(entry.transportType == .tcp)
            #expect(entry.addressFamily == .ipv4)
            #expect(entry.subsystemType == (index == 0 ? .currentDiscovery : .nvm))
            #expect(entry.transportRequirements.rawValue == 0x04, "TREQ 04h: SQ flow control disable supported")
            #expect(entry.transportRequirements == .submissionQueueFlowControlDisable)
            #expect(entry.portIdentifier == 1)
            #expect(entry.controllerIdentifier == 0xFFFF)
            #expect(entry.adminMaximumSubmissionQueueSize == 32)
            #expect(entry.entryFlags == [])
            #expect(entry.transportServiceIdentifier == "4420")
            #expect(entry.transportAddress == "10.0.2.15")
            #expect(entry.subsystemNQN == expectedNQNs[index])
            #expect(entry.transportSpecificAddressSubtype == .tcp(securityType: 0))
        }
        #expect(page.encoded().bytes == bytes, "re-encoding the page gives nvmet's bytes")
        var written = ByteBuffer()
        let count = written.writeDiscoveryLogPage(page)
        #expect(count == 4096)
        #expect(written.bytes == bytes)
    }

    @Test("a log page cut short of NUMREC entries is a typed error")
    func truncatedLogPage() throws {
        let bytes = try Fixture.bytes(Fixture.nvmetDiscoveryLog)
        var short = ByteBuffer(bytes: bytes[0..<3000])
        #expect(throws: DiscoveryLogPageError.truncated(expected: 3072, available: 1976)) {
            try short.readDiscoveryLogPage()
        }
        var tiny = ByteBuffer(bytes: bytes[0..<100])
        #expect(throws: DiscoveryLogPageError.truncated(expected: 1024, available: 100)) {
            try tiny.readDiscoveryLogPage()
        }
    }

    // MARK: Captures

    static let captures = [Fixture.nvmetDiscoverySession, Fixture.discoverConnectAll]

    /// Frames and decodes one direction of a session.
    static func decodeDirection(_ bytes: [UInt8]) throws -> [(frame: ByteBuffer, pdu: NVMeTCPPDU)] {
        var decoder = NVMeTCPFrameDecoder(maximumPDULength: 1 << 20, firstPDULength: 128)
        var buffer = ByteBuffer(bytes: bytes)
        var result: [(ByteBuffer, NVMeTCPPDU)] = []
        while let frame = try decoder.nextFrame(&buffer) {
            result.append((frame, try NVMeTCPPDU.decode(frame: frame, digests: [])))
        }
        #expect(buffer.readableBytes == 0, "a PDU is cut short at the end of the capture")
        return result
    }

    @Test("the pcap reader finds the NVMe/TCP connections", arguments: captures)
    func captureSessions(_ name: String) throws {
        let capture = try PcapCapture.load(name)
        #expect(capture.linkType == 1, "Ethernet")
        let sessions = try capture.tcpSessions().filter { !$0.clientToServer.isEmpty }
        switch name {
        case Fixture.nvmetDiscoverySession:
            // A probe connection (ICReq/ICResp, then FIN) and the discovery session.
            #expect(sessions.count == 2)
            #expect(sessions.allSatisfy { $0.server.port == 4420 })
            #expect(sessions.map(\.clientToServer.count) == [128, 1728])
            #expect(sessions.map(\.serverToClient.count) == [128, 9608])
        default:
            // Two discovery sessions, each relayed: host → relay:8009 and relay → nvmet:4420.
            #expect(sessions.count == 4)
            #expect(Set(sessions.map(\.server.port)) == [8009, 4420])
            #expect(sessions.allSatisfy { $0.clientToServer.count == 2304 && $0.serverToClient.count == 12896 })
        }
    }

    @Test("every PDU in both directions frames and decodes, and re-encodes byte for byte", arguments: captures)
    func everyCapturedPDUDecodes(_ name: String) throws {
        let sessions = try PcapCapture.load(name).tcpSessions()
        var count = 0
        for session in sessions {
            for direction in [session.clientToServer, session.serverToClient] {
                for (frame, pdu) in try Self.decodeDirection(direction) {
                    count += 1
                    #expect(pdu.encoded() == frame, "\(session): \(pdu.type) re-encodes differently")
                    // The host sends host-to-controller PDUs and nvmet the others.
                    #expect(pdu.type.isHostToController == (direction == session.clientToServer))
                }
            }
        }
        #expect(count > 20)
    }

    /// What the captured sessions contain, by command.
    struct Exchange {
        var command: SubmissionQueueEntry
        var data: [ControllerToHostData] = []
        var completion: CompletionQueueEntry?
    }

    static func exchanges(_ session: TCPSession) throws -> (icresp: InitializeConnectionResponse?, [Exchange]) {
        var exchanges: [Exchange] = []
        for (_, pdu) in try decodeDirection(session.clientToServer) {
            if case .capsuleCommand(let capsule) = pdu { exchanges.append(Exchange(command: capsule.command)) }
        }
        var icresp: InitializeConnectionResponse?
        func index(_ cid: UInt16) -> Int? {
            exchanges.firstIndex { $0.command.commandIdentifier == cid && $0.completion == nil }
        }
        for (_, pdu) in try decodeDirection(session.serverToClient) {
            switch pdu {
            case .initializeConnectionResponse(let response): icresp = response
            case .controllerToHostData(let data):
                if let i = index(data.commandIdentifier) { exchanges[i].data.append(data) }
            case .capsuleResponse(let response):
                if let i = index(response.completion.commandIdentifier) {
                    exchanges[i].completion = response.completion
                }
            default: Issue.record("unexpected \(pdu.type) from nvmet")
            }
        }
        return (icresp, exchanges)
    }

    @Test(
        "the captures hold ICResp, Property Get/Set, Identify CNS 1 and Get Log Page 70h with their data",
        arguments: captures
    )
    func capturedExchanges(_ name: String) throws {
        var sawICResp = false
        var sawCAP = false
        var sawVS = false
        var sawCC = false
        var sawIdentify = false
        var sawLogPage = false
        for session in try PcapCapture.load(name).tcpSessions() {
            let (icresp, exchanges) = try Self.exchanges(session)
            if let icresp {
                sawICResp = true
                #expect(
                    icresp
                        == InitializeConnectionResponse(
                            pduFormatVersion: 0,
                            controllerPDUDataAlignment: 0,
                            digests: [],
                            maximumH2CDataLength: 0x40_0000
                        )
                )
            }
            for exchange in exchanges {
                let sqe = exchange.command
                let completion = try #require(exchange.completion, "no completion for CID \(sqe.commandIdentifier)")
                switch sqe.opcode {
                case AdminOpcode.fabrics:
                    switch FabricsCommand(sqe) {
                    case .propertyGet(size8: true, offset: ControllerProperty.capabilities):
                        sawCAP = true
                        #expect(completion.status == .success)
                        #expect(completion.result64 == 0x0000_0820_0F00_03FF)
                        #expect(
                            completion.result64 == ControllerStateMachine.capabilities,
                            "DEM's CAP is nvmet's"
                        )
                    case .propertyGet(size8: false, offset: ControllerProperty.version):
                        sawVS = true
                        #expect(completion.result == 0x0001_0300)
                        #expect(completion.result == ControllerStateMachine.version, "DEM's VS is nvmet's")
                    case .propertySet(size8: false, offset: ControllerProperty.configuration, let value):
                        sawCC = true
                        #expect(completion.status == .success)
                        #expect(value & 0x00FF_0000 == 0x0046_0000, "IOCQES 4, IOSQES 6")
                    default: break
                    }
                case AdminOpcode.identify:
                    sawIdentify = true
                    #expect(IdentifyCommand(sqe) == IdentifyCommand(controllerOrNamespaceStructure: 1))
                    #expect(sqe.dataPointer == .transport(length: 4096))
                    #expect(exchange.data.count == 1)
                    let c2h = try #require(exchange.data.first)
                    #expect(c2h.dataOffset == 0 && c2h.isLast && !c2h.isSuccess)
                    #expect(c2h.data.readableBytes == 4096)
                    #expect(
                        c2h.data.getInteger(at: c2h.data.readerIndex + 111, as: UInt8.self) == 2,
                        "CNTRLTYPE 2: discovery"
                    )
                    var data = c2h.data
                    let identifyRead = data.readIdentifyControllerData()
                    let identify = try #require(identifyRead)
                    #expect(identify.controllerType == IdentifyControllerData.ControllerType.discovery)
                    #expect(identify.subsystemNQN == DEMCore.wellKnownDiscoveryNQN)
                    #expect(identify.optionalAsynchronousEventsSupported & (1 << 31) != 0)
                    #expect(identify.sglSupport == 0x0010_0001)
                    #expect(identify.version == 0x0001_0300)
                    #expect(completion.status == .success)
                case AdminOpcode.getLogPage:
                    sawLogPage = true
                    let request = GetLogPageCommand(sqe)
                    #expect(request.logPageIdentifier == 0x70)
                    #expect(request.offset == 0)
                    #expect(sqe.dataPointer == .transport(length: UInt32(request.length)))
                    let data = exchange.data.reduce(into: [UInt8]()) { $0 += $1.data.bytes }
                    #expect(UInt64(data.count) == request.length)
                    if data.count >= 1024 {
                        var buffer = ByteBuffer(bytes: data)
                        let headerRead = buffer.readDiscoveryLogPageHeader()
                        let header = try #require(headerRead)
                        #expect(header.recordFormat == 0)
                        if name == Fixture.nvmetDiscoverySession {
                            #expect(header == DiscoveryLogPageHeader(generationCounter: 4, numberOfRecords: 3))
                            if data.count == 4096 {
                                #expect(
                                    data == (try Fixture.bytes(Fixture.nvmetDiscoveryLog)),
                                    "the .bin fixture is this transfer"
                                )
                            }
                        }
                    }
                    #expect(completion.status == .success)
                default: break
                }
            }
        }
        #expect(sawICResp && sawCAP && sawVS && sawCC && sawIdentify && sawLogPage)
    }

    @Test("NVMeStatus decodes nvmet's AER abort at shutdown: Internal Error with DNR (800Ch)")
    func nvmetAERAbortStatus() throws {
        let sessions = try PcapCapture.load(Fixture.discoverConnectAll).tcpSessions()
        let (_, exchanges) = try Self.exchanges(sessions[0])
        let aer = try #require(exchanges.first { $0.command.opcode == AdminOpcode.asynchronousEventRequest })
        let completion = try #require(aer.completion)
        #expect(completion.status == NVMeStatus.internalError.withDoNotRetry)
        #expect(completion.status.fieldValue == 0x800C)
    }
}

/// The Linux host's side of each captured session, replayed into DEM's controller state machine
/// through the framer and parser: DEM must answer what nvmet answered.
@Suite("Linux host replayed against DEM's controller")
struct CaptureReplayTests {
    @Test(
        "DEM answers like nvmet: same PDUs, CIDs, statuses, SQHD, property values and log page bytes",
        arguments: VectorTests.captures
    )
    func replay(_ name: String) throws {
        for session in try PcapCapture.load(name).tcpSessions() {
            let nvmet = try VectorTests.decodeDirection(session.serverToClient).map(\.pdu)
            let host = try VectorTests.decodeDirection(session.clientToServer)
            // Serve nvmet's page: the longest log page read from offset 0 in this session.
            var page = ByteBuffer()
            let (_, exchanges) = try VectorTests.exchanges(session)
            for exchange in exchanges where exchange.command.opcode == AdminOpcode.getLogPage {
                if GetLogPageCommand(exchange.command).offset == 0 {
                    let data = exchange.data.reduce(into: ByteBuffer()) { $0.writeImmutableBuffer($1.data) }
                    if data.readableBytes > page.readableBytes { page = data }
                }
            }
            let service = FakeDiscoveryService(page: page)
            var harness = ControllerHarness(service: service)
            var ours: [NVMeTCPPDU] = []
            for (frame, pdu) in host {
                let actions = harness.feed(frame)
                #expect(!actions.containsClose, "DEM closed on \(pdu.type): \(actions)")
                ours += actions.sentPDUs
            }
            // nvmet completes parked AERs with Internal Error at shutdown (CC.SHN); DEM keeps them.
            let aerCIDs = Set(
                exchanges.filter { $0.command.opcode == AdminOpcode.asynchronousEventRequest }.map(
                    \.command.commandIdentifier
                )
            )
            let expected = nvmet.filter {
                if case .capsuleResponse(let response) = $0 {
                    return !aerCIDs.contains(response.completion.commandIdentifier)
                }
                return true
            }
            #expect(ours.count == expected.count, "\(session): DEM sent \(ours.count) PDUs, nvmet \(expected.count)")
            var shutdown = false
            for (index, (mine, theirs)) in zip(ours, expected).enumerated() {
                let command = exchanges.first { exchange in
                    switch theirs {
                    case .capsuleResponse(let r):
                        return exchange.command.commandIdentifier == r.completion.commandIdentifier
                    case .controllerToHostData(let d): return exchange.command.commandIdentifier == d.commandIdentifier
                    default: return false
                    }
                }?.command
                switch (mine, theirs) {
                case (.initializeConnectionResponse(let a), .initializeConnectionResponse(let b)):
                    #expect(a.pduFormatVersion == b.pduFormatVersion)
                    #expect(a.controllerPDUDataAlignment == b.controllerPDUDataAlignment)
                    #expect(a.digests == b.digests)
                case (.capsuleResponse(let a), .capsuleResponse(let b)):
                    let a = a.completion
                    let b = b.completion
                    #expect(a.commandIdentifier == b.commandIdentifier, "PDU \(index)")
                    #expect(a.status == b.status, "PDU \(index), CID \(b.commandIdentifier)")
                    // SQHD: DEM counts a command as consumed when it arrives (NVMe Base: SQHD is the
                    // last entry fetched); nvmet advances it when a command completes, so each AER
                    // still parked in nvmet puts DEM one ahead.
                    let position = exchanges.firstIndex { $0.command.commandIdentifier == b.commandIdentifier } ?? 0
                    let parkedBefore = exchanges[..<position].filter {
                        $0.command.opcode == AdminOpcode.asynchronousEventRequest
                    }.count
                    #expect(
                        Int(a.submissionQueueHead) == Int(b.submissionQueueHead) + parkedBefore,
                        "SQHD of PDU \(index)"
                    )
                    #expect(a.submissionQueueIdentifier == b.submissionQueueIdentifier)
                    if let command, command.opcode == AdminOpcode.fabrics,
                        case .propertyGet(_, ControllerProperty.status) = FabricsCommand(command), shutdown
                    {
                        // After CC.SHN nvmet also clears RDY; only SHST (bits 3:2) must agree.
                        #expect((a.result >> 2) & 3 == (b.result >> 2) & 3, "CSTS.SHST")
                    } else {
                        #expect(a.result == b.result, "DW0 of PDU \(index), CID \(b.commandIdentifier)")
                        #expect(a.dw1 == b.dw1, "DW1 of PDU \(index)")
                    }
                    if let command, command.opcode == AdminOpcode.fabrics,
                        case .propertySet(_, ControllerProperty.configuration, let value) = FabricsCommand(command),
                        (value >> 14) & 3 != 0
                    {
                        shutdown = true
                    }
                case (.controllerToHostData(let a), .controllerToHostData(let b)):
                    #expect(a.commandIdentifier == b.commandIdentifier)
                    #expect(a.dataOffset == b.dataOffset)
                    #expect(a.isLast == b.isLast)
                    #expect(a.isSuccess == b.isSuccess)
                    #expect(a.data.readableBytes == b.data.readableBytes)
                    if command?.opcode == AdminOpcode.getLogPage {
                        #expect(a.data == b.data, "log page bytes of PDU \(index)")
                    } else {
                        // Identify: the discovery-controller fields must agree.
                        let i = a.data.readerIndex
                        let j = b.data.readerIndex
                        #expect(
                            a.data.getInteger(at: i + 111, as: UInt8.self)
                                == b.data.getInteger(at: j + 111, as: UInt8.self),
                            "CNTRLTYPE"
                        )
                        #expect(
                            a.data.getBytes(at: i + 768, length: 256) == b.data.getBytes(at: j + 768, length: 256),
                            "SUBNQN"
                        )
                        #expect(
                            a.data.getBytes(at: i + 78, length: 6) == b.data.getBytes(at: j + 78, length: 6),
                            "CNTLID and VER"
                        )
                        #expect(
                            a.data.getBytes(at: i + 92, length: 4) == b.data.getBytes(at: j + 92, length: 4),
                            "OAES"
                        )
                        #expect(
                            a.data.getBytes(at: i + 536, length: 4) == b.data.getBytes(at: j + 536, length: 4),
                            "SGLS"
                        )
                    }
                default:
                    Issue.record("PDU \(index): DEM sent \(mine.type), nvmet \(theirs.type)")
                }
            }
        }
    }
}
