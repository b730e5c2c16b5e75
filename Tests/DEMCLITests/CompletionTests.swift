import Foundation
import Testing

@testable import dem_cli

/// dem-cli's completions and manual page against its command table: the scripts are generated
/// from the table, and run here in the real bash and zsh to show they say what the table says.
@Suite("dem-cli's completions and manual page follow its command table")
struct CompletionTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// Runs `script` with `shell` (-c); the output, whatever the status. The wait is on a thread
    /// of its own: blocking Swift concurrency's few threads stalls the tests running meanwhile.
    static func run(_ shell: String, _ script: String) async throws -> (status: Int32, output: String) {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Result { try runBlocking(shell, script) })
            }
        }
    }

    private static func runBlocking(_ shell: String, _ script: String) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [shell, "-c", script]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// The generated script in a temporary file; zsh's without its last line (the call of
    /// `_dem-cli`, which needs zsh's completion system), so that its functions can be called.
    static func scriptFile(_ shell: CompletionShell) throws -> String {
        var text = Completion.script(for: shell)
        if shell == .zsh { text = text.replacing("\n_dem-cli \"$@\"\n", with: "\n") }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent(
            "dem-cli-\(UUID().uuidString).\(shell)"
        )
        .path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static func hasShell(_ shell: String) -> Bool {
        ((try? runBlocking(shell, "exit 0"))?.status ?? 1) == 0
    }

    @Test("both scripts parse", arguments: CompletionShell.allCases)
    func syntax(shell: CompletionShell) async throws {
        try #require(Self.hasShell(shell.rawValue), "\(shell) is not installed (scripts/test installs it)")
        let path = try Self.scriptFile(shell)
        let (status, output) = try await Self.run(shell.rawValue, "\(shell.rawValue) -n '\(path)'")
        #expect(status == 0, "\(output)")
    }

    @Test(
        "every argument of every command completes as the table says, in bash and zsh",
        arguments: CompletionShell.allCases
    )
    func argumentKinds(shell: CompletionShell) async throws {
        try #require(Self.hasShell(shell.rawValue), "\(shell) is not installed (scripts/test installs it)")
        var queries: [String] = []
        var expected: [String] = []
        for spec in CommandTable.commands {
            guard let object = spec.object else { continue }
            for index in 0...(spec.placeholders.count + 2) {
                queries.append("\(spec.verb.rawValue) \(object.rawValue) \(index)")
                expected.append(spec.completionKind(at: index)?.rawValue ?? "")
            }
        }
        let path = try Self.scriptFile(shell)
        let script =
            "source '\(path)'\n"
            + queries.map { "print_kind() { echo \"$(_dem_cli_argument_kind $1 $2 $3)\"; }; print_kind \($0)" }
            .joined(separator: "\n")
        let (status, output) = try await Self.run(shell.rawValue, script)
        #expect(status == 0, "\(output)")
        let answers = output.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
        try #require(answers.count == queries.count, "\(output)")
        for (index, query) in queries.enumerated() {
            #expect(answers[index] == expected[index], "\(shell): \(query)")
        }
    }

    @Test("verbs and objects are abbreviated in the shells as dem-cli reads them", arguments: CompletionShell.allCases)
    func abbreviations(shell: CompletionShell) async throws {
        try #require(Self.hasShell(shell.rawValue), "\(shell) is not installed (scripts/test installs it)")
        let verbWords = ["del", "DEL", "delete", "de", "lis", "ren", "ref", "rec", "unl", "shut", "log", "xyz", "re"]
        let objectWords = [
            "t", "tgt", "Targets", "tok", "tokens", "s", "p", "a", "n", "h", "g", "l", "i", "o", "r", "x",
        ]
        let path = try Self.scriptFile(shell)
        let script =
            "source '\(path)'\n"
            + verbWords.map { "echo \"$(_dem_cli_verb \($0))\"" }.joined(separator: "\n") + "\n"
            + objectWords.map { "echo \"$(_dem_cli_object \($0))\"" }.joined(separator: "\n")
        let (status, output) = try await Self.run(shell.rawValue, script)
        #expect(status == 0, "\(output)")
        let answers = output.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
        let expected =
            verbWords.map { Verb.match($0)?.rawValue ?? "" } + objectWords.map { CLIObject.match($0)?.rawValue ?? "" }
        #expect(answers == expected, "\(shell)")
    }

    @Test("bash offers each verb's objects and every option")
    func bashObjectsAndOptions() async throws {
        try #require(Self.hasShell("bash"))
        let path = try Self.scriptFile(.bash)
        for (verb, objects) in Completion.objectsByVerb {
            let (_, output) = try await Self.run(
                "bash",
                "source '\(path)'; COMP_LINE='dem-cli \(verb.rawValue) '; COMP_POINT=${#COMP_LINE}; _dem_cli; echo \"${COMPREPLY[*]}\""
            )
            #expect(
                output.trimmingCharacters(in: .whitespacesAndNewlines) == objects.map(\.rawValue).joined(separator: " ")
            )
        }
        let (_, options) = try await Self.run(
            "bash",
            "source '\(path)'; COMP_LINE='dem-cli -'; COMP_POINT=${#COMP_LINE}; _dem_cli; echo \"${COMPREPLY[*]}\""
        )
        #expect(
            Set(options.split(whereSeparator: \.isWhitespace).map(String.init))
                == Set(OptionName.allCases.flatMap(\.spellings))
        )
        // An option's value is not taken for a verb.
        let (_, afterOption) = try await Self.run(
            "bash",
            "source '\(path)'; COMP_LINE='dem-cli -s somehost --port 1 del'; COMP_POINT=${#COMP_LINE}; _dem_cli; echo \"${COMPREPLY[*]}\""
        )
        #expect(afterOption.trimmingCharacters(in: .whitespacesAndNewlines) == "delete")
    }

    @Test("the kinds read off the placeholders are the right ones")
    func someKinds() async throws {
        func kind(_ verb: Verb, _ object: CLIObject, _ index: Int) -> ArgumentKind? {
            CommandTable.commands.first { $0.verb == verb && $0.object == object }!.completionKind(at: index)
        }
        #expect(kind(.delete, .subsystem, 0) == .target)
        #expect(kind(.delete, .subsystem, 1) == .subsystem)
        #expect(kind(.delete, .subsystem, 4) == .subsystem)  // repeated
        #expect(kind(.add, .subsystem, 1) == nil)  // a new NQN
        #expect(kind(.set, .portid, 1) == nil)
        #expect(kind(.edit, .portid, 1) == .portid)
        #expect(kind(.edit, .portid, 2) == .trtype)
        #expect(kind(.link, .host, 0) == .host)
        #expect(kind(.link, .host, 1) == .group)
        #expect(kind(.add, .group, 0) == nil)
        #expect(kind(.delete, .group, 3) == .group)
        #expect(kind(.add, .token, 1) == .role)
        #expect(kind(.delete, .token, 0) == .tokenid)
        #expect(kind(.set, .ns, 3) == .device)
        #expect(kind(.set, .outofband, 1) == .family)
        #expect(kind(.set, .acl, 2) == .host)
        #expect(kind(.list, .target, 0) == nil)
    }

    /// A COMMANDS entry of the manual page, troff removed: "delete target alias ...".
    static func manualCommands() throws -> [String] {
        let page = try String(
            contentsOf: repository.appendingPathComponent("man/dem-cli.8"),
            encoding: .utf8
        )
        let lines = page.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard let start = lines.firstIndex(of: ".SH COMMANDS") else { throw CLITestFailure("no COMMANDS section") }
        let end = lines[(start + 1)...].firstIndex { $0.hasPrefix(".SH ") } ?? lines.count
        var entries: [String] = []
        for index in start..<end where lines[index] == ".TP" && index + 1 < end {
            var text = lines[index + 1]
            for macro in [".BI ", ".BR ", ".B "] where text.hasPrefix(macro) {
                text = String(text.dropFirst(macro.count))
            }
            for font in ["\\fR", "\\fP", "\\fI", "\\fB", "\""] { text = text.replacing(font, with: "") }
            // "add target alias, set target alias": two commands in one entry.
            entries += text.split(separator: ",").map {
                $0.split(whereSeparator: \.isWhitespace).joined(separator: " ")
            }
        }
        return entries
    }

    @Test("the manual page describes every command of the table with its arguments, and no other")
    func manualPage() throws {
        // Each command as "verb object, required arguments, whether optional ones follow, whether
        // the last is repeated": the page writes a repeated one with "...", optional ones in [].
        func shape(_ text: String) -> String {
            let words = text.split(separator: " ").map(String.init)
            let head = words.prefix { !$0.hasPrefix("[") && $0 != "..." }
            let repeated = words.contains { $0.hasSuffix("...") }
            let optional = words.contains { $0.hasPrefix("[") }
            // A verb that takes objects is named with its object; one that does not, alone.
            let verb = words.first.flatMap(Verb.match)
            let named = CommandTable.commands.contains { $0.verb == verb && $0.object != nil } ? 2 : 1
            let name = head.prefix(named).joined(separator: " ")
            return "\(name) \(max(0, head.count - named)) \(optional) \(repeated)"
        }
        let manual = Set(try Self.manualCommands().map(shape))
        let table = Set(
            CommandTable.commands.map { spec in
                let name = [spec.verb.rawValue, spec.object?.rawValue].compactMap { $0 }.joined(separator: " ")
                return "\(name) \(spec.arguments.count) \(!spec.optional.isEmpty) \(spec.repeatsLast)"
            }
        )
        #expect(
            manual.subtracting(table).isEmpty,
            "in the page, not in the table: \(manual.subtracting(table).sorted())"
        )
        #expect(
            table.subtracting(manual).isEmpty,
            "in the table, not in the page: \(table.subtracting(manual).sorted())"
        )
    }

    @Test("the manual page describes every spelling of every option, and its SYNOPSIS names every option")
    func manualOptions() throws {
        let page = try String(contentsOf: Self.repository.appendingPathComponent("man/dem-cli.8"), encoding: .utf8)
        let options = page.components(separatedBy: ".SH OPTIONS")[1].components(separatedBy: ".SH ")[0]
        let synopsis = page.components(separatedBy: ".SH SYNOPSIS")[1].components(separatedBy: ".SH ")[0]
        for option in OptionName.allCases {
            let spellings = option.spellings.map { $0.replacing("-", with: "\\-") }
            for spelling in spellings {
                #expect(options.contains(spelling), "\(spelling) is not described under OPTIONS")
            }
            #expect(spellings.contains { synopsis.contains($0) }, "\(option.spellings) is not in the SYNOPSIS")
        }
    }
}

struct CLITestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
