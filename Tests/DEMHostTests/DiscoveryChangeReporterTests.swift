import DEMCore
import DEMServer
import Foundation
import Testing

@testable import DEMHost

@Suite("discovery change reporter")
struct DiscoveryChangeReporterTests {
    typealias S = HostSample
    typealias R = DiscoveryChangeReporter

    /// 2026-11-21T20:00:00Z.
    let time = Date(timeIntervalSince1970: 1_795_291_200)
    let dc = DiscoveryControllerAddress(transportAddress: "10.0.2.2")

    @Test("no change, added, removed, changed; order of the pages does not count")
    func diff() {
        let a = S.entry(S.volumeA)
        let b = S.entry(S.volumeB)
        let c = S.entry("nqn.2024-01.io.dem:vol-c")
        var bMoved = b
        bMoved.portIdentifier = 2
        bMoved.transportRequirements = .secureChannelNotRequired
        #expect(R.changes(from: [a, b], to: [b, a]).isEmpty)
        #expect(R.changes(from: [], to: []).isEmpty)
        #expect(
            R.changes(from: [a, b], to: [c, bMoved])
                == [.added(c), .changed(old: b, new: bMoved), .removed(a)]
        )
    }

    @Test("the key is subsystem, transport, address and service: another address is a removal and an addition")
    func keyFields() {
        let a = S.entry()
        let elsewhere = S.entry(traddr: "10.0.2.16")
        let otherService = S.entry(trsvcid: "4421")
        let rdma = S.entry(transport: .rdma)
        #expect(R.changes(from: [a], to: [elsewhere]) == [.added(elsewhere), .removed(a)])
        #expect(R.changes(from: [a], to: [otherService]) == [.added(otherService), .removed(a)])
        #expect(R.changes(from: [a], to: [rdma]) == [.added(rdma), .removed(a)])
        var flagged = a
        flagged.entryFlags = [.explicitPersistentConnection]
        #expect(R.changes(from: [a], to: [flagged]) == [.changed(old: a, new: flagged)])
    }

    @Test("entries repeated under one key are paired in page order")
    func duplicates() {
        let a = S.entry()
        var a2 = a
        a2.portIdentifier = 9
        #expect(R.changes(from: [a, a], to: [a]) == [.removed(a)])
        #expect(R.changes(from: [a], to: [a, a2]) == [.added(a2)])
        #expect(R.changes(from: [a, a2], to: [a2]) == [.changed(old: a, new: a2), .removed(a2)])
    }

    @Test("text lines")
    func text() {
        let entry = S.entry("nqn.x")
        var moved = entry
        moved.portIdentifier = 2
        moved.entryFlags = [.explicitPersistentConnection]
        let v6 = DiscoveryControllerAddress(transportAddress: "fd00::2")
        #expect(
            R.textLines(.added(entry), controller: dc, at: time)
                == ["2026-11-21T20:00:00Z 10.0.2.2:8009 added nvme subsystem nqn.x at tcp 10.0.2.15:4420"]
        )
        #expect(
            R.textLines(.removed(S.entry("nqn.x", traddr: "fd00::15")), controller: v6, at: time)
                == ["2026-11-21T20:00:00Z [fd00::2]:8009 removed nvme subsystem nqn.x at tcp [fd00::15]:4420"]
        )
        #expect(
            R.textLines(.changed(old: entry, new: moved), controller: dc, at: time)
                == [
                    "2026-11-21T20:00:00Z 10.0.2.2:8009 changed nvme subsystem nqn.x at tcp 10.0.2.15:4420: "
                        + "portid 1 -> 2, eflags none -> explicit discovery connections"
                ]
        )
        #expect(
            R.textLines(.lost(reason: "connection refused"), controller: dc, at: time)
                == ["2026-11-21T20:00:00Z 10.0.2.2:8009 lost: connection refused"]
        )
        #expect(R.textLines(.back, controller: dc, at: time) == ["2026-11-21T20:00:00Z 10.0.2.2:8009 back"])
        let referral = S.entry(S.discoveryNQN, traddr: "10.0.2.3", trsvcid: "8009", subtype: .referral)
        #expect(
            R.textLines(
                .page(DiscoveryLogPage(generationCounter: 7, entries: [entry, referral])),
                controller: dc,
                at: time
            )
                == [
                    "2026-11-21T20:00:00Z 10.0.2.2:8009 page genctr 7, 2 records",
                    "2026-11-21T20:00:00Z 10.0.2.2:8009 page nvme subsystem nqn.x at tcp 10.0.2.15:4420",
                    "2026-11-21T20:00:00Z 10.0.2.2:8009 page discovery subsystem referral "
                        + "nqn.2014-08.org.nvmexpress.discovery at tcp 10.0.2.3:8009",
                ]
        )
        #expect(
            R.textLines(.page(DiscoveryLogPage(generationCounter: 1, entries: [])), controller: dc, at: time)
                == ["2026-11-21T20:00:00Z 10.0.2.2:8009 page genctr 1, 0 records"]
        )
    }

    @Test("names from the wire cannot break a text line")
    func textIsOneLine() {
        let lines = R.textLines(.added(S.entry("nqn.evil\n2026 fake line\u{7}")), controller: dc, at: time)
        #expect(
            lines == [
                "2026-11-21T20:00:00Z 10.0.2.2:8009 added nvme subsystem nqn.evil\\x0a2026 fake line\\x07 at tcp 10.0.2.15:4420"
            ]
        )
    }

    @Test("JSON lines")
    func json() {
        let entry = S.entry("nqn.x")
        var moved = entry
        moved.portIdentifier = 2
        let record =
            #"{"trtype":"tcp","adrfam":"ipv4","subtype":"nvme subsystem","treq":"not specified","portid":1,"#
            + #""trsvcid":"4420","subnqn":"nqn.x","traddr":"10.0.2.15","eflags":"none","sectype":"none"}"#
        let head =
            #"{"time":"2026-11-21T20:00:00Z","controller":{"traddr":"10.0.2.2","trsvcid":"8009","trtype":"tcp"},"#
        #expect(
            R.jsonLine(.added(entry), controller: dc, at: time) == head + #""event":"added","entry":"# + record + "}"
        )
        #expect(
            R.jsonLine(.removed(entry), controller: dc, at: time) == head + #""event":"removed","entry":"# + record
                + "}"
        )
        #expect(
            R.jsonLine(.changed(old: entry, new: moved), controller: dc, at: time)
                == head + #""event":"changed","entry":"#
                + record.replacingOccurrences(of: #""portid":1"#, with: #""portid":2"#)
                + #","old":"# + record + "}"
        )
        #expect(
            R.jsonLine(.lost(reason: "read: \"timed out\"\n"), controller: dc, at: time)
                == head + #""event":"lost","reason":"read: \"timed out\"\n"}"#
        )
        #expect(R.jsonLine(.back, controller: dc, at: time) == head + #""event":"back"}"#)
        #expect(
            R.jsonLine(.page(DiscoveryLogPage(generationCounter: 42, entries: [entry])), controller: dc, at: time)
                == head + #""event":"page","genctr":42,"records":["# + record + "]}"
        )
    }

    @Test("a full page in nvme-cli's discover -o json shape, RDMA fields in nvme-cli's order")
    func page() {
        let rdma = DiscoveryLogEntry(
            transportType: .rdma,
            addressFamily: .ipv4,
            subsystemType: .nvm,
            transportRequirements: TransportRequirements(rawValue: 0x6),
            portIdentifier: 3,
            entryFlags: [.duplicateReturnedInformation, .noCDCConnectivity],
            transportServiceIdentifier: "4420",
            subsystemNQN: "nqn.r",
            transportAddress: "192.168.1.5"
        )
        let page = DiscoveryLogPage(generationCounter: 5, entries: [rdma])
        #expect(
            DiscoveryRecordJSON.page(page)
                == #"{"genctr":5,"records":[{"trtype":"rdma","adrfam":"ipv4","subtype":"nvme subsystem","#
                + #""treq":"not required, sq flow control disable supported","portid":3,"trsvcid":"4420","#
                + #""subnqn":"nqn.r","traddr":"192.168.1.5","eflags":"duplicate returned information, no cdc connectivity","#
                + #""rdma_prtype":"not specified","rdma_qptype":"connected","rdma_cms":"rdma-cm","rdma_pkey":0}]}"#
        )
        #expect(
            DiscoveryRecordJSON.page(DiscoveryLogPage(generationCounter: 0, entries: []))
                == #"{"genctr":0,"records":[]}"#
        )
        #expect(
            DiscoveryRecordJSON.page(DiscoveryLogPage(generationCounter: 1, entries: []), pretty: true)
                == "{\n  \"genctr\": 1,\n  \"records\": []\n}"
        )
    }

    @Test("records carry the same keys and words as dem's own discover JSON")
    func sameAsDEMServer() throws {
        let entries = [
            S.entry(),
            S.entry(S.discoveryNQN, trsvcid: "8009", subtype: .referral),
            S.entry(S.discoveryNQN, trsvcid: "8009", subtype: .currentDiscovery),
            S.entry(transport: .rdma),
            S.entry(transport: .fibreChannel),
            DiscoveryLogEntry(
                transportType: .tcp,
                addressFamily: .ipv6,
                subsystemType: SubsystemType(rawValue: 9),
                transportRequirements: .secureChannelRequired,
                portIdentifier: 65_535,
                entryFlags: [.explicitPersistentConnection],
                transportServiceIdentifier: "4420",
                subsystemNQN: "nqn.\"quoted\"/slash",
                transportAddress: "fd00::1",
                transportSpecificAddressSubtype: .tcp(securityType: 2)
            ),
        ]
        let page = DiscoveryLogPage(generationCounter: 3, entries: entries)
        let ours = try JSONSerialization.jsonObject(with: Data(DiscoveryRecordJSON.page(page).utf8)) as? NSDictionary
        let dems = try JSONSerialization.jsonObject(with: Data(DiscoveryLogJSON.render(page).utf8)) as? NSDictionary
        #expect(ours != nil)
        #expect(ours == dems)
    }

    @Test("timestamps are UTC to the second")
    func timestamps() {
        #expect(R.timestamp(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00Z")
        #expect(R.timestamp(Date(timeIntervalSince1970: 1_795_291_200.999)) == "2026-11-21T20:00:00Z")
        #expect(R.timestamp(Date(timeIntervalSince1970: .infinity)) == "1970-01-01T00:00:00Z")
    }
}
