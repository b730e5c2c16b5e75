import AsyncHTTPClient
import Foundation
import Testing

/// scripts/install into a staging folder, with the programs these tests run: what a package
/// holds, and that the completions it generates complete.
@Suite("scripts/install")
struct InstallTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    /// Runs `script` with bash; its status and output. The wait is on a thread of its own:
    /// blocking Swift concurrency's few threads stalls the tests running meanwhile.
    func shell(_ script: String) async throws -> (Int32, String) {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Result { try Self.shellBlocking(script) })
            }
        }
    }

    private static func shellBlocking(_ script: String) throws -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = ["-O", "extglob", "-c", script]
        process.currentDirectoryURL = URL(fileURLWithPath: Self.repository)
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test("programs, manual pages, units, configuration (kept when present) and every program's completions")
    func stagedInstall() async throws {
        let stage = temporaryDirectory("dem-install")
        let bin = URL(fileURLWithPath: DEMProcess.executable).deletingLastPathComponent().path
        let (status, output) = try await shell(
            "scripts/install --bin-dir '\(bin)' --destdir '\(stage)' --prefix /opt/dem"
        )
        #expect(status == 0, "\(output)")
        let manager = FileManager.default
        for program in ["dem", "dem-em", "dem-ac", "dem-dm", "dem-cli"] {
            #expect(manager.isExecutableFile(atPath: stage + "/opt/dem/bin/" + program))
            #expect(
                manager.fileExists(atPath: stage + "/opt/dem/share/bash-completion/completions/" + program),
                "\(program)"
            )
            #expect(manager.fileExists(atPath: stage + "/opt/dem/share/zsh/site-functions/_" + program), "\(program)")
            #expect(manager.fileExists(atPath: stage + "/opt/dem/share/man/man8/\(program).8"))
        }
        let unit = try String(contentsOfFile: stage + "/etc/systemd/system/dem.service", encoding: .utf8)
        #expect(unit.contains("ExecStart=/opt/dem/bin/dem --config /etc/dem/dem.json"), "\(unit)")
        #expect(manager.fileExists(atPath: stage + "/etc/dem/dem.json"))
        // The generated completion completes the program's options.
        let completions = stage + "/opt/dem/share/bash-completion/completions"
        let (_, completed) = try await shell(
            "source '\(completions)/dem'; COMP_WORDS=(dem serve --api-p); COMP_CWORD=2; COMP_LINE='dem serve --api-p'; COMP_POINT=${#COMP_LINE}; _dem dem --api-p serve; echo \"${COMPREPLY[@]}\""
        )
        #expect(completed.contains("--api-port"), "\(completed)")
        let (_, emCompleted) = try await shell(
            "source '\(completions)/dem-em'; COMP_WORDS=(dem-em serve --inband-ad); COMP_CWORD=2; COMP_LINE='dem-em serve --inband-ad'; COMP_POINT=${#COMP_LINE}; _dem-em dem-em --inband-ad serve; echo \"${COMPREPLY[@]}\""
        )
        #expect(emCompleted.contains("--inband-address"), "\(emCompleted)")
        // dem-cli's completion asks a running dem for the aliases, with the options on the line.
        let directory = temporaryDirectory("dem-install-completion")
        let dem = try await DEMProcess.start(dataDirectory: directory)
        for alias in ["rack1", "rack2"] {
            let created = try await HTTPClient.shared.execute(
                dem.request(.POST, "/target/\(alias)"),
                timeout: .seconds(10)
            )
            #expect(created.status == .created)
        }
        let line = "dem-cli -p \(dem.apiPort) --token \(dem.token) --cacert \(directory)/fabric-ca.pem del t rack1 r"
        let (_, aliases) = try await shell(
            "PATH='\(stage)/opt/dem/bin':$PATH; source '\(completions)/dem-cli'; COMP_LINE='\(line)'; COMP_POINT=${#COMP_LINE}; _dem_cli; echo \"${COMPREPLY[*]}\""
        )
        #expect(aliases.trimmingCharacters(in: .whitespacesAndNewlines) == "rack1 rack2", "\(aliases)")
        dem.kill(SIGTERM)
        #expect(try await dem.waitForExit() == 0)
        // An administrator's configuration survives a second install.
        try #"{"api-port": 1}"#.write(toFile: stage + "/etc/dem/dem.json", atomically: true, encoding: .utf8)
        let (again, againOutput) = try await shell(
            "scripts/install --bin-dir '\(bin)' --destdir '\(stage)' --prefix /opt/dem"
        )
        #expect(again == 0)
        #expect(againOutput.contains("/etc/dem/dem.json (kept: it exists)"))
        #expect(try String(contentsOfFile: stage + "/etc/dem/dem.json", encoding: .utf8) == #"{"api-port": 1}"#)
    }
}
