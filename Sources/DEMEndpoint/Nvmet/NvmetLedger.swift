import DEMCore
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What a ledger keeps: the objects a backend owns.
public protocol LedgerContents: Codable, Sendable {
    /// Nothing owned.
    init()
}

extension NvmetOwnership: LedgerContents {
    public init() { self.init(ports: [], subsystems: [], hosts: []) }
}

/// The ledger of the nvmet backend (`owned.json`).
public typealias NvmetLedger = OwnershipLedger<NvmetOwnership>

/// The JSON file recording what dem-em owns in a target (the nvmet tree, an SPDK target),
/// written atomically (temporary file, fsync, rename, fsync of the folder) so a crash leaves the
/// old or the new version.
public struct OwnershipLedger<Owned: LedgerContents>: Sendable {
    /// The ledger's schema.
    public static var currentVersion: Int { 1 }

    public let path: String

    public init(path: String) {
        self.path = path
    }

    /// The file's contents: a version and the owned objects.
    private struct File: Codable {
        var version: Int
        var owned: Owned

        enum CodingKeys: String, CodingKey {
            case version = "Version"
            case owned = "Owned"
        }
    }

    /// The recorded ownership; empty when the file does not exist yet. Throws when the file is
    /// unreadable or malformed (dem-em must not forget what it owns by accident).
    public func load() throws -> Owned {
        guard FileManager.default.fileExists(atPath: path) else { return Owned() }
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let file: File
        do {
            file = try JSONDecoder().decode(File.self, from: data)
        } catch {
            throw NvmetLedgerError(path: path, message: "malformed ledger: \(error)")
        }
        guard file.version <= Self.currentVersion else {
            throw NvmetLedgerError(path: path, message: "ledger version \(file.version) is newer than this build's")
        }
        return file.owned
    }

    /// Replaces the file with `owned`, atomically, creating its folder when missing.
    public func save(_ owned: Owned) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(File(version: Self.currentVersion, owned: owned))
        do {
            try AtomicFile.write(data, to: path)
        } catch {
            throw NvmetLedgerError(path: error.path, message: error.message)
        }
    }
}

/// The ledger could not be read or written.
public struct NvmetLedgerError: Error, Sendable, Hashable, CustomStringConvertible {
    public var path: String
    public var message: String

    public var description: String { "ledger \(path): \(message)" }
}
