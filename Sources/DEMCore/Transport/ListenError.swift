import Foundation
import NIOCore

/// A listener could not be opened: the message names what, the address and port, why, and the
/// option that moves it, such as `REST API: address 127.0.0.1:22345 is in use (another program
/// listens there: stop it, or choose another port with --api-port)`.
public struct ListenError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What listens: "discovery controller", "REST API", "in-band channel".
    public var what: String
    public var address: String
    public var port: Int
    /// The errno of the failed call, when there was one.
    public var code: Int32?
    public var reason: String
    /// The option that sets the port.
    public var option: String
    /// What to do instead, when the caller knows better than the generic sentence.
    public var advice: String?

    public init(what: String, address: String, port: Int, code: Int32?, reason: String, option: String) {
        self.what = what
        self.address = address
        self.port = port
        self.code = code
        self.reason = reason
        self.option = option
    }

    /// `error` as a ListenError when it is a failed bind or listen (NIO's `IOError`), else nil.
    public static func from(
        _ error: any Error,
        what: String,
        address: String,
        port: Int,
        option: String
    ) -> ListenError? {
        if let error = error as? ListenError { return error }
        guard let code = (error as? IOError)?.errnoCode else { return nil }
        return ListenError(
            what: what,
            address: address,
            port: port,
            code: code,
            reason: Errno.describe(code),
            option: option
        )
    }

    /// Whether the address and port are taken by another socket.
    public var isAddressInUse: Bool { code == EADDRINUSE }

    public var description: String {
        let host = address.contains(":") ? "[\(address)]" : address
        switch code {
        case EADDRINUSE:
            if let advice { return "\(what): address \(host):\(port) is in use (\(advice))" }
            return
                "\(what): address \(host):\(port) is in use (another program, perhaps another dem, listens there: stop it, or choose another port with \(option))"
        case EADDRNOTAVAIL:
            return "\(what): address \(address) is not an address of this machine (choose one it has)"
        case EACCES:
            return
                "\(what): port \(port) needs privileges this user does not have (choose a port above 1023 with \(option), or run as root)"
        default:
            return "\(what): cannot listen on \(host):\(port): \(reason)"
        }
    }
}
