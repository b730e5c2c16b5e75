import DEMCore
import ServiceLifecycle

/// A server that binds its listener when it runs (Hummingbird's `Application`), with a failed
/// bind reported as a ``ListenError`` naming what listens, where, and the option that moves it,
/// so the daemon ends with that sentence instead of NIO's.
public struct ListeningService<Server: Service>: Service, CustomStringConvertible {
    let server: Server
    let what: String
    let address: String
    let port: Int
    let option: String

    public init(_ server: Server, what: String, address: String, port: Int, option: String) {
        self.server = server
        self.what = what
        self.address = address
        self.port = port
        self.option = option
    }

    public var description: String { what }

    public func run() async throws {
        do {
            try await server.run()
        } catch {
            throw ListenError.from(error, what: what, address: address, port: port, option: option) ?? error
        }
    }
}

/// Holds a state directory's lock while the service group runs, and gives it up when the group
/// ends (graceful shutdown ends it after every service listed after it).
public struct StateDirectoryLockService: Service {
    let lock: StateDirectoryLock

    public init(lock: StateDirectoryLock) { self.lock = lock }

    public func run() async throws {
        try? await gracefulShutdown()
        lock.release()
    }
}
