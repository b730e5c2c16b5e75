import DEMCore
import Dispatch
import Foundation
import Logging
import Synchronization

/// A change to the model, as `/events` reports it.
public struct ChangeEvent: Sendable, Hashable, Codable {
    /// What happened to the resource.
    public enum Action: String, Sendable, Hashable, Codable {
        case created, updated, deleted
        /// A request that asked for a change, or was refused, as the audit trail records it.
        case audited
    }

    /// Sequence number, from 1 at each start of dem.
    public var sequence: UInt64
    public var action: Action
    /// The resource's REST path, such as `/target/t1/subsystem/nqn…`.
    public var path: String
    public var time: Date
    /// The audit record of an `audited` event.
    public var audit: AuditRecord?

    enum CodingKeys: String, CodingKey {
        case sequence = "seq"
        case action, path, time, audit
    }
}

/// The fabric model's one writer: every change is checked against the model, committed to the
/// store, then published (to the discovery catalog and to `/events`), one change at a time and
/// in order. Reads take the current model without waiting for writers.
public final class FabricService: Sendable {
    /// Why a change was not made.
    public enum ChangeError: Error, Sendable {
        /// The model refused it; nothing changed.
        case model(ModelError)
        /// The store could not record it; nothing changed.
        case store(String)
    }

    private struct State {
        var fabric: Fabric
        /// API tokens by ID.
        var tokens: [String: APIToken]
        /// Uses of tokens not yet recorded in the store.
        var tokenUses: [String: Date] = [:]
        /// DH-HMAC-CHAP keys by host alias.
        var hostKeys: [String: HostKey] = [:]
        var keyring: HostKeyring?
        /// Discovery registrations (TP8010) by NQN.
        var registrations: [String: DiscoveryRegistration] = [:]
        /// Hosts that opened a discovery controller, by NQN (in memory).
        var seen: [String: SeenHost] = [:]
        var sequence: UInt64 = 0
        var subscribers: [UInt64: AsyncStream<ChangeEvent>.Continuation] = [:]
        var nextSubscriber: UInt64 = 1
    }

    /// The store.
    public let store: any FabricStore
    private let state: Mutex<State>
    private let writer = DispatchQueue(label: "dem.fabric.writer")
    private let published: @Sendable (Fabric) -> Void
    private let logger: Logger
    /// The most discovery registrations kept; one more is refused with Insufficient Discovery
    /// Resources (32h). Also the most hosts remembered as seen.
    public let registrationLimit: Int

    /// Loads the model, tokens and registrations from `store`.
    /// - Parameter published: called (on the writer thread) with each committed model.
    public init(
        store: any FabricStore,
        logger: Logger,
        registrationLimit: Int = 65_536,
        published: @escaping @Sendable (Fabric) -> Void
    ) throws {
        self.store = store
        self.logger = logger
        self.registrationLimit = registrationLimit
        self.published = published
        let fabric = try store.loadFabric()
        var tokens: [String: APIToken] = [:]
        for token in try store.loadTokens() { tokens[token.id] = token }
        var initial = State(fabric: fabric, tokens: tokens)
        initial.hostKeys = try store.loadHostKeys()
        for registration in try store.loadRegistrations() { initial.registrations[registration.nqn] = registration }
        state = Mutex(initial)
    }

    // MARK: Discovery registrations

    /// Every registration, by NQN.
    public var registrations: [DiscoveryRegistration] {
        state.withLock { $0.registrations.values.sorted { $0.nqn < $1.nqn } }
    }

    /// Hosts that opened a discovery controller since dem started, by NQN.
    public var seenHosts: [SeenHost] { state.withLock { $0.seen.values.sorted { $0.nqn < $1.nqn } } }

    /// `host` opened a discovery controller: remember it as seen (the least recently seen is
    /// forgotten beyond ``registrationLimit``).
    public func hostSeen(_ host: DiscoveryHostContext) {
        let seen = SeenHost(host, now: Date())
        state.withLock { state in
            if state.seen[seen.nqn] == nil, state.seen.count >= registrationLimit,
                let oldest = state.seen.values.min(by: { $0.lastSeen < $1.lastSeen })
            {
                state.seen[oldest.nqn] = nil
            }
            state.seen[seen.nqn] = seen
        }
    }

    /// Carries out a Discovery Information Management command from `host`: the registration is
    /// durable before the status is returned.
    /// - Returns: success; Insufficient Discovery Resources (32h) when ``registrationLimit``
    ///   registrations are kept already; Internal Error when the store failed (nothing changed).
    public func discoveryInformation(
        _ request: DiscoveryInformationRequest,
        host: DiscoveryHostContext
    ) async
        -> NVMeStatus
    {
        await withCheckedContinuation { continuation in
            writer.async {
                continuation.resume(returning: self.storeDiscoveryInformation(request, host: host))
            }
        }
    }

    private func storeDiscoveryInformation(
        _ request: DiscoveryInformationRequest,
        host: DiscoveryHostContext
    )
        -> NVMeStatus
    {
        let nqn = request.information.entityIdentifier
        let old = state.withLock { $0.registrations[nqn] }
        var new: DiscoveryRegistration?
        switch request.task {
        case .register, .update:
            var registration = DiscoveryRegistration(request.information, host: host, now: Date())
            if let old {
                registration.registered = old.registered
            } else if state.withLock({ $0.registrations.count }) >= registrationLimit {
                logger.warning(
                    "discovery registration refused: the registrations are full",
                    metadata: ["nqn": "\(nqn)", "limit": "\(registrationLimit)"]
                )
                return .insufficientDiscoveryResources.withDoNotRetry
            }
            new = registration
        case .deregister:
            guard old != nil else { return .success }
        }
        do {
            try store.setRegistration(new, nqn: nqn)
        } catch {
            logger.error(
                "store write failed; the registration is refused",
                metadata: ["error": "\(error)", "nqn": "\(nqn)"]
            )
            return .internalError
        }
        state.withLock { $0.registrations[nqn] = new }
        let action: ChangeEvent.Action = new == nil ? .deleted : (old == nil ? .created : .updated)
        publish(action, path: APIRoutes.path("registration", nqn))
        logger.notice(
            "discovery registration \(request.task)",
            metadata: [
                "nqn": "\(nqn)", "type": "\(request.information.entityType.name)",
                "name": "\(request.information.entityName)", "from": "\(host.remoteAddress ?? "?")",
            ]
        )
        return .success
    }

    /// Deletes the registration of `nqn` (an administrator's clean-up).
    /// - Returns: whether it existed.
    public func deleteRegistration(_ nqn: String) async throws(ChangeError) -> Bool {
        let outcome: Swift.Result<Bool, ChangeError> = await withCheckedContinuation { continuation in
            writer.async {
                guard self.state.withLock({ $0.registrations[nqn] }) != nil else {
                    continuation.resume(returning: .success(false))
                    return
                }
                do {
                    try self.store.setRegistration(nil, nqn: nqn)
                } catch {
                    continuation.resume(returning: .failure(.store("\(error)")))
                    return
                }
                self.state.withLock { $0.registrations[nqn] = nil }
                self.publish(.deleted, path: APIRoutes.path("registration", nqn))
                continuation.resume(returning: .success(true))
            }
        }
        return try outcome.get()
    }

    // MARK: Host keys

    /// Makes `keyring` follow the hosts' keys from now on.
    public func attach(_ keyring: HostKeyring) {
        let (fabric, keys) = state.withLock { state in
            state.keyring = keyring
            return (state.fabric, state.hostKeys)
        }
        keyring.update(policies(fabric, keys))
        keyring.onAuthenticated { [weak self] host, keyIndex in
            if keyIndex == 0 { self?.retirePreviousKey(hostNQN: host.hostNQN) }
        }
    }

    /// Host `alias`'s keys, if it has any.
    public func hostKey(_ alias: String) -> HostKey? { state.withLock { $0.hostKeys[alias] } }

    /// Sets (nil: removes) host `alias`'s keys; the host must exist. When `key` replaces the
    /// host's secret, the old one stays accepted until the host authenticates with the new one.
    /// - Returns: the keys as stored.
    public func setHostKey(_ alias: String, _ key: HostKey?) async throws(ChangeError) -> HostKey? {
        let outcome: Swift.Result<HostKey?, ChangeError> = await withCheckedContinuation { continuation in
            writer.async {
                continuation.resume(returning: self.storeHostKey(alias, key))
            }
        }
        return try outcome.get()
    }

    private func storeHostKey(_ alias: String, _ key: HostKey?) -> Swift.Result<HostKey?, ChangeError> {
        let (fabric, old) = state.withLock { ($0.fabric, $0.hostKeys[alias]) }
        do {
            _ = try fabric.host(alias)
        } catch {
            return .failure(.model(error))
        }
        var stored = key
        if var new = key, let old, new.previousSecret == nil, old.secret != new.secret {
            new.previousSecret = old.previousSecret ?? old.secret
            stored = new
        }
        if let stored {
            do {
                _ = try stored.policy()
            } catch {
                return .failure(.model(ModelError(.invalid, field: "Secret", error.description)))
            }
        }
        guard stored != old else { return .success(stored) }
        do {
            try store.setHostKey(stored, alias: alias)
        } catch {
            return .failure(.store("\(error)"))
        }
        let (keys, keyring) = state.withLock { state in
            state.hostKeys[alias] = stored
            return (state.hostKeys, state.keyring)
        }
        keyring?.update(policies(fabric, keys))
        publish(stored == nil ? .deleted : (old == nil ? .created : .updated), path: "/host/\(alias)/dhchap")
        logger.info("host key changed", metadata: ["host": "\(alias)", "removed": "\(stored == nil)"])
        return .success(stored)
    }

    /// `configuration` (a target's slice) with the keys of its hosts, sealed under `credential`
    /// for the target's dem-em (the current secret: nvmet holds one).
    public func addingHostKeys(to configuration: EndpointConfiguration, credential: String) -> EndpointConfiguration {
        let (fabric, keys) = state.withLock { ($0.fabric, $0.hostKeys) }
        guard !keys.isEmpty else { return configuration }
        var result = configuration
        for nqn in configuration.hosts {
            guard let alias = fabric.hosts.first(where: { $0.nqn == nqn })?.alias, let key = keys[alias],
                let policy = try? key.policy()
            else { continue }
            result.hostKeys.append(
                EndpointHostKey(
                    hostNQN: nqn,
                    sealedSecret: HostKeySeal.seal(policy.hostKeys[0], hostNQN: nqn, credential: credential),
                    sealedControllerSecret: policy.controllerKey.map {
                        HostKeySeal.seal($0, hostNQN: nqn, credential: credential)
                    },
                    hash: policy.hash.description,
                    group: policy.group.description
                )
            )
        }
        return result
    }

    /// Host `hostNQN` authenticated with its current secret: its previous one is retired.
    public func retirePreviousKey(hostNQN: String) {
        writer.async {
            let (fabric, keys) = self.state.withLock { ($0.fabric, $0.hostKeys) }
            guard let alias = fabric.hosts.first(where: { $0.nqn == hostNQN })?.alias, var key = keys[alias],
                key.previousSecret != nil
            else { return }
            key.previousSecret = nil
            _ = self.storeHostKey(alias, key)
            self.logger.notice(
                "host switched to its new key; the previous key is retired",
                metadata: ["host": "\(alias)"]
            )
        }
    }

    /// The keys follow hosts that are renamed (same HOSTNQN) and go with hosts that are deleted.
    private func hostsChanged(from old: Fabric, to new: Fabric) {
        let keys = state.withLock { $0.hostKeys }
        guard !keys.isEmpty else { return }
        var moved = keys
        for (alias, key) in keys where (try? new.host(alias)) == nil {
            moved[alias] = nil
            let nqn = (try? old.host(alias))?.nqn
            let renamed = nqn.flatMap { nqn in new.hosts.first(where: { $0.nqn == nqn })?.alias }
            do {
                try store.setHostKey(nil, alias: alias)
                if let renamed {
                    try store.setHostKey(key, alias: renamed)
                    moved[renamed] = key
                }
            } catch {
                logger.error(
                    "host keys could not follow a host change",
                    metadata: ["host": "\(alias)", "error": "\(error)"]
                )
            }
        }
        let keyring = state.withLock { state in
            state.hostKeys = moved
            return state.keyring
        }
        keyring?.update(policies(new, moved))
    }

    /// Each keyed host's policy by HOSTNQN.
    private func policies(_ fabric: Fabric, _ keys: [String: HostKey]) -> [String: DHCHAPPolicy] {
        var byNQN: [String: DHCHAPPolicy] = [:]
        for (alias, key) in keys {
            guard let nqn = (try? fabric.host(alias))?.nqn else { continue }
            do {
                byNQN[nqn] = try key.policy()
            } catch {
                logger.error("a stored host key cannot be read", metadata: ["host": "\(alias)", "error": "\(error)"])
            }
        }
        return byNQN
    }

    /// The current model.
    public var fabric: Fabric { state.withLock { $0.fabric } }

    /// The current model and its revision: the number of events published since dem started
    /// (every change is one), so the same revision is the same model.
    public var snapshot: (fabric: Fabric, revision: UInt64) { state.withLock { ($0.fabric, $0.sequence) } }

    /// Applies `change` to the model and commits it. When the model does not change (a PUT of
    /// what is already there), nothing is written or published.
    ///
    /// - Parameters:
    ///   - action: what the event reports.
    ///   - path: the resource path the event reports.
    /// - Returns: what `change` returned.
    /// - Throws: ``ChangeError``.
    public func change<Result: Sendable>(
        _ action: ChangeEvent.Action,
        path: String,
        _ change: @escaping @Sendable (inout Fabric) throws(ModelError) -> Result
    ) async throws(ChangeError) -> Result {
        let outcome: Swift.Result<Result, ChangeError> = await withCheckedContinuation { continuation in
            writer.async {
                continuation.resume(returning: self.apply(action, path: path, change))
            }
        }
        return try outcome.get()
    }

    private func apply<Result>(
        _ action: ChangeEvent.Action,
        path: String,
        _ change: (inout Fabric) throws(ModelError) -> Result
    ) -> Swift.Result<Result, ChangeError> {
        // Another dem replica may have written since this one read the model: its change is
        // taken in and this one made again on top of it (checked against what it lands on).
        // Each conflict means another replica's change landed, so the fabric moves on; the
        // bound only stops a replica that cannot read the store.
        var attempts = 0
        while true {
            let old = fabric
            var new = old
            let result: Result
            do {
                result = try change(&new)
            } catch {
                return .failure(.model(error))
            }
            guard new != old else { return .success(result) }
            do {
                try store.commit(from: old, to: new)
            } catch let conflict as FabricStoreConflict where attempts < 100 {
                attempts += 1
                logger.info(
                    "the model changed on another replica; the change is made again on it",
                    metadata: ["path": "\(path)", "revision": "\(conflict.storedRevision)"]
                )
                guard takeInStoredFabric() else { return .failure(.store("\(conflict)")) }
                continue
            } catch {
                logger.error(
                    "store commit failed; the change is refused",
                    metadata: ["error": "\(error)", "path": "\(path)"]
                )
                return .failure(.store("\(error)"))
            }
            let event: ChangeEvent = state.withLock { state in
                state.fabric = new
                state.sequence += 1
                let event = ChangeEvent(sequence: state.sequence, action: action, path: path, time: Date())
                for subscriber in state.subscribers.values { subscriber.yield(event) }
                return event
            }
            logger.info("fabric changed", metadata: ["action": "\(event.action.rawValue)", "path": "\(path)"])
            if new.hosts != old.hosts { hostsChanged(from: old, to: new) }
            published(new)
            return .success(result)
        }
    }

    // MARK: Other replicas

    /// Takes in what another writer (a dem replica on the same database) committed: the model
    /// (published as a local change is, so the hosts whose page changed get their notices), the
    /// tokens, the host keys or the registrations, read from the store.
    public func storeChanged(_ change: StoreChange) {
        writer.async {
            switch change {
            case .fabric: _ = self.takeInStoredFabric()
            case .tokens: self.takeInStoredTokens()
            case .hostKeys: self.takeInStoredHostKeys()
            case .registrations: self.takeInStoredRegistrations()
            case .target, .generations, .enrolments: break
            case .everything:
                _ = self.takeInStoredFabric()
                self.takeInStoredTokens()
                self.takeInStoredHostKeys()
                self.takeInStoredRegistrations()
            }
        }
    }

    /// Takes in what other replicas write to `store` (this service's store) from now on;
    /// `also` gets every change as well (a target's shared outcome is the target monitor's).
    /// - Returns: a call that stops it.
    public func follow(
        _ store: PostgresFabricStore,
        also: @escaping @Sendable (StoreChange) -> Void = { _ in }
    ) -> @Sendable () -> Void {
        store.watch { [weak self] change in
            also(change)
            // This replica's own commits come back too: those it knows are skipped.
            if case .fabric(let revision) = change, revision <= store.knownRevision { return }
            self?.storeChanged(change)
        }
    }

    /// Reads the model from the store and, when it differs, makes it the current one (on the
    /// writer thread). - Returns: whether the store could be read.
    private func takeInStoredFabric() -> Bool {
        let stored: Fabric
        do {
            stored = try store.loadFabric()
        } catch {
            logger.error("cannot read the model another replica changed", metadata: ["error": "\(error)"])
            return false
        }
        let old = fabric
        guard stored != old else { return true }
        state.withLock { state in
            state.fabric = stored
            state.sequence += 1
            let event = ChangeEvent(sequence: state.sequence, action: .updated, path: "/dem/config", time: Date())
            for subscriber in state.subscribers.values { subscriber.yield(event) }
        }
        logger.info("fabric changed on another replica")
        // The replica that made the change moved the host keys; this one reads them.
        if stored.hosts != old.hosts { takeInStoredHostKeys() }
        published(stored)
        return true
    }

    private func takeInStoredTokens() {
        do {
            let stored = try store.loadTokens()
            state.withLock { state in
                var tokens: [String: APIToken] = [:]
                for var token in stored {
                    // A use this replica saw and has not written yet is kept.
                    if let mine = state.tokens[token.id]?.lastUsed, mine > token.lastUsed ?? .distantPast {
                        token.lastUsed = mine
                    }
                    tokens[token.id] = token
                }
                state.tokens = tokens
            }
        } catch {
            logger.error("cannot read the tokens another replica changed", metadata: ["error": "\(error)"])
        }
    }

    private func takeInStoredHostKeys() {
        do {
            let keys = try store.loadHostKeys()
            let (fabric, keyring) = state.withLock { state in
                state.hostKeys = keys
                return (state.fabric, state.keyring)
            }
            keyring?.update(policies(fabric, keys))
        } catch {
            logger.error("cannot read the host keys another replica changed", metadata: ["error": "\(error)"])
        }
    }

    private func takeInStoredRegistrations() {
        do {
            let stored = try store.loadRegistrations()
            state.withLock { state in
                state.registrations = Dictionary(stored.map { ($0.nqn, $0) }, uniquingKeysWith: { $1 })
            }
        } catch {
            logger.error("cannot read the registrations another replica changed", metadata: ["error": "\(error)"])
        }
    }

    // MARK: Events

    /// A stream of every change from now on, and a call that ends it.
    public func subscribe() -> (events: AsyncStream<ChangeEvent>, cancel: @Sendable () -> Void) {
        let (stream, continuation) = AsyncStream.makeStream(
            of: ChangeEvent.self,
            bufferingPolicy: .bufferingNewest(4096)
        )
        let id = state.withLock { state in
            let id = state.nextSubscriber
            state.nextSubscriber += 1
            state.subscribers[id] = continuation
            return id
        }
        let cancel: @Sendable () -> Void = { [weak self] in
            let removed = self?.state.withLock { $0.subscribers.removeValue(forKey: id) }
            removed?.finish()
        }
        continuation.onTermination = { _ in cancel() }
        return (stream, cancel)
    }

    /// Reports an event that is not a change to the model (a target's state), in sequence with
    /// the model's changes.
    public func publish(_ action: ChangeEvent.Action, path: String, audit: AuditRecord? = nil) {
        state.withLock { state in
            state.sequence += 1
            let event = ChangeEvent(sequence: state.sequence, action: action, path: path, time: Date(), audit: audit)
            for subscriber in state.subscribers.values { subscriber.yield(event) }
        }
    }

    /// How many `/events` subscribers there are.
    public var subscriberCount: Int { state.withLock { $0.subscribers.count } }

    /// Ends every event stream (at shutdown).
    public func finishSubscribers() {
        let subscribers = state.withLock { state in
            defer { state.subscribers.removeAll() }
            return Array(state.subscribers.values)
        }
        for subscriber in subscribers { subscriber.finish() }
    }

    // MARK: Tokens

    /// The token whose secret is `secret`, if any (its hash compared in constant time). A use
    /// is noted; the store learns of it within a minute.
    public func token(secret: String) -> APIToken? {
        guard let id = APIToken.id(ofSecret: secret) else { return nil }
        let now = Date()
        let (found, record) = state.withLock { state -> (APIToken?, Bool) in
            guard let token = state.tokens[id], token.matches(secret: secret) else { return (nil, false) }
            guard token.lastUsed.map({ now.timeIntervalSince($0) >= 60 }) ?? true else { return (token, false) }
            state.tokens[id]?.lastUsed = now
            let first = state.tokenUses.isEmpty
            state.tokenUses[id] = now
            return (token, first)
        }
        if record {
            writer.async {
                let uses = self.state.withLock { state in
                    defer { state.tokenUses.removeAll() }
                    return state.tokenUses
                }
                do {
                    try self.store.recordTokenUse(uses)
                } catch {
                    self.logger.warning("cannot record the tokens' last use", metadata: ["error": "\(error)"])
                }
            }
        }
        return found
    }

    /// Every token, oldest first.
    public var tokens: [APIToken] {
        state.withLock { state in state.tokens.values.sorted { ($0.created, $0.id) < ($1.created, $1.id) } }
    }

    /// Creates and stores a token. - Returns: the token and its secret, which dem keeps no copy of.
    public func createToken(
        name: String,
        role: APIToken.Role,
        expires: Date? = nil
    ) async throws(ChangeError) -> (
        token: APIToken, secret: String
    ) {
        try FabricValidation.checkTokenName(name)
        let outcome: Swift.Result<(token: APIToken, secret: String), ChangeError> = await withCheckedContinuation {
            continuation in
            writer.async {
                let made = APIToken.generate(name: name, role: role, expires: expires)
                do {
                    try self.store.addToken(made.token)
                    self.state.withLock { $0.tokens[made.token.id] = made.token }
                    continuation.resume(returning: .success(made))
                } catch {
                    continuation.resume(returning: .failure(.store("\(error)")))
                }
            }
        }
        return try outcome.get()
    }

    /// Revokes a token, from the next request on. - Returns: whether it existed.
    public func deleteToken(id: String) async throws(ChangeError) -> Bool {
        let outcome: Swift.Result<Bool, ChangeError> = await withCheckedContinuation { continuation in
            writer.async {
                do {
                    let existed = try self.store.deleteToken(id: id)
                    self.state.withLock { state in
                        state.tokens[id] = nil
                        state.tokenUses[id] = nil
                    }
                    continuation.resume(returning: .success(existed))
                } catch {
                    continuation.resume(returning: .failure(.store("\(error)")))
                }
            }
        }
        return try outcome.get()
    }

    /// Makes sure an admin token exists in `directory/admin.token` (mode 0600), creating it on
    /// the first start. - Returns: the file, and whether the token was created now.
    public func ensureAdminTokenFile(in directory: String) async throws -> (path: String, created: Bool) {
        let path = directory + "/admin.token"
        if let data = FileManager.default.contents(atPath: path) {
            let secret = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if token(secret: secret) != nil { return (path, false) }
            logger.warning(
                "the admin token file holds no valid token; writing a new one",
                metadata: ["path": "\(path)"]
            )
        }
        let made = try await createToken(name: "admin", role: .admin)
        try SecretFile.write(made.secret + "\n", to: path)
        return (path, true)
    }
}

extension FabricValidation {
    /// A token's name: 1 to 64 printable characters.
    static func checkTokenName(_ name: String) throws(FabricService.ChangeError) {
        guard !name.isEmpty, name.count <= 64, name.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F })
        else {
            throw .model(.invalid("Name", "a token name must be 1 to 64 printable characters"))
        }
    }
}
