import DEMCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A failed connect or disconnect.
public enum FabricsError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A connect option cannot be written safely (see ``ConnectOptions/invalidField``).
    case invalidOption(field: String, value: String)
    /// Not a controller name of the form `nvme<digits>`.
    case invalidControllerName(String)
    /// A system call failed: the call, the path and the errno.
    case system(operation: String, path: String, code: Int32)
    /// `/dev/nvme-fabrics` answered something other than `instance=N,cntlid=M`.
    case unexpectedAnswer(String)
    /// The blocking-I/O thread pool has shut down.
    case threadPoolInactive
    /// The calling task was cancelled before the call started.
    case cancelled

    public var description: String {
        switch self {
        case .invalidOption(let field, let value): "invalid connect option \(field)=\(value.debugDescription)"
        case .invalidControllerName(let name): "invalid controller name \(name.debugDescription)"
        case .system(let operation, let path, let code): "\(operation) \(path): \(Errno.describe(code))"
        case .unexpectedAnswer(let text): "unexpected answer from the fabrics device: \(text.debugDescription)"
        case .threadPoolInactive: "the blocking I/O thread pool is not running"
        case .cancelled: "cancelled"
        }
    }
}

/// The character device the kernel connects through. One call is one open file: write the
/// options in a single write, read the answer back.
public protocol FabricsDevice: Sendable {
    /// The device's path, for messages.
    var path: String { get }
    /// Writes `options` and answers what the kernel reads back (`instance=3,cntlid=1`).
    /// Blocking: the write returns when the kernel has connected or given up.
    ///
    /// - Throws: ``FabricsError/system(operation:path:code:)`` with the errno of the failing
    ///   call; `write` with `EALREADY` when the controller is already connected.
    func exchange(_ options: String) throws(FabricsError) -> String
}

/// The kernel's `/dev/nvme-fabrics` (needs root and the nvme-fabrics module).
public struct FabricsCharacterDevice: FabricsDevice {
    public static let defaultPath = "/dev/nvme-fabrics"
    /// The most the answer may hold.
    static let answerLimit = 4096

    public let path: String

    public init(path: String = FabricsCharacterDevice.defaultPath) {
        self.path = path
    }

    public func exchange(_ options: String) throws(FabricsError) -> String {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw .system(operation: "open", path: path, code: errno) }
        defer { close(fd) }

        // The kernel parses one write as the whole options string: it must not be split.
        let bytes = Array(options.utf8)
        var written: Int
        repeat {
            written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        } while written < 0 && errno == EINTR
        guard written >= 0 else { throw .system(operation: "write", path: path, code: errno) }
        guard written == bytes.count else { throw .system(operation: "write", path: path, code: EIO) }

        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: Self.answerLimit)
        while answer.count < Self.answerLimit {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw .system(operation: "read", path: path, code: errno)
            }
            if count == 0 { break }
            answer.append(contentsOf: buffer[0..<count])
        }
        return String(decoding: answer, as: UTF8.self)
    }
}

/// A controller the kernel created: the answer of `/dev/nvme-fabrics`.
public struct ConnectedController: Sendable, Hashable {
    /// The instance number: the controller is `nvme<instance>`.
    public var instance: Int
    /// The controller ID the subsystem assigned, when the kernel said.
    public var controllerID: Int?

    public init(instance: Int, controllerID: Int? = nil) {
        self.instance = instance
        self.controllerID = controllerID
    }

    /// The device name, such as `nvme3`.
    public var name: String { "nvme\(instance)" }

    /// Reads the kernel's answer `instance=3,cntlid=1`; nil when it has no instance number.
    public static func parse(_ answer: String) -> ConnectedController? {
        let pairs = SysfsText.pairs(answer)
        guard let instance = pairs["instance"].flatMap({ Int($0) }), instance >= 0 else { return nil }
        return ConnectedController(instance: instance, controllerID: pairs["cntlid"].flatMap { Int($0) })
    }
}

/// The result of a connect.
public enum ConnectOutcome: Sendable, Hashable {
    /// The kernel created the controller.
    case connected(ConnectedController)
    /// The kernel refused with EALREADY: a controller with the same options already exists.
    case alreadyConnected
}

/// The result of a disconnect.
public enum DisconnectOutcome: Sendable, Hashable {
    /// The kernel deleted the controller.
    case disconnected
    /// There was no such controller (any more).
    case notFound
}

/// Connects and disconnects the kernel's NVMe over Fabrics controllers. Every call blocks in the
/// kernel (a connect lasts until the controller is up or the kernel gives up), so each runs on
/// `threadPool`, never on an event loop or the cooperative pool.
public struct FabricsConnector: Sendable {
    public var device: any FabricsDevice
    /// The sysfs mount point, for `class/nvme/<name>/delete_controller`.
    public var sysfsRoot: String
    public var threadPool: NIOThreadPool

    public init(
        device: any FabricsDevice = FabricsCharacterDevice(),
        sysfsRoot: String = "/sys",
        threadPool: NIOThreadPool = .singleton
    ) {
        var root = sysfsRoot
        while root.count > 1, root.hasSuffix("/") { root.removeLast() }
        self.device = device
        self.sysfsRoot = root
        self.threadPool = threadPool
    }

    /// Connects `options`.
    ///
    /// - Returns: the new controller, or ``ConnectOutcome/alreadyConnected`` when the kernel
    ///   answered EALREADY.
    public func connect(_ options: ConnectOptions) async throws(FabricsError) -> ConnectOutcome {
        if let invalid = options.invalidField { throw .invalidOption(field: invalid.name, value: invalid.value) }
        let device = device
        let text = options.optionsString
        return try await offload { () throws(FabricsError) -> ConnectOutcome in
            let answer: String
            do throws(FabricsError) {
                answer = try device.exchange(text)
            } catch {
                if case .system("write", _, EALREADY) = error { return .alreadyConnected }
                throw error
            }
            guard let controller = ConnectedController.parse(answer) else { throw .unexpectedAnswer(answer) }
            return .connected(controller)
        }
    }

    /// Deletes controller `name` (such as `nvme3`) by writing `1` to its `delete_controller`.
    public func disconnect(controller name: String) async throws(FabricsError) -> DisconnectOutcome {
        guard KernelController.instance(ofName: name) != nil else { throw .invalidControllerName(name) }
        let path = "\(sysfsRoot)/class/nvme/\(name)/delete_controller"
        return try await offload { () throws(FabricsError) -> DisconnectOutcome in
            let fd = open(path, O_WRONLY | O_CLOEXEC)
            guard fd >= 0 else {
                let code = errno
                if code == ENOENT || code == ENODEV { return .notFound }
                throw .system(operation: "open", path: path, code: code)
            }
            defer { close(fd) }
            var written: Int
            repeat {
                written = write(fd, "1", 1)
            } while written < 0 && errno == EINTR
            guard written >= 0 else {
                let code = errno
                if code == ENODEV { return .notFound }
                throw .system(operation: "write", path: path, code: code)
            }
            return .disconnected
        }
    }

    /// Runs `body` on the thread pool, keeping its typed error.
    private func offload<T: Sendable>(
        _ body: @escaping @Sendable () throws(FabricsError) -> T
    ) async throws(FabricsError) -> T {
        let result: Result<T, FabricsError>
        do {
            result = try await threadPool.runIfActive { () -> Result<T, FabricsError> in
                do throws(FabricsError) { return .success(try body()) } catch { return .failure(error) }
            }
        } catch is CancellationError {
            throw .cancelled
        } catch {
            throw .threadPoolInactive
        }
        return try result.get()
    }
}
