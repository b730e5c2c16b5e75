import DEMCore
import Dispatch
import Logging
import Synchronization

/// Feeds the fabric model's entries into the ``DiscoveryCatalog``, coalescing a burst of changes
/// into one catalog update, so that a connected host gets one change notice for the burst.
///
/// A change schedules an update `coalescing` later; changes that arrive meanwhile join it.
/// ``flush()`` applies a pending update at once (the REST API does so before it answers with a
/// host's page, so the page it shows is the one the discovery controller serves).
public final class DiscoveryModelFeed: Sendable {
    private struct State {
        var pending: Fabric?
        var scheduled = false
    }

    /// The catalog fed.
    public let catalog: DiscoveryCatalog
    /// How long a change waits for others to join it.
    public let coalescing: Duration
    private let state = Mutex(State())
    private let queue = DispatchQueue(label: "dem.discovery.feed")
    private let logger: Logger
    private let updated: @Sendable (_ notified: Int) -> Void

    /// - Parameter updated: called after each catalog update with the number of connected
    ///   controllers notified.
    public init(
        catalog: DiscoveryCatalog,
        coalescing: Duration = .milliseconds(50),
        logger: Logger,
        updated: @escaping @Sendable (_ notified: Int) -> Void = { _ in }
    ) {
        self.catalog = catalog
        self.coalescing = coalescing
        self.logger = logger
        self.updated = updated
    }

    /// The catalog entries of `fabric`.
    public static func sourceEntries(_ fabric: Fabric) -> [SourceEntry] {
        fabric.discoveryEntries().map { entry in
            SourceEntry(entry: entry.entry, access: entry.allowedHostNQNs.map { .hosts($0) } ?? .anyHost)
        }
    }

    /// Loads `fabric` into the catalog now (at start).
    public func load(_ fabric: Fabric) {
        catalog.update(entries: Self.sourceEntries(fabric), from: .store)
    }

    /// Schedules an update to `fabric`.
    public func changed(_ fabric: Fabric) {
        let schedule = state.withLock { state in
            state.pending = fabric
            defer { state.scheduled = true }
            return !state.scheduled
        }
        guard schedule else { return }
        let (seconds, attoseconds) = coalescing.components
        let delay = DispatchTimeInterval.nanoseconds(Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000))
        queue.asyncAfter(deadline: .now() + delay) { [self] in apply() }
    }

    /// Applies a pending update now.
    public func flush() {
        queue.sync { apply() }
    }

    private func apply() {
        do {
            let fabric: Fabric? = state.withLock { state in
                defer {
                    state.pending = nil
                    state.scheduled = false
                }
                return state.pending
            }
            guard let fabric else { return }
            let notified = catalog.update(entries: Self.sourceEntries(fabric), from: .store)
            logger.debug(
                "discovery entries updated from the model",
                metadata: ["generation": "\(catalog.generation)", "controllers-with-a-changed-page": "\(notified)"]
            )
            updated(notified)
        }
    }
}
