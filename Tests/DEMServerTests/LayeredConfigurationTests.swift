import ArgumentParser
import DEMConfig
import Foundation
import Testing

/// A command with the kinds of options DEM's programs have.
private struct Sample: ParsableCommand {
    @Option(name: [.customShort("p"), .customLong("api-port")], help: "The REST port.") var apiPort: Int = 22345
    @Option(name: .customLong("address"), help: "An address (repeatable).") var addresses: [String] = []
    @Option(
        name: .customLong("data-dir"),
        help: "Where the state is, a long description that the help wraps onto the next line."
    )
    var dataDirectory: String?
    @Flag(name: [.customShort("d"), .customLong("debug")], help: "Debug.") var debug = false
    @OptionGroup var configuration: ConfigurationOptions
}

@Suite("configuration: flags over environment over file over defaults")
struct LayeredConfigurationTests {
    func file(_ json: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("dem-config-\(UUID().uuidString).json")
            .path
        try json.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test("the option table is read off the help: names, values, what repeats, defaults")
    func optionsFromHelp() {
        let options = CommandHelp.options(of: Sample.self, root: Sample.self)
        let byName = Dictionary(uniqueKeysWithValues: options.map { ($0.long, $0) })
        #expect(byName["api-port"]?.shorts == ["p"])
        #expect(byName["api-port"]?.takesValue == true)
        #expect(byName["api-port"]?.defaultText == "22345")
        #expect(byName["address"]?.repeats == true)
        #expect(byName["api-port"]?.repeats == false)
        #expect(byName["debug"]?.takesValue == false)
        #expect(byName["data-dir"] != nil)
        #expect(byName["print-config"] != nil)
    }

    @Test("a flag wins over the environment, which wins over the file, which wins over the default")
    func precedence() async throws {
        let path = try file(
            #"{"api-port": 1000, "address": ["10.0.0.1", "10.0.0.2"], "data-dir": "/srv/file", "debug": true}"#
        )
        let layered = try await LayeredConfiguration.resolve(
            arguments: ["--data-dir", "/srv/flag"],
            options: CommandHelp.options(of: Sample.self, root: Sample.self),
            prefix: "DEM",
            defaultFile: path,
            environment: ["DEM_API_PORT": "2000", "DEM_UNRELATED": "x"]
        )
        let parsed = try Sample.parse(layered.arguments)
        #expect(parsed.dataDirectory == "/srv/flag")
        #expect(parsed.apiPort == 2000)
        #expect(parsed.addresses == ["10.0.0.1", "10.0.0.2"])
        #expect(parsed.debug)
        #expect(layered.sources["data-dir"] == .flag)
        #expect(layered.sources["api-port"] == .environment("DEM_API_PORT"))
        #expect(layered.sources["address"] == .file(path))
        let report = layered.report
        #expect(report.contains("api-port 2000 (environment DEM_API_PORT)"), "\(report)")
        #expect(report.contains("address 10.0.0.1 10.0.0.2 (file \(path))"), "\(report)")
        #expect(report.contains("data-dir /srv/flag (command line)"), "\(report)")
        // Nothing set: the defaults.
        let bare = try await LayeredConfiguration.resolve(
            arguments: [],
            options: CommandHelp.options(of: Sample.self, root: Sample.self),
            prefix: "DEM",
            defaultFile: "/nonexistent/dem.json",
            environment: [:]
        )
        #expect(bare.report.contains("api-port 22345 (default)"), "\(bare.report)")
        #expect(try Sample.parse(bare.arguments).apiPort == 22345)
    }

    @Test("a list in the environment is comma-separated; a short flag counts as given")
    func environmentLists() async throws {
        let layered = try await LayeredConfiguration.resolve(
            arguments: ["-p", "5"],
            options: CommandHelp.options(of: Sample.self, root: Sample.self),
            prefix: "DEM_EM",
            defaultFile: "/nonexistent",
            environment: ["DEM_EM_ADDRESS": "10.0.0.1,10.0.0.2", "DEM_EM_API_PORT": "7", "DEM_EM_DEBUG": "yes"]
        )
        let parsed = try Sample.parse(layered.arguments)
        #expect(parsed.apiPort == 5)
        #expect(parsed.addresses == ["10.0.0.1", "10.0.0.2"])
        #expect(parsed.debug)
    }

    @Test("a file with a key that is no option, or that is not JSON, is an error naming it; a named file must exist")
    func badFiles() async throws {
        let options = CommandHelp.options(of: Sample.self, root: Sample.self)
        for (json, expected) in [(#"{"api_port": 1}"#, "\"api_port\" is not an option"), ("{", "is not JSON")] {
            let path = try file(json)
            await #expect {
                _ = try await LayeredConfiguration.resolve(
                    arguments: [],
                    options: options,
                    prefix: "DEM",
                    defaultFile: path,
                    environment: [:]
                )
            } throws: { error in
                "\(error)".contains(path) && "\(error)".contains(expected)
            }
        }
        await #expect(throws: ConfigurationFileError.self) {
            _ = try await LayeredConfiguration.resolve(
                arguments: ["--config", "/nonexistent/dem.json"],
                options: options,
                prefix: "DEM",
                defaultFile: "/etc/dem/dem.json",
                environment: [:]
            )
        }
    }
}
