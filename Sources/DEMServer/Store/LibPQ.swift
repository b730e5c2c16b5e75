import Foundation

/// PostgreSQL's client library, libpq (`libpq.so.5`), loaded when a PostgreSQL store is first
/// opened: dem on its embedded SQLite store neither needs it installed nor links it.
///
/// The calls are libpq's stable C API (`libpq-fe.h`); PGconn and PGresult are opaque.
struct LibPQ: @unchecked Sendable {  // function pointers into a library never unloaded
    typealias Connection = OpaquePointer
    typealias Result = OpaquePointer
    typealias Strings = UnsafePointer<UnsafePointer<CChar>?>

    let connectdbParams: @convention(c) (Strings, Strings, Int32) -> Connection?
    let status: @convention(c) (Connection) -> Int32
    let errorMessage: @convention(c) (Connection) -> UnsafePointer<CChar>?
    let finish: @convention(c) (Connection) -> Void
    let reset: @convention(c) (Connection) -> Void
    let exec: @convention(c) (Connection, UnsafePointer<CChar>) -> Result?
    let execParams:
        @convention(c) (
            Connection, UnsafePointer<CChar>, Int32, UnsafeRawPointer?, Strings, UnsafePointer<Int32>?,
            UnsafePointer<Int32>?, Int32
        ) -> Result?
    let resultStatus: @convention(c) (Result) -> Int32
    let resultErrorMessage: @convention(c) (Result) -> UnsafePointer<CChar>?
    let resultErrorField: @convention(c) (Result, Int32) -> UnsafePointer<CChar>?
    let ntuples: @convention(c) (Result) -> Int32
    let nfields: @convention(c) (Result) -> Int32
    let getisnull: @convention(c) (Result, Int32, Int32) -> Int32
    let getvalue: @convention(c) (Result, Int32, Int32) -> UnsafePointer<CChar>?
    let clear: @convention(c) (Result) -> Void
    let socket: @convention(c) (Connection) -> Int32
    let consumeInput: @convention(c) (Connection) -> Int32
    /// A `PGnotify *`: `relname` at offset 0, `be_pid`, then `extra` (LP64 offsets below).
    let notifies: @convention(c) (Connection) -> UnsafeMutableRawPointer?
    let freemem: @convention(c) (UnsafeMutableRawPointer) -> Void

    /// `ConnStatusType`'s CONNECTION_OK.
    static let connectionOK: Int32 = 0
    /// `ExecStatusType`'s PGRES_COMMAND_OK and PGRES_TUPLES_OK.
    static let commandOK: Int32 = 1
    static let tuplesOK: Int32 = 2
    /// `PG_DIAG_SQLSTATE`.
    static let sqlState = Int32(UInt8(ascii: "C"))
    /// Where `PGnotify`'s `relname` and `extra` are.
    static let notifyChannelOffset = 0
    static let notifyPayloadOffset = MemoryLayout<UnsafeRawPointer>.stride * 2

    /// The library, or why it cannot be had.
    static let shared: Swift.Result<LibPQ, StoreError> = load()

    private static func load() -> Swift.Result<LibPQ, StoreError> {
        let names = ["libpq.so.5", "libpq.so"]
        guard let handle = names.lazy.compactMap({ dlopen($0, RTLD_NOW) }).first else {
            let reason = dlerror().map { String(cString: $0) } ?? "not found"
            return .failure(
                StoreError(
                    path: "libpq.so.5",
                    message:
                        "PostgreSQL's client library cannot be loaded (\(reason)): install it (apt-get install libpq5) for a PostgreSQL --store"
                )
            )
        }
        var missing: [String] = []
        func symbol<T>(_ name: String, _: T.Type) -> T {
            guard let address = dlsym(handle, name) else {
                missing.append(name)
                return unsafeBitCast(
                    dlsym(handle, "PQlibVersion") ?? UnsafeMutableRawPointer(bitPattern: 1)!,
                    to: T.self
                )
            }
            return unsafeBitCast(address, to: T.self)
        }
        let library = LibPQ(
            connectdbParams: symbol(
                "PQconnectdbParams",
                (@convention(c) (Strings, Strings, Int32) -> Connection?).self
            ),
            status: symbol("PQstatus", (@convention(c) (Connection) -> Int32).self),
            errorMessage: symbol("PQerrorMessage", (@convention(c) (Connection) -> UnsafePointer<CChar>?).self),
            finish: symbol("PQfinish", (@convention(c) (Connection) -> Void).self),
            reset: symbol("PQreset", (@convention(c) (Connection) -> Void).self),
            exec: symbol("PQexec", (@convention(c) (Connection, UnsafePointer<CChar>) -> Result?).self),
            execParams: symbol(
                "PQexecParams",
                (@convention(c) (
                    Connection, UnsafePointer<CChar>, Int32, UnsafeRawPointer?, Strings, UnsafePointer<Int32>?,
                    UnsafePointer<Int32>?, Int32
                ) -> Result?).self
            ),
            resultStatus: symbol("PQresultStatus", (@convention(c) (Result) -> Int32).self),
            resultErrorMessage: symbol("PQresultErrorMessage", (@convention(c) (Result) -> UnsafePointer<CChar>?).self),
            resultErrorField: symbol(
                "PQresultErrorField",
                (@convention(c) (Result, Int32) -> UnsafePointer<CChar>?).self
            ),
            ntuples: symbol("PQntuples", (@convention(c) (Result) -> Int32).self),
            nfields: symbol("PQnfields", (@convention(c) (Result) -> Int32).self),
            getisnull: symbol("PQgetisnull", (@convention(c) (Result, Int32, Int32) -> Int32).self),
            getvalue: symbol("PQgetvalue", (@convention(c) (Result, Int32, Int32) -> UnsafePointer<CChar>?).self),
            clear: symbol("PQclear", (@convention(c) (Result) -> Void).self),
            socket: symbol("PQsocket", (@convention(c) (Connection) -> Int32).self),
            consumeInput: symbol("PQconsumeInput", (@convention(c) (Connection) -> Int32).self),
            notifies: symbol("PQnotifies", (@convention(c) (Connection) -> UnsafeMutableRawPointer?).self),
            freemem: symbol("PQfreemem", (@convention(c) (UnsafeMutableRawPointer) -> Void).self)
        )
        guard missing.isEmpty else {
            return .failure(
                StoreError(
                    path: "libpq.so.5",
                    message:
                        "PostgreSQL's client library lacks \(missing.joined(separator: ", ")): install libpq5 of PostgreSQL 10 or later"
                )
            )
        }
        return .success(library)
    }
}
