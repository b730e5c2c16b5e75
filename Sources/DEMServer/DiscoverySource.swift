import DEMCore
import Foundation

/// Which hosts may see a discovery entry.
public enum HostAccess: Sendable, Hashable {
    /// Every host.
    case anyHost
    /// Only hosts with one of these NQNs.
    case hosts(Set<String>)

    /// Whether `hostNQN` may see the entry.
    public func allows(_ hostNQN: String) -> Bool {
        switch self {
        case .anyHost: return true
        case .hosts(let allowed): return allowed.contains(hostNQN)
        }
    }
}

/// One entry a discovery source offers, with the hosts that may see it.
public struct SourceEntry: Sendable, Hashable {
    /// The discovery log entry.
    public var entry: DiscoveryLogEntry
    /// Who may see it.
    public var access: HostAccess

    public init(entry: DiscoveryLogEntry, access: HostAccess = .anyHost) {
        self.entry = entry
        self.access = access
    }
}

/// Where the entries dem serves come from. The JSON file source is the one implementation until
/// the store exists; the store will be the next.
public protocol DiscoverySource: Sendable {
    /// A name for logs.
    var name: String { get }
    /// Reads every entry now.
    /// - Throws: ``DiscoverySourceError`` naming what is wrong.
    func load() throws(DiscoverySourceError) -> [SourceEntry]
    /// A cheap token that changes when the source may have changed (file size and time), or `nil`
    /// when the source cannot tell.
    func changeToken() -> String?
}

/// A discovery source that cannot be read, with the field at fault.
public struct DiscoverySourceError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The JSON path of the field at fault, such as `entries[2].subnqn`, or the file.
    public var field: String
    /// What is wrong.
    public var message: String

    public init(field: String, message: String) {
        self.field = field
        self.message = message
    }

    public var description: String { "\(field): \(message)" }
}
