import DEMCore
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What went wrong talking to SPDK's RPC socket, or what SPDK answered.
public enum SPDKRPCError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The socket cannot be reached (missing, refused, not a socket).
    case unreachable(socket: String, reason: String)
    /// The target did not answer in time (the connection is dropped).
    case timeout(method: String, seconds: Int)
    /// The connection ended while a call was outstanding.
    case closed(method: String)
    /// The target sent something that is not a JSON-RPC answer.
    case garbage(String)
    /// SPDK answered with a JSON-RPC error: -32601 method not found, -32602 invalid parameters,
    /// -32603 internal error (the object exists, or could not be made), and others.
    case rpc(method: String, code: Int, message: String)

    public var description: String {
        switch self {
        case .unreachable(let socket, let reason): "SPDK's RPC socket \(socket): \(reason) (is nvmf_tgt running?)"
        case .timeout(let method, let seconds): "\(method): no answer from SPDK in \(seconds) s"
        case .closed(let method): "\(method): SPDK closed the connection"
        case .garbage(let text): text
        case .rpc(let method, let code, let message):
            "\(method): SPDK error \(code)\(Self.codeName(code).isEmpty ? "" : " " + Self.codeName(code)): \(message)"
        }
    }

    /// JSON-RPC 2.0's name for a code.
    public static func codeName(_ code: Int) -> String {
        switch code {
        case -32700: "(parse error)"
        case -32600: "(invalid request)"
        case -32601: "(method not found: this SPDK lacks it)"
        case -32602: "(invalid parameters)"
        case -32603: "(internal error)"
        case ..<0 where code > -4096: "(errno \(-code))"
        default: ""
        }
    }

    /// Whether the call never reached a target that answered (the state of the target is
    /// unknown, the next apply tries again).
    public var isConnectionFailure: Bool {
        switch self {
        case .unreachable, .timeout, .closed, .garbage: true
        case .rpc: false
        }
    }
}

/// A JSON-RPC 2.0 client on SPDK's Unix socket: one persistent connection, made again when it
/// breaks (the target restarted); each call waits for the answer with its id, up to a timeout.
/// Calls are synchronous and serialised; callers run them off the event loop.
public final class SPDKRPCClient: Sendable {
    public let socketPath: String
    public let timeout: Duration

    private struct Connection {
        var descriptor: Int32 = -1
        var stream = SPDKJSONStream()
        var nextID = 1
        /// Connections made so far: a new one after a lost one means the target may have
        /// restarted with nothing configured.
        var made = 0
    }

    private let connection = Mutex(Connection())

    public init(socketPath: String, timeout: Duration = .seconds(10)) {
        self.socketPath = socketPath
        self.timeout = timeout
    }

    deinit {
        connection.withLock { if $0.descriptor >= 0 { close($0.descriptor) } }
    }

    /// How many connections were made (1 after the first call; more after reconnections).
    public var connectionsMade: Int { connection.withLock { $0.made } }

    /// Whether a connection is open now.
    public var isConnected: Bool { connection.withLock { $0.descriptor >= 0 } }

    /// Calls `method` with `params` and returns its `result`.
    public func call(_ method: String, _ params: JSONValue? = nil) throws(SPDKRPCError) -> JSONValue {
        let result: Result<JSONValue, SPDKRPCError> = connection.withLock { connection in
            // A kept connection found closed (the target restarted since the last call) is made
            // again once: the call never reached a target that answered.
            var attempts = connection.descriptor >= 0 ? 2 : 1
            while true {
                attempts -= 1
                do throws(SPDKRPCError) {
                    return .success(try exchange(method, params, on: &connection))
                } catch {
                    if error.isConnectionFailure { Self.drop(&connection) }
                    if case .closed = error, attempts > 0 { continue }
                    return .failure(error)
                }
            }
        }
        return try result.get()
    }

    /// Closes the connection (the next call makes a new one).
    public func disconnect() {
        connection.withLock { Self.drop(&$0) }
    }

    /// The request as sent: compact JSON, members in the order SPDK's own clients send them.
    public static func request(method: String, id: Int, params: JSONValue?) -> JSONValue {
        var members: [(String, JSONValue)] = [
            ("jsonrpc", .string("2.0")), ("method", .string(method)), ("id", .int(id)),
        ]
        if let params { members.append(("params", params)) }
        return .members(members)
    }

    private func exchange(
        _ method: String,
        _ params: JSONValue?,
        on connection: inout Connection
    ) throws(SPDKRPCError) -> JSONValue {
        if connection.descriptor < 0 { try open(&connection) }
        let id = connection.nextID
        connection.nextID += 1
        let bytes = Array(Self.request(method: method, id: id, params: params).serialized(pretty: false).utf8)
        try send(bytes, on: connection.descriptor, method: method)
        let deadline = ContinuousClock.now + timeout
        while true {
            while let message = try connection.stream.next() {
                guard let members = message.objectMembers else {
                    throw .garbage("\(method): the target answered with a JSON array, not a JSON-RPC object")
                }
                let answerID = members.first { $0.key == "id" }?.value.intValue
                // An answer to an earlier call that timed out is skipped.
                guard answerID == id else { continue }
                if let error = members.first(where: { $0.key == "error" })?.value {
                    let code = error["code"]?.intValue ?? 0
                    let text = error["message"]?.stringValue ?? error.serialized(pretty: false)
                    throw .rpc(method: method, code: code, message: text)
                }
                guard let result = members.first(where: { $0.key == "result" })?.value else {
                    throw .garbage("\(method): the answer has neither result nor error")
                }
                return result
            }
            let left = deadline - ContinuousClock.now
            guard left > .zero else { throw .timeout(method: method, seconds: Int(timeout.components.seconds)) }
            var poller = pollfd(fd: connection.descriptor, events: Int16(POLLIN), revents: 0)
            let milliseconds = Int32(
                min(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1, 60_000)
            )
            let ready = poll(&poller, 1, milliseconds)
            if ready < 0 {
                if errno == EINTR { continue }
                throw .unreachable(socket: socketPath, reason: "poll: \(String(cString: strerror(errno)))")
            }
            if ready == 0 { continue }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let count = chunk.withUnsafeMutableBytes { recv(connection.descriptor, $0.baseAddress, $0.count, 0) }
            if count < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw .closed(method: method)
            }
            if count == 0 { throw .closed(method: method) }
            connection.stream.append(chunk[0..<count])
        }
    }

    private func open(_ connection: inout Connection) throws(SPDKRPCError) {
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else {
            throw .unreachable(socket: socketPath, reason: "socket: \(String(cString: strerror(errno)))")
        }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let path = Array(socketPath.utf8)
        guard path.count < MemoryLayout.size(ofValue: address.sun_path) else {
            close(descriptor)
            throw .unreachable(socket: socketPath, reason: "the path is too long for a Unix socket")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in path.enumerated() { raw[i] = byte }
        }
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard status == 0 else {
            let reason = String(cString: strerror(errno))
            close(descriptor)
            throw .unreachable(socket: socketPath, reason: reason)
        }
        connection.descriptor = descriptor
        connection.stream = SPDKJSONStream()
        connection.made += 1
    }

    private func send(_ bytes: [UInt8], on descriptor: Int32, method: String) throws(SPDKRPCError) {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes {
                Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            }
            if sent < 0 {
                if errno == EINTR { continue }
                throw .closed(method: method)
            }
            offset += sent
        }
    }

    private static func drop(_ connection: inout Connection) {
        if connection.descriptor >= 0 { close(connection.descriptor) }
        connection.descriptor = -1
        connection.stream = SPDKJSONStream()
    }
}
