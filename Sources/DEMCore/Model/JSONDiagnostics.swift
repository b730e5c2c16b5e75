import Foundation

/// Why a JSON document could not be read, as people read it: where the syntax breaks (line
/// and column), or which field has the wrong type (its path, such as `Targets[0].PortIDs[1]`).
public enum JSONDiagnostics {
    /// The syntax error of `data`, such as `line 3, column 7: Invalid value`, or nil when it
    /// is well-formed JSON.
    public static func syntaxError(in data: Data) -> String? {
        do {
            _ = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
            return nil
        } catch {
            let text = ((error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String) ?? "\(error)"
            // Foundation says "around character N" (an offset in bytes).
            if let range = text.range(of: "around character "),
                let offset = Int(text[range.upperBound...].prefix { $0.isNumber })
            {
                let (line, column) = position(of: offset, in: data)
                let what = text[..<range.lowerBound].trimmingCharacters(in: .whitespaces)
                return "line \(line), column \(column): \(what.isEmpty ? "invalid JSON" : what)"
            }
            if text.contains("end of file") || data.isEmpty {
                let (line, column) = position(of: data.count, in: data)
                return "line \(line), column \(column): the document ends too early"
            }
            return text
        }
    }

    /// The 1-based line and column of byte `offset`.
    public static func position(of offset: Int, in data: Data) -> (line: Int, column: Int) {
        var line = 1
        var column = 1
        for byte in data.prefix(max(0, offset)) {
            if byte == 0x0A {
                line += 1
                column = 1
            } else if byte & 0xC0 != 0x80 {  // count characters, not UTF-8 continuation bytes
                column += 1
            }
        }
        return (line, column)
    }

    /// `error` from decoding `data`: its syntax error with line and column, or the field path
    /// and what was expected.
    public static func describe(_ error: any Error, in data: Data) -> String {
        if let syntax = syntaxError(in: data) { return "not valid JSON at \(syntax)" }
        guard let error = error as? DecodingError else { return "\(error)" }
        func path(_ codingPath: [any CodingKey]) -> String {
            let text = Self.path(codingPath)
            return text.isEmpty ? "the document" : text
        }
        switch error {
        case .typeMismatch(let type, let context):
            return "\(path(context.codingPath)): expected \(describe(type))"
        case .valueNotFound(let type, let context):
            return "\(path(context.codingPath)): expected \(describe(type)), found null"
        case .keyNotFound(let key, let context):
            return "\(path(context.codingPath + [key])): missing"
        case .dataCorrupted(let context):
            return "\(path(context.codingPath)): \(context.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }

    /// A coding path as the field names of the API's errors: `Targets[0].PortIDs[1].TRADDR`
    /// (empty for the document itself).
    public static func path(_ codingPath: [any CodingKey]) -> String {
        var text = ""
        for key in codingPath {
            if let index = key.intValue {
                text += "[\(index)]"
            } else {
                text += (text.isEmpty ? "" : ".") + key.stringValue
            }
        }
        return text
    }

    private static func describe(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Int.Type, is UInt16.Type, is UInt32.Type, is UInt64.Type, is Int32.Type: "an integer"
        case is Bool.Type: "true or false"
        case is Double.Type: "a number"
        default:
            "\(type)".hasPrefix("Array") ? "an array" : "\(type)".hasPrefix("Dictionary") ? "an object" : "a \(type)"
        }
    }
}
