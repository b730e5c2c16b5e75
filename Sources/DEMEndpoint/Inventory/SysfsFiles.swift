import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Small, failure-tolerant readers for sysfs and the other trees the inventory walks: every
/// function answers nil or an empty list instead of throwing, because sysfs attributes come
/// and go with the hardware and some refuse to be read.
enum SysfsFiles {
    /// The most a single attribute may hold; sysfs attributes are one page at most.
    static let readLimit = 64 * 1024

    /// The content of `path`, or nil when it cannot be opened or read.
    static func contents(of path: String) -> String? {
        // O_NONBLOCK so that a FIFO where an attribute was expected cannot hang the scan.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while bytes.count < readLimit {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if count == 0 { break }
            bytes.append(contentsOf: buffer[0..<count])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The content of `path` without surrounding whitespace, or nil when it cannot be read or
    /// is blank.
    static func trimmed(_ path: String) -> String? {
        guard let text = contents(of: path)?.trimmingCharacters(in: .whitespacesAndNewlines), !text.isEmpty else {
            return nil
        }
        return text
    }

    /// A size attribute in 512-byte sectors (`/sys/block/<dev>/size`) in bytes, or nil when it
    /// is missing, not a non-negative integer or too large.
    static func sectorsInBytes(_ path: String) -> Int? {
        guard let text = trimmed(path), let sectors = Int(text), sectors >= 0 else { return nil }
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

    /// Whether `path` is a directory, following symlinks.
    static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFDIR
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
