import Crypto
import DEMCore
import Logging
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

/// Who keeps the discovery registrations (TP8010) and the hosts seen: the fabric service.
public protocol DiscoveryRegistrar: Sendable {
    /// Carries out a checked Discovery Information Management command; returns its status.
    func discoveryInformation(_ request: DiscoveryInformationRequest, host: DiscoveryHostContext) async -> NVMeStatus
    /// `host` opened a discovery controller.
    func hostSeen(_ host: DiscoveryHostContext)
}

extension FabricService: DiscoveryRegistrar {}

/// Where GENCTRs come from when every dem replica on a shared store must give a page the same
/// one: a GENCTR per page content, kept in the store.
public protocol DiscoveryPageGenerations: Sendable {
    /// The GENCTR of each page content (a digest of its entries), keyed like `above`: the one
    /// stored for the content when it is above `above[digest]`, otherwise a new one, higher than
    /// every GENCTR handed out before, stored for every replica.
    func pageGenerations(above: [String: UInt64]) throws -> [String: UInt64]
}

/// Every host's view of the discovery service: which entries each host may see, the page bytes,
/// the per-host generation counter, and change notices to the connected hosts whose view changed.
///
/// Thread-safe; every connection calls it. GENCTR is per view: a host's page keeps its GENCTR
/// until an update changes what that host sees, and then takes the new global generation, so it
/// only ever grows. With stored generations (``useStoredGenerations(_:logger:)``, dem replicas on
/// one database) a page's GENCTR is the one the store keeps for its content instead, so every
/// replica gives a host the same GENCTR for the same page.
public final class DiscoveryCatalog: DiscoveryControllerService {
    private struct ViewKey: Hashable {
        var hostNQN: String
        var localAddress: String?
    }

    /// The entries any host may see, in source order, shared by every view of a source version
    /// (and by the next versions as long as they do not change).
    private final class SharedEntries {
        let entries: [DiscoveryLogEntry]
        init(_ entries: [DiscoveryLogEntry]) { self.entries = entries }

        /// The entries encoded back to back (made when first asked for): pages copy from it.
        var encoded: ByteBuffer {
            if let encodedEntries { return encodedEntries }
            var buffer = ByteBufferAllocator().buffer(capacity: entries.count * DiscoveryLogEntry.size)
            for entry in entries { buffer.writeDiscoveryLogEntry(entry) }
            encodedEntries = buffer
            return buffer
        }
        private var encodedEntries: ByteBuffer?
    }

    /// An entry only some hosts may see, placed after the first `rank` shared entries.
    private struct PlacedEntry: Equatable {
        var rank: Int
        var entry: DiscoveryLogEntry
    }

    /// What a view holds: the listeners' entries (for `localAddress` when dem listens on a
    /// wildcard), then the shared entries with the host's own ones placed among them in source
    /// order. One object per distinct content and source version, shared by every host whose
    /// view has that content, with its encoded pages (one per GENCTR, made when first asked for).
    private final class Content {
        let listenerEntries: [DiscoveryLogEntry]
        let shared: SharedEntries
        let own: [PlacedEntry]
        var pages: [UInt64: ByteBuffer] = [:]

        init(listenerEntries: [DiscoveryLogEntry], shared: SharedEntries, own: [PlacedEntry]) {
            self.listenerEntries = listenerEntries
            self.shared = shared
            self.own = own
        }

        var count: Int { listenerEntries.count + shared.entries.count + own.count }

        /// SHA-256 of the entries in page order (hex), made when first asked for: the key of
        /// the content's stored GENCTR.
        var digest: String {
            if let madeDigest { return madeDigest }
            var buffer = ByteBufferAllocator().buffer(capacity: count * DiscoveryLogEntry.size)
            forEachEntry {
                buffer.writeDiscoveryLogEntry($0)
                return true
            }
            let made = SHA256.hash(data: buffer.readableBytesView).map { String(format: "%02x", $0) }.joined()
            madeDigest = made
            return made
        }
        private var madeDigest: String?

        /// Calls `body` with each entry in page order; stops when it returns false.
        /// - Returns: whether every entry was visited.
        @discardableResult
        func forEachEntry(_ body: (DiscoveryLogEntry) -> Bool) -> Bool {
            for entry in listenerEntries where !body(entry) { return false }
            var next = 0
            for (index, entry) in shared.entries.enumerated() {
                while next < own.count, own[next].rank == index {
                    guard body(own[next].entry) else { return false }
                    next += 1
                }
                guard body(entry) else { return false }
            }
            while next < own.count {
                guard body(own[next].entry) else { return false }
                next += 1
            }
            return true
        }

        var entries: [DiscoveryLogEntry] {
            var result: [DiscoveryLogEntry] = []
            result.reserveCapacity(count)
            forEachEntry {
                result.append($0)
                return true
            }
            return result
        }

        /// The encoded page with `generationCounter`, encoded once.
        func page(generationCounter: UInt64) -> ByteBuffer {
            if let page = pages[generationCounter] { return page }
            var buffer = ByteBufferAllocator().buffer(
                capacity: DiscoveryLogPageHeader.size + count * DiscoveryLogEntry.size
            )
            buffer.writeDiscoveryLogPageHeader(
                DiscoveryLogPageHeader(generationCounter: generationCounter, numberOfRecords: UInt64(count))
            )
            for entry in listenerEntries { buffer.writeDiscoveryLogEntry(entry) }
            // The shared entries are copied from their encoding, the host's own ones encoded
            // between them: the same bytes as encoding every entry, for a copy's cost.
            let sharedBytes = shared.encoded
            var copied = 0
            func copyShared(upTo rank: Int) {
                guard rank > copied else { return }
                buffer.writeImmutableBuffer(
                    sharedBytes.getSlice(
                        at: sharedBytes.readerIndex + copied * DiscoveryLogEntry.size,
                        length: (rank - copied) * DiscoveryLogEntry.size
                    )!
                )
                copied = rank
            }
            for placed in own {
                copyShared(upTo: placed.rank)
                buffer.writeDiscoveryLogEntry(placed.entry)
            }
            copyShared(upTo: shared.entries.count)
            pages[generationCounter] = buffer
            return buffer
        }
    }

    /// A content's key within a source version: the listener address and which of the entries
    /// only some hosts may see are in it.
    private struct ContentKey: Hashable {
        var localAddress: String?
        var own: [Int]
    }

    /// Two contents compared, kept with them (so their identifiers stay theirs).
    private struct Comparison {
        var old: Content
        var new: Content
        var equal: Bool
    }

    private struct ComparisonKey: Hashable {
        var old: ObjectIdentifier
        var new: ObjectIdentifier
    }

    private struct View {
        var content: Content
        var generationCounter: UInt64
        var sourceVersion: UInt64
    }

    private struct Reservations {
        var reserve: @Sendable (UInt64) throws -> ClosedRange<UInt64>
        var blockSize: UInt64
        var reservedThrough: UInt64
        var logger: Logger
    }

    /// The GENCTRs kept in the store, by page content (``useStoredGenerations(_:logger:)``).
    private struct StoredGenerations {
        var source: any DiscoveryPageGenerations
        /// What the store answered, by content digest.
        var known: [String: UInt64] = [:]
        var logger: Logger
        /// Whether the store's last answer was an error (logged once until it answers again).
        var failing = false
        /// While the store fails, it is asked again only after this (page reads do not each
        /// wait for it).
        var retryAfter = ContinuousClock.now
    }

    /// How long pages take this dem's own GENCTRs after the store failed to give one, before it
    /// is asked again.
    static let storedGenerationRetry: Duration = .seconds(5)

    private struct Registration {
        var key: ViewKey
        var onChange: @Sendable () -> Void
    }

    /// The entries indexed by who may see them.
    private struct EntryIndex {
        /// The entries any host may see, in source order.
        var shared = SharedEntries([])
        /// The source indices of those entries, ascending.
        var sharedIndices: [Int] = []
        /// For each host NQN, the source indices of the entries only some hosts may see that it
        /// may see, ascending.
        var ownIndices: [String: [Int]] = [:]
    }

    private struct State {
        /// Every source's entries, in source order (the store's, then the entries file's).
        var entries: [SourceEntry]
        var entriesBySource: [Source: [SourceEntry]] = [:]
        var index = EntryIndex()
        var sourceVersion: UInt64 = 1
        var generation: UInt64 = 1
        /// The generations reserved durably, when they are (``reserveGenerations(using:blockSize:logger:)``).
        var reservations: Reservations?
        var stored: StoredGenerations?
        var views: [ViewKey: View] = [:]
        var registrations: [UInt64: Registration] = [:]
        var nextToken: UInt64 = 1
        var nextControllerIdentifier: UInt16 = 1
        var listeners: [DiscoveryListenerAddress]
        /// The other replicas' listeners (``setPeers(_:)``).
        var peers: [DiscoveryListenerAddress] = []
        var hasWildcard: Bool { listeners.contains(where: \.isWildcard) }
        /// Contents of this source version, shared by every host whose view has the same
        /// content: one copy of the entries and of each page however many hosts read it.
        var sharedVersion: UInt64 = 0
        var sharedContents: [ContentKey: Content] = [:]
        var listenerEntries: [String?: [DiscoveryLogEntry]] = [:]
        /// Comparisons of an older content with one of this version, made once for all the
        /// hosts that had the one and now have the other.
        var comparisons: [ComparisonKey: Comparison] = [:]
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
    /// Which hosts must authenticate (DH-HMAC-CHAP), and with which keys; none when nil.
    public let keyring: HostKeyring?

    public init(
        uniqueNQN: String,
        listeners: [DiscoveryListenerAddress],
        entries: [SourceEntry] = [],
        keyring: HostKeyring? = nil
    ) {
        self.uniqueNQN = uniqueNQN
        self.keyring = keyring
        var initial = State(entries: entries, listeners: listeners)
        initial.entriesBySource[.file] = entries
        initial.index = Self.index(entries, previous: nil)
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
            // A page already read changes with them: it takes a new GENCTR.
            if !state.views.isEmpty { Self.nextGeneration(&state) }
        }
    }

    /// Takes every generation counter from now on from blocks of `blockSize` that `reserve`
    /// makes durable (the store's), starting with the first of a new block: so a GENCTR is never
    /// handed out twice, even across restarts, and a host never sees one GENCTR for two pages.
    /// The same page keeps its GENCTR while dem runs; after a restart it has a higher one.
    ///
    /// A reservation that fails later is logged, and the counter goes on growing in memory.
    public func reserveGenerations(
        using reserve: @escaping @Sendable (UInt64) throws -> ClosedRange<UInt64>,
        blockSize: UInt64 = 1024,
        logger: Logger
    ) throws {
        let range = try reserve(blockSize)
        state.withLock { state in
            state.generation = max(state.generation, range.lowerBound)
            state.reservations = Reservations(
                reserve: reserve,
                blockSize: blockSize,
                reservedThrough: range.upperBound,
                logger: logger
            )
            // Views made before (none, at start) take the new generation when next asked for.
            state.views.removeAll()
            state.sourceVersion += 1
        }
    }

    /// The next generation, reserved first when the block is used up.
    private static func nextGeneration(_ state: inout State) {
        state.generation += 1
        guard var reservations = state.reservations, state.generation > reservations.reservedThrough else { return }
        do {
            let range = try reservations.reserve(reservations.blockSize)
            state.generation = max(state.generation, range.lowerBound)
            reservations.reservedThrough = range.upperBound
        } catch {
            // Serving goes on; only a restart before the next good reservation could repeat a GENCTR.
            reservations.reservedThrough = state.generation
            reservations.logger.error(
                "cannot reserve discovery generation counters; after a restart hosts may see a GENCTR again",
                metadata: ["error": "\(error)", "generation": "\(state.generation)"]
            )
        }
        state.reservations = reservations
    }

    /// The number of hosts connected for change notices.
    public var registeredControllerCount: Int { state.withLock { $0.registrations.count } }

    /// The global generation (bumped by every update).
    public var generation: UInt64 { state.withLock { $0.generation } }

    // MARK: DiscoveryControllerService

    public func authentication(for host: DiscoveryHostContext) -> HostAuthentication {
        keyring?.authentication(for: host) ?? .notRequired
    }

    public func hostAuthenticated(_ host: DiscoveryHostContext, keyIndex: Int) {
        keyring?.hostAuthenticated(host, keyIndex: keyIndex)
    }

    public func authenticationFailed(_ host: DiscoveryHostContext, reason: String) {
        keyring?.authenticationFailed(host, reason: reason)
    }

    public func discoveryLogPage(for host: DiscoveryHostContext) -> ByteBuffer {
        state.withLock { state in
            let view = view(for: viewKey(host, state), in: &state)
            return view.content.page(generationCounter: view.generationCounter)
        }
    }

    /// The page `hostNQN` sees (through a listener at `localAddress` when dem listens on a wildcard).
    public func discoveryLogPage(hostNQN: String, localAddress: String? = nil) -> DiscoveryLogPage {
        state.withLock { state in
            let key = ViewKey(hostNQN: hostNQN, localAddress: state.hasWildcard ? localAddress : nil)
            let view = view(for: key, in: &state)
            return DiscoveryLogPage(generationCounter: view.generationCounter, entries: view.content.entries)
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
        registrar.withLock { $0 }?.hostSeen(host)
        return state.withLock { state in
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

    public func discoveryInformation(
        _ request: DiscoveryInformationRequest,
        host: DiscoveryHostContext
    ) async -> NVMeStatus {
        guard let registrar = registrar.withLock({ $0 }) else { return .invalidOpcode.withDoNotRetry }
        return await registrar.discoveryInformation(request, host: host)
    }

    /// Makes `registrar` carry out registrations and hear of every host that connects (without
    /// one, Discovery Information Management is answered Invalid Opcode).
    public func setRegistrar(_ registrar: any DiscoveryRegistrar) {
        self.registrar.withLock { $0 = registrar }
    }

    private let registrar = Mutex<(any DiscoveryRegistrar)?>(nil)

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
        changeListing { state in
            guard state.entriesBySource[source] != sourceEntries else { return nil }
            var bySource = state.entriesBySource
            bySource[source] = sourceEntries
            let entries = Source.allCases.flatMap { bySource[$0] ?? [] }
            state.entriesBySource[source] = sourceEntries
            guard state.entries != entries else { return nil }
            return { state in
                state.entries = entries
                state.index = Self.index(entries, previous: state.index.shared)
            }
        }
    }

    /// The discovery listeners of the other dem replicas on the same store (the same discovery
    /// controller, TP8013): listed after dem's own as SUBTYPE 3 entries, so that a host that
    /// knows one replica learns the others. Notifies every connected host (all their pages change).
    /// - Returns: how many connected controllers were notified.
    @discardableResult
    public func setPeers(_ peers: [DiscoveryListenerAddress]) -> Int {
        changeListing { state in
            guard state.peers != peers else { return nil }
            return { $0.peers = peers }
        }
    }

    /// The other replicas' listeners listed.
    public var peers: [DiscoveryListenerAddress] { state.withLock { $0.peers } }

    /// Applies the change `prepare` returns (nil: nothing changes), bumps the generation and
    /// notifies every connected host whose page changed (and only those).
    private func changeListing(_ prepare: (inout State) -> ((inout State) -> Void)?) -> Int {
        let callbacks: [@Sendable () -> Void] = state.withLock { state in
            guard let apply = prepare(&state) else { return [] }
            var before: [ViewKey: UInt64] = [:]
            for registration in state.registrations.values where before[registration.key] == nil {
                before[registration.key] = view(for: registration.key, in: &state).generationCounter
            }
            apply(&state)
            state.sourceVersion += 1
            Self.nextGeneration(&state)
            resolveStoredGenerations(for: Set(before.keys), in: &state)
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
        Self.startSharedVersion(&state)
        let content = self.content(for: key, in: &state)
        let existing = state.views[key]
        let same = existing.map { Self.sameEntries($0.content, content, in: &state) } ?? false
        if state.stored != nil,
            let generation = Self.storedGeneration(
                content,
                above: same ? 0 : existing?.generationCounter ?? 0,
                in: &state
            )
        {
            if same, let existing, content.pages[generation] == nil,
                let page = existing.content.pages[generation]
            {
                content.pages[generation] = page
            }
            return remember(
                View(content: content, generationCounter: generation, sourceVersion: state.sourceVersion),
                for: key,
                in: &state
            )
        }
        if same, var existing {
            // The same entries: the view keeps its GENCTR (and the page already encoded for it).
            if content.pages[existing.generationCounter] == nil,
                let page = existing.content.pages[existing.generationCounter]
            {
                content.pages[existing.generationCounter] = page
            }
            existing.content = content
            existing.sourceVersion = state.sourceVersion
            state.views[key] = existing
            return existing
        }
        return remember(
            View(content: content, generationCounter: state.generation, sourceVersion: state.sourceVersion),
            for: key,
            in: &state
        )
    }

    private func remember(_ view: View, for key: ViewKey, in state: inout State) -> View {
        let known = state.views.updateValue(view, forKey: key) != nil
        if !known, state.views.count > Self.rememberedViewLimit {
            forgetDisconnectedViews(&state)
        }
        return view
    }

    /// Drops the contents, listener entries and comparisons of an older source version.
    private static func startSharedVersion(_ state: inout State) {
        guard state.sharedVersion != state.sourceVersion else { return }
        state.sharedContents.removeAll(keepingCapacity: true)
        state.listenerEntries.removeAll(keepingCapacity: true)
        state.comparisons.removeAll(keepingCapacity: true)
        state.sharedVersion = state.sourceVersion
    }

    // MARK: Stored generations

    /// Gives every page the GENCTR `source` keeps for its content (dem replicas on one
    /// database: every replica gives a host the same GENCTR for the same page). When the store
    /// cannot answer, pages take this dem's own counter until it answers again.
    public func useStoredGenerations(_ source: any DiscoveryPageGenerations, logger: Logger) {
        state.withLock { state in
            state.stored = StoredGenerations(source: source, logger: logger)
            state.sourceVersion += 1
        }
    }

    /// Another replica gave a page content a new GENCTR: reads the connected hosts' ones again
    /// (their entries did not change, so no change notice is sent).
    public func storedGenerationsChanged() {
        state.withLock { state in
            guard state.stored != nil else { return }
            state.stored!.known.removeAll()
            state.sourceVersion += 1
            resolveStoredGenerations(for: Set(state.registrations.values.map(\.key)), in: &state)
        }
    }

    /// The stored GENCTR of `content` above `above`, asked of the store when not known; nil
    /// when the store cannot answer.
    private static func storedGeneration(_ content: Content, above: UInt64, in state: inout State) -> UInt64? {
        guard var stored = state.stored else { return nil }
        let digest = content.digest
        if let known = stored.known[digest], known > above { return known }
        defer { state.stored = stored }
        return ask(&stored, [digest: above])?[digest]
    }

    /// Asks the store in one go for the GENCTRs of the contents `keys` see in this source version
    /// that are not known yet (or changed: above what the view had).
    private func resolveStoredGenerations(for keys: Set<ViewKey>, in state: inout State) {
        guard state.stored != nil else { return }
        Self.startSharedVersion(&state)
        // The contents of earlier versions are forgotten now and then (the store keeps them).
        if state.stored!.known.count > max(Self.rememberedViewLimit, 2 * state.views.count) {
            state.stored!.known.removeAll()
        }
        var above: [String: UInt64] = [:]
        for key in keys {
            let content = self.content(for: key, in: &state)
            var floor: UInt64 = 0
            if let existing = state.views[key], !Self.sameEntries(existing.content, content, in: &state) {
                floor = existing.generationCounter
            }
            let digest = content.digest
            if let known = state.stored!.known[digest], known > floor { continue }
            above[digest] = max(above[digest] ?? 0, floor)
        }
        guard !above.isEmpty else { return }
        _ = Self.ask(&state.stored!, above)
    }

    private static func ask(_ stored: inout StoredGenerations, _ above: [String: UInt64]) -> [String: UInt64]? {
        if stored.failing, ContinuousClock.now < stored.retryAfter { return nil }
        do {
            let answer = try stored.source.pageGenerations(above: above)
            stored.known.merge(answer) { _, new in new }
            if stored.failing {
                stored.failing = false
                stored.logger.notice("the store gives the pages' GENCTRs again")
            }
            return answer
        } catch {
            stored.retryAfter = ContinuousClock.now + storedGenerationRetry
            if !stored.failing {
                stored.failing = true
                stored.logger.error(
                    "cannot read the pages' GENCTRs from the store: pages take this replica's own until it answers, so another replica may give the same page another GENCTR",
                    metadata: ["error": "\(error)"]
                )
            }
            return nil
        }
    }

    /// The content of this source version `key` sees.
    private func content(for key: ViewKey, in state: inout State) -> Content {
        let contentKey = ContentKey(localAddress: key.localAddress, own: state.index.ownIndices[key.hostNQN] ?? [])
        if let shared = state.sharedContents[contentKey] { return shared }
        let listenerEntries: [DiscoveryLogEntry]
        if let known = state.listenerEntries[key.localAddress] {
            listenerEntries = known
        } else {
            listenerEntries = self.listenerEntries(
                localAddress: key.localAddress,
                listeners: state.listeners,
                peers: state.peers
            )
            state.listenerEntries[key.localAddress] = listenerEntries
        }
        let sharedIndices = state.index.sharedIndices
        let own = contentKey.own.map { index in
            // The number of shared entries before it in source order.
            var low = 0
            var high = sharedIndices.count
            while low < high {
                let middle = (low + high) / 2
                if sharedIndices[middle] < index { low = middle + 1 } else { high = middle }
            }
            return PlacedEntry(rank: low, entry: state.entries[index].entry)
        }
        let content = Content(listenerEntries: listenerEntries, shared: state.index.shared, own: own)
        state.sharedContents[contentKey] = content
        return content
    }

    /// Whether two contents list the same entries in the same order.
    private static func sameEntries(_ old: Content, _ new: Content, in state: inout State) -> Bool {
        if old === new { return true }
        guard old.count == new.count, old.listenerEntries == new.listenerEntries else { return false }
        if old.shared === new.shared, old.own == new.own { return true }
        let key = ComparisonKey(old: ObjectIdentifier(old), new: ObjectIdentifier(new))
        if let known = state.comparisons[key] { return known.equal }
        // Compare entry by entry (the shared and own parts may split the same list differently).
        var newEntries: [DiscoveryLogEntry] = []
        newEntries.reserveCapacity(new.count)
        new.forEachEntry {
            newEntries.append($0)
            return true
        }
        var position = 0
        let equal = old.forEachEntry { entry in
            defer { position += 1 }
            return entry == newEntries[position]
        }
        state.comparisons[key] = Comparison(old: old, new: new, equal: equal)
        return equal
    }

    /// The entries indexed by who may see them; `previous` shared entries are kept when equal.
    private static func index(_ entries: [SourceEntry], previous: SharedEntries?) -> EntryIndex {
        var index = EntryIndex()
        var shared: [DiscoveryLogEntry] = []
        for (position, entry) in entries.enumerated() {
            switch entry.access {
            case .anyHost:
                shared.append(entry.entry)
                index.sharedIndices.append(position)
            case .hosts(let nqns):
                for nqn in nqns { index.ownIndices[nqn, default: []].append(position) }
            }
        }
        if let previous, previous.entries == shared {
            index.shared = previous
        } else {
            index.shared = SharedEntries(shared)
        }
        return index
    }

    private func forgetDisconnectedViews(_ state: inout State) {
        let connected = Set(state.registrations.values.map(\.key))
        var excess = state.views.count - Self.rememberedViewLimit * 3 / 4
        for key in state.views.keys where excess > 0 && !connected.contains(key) {
            state.views[key] = nil
            excess -= 1
        }
    }

    /// dem's listeners' entries, then the other replicas' (``setPeers(_:)``). With other
    /// replicas every replica lists the same ports in the same order (by address and port, a
    /// wildcard as the address the host reached), so a host's page is the same whichever replica
    /// it reads it from; PORTID numbers them from 1.
    private func listenerEntries(
        localAddress: String?,
        listeners: [DiscoveryListenerAddress],
        peers: [DiscoveryListenerAddress]
    ) -> [DiscoveryLogEntry] {
        var ports = (listeners + peers.filter { !$0.isWildcard }).map { listener in
            DiscoveryListenerAddress(
                address: listener.isWildcard ? (localAddress ?? listener.address) : listener.address,
                port: listener.port
            )
        }
        if !peers.isEmpty {
            var seen = Set<DiscoveryListenerAddress>()
            ports = ports.filter { seen.insert($0).inserted }.sorted { ($0.address, $0.port) < ($1.address, $1.port) }
        }
        var result: [DiscoveryLogEntry] = []
        for (index, port) in ports.enumerated() {
            result.append(
                DiscoveryLogEntry(
                    transportType: .tcp,
                    addressFamily: IPAddressText.isIPv6(port.address) ? .ipv6 : .ipv4,
                    subsystemType: .currentDiscovery,
                    transportRequirements: .notSpecified,
                    portIdentifier: UInt16(truncatingIfNeeded: index + 1),
                    entryFlags: [.explicitPersistentConnection],
                    transportServiceIdentifier: String(port.port),
                    subsystemNQN: uniqueNQN,
                    transportAddress: port.address
                )
            )
        }
        return result
    }
}
