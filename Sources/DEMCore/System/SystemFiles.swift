import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// The file primitives DEM's daemons share: errno as text, failure-tolerant reads of sysfs
// attributes, and whole-or-nothing file writes.

/// errno values as people read them.
public enum Errno {
    /// `strerror` text of `code` followed by its symbolic name when it is a common one, such as
    /// `Permission denied (EACCES)`.
    public static func describe(_ code: Int32) -> String {
        let text = strerror(code).map { String(cString: $0) } ?? "error \(code)"
        guard let name = names[code] else { return text }
        return "\(text) (\(name))"
    }

    private static let names: [Int32: String] = [
        EPERM: "EPERM", ENOENT: "ENOENT", EINTR: "EINTR", EIO: "EIO", ENXIO: "ENXIO", EBADF: "EBADF",
        EAGAIN: "EAGAIN", ENOMEM: "ENOMEM", EACCES: "EACCES", EBUSY: "EBUSY", EEXIST: "EEXIST",
        ENODEV: "ENODEV", ENOTDIR: "ENOTDIR", EISDIR: "EISDIR", EINVAL: "EINVAL", ENOSPC: "ENOSPC",
        EROFS: "EROFS", ENAMETOOLONG: "ENAMETOOLONG", ENOTEMPTY: "ENOTEMPTY", ELOOP: "ELOOP",
        EALREADY: "EALREADY", ECONNREFUSED: "ECONNREFUSED", ECONNRESET: "ECONNRESET", ETIMEDOUT: "ETIMEDOUT",
        EHOSTUNREACH: "EHOSTUNREACH", ENETUNREACH: "ENETUNREACH", EADDRINUSE: "EADDRINUSE",
        EADDRNOTAVAIL: "EADDRNOTAVAIL", EPROTONOSUPPORT: "EPROTONOSUPPORT",
    ]
}

/// Failure-tolerant reads of sysfs attributes: nil instead of an error, because attributes
/// come and go with the hardware and the controllers while they are read.
public enum SysfsAttribute {
    /// The most an attribute may hold; sysfs attributes are one page at most.
    public static let readLimit = 64 * 1024

    /// The bytes of `path` as text (invalid UTF-8 replaced, at most ``readLimit`` bytes), or nil
    /// when it cannot be opened or read.
    public static func contents(of path: String) -> String? {
        // O_NONBLOCK so that a FIFO where an attribute was expected cannot hang a scan.
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
    public static func value(_ path: String) -> String? {
        guard let text = contents(of: path) else { return nil }
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines.union(CharacterSet(charactersIn: "\0")))
        return trimmed.isEmpty ? nil : trimmed
    }

    /// Whether `path` is a directory, following symlinks.
    public static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFDIR
    }
}

/// Why a file could not be written.
public struct FileWriteError: Error, Sendable, Hashable, CustomStringConvertible {
    public var path: String
    public var message: String

    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { "\(path): \(message)" }
}

/// Writes a file whole or not at all: a temporary file beside it, written, synced, renamed over
/// the old one, then the folder synced; the folder is created when missing.
public enum AtomicFile {
    public static func write(
        _ data: Data,
        to path: String,
        mode: mode_t = 0o644,
        folderMode: Int = 0o755
    ) throws(FileWriteError) {
        let folder = (path as NSString).deletingLastPathComponent
        let directory = folder.isEmpty ? "." : folder
        do {
            try FileManager.default.createDirectory(
                atPath: directory,
                withIntermediateDirectories: true,
                attributes: [.posixPermissions: folderMode]
            )
        } catch {
            throw FileWriteError(path: directory, message: "create folder: \(error)")
        }
        let temporary = "\(path).tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw failure("open", temporary) }
        var ok = data.withUnsafeBytes { buffer -> Bool in
            var offset = 0
            while offset < buffer.count {
                let written = systemWrite(fd, buffer.baseAddress?.advanced(by: offset), buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                offset += written
            }
            return true
        }
        if ok { ok = fsync(fd) == 0 }
        let code = errno
        close(fd)
        guard ok else {
            unlink(temporary)
            throw FileWriteError(path: temporary, message: "write: \(Errno.describe(code))")
        }
        guard rename(temporary, path) == 0 else {
            let error = failure("rename", temporary)
            unlink(temporary)
            throw error
        }
        let directoryFD = open(directory, O_RDONLY | O_CLOEXEC)
        if directoryFD >= 0 {
            _ = fsync(directoryFD)
            close(directoryFD)
        }
    }

    private static func failure(_ call: String, _ path: String) -> FileWriteError {
        FileWriteError(path: path, message: "\(call): \(Errno.describe(errno))")
    }
}

/// write(2), named apart from ``AtomicFile/write(_:to:mode:folderMode:)``.
private func systemWrite(_ fd: Int32, _ bytes: UnsafeRawPointer?, _ count: Int) -> Int {
    write(fd, bytes, count)
}
