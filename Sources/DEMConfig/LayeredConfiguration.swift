import ArgumentParser
import Configuration
import DEMCore
import Foundation
import Logging
import Synchronization
import SystemPackage

/// One option of a command, as its help lists it.
public struct CommandOption: Sendable, Hashable {
    /// The long name, without `--`: `api-port`.
    public var long: String
    /// The short names, without `-`.
    public var shorts: [String]
    /// Whether it takes a value (`--port <port>`), or is a flag.
    public var takesValue: Bool
    /// Whether it may be given more than once (`--address <address> ...`).
    public var repeats: Bool
    /// Its default, as the help shows it.
    public var defaultText: String?
}

/// A command's options as ArgumentParser describes the command (its `_dumpHelp` JSON), so the
/// table of options is never typed twice.
public enum CommandHelp {
    /// The options of `command`, in help order. (`root` is kept for callers that name the
    /// command through its parent.)
    public static func options(of command: any ParsableCommand.Type, root: any ParsableCommand.Type) -> [CommandOption]
    {
        parse(dump: command._dumpHelp())
    }

    /// The options in ArgumentParser's JSON description of a command.
    public static func parse(dump: String) -> [CommandOption] {
        guard let object = try? JSONSerialization.jsonObject(with: Data(dump.utf8)) as? [String: Any],
            let command = object["command"] as? [String: Any],
            let arguments = command["arguments"] as? [[String: Any]]
        else { return [] }
        var result: [CommandOption] = []
        for argument in arguments {
            guard let kind = argument["kind"] as? String, kind == "option" || kind == "flag",
                argument["shouldDisplay"] as? Bool ?? true
            else { continue }
            let names = argument["names"] as? [[String: Any]] ?? []
            guard let long = names.first(where: { $0["kind"] as? String == "long" })?["name"] as? String else {
                continue
            }
            let shorts = names.filter { $0["kind"] as? String == "short" }.compactMap { $0["name"] as? String }
            result.append(
                CommandOption(
                    long: long,
                    shorts: shorts,
                    takesValue: kind == "option",
                    repeats: argument["isRepeating"] as? Bool ?? false,
                    defaultText: argument["defaultValue"] as? String
                )
            )
        }
        return result
    }
}

/// A command line with its options completed from the environment and a JSON configuration
/// file, through swift-configuration: flags win over the environment, which wins over the file,
/// which wins over the defaults.
///
/// An option `--api-port` of a program whose prefix is `DEM` is read from `DEM_API_PORT`, then
/// from the file's key `"api-port"` (a list: a JSON array, or in the environment values joined by
/// commas; a flag: `true`/`false`, or `1`/`0`/`yes`/`no`). The file is `--config FILE`, else
/// `<PREFIX>_CONFIG`, else the program's default path, which may be missing.
public struct LayeredConfiguration: Sendable {
    /// Where an option's value came from.
    public enum Source: Sendable, Hashable, CustomStringConvertible {
        case flag
        case environment(String)
        case file(String)
        case byDefault

        public var description: String {
            switch self {
            case .flag: "command line"
            case .environment(let name): "environment \(name)"
            case .file(let path): "file \(path)"
            case .byDefault: "default"
            }
        }
    }

    /// The command line to parse: the user's, with the options from the environment and the file
    /// put in front of them (after the subcommand's name).
    public var arguments: [String]
    /// Each option's source, by long name.
    public var sources: [String: Source]
    /// The configuration file read, if there was one.
    public var file: String?
    /// The options considered.
    public var options: [CommandOption]

    /// Options that are about the command line itself and never come from the environment or
    /// the file.
    public static let notLayered: Set<String> = ["help", "version", "config", "print-config"]

    /// Completes `arguments` (without the program name and without the subcommand, which
    /// `subcommand` gives when the user named one) for a command with `options`.
    ///
    /// - Parameters:
    ///   - prefix: the environment prefix and key, such as `DEM` (→ `DEM_API_PORT`).
    ///   - defaultFile: the configuration file read when none is named (a missing one is fine).
    ///   - environment: the variables (the process's by default).
    /// - Throws: ``ConfigurationFileError`` for a file that cannot be read, is not JSON, or has a
    ///   key that is no option.
    public static func resolve(
        arguments: [String],
        subcommand: String? = nil,
        options: [CommandOption],
        knownKeys: Set<String>? = nil,
        prefix: String,
        defaultFile: String,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) async throws -> LayeredConfiguration {
        let layered = options.filter { !notLayered.contains($0.long) }
        // The file: --config FILE or --config=FILE, else PREFIX_CONFIG, else the default.
        var named: String? = nil
        for (index, argument) in arguments.enumerated() {
            if argument == "--config", index + 1 < arguments.count { named = arguments[index + 1] }
            if argument.hasPrefix("--config=") { named = String(argument.dropFirst("--config=".count)) }
        }
        named = named ?? environment[prefix + "_CONFIG"]
        let path = named ?? defaultFile
        let fileExists = FileManager.default.fileExists(atPath: path)
        if named != nil, !fileExists {
            throw ConfigurationFileError(path: path, message: "does not exist")
        }
        var fileProvider: FileProvider<JSONSnapshot>? = nil
        if fileExists {
            try checkKeys(path: path, known: knownKeys ?? Set(layered.map(\.long)))
            do {
                fileProvider = try await FileProvider<JSONSnapshot>(filePath: FilePath(path))
            } catch {
                throw ConfigurationFileError(path: path, message: "cannot be read: \(error)")
            }
        }
        let environmentProvider = EnvironmentVariablesProvider(environmentVariables: environment)

        var added: [String] = []
        var sources: [String: Source] = [:]
        for option in layered {
            if given(option, in: arguments) {
                sources[option.long] = .flag
                continue
            }
            let environmentKey = AbsoluteConfigKey([prefix.lowercased(), option.long])
            let name = prefix + "_" + option.long.uppercased().replacingOccurrences(of: "-", with: "_")
            if let value = try lookup(environmentProvider, environmentKey, option, from: "environment variable \(name)")
            {
                sources[option.long] = .environment(name)
                added += tokens(option, value)
            } else if let fileProvider,
                let value = try lookup(fileProvider, AbsoluteConfigKey([option.long]), option, from: path)
            {
                sources[option.long] = .file(path)
                added += tokens(option, value)
            } else {
                sources[option.long] = .byDefault
            }
        }
        var result = arguments
        result.insert(contentsOf: added, at: 0)
        if let subcommand { result.insert(subcommand, at: 0) }
        return LayeredConfiguration(
            arguments: result,
            sources: sources,
            file: fileExists ? path : nil,
            options: options
        )
    }

    /// The effective configuration, one option a line: `api-port 22345 (default)`.
    public var report: String {
        var lines: [String] = []
        lines.append("# configuration file: \(file ?? "none")")
        for option in options where !Self.notLayered.contains(option.long) {
            let source = sources[option.long] ?? .byDefault
            let value: String
            if source == .byDefault {
                value = option.takesValue ? (option.defaultText ?? "(none)") : "false"
            } else {
                let values = Self.values(of: option, in: arguments)
                value = option.takesValue ? (values.isEmpty ? "(none)" : values.joined(separator: " ")) : "true"
            }
            lines.append("\(option.long) \(value) (\(source))")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Where the options that did not come from the command line came from, for an error message.
    public var provenance: String? {
        let named = sources.filter { if case .byDefault = $0.value { false } else { $0.value != .flag } }
        guard !named.isEmpty else { return nil }
        return named.sorted { $0.key < $1.key }.map { "--\($0.key) from the \($0.value)" }.joined(separator: ", ")
    }

    // MARK: Helpers

    /// Whether the user's arguments give `option` (by a long or a short name).
    static func given(_ option: CommandOption, in arguments: [String]) -> Bool {
        for argument in arguments {
            if argument == "--" { return false }
            if argument == "--\(option.long)" || argument.hasPrefix("--\(option.long)=") { return true }
            for short in option.shorts {
                if argument == "-\(short)" { return true }
                // -p8080, or a cluster of flags such as -dS
                if argument.hasPrefix("-\(short)"), !argument.hasPrefix("--"), option.takesValue { return true }
                if !argument.hasPrefix("--"), argument.hasPrefix("-"), !option.takesValue,
                    argument.dropFirst().allSatisfy(\.isLetter), argument.dropFirst().contains(Character(short))
                {
                    return true
                }
            }
        }
        return false
    }

    /// The values `option` has in `arguments`, in order.
    static func values(of option: CommandOption, in arguments: [String]) -> [String] {
        var result: [String] = []
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            let names = ["--\(option.long)"] + option.shorts.map { "-\($0)" }
            if names.contains(argument), index + 1 < arguments.count {
                result.append(arguments[index + 1])
                index += 2
                continue
            }
            if argument.hasPrefix("--\(option.long)=") {
                result.append(String(argument.dropFirst(option.long.count + 3)))
            }
            index += 1
        }
        return option.repeats ? result : Array(result.suffix(1))
    }

    /// The value of `option` in `provider`, as text (a list for a repeating option).
    static func lookup(
        _ provider: some ConfigProvider,
        _ key: AbsoluteConfigKey,
        _ option: CommandOption,
        from source: String
    ) throws -> [String]? {
        func content(_ type: ConfigType) -> ConfigContent? {
            (try? provider.value(forKey: key, type: type))?.value?.content
        }
        if !option.takesValue {
            switch content(.bool) ?? content(.string) {
            case .bool(let value): return value ? ["true"] : []
            case .string(let text):
                switch text.lowercased() {
                case "1", "true", "yes": return ["true"]
                case "0", "false", "no", "": return []
                default:
                    throw ConfigurationFileError(
                        path: source,
                        message: "\(option.long) takes true or false (1, 0, yes, no), not \"\(text)\""
                    )
                }
            default: return nil
            }
        }
        if option.repeats {
            switch content(.stringArray) ?? content(.intArray) ?? content(.string) ?? content(.int) {
            case .stringArray(let values): return values
            case .intArray(let values): return values.map(String.init)
            case .string(let value): return [value]
            case .int(let value): return [String(value)]
            default: return nil
            }
        }
        switch content(.string) ?? content(.int) ?? content(.double) ?? content(.bool) {
        case .string(let value): return [value]
        case .int(let value): return [String(value)]
        case .double(let value): return [value == value.rounded() ? String(Int(value)) : String(value)]
        case .bool(let value): return [String(value)]
        default: return nil
        }
    }

    static func tokens(_ option: CommandOption, _ values: [String]) -> [String] {
        guard option.takesValue else { return values.isEmpty ? [] : ["--\(option.long)"] }
        return values.flatMap { ["--\(option.long)", $0] }
    }

    /// A key of the file that is no option is an error, not a setting silently ignored.
    static func checkKeys(path: String, known: Set<String>) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigurationFileError(path: path, message: "cannot be read")
        }
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: data)
        } catch {
            throw ConfigurationFileError(path: path, message: "is not JSON (\(error.localizedDescription))")
        }
        guard let dictionary = object as? [String: Any] else {
            throw ConfigurationFileError(path: path, message: "must be a JSON object of options")
        }
        let keys = known.subtracting(notLayered)
        for key in dictionary.keys.sorted() where !keys.contains(key) {
            throw ConfigurationFileError(
                path: path,
                message:
                    "\"\(key)\" is not an option (the keys are the long options without --: \(keys.sorted().joined(separator: ", ")))"
            )
        }
    }
}

/// A configuration file that cannot be used.
public struct ConfigurationFileError: Error, Sendable, CustomStringConvertible {
    public var path: String
    public var message: String

    public var description: String { "configuration \(path): \(message)" }
}

extension LayeredConfiguration {
    private static let box = Mutex<LayeredConfiguration?>(nil)

    /// The configuration the running command was parsed with (for `--print-config`).
    public static var current: LayeredConfiguration? {
        get { box.withLock { $0 } }
        set { box.withLock { $0 = newValue } }
    }
}

/// The `main` of DEM's programs: the command line completed from the environment and the
/// configuration file, `--help` of a program with a default subcommand showing that
/// subcommand's options too, and a parse error that says where options came from.
public enum LayeredMain {
    /// Runs `root` with the process's arguments.
    ///
    /// - Parameters:
    ///   - subcommands: the subcommands by name, the default one first (none: `root` itself).
    ///   - prefix: the environment prefix (`DEM`, `DEM_EM`).
    ///   - defaultFile: the configuration file read when none is named.
    public static func run(
        _ root: any AsyncParsableCommand.Type,
        subcommands: [(name: String, command: any ParsableCommand.Type)],
        prefix: String,
        defaultFile: String
    ) async {
        var arguments = Array(CommandLine.arguments.dropFirst())
        if let first = subcommands.first, ["--help", "-h", "help"].contains(arguments.first ?? ""), arguments.count == 1
        {
            print(helpWithDefault(root, first.command, name: first.name))
            return
        }
        var command: any ParsableCommand.Type = subcommands.first?.command ?? root
        var subcommand: String? = nil
        if let first = arguments.first, let named = subcommands.first(where: { $0.name == first }) {
            command = named.command
            subcommand = named.name
            arguments.removeFirst()
        }
        let known =
            subcommands.isEmpty
            ? CommandHelp.options(of: root, root: root)
            : subcommands.flatMap { CommandHelp.options(of: $0.command, root: root) }
        let layered: LayeredConfiguration
        do {
            layered = try await LayeredConfiguration.resolve(
                arguments: arguments,
                subcommand: subcommand,
                options: subcommands.isEmpty ? known : CommandHelp.options(of: command, root: root),
                knownKeys: Set(known.map(\.long)),
                prefix: prefix,
                defaultFile: defaultFile
            )
        } catch {
            FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
            exit(1)
        }
        LayeredConfiguration.current = layered
        do {
            var parsed = try root.parseAsRoot(layered.arguments)
            // --print-config: the command line is checked (parsed), then reported, not run.
            if layered.arguments.contains("--print-config") {
                print(layered.report, terminator: "")
                return
            }
            if var asynchronous = parsed as? any AsyncParsableCommand {
                try await asynchronous.run()
            } else {
                try parsed.run()
            }
        } catch {
            if !(error is ExitCode), let provenance = layered.provenance {
                FileHandle.standardError.write(Data("Note: \(provenance).\n".utf8))
            }
            root.exit(withError: error)
        }
    }

    /// The root's help, then the default subcommand's options.
    static func helpWithDefault(
        _ root: any ParsableCommand.Type,
        _ command: any ParsableCommand.Type,
        name: String
    ) -> String {
        let rootHelp = root.helpMessage()
        let commandHelp = root.helpMessage(for: command)
        let lines = commandHelp.split(separator: "\n", omittingEmptySubsequences: false)
        let options = lines.drop { !$0.hasPrefix("OPTIONS:") }.dropFirst().prefix { !$0.isEmpty }
        return rootHelp
            + "\nOPTIONS OF \(name.uppercased()), THE DEFAULT (\(root.configuration.commandName ?? "") [\(name)] <options>):\n"
            + options.joined(separator: "\n") + "\n"
    }
}

/// `--config FILE` and `--print-config`, for every command whose options may come from the
/// environment and a configuration file.
public struct ConfigurationOptions: ParsableArguments {
    @Option(
        name: .customLong("config"),
        help:
            "JSON file of options, keys the long options without -- (default: /etc/dem/<program>.json when it exists). The environment (PREFIX_OPTION_NAME) wins over it, the command line over both."
    )
    public var file: String?

    @Flag(
        name: .customLong("print-config"),
        help:
            "Print each option's effective value and where it came from (command line, environment, file, default), then exit."
    )
    public var printConfig = false

    public init() {}
}

/// `--log-level`, `-d/--debug` and `--log-format`, the same in every program.
public struct LoggingOptions: ParsableArguments {
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    public var logLevel: Logger.Level = .info

    @Flag(name: [.customShort("d"), .customLong("debug")], help: "Log at debug level (nvme-dem's -d).")
    public var debug = false

    @Option(
        name: .customLong("log-format"),
        help:
            "Log lines as text (under systemd: with the journal's priorities, without times) or json (one object a line)."
    )
    public var logFormat: LogFormat = .text

    public init() {}

    /// The level in force: debug with `-d`, else `--log-level`.
    public var level: Logger.Level { debug ? .debug : logLevel }

    /// Routes the process's logs to standard error as asked, and returns a logger labelled `label`.
    @discardableResult
    public func bootstrap(label: String, level override: Logger.Level? = nil) -> Logger {
        LogFormat.bootstrap(logFormat, level: override ?? level)
        return Logger(label: label)
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
extension LogFormat: ExpressibleByArgument {}
