import AsyncHTTPClient
import Crypto
import DEMCore
import DEMServer
import Foundation
import GRDB
import NIOCore
import Testing

/// A store in `directory` with a few targets and hosts, closed (its write-ahead log folded in).
private func makeStore(in directory: String) throws -> String {
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let path = directory + "/dem.sqlite"
    do {
        let store = try SQLiteFabricStore(path: path)
        var fabric = Fabric()
        for index in 0..<40 {
            try fabric.addTarget(FabricTarget(alias: "target-\(index)"))
            try fabric.addHost(
                FabricHost(
                    alias: "host-\(index)",
                    nqn: "nqn.2014-08.org.nvmexpress:uuid:\(UUID().uuidString.lowercased())"
                )
            )
        }
        try store.commit(from: Fabric(), to: fabric)
    }
    // The pool is closed; a last checkpoint leaves every page in the main file.
    let queue = try DatabaseQueue(path: path)
    try queue.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
    try queue.close()
    return path
}

/// Overwrites the first bytes of the root page of the host table's primary-key index, as a
/// failing disk or a stray write would.
private func damageIndexPage(_ path: String) throws {
    let (page, pageSize): (Int, Int) = try {
        var configuration = Configuration()
        configuration.readonly = true
        let queue = try DatabaseQueue(path: path, configuration: configuration)
        defer { try? queue.close() }
        return try queue.read { db in
            let root = try Int.fetchOne(
                db,
                sql: "SELECT rootpage FROM sqlite_master WHERE name = 'sqlite_autoindex_host_1'"
            )
            let size = try Int.fetchOne(db, sql: "PRAGMA page_size")
            return (root ?? 0, size ?? 4096)
        }
    }()
    #expect(page > 1)
    let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
    try handle.seek(toOffset: UInt64((page - 1) * pageSize))
    try handle.write(contentsOf: Data(repeating: 0xA5, count: 64))
    try handle.close()
}

private func digest(_ path: String) throws -> [UInt8] {
    Array(SHA256.hash(data: try Data(contentsOf: URL(fileURLWithPath: path))))
}

@Suite("a damaged store is refused, never written, and there is a way out", .serialized)
struct DamagedStoreTests {
    @Test("dem refuses to start on a store with a damaged index page, names the file and the fix, and writes nothing")
    func refusesDamagedStore() async throws {
        let directory = temporaryDirectory("dem-damaged")
        let path = try makeStore(in: directory)
        try damageIndexPage(path)
        let before = try digest(path)
        let (status, output) = try await runDEM(["--data-dir", directory, "--port", "0", "--api-port", "0"])
        #expect(status == 1, "\(output)")
        #expect(output.contains("store \(path): is damaged"), "\(output)")
        #expect(output.contains("dem restore"), "\(output)")
        #expect(output.contains("dem export"), "\(output)")
        #expect(try digest(path) == before, "the refused start wrote to the damaged file")
        let wal = (try? Data(contentsOf: URL(fileURLWithPath: path + "-wal"))) ?? Data()
        #expect(wal.isEmpty, "the refused start wrote a write-ahead log")

        // dem check says the same and exits 1; it writes nothing either.
        let (checkStatus, checkOutput) = try await runDEM(["check", "--data-dir", directory])
        #expect(checkStatus == 1)
        #expect(checkOutput.contains(path))
        #expect(try digest(path) == before)
        // What can be read is saved by dem export (the table itself is intact).
        let (exportStatus, exportOutput) = try await runDEM(["export", "--data-dir", directory])
        #expect(exportStatus == 0, "\(exportOutput)")
        #expect(exportOutput.contains("target-39"))
        #expect(try digest(path) == before)
    }

    @Test("dem backup copies a live store; dem restore puts it back in place of a damaged one and dem serves it")
    func backupAndRestore() async throws {
        let directory = temporaryDirectory("dem-backup")
        let path = try makeStore(in: directory)
        let dem = try await DEMProcess.start(dataDirectory: directory)
        let backup = directory + "-backup.sqlite"
        let (backupStatus, backupOutput) = try await runDEM(["backup", backup, "--data-dir", directory])
        #expect(backupStatus == 0, "\(backupOutput)")
        #expect(try SQLiteFabricStore.check(path: backup, full: true).isEmpty)
        // A second backup to the same file is refused rather than overwriting it.
        let (again, againOutput) = try await runDEM(["backup", backup, "--data-dir", directory])
        #expect(again == 1)
        #expect(againOutput.contains("already exists"))
        // Restore is refused while dem runs.
        let (busy, busyOutput) = try await runDEM(["restore", backup, "--data-dir", directory])
        #expect(busy == 1)
        #expect(busyOutput.contains("in use by dem serve"), "\(busyOutput)")
        dem.kill(SIGTERM)
        #expect(try await dem.waitForExit() == 0)

        try damageIndexPage(path)
        let (refused, _) = try await runDEM(["--data-dir", directory, "--port", "0", "--api-port", "0"])
        #expect(refused == 1)
        let (restored, restoreOutput) = try await runDEM(["restore", backup, "--data-dir", directory])
        #expect(restored == 0, "\(restoreOutput)")
        #expect(restoreOutput.contains("kept the replaced store as"))
        #expect(try SQLiteFabricStore.check(path: path, full: true).isEmpty)
        let back = try await DEMProcess.start(dataDirectory: directory)
        let response = try await HTTPClient.shared.execute(back.request(.GET, "/target"), timeout: .seconds(10))
        #expect(String(buffer: try await response.body.collect(upTo: 1 << 20)).contains("target-39"))
        back.kill(SIGTERM)
        #expect(try await back.waitForExit() == 0)
    }

    @Test("a file that is not a database is named as such")
    func notADatabase() async throws {
        let directory = temporaryDirectory("dem-notdb")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try Data(repeating: 0x42, count: 8192).write(to: URL(fileURLWithPath: directory + "/dem.sqlite"))
        let (status, output) = try await runDEM(["--data-dir", directory, "--port", "0", "--api-port", "0"])
        #expect(status == 1)
        #expect(output.contains("store \(directory)/dem.sqlite: is damaged"), "\(output)")
    }
}
