#if canImport(Glibc)
import DEMCore
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// The few filesystem calls the nvmet backend makes, behind a protocol so the planner's output
// can be applied to the kernel's configfs or, in tests, to an ordinary folder that imitates it.

/// What an entry of the nvmet tree is.
public enum NvmetEntryKind: Sendable, Hashable {
    case directory
    case link
    case file
}

/// A failed filesystem call: the call, the full path and the errno.
public struct NvmetFileError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The call, such as `mkdir` or `write`.
    public var operation: String
    /// The full path.
    public var path: String
    public var code: Int32

    public init(operation: String, path: String, code: Int32) {
        self.operation = operation
        self.path = path
        self.code = code
    }

    /// The errno's text and symbolic name, such as `Permission denied (EACCES)`.
    public var errnoText: String { Errno.describe(code) }

    public var description: String { "\(operation) \(path): \(errnoText)" }
}

/// Filesystem access to an nvmet tree. Every path is relative to the tree's root, such as
/// `ports/1/addr_trtype`; link targets are relative to the root too (`subsystems/<nqn>`).
public protocol NvmetFileSystem: Sendable {
    /// The root, for messages.
    var root: String { get }
    func makeDirectory(_ path: String) throws(NvmetFileError)
    func removeDirectory(_ path: String) throws(NvmetFileError)
    /// The attribute's value without its trailing newline.
    func readAttribute(_ path: String) throws(NvmetFileError) -> String
    /// Writes `value` in a single write, as configfs wants.
    func writeAttribute(_ path: String, _ value: String) throws(NvmetFileError)
    func createLink(_ path: String, to target: String) throws(NvmetFileError)
    /// The link's target as stored (configfs answers with a relative path).
    func readLink(_ path: String) throws(NvmetFileError) -> String
    func removeLink(_ path: String) throws(NvmetFileError)
    /// Names in a directory, without `.` and `..`, sorted.
    func list(_ path: String) throws(NvmetFileError) -> [String]
    /// What the entry is (not following links), or nil when absent.
    func kind(_ path: String) -> NvmetEntryKind?
}

extension NvmetFileSystem {
    public func exists(_ path: String) -> Bool { kind(path) != nil }
}

/// POSIX access to the nvmet tree at `root`: the kernel's configfs, or a plain folder that
/// emulates it. On a plain folder, `mkdir` of a port, subsystem or namespace also creates the
/// attribute files and subdirectories the kernel would create, `rmdir` removes them first, and
/// the kernel's main refusals are imitated (address writes on an enabled port, device writes on
/// an enabled namespace, rmdir with children or incoming links, allowed hosts with
/// allow_any_host), so the order of operations is exercised without root or the nvmet module.
public struct PosixNvmetFileSystem: NvmetFileSystem {
    /// How to treat the root.
    public enum Mode: Sendable, Hashable {
        /// configfs when statfs says so, otherwise emulated.
        case automatic
        case configfs
        case emulated
    }

    /// statfs `f_type` of configfs.
    public static let configfsMagic = 0x6265_6570

    public let root: String
    /// Whether the tree is a plain folder standing in for configfs.
    public let isEmulated: Bool

    public init(root: String, mode: Mode = .automatic) {
        var trimmed = root
        while trimmed.count > 1, trimmed.hasSuffix("/") { trimmed.removeLast() }
        self.root = trimmed
        switch mode {
        case .configfs: isEmulated = false
        case .emulated: isEmulated = true
        case .automatic: isEmulated = !Self.isConfigfs(trimmed)
        }
    }

    /// Whether `path` lies on configfs.
    public static func isConfigfs(_ path: String) -> Bool {
        #if os(Linux)
        // Glibc's Swift module leaves out <sys/vfs.h>, so statfs is looked up by name. `f_type`
        // (a C long) is the first field of `struct statfs`, which is well under 256 bytes.
        typealias StatFS = @convention(c) (UnsafePointer<CChar>, UnsafeMutableRawPointer) -> Int32
        guard let symbol = dlsym(nil, "statfs") else { return false }
        let call = unsafeBitCast(symbol, to: StatFS.self)
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 256, alignment: 16)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0, count: 256)
        guard call(path, buffer) == 0 else { return false }
        return Int(buffer.load(as: CLong.self)) == configfsMagic
        #else
        return false
        #endif
    }

    /// The full path of `path`.
    public func fullPath(_ path: String) -> String {
        path.isEmpty ? root : "\(root)/\(path)"
    }

    // MARK: NvmetFileSystem

    public func makeDirectory(_ path: String) throws(NvmetFileError) {
        try rawMakeDirectory(path)
        guard isEmulated else { return }
        do {
            try populate(path)
        } catch {
            // Leave no half-made object behind.
            try? removeDirectory(path)
            throw error
        }
    }

    public func removeDirectory(_ path: String) throws(NvmetFileError) {
        if isEmulated { try emulatedRemove(path) }
        try check(rmdir(fullPath(path)), "rmdir", path)
    }

    public func readAttribute(_ path: String) throws(NvmetFileError) -> String {
        let fd = open(fullPath(path), O_RDONLY | O_CLOEXEC)
        try check(fd, "open", path)
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw NvmetFileError(operation: "read", path: fullPath(path), code: errno)
            }
            if count == 0 || bytes.count > 1 << 20 { break }
            bytes.append(contentsOf: chunk[0..<count])
        }
        var text = String(decoding: bytes, as: UTF8.self)
        while text.hasSuffix("\n") || text.hasSuffix("\0") { text.removeLast() }
        return text
    }

    public func writeAttribute(_ path: String, _ value: String) throws(NvmetFileError) {
        if isEmulated { try emulatedCheckWrite(path, value) }
        let stored = isEmulated ? emulatedStoredValue(path, value) : value
        try rawWrite(path, stored, create: false)
    }

    public func createLink(_ path: String, to target: String) throws(NvmetFileError) {
        if isEmulated { try emulatedCheckLink(path, to: target) }
        try check(symlink(fullPath(target), fullPath(path)), "symlink", path)
    }

    public func readLink(_ path: String) throws(NvmetFileError) -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = buffer.withUnsafeMutableBufferPointer { pointer -> Int in
            guard let base = pointer.baseAddress else { return -1 }
            return readlink(fullPath(path), base, pointer.count - 1)
        }
        guard count >= 0 else { throw NvmetFileError(operation: "readlink", path: fullPath(path), code: errno) }
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public func removeLink(_ path: String) throws(NvmetFileError) {
        try check(unlink(fullPath(path)), "unlink", path)
    }

    public func list(_ path: String) throws(NvmetFileError) -> [String] {
        guard let dir = opendir(fullPath(path)) else {
            throw NvmetFileError(operation: "opendir", path: fullPath(path), code: errno)
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: MemoryLayout.size(ofValue: entry.pointee.d_name)) {
                    String(cString: $0)
                }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    public func kind(_ path: String) -> NvmetEntryKind? {
        var info = stat()
        guard lstat(fullPath(path), &info) == 0 else { return nil }
        switch info.st_mode & S_IFMT {
        case S_IFDIR: return .directory
        case S_IFLNK: return .link
        default: return .file
        }
    }

    // MARK: Raw calls

    private func check(_ result: Int32, _ operation: String, _ path: String) throws(NvmetFileError) {
        if result < 0 { throw NvmetFileError(operation: operation, path: fullPath(path), code: errno) }
    }

    private func rawMakeDirectory(_ path: String) throws(NvmetFileError) {
        try check(mkdir(fullPath(path), 0o755), "mkdir", path)
    }

    private func rawWrite(_ path: String, _ value: String, create: Bool) throws(NvmetFileError) {
        let flags = O_WRONLY | O_TRUNC | O_CLOEXEC | (create ? O_CREAT : 0)
        let fd = open(fullPath(path), flags, 0o644)
        try check(fd, "open", path)
        let bytes = Array(value.utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let writeErrno = errno
        let closed = close(fd)
        if written < 0 { throw NvmetFileError(operation: "write", path: fullPath(path), code: writeErrno) }
        if written != bytes.count { throw NvmetFileError(operation: "write", path: fullPath(path), code: EIO) }
        try check(closed, "close", path)
    }

    // MARK: Emulation of configfs on a plain folder

    /// Where a path sits in the nvmet tree.
    private enum Place {
        case port(String)
        case subsystem(String)
        case namespace(subsystem: String, nsid: String)
        case host(String)
        case other
    }

    private static func place(_ path: String) -> Place {
        let parts = path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        switch parts.count {
        case 2 where parts[0] == "ports": return .port(parts[1])
        case 2 where parts[0] == "subsystems": return .subsystem(parts[1])
        case 2 where parts[0] == "hosts": return .host(parts[1])
        case 4 where parts[0] == "subsystems" && parts[2] == "namespaces":
            return .namespace(subsystem: parts[1], nsid: parts[3])
        default: return .other
        }
    }

    /// Creates what the kernel creates with a new port, subsystem or namespace.
    private func populate(_ path: String) throws(NvmetFileError) {
        let files: [(String, String)]
        let directories: [String]
        switch Self.place(path) {
        case .port:
            files = [
                ("addr_trtype", ""), ("addr_adrfam", ""), ("addr_traddr", ""), ("addr_trsvcid", ""),
                ("addr_treq", "not specified"), ("addr_tsas", "reserved"), ("param_inline_data_size", "-1"),
            ]
            directories = ["subsystems", "referrals", "ana_groups", "ana_groups/1"]
        case .subsystem:
            let serial = String(UInt64.random(in: 1...UInt64.max), radix: 16)
            files = [
                ("attr_allow_any_host", "0"), ("attr_serial", serial), ("attr_model", "Linux"),
                ("attr_version", "1.3"),
            ]
            directories = ["namespaces", "allowed_hosts"]
        case .namespace:
            let uuid = NvmetIdentifier.canonical(
                (0..<16).map { _ in String(format2: UInt8.random(in: 0...255)) }.joined()
            )
            files = [
                ("device_path", "(null)"), ("device_uuid", uuid ?? NvmetIdentifier.zero),
                ("device_nguid", NvmetIdentifier.zero), ("enable", "0"), ("ana_grpid", "1"),
            ]
            directories = []
        case .host:
            // As a kernel with CONFIG_NVME_TARGET_AUTH.
            files = [
                ("dhchap_key", ""), ("dhchap_ctrl_key", ""), ("dhchap_hash", "hmac(sha256)"),
                ("dhchap_dhgroup", "null"),
            ]
            directories = []
        case .other:
            return
        }
        for (name, value) in files { try rawWrite("\(path)/\(name)", value + "\n", create: true) }
        for name in directories { try rawMakeDirectory("\(path)/\(name)") }
    }

    /// Refuses what the kernel refuses, then removes the attribute files and automatic
    /// subdirectories so the final rmdir succeeds.
    private func emulatedRemove(_ path: String) throws(NvmetFileError) {
        let busy = { (code: Int32) in NvmetFileError(operation: "rmdir", path: self.fullPath(path), code: code) }
        var automatic: [String] = []
        switch Self.place(path) {
        case .port:
            for sub in ["subsystems", "referrals"] where !((try? list("\(path)/\(sub)")) ?? []).isEmpty {
                throw busy(ENOTEMPTY)
            }
            if ((try? list("\(path)/ana_groups")) ?? []).contains(where: { $0 != "1" }) { throw busy(ENOTEMPTY) }
            automatic = ["subsystems", "referrals", "ana_groups/1", "ana_groups"]
        case .subsystem(let nqn):
            for sub in ["namespaces", "allowed_hosts"] where !((try? list("\(path)/\(sub)")) ?? []).isEmpty {
                throw busy(ENOTEMPTY)
            }
            if isLinked(from: "ports", through: "subsystems", to: nqn) { throw busy(EBUSY) }
            automatic = ["namespaces", "allowed_hosts"]
        case .host(let nqn):
            if isLinked(from: "subsystems", through: "allowed_hosts", to: nqn) { throw busy(EBUSY) }
        case .namespace, .other:
            break
        }
        for name in (try? list(path)) ?? [] where kind("\(path)/\(name)") == .file {
            try check(unlink(fullPath("\(path)/\(name)")), "unlink", "\(path)/\(name)")
        }
        for name in automatic where kind("\(path)/\(name)") == .directory {
            for file in (try? list("\(path)/\(name)")) ?? [] where kind("\(path)/\(name)/\(file)") == .file {
                try check(unlink(fullPath("\(path)/\(name)/\(file)")), "unlink", "\(path)/\(name)/\(file)")
            }
            try check(rmdir(fullPath("\(path)/\(name)")), "rmdir", "\(path)/\(name)")
        }
    }

    /// Whether some `<group>/*/<folder>/*` link points at `name`.
    private func isLinked(from group: String, through folder: String, to name: String) -> Bool {
        for owner in (try? list(group)) ?? [] {
            for link in (try? list("\(group)/\(owner)/\(folder)")) ?? [] {
                let path = "\(group)/\(owner)/\(folder)/\(link)"
                if kind(path) == .link, let target = try? readLink(path), NvmetTree.lastComponent(target) == name {
                    return true
                }
            }
        }
        return false
    }

    private func emulatedCheckWrite(_ path: String, _ value: String) throws(NvmetFileError) {
        let refuse = { (code: Int32) in NvmetFileError(operation: "write", path: self.fullPath(path), code: code) }
        let parts = path.split(separator: "/").map(String.init)
        guard let attribute = parts.last else { return }
        let parent = parts.dropLast().joined(separator: "/")
        switch Self.place(parent) {
        case .port:
            if attribute.hasPrefix("addr_"), !((try? list("\(parent)/subsystems")) ?? []).isEmpty {
                throw refuse(EACCES)
            }
        case .namespace:
            if ["device_path", "device_uuid", "device_nguid"].contains(attribute),
                (try? readAttribute("\(parent)/enable")) == "1"
            {
                throw refuse(EBUSY)
            }
            if ["device_uuid", "device_nguid"].contains(attribute), NvmetIdentifier.canonical(value) == nil {
                throw refuse(EINVAL)
            }
        case .subsystem:
            if attribute == "attr_allow_any_host", value == "1",
                !((try? list("\(parent)/allowed_hosts")) ?? []).isEmpty
            {
                throw refuse(EINVAL)
            }
        case .host, .other:
            break
        }
    }

    /// What the kernel reads back after `value` was written: canonical identifiers.
    private func emulatedStoredValue(_ path: String, _ value: String) -> String {
        if path.hasSuffix("/device_uuid") || path.hasSuffix("/device_nguid") {
            return NvmetIdentifier.canonical(value) ?? value
        }
        return value
    }

    private func emulatedCheckLink(_ path: String, to target: String) throws(NvmetFileError) {
        let refuse = { (code: Int32) in NvmetFileError(operation: "symlink", path: self.fullPath(path), code: code) }
        guard kind(target) == .directory else { throw refuse(ENOENT) }
        let parts = path.split(separator: "/").map(String.init)
        if parts.count == 4, parts[0] == "subsystems", parts[2] == "allowed_hosts",
            (try? readAttribute("subsystems/\(parts[1])/attr_allow_any_host")) == "1"
        {
            throw refuse(EINVAL)
        }
    }
}

extension String {
    /// Two lowercase hex digits.
    fileprivate init(format2 byte: UInt8) {
        let digits = String(byte, radix: 16)
        self = digits.count == 1 ? "0" + digits : digits
    }
}
