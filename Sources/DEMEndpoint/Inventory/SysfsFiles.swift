import DEMCore
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What the inventory needs beyond ``SysfsAttribute``: sizes, folder listings, symlinks and
/// globs, answering nil or an empty list instead of throwing, because sysfs entries come and go
/// with the hardware and some refuse to be read.
enum SysfsFiles {
    /// A size attribute in 512-byte sectors (`/sys/block/<dev>/size`) in bytes, or nil when it
    /// is missing, not a non-negative integer or too large.
    static func sectorsInBytes(_ path: String) -> Int? {
        guard let text = SysfsAttribute.value(path), let sectors = Int(text), sectors >= 0 else { return nil }
        let (bytes, overflow) = sectors.multipliedReportingOverflow(by: 512)
        return overflow ? nil : bytes
    }

    /// The names in directory `path` (following a symlink to it), sorted; empty when it cannot
    /// be listed.
    static func entries(_ path: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
    }

    /// Whether `path` exists, following symlinks.
    static func exists(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0
    }

    /// `path` with symlinks resolved, or nil when it does not exist.
    static func resolved(_ path: String) -> String? {
        guard let pointer = realpath(path, nil) else { return nil }
        defer { free(pointer) }
        return String(cString: pointer)
    }

    /// The paths matching the glob `pattern`, or none when nothing matches or it cannot be
    /// expanded.
    static func glob(_ pattern: String) -> [String] {
        var matches = glob_t()
        defer { globfree(&matches) }
        #if canImport(Darwin)
        let status = Darwin.glob(pattern, 0, nil, &matches)
        #elseif canImport(Musl)
        let status = Musl.glob(pattern, 0, nil, &matches)
        #else
        let status = Glibc.glob(pattern, 0, nil, &matches)
        #endif
        guard status == 0, let paths = matches.gl_pathv else { return [] }
        var result: [String] = []
        for index in 0..<Int(matches.gl_pathc) {
            if let path = paths[index] { result.append(String(cString: path)) }
        }
        return result
    }
}
