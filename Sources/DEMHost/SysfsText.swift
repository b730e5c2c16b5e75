import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Sysfs folders and the `key=value` text of controllers (attributes are read with
/// ``SysfsAttribute``): nothing here throws, because controllers come and go while they are read.
enum SysfsText {
    /// The names in folder `path` (following a symlink to it); empty when it cannot be listed.
    static func names(in path: String) -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
    }

    /// `key=value` pairs separated by commas (and newlines), as the kernel writes them in a
    /// controller's `address` and in the answer of `/dev/nvme-fabrics`. Whitespace around keys
    /// and values is dropped, a part without `=` is ignored, and the first of repeated keys wins.
    static func pairs(_ text: String) -> [String: String] {
        var result: [String: String] = [:]
        for part in text.split(whereSeparator: { $0 == "," || $0 == "\n" || $0 == "\r" || $0 == "\0" }) {
            guard let equals = part.firstIndex(of: "=") else { continue }
            let key = part[..<equals].trimmingCharacters(in: .whitespaces)
            let value = part[part.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            guard !key.isEmpty, result[key] == nil else { continue }
            result[key] = value
        }
        return result
    }
}
