import DEMCore
import Foundation
import Synchronization

/// The credential dem uses with each target's dem-em for what TLS does not cover (the in-band
/// channel's DH-HMAC-CHAP, the seal of its hosts' DH-HMAC-CHAP keys, plain HTTP).
///
/// A target that enrolled has a credential of its own, derived from dem's fabric credential and
/// its alias and given to it at enrolment: the fabric credential never leaves dem, and a
/// target's credential drives that target alone. A target that has not enrolled (a dem-em given
/// a copy of `fabric.key`, as before enrolment existed) still uses the fabric credential until
/// it enrols. The enrolled aliases are kept in `enrolled-targets.json` in dem's data directory,
/// or, for dem replicas, in the database they share (``TargetEnrolments``): the aliases only,
/// no secret, so that whichever replica manages a target derives the same credential.
public final class TargetCredentials: Sendable {
    public static let fileName = "enrolled-targets.json"

    let fabric: String
    /// Where the enrolled aliases are kept (nil: in memory).
    let path: String?
    /// The store shared with the other replicas, when there is one: the enrolments' record.
    let shared: (any TargetEnrolments)?
    /// Enrolled aliases, and when.
    private let enrolled: Mutex<[String: Date]>

    /// The fabric credential `fabric`, with the enrolments recorded in `directory` (nil: none
    /// kept), or in `shared`: then the ones in `directory`'s file (from before the replica used
    /// the shared store) are added to it.
    public init(fabric: String, directory: String? = nil, shared: (any TargetEnrolments)? = nil) throws {
        self.fabric = fabric
        self.path = directory.map { $0 + "/" + Self.fileName }
        self.shared = shared
        var known: [String: Date] = [:]
        if let path, let data = FileManager.default.contents(atPath: path) {
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .iso8601
            guard let decoded = try? decoder.decode([String: Date].self, from: data) else {
                throw DEMStartError(
                    "\(path) cannot be read: restore it from a backup (without it, enrolled targets are taken for ones that use fabric.key)"
                )
            }
            known = decoded
        }
        if let shared {
            let stored = try shared.loadEnrolments()
            for (alias, date) in known where stored[alias] == nil {
                try shared.recordEnrolment(alias, at: date)
            }
            known.merge(stored) { _, stored in stored }
        }
        enrolled = Mutex(known)
    }

    /// Reads the enrolments again from the shared store (another replica enrolled a target).
    /// - Throws: the store's error; the enrolments known stay.
    public func reload() throws {
        guard let shared else { return }
        let stored = try shared.loadEnrolments()
        enrolled.withLock { $0 = stored }
    }

    /// The credential of target `alias`: its own when it enrolled, else the fabric's.
    public func credential(for alias: String) -> String {
        isEnrolled(alias) ? FabricCredential.derived(from: fabric, for: alias) : fabric
    }

    public func isEnrolled(_ alias: String) -> Bool { enrolled.withLock { $0[alias] != nil } }

    /// Records that target `alias` enrolled (kept before it is answered). - Returns: its credential.
    public func enrol(_ alias: String, at date: Date = Date()) throws -> String {
        try enrolled.withLock { enrolled in
            var next = enrolled
            next[alias] = date
            if let shared {
                try shared.recordEnrolment(alias, at: date)
            } else if let path {
                let encoder = JSONEncoder()
                encoder.dateEncodingStrategy = .iso8601
                encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
                try AtomicFile.write(try encoder.encode(next), to: path, mode: 0o600, folderMode: 0o700)
            }
            enrolled = next
        }
        return FabricCredential.derived(from: fabric, for: alias)
    }
}

/// Where dem replicas keep which targets enrolled (aliases and dates: no secret).
public protocol TargetEnrolments: Sendable {
    func loadEnrolments() throws -> [String: Date]
    /// Records that `alias` enrolled at `date`, and tells the other replicas.
    func recordEnrolment(_ alias: String, at date: Date) throws
}
