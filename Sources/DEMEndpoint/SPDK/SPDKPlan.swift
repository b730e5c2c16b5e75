import DEMCore

/// What dem-em made in an SPDK target and may change or delete (`owned-spdk.json`). SPDK keeps
/// nothing across a restart: entries whose object is gone are forgotten, and the desired state
/// makes them again.
public struct SPDKOwnership: LedgerContents, Hashable {
    public var subsystems: Set<String>
    /// bdev name → kind (malloc, null, aio): the kind picks the delete call.
    public var bdevs: [String: String]
    /// NVMe controllers attached by PCI address.
    public var controllers: Set<String>
    /// Listeners of the discovery subsystem (``SPDKAddress/description``).
    public var discoveryListeners: Set<String>

    enum CodingKeys: String, CodingKey {
        case subsystems = "Subsystems"
        case bdevs = "Bdevs"
        case controllers = "Controllers"
        case discoveryListeners = "DiscoveryListeners"
    }

    public init() {
        subsystems = []
        bdevs = [:]
        controllers = []
        discoveryListeners = []
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        subsystems = Set(try c.decodeIfPresent([String].self, forKey: .subsystems) ?? [])
        bdevs = try c.decodeIfPresent([String: String].self, forKey: .bdevs) ?? [:]
        controllers = Set(try c.decodeIfPresent([String].self, forKey: .controllers) ?? [])
        discoveryListeners = Set(try c.decodeIfPresent([String].self, forKey: .discoveryListeners) ?? [])
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(subsystems.sorted(), forKey: .subsystems)
        try c.encode(bdevs, forKey: .bdevs)
        try c.encode(controllers.sorted(), forKey: .controllers)
        try c.encode(discoveryListeners.sorted(), forKey: .discoveryListeners)
    }

    public var count: Int { subsystems.count + bdevs.count + controllers.count + discoveryListeners.count }
    public var isEmpty: Bool { count == 0 }

    /// Records `object`; false when it was recorded already.
    @discardableResult
    public mutating func insert(_ object: SPDKObject) -> Bool {
        switch object {
        case .subsystem(let nqn): return subsystems.insert(nqn).inserted
        case .bdev(let name, let kind): return bdevs.updateValue(kind, forKey: name) == nil
        case .controller(let name): return controllers.insert(name).inserted
        case .discoveryListener(let key): return discoveryListeners.insert(key).inserted
        }
    }

    /// Forgets `object`; false when it was not recorded.
    @discardableResult
    public mutating func remove(_ object: SPDKObject) -> Bool {
        switch object {
        case .subsystem(let nqn): return subsystems.remove(nqn) != nil
        case .bdev(let name, _): return bdevs.removeValue(forKey: name) != nil
        case .controller(let name): return controllers.remove(name) != nil
        case .discoveryListener(let key): return discoveryListeners.remove(key) != nil
        }
    }

    /// Every object recorded.
    public var objects: [SPDKObject] {
        subsystems.sorted().map { .subsystem($0) }
            + bdevs.sorted { $0.key < $1.key }.map { .bdev($0.key, kind: $0.value) }
            + controllers.sorted().map { .controller($0) } + discoveryListeners.sorted().map { .discoveryListener($0) }
    }

    /// Every subsystem, RAM, null and AIO bdev, controller and discovery listener of `state`
    /// (for a reset of all; bdevs of other kinds have delete calls of their own, and stay).
    public static func everything(in state: SPDKState) -> SPDKOwnership {
        var owned = SPDKOwnership()
        owned.subsystems = Set(state.storageSubsystems.map(\.nqn))
        let controllers = Set(state.controllers.map(\.name))
        for bdev in state.bdevs where !controllers.contains(where: { bdev.name.hasPrefix($0 + "n") }) {
            let kind = SPDKBackend.kind(ofProduct: bdev.product)
            if kind != "existing" { owned.bdevs[bdev.name] = kind }
        }
        owned.controllers = controllers
        owned.discoveryListeners = Set(state.discoveryListeners.map(\.description))
        return owned
    }

    /// Drops what `state` no longer has.
    public func present(in state: SPDKState) -> SPDKOwnership {
        var kept = self
        let subsystems = Set(state.storageSubsystems.map(\.nqn))
        let bdevs = Set(state.bdevs.map(\.name))
        let controllers = Set(state.controllers.map(\.name))
        let listeners = Set(state.discoveryListeners.map(\.description))
        kept.subsystems = kept.subsystems.filter { subsystems.contains($0) }
        kept.bdevs = kept.bdevs.filter { bdevs.contains($0.key) }
        kept.controllers = kept.controllers.filter { controllers.contains($0) }
        kept.discoveryListeners = kept.discoveryListeners.filter { listeners.contains($0) }
        return kept
    }
}

/// An object of the SPDK target dem-em can own.
public enum SPDKObject: Sendable, Hashable, CustomStringConvertible {
    case subsystem(String)
    case bdev(String, kind: String)
    case controller(String)
    case discoveryListener(String)

    public var description: String {
        switch self {
        case .subsystem(let nqn): "subsystem \(nqn)"
        case .bdev(let name, let kind): "\(kind) bdev \(name)"
        case .controller(let name): "NVMe controller \(name)"
        case .discoveryListener(let key): "discovery listener \(key)"
        }
    }

    /// What later operations that need this object name it by.
    var dependency: String {
        switch self {
        case .subsystem(let nqn): "subsystem:\(nqn)"
        case .bdev(let name, _): "bdev:\(name)"
        case .controller(let name): "controller:\(name)"
        case .discoveryListener(let key): "listener:\(key)"
        }
    }
}

/// One JSON-RPC call of a plan.
public struct SPDKOperation: Sendable, Hashable, CustomStringConvertible {
    public var method: String
    public var params: JSONValue
    /// What it acts on, for logs and errors: `subsystem nqn…`, `malloc bdev M2`.
    public var object: String
    /// An object it makes: recorded in the ledger before the call.
    public var claim: SPDKObject?
    /// An object it deletes: forgotten after the call.
    public var release: SPDKObject?
    /// Objects made earlier in the plan that it needs; when one could not be made it is skipped.
    public var needs: [String]

    public init(
        _ method: String,
        _ params: JSONValue,
        object: String,
        claim: SPDKObject? = nil,
        release: SPDKObject? = nil,
        needs: [String] = []
    ) {
        self.method = method
        self.params = params
        self.object = object
        self.claim = claim
        self.release = release
        self.needs = needs
    }

    public var description: String { "\(method) \(object)" }
}

/// What the planner found and would do.
public struct SPDKPlan: Sendable, Hashable {
    public var operations: [SPDKOperation] = []
    public var drift: [EndpointDrift] = []
    /// Desired objects left alone because dem-em does not own them.
    public var foreign: [String] = []
    public var notes: [String] = []
    /// Parts of the desired state this backend cannot apply: `field: why`.
    public var problems: [String] = []
    /// Objects taken over (`adopt`).
    public var adopted: [SPDKObject] = []
}
