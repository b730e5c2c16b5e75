import DEMCore
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The JSON file recording what dem-em owns in the nvmet tree, written atomically (temporary
/// file, fsync, rename, fsync of the folder) so a crash leaves the old or the new version.
public struct NvmetLedger: Sendable {
    /// The ledger's schema.
    public static let currentVersion = 1

    public let path: String

    public init(path: String) {
        self.path = path
    }

    /// The file's contents: a version and the owned objects.
    private struct File: Codable {
        var version: Int
        var owned: NvmetOwnership

        enum CodingKeys: String, CodingKey {
            case version = "Version"
            case owned = "Owned"
        }
    }

    /// The recorded ownership; empty when the file does not exist yet. Throws when the file is
    /// unreadable or malformed (dem-em must not forget what it owns by accident).
    public func load() throws -> NvmetOwnership {
        guard FileManager.default.fileExists(atPath: path) else { return NvmetOwnership() }
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
    public func save(_ owned: NvmetOwnership) throws {
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
