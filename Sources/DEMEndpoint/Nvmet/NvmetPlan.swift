import DEMCore

// The planner's vocabulary: filesystem operations on the nvmet tree, the set of objects dem-em
// owns, and the plan that carries both together with what it found (drift, foreign objects).

/// One change to the nvmet tree. Paths are relative to the nvmet root.
public enum NvmetOperation: Sendable, Hashable, CustomStringConvertible {
    case makeDirectory(String)
    case removeDirectory(String)
    case writeAttribute(String, value: String)
    /// A symlink at the first path pointing at `target` (also relative to the root).
    case createLink(String, target: String)
    case removeLink(String)

    /// The path the operation changes.
    public var path: String {
        switch self {
        case .makeDirectory(let path), .removeDirectory(let path), .writeAttribute(let path, _),
            .createLink(let path, _), .removeLink(let path):
            path
        }
    }

    /// One line, such as `write ports/1/addr_trtype = tcp`.
    public var description: String {
        switch self {
        case .makeDirectory(let path): "mkdir \(path)"
        case .removeDirectory(let path): "rmdir \(path)"
        case .writeAttribute(let path, let value):
            path.hasSuffix("/dhchap_key") || path.hasSuffix("/dhchap_ctrl_key")
                ? "write \(path) = (secret)" : "write \(path) = \(value)"
        case .createLink(let path, let target): "symlink \(path) -> \(target)"
        case .removeLink(let path): "unlink \(path)"
        }
    }
}

/// The objects dem-em created and therefore manages: ports by id, subsystems and hosts by NQN.
/// Anything else in the tree is foreign.
public struct NvmetOwnership: Codable, Sendable, Hashable {
    public var ports: Set<Int>
    public var subsystems: Set<String>
    public var hosts: Set<String>

    enum CodingKeys: String, CodingKey {
        case ports = "Ports"
        case subsystems = "Subsystems"
        case hosts = "Hosts"
    }

    public init(ports: Set<Int> = [], subsystems: Set<String> = [], hosts: Set<String> = []) {
        self.ports = ports
        self.subsystems = subsystems
        self.hosts = hosts
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        ports = Set(try c.decodeIfPresent([Int].self, forKey: .ports) ?? [])
        subsystems = Set(try c.decodeIfPresent([String].self, forKey: .subsystems) ?? [])
        hosts = Set(try c.decodeIfPresent([String].self, forKey: .hosts) ?? [])
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(ports.sorted(), forKey: .ports)
        try c.encode(subsystems.sorted(), forKey: .subsystems)
        try c.encode(hosts.sorted(), forKey: .hosts)
    }

    /// Every port, subsystem and host of `tree`.
    public static func everything(in tree: NvmetTree) -> NvmetOwnership {
        NvmetOwnership(
            ports: Set(tree.ports.map(\.id)),
            subsystems: Set(tree.subsystems.map(\.nqn)),
            hosts: Set(tree.hosts)
        )
    }

    public var isEmpty: Bool { ports.isEmpty && subsystems.isEmpty && hosts.isEmpty }

    /// The owned objects as tree paths (`ports/1`, `subsystems/<nqn>`, `hosts/<nqn>`), sorted.
    public var objects: [String] {
        ports.sorted().map { "ports/\($0)" } + subsystems.sorted().map { "subsystems/\($0)" }
            + hosts.sorted().map { "hosts/\($0)" }
    }

    /// Whether `object` (a tree path such as `ports/1`) is owned.
    public func contains(object: String) -> Bool {
        switch Self.split(object) {
        case ("ports", let name)?: Int(name).map { ports.contains($0) } ?? false
        case ("subsystems", let name)?: subsystems.contains(name)
        case ("hosts", let name)?: hosts.contains(name)
        default: false
        }
    }

    /// Records `object` (a tree path such as `ports/1`); false when it is not a port, subsystem
    /// or host path or was already owned.
    @discardableResult
    public mutating func insert(object: String) -> Bool {
        switch Self.split(object) {
        case ("ports", let name)?: Int(name).map { ports.insert($0).inserted } ?? false
        case ("subsystems", let name)?: subsystems.insert(name).inserted
        case ("hosts", let name)?: hosts.insert(name).inserted
        default: false
        }
    }

    /// Forgets `object`; false when it was not owned.
    @discardableResult
    public mutating func remove(object: String) -> Bool {
        switch Self.split(object) {
        case ("ports", let name)?: Int(name).map { ports.remove($0) != nil } ?? false
        case ("subsystems", let name)?: subsystems.remove(name) != nil
        case ("hosts", let name)?: hosts.remove(name) != nil
        default: false
        }
    }

    /// `(group, name)` of a top-level object path.
    private static func split(_ object: String) -> (String, String)? {
        let parts = object.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[1].isEmpty else { return nil }
        return (String(parts[0]), String(parts[1]))
    }
}

/// What it takes to bring the tree to the desired state, and what the planner saw on the way.
public struct NvmetPlan: Sendable, Hashable {
    /// The operations, in dependency order.
    public var operations: [NvmetOperation]
    /// Desired objects that exist but dem-em does not own; left alone (`ports/1`,
    /// `subsystems/<nqn>`, `hosts/<nqn>`), sorted.
    public var foreign: [String]
    /// Foreign desired objects the plan takes over (with `adopt`), sorted.
    public var adopted: [String]
    /// Differences between the desired state and the tree before the operations.
    public var drift: [EndpointDrift]
    /// Things the planner chose not to do and why (a deletion held back by a foreign link, a
    /// name that cannot be a directory).
    public var notes: [String]

    public init(
        operations: [NvmetOperation] = [],
        foreign: [String] = [],
        adopted: [String] = [],
        drift: [EndpointDrift] = [],
        notes: [String] = []
    ) {
        self.operations = operations
        self.foreign = foreign
        self.adopted = adopted
        self.drift = drift
        self.notes = notes
    }

    /// Whether there is nothing to do.
    public var isEmpty: Bool { operations.isEmpty }
}
