import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Failure-tolerant reads of sysfs attributes and folders: every function answers nil or an
/// empty list instead of throwing, because controllers come and go while they are read.
enum SysfsText {
    /// The most an attribute may hold; sysfs attributes are one page at most.
    static let readLimit = 64 * 1024

    /// The bytes of `path` as text (invalid UTF-8 replaced), or nil when it cannot be opened or
    /// read.
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
        return String(decoding: bytes.prefix(readLimit), as: UTF8.self)
    }

    /// The attribute at `path` without surrounding whitespace and NULs, or nil when it cannot be
    /// read or is blank.
    static func attribute(_ path: String) -> String? {
        guard let text = contents(of: path) else { return nil }
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines.union(CharacterSet(charactersIn: "\0")))
        return trimmed.isEmpty ? nil : trimmed
    }

    /// The names in folder `path` (following a symlink to it); empty when it cannot be listed.
    static func names(in path: String) -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
    }

    /// Whether `path` is a directory, following symlinks.
    static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFDIR
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

    /// `strerror` text of `code` followed by its symbolic name when it is a common one.
    static func describe(_ code: Int32) -> String {
        let text = strerror(code).map { String(cString: $0) } ?? "error \(code)"
        let names: [Int32: String] = [
            EPERM: "EPERM", ENOENT: "ENOENT", EINTR: "EINTR", EIO: "EIO", ENXIO: "ENXIO", EBADF: "EBADF",
            EAGAIN: "EAGAIN", ENOMEM: "ENOMEM", EACCES: "EACCES", EBUSY: "EBUSY", EEXIST: "EEXIST",
            ENODEV: "ENODEV", ENOTDIR: "ENOTDIR", EISDIR: "EISDIR", EINVAL: "EINVAL", ENOSPC: "ENOSPC",
            EROFS: "EROFS", EALREADY: "EALREADY", ECONNREFUSED: "ECONNREFUSED", ECONNRESET: "ECONNRESET",
            ETIMEDOUT: "ETIMEDOUT", EHOSTUNREACH: "EHOSTUNREACH", ENETUNREACH: "ENETUNREACH",
            EPROTONOSUPPORT: "EPROTONOSUPPORT", EADDRNOTAVAIL: "EADDRNOTAVAIL",
        ]
        guard let name = names[code] else { return text }
        return "\(text) (\(name))"
    }
}
