import DEMCore
import Foundation
import NIOCore

/// Who among several dem replicas manages each target, one at a time, and what it found there.
///
/// The replica holding a target's lease pushes to its dem-em, probes it and reads it; it shares
/// each outcome, and the other replicas record it as their own, so every replica serves what the
/// target confirmed. When the manager dies its lease runs out and another replica's next probe
/// takes it.
public protocol TargetCoordinator: Sendable {
    /// Whether this replica manages target `alias` now: takes its lease when free or run out,
    /// renews it when held. A store that cannot be reached answers false (nobody new takes it).
    func claim(_ alias: String) async -> Bool
    /// Shares what this replica, the manager, found at target `alias`.
    func share(_ alias: String, _ outcome: SharedTargetOutcome) async
    /// Gives up every lease this replica holds (a graceful shutdown: another takes over at once).
    func releaseAll() async
}

/// A target pass's outcome as the manager shares it with the other replicas (JSON).
public struct SharedTargetOutcome: Codable, Sendable, Hashable {
    /// Managed targets: its dem-em's status, and the configuration pushed in that pass.
    public var status: EndpointStatus?
    public var pushed: EndpointConfiguration?
    /// Local targets: the entries read from its discovery controller, each its 1024 bytes in
    /// base64.
    public var harvested: [String]?
    /// The failure, when the pass failed.
    public var failure: String?

    enum CodingKeys: String, CodingKey {
        case status = "Status"
        case pushed = "Pushed"
        case harvested = "Harvested"
        case failure = "Failure"
    }

    init?(_ outcome: TargetWatch.Outcome) {
        switch outcome {
        case .managed(let status, let pushed, _):
            self.status = status
            self.pushed = pushed
        case .harvested(let entries):
            harvested = entries.map { entry in
                var buffer = ByteBufferAllocator().buffer(capacity: DiscoveryLogEntry.size)
                buffer.writeDiscoveryLogEntry(entry)
                return Data(buffer.readableBytesView).base64EncodedString()
            }
        case .failed(let message):
            failure = message
        case .nothing:
            return nil
        }
    }

    /// The outcome to record; nil when it cannot be read back.
    var outcome: TargetWatch.Outcome? {
        if let failure { return .failed(failure) }
        if let status { return .managed(status, pushed: pushed, inventory: nil) }
        guard let harvested else { return nil }
        var entries: [DiscoveryLogEntry] = []
        for text in harvested {
            guard let data = Data(base64Encoded: text) else { return nil }
            var buffer = ByteBuffer(bytes: data)
            guard let entry = buffer.readDiscoveryLogEntry() else { return nil }
            entries.append(entry)
        }
        return .harvested(entries)
    }
}

/// Target leases and shared outcomes in the PostgreSQL store that the replicas share.
public struct PostgresTargetCoordinator: TargetCoordinator {
    let store: PostgresFabricStore
    /// This replica's identity in the leases.
    let replica: String
    /// How long a lease lasts without renewal (a few probe intervals).
    let lease: Duration

    public init(store: PostgresFabricStore, replica: String, lease: Duration) {
        self.store = store
        self.replica = replica
        self.lease = lease
    }

    public func claim(_ alias: String) async -> Bool {
        await offThread { (try? store.claimTarget(alias, owner: replica, seconds: lease.seconds)) ?? false }
    }

    public func share(_ alias: String, _ outcome: SharedTargetOutcome) async {
        guard let body = try? JSONEncoder().encode(outcome) else { return }
        await offThread {
            try? store.shareTargetOutcome(alias, owner: replica, body: String(decoding: body, as: UTF8.self))
        }
    }

    public func releaseAll() async {
        await offThread { try? store.releaseTargets(owner: replica) }
    }

    /// Another replica's outcome for target `alias`, when the manager is not this replica.
    public func sharedOutcome(_ alias: String) async -> SharedTargetOutcome? {
        await offThread {
            guard let (owner, body) = try? store.targetOutcome(alias), owner != replica else { return nil }
            return try? JSONDecoder().decode(SharedTargetOutcome.self, from: Data(body.utf8))
        }
    }
}

/// Runs a blocking store call (libpq waits for the server, up to its connect timeout when the
/// server is gone) on a thread of its own, not on one of Swift concurrency's few.
func offThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(returning: body()) }
    }
}

extension Duration {
    var seconds: Double {
        let parts = components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }
}
