import Foundation
import Testing

@testable import DEMHost

@Suite("connection ledger")
struct ConnectionLedgerTests {
    typealias S = HostSample

    @Test("saved and loaded back; a missing file is an empty ledger")
    func roundTrip() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let file = ConnectionLedgerFile(stateDirectory: folder.path + "/state")
        #expect(file.path == folder.path + "/state/connections.json")
        #expect(try file.load() == ConnectionLedger())

        var ledger = ConnectionLedger()
        ledger.recordConnected(
            name: "nvme10",
            options: ConnectionPlanner.connectOptions(for: S.entry(S.volumeB), host: S.host)!
        )
        ledger.record(S.record("nvme2", S.entry(S.volumeA)))
        try file.save(ledger)
        #expect(try file.load() == ledger)
        #expect(ledger.records.map(\.name) == ["nvme2", "nvme10"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path + "/state") == ["connections.json"])

        let text = try #require(folder.read("state/connections.json"))
        #expect(text.contains("\"subnqn\" : \"nqn.2024-01.io.dem:vol-a\""))
        #expect(text.contains("\"version\" : 1"))

        ledger.forget(name: "nvme2")
        try file.save(ledger)
        #expect(try file.load().records.map(\.name) == ["nvme10"])
    }

    @Test("a malformed or newer file is an error, not an empty ledger")
    func refusesBadFiles() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let file = ConnectionLedgerFile(path: folder.path + "/connections.json")
        try folder.file("connections.json", "{not json")
        #expect(throws: ConnectionLedgerError.self) { try file.load() }
        try folder.file("connections.json", #"{"version":2,"controllers":[]}"#)
        #expect(throws: ConnectionLedgerError.self) { try file.load() }
        try folder.folder("folder.json")
        #expect(throws: ConnectionLedgerError.self) {
            try ConnectionLedgerFile(path: folder.path + "/folder.json").load()
        }
    }

    @Test("a damaged file is set aside, not overwritten: dem-ac starts owning nothing and the file stays to read")
    func damagedFileSetAside() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let file = ConnectionLedgerFile(path: folder.path + "/connections.json")
        try folder.file("connections.json", "{\"version\": 1, \"controllers\": [{\"name\": \"nvme3\"")
        let (ledger, damage) = file.loadSettingAsideDamage()
        #expect(ledger == ConnectionLedger())
        let kept = try #require(damage?.keptAs)
        #expect(kept.hasPrefix(folder.path + "/connections.json.damaged-"))
        #expect(try String(contentsOfFile: kept, encoding: .utf8).contains("nvme3"))
        #expect(!FileManager.default.fileExists(atPath: file.path))
        // A missing file is a first start: no damage.
        #expect(file.loadSettingAsideDamage().damage == nil)
    }

    @Test("recording a name again replaces the old record")
    func replaces() {
        var ledger = ConnectionLedger(records: [S.record("nvme1", S.entry(S.volumeA))])
        ledger.record(S.record("nvme1", S.entry(S.volumeB)))
        #expect(ledger.records == [S.record("nvme1", S.entry(S.volumeB))])
    }

    @Test("pruning drops records whose controller is gone or whose name now belongs to another connection")
    func prunes() {
        let ledger = ConnectionLedger(records: [
            S.record("nvme0", S.entry(S.volumeA)),
            S.record("nvme1", S.entry(S.volumeB)),
            S.record("nvme2", S.entry("nqn.gone")),
        ])
        let existing = [
            S.controller("nvme0", nqn: S.volumeA, state: .connecting),
            S.controller("nvme1", nqn: "nqn.someone-else"),
        ]
        #expect(ledger.pruned(existing: existing).records.map(\.name) == ["nvme0"])
        #expect(ledger.owns(existing[0]))
        #expect(!ledger.owns(existing[1]))
    }
}
