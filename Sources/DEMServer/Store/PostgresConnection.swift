import Foundation

/// Where a PostgreSQL store is and how dem logs in: a `postgres://` URL without a password, and
/// the password apart (from a file or the environment), so that it is never in argv or a log.
public struct PostgresLocation: Sendable, Hashable, CustomStringConvertible {
    /// The URL, which carries no password.
    public var url: String
    /// The password, if one is needed (libpq also reads `~/.pgpass` and `PGPASSFILE`).
    public var password: String?

    /// Checks `url`: a `postgres://` or `postgresql://` URL naming no password.
    /// - Throws: ``StoreError`` naming what is wrong.
    public init(url: String, password: String?) throws {
        guard let components = URLComponents(string: url),
            let scheme = components.scheme?.lowercased(), scheme == "postgres" || scheme == "postgresql"
        else {
            throw StoreError(
                path: url,
                message: "is not a PostgreSQL URL: write postgres://USER@HOST[:PORT]/DATABASE"
            )
        }
        let query = components.queryItems?.map { $0.name.lowercased() } ?? []
        guard components.password == nil, !query.contains("password") else {
            throw StoreError(
                path: Self.redacted(url),
                message:
                    "carries a password, which would be seen in the process list: put it in a file (--store-password-file, mode 0600) or PGPASSWORD, and take it out of the URL"
            )
        }
        self.url = url
        self.password = password
    }

    /// Whether `text` names a PostgreSQL store (rather than a data directory's SQLite file).
    public static func isURL(_ text: String) -> Bool {
        text.hasPrefix("postgres://") || text.hasPrefix("postgresql://")
    }

    /// `url` with any password replaced by `***`.
    static func redacted(_ url: String) -> String {
        guard var components = URLComponents(string: url) else { return "postgres://…" }
        if components.password != nil { components.password = "***" }
        components.queryItems = components.queryItems?.map {
            $0.name.lowercased() == "password" ? URLQueryItem(name: $0.name, value: "***") : $0
        }
        return components.string ?? "postgres://…"
    }

    public var description: String { url }
}

/// One libpq connection, used by one caller at a time (the store serialises its calls).
///
/// Statements are sent with their parameters apart (`PQexecParams`, text format), never pasted
/// into the SQL.
final class PostgresConnection: @unchecked Sendable {  // one caller at a time: the store holds it under its lock
    let location: PostgresLocation
    private let pq: LibPQ
    private var connection: OpaquePointer?

    /// Connects and checks the connection.
    /// - Throws: ``StoreError`` with libpq's message (host unreachable, authentication failed,
    ///   no such database), or when libpq is not installed.
    init(_ location: PostgresLocation, applicationName: String = "dem") throws {
        self.location = location
        pq = try LibPQ.shared.get()
        var keywords = ["dbname", "application_name", "connect_timeout"]
        var values = [location.url, applicationName, "10"]
        if let password = location.password {
            keywords.append("password")
            values.append(password)
        }
        let pq = self.pq
        connection = Self.withCStrings(keywords) { keywords in
            Self.withCStrings(values) { values in pq.connectdbParams(keywords, values, 1) }
        }
        guard let connection, pq.status(connection) == LibPQ.connectionOK else {
            let message = connection.map { Self.message(pq.errorMessage($0)) } ?? "out of memory"
            if let connection { pq.finish(connection) }
            self.connection = nil
            throw StoreError(path: location.url, message: "cannot connect: \(message)")
        }
    }

    deinit {
        if let connection { pq.finish(connection) }
    }

    /// Whether the connection is up.
    var isConnected: Bool { connection.map { pq.status($0) == LibPQ.connectionOK } ?? false }

    /// Connects again after the server went away (a restart, a failover).
    func reconnect() throws {
        guard let connection else { throw StoreError(path: location.url, message: "not connected") }
        pq.reset(connection)
        guard pq.status(connection) == LibPQ.connectionOK else {
            throw StoreError(
                path: location.url,
                message: "cannot connect: \(Self.message(pq.errorMessage(connection)))"
            )
        }
    }

    /// Runs `sql` with `parameters` ($1, $2…; nil is NULL; without parameters `sql` may hold
    /// several statements).
    /// - Returns: the rows, each column as text (nil for NULL).
    /// - Throws: ``StoreError`` with the server's message and SQLSTATE.
    @discardableResult
    func execute(_ sql: String, _ parameters: [String?] = []) throws -> [[String?]] {
        guard let connection else { throw StoreError(path: location.url, message: "not connected") }
        if pq.status(connection) != LibPQ.connectionOK { try reconnect() }
        let pq = self.pq
        // Without parameters several statements may be sent at once (a migration's script).
        let result: OpaquePointer? =
            parameters.isEmpty
            ? pq.exec(connection, sql)
            : Self.withOptionalCStrings(parameters) { values in
                pq.execParams(connection, sql, Int32(parameters.count), nil, values, nil, nil, 0)
            }
        guard let result else {
            throw StoreError(path: location.url, message: Self.message(pq.errorMessage(connection)))
        }
        defer { pq.clear(result) }
        let status = pq.resultStatus(result)
        guard status == LibPQ.commandOK || status == LibPQ.tuplesOK else {
            var message = Self.message(pq.resultErrorMessage(result))
            if let state = pq.resultErrorField(result, LibPQ.sqlState) {
                message += " (SQLSTATE \(String(cString: state)))"
            }
            if pq.status(connection) != LibPQ.connectionOK { message += "; the connection to the server was lost" }
            throw StoreError(path: location.url, message: message)
        }
        let rows = Int(pq.ntuples(result))
        let columns = Int(pq.nfields(result))
        var table: [[String?]] = []
        table.reserveCapacity(rows)
        for row in 0..<rows {
            var values: [String?] = []
            values.reserveCapacity(columns)
            for column in 0..<columns {
                if pq.getisnull(result, Int32(row), Int32(column)) != 0 {
                    values.append(nil)
                } else {
                    values.append(pq.getvalue(result, Int32(row), Int32(column)).map { String(cString: $0) } ?? "")
                }
            }
            table.append(values)
        }
        return table
    }

    /// Runs `body` in a transaction: committed when it returns, rolled back when it throws.
    /// A connection found lost at the start (the server restarted since the last call) is made
    /// again first: nothing was sent yet, so nothing can have happened twice.
    func transaction<T>(_ begin: String = "BEGIN", _ body: () throws -> T) throws -> T {
        do {
            try execute(begin)
        } catch  where !isConnected {
            try reconnect()
            try execute(begin)
        }
        do {
            let value = try body()
            try execute("COMMIT")
            return value
        } catch {
            if isConnected { _ = try? execute("ROLLBACK") }
            throw error
        }
    }

    /// Waits up to `timeout` seconds for notifications (after `LISTEN`).
    /// - Returns: the notifications' channels and payloads; empty when none came in time.
    /// - Throws: ``StoreError`` when the connection is lost.
    func notifications(timeout: Double) throws -> [(channel: String, payload: String)] {
        guard let connection else { throw StoreError(path: location.url, message: "not connected") }
        var found = drain(connection)
        if !found.isEmpty { return found }
        var descriptor = pollfd(fd: pq.socket(connection), events: Int16(POLLIN), revents: 0)
        guard descriptor.fd >= 0 else { throw StoreError(path: location.url, message: "the connection was lost") }
        let ready = poll(&descriptor, 1, Int32(timeout * 1000))
        if ready > 0 {
            guard pq.consumeInput(connection) == 1 else {
                throw StoreError(path: location.url, message: Self.message(pq.errorMessage(connection)))
            }
            found = drain(connection)
        }
        return found
    }

    private func drain(_ connection: OpaquePointer) -> [(channel: String, payload: String)] {
        var found: [(channel: String, payload: String)] = []
        while let notification = pq.notifies(connection) {
            let channel = notification.load(fromByteOffset: LibPQ.notifyChannelOffset, as: UnsafePointer<CChar>?.self)
            let payload = notification.load(fromByteOffset: LibPQ.notifyPayloadOffset, as: UnsafePointer<CChar>?.self)
            found.append((channel.map { String(cString: $0) } ?? "", payload.map { String(cString: $0) } ?? ""))
            pq.freemem(notification)
        }
        return found
    }

    private static func message(_ text: UnsafePointer<CChar>?) -> String {
        guard let text else { return "unknown error" }
        return String(cString: text).trimmingCharacters(in: .whitespacesAndNewlines)
            .replacingOccurrences(of: "\n", with: "; ")
    }

    private static func withCStrings<T>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> T) -> T {
        withOptionalCStrings(strings) { body($0) }
    }

    /// `strings` as a NULL-terminated array of C strings, valid during `body`.
    private static func withOptionalCStrings<T>(
        _ strings: [String?],
        _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> T
    ) -> T {
        let copies: [UnsafeMutablePointer<CChar>?] = strings.map { $0.flatMap { strdup($0) } }
        defer { for copy in copies { free(copy) } }
        let pointers: [UnsafePointer<CChar>?] = copies.map { $0.map { UnsafePointer($0) } } + [nil]
        return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
    }
}
