import Foundation
import Testing

/// The manual pages against the programs: every option a program takes (as its own
/// `--experimental-dump-help` lists it) is in its page's SYNOPSIS and described under OPTIONS,
/// and the page names no option the program does not take.
@Suite("manual pages match the programs")
struct ManualPageTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    /// The long options of each subcommand (the root's when there are none), by name.
    func programOptions(_ program: String) async throws -> [String: Set<String>] {
        let data = Data(try await runProgram(program, ["--experimental-dump-help"]).output.utf8)
        let root = try #require(
            (try JSONSerialization.jsonObject(with: data) as? [String: Any])?["command"] as? [String: Any]
        )
        func longs(_ command: [String: Any]) -> Set<String> {
            var result = Set<String>()
            for argument in command["arguments"] as? [[String: Any]] ?? [] {
                guard ["option", "flag"].contains(argument["kind"] as? String),
                    argument["shouldDisplay"] as? Bool ?? true
                else { continue }
                for name in argument["names"] as? [[String: Any]] ?? [] where name["kind"] as? String == "long" {
                    if let long = name["name"] as? String, long != "help" { result.insert(long) }
                }
            }
            return result
        }
        let subcommands = (root["subcommands"] as? [[String: Any]] ?? []).filter {
            $0["commandName"] as? String != "help"
        }
        if subcommands.isEmpty { return [program: longs(root)] }
        var result: [String: Set<String>] = [:]
        for subcommand in subcommands { result[subcommand["commandName"] as? String ?? "?"] = longs(subcommand) }
        return result
    }

    /// The `\-\-name` options a stretch of roff names.
    func named(_ roff: Substring) -> Set<String> {
        var result = Set<String>()
        // Font changes (\fB, \fI, \fR, \fP) are not part of a name.
        var rest = Substring(
            String(roff).replacingOccurrences(of: #"\\f[BIRP]"#, with: " ", options: .regularExpression)
        )
        while let range = rest.range(of: "\\-\\-") {
            let name = rest[range.upperBound...].prefix { $0.isLetter || $0.isNumber || $0 == "\\" || $0 == "-" }
            result.insert(
                name.replacingOccurrences(of: "\\-", with: "-").trimmingCharacters(
                    in: CharacterSet(charactersIn: "-\\")
                )
            )
            rest = rest[range.upperBound...]
        }
        return result
    }

    @Test("SYNOPSIS and OPTIONS list every option, and only those", arguments: ["dem", "dem-em", "dem-ac", "dem-dm"])
    func page(_ program: String) async throws {
        let page = try String(contentsOfFile: Self.repository + "/man/\(program).8", encoding: .utf8)
        let synopsis = try #require(page.range(of: ".SH SYNOPSIS\n")).upperBound
        let synopsisEnd = try #require(page.range(of: "\n.SH ", range: synopsis..<page.endIndex)).lowerBound
        let options = try #require(page.range(of: ".SH OPTIONS\n")).upperBound
        let optionsEnd = page.range(of: "\n.SH ", range: options..<page.endIndex)?.lowerBound ?? page.endIndex
        // The options an OPTIONS entry introduces: the line after each .TP.
        let lines = page[options..<optionsEnd].split(separator: "\n", omittingEmptySubsequences: false)
        var described = Set<String>()
        for (index, line) in lines.enumerated() where line == ".TP" && index + 1 < lines.count {
            described.formUnion(named(lines[index + 1]))
        }
        // Each subcommand's block of the SYNOPSIS starts with ".B program[ sub]".
        let blocks = page[synopsis..<synopsisEnd].components(separatedBy: ".br\n")
        var all = Set<String>()
        for (command, longs) in try await programOptions(program) {
            all.formUnion(longs)
            let block = try #require(
                blocks.first { block in
                    command == program
                        ? true
                        : block.hasPrefix(".B \(program) \(command)")
                            || block.hasPrefix(".B \(program)\n.RB [ \(command) ]")
                },
                "no SYNOPSIS for \(program) \(command)"
            )
            let listed = named(Substring(block))
            #expect(
                longs.subtracting(listed).isEmpty,
                "\(program) \(command): not in SYNOPSIS: \(longs.subtracting(listed).sorted())"
            )
            #expect(
                listed.subtracting(longs).isEmpty,
                "\(program) \(command): in SYNOPSIS but not taken: \(listed.subtracting(longs).sorted())"
            )
            #expect(
                longs.subtracting(described).isEmpty,
                "\(program) \(command): not under OPTIONS: \(longs.subtracting(described).sorted())"
            )
        }
        let stale = described.subtracting(all)
        #expect(stale.isEmpty, "\(program): OPTIONS names options it does not take: \(stale.sorted())")
    }
}
