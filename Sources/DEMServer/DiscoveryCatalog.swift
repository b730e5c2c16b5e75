import DEMCore
import NIOCore
import Synchronization

/// One of dem's own discovery listeners, served to hosts as a SUBTYPE 3 entry (TP8013).
public struct DiscoveryListenerAddress: Sendable, Hashable {
    /// The IP address bound (may be a wildcard such as 0.0.0.0).
    public var address: String
    /// The TCP port.
    public var port: Int

    public init(address: String, port: Int) {
        self.address = address
        self.port = port
    }

    /// Whether the address is a wildcard, to be replaced by the address the host reached.
    public var isWildcard: Bool { address == "0.0.0.0" || address == "::" }
}

/// Every host's view of the discovery service: which entries each host may see, the page bytes,
/// the per-host generation counter, and change notices to the connected hosts whose view changed.
///
/// Thread-safe; every connection calls it. GENCTR is per view: a host's page keeps its GENCTR
/// until an update changes what that host sees, and then takes the new global generation, so it
/// only ever grows.
public final class DiscoveryCatalog: DiscoveryControllerService {
    private struct ViewKey: Hashable {
        var hostNQN: String
        var localAddress: String?
    }

    /// What a view holds: the listeners' entries (for `localAddress` when dem listens on a
    /// wildcard) and the source entries at these indices.
    private struct ContentKey: Hashable {
        var localAddress: String?
        var indices: [Int]
    }

    private struct PageKey: Hashable {
        var content: ContentKey
        var generationCounter: UInt64
    }

    private struct View {
        var entries: [DiscoveryLogEntry]
        var generationCounter: UInt64
        var sourceVersion: UInt64
        var encoded: ByteBuffer
    }

    private struct Registration {
        var key: ViewKey
        var onChange: @Sendable () -> Void
    }

    private struct State {
        /// Every source's entries, in source order (the store's, then the entries file's).
        var entries: [SourceEntry]
        var entriesBySource: [Source: [SourceEntry]] = [:]
        var sourceVersion: UInt64 = 1
        var generation: UInt64 = 1
        var views: [ViewKey: View] = [:]
        var registrations: [UInt64: Registration] = [:]
        var nextToken: UInt64 = 1
        var nextControllerIdentifier: UInt16 = 1
        var listeners: [DiscoveryListenerAddress]
        var hasWildcard: Bool { listeners.contains(where: \.isWildcard) }
        /// Entry lists and encoded pages of this source version, shared by every host whose view
        /// has the same content (and GENCTR): one copy of a page however many hosts read it.
        var sharedVersion: UInt64 = 0
        var sharedContents: [ContentKey: [DiscoveryLogEntry]] = [:]
        var sharedPages: [PageKey: ByteBuffer] = [:]
    }

    /// How many views of hosts that are not connected are remembered (to keep their GENCTR
    /// while their page does not change); beyond it the oldest are forgotten, and such a host's
    /// next page takes the current generation.
    public static let rememberedViewLimit = 65_536

    /// The unique discovery NQN, used for the SUBTYPE 3 entries.
    public let uniqueNQN: String
    private let state: Mutex<State>

    /// - Parameters:
    ///   - uniqueNQN: the DC's unique NQN.
    ///   - listeners: dem's discovery listeners (the SUBTYPE 3 entries), in PORTID order from 1.
    ///   - entries: the initial entries.
    public init(uniqueNQN: String, listeners: [DiscoveryListenerAddress], entries: [SourceEntry] = []) {
        self.uniqueNQN = uniqueNQN
        var initial = State(entries: entries, listeners: listeners)
        initial.entriesBySource[.file] = entries
        self.state = Mutex(initial)
    }

    /// Where entries come from; a page lists the store's entries before the entries file's.
    public enum Source: Int, Sendable, Hashable, Comparable, CaseIterable {
        /// The fabric model.
        case store
        /// A JSON entries file.
        case file

        public static func < (lhs: Source, rhs: Source) -> Bool { lhs.rawValue < rhs.rawValue }
    }

    /// dem's own listeners.
    public var listeners: [DiscoveryListenerAddress] { state.withLock { $0.listeners } }

    /// Sets dem's own listeners once they are bound (their SUBTYPE 3 entries change with them).
    public func setListeners(_ listeners: [DiscoveryListenerAddress]) {
        state.withLock { state in
            state.listeners = listeners
            state.sourceVersion += 1
        }
    }

    /// The number of hosts connected for change notices.
    public var registeredControllerCount: Int { state.withLock { $0.registrations.count } }

    /// The global generation (bumped by every update).
    public var generation: UInt64 { state.withLock { $0.generation } }

    // MARK: DiscoveryControllerService

    public func discoveryLogPage(for host: DiscoveryHostContext) -> ByteBuffer {
        state.withLock { state in view(for: viewKey(host, state), in: &state).encoded }
    }

    /// The page `hostNQN` sees (through a listener at `localAddress` when dem listens on a wildcard).
    public func discoveryLogPage(hostNQN: String, localAddress: String? = nil) -> DiscoveryLogPage {
        state.withLock { state in
            let key = ViewKey(hostNQN: hostNQN, localAddress: state.hasWildcard ? localAddress : nil)
            let view = view(for: key, in: &state)
            return DiscoveryLogPage(generationCounter: view.generationCounter, entries: view.entries)
        }
    }

    public func allocateControllerIdentifier() -> UInt16 {
        state.withLock { state in
            let id = state.nextControllerIdentifier
            state.nextControllerIdentifier = id >= 0xFFEF ? 1 : id + 1
            return id
        }
    }

    public func controllerCreated(_ host: DiscoveryHostContext, onChange: @escaping @Sendable () -> Void) -> UInt64 {
        state.withLock { state in
            let key = viewKey(host, state)
            let token = state.nextToken
            state.nextToken += 1
            state.registrations[token] = Registration(key: key, onChange: onChange)
            return token
        }
    }

    public func controllerRemoved(_ token: UInt64) {
        state.withLock { state in _ = state.registrations.removeValue(forKey: token) }
    }

    public func logPageRead(offset: UInt64, length: UInt64) {
        logPageReadCount.add(1, ordering: .relaxed)
    }

    public func asynchronousEventSent() {
        changeNoticeCount.add(1, ordering: .relaxed)
    }

    /// Get Log Page commands answered since the start.
    public let logPageReadCount = Atomic<Int>(0)
    /// Discovery change notices (AER completions) sent since the start.
    public let changeNoticeCount = Atomic<Int>(0)

    // MARK: Updates

    /// Replaces one source's entries; bumps the generation and notifies every connected host whose page
    /// changed (and only those).
    /// - Returns: how many connected controllers were notified.
    @discardableResult
    public func update(entries sourceEntries: [SourceEntry], from source: Source = .file) -> Int {
        let callbacks: [@Sendable () -> Void] = state.withLock { state in
            guard state.entriesBySource[source] != sourceEntries else { return [] }
            state.entriesBySource[source] = sourceEntries
            let entries = Source.allCases.flatMap { state.entriesBySource[$0] ?? [] }
            guard state.entries != entries else { return [] }
            var before: [ViewKey: UInt64] = [:]
            for registration in state.registrations.values where before[registration.key] == nil {
                before[registration.key] = view(for: registration.key, in: &state).generationCounter
            }
            state.entries = entries
            state.sourceVersion += 1
            state.generation += 1
            var changed: [ViewKey: Bool] = [:]
            for (key, generation) in before {
                changed[key] = view(for: key, in: &state).generationCounter != generation
            }
            // Views of hosts not connected are recomputed when next asked for.
            return state.registrations.values.filter { changed[$0.key] == true }.map(\.onChange)
        }
        for callback in callbacks { callback() }
        return callbacks.count
    }

    // MARK: Views

    private func viewKey(_ host: DiscoveryHostContext, _ state: State) -> ViewKey {
        ViewKey(hostNQN: host.hostNQN, localAddress: state.hasWildcard ? host.localAddress : nil)
    }

    private func view(for key: ViewKey, in state: inout State) -> View {
        if let existing = state.views[key], existing.sourceVersion == state.sourceVersion {
            return existing
        }
        if state.sharedVersion != state.sourceVersion {
            state.sharedContents.removeAll(keepingCapacity: true)
            state.sharedPages.removeAll(keepingCapacity: true)
            state.sharedVersion = state.sourceVersion
        }
        let content = ContentKey(
            localAddress: key.localAddress,
            indices: state.entries.indices.filter { state.entries[$0].access.allows(key.hostNQN) }
        )
        let entries: [DiscoveryLogEntry]
        if let shared = state.sharedContents[content] {
            entries = shared
        } else {
            entries = self.entries(for: content, from: state.entries, listeners: state.listeners)
            state.sharedContents[content] = entries
        }
        if var existing = state.views[key], existing.entries == entries {
            existing.sourceVersion = state.sourceVersion
            state.views[key] = existing
            return existing
        }
        let pageKey = PageKey(content: content, generationCounter: state.generation)
        let encoded: ByteBuffer
        if let shared = state.sharedPages[pageKey] {
            encoded = shared
        } else {
            encoded = DiscoveryLogPage(generationCounter: state.generation, entries: entries).encoded()
            state.sharedPages[pageKey] = encoded
        }
        let view = View(
            entries: entries,
            generationCounter: state.generation,
            sourceVersion: state.sourceVersion,
            encoded: encoded
        )
        state.views[key] = view
        if state.views.count > Self.rememberedViewLimit {
            forgetDisconnectedViews(&state)
        }
        return view
    }

    private func forgetDisconnectedViews(_ state: inout State) {
        let connected = Set(state.registrations.values.map(\.key))
        var excess = state.views.count - Self.rememberedViewLimit * 3 / 4
        for key in state.views.keys where excess > 0 && !connected.contains(key) {
            state.views[key] = nil
            excess -= 1
        }
    }

    private func entries(
        for content: ContentKey,
        from source: [SourceEntry],
        listeners: [DiscoveryListenerAddress]
    ) -> [DiscoveryLogEntry] {
        var result: [DiscoveryLogEntry] = []
        for (index, listener) in listeners.enumerated() {
            let address = listener.isWildcard ? (content.localAddress ?? listener.address) : listener.address
            result.append(
                DiscoveryLogEntry(
                    transportType: .tcp,
                    addressFamily: IPAddressText.isIPv6(address) ? .ipv6 : .ipv4,
                    subsystemType: .currentDiscovery,
                    transportRequirements: .notSpecified,
                    portIdentifier: UInt16(truncatingIfNeeded: index + 1),
                    entryFlags: [.explicitPersistentConnection],
                    transportServiceIdentifier: String(listener.port),
                    subsystemNQN: uniqueNQN,
                    transportAddress: address
                )
            )
        }
        for index in content.indices {
            result.append(source[index].entry)
        }
        return result
    }
}
