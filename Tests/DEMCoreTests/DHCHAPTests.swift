import DEMCore
import Foundation
import NIOCore
import Synchronization
import Testing

/// DH-HMAC-CHAP exchanges between the Linux 6.1 kernel host and Linux 6.1 nvmet, captured with
/// their keys (`Fixtures/dhchap-linux61.json`, copied from the project's vector captures): every
/// response is recomputed, and every exchange replays through our controller and our host.
struct DHCHAPVectors: Decodable {
    struct Keys: Decodable {
        var host_key: String?
        var ctrl_key: String?
    }
    struct Message: Decodable {
        var from: String
        var raw: String
        var bytes: ByteBuffer { ByteBuffer(bytes: hexBytes(raw)) }
        var parsed: AuthenticationMessage { get throws { try AuthenticationMessage(parsing: bytes) } }
    }
    struct Queue: Decodable {
        var qid: Int
        var authreq_atr: Bool
        var messages: [Message]
        var session_key: String?
    }
    struct Case: Decodable {
        var name: String
        var hostnqn: String
        var expect: String
        var target: Keys
        var host: Keys
        var queues: [Queue]
    }
    var subnqn: String
    var cases: [Case]

    static func load() throws -> DHCHAPVectors {
        try JSONDecoder().decode(DHCHAPVectors.self, from: Data(Fixture.bytes("dhchap-linux61.json")))
    }
}

func hexBytes(_ text: String) -> [UInt8] {
    var bytes: [UInt8] = []
    var index = text.startIndex
    while index < text.endIndex {
        let next = text.index(index, offsetBy: 2)
        bytes.append(UInt8(text[index..<next], radix: 16)!)
        index = next
    }
    return bytes
}

/// A recorded peer's key pair: the public value and the shared secret the kernel computed
/// (its private key never left the kernel, so the DH step replays what it produced).
struct ReplayedKeyPair: DHCHAPKeyPair {
    var publicValue: [UInt8]
    var secret: [UInt8]
    func sharedSecret(peerPublicValue: [UInt8]) throws -> [UInt8] { secret }
}

/// Entropy that hands out recorded values, so our side emits what the kernel emitted.
func replayEntropy(random: [UInt8], sequence: UInt32, keyPair: ReplayedKeyPair?) -> DHCHAPEntropy {
    DHCHAPEntropy(
        randomBytes: { count in
            precondition(count == random.count, "asked for \(count) random bytes, recorded \(random.count)")
            return random
        },
        sequenceNumber: { sequence },
        keyPair: { _ in
            guard let keyPair else { throw DHCHAPKeyError("no recorded key pair") }
            return keyPair
        }
    )
}

@Suite("DH-HMAC-CHAP against the Linux 6.1 captures")
struct DHCHAPVectorTests {
    let vectors: DHCHAPVectors

    init() throws { vectors = try DHCHAPVectors.load() }

    @Test("the fixture holds every captured case")
    func casesPresent() {
        #expect(vectors.cases.count == 14)
        #expect(vectors.cases.flatMap(\.queues).flatMap(\.messages).count == 93)
    }

    @Test("every captured message decodes and re-encodes to the same bytes")
    func codecRoundTrip() throws {
        for message in vectors.cases.flatMap(\.queues).flatMap(\.messages) {
            let parsed = try message.parsed
            #expect(Array(parsed.bytes.readableBytesView) == hexBytes(message.raw), "\(parsed.name)")
        }
    }

    @Test("the secrets nvme-cli made read back, with their CRC, and write the same text")
    func secrets() throws {
        let texts = Set(
            vectors.cases.flatMap { [$0.target.host_key, $0.target.ctrl_key, $0.host.host_key] }.compactMap { $0 }
        )
        #expect(texts.count == 7)
        for text in texts {
            let secret = try DHCHAPSecret(parsing: text)
            #expect(secret.text == text)
            #expect(!secret.description.contains(String(text.dropFirst(10).prefix(8))), "description shows the key")
        }
        let host = try DHCHAPSecret(parsing: "DHHC-1:00:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+KfiaR:")
        #expect(host.key == Array(0..<32))
    }

    @Test("every R1 and R2 on the wire recomputes from the keys, the challenges and the session keys")
    func responsesRecompute() throws {
        var r1 = 0
        var r2 = 0
        for testCase in vectors.cases {
            for queue in testCase.queues {
                let messages = try queue.messages.map { try $0.parsed }
                guard
                    case .challenge(let challenge)? = messages.first(where: {
                        if case .challenge = $0 { true } else { false }
                    }),
                    case .reply(let reply)? = messages.first(where: { if case .reply = $0 { true } else { false } })
                else { continue }
                let hash = try #require(DHCHAP.Hash(rawValue: challenge.hashIdentifier))
                let secret = queue.session_key.map(hexBytes)
                #expect((secret == nil) == (challenge.groupIdentifier == 0), "\(testCase.name)")
                let hostKey = try DHCHAPSecret(parsing: try #require(testCase.target.host_key))
                let expected = DHCHAP.hostResponse(
                    key: hostKey.transformedKey(nqn: testCase.hostnqn),
                    hash: hash,
                    challenge: DHCHAP.augmentedChallenge(challenge.challenge, hash: hash, sharedSecret: secret),
                    sequenceNumber: challenge.sequenceNumber,
                    transactionIdentifier: challenge.transactionIdentifier,
                    hostNQN: testCase.hostnqn,
                    subsystemNQN: vectors.subnqn
                )
                if testCase.name == "fail-wrong-host-key" {
                    #expect(expected != reply.response)
                } else {
                    #expect(expected == reply.response, "R1 of \(testCase.name) qid \(queue.qid)")
                    r1 += 1
                }
                guard
                    case .success1(let success)? = messages.first(where: {
                        if case .success1 = $0 { true } else { false }
                    }),
                    let response = success.response, let hostChallenge = reply.challenge
                else { continue }
                let controllerKey = try DHCHAPSecret(parsing: try #require(testCase.target.ctrl_key))
                let expected2 = DHCHAP.controllerResponse(
                    key: controllerKey.transformedKey(nqn: vectors.subnqn),
                    hash: hash,
                    challenge: DHCHAP.augmentedChallenge(hostChallenge, hash: hash, sharedSecret: secret),
                    sequenceNumber: reply.sequenceNumber,
                    transactionIdentifier: reply.transactionIdentifier,
                    hostNQN: testCase.hostnqn,
                    subsystemNQN: vectors.subnqn
                )
                #expect(expected2 == response, "R2 of \(testCase.name) qid \(queue.qid)")
                r2 += 1
            }
        }
        #expect(r1 == 20)
        #expect(r2 == 9)
    }

    @Test("our controller, given nvmet's random values, sends nvmet's bytes and accepts the kernel host's")
    func controllerReplays() throws {
        var replayed = 0
        for testCase in vectors.cases {
            for queue in testCase.queues where !queue.messages.isEmpty {
                let messages = try queue.messages.map { try $0.parsed }
                guard case .challenge(let challenge) = messages[1] else {
                    Issue.record("\(testCase.name): no challenge second")
                    continue
                }
                var replyDH: [UInt8] = []
                if case .reply(let reply) = messages[2] { replyDH = reply.dhValue }
                _ = replyDH
                let keyPair = queue.session_key.map {
                    ReplayedKeyPair(publicValue: challenge.dhValue, secret: hexBytes($0))
                }
                let policy = DHCHAPPolicy(
                    hostKeys: [try DHCHAPSecret(parsing: try #require(testCase.target.host_key))],
                    controllerKey: try testCase.target.ctrl_key.map { try DHCHAPSecret(parsing: $0) },
                    hash: try #require(DHCHAP.Hash(rawValue: challenge.hashIdentifier)),
                    group: try #require(DHCHAP.Group(rawValue: challenge.groupIdentifier))
                )
                var controller = DHCHAPControllerExchange(
                    policy: policy,
                    hostNQN: testCase.hostnqn,
                    subsystemNQN: vectors.subnqn,
                    entropy: replayEntropy(
                        random: challenge.challenge,
                        sequence: challenge.sequenceNumber,
                        keyPair: keyPair
                    )
                )
                var last: DHCHAPControllerExchange.Progress = .continuing
                for message in queue.messages {
                    if message.from == "host" {
                        last = controller.sendReceived(message.bytes)
                    } else {
                        let received = controller.receiveRequested(allocationLength: 4096)
                        let answer = try #require(received)
                        let name = try message.parsed.name
                        #expect(
                            Array(answer.message.readableBytesView) == hexBytes(message.raw),
                            "\(testCase.name) qid \(queue.qid): \(name)"
                        )
                        last = answer.progress
                    }
                }
                switch testCase.name {
                case "fail-wrong-host-key", "fail-ctrl-key-not-configured":
                    guard case .failed = last else {
                        Issue.record("\(testCase.name): \(last)")
                        continue
                    }
                case "fail-bi-wrong-ctrl-key":
                    // The host refused the controller with AUTH_Failure2.
                    guard case .failed(let why) = last, why.contains("AUTH_Failure2") else {
                        Issue.record("\(testCase.name): \(last)")
                        continue
                    }
                default:
                    #expect(last == .authenticated(keyIndex: 0), "\(testCase.name) qid \(queue.qid)")
                    #expect(controller.isAuthenticated)
                }
                replayed += 1
            }
        }
        #expect(replayed == 21)
    }

    @Test("our host, given the kernel's random values, sends the kernel's bytes and accepts nvmet's")
    func hostReplays() throws {
        var replayed = 0
        for testCase in vectors.cases {
            for queue in testCase.queues where !queue.messages.isEmpty {
                let messages = try queue.messages.map { try $0.parsed }
                guard case .reply(let reply) = messages[2] else {
                    Issue.record("\(testCase.name): no reply third")
                    continue
                }
                let keyPair = queue.session_key.map {
                    ReplayedKeyPair(publicValue: reply.dhValue, secret: hexBytes($0))
                }
                var host = DHCHAPHostExchange(
                    hostNQN: testCase.hostnqn,
                    subsystemNQN: vectors.subnqn,
                    hostKey: try DHCHAPSecret(parsing: try #require(testCase.host.host_key)),
                    controllerKey: try testCase.host.ctrl_key.map { try DHCHAPSecret(parsing: $0) },
                    transactionIdentifier: messages[0].transactionIdentifier,
                    entropy: replayEntropy(
                        random: reply.challenge ?? [],
                        sequence: reply.sequenceNumber,
                        keyPair: keyPair
                    )
                )
                var outgoing: [ByteBuffer] = [host.start().bytes]
                var outcome: DHCHAPHostExchange.Step?
                for message in queue.messages where message.from == "controller" {
                    let step = host.received(message.bytes)
                    outcome = step
                    switch step {
                    case .send(let next), .sendAndFinish(let next): outgoing.append(next.bytes)
                    case .failed(let next?, _): outgoing.append(next.bytes)
                    case .finished, .failed(nil, _): break
                    }
                }
                let sent = queue.messages.filter { $0.from == "host" }.map { hexBytes($0.raw) }
                #expect(outgoing.map { Array($0.readableBytesView) } == sent, "\(testCase.name) qid \(queue.qid)")
                switch (testCase.expect, outcome) {
                case ("ok", .finished?), ("ok", .sendAndFinish?), ("fail", .failed?): replayed += 1
                default: Issue.record("\(testCase.name): \(String(describing: outcome))")
                }
            }
        }
        #expect(replayed == 21)
    }
}

@Suite("DH-HMAC-CHAP: our host with our controller, and bad input")
struct DHCHAPExchangeTests {
    static let hostNQN = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000001"
    static let subsystemNQN = "nqn.2014-08.org.nvmexpress.discovery"

    let hostKey = try! DHCHAPSecret.generate()
    let controllerKey = try! DHCHAPSecret.generate(length: 48, transformation: .sha384)

    /// Runs a whole transaction; returns the controller's and the host's last word.
    func run(
        _ controller: inout DHCHAPControllerExchange,
        _ host: inout DHCHAPHostExchange
    ) -> (DHCHAPControllerExchange.Progress, DHCHAPHostExchange.Step) {
        var controllerProgress = controller.sendReceived(host.start().bytes)
        var hostStep: DHCHAPHostExchange.Step = .finished
        for _ in 0..<4 {
            guard let answer = controller.receiveRequested(allocationLength: 4096) else {
                Issue.record("no answer")
                break
            }
            controllerProgress = answer.progress
            hostStep = host.received(answer.message)
            switch hostStep {
            case .send(let message):
                controllerProgress = controller.sendReceived(message.bytes)
            case .sendAndFinish(let message):
                controllerProgress = controller.sendReceived(message.bytes)
                return (controllerProgress, hostStep)
            case .failed(let message?, _):
                controllerProgress = controller.sendReceived(message.bytes)
                return (controllerProgress, hostStep)
            case .finished, .failed(nil, _):
                return (controllerProgress, hostStep)
            }
        }
        return (controllerProgress, hostStep)
    }

    @Test(
        "every hash and group, one-way and two-way, with OpenSSL's DH",
        arguments: DHCHAP.Group.allCases
    )
    func allGroups(group: DHCHAP.Group) {
        for hash in DHCHAP.Hash.allCases {
            for twoWay in [false, true] {
                var controller = DHCHAPControllerExchange(
                    policy: DHCHAPPolicy(hostKeys: [hostKey], controllerKey: controllerKey, hash: hash, group: group),
                    hostNQN: Self.hostNQN,
                    subsystemNQN: Self.subsystemNQN
                )
                var host = DHCHAPHostExchange(
                    hostNQN: Self.hostNQN,
                    subsystemNQN: Self.subsystemNQN,
                    hostKey: hostKey,
                    controllerKey: twoWay ? controllerKey : nil
                )
                let (progress, step) = run(&controller, &host)
                #expect(progress == .authenticated(keyIndex: 0), "\(hash) \(group) two-way \(twoWay)")
                if twoWay {
                    guard case .sendAndFinish(.success2) = step else {
                        Issue.record("\(step)")
                        continue
                    }
                } else {
                    #expect(step == .finished)
                }
            }
        }
    }

    @Test("a wrong host key gets AUTH_Failure1 (failed); an old key still accepted while rotating")
    func wrongAndRotatedKeys() throws {
        let old = try DHCHAPSecret.generate()
        var controller = DHCHAPControllerExchange(
            policy: DHCHAPPolicy(hostKeys: [hostKey, old], group: .ffdhe2048),
            hostNQN: Self.hostNQN,
            subsystemNQN: Self.subsystemNQN
        )
        var host = DHCHAPHostExchange(hostNQN: Self.hostNQN, subsystemNQN: Self.subsystemNQN, hostKey: old)
        #expect(run(&controller, &host).0 == .authenticated(keyIndex: 1))

        var refusing = DHCHAPControllerExchange(
            policy: DHCHAPPolicy(hostKeys: [hostKey], group: .null),
            hostNQN: Self.hostNQN,
            subsystemNQN: Self.subsystemNQN
        )
        var stranger = DHCHAPHostExchange(
            hostNQN: Self.hostNQN,
            subsystemNQN: Self.subsystemNQN,
            hostKey: try DHCHAPSecret.generate()
        )
        let (progress, step) = run(&refusing, &stranger)
        guard case .failed = progress, case .failed(nil, let why) = step else {
            Issue.record("\(progress) \(step)")
            return
        }
        #expect(why.contains("authentication failed"))
        #expect(!refusing.isAuthenticated)
    }

    @Test("the host refuses a controller whose key is wrong with AUTH_Failure2")
    func wrongControllerKey() throws {
        var controller = DHCHAPControllerExchange(
            policy: DHCHAPPolicy(hostKeys: [hostKey], controllerKey: try DHCHAPSecret.generate()),
            hostNQN: Self.hostNQN,
            subsystemNQN: Self.subsystemNQN
        )
        var host = DHCHAPHostExchange(
            hostNQN: Self.hostNQN,
            subsystemNQN: Self.subsystemNQN,
            hostKey: hostKey,
            controllerKey: controllerKey
        )
        let (progress, step) = run(&controller, &host)
        guard case .failed(.failure2(let failure)?, _) = step, case .failed = progress else {
            Issue.record("\(progress) \(step)")
            return
        }
        #expect(failure.reason == .failed)
    }

    /// A controller after the host's Negotiate, its Challenge read.
    func challenged(group: DHCHAP.Group = .null) -> (DHCHAPControllerExchange, AuthenticationMessage.Challenge) {
        var controller = DHCHAPControllerExchange(
            policy: DHCHAPPolicy(hostKeys: [hostKey], group: group),
            hostNQN: Self.hostNQN,
            subsystemNQN: Self.subsystemNQN
        )
        var host = DHCHAPHostExchange(hostNQN: Self.hostNQN, subsystemNQN: Self.subsystemNQN, hostKey: hostKey)
        _ = controller.sendReceived(host.start().bytes)
        let answer = controller.receiveRequested(allocationLength: 4096)!
        guard case .challenge(let challenge) = try! AuthenticationMessage(parsing: answer.message) else {
            fatalError("no challenge")
        }
        return (controller, challenge)
    }

    /// The Failure1 the controller answers with next, and its explanation.
    func failure1(_ controller: inout DHCHAPControllerExchange) -> DHCHAP.FailureReason? {
        guard let answer = controller.receiveRequested(allocationLength: 4096),
            case .failure1(let failure) = try? AuthenticationMessage(parsing: answer.message),
            case .failed = answer.progress
        else { return nil }
        return failure.reason
    }

    func reply(
        to challenge: AuthenticationMessage.Challenge,
        transaction: UInt16? = nil,
        key: DHCHAPSecret? = nil
    )
        -> AuthenticationMessage
    {
        let hash = DHCHAP.Hash(rawValue: challenge.hashIdentifier)!
        return .reply(
            .init(
                transactionIdentifier: transaction ?? challenge.transactionIdentifier,
                response: DHCHAP.hostResponse(
                    key: (key ?? hostKey).transformedKey(nqn: Self.hostNQN),
                    hash: hash,
                    challenge: challenge.challenge,
                    sequenceNumber: challenge.sequenceNumber,
                    transactionIdentifier: transaction ?? challenge.transactionIdentifier,
                    hostNQN: Self.hostNQN,
                    subsystemNQN: Self.subsystemNQN
                ),
                challenge: nil,
                sequenceNumber: 0,
                dhValue: []
            )
        )
    }

    @Test("bad messages end in AUTH_Failure1 with the explanation NVMe gives, never a crash")
    func badInput() throws {
        // Truncated messages: every prefix of a Reply.
        let (base, challenge) = challenged()
        let whole = reply(to: challenge).bytes
        for length in 0..<whole.readableBytes {
            var controller = base
            _ = controller.sendReceived(whole.getSlice(at: 0, length: length)!)
            let reason = failure1(&controller)
            #expect(
                reason == .incorrectPayload || reason == .incorrectProtocolMessage,
                "prefix \(length): \(String(describing: reason))"
            )
        }
        // The right reply in the wrong transaction.
        var wrongTransaction = base
        _ = wrongTransaction.sendReceived(reply(to: challenge, transaction: challenge.transactionIdentifier &+ 1).bytes)
        #expect(failure1(&wrongTransaction) == .incorrectPayload)
        // A reply before any challenge.
        var early = DHCHAPControllerExchange(
            policy: DHCHAPPolicy(hostKeys: [hostKey]),
            hostNQN: Self.hostNQN,
            subsystemNQN: Self.subsystemNQN
        )
        _ = early.sendReceived(reply(to: challenge).bytes)
        #expect(failure1(&early) == .incorrectProtocolMessage)
        // Unknown hash and group IDs offered, none of them the controller's.
        let offers: [([UInt8], [UInt8], DHCHAP.FailureReason)] = [
            ([9, 200], [0, 1], .hashUnusable), ([1], [7, 99], .groupUnusable),
        ]
        for (hashes, groups, reason) in offers {
            var controller = DHCHAPControllerExchange(
                policy: DHCHAPPolicy(hostKeys: [hostKey], group: .ffdhe2048),
                hostNQN: Self.hostNQN,
                subsystemNQN: Self.subsystemNQN
            )
            let negotiate = AuthenticationMessage.negotiate(
                .init(
                    transactionIdentifier: 0,
                    protocols: [.init(identifier: 1, hashIdentifiers: hashes, groupIdentifiers: groups)]
                )
            )
            _ = controller.sendReceived(negotiate.bytes)
            #expect(failure1(&controller) == reason)
        }
        // An oversized DH value, and a value that is not in the group.
        let (dhBase, dhChallenge) = challenged(group: .ffdhe2048)
        for value in [
            [UInt8](repeating: 0xFF, count: 300), [UInt8](repeating: 0xFF, count: 256),
            [UInt8](repeating: 0, count: 255) + [1],
        ] {
            var controller = dhBase
            guard case .reply(var message) = reply(to: dhChallenge) else { return }
            message.dhValue = value
            _ = controller.sendReceived(AuthenticationMessage.reply(message).bytes)
            let reason = failure1(&controller)
            #expect(reason == (value.count == 256 ? .groupUnusable : .incorrectPayload), "\(value.count) bytes")
        }
        // Success2 in a one-way transaction.
        var oneWay = base
        _ = oneWay.sendReceived(reply(to: challenge).bytes)
        #expect(oneWay.receiveRequested(allocationLength: 4096)?.progress == .authenticated(keyIndex: 0))
        _ = oneWay.sendReceived(
            AuthenticationMessage.success2(transactionIdentifier: challenge.transactionIdentifier).bytes
        )
        #expect(failure1(&oneWay) == .incorrectProtocolMessage)
        #expect(!oneWay.isAuthenticated)
        // An old reply replayed in a new transaction (new challenge): refused.
        let (fresh, _) = challenged()
        var replayed = fresh
        _ = replayed.sendReceived(reply(to: challenge).bytes)
        #expect(failure1(&replayed) == .failed)
        // A Receive that cannot hold the Challenge: no message, the state unchanged.
        var small = DHCHAPControllerExchange(
            policy: DHCHAPPolicy(hostKeys: [hostKey]),
            hostNQN: Self.hostNQN,
            subsystemNQN: Self.subsystemNQN
        )
        var host = DHCHAPHostExchange(hostNQN: Self.hostNQN, subsystemNQN: Self.subsystemNQN, hostKey: hostKey)
        _ = small.sendReceived(host.start().bytes)
        #expect(small.receiveRequested(allocationLength: 20).map { _ in 1 } == nil)
        #expect(small.receiveRequested(allocationLength: 16 + 32 + 256).map { _ in 1 } != nil)
        // Garbage of every kind is read without a crash.
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<500 {
            var controller = base
            let bytes = (0..<Int.random(in: 0..<80, using: &generator)).map { _ in
                UInt8.random(in: 0...255, using: &generator)
            }
            _ = controller.sendReceived(ByteBuffer(bytes: bytes))
            _ = controller.receiveRequested(allocationLength: 4096)
            var host = DHCHAPHostExchange(hostNQN: Self.hostNQN, subsystemNQN: Self.subsystemNQN, hostKey: hostKey)
            _ = host.start()
            _ = host.received(ByteBuffer(bytes: bytes))
        }
    }

    @Test("OpenSSL's FFDHE: both ends agree in every group; values outside the group are refused")
    func ffdhe() throws {
        for group in DHCHAP.Group.allCases where group != .null {
            let a = try FFDHEKeyPair(group: group)
            let b = try FFDHEKeyPair(group: group)
            #expect(a.publicValue.count == group.valueLength)
            #expect(
                try a.sharedSecret(peerPublicValue: b.publicValue) == b.sharedSecret(peerPublicValue: a.publicValue)
            )
            let length = group.valueLength
            for bad in [
                [UInt8](repeating: 0, count: length), [UInt8](repeating: 0, count: length - 1) + [1],
                [UInt8](repeating: 0xFF, count: length), [1],
            ] {
                #expect(throws: DHCHAPKeyError.self, "\(group)") { try a.sharedSecret(peerPublicValue: bad) }
            }
        }
    }

    @Test("secrets: a mistyped key, a wrong length or an unknown transformation is refused by name")
    func secretErrors() throws {
        let good = "DHHC-1:00:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+KfiaR:"
        #expect(throws: DHCHAPSecret.FormatError.self) {
            try DHCHAPSecret(parsing: good.replacingOccurrences(of: "AAEC", with: "AAED"))
        }
        #expect(throws: DHCHAPSecret.FormatError.self) {
            try DHCHAPSecret(parsing: good.replacingOccurrences(of: ":00:", with: ":04:"))
        }
        #expect(throws: DHCHAPSecret.FormatError.self) { try DHCHAPSecret(parsing: "DHHC-1:00:AAAA:") }
        #expect(throws: DHCHAPSecret.FormatError.self) { try DHCHAPSecret(parsing: String(good.dropLast())) }
        #expect(throws: DHCHAPSecret.FormatError.self) { try DHCHAPSecret(key: Array(repeating: 1, count: 16)) }
        let made = try DHCHAPSecret.generate(length: 64, transformation: .sha512)
        #expect(try DHCHAPSecret(parsing: made.text) == made)
        #expect(made.text.hasPrefix("DHHC-1:03:"))
    }
}

/// A discovery service whose hosts must all authenticate with one policy (or are refused).
final class KeyedDiscoveryService: DiscoveryControllerService {
    let base = FakeDiscoveryService()
    let decision: HostAuthentication
    let outcomes = Mutex<[String]>([])

    init(_ decision: HostAuthentication) { self.decision = decision }

    func discoveryLogPage(for host: DiscoveryHostContext) -> ByteBuffer { base.discoveryLogPage(for: host) }
    func allocateControllerIdentifier() -> UInt16 { base.allocateControllerIdentifier() }
    func authentication(for host: DiscoveryHostContext) -> HostAuthentication { decision }
    func hostAuthenticated(_ host: DiscoveryHostContext, keyIndex: Int) {
        outcomes.withLock { $0.append("ok \(keyIndex)") }
    }
    func authenticationFailed(_ host: DiscoveryHostContext, reason: String) {
        outcomes.withLock { $0.append("failed") }
    }
}

@Suite("Controller core: a host with a key authenticates before anything else")
struct ControllerAuthenticationTests {
    let hostKey = try! DHCHAPSecret.generate()

    func capsule(_ pdu: NVMeTCPPDU) -> CapsuleCommand {
        guard case .capsuleCommand(let capsule) = pdu else { preconditionFailure("not a command") }
        return capsule
    }

    func completion(_ actions: [ControllerStateMachine.Action]) -> (CompletionQueueEntry, ByteBuffer?)? {
        for action in actions {
            if case .complete(let entry, let data) = action { return (entry, data) }
        }
        return nil
    }

    func send(
        _ core: inout ControllerStateMachine,
        _ message: AuthenticationMessage,
        cid: UInt16
    ) -> [ControllerStateMachine.Action] {
        let bytes = message.bytes
        let entry = AuthenticationCommand.sendEntry(commandIdentifier: cid, length: bytes.readableBytes)
        return core.commandReceived(capsule(HostPDU.command(entry, data: bytes)), now: TestValues.start)
    }

    func receive(
        _ core: inout ControllerStateMachine,
        cid: UInt16,
        length: Int = 4096
    ) -> [ControllerStateMachine.Action] {
        let entry = AuthenticationCommand.receiveEntry(commandIdentifier: cid, length: length)
        return core.commandReceived(capsule(HostPDU.command(entry)), now: TestValues.start)
    }

    func connected(_ service: KeyedDiscoveryService) -> (ControllerStateMachine, [ControllerStateMachine.Action]) {
        var core = ControllerStateMachine(
            configuration: TestValues.configuration(),
            serving: .discovery(service),
            transportSetupStep: nil
        )
        _ = core.connectionOpened(now: TestValues.start)
        let actions = core.commandReceived(capsule(HostPDU.connect(cid: 1)), now: TestValues.start)
        return (core, actions)
    }

    @Test("AUTHREQ in the Connect response; 191h before authentication; the page after it (two-way)")
    func authenticates() throws {
        let controllerKey = try DHCHAPSecret.generate()
        let service = KeyedDiscoveryService(.required(DHCHAPPolicy(hostKeys: [hostKey], controllerKey: controllerKey)))
        var (core, connect) = connected(service)
        let (response, _) = try #require(completion(connect))
        #expect(response.status == .success)
        #expect(response.result >> 16 == 0x2, "AUTHREQ.ATR")
        let host = try #require(core.host)

        // Identify before authenticating: Authentication Required.
        let early = core.commandReceived(capsule(HostPDU.identify(cid: 2)), now: TestValues.start)
        #expect(completion(early)?.0.status == .authenticationRequired.withDoNotRetry)

        var exchange = DHCHAPHostExchange(
            hostNQN: host.hostNQN,
            subsystemNQN: host.subsystemNQN,
            hostKey: hostKey,
            controllerKey: controllerKey
        )
        #expect(completion(send(&core, exchange.start(), cid: 3))?.0.status == .success)
        var cid: UInt16 = 4
        var done = false
        while !done, cid < 12 {
            let (received, data) = try #require(completion(receive(&core, cid: cid)))
            #expect(received.status == .success)
            #expect(data?.readableBytes == 4096, "the whole allocation, as nvmet returns it")
            cid += 1
            switch exchange.received(try #require(data)) {
            case .send(let message):
                #expect(completion(send(&core, message, cid: cid))?.0.status == .success)
            case .sendAndFinish(let message):
                let last = send(&core, message, cid: cid)
                #expect(completion(last)?.0.status == .success)
                #expect(last.contains(.session(.hostAuthenticated(host, keyIndex: 0))))
                done = true
            case .finished, .failed:
                Issue.record("unexpected end")
                done = true
            }
            cid += 1
        }
        _ = core.commandReceived(capsule(HostPDU.enable(cid: 20)), now: TestValues.start)
        let identify = core.commandReceived(capsule(HostPDU.identify(cid: 21)), now: TestValues.start)
        #expect(completion(identify)?.0.status == .success)
    }

    @Test("a wrong key: AUTH_Failure1, then the association ends; the service hears of it")
    func wrongKey() throws {
        let service = KeyedDiscoveryService(.required(DHCHAPPolicy(hostKeys: [hostKey], group: .null)))
        var (core, _) = connected(service)
        let host = try #require(core.host)
        var exchange = DHCHAPHostExchange(
            hostNQN: host.hostNQN,
            subsystemNQN: host.subsystemNQN,
            hostKey: try DHCHAPSecret.generate()
        )
        _ = send(&core, exchange.start(), cid: 2)
        let (_, challenge) = try #require(completion(receive(&core, cid: 3)))
        guard case .send(let reply) = exchange.received(try #require(challenge)) else {
            Issue.record("no reply")
            return
        }
        _ = send(&core, reply, cid: 4)
        let failure = receive(&core, cid: 5)
        let (_, data) = try #require(completion(failure))
        guard case .failure1(let message) = try AuthenticationMessage(parsing: try #require(data)) else {
            Issue.record("no AUTH_Failure1")
            return
        }
        #expect(message.reason == .failed)
        #expect(failure.contains { if case .close = $0 { true } else { false } })
        #expect(core.isClosed)
        #expect(failure.contains { if case .session(.authenticationFailed(host, _)) = $0 { true } else { false } })
    }

    @Test("a host without a key under --auth required: Connect Invalid Host")
    func refused() throws {
        let (_, connect) = connected(KeyedDiscoveryService(.refused("no key")))
        #expect(completion(connect)?.0.status == .connectInvalidHost.withDoNotRetry)
        #expect(connect.contains(.session(.connectRefused(reason: "no key"))))
    }

    @Test("no authentication within the setup timeout ends the association")
    func timeout() throws {
        var (core, _) = connected(KeyedDiscoveryService(.required(DHCHAPPolicy(hostKeys: [hostKey]))))
        let later = core.keepAliveTimerFired(now: TestValues.start + .seconds(11))
        #expect(later.contains { if case .close(let why) = $0 { why.contains("DH-HMAC-CHAP") } else { false } })
    }

    @Test("bad Authentication Send/Receive fields get Invalid Field, and the controller serves on")
    func badFields() throws {
        var (core, _) = connected(KeyedDiscoveryService(.required(DHCHAPPolicy(hostKeys: [hostKey]))))
        var entry = AuthenticationCommand.receiveEntry(commandIdentifier: 2, length: 4096)
        entry.cdw10 = 0xEA01_0100  // SECP EAh
        #expect(
            completion(core.commandReceived(capsule(HostPDU.command(entry)), now: TestValues.start))?.0.status
                == .invalidField.withDoNotRetry
        )
        let huge = AuthenticationCommand.receiveEntry(commandIdentifier: 3, length: 1 << 20)
        #expect(
            completion(core.commandReceived(capsule(HostPDU.command(huge)), now: TestValues.start))?.0.status
                == .invalidField.withDoNotRetry
        )
        // A Send whose TL differs from the data it carries.
        var short = AuthenticationCommand.sendEntry(commandIdentifier: 4, length: 72)
        short.cdw11 = 10
        let negotiate = AuthenticationMessage.negotiate(.init(transactionIdentifier: 0, protocols: [])).bytes
        #expect(
            completion(core.commandReceived(capsule(HostPDU.command(short, data: negotiate)), now: TestValues.start))?.0
                .status == .dataSGLLengthInvalid.withDoNotRetry
        )
        #expect(!core.isClosed)
    }
}
