import DEMConfig
import Foundation
import Testing

/// The programs as an administrator configures and reads them: a configuration file, the
/// environment, `--print-config`, log formats, the shipped configuration files.
@Suite("the programs' configuration and logs", .serialized)
struct ProgramConfigurationTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    func run(
        _ name: String,
        _ arguments: [String],
        environment: [String: String] = [:],
        seconds: Double = 20,
        until marker: String? = nil
    ) async throws -> (status: Int32, output: String, errors: String) {
        // A daemon started to look at its log is stopped after `seconds`, or once it logged
        // `marker`.
        let daemon = !arguments.contains { ["--print-config", "--help"].contains($0) }
        let run = try await runProgram(
            name,
            arguments,
            environment: environment,
            seconds: seconds,
            stopAfter: daemon ? seconds : nil,
            stopWhenLogged: marker
        )
        return (run.status, run.output, run.errors)
    }

    @Test("dem --print-config: a flag over DEM_* over the file over the default, each value with its source")
    func printConfig() async throws {
        let file = temporaryDirectory("dem-conf") + ".json"
        try #"{"api-port": 23456, "probe-interval": 3, "address": ["127.0.0.1", "::1"], "unreachable": "keep"}"#
            .write(toFile: file, atomically: true, encoding: .utf8)
        let (status, output, errors) = try await run(
            "dem",
            ["--config", file, "--probe-interval", "7", "--print-config"],
            environment: ["DEM_API_PORT": "24000", "DEM_UNREACHABLE_AFTER": "5"]
        )
        #expect(status == 0, "\(errors)")
        #expect(output.contains("probe-interval 7 (command line)"), "\(output)")
        #expect(output.contains("api-port 24000 (environment DEM_API_PORT)"), "\(output)")
        #expect(output.contains("unreachable-after 5 (environment DEM_UNREACHABLE_AFTER)"))
        #expect(output.contains("unreachable keep (file \(file))"))
        #expect(output.contains("address 127.0.0.1 ::1 (file \(file))"))
        #expect(output.contains("port 8009 (default)"))
        // A typo in the file is named, not ignored.
        try #"{"api_port": 1}"#.write(toFile: file, atomically: true, encoding: .utf8)
        let (bad, _, badErrors) = try await run("dem", ["--config", file, "--print-config"])
        #expect(bad != 0)
        #expect(badErrors.contains("\(file): \"api_port\" is not an option"), "\(badErrors)")
    }

    @Test(
        "the shipped etc/dem.json, etc/dem-em.json and etc/dem-ac.json are read without error, and dem's listens for remote dem-em"
    )
    func shippedFiles() async throws {
        for (program, file) in [("dem", "dem.json"), ("dem-em", "dem-em.json"), ("dem-ac", "dem-ac.json")] {
            let path = Self.repository + "/etc/" + file
            let (status, output, errors) = try await run(program, ["--config", path, "--print-config"])
            #expect(status == 0, "\(program): \(errors)")
            #expect(output.contains("(file \(path))"), "\(output)")
            if program == "dem" { #expect(output.contains("api-address 0.0.0.0 (file")) }
        }
        let unit = try String(contentsOfFile: Self.repository + "/etc/dem.service", encoding: .utf8)
        #expect(unit.contains("--config /etc/dem/dem.json"))
    }

    @Test("--log-format json: one JSON object a line; under systemd the text lines carry the journal's priority")
    func logFormats() async throws {
        let directory = temporaryDirectory("dem-log")
        let (_, _, json) = try await run(
            "dem",
            ["--data-dir", directory, "--port", "0", "--api-port", "0", "--log-format", "json"],
            seconds: 30,
            until: "REST API listening"
        )
        let lines = json.split(separator: "\n").filter { !$0.isEmpty }
        #expect(lines.count >= 3)
        for line in lines {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object?["level"] is String && object?["message"] is String, "\(line)")
        }
        #expect(json.contains(#""message":"REST API listening""#))
        // Standard error is the journal's stream when JOURNAL_STREAM names its device and inode.
        let log = temporaryDirectory("dem-journal")
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        var info = stat()
        #expect(stat(log, &info) == 0)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: DEMProcess.executable)
        process.arguments = ["--data-dir", directory, "--port", "0", "--api-port", "0"]
        process.environment = ["JOURNAL_STREAM": "\(info.st_dev):\(info.st_ino)"]
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        try process.run()
        // Until it says it serves (on a loaded machine that takes more than a moment).
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline,
            !((try? String(contentsOfFile: log, encoding: .utf8))?.contains("REST API listening") ?? false)
        {
            try await Task.sleep(for: .milliseconds(50))
        }
        process.terminate()
        process.waitUntilExit()
        let journal = try String(contentsOfFile: log, encoding: .utf8)
        #expect(journal.contains("<5>notice dem:"), "\(journal)")
        // Every line starts with its priority, and none with a time: the journal adds its own.
        #expect(journal.split(separator: "\n").allSatisfy { $0.hasPrefix("<") && !$0.contains("+0000") }, "\(journal)")
    }

    @Test("dem --help and dem-em --help show the default command's options")
    func helpShowsDefaultOptions() async throws {
        let (_, dem, _) = try await run("dem", ["--help"])
        #expect(dem.contains("SUBCOMMANDS:"))
        #expect(dem.contains("--api-port"), "\(dem)")
        #expect(dem.contains("--max-connections"))
        let (_, em, _) = try await run("dem-em", ["--help"])
        #expect(em.contains("--inband-address"), "\(em)")
        #expect(em.contains("--nvmet-root"))
    }

    @Test("dem-em's enrolment flags go together: a usage error names the one that is missing, nothing starts")
    func enrolmentFlagsGoTogether() async throws {
        let directory = temporaryDirectory("dem-em-enrol-flags")
        for (arguments, message) in [
            (["--ca-hash", "sha256:00"], "--ca-hash goes with --token"),
            (["--enrol", "https://head:22345"], "--enrol goes with --token"),
            (["--token", "dem_x", "--join", "https://head:22345"], "--token enrols: it needs"),
            (["--token", "dem_x", "--ca-hash", "sha256:00"], "--token enrols: it needs"),
        ] {
            let (status, _, errors) = try await run("dem-em", ["--data-dir", directory] + arguments, seconds: 10)
            #expect(status != 0, "\(arguments)")
            #expect(errors.contains(message), "\(arguments): \(errors)")
            #expect(!FileManager.default.fileExists(atPath: directory + "/lock"), "\(arguments)")
        }
    }
}
