import AsyncHTTPClient
import DEMServer
import Foundation
import NIOCore
import Testing

/// What a program run by ``runProgram(_:_:environment:seconds:stopAfter:)`` did.
struct ProgramRun {
    var status: Int32
    var output: String
    var errors: String
    /// Standard output and standard error, one after the other.
    var all: String { output + errors }
}

/// Runs `executable` (a path, or the name of a program built beside dem) with `arguments` and
/// `environment` added to this process's: its exit status and output. It must exit within
/// `seconds` (else it is killed and the test fails), unless `stopAfter` is set: then it is
/// stopped with SIGTERM after that long, as a daemon is, or as soon as its standard error holds
/// `stopWhenLogged`.
func runProgram(
    _ executable: String,
    _ arguments: [String],
    environment: [String: String]? = nil,
    seconds: Double = 20,
    stopAfter: Double? = nil,
    stopWhenLogged: String? = nil
) async throws -> ProgramRun {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable.contains("/") ? executable : DEMProcess.sibling(executable))
    process.arguments = arguments
    if let environment {
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
    }
    let out = temporaryDirectory("run-out")
    let err = temporaryDirectory("run-err")
    _ = FileManager.default.createFile(atPath: out, contents: nil)
    _ = FileManager.default.createFile(atPath: err, contents: nil)
    defer {
        try? FileManager.default.removeItem(atPath: out)
        try? FileManager.default.removeItem(atPath: err)
    }
    process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
    process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: err))
    try process.run()
    let start = ContinuousClock.now
    while process.isRunning {
        let elapsed = ContinuousClock.now - start
        let logged = stopWhenLogged.map { (try? String(contentsOfFile: err, encoding: .utf8))?.contains($0) ?? false }
        if let stopAfter, elapsed > .seconds(stopAfter) || logged == true {
            process.terminate()
            process.waitUntilExit()
            break
        }
        if stopAfter == nil, elapsed > .seconds(seconds) {
            kill(process.processIdentifier, SIGKILL)
            throw TestFailure("\(executable) \(arguments.joined(separator: " ")) did not exit within \(seconds) s")
        }
        try await Task.sleep(for: .milliseconds(20))
    }
    return ProgramRun(
        status: process.terminationStatus,
        output: (try? String(contentsOfFile: out, encoding: .utf8)) ?? "",
        errors: (try? String(contentsOfFile: err, encoding: .utf8)) ?? ""
    )
}

/// The `dem` executable run once with `arguments`: its exit status and its output (standard
/// output and error), or a failure when it has not exited within `seconds`.
func runDEM(_ arguments: [String], seconds: Double = 20) async throws -> (status: Int32, output: String) {
    let run = try await runProgram("dem", arguments, seconds: seconds)
    return (run.status, run.all)
}

/// A TCP port on 127.0.0.1 that something listens on, held until `close()`.
final class TakenPort: Sendable {
    let fd: Int32
    let port: Int

    /// Listens on `port` (0: any free one); throws when it is taken.
    init(port: Int = 0) throws {
        let socketFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.bind(socketFD, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, listen(socketFD, 8) == 0 else {
            let code = errno
            _ = Glibc.close(socketFD)
            throw TestFailure("cannot take port \(port): errno \(code)")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socketFD, $0, &length) }
        }
        fd = socketFD
        self.port = Int(UInt16(bigEndian: address.sin_port))
    }

    func close() { _ = Glibc.close(fd) }
}

func temporaryDirectory(_ name: String) -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(UUID().uuidString)").path
}

@Suite("dem as a process: start-up failures end promptly with one sentence", .serialized)
struct StartupFailureTests {
    @Test("the discovery port in use: exit 1 naming the address, no crash, nothing left open")
    func discoveryPortInUse() async throws {
        let taken = try TakenPort()
        defer { taken.close() }
        let directory = temporaryDirectory("dem-port")
        let (status, output) = try await runDEM([
            "--data-dir", directory, "--port", "\(taken.port)", "--api-port", "0",
        ])
        #expect(status == 1, "\(output)")
        #expect(output.contains("address 127.0.0.1:\(taken.port) is in use"), "\(output)")
        #expect(output.contains("--port"))
        #expect(!output.contains("Fatal error"))
        #expect(!output.contains("Backtrac"))
        // The lock was given up: the same directory starts now.
        let dem = try await DEMProcess.start(dataDirectory: directory)
        dem.kill(SIGTERM)
        #expect(try await dem.waitForExit() == 0)
    }

    @Test("only the API port in use: exit 1 naming it, promptly, after closing the discovery listener")
    func apiPortInUse() async throws {
        let taken = try TakenPort()
        defer { taken.close() }
        let discovery = try TakenPort()
        let discoveryPort = discovery.port
        discovery.close()
        let start = ContinuousClock.now
        let (status, output) = try await runDEM([
            "--data-dir", temporaryDirectory("dem-api"), "--port", "\(discoveryPort)", "--api-port", "\(taken.port)",
        ])
        #expect(status == 1, "\(output)")
        #expect(output.contains("REST API: address 127.0.0.1:\(taken.port) is in use"), "\(output)")
        #expect(output.contains("--api-port"))
        #expect(!output.contains("discovery controller listening"), "it never said it was serving")
        #expect(ContinuousClock.now - start < .seconds(10))
        // The discovery port was released.
        let again = try TakenPort(port: discoveryPort)
        again.close()
    }

    @Test("a second dem on the same data directory is refused with the first one's pid")
    func secondDEMSameDirectory() async throws {
        let directory = temporaryDirectory("dem-lock")
        let dem = try await DEMProcess.start(dataDirectory: directory)
        let (status, output) = try await runDEM(["--data-dir", directory, "--port", "0", "--api-port", "0"])
        #expect(status == 1)
        #expect(
            output.contains(
                "the data directory \(directory) is in use by dem serve (pid \(dem.process.processIdentifier))"
            ),
            "\(output)"
        )
        // dem import while dem runs is refused too, and changes nothing.
        let file = directory + "-import.json"
        try #"{"Targets": [{"Alias": "imported"}]}"#.write(toFile: file, atomically: true, encoding: .utf8)
        let (importStatus, importOutput) = try await runDEM(["import", file, "--data-dir", directory])
        #expect(importStatus == 1)
        #expect(importOutput.contains("in use by dem serve (pid \(dem.process.processIdentifier))"), "\(importOutput)")
        dem.kill(SIGTERM)
        #expect(try await dem.waitForExit() == 0)
        // Stopped, the import runs.
        let (stopped, stoppedOutput) = try await runDEM(["import", file, "--data-dir", directory])
        #expect(stopped == 0, "\(stoppedOutput)")
        #expect(stoppedOutput.contains("imported 1 targets"))
    }

    @Test("an unusable data directory is named with the reason, and nothing else is said first")
    func unusableDataDirectory() async throws {
        let file = temporaryDirectory("dem-file")
        _ = FileManager.default.createFile(atPath: file, contents: Data("x".utf8))
        let (status, output) = try await runDEM(["--data-dir", file + "/state", "--port", "0", "--api-port", "0"])
        #expect(status == 1)
        #expect(output.contains("the data directory \(file)/state cannot be"), "\(output)")
        #expect(output.contains("ENOTDIR"), "\(output)")
        #expect(!output.contains("NSCocoaErrorDomain"))
        #expect(!output.contains("discovery NQN will change"))
        let (status2, output2) = try await runDEM(["--data-dir", file, "--port", "0", "--api-port", "0"])
        #expect(status2 == 1)
        #expect(output2.contains("the data directory \(file) is not a directory"), "\(output2)")
    }

    @Test("a lost fabric.key or discovery-nqn after the first start is an error naming the file, not a new identity")
    func lostIdentityFiles() async throws {
        let directory = temporaryDirectory("dem-identity")
        let first = try await DEMProcess.start(dataDirectory: directory)
        first.kill(SIGTERM)
        #expect(try await first.waitForExit() == 0)
        let key = try String(contentsOfFile: directory + "/fabric.key", encoding: .utf8)
        let nqn = try String(contentsOfFile: directory + "/discovery-nqn", encoding: .utf8)

        try FileManager.default.removeItem(atPath: directory + "/fabric.key")
        let (keyStatus, keyOutput) = try await runDEM(["--data-dir", directory, "--port", "0", "--api-port", "0"])
        #expect(keyStatus == 1)
        #expect(keyOutput.contains("the fabric credential \(directory)/fabric.key is missing"), "\(keyOutput)")
        #expect(!FileManager.default.fileExists(atPath: directory + "/fabric.key"), "no new key was made")
        try key.write(toFile: directory + "/fabric.key", atomically: true, encoding: .utf8)

        try FileManager.default.removeItem(atPath: directory + "/discovery-nqn")
        let (nqnStatus, nqnOutput) = try await runDEM(["--data-dir", directory, "--port", "0", "--api-port", "0"])
        #expect(nqnStatus == 1)
        #expect(nqnOutput.contains("\(directory)/discovery-nqn is missing"), "\(nqnOutput)")
        try "".write(toFile: directory + "/discovery-nqn", atomically: true, encoding: .utf8)
        let (emptyStatus, emptyOutput) = try await runDEM(["--data-dir", directory, "--port", "0", "--api-port", "0"])
        #expect(emptyStatus == 1)
        #expect(emptyOutput.contains("discovery-nqn does not hold a valid NQN"), "\(emptyOutput)")
        try nqn.write(toFile: directory + "/discovery-nqn", atomically: true, encoding: .utf8)
        let back = try await DEMProcess.start(dataDirectory: directory)
        back.kill(SIGTERM)
        #expect(try await back.waitForExit() == 0)
        #expect(try String(contentsOfFile: directory + "/discovery-nqn", encoding: .utf8) == nqn)
    }

    @Test("a negative number is taken as the option's value and refused with its range, not 'Missing value'")
    func negativeNumbers() async throws {
        let (status, output) = try await runDEM(["--api-port", "-5", "--data-dir", temporaryDirectory("dem-neg")])
        #expect(status == 64)
        #expect(output.contains("--api-port must be 0...65535, not -5"), "\(output)")
        #expect(!output.contains("Missing value"))
    }

    @Test("an entries file that is not JSON: exit 1 naming the file, the line and the column, no usage text")
    func badEntriesFile() async throws {
        let directory = temporaryDirectory("dem-entries")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let entries = directory + "/entries.json"
        try "{\"entries\": [\n  {\"subnqn\": x}\n]}".write(toFile: entries, atomically: true, encoding: .utf8)
        let (status, output) = try await runDEM([
            "--data-dir", directory + "/data", "--entries", entries, "--port", "0", "--api-port", "0",
        ])
        #expect(status == 1)
        #expect(output.contains("\(entries): not valid JSON at line 2, column 14"), "\(output)")
        #expect(!output.contains("USAGE"))
    }
}
