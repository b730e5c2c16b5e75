import DEMCore
import NIOCore
import NIOEmbedded
import NIOTestUtils
import Testing

/// ``NVMeTCPFrameDecoder`` cuts a connection's bytes into PDUs by PLEN.
@Suite("NVMe/TCP frame decoder")
struct FrameDecoderTests {
    /// The PDUs of the captured discovery session, host side and nvmet side.
    static func capturedPDUs() throws -> (host: [ByteBuffer], controller: [ByteBuffer]) {
        let sessions = try PcapCapture.load(Fixture.nvmetDiscoverySession).tcpSessions()
        let session = try #require(sessions.max { $0.clientToServer.count < $1.clientToServer.count })
        return (try splitPDUs(session.clientToServer), try splitPDUs(session.serverToClient))
    }

    static func concatenate(_ frames: [ByteBuffer]) -> ByteBuffer {
        frames.reduce(into: ByteBuffer()) { $0.writeImmutableBuffer($1) }
    }

    @Test("ByteToMessageDecoderVerifier: real PDUs alone and in pairs, drip-fed and all at once")
    func verifierWithoutFirstPDURule() throws {
        let (host, controller) = try Self.capturedPDUs()
        #expect(host.count == 9 && controller.count == 12)
        var pairs: [(ByteBuffer, [ByteBuffer])] = (host + controller).map { ($0, [$0]) }
        pairs.append((Self.concatenate([host[1], host[2]]), [host[1], host[2]]))
        pairs.append(
            (
                Self.concatenate([controller[6], controller[7], controller[8]]),
                [controller[6], controller[7], controller[8]]
            )
        )
        try ByteToMessageDecoderVerifier.verifyDecoder(inputOutputPairs: pairs) {
            NVMeTCPFrameDecoder(maximumPDULength: 1 << 20)
        }
    }

    @Test("ByteToMessageDecoderVerifier with the controller's first-PDU rule: every input starts with an ICReq")
    func verifierWithFirstPDURule() throws {
        let (host, _) = try Self.capturedPDUs()
        let configuration = TestValues.configuration()
        let icreq = host[0]
        let pairs: [(ByteBuffer, [ByteBuffer])] = [
            (icreq, [icreq]),
            (Self.concatenate([icreq, host[1]]), [icreq, host[1]]),
            (Self.concatenate(host), host),
        ]
        try ByteToMessageDecoderVerifier.verifyDecoder(inputOutputPairs: pairs) {
            NVMeTCPFrameDecoder(maximumPDULength: configuration.maximumPDULength, firstPDULength: 128)
        }
    }

    @Test(
        "first PDU rule: a first PLEN other than 128 is refused as soon as the common header is in",
        arguments: [8, 24, 72, 127, 129, 1096]
    )
    func firstPDURule(_ plen: Int) {
        var decoder = NVMeTCPFrameDecoder(maximumPDULength: 1 << 20, firstPDULength: 128)
        var buffer = ByteBuffer(bytes: HostPDU.icreq().encodedBytes().prefix(8))
        buffer.setInteger(UInt32(plen), at: 4, endianness: .little)
        let error = #expect(throws: NVMeTCPTransportError.self) { try decoder.nextFrame(&buffer) }
        #expect(error?.status == .invalidHeaderField)
        #expect(error?.fieldErrorInformation == 4)
        #expect(error?.pduHeader.readableBytes == 8)
    }

    @Test("first PDU rule: after a 128-byte first PDU, any legal PLEN is accepted")
    func firstPDURuleOnlyOnce() throws {
        var decoder = NVMeTCPFrameDecoder(maximumPDULength: 1 << 20, firstPDULength: 128)
        var buffer = HostPDU.icreq().encoded()
        buffer.writeImmutableBuffer(HostPDU.keepAlive(cid: 1).encoded())
        buffer.writeImmutableBuffer(HostPDU.icreq().encoded())
        #expect(try decoder.nextFrame(&buffer)?.readableBytes == 128)
        #expect(try decoder.nextFrame(&buffer)?.readableBytes == 72)
        #expect(try decoder.nextFrame(&buffer)?.readableBytes == 128)
        #expect(try decoder.nextFrame(&buffer) == nil)
    }

    @Test(
        "PLEN above the maximum is refused before the body is buffered: FES 05h for H2CData, 01h (FEI 4) otherwise",
        arguments: [UInt8(0x06), 0x04, 0x00, 0x02, 0x07, 0x42]
    )
    func plenAboveMaximum(_ type: UInt8) throws {
        var decoder = NVMeTCPFrameDecoder(maximumPDULength: 1000)
        var buffer = ByteBuffer(bytes: [type, 0, 24, 24, 0, 0, 0, 0])
        buffer.setInteger(UInt32(1001), at: 4, endianness: .little)
        let error = #expect(throws: NVMeTCPTransportError.self) { try decoder.nextFrame(&buffer) }
        if type == 0x06 {
            #expect(error?.status == .dataTransferLimitExceeded)
            #expect(error?.fieldErrorInformation == 0)
        } else {
            #expect(error?.status == .invalidHeaderField)
            #expect(error?.fieldErrorInformation == 4)
        }
        // Exactly the maximum is fine: it waits for the body.
        var atLimit = ByteBuffer(bytes: [type, 0, 24, 24, 0, 0, 0, 0])
        atLimit.setInteger(UInt32(1000), at: 4, endianness: .little)
        #expect(try decoder.nextFrame(&atLimit) == nil)
        #expect(atLimit.readableBytes == 8, "nothing consumed while waiting")
    }

    @Test("PLEN 0 to 7 (below the common header) is refused", arguments: 0..<8)
    func plenBelowCommonHeader(_ plen: Int) {
        var decoder = NVMeTCPFrameDecoder(maximumPDULength: 1 << 20)
        var buffer = ByteBuffer(bytes: [0x05, 0, 24, 0, UInt8(plen), 0, 0, 0])
        let error = #expect(throws: NVMeTCPTransportError.self) { try decoder.nextFrame(&buffer) }
        #expect(error?.status == .invalidHeaderField)
        #expect(error?.fieldErrorInformation == 4)
    }

    @Test("fewer than 8 bytes, or fewer than PLEN: wait, consuming nothing")
    func waitsForMore() throws {
        var decoder = NVMeTCPFrameDecoder(maximumPDULength: 1 << 20, firstPDULength: 128)
        let icreq = HostPDU.icreq().encodedBytes()
        for length in [0, 1, 7, 8, 64, 127] {
            var buffer = ByteBuffer(bytes: icreq.prefix(length))
            #expect(try decoder.nextFrame(&buffer) == nil)
            #expect(buffer.readableBytes == length)
        }
    }

    @Test("EmbeddedChannel: the captured host stream fed one byte at a time comes out as its PDUs")
    func embeddedChannelByteByByte() throws {
        let sessions = try PcapCapture.load(Fixture.discoverConnectAll).tcpSessions()
        let configuration = TestValues.configuration()
        for session in sessions {
            let expected = try splitPDUs(session.clientToServer)
            let channel = EmbeddedChannel(
                handler: ByteToMessageHandler(
                    NVMeTCPFrameDecoder(maximumPDULength: configuration.maximumPDULength, firstPDULength: 128)
                )
            )
            var frames: [ByteBuffer] = []
            for byte in session.clientToServer {
                try channel.writeInbound(ByteBuffer(bytes: [byte]))
                while let frame = try channel.readInbound(as: ByteBuffer.self) { frames.append(frame) }
            }
            #expect(frames == expected, "\(session)")
            #expect(try channel.finish().isClean)
        }
    }

    @Test("EmbeddedChannel: a bad first PDU surfaces as the NVMeTCPTransportError")
    func embeddedChannelError() throws {
        let channel = EmbeddedChannel(
            handler: ByteToMessageHandler(NVMeTCPFrameDecoder(maximumPDULength: 1 << 16, firstPDULength: 128))
        )
        let error = #expect(throws: NVMeTCPTransportError.self) {
            try channel.writeInbound(HostPDU.keepAlive(cid: 1).encoded())
        }
        #expect(error?.status == .invalidHeaderField)
        #expect(error?.fieldErrorInformation == 4)
        #expect(try channel.readInbound(as: ByteBuffer.self) == nil)
        _ = try? channel.finish()
    }
}
