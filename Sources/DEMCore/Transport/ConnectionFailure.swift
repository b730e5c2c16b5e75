import Foundation
import NIOCore

/// Why a connection to a peer failed, as one phrase: `Connection refused (ECONNREFUSED)`,
/// `Network is unreachable (ENETUNREACH)`, `no answer within 3 s` — not NIO's
/// `connect(descriptor:addr:size:): … (errno: 101)`.
public enum ConnectionFailure {
    public static func describe(_ error: any Error) -> String {
        if let code = errno(in: error) { return Errno.describe(code) }
        if let error = error as? ChannelError {
            switch error {
            case .connectTimeout(let amount): return "no answer within \(amount)"
            case .ioOnClosedChannel, .alreadyClosed, .eof: return "the connection closed"
            default: break
            }
        }
        return "\(error)"
    }

    /// The errno of the `IOError` that `value` is or wraps (NIO's bootstrap wraps one per
    /// address tried; HTTP clients wrap theirs), at any depth up to 8.
    public static func errno(in value: Any, depth: Int = 0) -> Int32? {
        if let error = value as? IOError { return error.errnoCode }
        guard depth < 8 else { return nil }
        for child in Mirror(reflecting: value).children {
            if let code = errno(in: child.value, depth: depth + 1) { return code }
        }
        return nil
    }

    /// Whether `error` is, or wraps, a refused connection.
    public static func isRefused(_ error: any Error) -> Bool { errno(in: error) == ECONNREFUSED }
}
