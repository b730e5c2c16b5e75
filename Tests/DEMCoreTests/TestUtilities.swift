import DEMCore
import Foundation
import NIOCore
import Synchronization
import Testing

// MARK: - Fixtures

/// The captured bytes in `Tests/DEMCoreTests/Fixtures` (copied from shared/vectors: Linux 6.1 host
/// and nvmet).
enum Fixture {
    static let hostICReq = "linux61-host-icreq.bin"
    static let hostConnectDiscovery = "linux61-host-connect-discovery.pdu"
    static let nvmetDiscoveryLog = "nvmet61-disclog-3rec.bin"
    static let nvmetDiscoverySession = "nvmet61-discovery-session.pcap"
    static let discoverConnectAll = "linux61-discover-connectall.pcap"

    struct Missing: Error, CustomStringConvertible {
        var name: String
        var description: String { "fixture \(name) is not in the test bundle" }
    }

    /// The URL of a fixture in the test bundle (`resources: [.copy("Fixtures")]`).
    static func url(_ name: String) throws -> URL {
        // `.copy("Fixtures")` keeps the directory, so the resource is "Fixtures/<name>".
        if let url = Bundle.module.url(forResource: name, withExtension: nil, subdirectory: "Fixtures") {
            return url
        }
        if let url = Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: nil) {
            return url
        }
        if let base = Bundle.module.resourceURL {
            let url = base.appendingPathComponent("Fixtures").appendingPathComponent(name)
            if FileManager.default.fileExists(atPath: url.path) { return url }
        }
        throw Missing(name: name)
    }

    static func bytes(_ name: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: url(name)))
    }

    static func buffer(_ name: String) throws -> ByteBuffer {
        ByteBuffer(bytes: try bytes(name))
    }
}

// MARK: - A minimal pcap reader

/// One end of a TCP connection.
struct TCPEndpoint: Hashable, Sendable, CustomStringConvertible {
    var address: String
    var port: UInt16
    var description: String { "\(address):\(port)" }
}

/// A TCP connection found in a capture: the bytes each side sent, reassembled in sequence order.
struct TCPSession: Sendable, CustomStringConvertible {
    /// The side that sent the SYN.
    var client: TCPEndpoint
    var server: TCPEndpoint
    var clientToServer: [UInt8]
    var serverToClient: [UInt8]
    var description: String { "\(client) → \(server)" }
}

struct PcapError: Error, CustomStringConvertible {
    var description: String
}

/// Reads a classic pcap file (not pcapng) with Ethernet (1), Linux cooked (113), Linux cooked v2
/// (276) or raw IP (101) frames, and reassembles the IPv4 TCP streams in it.
struct PcapCapture {
    /// LINKTYPE_* of the capture.
    var linkType: UInt32
    /// The captured frames, in file order.
    var frames: [[UInt8]]

    init(bytes: [UInt8]) throws {
        guard bytes.count >= 24 else { throw PcapError(description: "shorter than a pcap header") }
        let magic = UInt32(bytes[0]) | UInt32(bytes[1]) << 8 | UInt32(bytes[2]) << 16 | UInt32(bytes[3]) << 24
        let littleEndian: Bool
        switch magic {
        case 0xA1B2_C3D4, 0xA1B2_3C4D: littleEndian = true
        case 0xD4C3_B2A1, 0x4D3C_B2A1: littleEndian = false
        default: throw PcapError(description: "not a classic pcap file (magic \(String(magic, radix: 16)))")
        }
        func u32(_ offset: Int) -> UInt32 {
            let b = bytes[offset..<(offset + 4)].map(UInt32.init)
            return littleEndian
                ? b[0] | b[1] << 8 | b[2] << 16 | b[3] << 24 : b[3] | b[2] << 8 | b[1] << 16 | b[0] << 24
        }
        linkType = u32(20) & 0x0FFF_FFFF
        frames = []
        var offset = 24
        while offset < bytes.count {
            guard offset + 16 <= bytes.count else { throw PcapError(description: "truncated record header") }
            let captured = Int(u32(offset + 8))
            offset += 16
            guard offset + captured <= bytes.count else { throw PcapError(description: "truncated record") }
            frames.append(Array(bytes[offset..<(offset + captured)]))
            offset += captured
        }
    }

    /// The IPv4 packet inside a captured frame, or `nil` for anything else (ARP, IPv6…).
    private func ipv4Packet(_ frame: [UInt8]) throws -> ArraySlice<UInt8>? {
        func be16(_ i: Int) -> Int { Int(frame[i]) << 8 | Int(frame[i + 1]) }
        switch linkType {
        case 1:  // Ethernet, with at most one 802.1Q tag
            guard frame.count >= 14 else { return nil }
            var etherType = be16(12)
            var start = 14
            if etherType == 0x8100, frame.count >= 18 {
                etherType = be16(16)
                start = 18
            }
            return etherType == 0x0800 ? frame[start...] : nil
        case 113:  // Linux cooked capture (SLL)
            guard frame.count >= 16 else { return nil }
            return be16(14) == 0x0800 ? frame[16...] : nil
        case 276:  // Linux cooked capture v2 (SLL2)
            guard frame.count >= 20 else { return nil }
            return be16(0) == 0x0800 ? frame[20...] : nil
        case 101, 12:  // raw IP
            return frame.first.map { $0 >> 4 == 4 } == true ? frame[...] : nil
        default:
            throw PcapError(description: "unsupported link type \(linkType)")
        }
    }

    /// The TCP connections of the capture, in the order their first packet appears, each direction
    /// reassembled by sequence number (retransmissions and overlaps dropped, a gap is an error).
    func tcpSessions() throws -> [TCPSession] {
        struct Flow: Hashable {
            var source: TCPEndpoint
            var destination: TCPEndpoint
        }
        struct Stream {
            var initialSequence: UInt32?
            var sawSYNWithoutACK = false
            var segments: [(sequence: UInt32, payload: ArraySlice<UInt8>)] = []
        }
        var streams: [Flow: Stream] = [:]
        var order: [Flow] = []
        for frame in frames {
            guard let ip = try ipv4Packet(frame), ip.count >= 20 else { continue }
            let b = Array(ip)
            guard b[0] >> 4 == 4, b[9] == 6 else { continue }
            let headerLength = Int(b[0] & 0x0F) * 4
            let totalLength = min(Int(b[2]) << 8 | Int(b[3]), b.count)
            guard totalLength >= headerLength + 20 else { continue }
            let source = b[12..<16].map(String.init).joined(separator: ".")
            let destination = b[16..<20].map(String.init).joined(separator: ".")
            let tcp = b[headerLength..<totalLength]
            let t = tcp.startIndex
            let sourcePort = UInt16(tcp[t]) << 8 | UInt16(tcp[t + 1])
            let destinationPort = UInt16(tcp[t + 2]) << 8 | UInt16(tcp[t + 3])
            let sequence =
                UInt32(tcp[t + 4]) << 24 | UInt32(tcp[t + 5]) << 16 | UInt32(tcp[t + 6]) << 8 | UInt32(tcp[t + 7])
            let dataOffset = Int(tcp[t + 12] >> 4) * 4
            let flags = tcp[t + 13]
            let flow = Flow(
                source: TCPEndpoint(address: source, port: sourcePort),
                destination: TCPEndpoint(address: destination, port: destinationPort)
            )
            if streams[flow] == nil {
                streams[flow] = Stream()
                order.append(flow)
            }
            if flags & 0x02 != 0 {  // SYN: data starts at ISN + 1
                streams[flow]!.initialSequence = sequence &+ 1
                if flags & 0x10 == 0 { streams[flow]!.sawSYNWithoutACK = true }
                continue
            }
            guard tcp.count > dataOffset else { continue }
            streams[flow]!.segments.append((sequence, tcp[(t + dataOffset)...]))
        }

        func reassemble(_ stream: Stream) throws -> [UInt8] {
            guard let first = stream.segments.first else { return [] }
            let base = stream.initialSequence ?? first.sequence
            let ordered = stream.segments.map { (relative: Int($0.sequence &- base), payload: $0.payload) }
                .sorted { $0.relative < $1.relative }
            var bytes: [UInt8] = []
            for segment in ordered {
                let end = segment.relative + segment.payload.count
                guard end > bytes.count else { continue }  // a retransmission
                guard segment.relative <= bytes.count else {
                    throw PcapError(description: "gap in TCP stream at relative sequence \(bytes.count)")
                }
                bytes.append(contentsOf: segment.payload.dropFirst(bytes.count - segment.relative))
            }
            return bytes
        }

        var sessions: [TCPSession] = []
        var seen: Set<Flow> = []
        for flow in order where !seen.contains(flow) {
            let reverse = Flow(source: flow.destination, destination: flow.source)
            seen.insert(flow)
            seen.insert(reverse)
            let forward = streams[flow]!
            let backward = streams[reverse] ?? Stream()
            // The client is the side whose SYN had no ACK; without a handshake, the first sender.
            let flowIsClient = forward.sawSYNWithoutACK || !backward.sawSYNWithoutACK
            let client = flowIsClient ? flow : reverse
            sessions.append(
                TCPSession(
                    client: client.source,
                    server: client.destination,
                    clientToServer: try reassemble(flowIsClient ? forward : backward),
                    serverToClient: try reassemble(flowIsClient ? backward : forward)
                )
            )
        }
        return sessions
    }

    static func load(_ fixture: String) throws -> PcapCapture {
        try PcapCapture(bytes: Fixture.bytes(fixture))
    }
}

/// Cuts a byte stream into PDUs with the production framer (no first-PDU rule, no size limit
/// beyond 16 MiB); fails if bytes are left over.
func splitPDUs(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) throws -> [ByteBuffer] {
    var decoder = NVMeTCPFrameDecoder(maximumPDULength: 16 << 20)
    var buffer = ByteBuffer(bytes: bytes)
    var frames: [ByteBuffer] = []
    while let frame = try decoder.nextFrame(&buffer) { frames.append(frame) }
    #expect(buffer.readableBytes == 0, "bytes left after the last whole PDU", sourceLocation: sourceLocation)
    return frames
}

// MARK: - A fake discovery service

/// A ``DiscoveryControllerService`` serving one fixed page and handing out controller IDs 1, 2, 3…
final class FakeDiscoveryService: DiscoveryControllerService {
    private struct State {
        var page: ByteBuffer
        var nextControllerIdentifier: UInt16
        var pageRequests: [DiscoveryHostContext] = []
    }
    private let state: Mutex<State>
    /// What every host must prove.
    let decision: HostAuthentication

    init(
        page: ByteBuffer = FakeDiscoveryService.samplePageBytes,
        firstControllerIdentifier: UInt16 = 1,
        authentication: HostAuthentication = .notRequired
    ) {
        state = Mutex(State(page: page, nextControllerIdentifier: firstControllerIdentifier))
        decision = authentication
    }

    func authentication(for host: DiscoveryHostContext) -> HostAuthentication { decision }

    func discoveryLogPage(for host: DiscoveryHostContext) -> ByteBuffer {
        state.withLock {
            $0.pageRequests.append(host)
            return $0.page
        }
    }

    func allocateControllerIdentifier() -> UInt16 {
        state.withLock { state in
            let identifier = state.nextControllerIdentifier
            state.nextControllerIdentifier &+= 1
            return identifier
        }
    }

    var page: ByteBuffer {
        get { state.withLock { $0.page } }
        set { state.withLock { $0.page = newValue } }
    }

    /// The hosts the page was asked for, in order.
    var pageRequests: [DiscoveryHostContext] { state.withLock { $0.pageRequests } }

    /// ``samplePage`` encoded.
    static let samplePageBytes = samplePage.encoded()

    /// A 4096-byte page: GENCTR 7, a SUBTYPE 3 entry for the DC itself and two NVM subsystems.
    static let samplePage = DiscoveryLogPage(
        generationCounter: 7,
        entries: [
            DiscoveryLogEntry(
                transportType: .tcp,
                addressFamily: .ipv4,
                subsystemType: .currentDiscovery,
                transportRequirements: .submissionQueueFlowControlDisable,
                portIdentifier: 1,
                entryFlags: [.duplicateReturnedInformation, .explicitPersistentConnection],
                transportServiceIdentifier: "8009",
                subsystemNQN: TestValues.uniqueNQN,
                transportAddress: "192.0.2.10"
            ),
            DiscoveryLogEntry(
                transportType: .tcp,
                addressFamily: .ipv4,
                subsystemType: .nvm,
                transportRequirements: .submissionQueueFlowControlDisable,
                portIdentifier: 2,
                transportServiceIdentifier: "4420",
                subsystemNQN: "nqn.2024-01.io.example:subsystem-a",
                transportAddress: "192.0.2.20"
            ),
            DiscoveryLogEntry(
                transportType: .rdma,
                addressFamily: .ipv6,
                subsystemType: .nvm,
                portIdentifier: 3,
                transportServiceIdentifier: "4420",
                subsystemNQN: "nqn.2024-01.io.example:subsystem-b",
                transportAddress: "2001:db8::20"
            ),
        ]
    )
}

// MARK: - Values and builders

enum TestValues {
    static let uniqueNQN = "nqn.2024-01.io.dem:discovery"
    static let hostNQN = "nqn.2014-08.org.nvmexpress:uuid:dad2e259-4f21-4823-88c2-9865a7aa9759"
    static let hostID: [UInt8] = [
        0xDA, 0xD2, 0xE2, 0x59, 0x4F, 0x21, 0x48, 0x23, 0x88, 0xC2, 0x98, 0x65, 0xA7, 0xAA, 0x97, 0x59,
    ]
    /// CC as Linux writes it: IOCQES 4, IOSQES 6, EN 1.
    static let enabledConfiguration: UInt64 = 0x0046_0001

    static func configuration(
        maximumC2HDataLength: Int = 32_768,
        asynchronousEventRequestLimit: Int = 4
    ) -> DiscoveryControllerConfiguration {
        var configuration = DiscoveryControllerConfiguration(uniqueNQN: uniqueNQN)
        configuration.maximumC2HDataLength = maximumC2HDataLength
        configuration.asynchronousEventRequestLimit = asynchronousEventRequestLimit
        return configuration
    }

    /// A fixed starting time, far from zero so that subtractions never underflow.
    static let start = NIODeadline.uptimeNanoseconds(1_000_000_000_000)
}

/// Builders for what a host sends.
enum HostPDU {
    static func icreq(
        pduFormatVersion: UInt16 = 0,
        hostPDUDataAlignment: UInt8 = 0,
        digests: NVMeTCPDigests = [],
        maximumR2TOutstanding: UInt32 = 0
    ) -> NVMeTCPPDU {
        .initializeConnectionRequest(
            InitializeConnectionRequest(
                pduFormatVersion: pduFormatVersion,
                hostPDUDataAlignment: hostPDUDataAlignment,
                digests: digests,
                maximumR2TOutstanding: maximumR2TOutstanding
            )
        )
    }

    static func command(_ entry: SubmissionQueueEntry, data: ByteBuffer? = nil) -> NVMeTCPPDU {
        .capsuleCommand(CapsuleCommand(command: entry, data: data))
    }

    /// The 1024-byte Connect data.
    static func connectData(
        subsystemNQN: String = DEMCore.wellKnownDiscoveryNQN,
        hostNQN: String = TestValues.hostNQN,
        hostIdentifier: [UInt8] = TestValues.hostID,
        controllerIdentifier: UInt16 = 0xFFFF
    ) -> ByteBuffer {
        if hostNQN == TestValues.hostNQN, hostIdentifier == TestValues.hostID, controllerIdentifier == 0xFFFF {
            if subsystemNQN == DEMCore.wellKnownDiscoveryNQN { return wellKnownConnectData }
            if subsystemNQN == TestValues.uniqueNQN { return uniqueConnectData }
        }
        return makeConnectData(
            subsystemNQN: subsystemNQN,
            hostNQN: hostNQN,
            hostIdentifier: hostIdentifier,
            controllerIdentifier: controllerIdentifier
        )
    }

    private static let wellKnownConnectData = makeConnectData(subsystemNQN: DEMCore.wellKnownDiscoveryNQN)
    private static let uniqueConnectData = makeConnectData(subsystemNQN: TestValues.uniqueNQN)

    private static func makeConnectData(
        subsystemNQN: String,
        hostNQN: String = TestValues.hostNQN,
        hostIdentifier: [UInt8] = TestValues.hostID,
        controllerIdentifier: UInt16 = 0xFFFF
    ) -> ByteBuffer {
        var data = ByteBuffer()
        data.writeConnectData(
            ConnectData(
                hostIdentifier: hostIdentifier,
                controllerIdentifier: controllerIdentifier,
                subsystemNQN: subsystemNQN,
                hostNQN: hostNQN
            )
        )
        return data
    }

    /// A Fabrics Connect capsule with in-capsule Connect data.
    static func connect(
        cid: UInt16 = 0,
        subsystemNQN: String = DEMCore.wellKnownDiscoveryNQN,
        hostNQN: String = TestValues.hostNQN,
        controllerIdentifier: UInt16 = 0xFFFF,
        queueIdentifier: UInt16 = 0,
        submissionQueueSize: UInt16 = 31,
        keepAliveTimeout: UInt32 = 0,
        recordFormat: UInt16 = 0,
        dataLength: Int = ConnectData.size,
        dataPointer: SGLDescriptor? = nil
    ) -> NVMeTCPPDU {
        let command = ConnectCommand(
            recordFormat: recordFormat,
            queueIdentifier: queueIdentifier,
            submissionQueueSize: submissionQueueSize,
            keepAliveTimeout: keepAliveTimeout
        )
        var entry = command.submissionQueueEntry(commandIdentifier: cid, dataLength: UInt32(dataLength))
        if let dataPointer { entry.dataPointer = dataPointer }
        var data = connectData(
            subsystemNQN: subsystemNQN,
            hostNQN: hostNQN,
            controllerIdentifier: controllerIdentifier
        )
        if dataLength < data.readableBytes {
            data = data.getSlice(at: 0, length: dataLength)!
        } else if dataLength > data.readableBytes {
            data.writeZeros(dataLength - data.readableBytes)
        }
        return .capsuleCommand(CapsuleCommand(command: entry, data: dataLength == 0 ? nil : data))
    }

    static func propertyGet(cid: UInt16, offset: UInt32, size8: Bool = false) -> NVMeTCPPDU {
        command(FabricsCommand.propertyGetEntry(commandIdentifier: cid, offset: offset, size8: size8))
    }

    static func propertySet(cid: UInt16, offset: UInt32, value: UInt64, size8: Bool = false) -> NVMeTCPPDU {
        command(FabricsCommand.propertySetEntry(commandIdentifier: cid, offset: offset, value: value, size8: size8))
    }

    /// Property Set CC with EN = 1.
    static func enable(cid: UInt16) -> NVMeTCPPDU {
        propertySet(cid: cid, offset: ControllerProperty.configuration, value: TestValues.enabledConfiguration)
    }

    static func identify(cid: UInt16, cns: UInt8 = IdentifyCommand.CNS.controller) -> NVMeTCPPDU {
        command(IdentifyCommand(controllerOrNamespaceStructure: cns).submissionQueueEntry(commandIdentifier: cid))
    }

    static func getLogPage(
        cid: UInt16,
        offset: UInt64 = 0,
        length: UInt32,
        retainAsynchronousEvent: Bool = false,
        logPageIdentifier: UInt8 = LogPageIdentifier.discovery,
        logSpecificParameter: UInt8 = 0
    ) -> NVMeTCPPDU {
        command(
            GetLogPageCommand(
                logPageIdentifier: logPageIdentifier,
                logSpecificParameter: logSpecificParameter,
                retainAsynchronousEvent: retainAsynchronousEvent,
                numberOfDwords: UInt64(length / 4),
                offset: offset
            ).submissionQueueEntry(commandIdentifier: cid)
        )
    }

    static func asynchronousEventRequest(cid: UInt16) -> NVMeTCPPDU {
        command(AsynchronousEvent.requestEntry(commandIdentifier: cid))
    }

    static func keepAlive(cid: UInt16) -> NVMeTCPPDU {
        command(AsynchronousEvent.keepAliveEntry(commandIdentifier: cid))
    }

    static func setFeatures(cid: UInt16, feature: UInt8, value: UInt32, save: Bool = false) -> NVMeTCPPDU {
        command(
            FeaturesCommand(featureIdentifier: feature, saveOrSelect: save ? 1 : 0, value: value)
                .setFeaturesEntry(commandIdentifier: cid)
        )
    }

    static func getFeatures(cid: UInt16, feature: UInt8) -> NVMeTCPPDU {
        command(FeaturesCommand(featureIdentifier: feature).getFeaturesEntry(commandIdentifier: cid))
    }

    static func disconnect(cid: UInt16) -> NVMeTCPPDU {
        command(FabricsCommand.disconnectEntry(commandIdentifier: cid))
    }

    static func h2cTermReq(_ status: NVMeTCPFatalErrorStatus, fei: UInt32 = 0) -> NVMeTCPPDU {
        .hostToControllerTerminationRequest(
            TerminationRequest(status: status, fieldErrorInformation: fei, pduInError: ByteBuffer())
        )
    }
}

extension NVMeTCPPDU {
    /// This PDU on the wire.
    func encoded(digests: NVMeTCPDigests = [], dataAlignment: Int = 4) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeNVMeTCPPDU(self, digests: digests, dataAlignment: dataAlignment)
        return buffer
    }

    func encodedBytes(digests: NVMeTCPDigests = [], dataAlignment: Int = 4) -> [UInt8] {
        Array(encoded(digests: digests, dataAlignment: dataAlignment).readableBytesView)
    }
}

extension ByteBuffer {
    var bytes: [UInt8] { Array(readableBytesView) }
}

extension NVMeTCPPDU {
    /// What a correct host puts on the wire: the PDU written by `writeNVMeTCPPDU`, with the header
    /// digest (if any) computed over the header as sent. Test input only, so that tests of the
    /// receive path do not depend on how the writer computes the digest.
    func wireBytes(digests: NVMeTCPDigests = [], dataAlignment: Int = 4) -> [UInt8] {
        var bytes = encodedBytes(digests: digests, dataAlignment: dataAlignment)
        if bytes[1] & 0x01 != 0 { bytes.sealHeaderDigest() }
        return bytes
    }
}

// MARK: - Byte helpers

extension Array where Element == UInt8 {
    func le16(_ offset: Int) -> UInt16 { UInt16(self[offset]) | UInt16(self[offset + 1]) << 8 }
    func le32(_ offset: Int) -> UInt32 {
        UInt32(self[offset]) | UInt32(self[offset + 1]) << 8 | UInt32(self[offset + 2]) << 16
            | UInt32(self[offset + 3]) << 24
    }
    mutating func setLE16(_ value: UInt16, at offset: Int) {
        self[offset] = UInt8(truncatingIfNeeded: value)
        self[offset + 1] = UInt8(truncatingIfNeeded: value >> 8)
    }
    mutating func setLE32(_ value: UInt32, at offset: Int) {
        for i in 0..<4 { self[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
    }
    /// Sets PLEN to the array's length.
    mutating func fixPLEN() { setLE32(UInt32(count), at: 4) }
    /// Recomputes the header digest of a PDU whose HDGSTF is set, over the header as it is now.
    mutating func sealHeaderDigest() {
        let hlen = Int(self[2])
        setLE32(CRC32C.checksum(self[0..<hlen]), at: hlen)
    }
}

// MARK: - Looking at actions

typealias Action = NVMeTCPControllerBinding.Action

extension NVMeTCPControllerBinding.Action {
    // The controller's session actions, as the expectations read them.
    static func scheduleKeepAliveCheck(after delay: TimeAmount) -> Self {
        .session(.scheduleKeepAliveCheck(after: delay))
    }
    static func controllerCreated(_ host: DiscoveryHostContext, controllerIdentifier: UInt16) -> Self {
        .session(.controllerCreated(host, controllerIdentifier: controllerIdentifier))
    }
    static var asynchronousEventSent: Self { .session(.asynchronousEventSent) }
    static func logPageRead(offset: UInt64, length: UInt64) -> Self {
        .session(.logPageRead(offset: offset, length: length))
    }

    var sentPDU: NVMeTCPPDU? {
        if case .send(let pdu) = self { return pdu }
        return nil
    }
    var completion: CompletionQueueEntry? {
        if case .send(.capsuleResponse(let response)) = self { return response.completion }
        return nil
    }
    var controllerToHostData: ControllerToHostData? {
        if case .send(.controllerToHostData(let data)) = self { return data }
        return nil
    }
    var terminationRequest: TerminationRequest? {
        if case .send(.controllerToHostTerminationRequest(let request)) = self { return request }
        return nil
    }
    var isClose: Bool {
        if case .close = self { return true }
        return false
    }
}

extension Array where Element == NVMeTCPControllerBinding.Action {
    var sentPDUs: [NVMeTCPPDU] { compactMap(\.sentPDU) }
    var completions: [CompletionQueueEntry] { compactMap(\.completion) }
    var controllerToHostData: [ControllerToHostData] { compactMap(\.controllerToHostData) }
    var terminationRequests: [TerminationRequest] { compactMap(\.terminationRequest) }
    var containsClose: Bool { contains(where: \.isClose) }
}

/// A CQE built the way the expectations read: SCT/SC/DNR.
func status(_ sct: UInt8, _ sc: UInt8, dnr: Bool = true) -> NVMeStatus {
    NVMeStatus(statusCodeType: sct, statusCode: sc, doNotRetry: dnr)
}

// MARK: - A controller session without the framer

/// A discovery controller state machine with a clock, fed PDU values directly.
struct ControllerSession {
    var machine: NVMeTCPControllerBinding
    let service: FakeDiscoveryService
    let configuration: DiscoveryControllerConfiguration
    var now: NIODeadline = TestValues.start

    init(
        configuration: DiscoveryControllerConfiguration = TestValues.configuration(),
        service: FakeDiscoveryService = FakeDiscoveryService()
    ) {
        self.configuration = configuration
        self.service = service
        self.machine = NVMeTCPControllerBinding(configuration: configuration, service: service)
    }

    @discardableResult
    mutating func receive(_ pdu: NVMeTCPPDU) -> [Action] {
        machine.pduReceived(pdu, now: now)
    }

    mutating func advance(_ amount: TimeAmount) {
        now = now + amount
    }

    /// ICReq → ICResp.
    @discardableResult
    mutating func initialize(digests: NVMeTCPDigests = [], hostPDUDataAlignment: UInt8 = 0) -> [Action] {
        receive(HostPDU.icreq(hostPDUDataAlignment: hostPDUDataAlignment, digests: digests))
    }

    /// ICReq, Connect (CID 0), returning the Connect's actions.
    @discardableResult
    mutating func connect(
        subsystemNQN: String = DEMCore.wellKnownDiscoveryNQN,
        keepAliveTimeout: UInt32 = 0,
        digests: NVMeTCPDigests = []
    ) -> [Action] {
        initialize(digests: digests)
        return receive(HostPDU.connect(cid: 0, subsystemNQN: subsystemNQN, keepAliveTimeout: keepAliveTimeout))
    }

    /// ICReq, Connect (CID 0), Property Set CC.EN = 1 (CID 1).
    mutating func connectAndEnable(
        subsystemNQN: String = DEMCore.wellKnownDiscoveryNQN,
        keepAliveTimeout: UInt32 = 0,
        digests: NVMeTCPDigests = []
    ) {
        connect(subsystemNQN: subsystemNQN, keepAliveTimeout: keepAliveTimeout, digests: digests)
        receive(HostPDU.enable(cid: 1))
    }
}

// MARK: - The NIO pipeline without NIO

/// Feeds bytes through the same path as the channel handler: the frame decoder's `nextFrame`,
/// `NVMeTCPPDU.decode(frame:digests:)` with the machine's negotiated digests, then the state
/// machine; framing and parsing errors go to `transportErrorCaught`. Stops at the first `.close`.
struct ControllerHarness {
    var decoder: NVMeTCPFrameDecoder
    var machine: NVMeTCPControllerBinding
    var pending = ByteBuffer()
    var now: NIODeadline = TestValues.start
    private(set) var closed = false
    /// Frames cut by the decoder (and framing errors).
    private(set) var framesSeen = 0
    /// CIDs of the command capsules the machine was given.
    private(set) var commandIdentifiers: [UInt16] = []
    /// A PDU is not given to the machine when this returns true (used to step around a known crash).

    init(
        configuration: DiscoveryControllerConfiguration = TestValues.configuration(),
        service: FakeDiscoveryService = FakeDiscoveryService()
    ) {
        decoder = NVMeTCPFrameDecoder(maximumPDULength: configuration.maximumPDULength, firstPDULength: 128)
        machine = NVMeTCPControllerBinding(configuration: configuration, service: service)
    }

    /// Appends `bytes` to what has arrived and runs every whole PDU through.
    mutating func feed(_ bytes: ByteBuffer) -> [Action] {
        guard !closed else { return [] }
        var input = bytes
        pending.writeBuffer(&input)
        var actions: [Action] = []
        while !closed {
            let frame: ByteBuffer?
            do {
                frame = try decoder.nextFrame(&pending)
            } catch {
                framesSeen += 1
                record(machine.transportErrorCaught(error), into: &actions)
                closed = true  // the handler closes after a framing error whatever the machine says
                break
            }
            guard let frame else { break }
            framesSeen += 1
            do {
                let pdu = try NVMeTCPPDU.decode(frame: frame, digests: machine.digests)
                if case .capsuleCommand(let capsule) = pdu {
                    commandIdentifiers.append(capsule.command.commandIdentifier)
                }
                record(machine.pduReceived(pdu, now: now), into: &actions)
            } catch {
                record(machine.transportErrorCaught(error), into: &actions)
            }
        }
        return actions
    }

    mutating func feed(_ bytes: [UInt8]) -> [Action] {
        feed(ByteBuffer(bytes: bytes))
    }

    /// Writes `pdu` as a host would with the digests negotiated so far, and feeds it.
    mutating func feed(_ pdu: NVMeTCPPDU) -> [Action] {
        feed(pdu.wireBytes(digests: machine.digests))
    }

    mutating func keepAliveTimerFired() -> [Action] {
        var actions: [Action] = []
        record(machine.keepAliveTimerFired(now: now), into: &actions)
        return actions
    }

    mutating func discoveryLogChanged() -> [Action] {
        var actions: [Action] = []
        record(machine.discoveryLogChanged(), into: &actions)
        return actions
    }

    private mutating func record(_ new: [Action], into actions: inout [Action]) {
        actions.append(contentsOf: new)
        if new.containsClose { closed = true }
    }
}

// MARK: - A deterministic random number generator

/// SplitMix64: small, fast and the same on every platform, so a seed reproduces a run.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
