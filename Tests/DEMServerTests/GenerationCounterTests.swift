import DEMCore
import DEMServer
import Foundation
import Testing

/// GENCTR tells a host whether the page changed: one value must never stand for two pages, even
/// when dem restarts in between (the kernel host keeps what it read under the old value).
@Suite("GENCTR across restarts", .serialized)
struct GenerationCounterTests {
    static let a = "nqn.2024-01.io.example:genctr-a"
    static let b = "nqn.2024-01.io.example:genctr-b"
    static let c = "nqn.2024-01.io.example:genctr-c"

    /// Reads `TestHosts.a`'s page from the dem process.
    static func page(_ dem: DEMProcess) async throws -> DiscoveryLogPage {
        guard let port = dem.discoveryPort else { throw TestFailure("dem logged no discovery port") }
        var options = DiscoveryClientOptions(hostNQN: TestHosts.a, hostIdentifier: Array(repeating: 7, count: 16))
        options.keepAliveTimeout = 30_000
        let client = try await DiscoveryClient.connect(host: "127.0.0.1", port: port, options: options)
        defer { Task { await client.close() } }
        return try await client.readDiscoveryLogPage()
    }

    /// Writes the entries file and waits until the host's page lists `expected` subsystems.
    static func serve(
        _ subsystems: [String],
        in file: String,
        by dem: DEMProcess
    ) async throws -> DiscoveryLogPage {
        try entriesJSON(subsystems.map { (nqn: $0, hosts: nil) }).write(toFile: file, atomically: true, encoding: .utf8)
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            let page = try await page(dem)
            let served = page.entries.map(\.subsystemNQN).filter { $0.hasPrefix("nqn.2024-01.io.example:genctr") }
            if served == subsystems { return page }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestFailure("dem did not serve \(subsystems) within 10 s")
    }

    @Test("a page read after a restart never has a GENCTR an earlier, different page had")
    func neverRepeated() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dem-genctr-\(UUID().uuidString)")
            .path
        let entries = directory + "-entries.json"
        try entriesJSON([]).write(toFile: entries, atomically: true, encoding: .utf8)

        // Before the restart: {}, {A}, {A, B}, with GENCTR growing.
        var seen: [UInt64: [String]] = [:]
        let first = try await DEMProcess.start(dataDirectory: directory, extraArguments: ["--entries", entries])
        for subsystems in [[], [Self.a], [Self.a, Self.b]] {
            let page = try await Self.serve(subsystems, in: entries, by: first)
            seen[page.generationCounter] = subsystems
        }
        #expect(seen.count == 3, "each change has its own GENCTR: \(seen)")
        let highest = seen.keys.max()!
        first.kill(SIGTERM)
        #expect(try await first.waitForExit() == 0)

        // After it: {B}, {B, C}, {C}: none may carry a GENCTR seen before (the same page may
        // not either: a host cannot tell whether what it holds is still good).
        let second = try await DEMProcess.start(dataDirectory: directory, extraArguments: ["--entries", entries])
        for subsystems in [[Self.b], [Self.b, Self.c], [Self.c]] {
            let page = try await Self.serve(subsystems, in: entries, by: second)
            #expect(
                page.generationCounter > highest,
                "GENCTR \(page.generationCounter) for \(subsystems) after the restart; before it, \(seen)"
            )
        }
        second.kill(SIGTERM)
        #expect(try await second.waitForExit() == 0)

        // dem logpage shows what the next start would serve: past everything handed out.
        let store = try SQLiteFabricStore(path: directory + "/dem.sqlite", readOnly: true)
        #expect(try store.reservedGeneration() > highest)
    }

    @Test("dem restore keeps the generation counters the replaced store handed out")
    func restoreKeepsGenerations() async throws {
        let directory = temporaryDirectory("dem-genctr-restore")
        let first = try await DEMProcess.start(dataDirectory: directory)
        let backup = directory + "-backup.sqlite"
        let (status, output) = try await runDEM(["backup", backup, "--data-dir", directory])
        #expect(status == 0, "\(output)")
        first.kill(SIGTERM)
        #expect(try await first.waitForExit() == 0)
        // Each start reserves a block: the live store is now past the backup.
        let second = try await DEMProcess.start(dataDirectory: directory)
        second.kill(SIGTERM)
        #expect(try await second.waitForExit() == 0)
        let live = try SQLiteFabricStore(path: directory + "/dem.sqlite", readOnly: true).reservedGeneration()
        #expect(try SQLiteFabricStore(path: backup, readOnly: true).reservedGeneration() < live)

        let (restored, restoreOutput) = try await runDEM(["restore", backup, "--data-dir", directory])
        #expect(restored == 0, "\(restoreOutput)")
        #expect(try SQLiteFabricStore(path: directory + "/dem.sqlite", readOnly: true).reservedGeneration() >= live)
        let (page, pageOutput) = try await runDEM(["logpage", "--host-nqn", TestHosts.a, "--data-dir", directory])
        #expect(page == 0, "\(pageOutput)")
        // dem logpage shows the GENCTR dem's next start serves.
        #expect(pageOutput.contains("\"genctr\" : \(live + 1),"), "\(pageOutput)")
    }

    @Test("the store reserves generation counters in blocks that never overlap, also across reopenings")
    func reservations() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("genctr-\(UUID().uuidString).sqlite")
            .path
        var store: SQLiteFabricStore? = try SQLiteFabricStore(path: path)
        #expect(try store!.reservedGeneration() == 0)
        #expect(try store!.reserveGenerations(1024) == 1...1024)
        #expect(try store!.reserveGenerations(10) == 1025...1034)
        store = nil
        let reopened = try SQLiteFabricStore(path: path)
        #expect(try reopened.reserveGenerations(1024) == 1035...2058)
        try reopened.raiseReservedGeneration(to: 5)
        #expect(try reopened.reservedGeneration() == 2058)
        try reopened.raiseReservedGeneration(to: 9000)
        #expect(try reopened.reserveGenerations(1) == 9001...9001)
    }

    @Test("the catalog takes its generations from reserved blocks and reserves the next one when a block runs out")
    func catalogReservations() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("genctr-\(UUID().uuidString).sqlite")
            .path
        let store = try SQLiteFabricStore(path: path)
        _ = try store.reserveGenerations(40)
        let catalog = DiscoveryCatalog(uniqueNQN: "nqn.2014-08.org.nvmexpress.discovery", listeners: [])
        try catalog.reserveGenerations(
            using: { try store.reserveGenerations($0) },
            blockSize: 4,
            logger: .init(label: "test")
        )
        #expect(catalog.discoveryLogPage(hostNQN: TestHosts.a).generationCounter == 41)
        var counters: [UInt64] = []
        for index in 0..<10 {
            catalog.update(entries: [SourceEntry(entry: Self.entry("nqn.2024-01.io.example:s\(index)"))])
            counters.append(catalog.discoveryLogPage(hostNQN: TestHosts.a).generationCounter)
        }
        #expect(counters == Array(42...51))
        #expect(try store.reservedGeneration() == 52)
    }

    static func entry(_ nqn: String) -> DiscoveryLogEntry {
        DiscoveryLogEntry(
            transportType: .tcp,
            addressFamily: .ipv4,
            subsystemType: .nvm,
            portIdentifier: 1,
            transportServiceIdentifier: "4420",
            subsystemNQN: nqn,
            transportAddress: "10.0.0.1"
        )
    }
}
