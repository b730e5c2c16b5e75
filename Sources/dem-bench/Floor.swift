import DEMCore
import NIOCore
import NIOPosix
import Synchronization

/// What identifies a host PDU for the floor: the PDU type and, for a command capsule, the opcode,
/// FCTYPE and CDW10–CDW13 (which property, which log page offset and length, which CNS). The CID
/// is left out: it is copied from the request into the answer.
struct FloorRequestKey: Hashable, Sendable, CustomStringConvertible {
    var type: UInt8
    var opcode: UInt8 = 0
    var fabricsType: UInt8 = 0
    var dwords10and11: UInt64 = 0
    var dwords12and13: UInt64 = 0

    /// The key of a whole PDU frame (no header digest: the benchmark does not negotiate digests).
    init(frame: ByteBuffer) {
        let base = frame.readerIndex
        type = frame.getInteger(at: base) ?? 0xFF
        guard type == NVMeTCPPDUType.capsuleCommand.rawValue, frame.readableBytes >= 72 else { return }
        let sqe = base + 8
        opcode = frame.getInteger(at: sqe) ?? 0
        fabricsType = frame.getInteger(at: sqe + 4) ?? 0
        dwords10and11 = frame.getInteger(at: sqe + 40, endianness: .little) ?? 0
        dwords12and13 = frame.getInteger(at: sqe + 48, endianness: .little) ?? 0
    }

    var description: String {
        switch type {
        case NVMeTCPPDUType.initializeConnectionRequest.rawValue: return "ICReq"
        case NVMeTCPPDUType.capsuleCommand.rawValue:
            switch opcode {
            case AdminOpcode.fabrics:
                switch fabricsType {
                case FabricsCommandType.connect: return "Connect"
                case FabricsCommandType.propertySet: return "Property Set"
                default: return "Property Get 0x\(String(UInt32(truncatingIfNeeded: dwords10and11 >> 32), radix: 16))"
                }
            case AdminOpcode.identify: return "Identify"
            case AdminOpcode.getLogPage:
                let dwords = (UInt32(truncatingIfNeeded: dwords10and11) >> 16) + 1
                return "Get Log Page @\(UInt32(truncatingIfNeeded: dwords12and13)) len \(dwords * 4)"
            default: return "opcode 0x\(String(opcode, radix: 16))"
            }
        default: return "PDU type \(type)"
        }
    }
}

/// dem's answer to one host PDU, as bytes: every PDU dem sent back, concatenated, and where in
/// them the request's CID goes.
struct CannedAnswer: Sendable {
    var bytes: ByteBuffer
    var commandIdentifierOffsets: [Int]
    var pduCount: Int
}

/// The answers of one recorded dem session, by request.
struct CannedSession: Sendable {
    var answers: [FloorRequestKey: CannedAnswer]
    /// The requests in the order the session sent them, with the answer's PDU count and size.
    var script: [(request: String, requestBytes: Int, answerPDUs: Int, answerBytes: Int)]

    var summary: String {
        let requests = script.count
        let answers = script.reduce(0) { $0 + $1.answerPDUs }
        let bytesIn = script.reduce(0) { $0 + $1.requestBytes }
        let bytesOut = script.reduce(0) { $0 + $1.answerBytes }
        return "\(requests) host PDUs (\(bytesIn) bytes) answered by \(answers) PDUs (\(bytesOut) bytes) per session"
    }
}

// MARK: - Recording one session through a proxy

/// PDU frames seen by the recording proxy, in the order they were read.
private final class Recording: Sendable {
    let frames = Mutex<[(fromHost: Bool, frame: ByteBuffer)]>([])
}

/// Records each frame and forwards it to the other side.
private final class RecordingForwarder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let peer: any Channel
    private let fromHost: Bool
    private let recording: Recording

    init(peer: any Channel, fromHost: Bool, recording: Recording) {
        self.peer = peer
        self.fromHost = fromHost
        self.recording = recording
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = Self.unwrapInboundIn(data)
        // Recorded before it is forwarded, so an answer is always recorded before the next request.
        recording.frames.withLock { $0.append((fromHost, frame)) }
        peer.writeAndFlush(frame, promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        peer.close(promise: nil)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

enum FloorCapture {
    /// Runs one complete discovery session (as the benchmark runs them) against dem at
    /// `host`:`port` through a recording proxy, and keeps dem's answers.
    static func capture(host: String, port: Int, group: any EventLoopGroup) async throws -> CannedSession {
        let recording = Recording()
        let proxy = try await ServerBootstrap(group: group)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { child in
                ClientBootstrap(group: child.eventLoop)
                    .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                    .channelInitializer { upstream in
                        upstream.eventLoop.makeCompletedFuture {
                            try upstream.pipeline.syncOperations.addHandlers(
                                ByteToMessageHandler(NVMeTCPFrameDecoder(maximumPDULength: 1 << 24)),
                                RecordingForwarder(peer: child, fromHost: false, recording: recording)
                            )
                        }
                    }
                    .connect(host: host, port: port)
                    .flatMapThrowing { upstream in
                        try child.pipeline.syncOperations.addHandlers(
                            ByteToMessageHandler(NVMeTCPFrameDecoder(maximumPDULength: 1 << 24)),
                            RecordingForwarder(peer: upstream, fromHost: true, recording: recording)
                        )
                    }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        defer { proxy.close(promise: nil) }
        let proxyPort = proxy.localAddress!.port!
        let client = try await DiscoveryClient.connect(
            host: "127.0.0.1",
            port: proxyPort,
            options: benchClientOptions(host: 0),
            group: group
        )
        _ = try await client.readDiscoveryLogPage()
        await client.close()
        // The proxy may still be forwarding the last answer; let it settle.
        try await Task.sleep(for: .milliseconds(200))
        return try build(recording.frames.withLock { $0 })
    }

    private static func build(_ frames: [(fromHost: Bool, frame: ByteBuffer)]) throws -> CannedSession {
        var answers: [FloorRequestKey: CannedAnswer] = [:]
        var script: [(request: String, requestBytes: Int, answerPDUs: Int, answerBytes: Int)] = []
        var current: (key: FloorRequestKey, size: Int)? = nil
        var bytes = ByteBuffer()
        var offsets: [Int] = []
        var pdus = 0

        func finish() throws {
            guard let (key, size) = current else { return }
            let answer = CannedAnswer(bytes: bytes, commandIdentifierOffsets: offsets, pduCount: pdus)
            if let existing = answers[key] {
                guard existing.bytes.readableBytes == answer.bytes.readableBytes else {
                    throw BenchError("dem answered \(key) twice with different sizes")
                }
            } else {
                answers[key] = answer
            }
            script.append((key.description, size, pdus, bytes.readableBytes))
        }

        for (fromHost, frame) in frames {
            if fromHost {
                try finish()
                current = (FloorRequestKey(frame: frame), frame.readableBytes)
                bytes = ByteBuffer()
                offsets = []
                pdus = 0
            } else {
                let base = bytes.writerIndex
                let type: UInt8 = frame.getInteger(at: frame.readerIndex) ?? 0
                switch type {
                case NVMeTCPPDUType.capsuleResponse.rawValue: offsets.append(base + 8 + 12)  // CQE CID
                case NVMeTCPPDUType.controllerToHostData.rawValue: offsets.append(base + 8)  // CCCID
                default: break
                }
                var copy = frame
                bytes.writeBuffer(&copy)
                pdus += 1
            }
        }
        try finish()
        guard answers.count >= 6 else { throw BenchError("recorded only \(answers.count) distinct requests from dem") }
        return CannedSession(answers: answers, script: script)
    }
}

// MARK: - The floor server

/// Answers each host PDU with dem's recorded bytes for it, the CID patched in: the least work an
/// NVMe/TCP discovery server can do for the same exchange (frame by PLEN, look up, copy, write).
final class FloorHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let session: CannedSession

    init(session: CannedSession) {
        self.session = session
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = Self.unwrapInboundIn(data)
        let key = FloorRequestKey(frame: frame)
        let commandIdentifier: UInt16 = frame.getInteger(at: frame.readerIndex + 10, endianness: .little) ?? 0
        var out: ByteBuffer
        if let answer = session.answers[key] {
            out = answer.bytes
            for offset in answer.commandIdentifierOffsets {
                out.setInteger(commandIdentifier, at: offset, endianness: .little)
            }
        } else {
            // Not part of the recorded session (a Keep Alive, say): a bare success.
            out = context.channel.allocator.buffer(capacity: 24)
            out.writeNVMeTCPPDU(
                .capsuleResponse(
                    CapsuleResponse(completion: CompletionQueueEntry(commandIdentifier: commandIdentifier))
                )
            )
        }
        context.writeAndFlush(Self.wrapOutboundOut(out), promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

enum FloorServer {
    /// Binds the floor on `host`:`port` with the same listener options dem uses.
    static func bind(
        host: String,
        port: Int,
        session: CannedSession,
        group: any EventLoopGroup
    ) async throws -> any Channel {
        try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 4096)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.socketOption(.so_keepalive), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(
                        ByteToMessageHandler(
                            NVMeTCPFrameDecoder(
                                maximumPDULength: 1 << 20,
                                firstPDULength: NVMeTCPPDUType.initializeConnectionRequest.headerLength
                            )
                        ),
                        FloorHandler(session: session)
                    )
                }
            }
            .bind(host: host, port: port)
            .get()
    }
}
