import DEMCore
import Foundation
import Testing

/// What a user coming from nvme-dem types and keeps: the short options of its programs, and its
/// interface files in /etc/nvme/nvmeof-dem.
@Suite("nvme-dem's command lines and files", .serialized)
struct NvmeDemCompatibilityTests {
    func run(_ name: String, _ arguments: [String]) async throws -> (Int32, String) {
        let run = try await runProgram(name, arguments)
        return (run.status, run.all)
    }

    @Test("dem-dm -t tcp -f ipv4 -a ADDR -s PORT -h HOSTNQN reads dem's page as nvme-dem's did; -f is checked")
    func hostAgentShortOptions() async throws {
        let directory = temporaryDirectory("dem-nvmedem")
        let dem = try await DEMProcess.start(dataDirectory: directory)
        defer { dem.kill(SIGKILL) }
        let port = try #require(dem.discoveryPort)
        let hostNQN = "nqn.2014-08.org.nvmexpress:uuid:aaaaaaaa-0000-4000-8000-000000000001"
        let common = ["--discovery-conf", directory + "/none.conf", "-I", "aaaaaaaa-0000-4000-8000-000000000001"]
        let (status, output) = try await run(
            "dem-dm",
            ["--once", "-t", "tcp", "-f", "ipv4", "-a", "127.0.0.1", "-s", "\(port)", "-h", hostNQN] + common
        )
        #expect(status == 0, "\(output)")
        #expect(output.contains("current discovery subsystem") || output.contains("127.0.0.1"), "\(output)")
        let (mismatch, mismatchOutput) = try await run(
            "dem-dm",
            ["--once", "-t", "tcp", "-f", "ipv6", "-a", "127.0.0.1", "-s", "\(port)", "-h", hostNQN] + common
        )
        #expect(mismatch == 64)
        #expect(mismatchOutput.contains("-a 127.0.0.1 is not an IPv6 address (-f ipv6)"), "\(mismatchOutput)")
        // dem-ac's -f is the address family too, never a host interface.
        let (acStatus, acOutput) = try await run("dem-ac", ["-t", "tcp", "-f", "ib", "-a", "127.0.0.1"] + common)
        #expect(acStatus == 64)
        #expect(acOutput.contains("-f ib"), "\(acOutput)")
    }

    @Test("dem listens where nvme-dem's interface files say; a bad file is named with its line")
    func interfaceFiles() async throws {
        let directory = temporaryDirectory("dem-ifcfg")
        let folder = directory + "/nvmeof-dem"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let port = try TakenPort().freed()
        try "# dem on the loopback\nTRTYPE=tcp\nADRFAM=ipv4\nTRADDR=127.0.0.1\nTRSVCID=\(port)\n"
            .write(toFile: folder + "/lo", atomically: true, encoding: .utf8)
        try #"{"Targets": []}"#.write(toFile: folder + "/config", atomically: true, encoding: .utf8)
        let dem = try await DEMProcess.start(
            dataDirectory: directory + "/data",
            extraArguments: ["--interfaces", folder]
        )
        #expect(dem.discoveryPort == port)
        let log = try String(contentsOfFile: dem.logPath, encoding: .utf8)
        #expect(log.contains("listening as nvme-dem's interface files say"))
        #expect(!log.contains("port=8009"), "no default listener beside the files")
        dem.kill(SIGTERM)
        #expect(try await dem.waitForExit() == 0)

        try "TRTYPE=tcp\nADRFAM=ipv4\nTRADDR=127.0.0.1\nTRSVCID=port\n".write(
            toFile: folder + "/lo",
            atomically: true,
            encoding: .utf8
        )
        let (status, output) = try await runDEM([
            "--data-dir", directory + "/data", "--interfaces", folder, "--api-port", "0",
        ])
        #expect(status == 1)
        #expect(output.contains("\(folder)/lo, line 4: TRSVCID must be a port"), "\(output)")

        // No TRSVCID: 4420, as nvme-dem took; when a target holds it, the fix is said.
        try "TRTYPE=tcp\nADRFAM=ipv4\nTRADDR=127.0.0.1\n".write(
            toFile: folder + "/lo",
            atomically: true,
            encoding: .utf8
        )
        let target = try? TakenPort(port: 4420)
        defer { target?.close() }
        let (busy, busyOutput) = try await runDEM([
            "--data-dir", directory + "/data", "--interfaces", folder, "--api-port", "0",
        ])
        #expect(busy == 1)
        #expect(busyOutput.contains("address 127.0.0.1:4420 is in use"), "\(busyOutput)")
        #expect(busyOutput.contains("set TRSVCID=4422"), "\(busyOutput)")
    }

    @Test("dem -p PORT is the REST port; dem-em -p PORT too; -d logs at debug level")
    func serverShortOptions() async throws {
        let api = try TakenPort().freed()
        let directory = temporaryDirectory("dem-p")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: DEMProcess.executable)
        // Plain HTTP, as nvme-dem served it, for the raw-socket check below.
        process.arguments = [
            "-p", "\(api)", "--port", "0", "--data-dir", directory, "-d", "--interfaces", "", "--insecure-http",
        ]
        let log = directory + ".log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        try process.run()
        defer { process.terminate() }
        #expect(try await eventually(20) { await httpGet(port: api, path: "/health")?.status == 200 })
        #expect((try String(contentsOfFile: log, encoding: .utf8)).contains(" debug "))

        let (status, output) = try await run("dem-em", ["-p", "-5", "--data-dir", directory + "-em"])
        #expect(status == 64)
        #expect(output.contains("--api-port must be 0...65535"), "\(output)")
        let (family, familyOutput) = try await run(
            "dem-em",
            ["-t", "tcp", "-f", "ipv6", "-a", "10.0.0.1", "-s", "4433", "--data-dir", directory + "-em"]
        )
        #expect(family == 64)
        #expect(familyOutput.contains("-a 10.0.0.1 is not an IPv6 address (-f ipv6)"), "\(familyOutput)")
    }
}
