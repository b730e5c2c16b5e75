import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Where a DEM daemon keeps its state: the explicit directory, else `/var/lib/<name>` for
/// root, else `$XDG_STATE_HOME/<name>` (or `~/.local/state/<name>`).
public enum StateDirectory {
    public static func resolve(_ explicit: String?, name: String) -> String {
        if let explicit { return explicit }
        if getuid() == 0 { return "/var/lib/" + name }
        let environment = ProcessInfo.processInfo.environment
        if let state = environment["XDG_STATE_HOME"], !state.isEmpty { return state + "/" + name }
        return (environment["HOME"] ?? NSTemporaryDirectory()) + "/.local/state/" + name
    }

    /// Makes `path` (and its parents) when missing, mode `mode`, and checks that this process
    /// can write in it.
    ///
    /// - Throws: ``StateDirectoryError`` naming the directory, the system's reason and the fix.
    public static func prepare(_ path: String, mode: mode_t = 0o700) throws(StateDirectoryError) {
        var info = stat()
        if stat(path, &info) != 0 {
            guard errno == ENOENT else {
                throw StateDirectoryError(path: path, problem: "cannot be used: \(Errno.describe(errno))")
            }
            // mkdir -p, each level with its own errno.
            var made = ""
            for component in path.split(separator: "/", omittingEmptySubsequences: true) {
                made += (made.isEmpty && !path.hasPrefix("/") ? "" : "/") + component
                if mkdir(made, mode) != 0, errno != EEXIST {
                    let code = errno
                    let detail = made == path ? "" : " (at \(made))"
                    throw StateDirectoryError(
                        path: path,
                        problem: "cannot be created\(detail): \(Errno.describe(code))"
                    )
                }
            }
            return
        }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            throw StateDirectoryError(path: path, problem: "is not a directory")
        }
        guard access(path, W_OK | X_OK) == 0 else {
            throw StateDirectoryError(path: path, problem: "is not writable by this user (\(Errno.describe(errno)))")
        }
    }
}

/// A state directory that cannot be used.
public struct StateDirectoryError: Error, Sendable, Hashable, CustomStringConvertible {
    public var path: String
    public var problem: String

    public init(path: String, problem: String) {
        self.path = path
        self.problem = problem
    }

    public var description: String {
        "the data directory \(path) \(problem); choose one this user can write with --data-dir, or run as a user who can write it"
    }
}

/// An exclusive lock on a daemon's state directory, so two processes never change one store,
/// desired state or ledger at once: `flock` on `<directory>/lock`, which names the holder (its
/// name and pid) for the message a second process gets. The lock ends with
/// ``release()``, the object, or the process.
public final class StateDirectoryLock: Sendable {
    /// The lock file.
    public let path: String
    private let descriptor: Mutex<Int32>

    private init(path: String, descriptor: Int32) {
        self.path = path
        self.descriptor = Mutex(descriptor)
    }

    deinit { release() }

    /// Takes the lock of `directory` (which must exist) for `owner`, such as "dem serve".
    ///
    /// - Throws: ``StateDirectoryLockError`` naming the directory and the holder when another
    ///   process (or another open of this one) holds it.
    public static func acquire(directory: String, owner: String) throws(StateDirectoryLockError) -> StateDirectoryLock {
        let path = directory + "/lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw StateDirectoryLockError(
                directory: directory,
                holder: nil,
                problem: "open \(path): \(Errno.describe(errno))"
            )
        }
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let code = errno
            if code == EINTR { continue }
            let holder = SysfsAttribute.contents(of: path)?.trimmingCharacters(in: .whitespacesAndNewlines)
            close(fd)
            if code == EWOULDBLOCK {
                throw StateDirectoryLockError(
                    directory: directory,
                    holder: holder?.isEmpty == false ? holder : nil,
                    problem: nil
                )
            }
            throw StateDirectoryLockError(
                directory: directory,
                holder: nil,
                problem: "flock \(path): \(Errno.describe(code))"
            )
        }
        let text = "\(owner) (pid \(getpid()))\n"
        _ = ftruncate(fd, 0)
        _ = text.withCString { pwrite(fd, $0, strlen($0), 0) }
        return StateDirectoryLock(path: path, descriptor: fd)
    }

    /// Ends the lock (the file stays: removing it would race with a process taking it).
    public func release() {
        descriptor.withLock { fd in
            guard fd >= 0 else { return }
            _ = ftruncate(fd, 0)
            close(fd)
            fd = -1
        }
    }
}

/// A state directory is locked by another process, or cannot be locked.
public struct StateDirectoryLockError: Error, Sendable, Hashable, CustomStringConvertible {
    public var directory: String
    /// What the lock file says of its holder: `dem serve (pid 1234)`.
    public var holder: String?
    /// Why locking failed, when not because another process holds the lock.
    public var problem: String?

    public var description: String {
        if let problem { return "cannot lock the data directory \(directory): \(problem)" }
        return
            "the data directory \(directory) is in use by \(holder ?? "another process") (lock file \(directory)/lock); stop it first, or use another --data-dir"
    }
}
