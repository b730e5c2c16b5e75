import DEMCore
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The controllers dem-ac created: the only ones it may disconnect.
public struct ConnectionLedger: Sendable, Hashable {
    /// One controller dem-ac created: its kernel name and what it connects.
    public struct Record: Sendable, Hashable {
        /// The kernel's name, such as `nvme3`.
        public var name: String
        public var key: ConnectionKey

        public init(name: String, key: ConnectionKey) {
            self.name = name
            self.key = key
        }

        /// Whether `controller` is this record's controller: the same name and connection
        /// (the kernel reuses names, so a name alone is not enough).
        public func matches(_ controller: KernelController) -> Bool {
            controller.name == name && key.matches(controller)
        }
    }

    /// The records, by controller instance number.
    public private(set) var records: [Record]

    public init(records: [Record] = []) {
        self.records = []
        for record in records { self.record(record) }
    }

    /// Whether dem-ac created `controller`.
    public func owns(_ controller: KernelController) -> Bool {
        records.contains { $0.matches(controller) }
    }

    /// Records `record`, replacing an older record of the same controller name.
    public mutating func record(_ record: Record) {
        records.removeAll { $0.name == record.name }
        records.append(record)
        records.sort { lhs, rhs in
            let left = KernelController.instance(ofName: lhs.name) ?? Int.max
            let right = KernelController.instance(ofName: rhs.name) ?? Int.max
            return left != right ? left < right : lhs.name < rhs.name
        }
    }

    /// Records that dem-ac created controller `name` for `options`.
    public mutating func recordConnected(name: String, options: ConnectOptions) {
        record(Record(name: name, key: ConnectionKey(options)))
    }

    /// Forgets controller `name`.
    public mutating func forget(name: String) {
        records.removeAll { $0.name == name }
    }

    /// The ledger without the records whose controller is gone from `existing` (deleted, or its
    /// name now belongs to another connection).
    public func pruned(existing: [KernelController]) -> ConnectionLedger {
        var copy = self
        copy.records.removeAll { record in !existing.contains(where: record.matches) }
        return copy
    }
}

/// The ledger's JSON file in the state directory, written atomically (temporary file, fsync,
/// rename, fsync of the folder) so a crash leaves the old or the new version.
public struct ConnectionLedgerFile: Sendable {
    /// The schema this build writes.
    public static let currentVersion = 1
    /// The file's name in the state directory.
    public static let fileName = "connections.json"

    public let path: String

    public init(path: String) {
        self.path = path
    }

    /// The ledger file in `stateDirectory`.
    public init(stateDirectory: String) {
        self.init(path: (stateDirectory.hasSuffix("/") ? stateDirectory : stateDirectory + "/") + Self.fileName)
    }

    private struct File: Codable {
        var version: Int
        var controllers: [Entry]
    }

    /// A record, flat.
    private struct Entry: Codable {
        var name: String
        var transport: String
        var traddr: String
        var trsvcid: String
        var subnqn: String
        var hostnqn: String

        init(_ record: ConnectionLedger.Record) {
            name = record.name
            transport = record.key.transport
            traddr = record.key.traddr
            trsvcid = record.key.trsvcid
            subnqn = record.key.subsystemNQN
            hostnqn = record.key.hostNQN
        }

        var record: ConnectionLedger.Record {
            ConnectionLedger.Record(
                name: name,
                key: ConnectionKey(
                    transport: transport,
                    traddr: traddr,
                    trsvcid: trsvcid,
                    subsystemNQN: subnqn,
                    hostNQN: hostnqn
                )
            )
        }
    }

    /// The recorded ledger, or — when the file cannot be read — an empty one, with the damaged
    /// file moved aside to `connections.json.damaged-TIME` (so the next save does not overwrite
    /// what it still says) and the error.
    public func loadSettingAsideDamage() -> (
        ledger: ConnectionLedger, damage: (error: ConnectionLedgerError, keptAs: String?)?
    ) {
        do {
            return (try load(), nil)
        } catch {
            let kept = path + ".damaged-" + String(Int(Date().timeIntervalSince1970))
            return (ConnectionLedger(), (error, rename(path, kept) == 0 ? kept : nil))
        }
    }

    /// The recorded ledger; empty when the file does not exist yet. Throws when it is
    /// unreadable or malformed: dem-ac must not forget what it created by accident.
    public func load() throws(ConnectionLedgerError) -> ConnectionLedger {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            if !FileManager.default.fileExists(atPath: path) { return ConnectionLedger() }
            throw ConnectionLedgerError(path: path, message: "read: \(error)")
        }
        let file: File
        do {
            file = try JSONDecoder().decode(File.self, from: data)
        } catch {
            throw ConnectionLedgerError(path: path, message: "malformed ledger: \(error)")
        }
        guard file.version <= Self.currentVersion else {
            throw ConnectionLedgerError(
                path: path,
                message: "ledger version \(file.version) is newer than this build's"
            )
        }
        return ConnectionLedger(records: file.controllers.map(\.record))
    }

    /// Replaces the file with `ledger`, atomically, creating its folder when missing.
    public func save(_ ledger: ConnectionLedger) throws(ConnectionLedgerError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data: Data
        do {
            data = try encoder.encode(File(version: Self.currentVersion, controllers: ledger.records.map(Entry.init)))
        } catch {
            throw ConnectionLedgerError(path: path, message: "encode: \(error)")
        }
        do {
            try AtomicFile.write(data, to: path)
        } catch {
            throw ConnectionLedgerError(path: error.path, message: error.message)
        }
    }
}

/// The ledger could not be read or written.
public struct ConnectionLedgerError: Error, Sendable, Hashable, CustomStringConvertible {
    public var path: String
    public var message: String

    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { "ledger \(path): \(message)" }
}
