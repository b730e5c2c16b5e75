import DEMCore
import DEMServer
import Foundation
import Logging
import Synchronization
import Testing

@Suite("the JSON entries file")
struct JSONFileDiscoverySourceTests {
    @Test("nvme-cli's words and numbers both parse, with defaults")
    func parses() throws {
        let json = #"""
            {"entries": [
              {"subnqn": "nqn.2024-01.io.example:a", "trtype": "tcp", "adrfam": "ipv4", "traddr": "10.0.0.1",
               "trsvcid": "4420", "portid": 3, "treq": "not required", "sectype": "tls13", "eflags": 1},
              {"subnqn": "nqn.2024-01.io.example:b", "trtype": "rdma", "adrfam": "ipv6", "traddr": "fe80::1",
               "trsvcid": 4420, "portid": "7", "subtype": 1, "rdma_prtype": "roce-v2", "hosts": ["nqn.2014-08.org.nvmexpress:uuid:aaaaaaaa-0000-4000-8000-000000000001"]}
            ]}
            """#
        let entries = try JSONFileDiscoverySource.parse(Data(json.utf8))
        #expect(entries.count == 2)
        let a = entries[0].entry
        #expect(a.transportType == .tcp && a.addressFamily == .ipv4 && a.subsystemType == .nvm)
        #expect(a.transportRequirements == .secureChannelNotRequired)
        #expect(a.transportSpecificAddressSubtype == .tcp(securityType: 2))
        #expect(a.portIdentifier == 3 && a.controllerIdentifier == 0xFFFF && a.adminMaximumSubmissionQueueSize == 32)
        #expect(a.entryFlags == .duplicateReturnedInformation)
        #expect(entries[0].access == .anyHost)
        let b = entries[1].entry
        #expect(b.transportType == .rdma && b.addressFamily == .ipv6 && b.subsystemType == .referral)
        #expect(b.portIdentifier == 7 && b.transportServiceIdentifier == "4420")
        #expect(
            b.transportSpecificAddressSubtype
                == .rdma(queuePairType: 1, providerType: 4, connectionManagementService: 1, partitionKey: 0)
        )
        #expect(entries[1].access == .hosts(["nqn.2014-08.org.nvmexpress:uuid:aaaaaaaa-0000-4000-8000-000000000001"]))
    }

    @Test(
        "errors name the field",
        arguments: [
            (
                #"{"entries": [{"trtype": "tcp", "traddr": "10.0.0.1", "trsvcid": "4420", "portid": 1}]}"#,
                "entries[0].subnqn"
            ),
            (
                #"{"entries": [{"subnqn": "nqn.x", "trtype": "tcp", "traddr": "10.0.0.1", "trsvcid": "4420", "portid": 1}]}"#,
                "entries[0].subnqn"
            ),
            (
                #"{"entries": [{"subnqn": "nqn.2024-01.io.example:a", "trtype": "tcp", "traddr": "10.0.0.300", "trsvcid": "4420", "portid": 1}]}"#,
                "entries[0].traddr"
            ),
            (
                #"{"entries": [{"subnqn": "nqn.2024-01.io.example:a", "trtype": "tcp", "traddr": "10.0.0.1", "trsvcid": "99999", "portid": 1}]}"#,
                "entries[0].trsvcid"
            ),
            (
                #"{"entries": [{"subnqn": "nqn.2024-01.io.example:a", "trtype": "tcp", "traddr": "10.0.0.1", "trsvcid": "4420"}]}"#,
                "entries[0].portid"
            ),
            (
                #"{"entries": [{"subnqn": "nqn.2024-01.io.example:a", "trtype": "smoke", "traddr": "10.0.0.1", "trsvcid": "4420", "portid": 1}]}"#,
                "entries[0].trtype"
            ),
            (
                #"{"entries": [{"subnqn": "nqn.2024-01.io.example:a", "trtype": "tcp", "traddr": "10.0.0.1", "trsvcid": "4420", "portid": 1, "hosts": ["bob"]}]}"#,
                "entries[0].hosts[0]"
            ),
            (#"{"entries": {}}"#, "entries"),
            (#"[1, 2]"#, "entries file"),
            (#"{"entries": [1}"#, "entries file"),
        ]
    )
    func errorsNameTheField(json: String, field: String) {
        #expect {
            _ = try JSONFileDiscoverySource.parse(Data(json.utf8))
        } throws: { error in
            (error as? DiscoverySourceError)?.field == field
        }
    }
}

@Suite("the discovery catalog: per-host views and GENCTR")
struct DiscoveryCatalogTests {
    static let unique = "nqn.2014-08.org.nvmexpress:uuid:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"

    func entry(_ name: String, hosts: Set<String>? = nil) -> SourceEntry { Self.entry(name, hosts: hosts) }

    /// An NVM subsystem entry for any host, or for `hosts` only.
    static func entry(_ name: String, hosts: Set<String>? = nil) -> SourceEntry {
        SourceEntry(
            entry: DiscoveryLogEntry(
                transportType: .tcp,
                addressFamily: .ipv4,
                subsystemType: .nvm,
                portIdentifier: 1,
                transportServiceIdentifier: "4420",
                subsystemNQN: "nqn.2024-01.io.example:\(name)",
                transportAddress: "10.0.0.1"
            ),
            access: hosts.map { .hosts($0) } ?? .anyHost
        )
    }

    @Test("a host's GENCTR moves only when its own view changes, and only upwards")
    func generationPerView() {
        let catalog = DiscoveryCatalog(
            uniqueNQN: Self.unique,
            listeners: [DiscoveryListenerAddress(address: "127.0.0.1", port: 8009)],
            entries: [entry("one")]
        )
        #expect(catalog.discoveryLogPage(hostNQN: TestHosts.a).generationCounter == 1)
        #expect(catalog.discoveryLogPage(hostNQN: TestHosts.b).generationCounter == 1)
        catalog.update(entries: [entry("one"), entry("a-only", hosts: [TestHosts.a])])
        #expect(catalog.discoveryLogPage(hostNQN: TestHosts.a).generationCounter == 2)
        #expect(catalog.discoveryLogPage(hostNQN: TestHosts.b).generationCounter == 1)
        catalog.update(entries: [
            entry("one"), entry("a-only", hosts: [TestHosts.a]), entry("b-only", hosts: [TestHosts.b]),
        ])
        #expect(catalog.discoveryLogPage(hostNQN: TestHosts.a).generationCounter == 2)
        #expect(catalog.discoveryLogPage(hostNQN: TestHosts.b).generationCounter == 3)
        catalog.update(entries: [entry("one")])
        #expect(catalog.discoveryLogPage(hostNQN: TestHosts.a).generationCounter == 4)
        #expect(catalog.discoveryLogPage(hostNQN: TestHosts.b).generationCounter == 4)
    }

    @Test("an update notifies exactly the registered hosts whose view changed")
    func notifiesAffectedHosts() {
        let catalog = DiscoveryCatalog(uniqueNQN: Self.unique, listeners: [], entries: [entry("one")])
        let counts = NIOLockedCounter()
        let host = { (nqn: String) in
            DiscoveryHostContext(hostNQN: nqn, hostIdentifier: [], subsystemNQN: DEMCore.wellKnownDiscoveryNQN)
        }
        _ = catalog.discoveryLogPage(for: host(TestHosts.a))
        let tokenA = catalog.controllerCreated(host(TestHosts.a)) { counts.add("a") }
        _ = catalog.controllerCreated(host(TestHosts.b)) { counts.add("b") }
        #expect(catalog.update(entries: [entry("one"), entry("a-only", hosts: [TestHosts.a])]) == 1)
        #expect(counts.value == ["a": 1])
        #expect(
            catalog.update(entries: [entry("one"), entry("a-only", hosts: [TestHosts.a])]) == 0,
            "no change, no notice"
        )
        #expect(catalog.update(entries: [entry("two")]) == 2)
        #expect(counts.value == ["a": 2, "b": 1])
        catalog.controllerRemoved(tokenA)
        #expect(catalog.update(entries: [entry("three")]) == 1)
        #expect(counts.value == ["a": 2, "b": 2])
    }

    /// A store that cannot be reached (a double: the PostgreSQL tests use the real server).
    final class UnreachableGenerations: DiscoveryPageGenerations {
        let asked = Atomic<Int>(0)
        func pageGenerations(above: [String: UInt64]) throws -> [String: UInt64] {
            asked.add(1, ordering: .relaxed)
            throw TestFailure("the store is down")
        }
    }

    @Test(
        "while the store cannot give the pages' GENCTRs, pages are served with dem's own, and the store is not asked at every read"
    )
    func storedGenerationsUnreachable() {
        let catalog = DiscoveryCatalog(
            uniqueNQN: Self.unique,
            listeners: [DiscoveryListenerAddress(address: "192.0.2.1", port: 8009)],
            entries: [entry("one")]
        )
        let source = UnreachableGenerations()
        catalog.useStoredGenerations(source, logger: Logger(label: "test"))
        let before = catalog.discoveryLogPage(hostNQN: TestHosts.a)
        #expect(before.entries.count == 2)
        catalog.update(entries: [entry("one"), entry("two")])
        let after = catalog.discoveryLogPage(hostNQN: TestHosts.a)
        #expect(after.entries.count == 3)
        #expect(after.generationCounter > before.generationCounter)
        #expect(catalog.discoveryLogPage(hostNQN: TestHosts.b).entries.count == 3)
        #expect(source.asked.load(ordering: .relaxed) == 1, "asked once, then left alone for a while")
    }

    @Test("a wildcard listener's SUBTYPE 3 entry carries the address the host reached")
    func wildcardListener() {
        let catalog = DiscoveryCatalog(
            uniqueNQN: Self.unique,
            listeners: [DiscoveryListenerAddress(address: "0.0.0.0", port: 8009)]
        )
        let page = catalog.discoveryLogPage(hostNQN: TestHosts.a, localAddress: "192.0.2.7")
        #expect(page.entries.count == 1)
        #expect(page.entries[0].transportAddress == "192.0.2.7")
        #expect(page.entries[0].subsystemNQN == Self.unique)
    }

    @Test(
        "the other replicas' listeners are SUBTYPE 3 entries with dem's own, in one order on every replica; a change notifies every connected host"
    )
    func replicaPeers() {
        let catalog = DiscoveryCatalog(
            uniqueNQN: Self.unique,
            listeners: [DiscoveryListenerAddress(address: "192.0.2.1", port: 8009)],
            entries: [entry("one")]
        )
        let counts = NIOLockedCounter()
        let host = DiscoveryHostContext(
            hostNQN: TestHosts.a,
            hostIdentifier: [],
            subsystemNQN: DEMCore.wellKnownDiscoveryNQN
        )
        let before = catalog.discoveryLogPage(hostNQN: TestHosts.a)
        _ = catalog.controllerCreated(host) { counts.add("a") }
        let peers = [
            DiscoveryListenerAddress(address: "192.0.2.2", port: 8009),
            DiscoveryListenerAddress(address: "192.0.2.3", port: 8010),
        ]
        #expect(catalog.setPeers(peers) == 1)
        #expect(catalog.setPeers(peers) == 0, "the same peers: no notice")
        let page = catalog.discoveryLogPage(hostNQN: TestHosts.a)
        #expect(page.generationCounter > before.generationCounter)
        let current = page.entries.filter { $0.subsystemType == .currentDiscovery }
        #expect(current.map(\.transportAddress) == ["192.0.2.1", "192.0.2.2", "192.0.2.3"])
        #expect(current.map(\.transportServiceIdentifier) == ["8009", "8009", "8010"])
        #expect(current.map(\.portIdentifier) == [1, 2, 3])
        #expect(current.allSatisfy { $0.subsystemNQN == Self.unique })
        #expect(page.entries.count == 4)
        // Another replica lists the same ports in the same order (its own is not first).
        let other = DiscoveryCatalog(
            uniqueNQN: Self.unique,
            listeners: [DiscoveryListenerAddress(address: "192.0.2.3", port: 8010)],
            entries: [entry("one")]
        )
        other.setPeers([
            DiscoveryListenerAddress(address: "192.0.2.2", port: 8009),
            DiscoveryListenerAddress(address: "192.0.2.1", port: 8009),
        ])
        #expect(other.discoveryLogPage(hostNQN: TestHosts.a).entries == page.entries)
        #expect(catalog.setPeers([]) == 1)
        #expect(counts.value == ["a": 2])
        #expect(catalog.discoveryLogPage(hostNQN: TestHosts.a).entries.count == 2)
    }
}

final class NIOLockedCounter: Sendable {
    private let box = Mutex<[String: Int]>([:])
    func add(_ key: String) { box.withLock { $0[key, default: 0] += 1 } }
    var value: [String: Int] { box.withLock { $0 } }
}

@Suite("the discovery catalog shares pages")
struct DiscoveryCatalogSharingTests {
    @Test("hosts that see the same entries share one encoded page")
    func sharedPages() {
        let entry = SourceEntry(
            entry: DiscoveryLogEntry(
                transportType: .tcp,
                addressFamily: .ipv4,
                subsystemType: .nvm,
                portIdentifier: 1,
                transportServiceIdentifier: "4420",
                subsystemNQN: "nqn.2024-01.io.example:shared",
                transportAddress: "10.0.0.1"
            )
        )
        let catalog = DiscoveryCatalog(uniqueNQN: DiscoveryCatalogTests.unique, listeners: [], entries: [entry])
        func base(_ host: String) -> UInt {
            let page = catalog.discoveryLogPage(
                for: DiscoveryHostContext(
                    hostNQN: host,
                    hostIdentifier: [],
                    subsystemNQN: DEMCore.wellKnownDiscoveryNQN
                )
            )
            return page.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
        }
        #expect(base(TestHosts.a) == base(TestHosts.b))
        catalog.update(entries: [entry, entry])
        #expect(base(TestHosts.a) == base(TestHosts.b))
    }
}
