import DEMCore
import NIOCore
import Testing

/// Multicast DNS (TP8009): the DNS message codec against RFC 1035's layout, dem's advertisement
/// answering queries, and the browser's reading of responses. The real peer is Avahi
/// (scripts/mdns-check); these pin the bytes and the bad input.
@Suite struct MDNSTests {
    static let advertisement = MDNSAdvertisement(
        instance: "dem-head",
        hostName: "head.local",
        port: 8009,
        nqn: "nqn.2014-08.org.nvmexpress:uuid:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
        ipv4Addresses: [[192, 0, 2, 101]]
    )

    @Test func aQueryIsLaidOutAsRFC1035Says() {
        let bytes = Array(MDNSBrowserState.query().encoded().readableBytesView)
        // ID 0, flags 0 (a query), QDCOUNT 2, no records.
        #expect(Array(bytes[0..<12]) == [0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0])
        // _nvme-disc._tcp.local, type PTR (12), class IN (1).
        let name: [UInt8] = [10] + Array("_nvme-disc".utf8) + [4] + Array("_tcp".utf8) + [5] + Array("local".utf8) + [0]
        #expect(Array(bytes[12..<(12 + name.count)]) == name)
        #expect(Array(bytes[(12 + name.count)..<(16 + name.count)]) == [0, 12, 0, 1])
    }

    @Test func compressedNamesAreRead() throws {
        // A response: PTR _nvme-disc._tcp.local -> dem-head.<pointer to the owner name>.
        var bytes: [UInt8] = [0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0]
        let owner = bytes.count
        bytes += [10] + Array("_nvme-disc".utf8) + [4] + Array("_tcp".utf8) + [5] + Array("local".utf8) + [0]
        bytes += [0, 12, 0, 1, 0, 0, 0x11, 0x94]
        let rdata: [UInt8] = [8] + Array("dem-head".utf8) + [0xC0, UInt8(owner)]
        bytes += [0, UInt8(rdata.count)] + rdata
        let message = try DNSMessage(parsing: ByteBuffer(bytes: bytes))
        #expect(message.isResponse && message.authoritative)
        #expect(message.answers.count == 1)
        #expect(message.answers[0].ttl == 4500)
        #expect(message.answers[0].data == .pointer("dem-head._nvme-disc._tcp.local"))
        // Our encoding (names whole) reads back the same.
        #expect(try DNSMessage(parsing: message.encoded()) == message)
    }

    @Test(
        "bad messages are refused with the reason",
        arguments: [
            ("a truncated header", [UInt8](repeating: 0, count: 7)),
            ("a pointer to itself", [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 12, 0, 1]),
            ("a label past the end", [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 20, 0x61, 0x62]),
            (
                "RDLENGTH past the end",
                [0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 40, 1, 2, 3, 4]
            ),
            (
                "an A record of 5 bytes claimed as 4",
                [0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 12, 0, 1, 0, 0, 0, 1, 0, 4, 3, 0x61, 0x62]
            ),
        ]
    )
    func badMessages(_ name: String, _ bytes: [UInt8]) {
        #expect(throws: DNSMessage.Malformed.self, "\(name)") { try DNSMessage(parsing: ByteBuffer(bytes: bytes)) }
    }

    @Test func aBrowseIsAnsweredWithWhatAResolverNeeds() throws {
        let response = try #require(Self.advertisement.response(to: MDNSBrowserState.query()))
        #expect(response.isResponse && response.authoritative)
        #expect(response.answers.map(\.name) == [MDNSAdvertisement.serviceType, MDNSAdvertisement.centralSubtype])
        let additional = Set(response.additionals.map(\.data.type))
        #expect(additional == [DNSType.service, DNSType.text, DNSType.ipv4])
        let text = response.additionals.first { $0.data.type == DNSType.text }?.data
        #expect(text == .text(["nqn=\(Self.advertisement.nqn)", "p=tcp"]))
        let srv = response.additionals.first { $0.data.type == DNSType.service }
        #expect(srv?.data == .service(priority: 0, weight: 0, port: 8009, target: "head.local"))
        #expect(srv?.cacheFlush == true)
        // Other services, and responses, are not answered.
        var other = DNSMessage(isResponse: false)
        other.questions = [.init(name: "_http._tcp.local", type: DNSType.pointer)]
        #expect(Self.advertisement.response(to: other) == nil)
        #expect(Self.advertisement.response(to: Self.advertisement.announcement()) == nil)
        // A known answer with enough TTL left is not repeated (RFC 6762 §7.1).
        var known = MDNSBrowserState.query()
        known.answers = [response.answers[0]]
        #expect(Self.advertisement.response(to: known)?.answers.map(\.name) == [MDNSAdvertisement.centralSubtype])
        // The host's address by name, with the QU bit.
        var address = DNSMessage(isResponse: false)
        address.questions = [.init(name: "HEAD.local", type: DNSType.ipv4, unicastResponse: true)]
        #expect(Self.advertisement.response(to: address)?.answers.map(\.data) == [.ipv4([192, 0, 2, 101])])
        #expect(Self.advertisement.wantsUnicast(address))
    }

    @Test func theBrowserFollowsAnnouncementsGoodbyesAndTTLs() throws {
        var state = MDNSBrowserState()
        state.heard(Self.advertisement.announcement(), now: 0)
        let found = state.controllers
        #expect(found.count == 1)
        #expect(found.first?.address == "192.0.2.101")
        #expect(found.first?.port == 8009)
        #expect(found.first?.nqn == Self.advertisement.nqn)
        #expect(found.first?.isCentral == true)
        #expect(found.first?.transport == "tcp")
        // The goodbye removes it at once.
        state.heard(Self.advertisement.goodbye(), now: 1)
        #expect(state.controllers.isEmpty)
        // It moves: the new address replaces the old (cache flush), then the TTL runs out.
        state.heard(Self.advertisement.announcement(), now: 2)
        var moved = Self.advertisement
        moved.ipv4Addresses = [[192, 0, 2, 111]]
        state.heard(moved.announcement(), now: 3)
        #expect(state.controllers.map(\.address) == ["192.0.2.111"])
        state.expire(now: 3 + 121)
        #expect(state.controllers.isEmpty, "the SRV and A records (TTL 120) ran out")
        // A query heard is not a response.
        state.heard(MDNSBrowserState.query(), now: 200)
        #expect(state.controllers.isEmpty)
    }
}
