import DEMCore
import DEMServer
import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Testing

@Suite("dem on loopback: our host client against our discovery controller over real sockets")
struct DiscoveryLoopbackTests {
    @Test("a whole session: identify as a discovery controller, then the page with dem's own SUBTYPE 3 entry")
    func wholeSession() async throws {
        let dem = try await RunningDEM.start(entries: entriesJSON([("nqn.2024-01.io.example:one", nil)]))
        let client = try await dem.client()
        #expect(client.identify.controllerType == IdentifyControllerData.ControllerType.discovery)
        #expect(client.identify.discoveryControllerType == IdentifyControllerData.DiscoveryControllerType.centralized)
        #expect(client.identify.subsystemNQN == DEMCore.wellKnownDiscoveryNQN)
        #expect(client.identify.optionalAsynchronousEventsSupported & (1 << 31) != 0)
        let page = try await client.readDiscoveryLogPage()
        #expect(page.generationCounter == 1)
        #expect(page.entries.count == 2)
        #expect(page.entries[0].subsystemType == .currentDiscovery)
        #expect(page.entries[0].subsystemNQN == dem.application.catalog.uniqueNQN)
        #expect(page.entries[0].transportAddress == "127.0.0.1")
        #expect(page.entries[0].transportServiceIdentifier == String(dem.port))
        #expect(page.entries[0].entryFlags.contains(.explicitPersistentConnection))
        #expect(page.entries[1].subsystemNQN == "nqn.2024-01.io.example:one")
        #expect(page.entries[1].subsystemType == .nvm)
        await client.close()
        try await dem.stop()
    }

    @Test("the unique discovery NQN is accepted and reported by Identify")
    func uniqueNQN() async throws {
        let dem = try await RunningDEM.start()
        let client = try await dem.client(subsystemNQN: dem.application.catalog.uniqueNQN)
        #expect(client.identify.subsystemNQN == dem.application.catalog.uniqueNQN)
        #expect(try await client.readDiscoveryLogPage().entries.count == 1)
        await client.close()
        try await dem.stop()
    }

    @Test("header and data digests", arguments: [NVMeTCPDigests.header, .data, [.header, .data]])
    func digests(_ digests: NVMeTCPDigests) async throws {
        let dem = try await RunningDEM.start(entries: entriesJSON([("nqn.2024-01.io.example:one", nil)]))
        let client = try await dem.client(digests: digests)
        #expect(try await client.readDiscoveryLogPage().entries.count == 2)
        await client.close()
        try await dem.stop()
    }

    @Test("two host NQNs see different pages")
    func perHostPages() async throws {
        let dem = try await RunningDEM.start(
            entries: entriesJSON([
                ("nqn.2024-01.io.example:for-a", [TestHosts.a]),
                ("nqn.2024-01.io.example:for-b", [TestHosts.b]),
                ("nqn.2024-01.io.example:for-all", nil),
            ])
        )
        let a = try await dem.client(hostNQN: TestHosts.a)
        let b = try await dem.client(hostNQN: TestHosts.b)
        let pageA = try await a.readDiscoveryLogPage().entries.map(\.subsystemNQN)
        let pageB = try await b.readDiscoveryLogPage().entries.map(\.subsystemNQN)
        #expect(pageA.contains("nqn.2024-01.io.example:for-a") && !pageA.contains("nqn.2024-01.io.example:for-b"))
        #expect(pageB.contains("nqn.2024-01.io.example:for-b") && !pageB.contains("nqn.2024-01.io.example:for-a"))
        #expect(pageA.contains("nqn.2024-01.io.example:for-all") && pageB.contains("nqn.2024-01.io.example:for-all"))
        await a.close()
        await b.close()
        try await dem.stop()
    }

    @Test("a page of 45 entries (over 32 KiB) read in 4 KiB chunks, equal to what the catalog serves")
    func largePage() async throws {
        let subsystems = (0..<45).map { (nqn: "nqn.2024-01.io.example:big-\($0)", hosts: [String]?.none) }
        let dem = try await RunningDEM.start(entries: entriesJSON(subsystems))
        let client = try await dem.client()
        let raw = try await client.readRawDiscoveryLogPage()
        #expect(raw.readableBytes == 47 * 1024)
        let expected = DiscoveryLogPage(
            generationCounter: 1,
            entries: dem.application.catalog.discoveryLogPage(hostNQN: TestHosts.a).entries
        ).encoded()
        #expect(raw == expected)
        await client.close()
        try await dem.stop()
    }

    @Test("a change to the entries file notifies exactly the connected hosts whose page changed")
    func changeNotification() async throws {
        let dem = try await RunningDEM.start(entries: entriesJSON([("nqn.2024-01.io.example:one", nil)]))
        let a = try await dem.client(hostNQN: TestHosts.a)
        let b = try await dem.client(hostNQN: TestHosts.b)
        let before = try await a.readDiscoveryLogPage()
        _ = try await b.readDiscoveryLogPage()
        let eventA = Task { try await a.nextAsynchronousEvent() }
        let eventB = Task { try await b.nextAsynchronousEvent() }
        // Both AERs must be parked before the change.
        #expect(try await eventually { dem.application.catalog.registeredControllerCount == 2 })
        try await Task.sleep(for: .milliseconds(100))

        // A subsystem only host A may use: A is notified, B is not.
        try dem.writeEntries(
            entriesJSON([("nqn.2024-01.io.example:one", nil), ("nqn.2024-01.io.example:a-only", [TestHosts.a])])
        )
        let event = try await eventA.value
        #expect(event == AsynchronousEvent.discoveryLogPageChange)
        #expect(event.result == 0x70F002)
        let after = try await a.readDiscoveryLogPage()
        #expect(after.generationCounter > before.generationCounter)
        #expect(after.entries.map(\.subsystemNQN).contains("nqn.2024-01.io.example:a-only"))
        let pageB = try await b.readDiscoveryLogPage()
        #expect(pageB.generationCounter == before.generationCounter, "B's view did not change, so its GENCTR did not")
        #expect(!pageB.entries.map(\.subsystemNQN).contains("nqn.2024-01.io.example:a-only"))

        // Now a change B sees: B's parked AER (from before) completes — it was not used up earlier.
        try dem.writeEntries(
            entriesJSON([
                ("nqn.2024-01.io.example:one", nil), ("nqn.2024-01.io.example:a-only", [TestHosts.a]),
                ("nqn.2024-01.io.example:b-only", [TestHosts.b]),
            ])
        )
        #expect(try await eventB.value == AsynchronousEvent.discoveryLogPageChange)
        await a.close()
        await b.close()
        try await dem.stop()
    }

    @Test("a malformed entries file keeps the previous entries")
    func badReloadKeepsEntries() async throws {
        let dem = try await RunningDEM.start(entries: entriesJSON([("nqn.2024-01.io.example:one", nil)]))
        try dem.writeEntries(
            #"{"entries": [{"subnqn": "not-an-nqn", "trtype": "tcp", "traddr": "10.0.0.1", "trsvcid": "4420", "portid": 1}]}"#
        )
        #expect(dem.application.watcher?.reload(reason: "test") == false)
        let client = try await dem.client()
        #expect(
            try await client.readDiscoveryLogPage().entries.map(\.subsystemNQN).contains("nqn.2024-01.io.example:one")
        )
        await client.close()
        try await dem.stop()
    }

    @Test("a host that breaks the protocol gets a C2HTermReq and is cut off; a good host keeps being served")
    func badHostIsolated() async throws {
        let dem = try await RunningDEM.start(entries: entriesJSON([("nqn.2024-01.io.example:one", nil)]))
        let good = try await dem.client()

        // The bad host: a valid ICReq, then a PDU whose PLEN is absurd.
        let bad = try await RawConnection.connect(port: dem.port)
        var icreq = ByteBuffer()
        icreq.writeNVMeTCPPDU(.initializeConnectionRequest(InitializeConnectionRequest()))
        try await bad.send(icreq)
        var garbage = ByteBuffer(bytes: [0x04, 0x00, 0x48, 0x48, 0xFF, 0xFF, 0xFF, 0xFF])
        garbage.writeRepeatingByte(0xAB, count: 64)
        try await bad.send(garbage)
        let received = try await bad.readUntilClosed()
        // ICResp (128 bytes), then a C2HTermReq: type 03h, FES 01h (invalid header field), FEI 4 (PLEN).
        #expect(received.readableBytes >= 128 + 24)
        #expect(received.getInteger(at: 128, as: UInt8.self) == 0x03)
        #expect(received.getInteger(at: 128 + 8, endianness: .little, as: UInt16.self) == 0x01)
        #expect(received.getInteger(at: 128 + 10, endianness: .little, as: UInt32.self) == 4)

        for _ in 0..<3 {
            #expect(try await good.readDiscoveryLogPage().entries.count == 2)
        }
        let fresh = try await dem.client()
        #expect(try await fresh.readDiscoveryLogPage().entries.count == 2)
        await fresh.close()
        await good.close()
        try await dem.stop()
    }

    @Test("graceful shutdown closes the listener and connected hosts see the connection end")
    func gracefulShutdown() async throws {
        let dem = try await RunningDEM.start()
        let client = try await dem.client()
        try await dem.stop()
        // The listeners are closed. (Their port is not tried: another test's listener may be
        // given the same port the moment it is free.)
        #expect(!dem.application.listeners.channels.isEmpty)
        for channel in dem.application.listeners.channels { #expect(!channel.isActive) }
        // The connected host sees its connection end.
        await #expect(throws: (any Error).self) {
            _ = try await client.readDiscoveryLogPage()
        }
        await client.close()
    }
}

/// A plain TCP connection for sending hand-made bytes.
final class RawConnection: Sendable {
    let channel: any Channel
    let received: LockedBuffer

    private init(channel: any Channel, received: LockedBuffer) {
        self.channel = channel
        self.received = received
    }

    static func connect(port: Int) async throws -> RawConnection {
        let box = LockedBuffer()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Collector(box: box))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return RawConnection(channel: channel, received: box)
    }

    func send(_ buffer: ByteBuffer) async throws {
        try await channel.writeAndFlush(buffer)
    }

    func readUntilClosed() async throws -> ByteBuffer {
        try await channel.closeFuture.get()
        return received.value
    }

    private final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let box: LockedBuffer
        init(box: LockedBuffer) { self.box = box }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var bytes = Self.unwrapInboundIn(data)
            box.append(&bytes)
        }
    }
}

final class LockedBuffer: Sendable {
    private let buffer = Mutex(ByteBuffer())
    func append(_ bytes: inout ByteBuffer) {
        let copy = bytes
        buffer.withLock { _ = $0.writeImmutableBuffer(copy) }
    }
    var value: ByteBuffer { buffer.withLock { $0 } }
}
