import DEMCore
import Foundation
import NIOCore
import Testing

/// Randomized, deterministic fuzzing of the frame decoder, the PDU parser and the discovery
/// controller state machine together, fed as the channel handler feeds them.
///
/// Reproduce a run with `DEM_FUZZ_SEED=<seed printed by the test>`; make it longer with
/// `DEM_FUZZ_PDUS=<count>` (default 100 000 PDUs).
@Suite("Fuzzing the controller")
struct FuzzTests {
    static var seed: UInt64 {
        ProcessInfo.processInfo.environment["DEM_FUZZ_SEED"].flatMap { UInt64($0, radix: 16) ?? UInt64($0) }
            ?? 0x0DE5_C0DE_2024_0001
    }
    static var minimumPDUs: Int {
        ProcessInfo.processInfo.environment["DEM_FUZZ_PDUS"].flatMap { Int($0) } ?? 100_000
    }

    @Test("random and mutated sessions through framer, parser and state machine: no crash, well-formed actions")
    func mutatedSessions() {
        let seed = Self.seed
        var fuzzer = SessionFuzzer(seed: seed)
        let clock = ContinuousClock()
        let start = clock.now
        let result = fuzzer.run(minimumPDUs: Self.minimumPDUs)
        let elapsed = clock.now - start
        print(
            "FuzzTests: seed \(String(seed, radix: 16)), \(result.pdus) PDUs in \(result.sessions) sessions, "
                + "\(result.closes) closes (\(result.terminations) by C2HTermReq), \(result.completions) completions, "
                + "\(elapsed)"
        )
        #expect(result.pdus >= Self.minimumPDUs)
        #expect(
            result.issues.isEmpty,
            "seed \(String(seed, radix: 16)): \(result.issues.count) ill-formed action sequences, first: \(result.issues.prefix(5))"
        )
        #expect(
            result.terminations > 0 && result.completions > 0 && result.controllersCreated > 0,
            "the fuzzer reached every stage"
        )
    }

    @Test("random frames straight into the PDU parser with every digest setting: a PDU or a typed error")
    func randomFramesIntoParser() {
        var rng = SplitMix64(seed: Self.seed ^ 0xF00D)
        var decoded = 0
        var badStatus: [UInt16] = []
        let types: [UInt8] = [0, 1, 2, 3, 4, 5, 6, 7, 9]
        let hlens: [UInt8] = [0, 8, 24, 72, 128, 255]
        for _ in 0..<50_000 {
            let length = Int.random(in: 0...300, using: &rng)
            var bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if length >= 8, Bool.random(using: &rng) {
                // A plausible header makes the parser go further.
                bytes[0] = types.randomElement(using: &rng)!
                bytes[1] = UInt8.random(in: 0...15, using: &rng)
                bytes[2] =
                    Bool.random(using: &rng)
                    ? NVMeTCPPDUType(rawValue: bytes[0])!.headerLength.u8 : hlens.randomElement(using: &rng)!
                bytes[3] = [0, 24, 28, 72, 76, 128, bytes[3]].randomElement(using: &rng)!
                bytes.fixPLEN()
                if bytes[1] & 1 != 0, Int(bytes[2]) + 4 <= length, Bool.random(using: &rng) { bytes.sealHeaderDigest() }
            }
            let digests = NVMeTCPDigests(rawValue: UInt8.random(in: 0...3, using: &rng))
            do {
                _ = try NVMeTCPPDU.decode(frame: ByteBuffer(bytes: bytes), digests: digests)
                decoded += 1
            } catch {
                if !(1...6).contains(error.status.rawValue) { badStatus.append(error.status.rawValue) }
            }
        }
        #expect(badStatus.isEmpty)
        #expect(decoded > 0)
    }
}

extension Int {
    fileprivate var u8: UInt8 { UInt8(truncatingIfNeeded: self) }
}

/// Checks the actions of one machine, call after call.
struct ActionChecker {
    let maximumC2HDataLength: Int
    var closed = false
    var sentAnything = false
    var controllerCreated = false
    var openTransfers: [UInt16: UInt32] = [:]
    var issues: [String] = []
    var terminations = 0
    var completions = 0
    private var sentCount = 0

    init(maximumC2HDataLength: Int) {
        self.maximumC2HDataLength = maximumC2HDataLength
    }

    private mutating func issue(_ text: String) {
        if issues.count < 20 { issues.append(text) }
    }

    mutating func check(_ actions: [Action], machine: NVMeTCPControllerBinding, commandIdentifiers: [UInt16]) {
        if closed && !actions.isEmpty {
            issue("actions after close: \(actions)")
            return
        }
        for (index, action) in actions.enumerated() {
            let next = index + 1 < actions.count ? actions[index + 1] : nil
            switch action {
            case .close:
                closed = true
                if next != nil { issue("actions after .close in one call: \(actions)") }
                if !machine.isClosed { issue(".close but the machine is not closed") }
            case .send(let pdu):
                check(pdu, next: next, machine: machine, commandIdentifiers: commandIdentifiers)
                sentAnything = true
            case .session(.scheduleKeepAliveCheck(let delay)):
                if delay <= .zero { issue("keep-alive check scheduled after \(delay)") }
            case .session(.controllerCreated):
                if controllerCreated { issue("a second controller on one connection") }
                controllerCreated = true
            default:
                break
            }
        }
        if machine.isClosed != closed { issue("isClosed \(machine.isClosed) but close seen \(closed)") }
    }

    private mutating func check(
        _ pdu: NVMeTCPPDU,
        next: Action?,
        machine: NVMeTCPControllerBinding,
        commandIdentifiers: [UInt16]
    ) {
        switch pdu {
        case .initializeConnectionResponse(let response):
            if sentAnything { issue("ICResp is not the first PDU sent") }
            if response.pduFormatVersion != 0 { issue("ICResp PFV \(response.pduFormatVersion)") }
        case .controllerToHostTerminationRequest(let request):
            terminations += 1
            if !(1...6).contains(request.status.rawValue) { issue("C2HTermReq FES \(request.status.rawValue)") }
            if request.pduInError.readableBytes > 128 {
                issue("C2HTermReq with \(request.pduInError.readableBytes) bytes")
            }
            if next.map({ if case .close = $0 { return true } else { return false } }) != true {
                issue("C2HTermReq not followed by close")
            }
        case .capsuleResponse(let response):
            completions += 1
            let cid = response.completion.commandIdentifier
            if !commandIdentifiers.contains(cid) { issue("CapsuleResp for CID \(cid), never sent") }
            if openTransfers[cid] != nil { issue("CapsuleResp for CID \(cid) before its last C2HData") }
        case .controllerToHostData(let data):
            let cid = data.commandIdentifier
            let expected = openTransfers[cid] ?? 0
            if data.dataOffset != expected { issue("C2HData DATAO \(data.dataOffset), expected \(expected)") }
            if data.data.readableBytes == 0 || data.data.readableBytes > maximumC2HDataLength {
                issue("C2HData of \(data.data.readableBytes) bytes")
            }
            if data.isSuccess { issue("C2HData with SUCCESS (DEM always sends a CapsuleResp)") }
            if data.isLast {
                openTransfers[cid] = nil
                if next?.completion?.commandIdentifier != cid {
                    issue("the last C2HData is not followed by its CapsuleResp")
                }
            } else {
                openTransfers[cid] = data.dataOffset + UInt32(data.data.readableBytes)
            }
        case .readyToTransfer(let request):
            // An R2T asks for the whole of a command's data, of a command the host sent.
            if !commandIdentifiers.contains(request.commandIdentifier) {
                issue("R2T for CID \(request.commandIdentifier), never sent")
            }
            if request.offset != 0 || request.length == 0
                || Int(request.length) > DiscoveryControllerConfiguration(uniqueNQN: "x").maximumHostDataLength
            {
                issue("R2T for \(request.length) bytes at \(request.offset)")
            }
        default:
            issue("the controller sent a \(pdu.type)")
        }
        // What is sent must read back as itself, with the connection's digests and alignment
        // (every fourth PDU, to keep the run short).
        sentCount += 1
        guard sentCount % 4 == 0 else { return }
        var buffer = ByteBuffer()
        buffer.writeNVMeTCPPDU(pdu, digests: machine.digests, dataAlignment: machine.hostDataAlignment)
        let pdo = Int(buffer.getInteger(at: 3, as: UInt8.self) ?? 0)
        if pdo % machine.hostDataAlignment != 0 { issue("PDO \(pdo) not aligned to \(machine.hostDataAlignment)") }
        switch Result(catching: { () throws(NVMeTCPTransportError) in
            try NVMeTCPPDU.decode(frame: buffer, digests: machine.digests)
        }) {
        case .success(let decoded): if decoded != pdu { issue("\(pdu.type) does not read back as itself") }
        case .failure(let error): issue("\(pdu.type) as sent does not parse: \(error)")
        }
    }
}

/// Builds valid host sessions, breaks them, and feeds them to a ``ControllerHarness``.
struct SessionFuzzer {
    var rng: SplitMix64
    let configuration = TestValues.configuration(maximumC2HDataLength: 2048, asynchronousEventRequestLimit: 4)

    struct Result {
        var pdus = 0
        var sessions = 0
        var closes = 0
        var terminations = 0
        var completions = 0
        var controllersCreated = 0
        var issues: [String] = []
    }

    init(seed: UInt64) {
        rng = SplitMix64(seed: seed)
    }

    private struct EncodingKey: Hashable {
        var pdu: NVMeTCPPDU
        var digests: NVMeTCPDigests
    }
    /// Host PDUs repeat a lot; encoding them once keeps a debug-build run short.
    private var encodings: [EncodingKey: [UInt8]] = [:]

    mutating func wireBytes(_ pdu: NVMeTCPPDU, digests: NVMeTCPDigests) -> [UInt8] {
        let key = EncodingKey(pdu: pdu, digests: digests)
        if let bytes = encodings[key] { return bytes }
        let bytes = pdu.wireBytes(digests: digests)
        encodings[key] = bytes
        return bytes
    }

    mutating func chance(_ percent: Int) -> Bool { Int.random(in: 0..<100, using: &rng) < percent }
    mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &rng) }
    mutating func byte() -> UInt8 { UInt8.random(in: 0...255, using: &rng) }
    mutating func pick<T>(_ values: [T]) -> T { values.randomElement(using: &rng)! }

    static let interesting16: [UInt16] = [
        0, 1, 2, 0x1F, 0x7F, 0x80, 0xFF, 0x3FF, 0x400, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF,
    ]
    static let fuzzKey = try! DHCHAPSecret(key: Array(repeating: 0x5A, count: 32))
    static let interesting32: [UInt32] = [
        0, 1, 3, 4, 7, 8, 0x3FF, 0x400, 0x1000, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFE, 0xFFFF_FFFF,
    ]

    /// A plausible host session: ICReq, Connect, CC.EN, then random admin commands.
    mutating func validSession() -> (digests: NVMeTCPDigests, pdus: [NVMeTCPPDU]) {
        let digests = NVMeTCPDigests(rawValue: UInt8(int(0...3)))
        var pdus: [NVMeTCPPDU] = [
            HostPDU.icreq(hostPDUDataAlignment: chance(70) ? 0 : UInt8(int(0...31)), digests: digests)
        ]
        pdus.append(
            HostPDU.connect(
                cid: UInt16(int(0...3)),
                subsystemNQN: chance(50) ? DEMCore.wellKnownDiscoveryNQN : TestValues.uniqueNQN,
                submissionQueueSize: pick([31, 31, 127, 3, 1023]),
                keepAliveTimeout: pick([0, 0, 100, 5_000, 30_000])
            )
        )
        if chance(90) { pdus.append(HostPDU.enable(cid: UInt16(int(0...15)))) }
        for _ in 0..<int(2...25) {
            let cid = UInt16(int(0...31))
            switch int(0...16) {
            case 14, 15:
                // Authentication Send: a plausible message, or noise.
                var message: [UInt8]
                switch int(0...5) {
                case 0:
                    message = Array(
                        AuthenticationMessage.negotiate(
                            .init(
                                transactionIdentifier: UInt16(int(0...2)),
                                secureChannelConcatenation: chance(90) ? 0 : byte(),
                                protocols: [
                                    .init(
                                        identifier: chance(90) ? 1 : byte(),
                                        hashIdentifiers: chance(80) ? [1, 2, 3] : [byte()],
                                        groupIdentifiers: chance(80) ? [0, 1, 2] : [byte(), byte()]
                                    )
                                ]
                            )
                        ).bytes.readableBytesView
                    )
                case 1:
                    message = Array(
                        AuthenticationMessage.reply(
                            .init(
                                transactionIdentifier: UInt16(int(0...2)),
                                response: (0..<pick([32, 32, 48, 0, 255])).map { _ in byte() },
                                challenge: chance(50) ? (0..<32).map { _ in byte() } : nil,
                                sequenceNumber: UInt32(int(0...3)),
                                dhValue: (0..<pick([0, 0, 256, 300, 1])).map { _ in byte() }
                            )
                        ).bytes.readableBytesView
                    )
                case 2:
                    message = Array(
                        AuthenticationMessage.success2(transactionIdentifier: UInt16(int(0...2))).bytes
                            .readableBytesView
                    )
                case 3:
                    message = Array(
                        AuthenticationMessage.failure2(.init(transactionIdentifier: 0, reason: .failed)).bytes
                            .readableBytesView
                    )
                default:
                    message = (0..<int(0...100)).map { _ in byte() }
                }
                if message.isEmpty { message = [byte()] }
                var entry = AuthenticationCommand.sendEntry(commandIdentifier: cid, length: message.count)
                if chance(10) { entry.cdw10 = UInt32(byte()) << 24 | 0x0101_00 }
                if chance(10) { entry.cdw11 = UInt32(pick([0, 1, 8, 4096])) }
                pdus.append(HostPDU.command(entry, data: ByteBuffer(bytes: message)))
            case 16:
                var entry = AuthenticationCommand.receiveEntry(
                    commandIdentifier: cid,
                    length: pick([4096, 4096, 4096, 8, 16, 48, 0, 70_000])
                )
                if chance(10) { entry.cdw10 = UInt32(byte()) << 24 | 0x0101_00 }
                pdus.append(HostPDU.command(entry))
            case 0:
                pdus.append(
                    HostPDU.propertyGet(cid: cid, offset: pick([0x00, 0x08, 0x14, 0x1C, 0x20]), size8: chance(50))
                )
            case 1:
                pdus.append(
                    HostPDU.propertySet(
                        cid: cid,
                        offset: 0x14,
                        value: pick([0x0046_0001, 0x0046_0000, 0x0046_4001, 0x0046_8001])
                    )
                )
            case 2, 3: pdus.append(HostPDU.identify(cid: cid, cns: chance(90) ? 1 : UInt8(int(0...3))))
            case 4, 5, 6:
                pdus.append(
                    HostPDU.getLogPage(
                        cid: cid,
                        offset: chance(70) ? UInt64(pick([0, 1024, 2048, 3072, 4096])) : UInt64(int(0...6000)),
                        length: UInt32(pick([4, 16, 1024, 3072, 4096, 8192, 5000])) & ~3,
                        retainAsynchronousEvent: chance(40)
                    )
                )
            case 7, 8: pdus.append(HostPDU.asynchronousEventRequest(cid: cid))
            case 9: pdus.append(HostPDU.keepAlive(cid: cid))
            case 10:
                pdus.append(
                    HostPDU.setFeatures(
                        cid: cid,
                        feature: pick([0x0F, 0x0B, 0x07]),
                        value: pick([0, 1000, 0x8000_0000]),
                        save: chance(10)
                    )
                )
            case 11: pdus.append(HostPDU.getFeatures(cid: cid, feature: pick([0x0F, 0x0B, 0x07])))
            case 12:
                pdus.append(
                    HostPDU.command(
                        SubmissionQueueEntry(
                            opcode: byte(),
                            commandIdentifier: cid,
                            namespaceIdentifier: UInt32(byte())
                        )
                    )
                )
            default:
                if chance(30) {
                    pdus.append(HostPDU.disconnect(cid: cid))
                } else if chance(20) {
                    pdus.append(HostPDU.h2cTermReq(.pduSequenceError))
                } else {
                    pdus.append(HostPDU.keepAlive(cid: cid))
                }
            }
        }
        return (digests, pdus)
    }

    /// Breaks one PDU's bytes.
    mutating func mutate(_ bytes: inout [UInt8]) {
        guard !bytes.isEmpty else { return }
        switch int(0...11) {
        case 0:  // flip a bit
            let i = int(0...(bytes.count - 1))
            bytes[i] ^= 1 << UInt8(int(0...7))
        case 1:  // a random byte
            bytes[int(0...(bytes.count - 1))] = byte()
        case 2:  // PDU-TYPE
            bytes[0] = chance(50) ? pick([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0x0A, 0xFF]) : byte()
        case 3:  // FLAGS (an earlier cut may have left a single byte)
            if bytes.count > 1 { bytes[1] = chance(50) ? UInt8(int(0...15)) : byte() }
        case 4:  // HLEN, PDO
            if bytes.count > 3 { bytes[int(2...3)] = pick([0, 4, 8, 23, 24, 28, 71, 72, 76, 127, 128, 132, 255]) }
        case 5:  // PLEN
            if bytes.count >= 8 {
                bytes.setLE32(
                    pick([
                        0, 7, 8, 23, 24, 72, UInt32(bytes.count - 1), UInt32(bytes.count + 1),
                        UInt32(configuration.maximumPDULength), UInt32(configuration.maximumPDULength + 1), 0xFFFF_FFFF,
                    ]),
                    at: 4
                )
            }
        case 6, 7:  // a 16-bit field, e.g. CID, QID, SQSIZE, RECFMT, CNTLID
            if bytes.count >= 4 {
                let offset = int(0...(bytes.count / 2 - 1)) * 2
                bytes.setLE16(pick(Self.interesting16), at: offset)
            }
        case 8, 9:  // a 32-bit field in the SQE (CDW10–15, SGL length, NSID/FCTYPE)
            if bytes.count >= 72 {
                let offset = pick([12, 40, 44, 48, 52, 56, 60, 64, 68])
                bytes.setLE32(pick(Self.interesting32) | (chance(30) ? UInt32(byte()) : 0), at: offset)
            } else if bytes.count >= 8 {
                bytes.setLE32(pick(Self.interesting32), at: (int(0...(bytes.count / 4 - 1))) * 4)
            }
        case 10:  // opcode and FCTYPE of a command
            if bytes.count >= 72 {
                bytes[8] = pick([0x02, 0x06, 0x09, 0x0A, 0x0C, 0x18, 0x7F, byte()])
                bytes[12] = pick([0x00, 0x01, 0x04, 0x05, 0x06, 0x08, byte()])
            }
        default:  // cut the PDU short (PLEN unchanged)
            bytes.removeLast(int(1...bytes.count))
        }
        // Often re-seal the digests so that the mutation gets past them into the state machine.
        if chance(70), bytes.count >= 8, bytes[1] & 0x01 != 0 {
            let hlen = Int(bytes[2])
            if hlen > 0, hlen + 4 <= bytes.count { bytes.sealHeaderDigest() }
        }
    }

    /// A PDU of random type and length.
    mutating func garbagePDU() -> [UInt8] {
        let type = chance(80) ? pick([UInt8(0), 1, 2, 3, 4, 5, 6, 7, 9]) : byte()
        let hlen = NVMeTCPPDUType(rawValue: type)?.headerLength ?? 24
        let length = chance(70) ? hlen + int(0...64) : int(8...400)
        var bytes = (0..<length).map { _ in byte() }
        bytes[0] = type
        bytes[1] = UInt8(int(0...15))
        bytes[2] = UInt8(truncatingIfNeeded: hlen)
        bytes[3] = chance(50) ? 0 : UInt8(truncatingIfNeeded: hlen)
        bytes.fixPLEN()
        return bytes
    }

    /// One connection's worth of bytes.
    mutating func sessionBytes() -> [UInt8] {
        if chance(3) { return (0..<int(1...600)).map { _ in byte() } }  // pure noise
        let (digests, pdus) = validSession()
        var encoded: [[UInt8]] = pdus.enumerated().map { index, pdu in
            wireBytes(pdu, digests: index == 0 ? [] : digests)
        }
        if chance(85) {
            for _ in 0..<int(1...3) {
                if encoded.isEmpty { break }
                // Mutations mostly after the handshake, so sessions get somewhere first.
                let index = chance(80) ? int(min(1, encoded.count - 1)...(encoded.count - 1)) : 0
                switch int(0...9) {
                case 0: encoded.remove(at: index)
                case 1: encoded.insert(encoded[index], at: index)
                case 2:
                    let other = int(0...(encoded.count - 1))
                    encoded.swapAt(index, other)
                case 3: encoded.insert(garbagePDU(), at: index)
                default: mutate(&encoded[index])
                }
            }
        }
        var bytes = encoded.flatMap { $0 }
        if chance(10) { bytes.removeLast(int(0...bytes.count)) }
        if chance(5) { bytes += sessionBytes() }  // two sessions back to back on one connection
        return bytes
    }

    mutating func run(minimumPDUs: Int) -> Result {
        var result = Result()
        while result.pdus < minimumPDUs {
            result.sessions += 1
            // A third of the sessions are with a controller that demands DH-HMAC-CHAP.
            let service =
                chance(33)
                ? FakeDiscoveryService(
                    authentication: .required(
                        DHCHAPPolicy(
                            hostKeys: [Self.fuzzKey],
                            controllerKey: Self.fuzzKey,
                            group: chance(80) ? .null : .ffdhe2048
                        )
                    )
                )
                : FakeDiscoveryService()
            var harness = ControllerHarness(configuration: configuration, service: service)
            var checker = ActionChecker(maximumC2HDataLength: configuration.maximumC2HDataLength)
            let bytes = sessionBytes()
            var offset = 0
            while offset < bytes.count && !checker.closed {
                let chunk = chance(30) ? int(1...16) : int(1...2048)
                let end = min(bytes.count, offset + chunk)
                let actions = harness.feed(ByteBuffer(bytes: bytes[offset..<end]))
                checker.check(actions, machine: harness.machine, commandIdentifiers: harness.commandIdentifiers)
                offset = end
                // Time passes; timers fire; the catalog changes.
                if chance(20) { harness.now = harness.now + .milliseconds(Int64(int(0...40_000))) }
                if chance(10) {
                    checker.check(
                        harness.keepAliveTimerFired(),
                        machine: harness.machine,
                        commandIdentifiers: harness.commandIdentifiers
                    )
                }
                if chance(10) {
                    checker.check(
                        harness.discoveryLogChanged(),
                        machine: harness.machine,
                        commandIdentifiers: harness.commandIdentifiers
                    )
                }
            }
            // Once closed, every event is ignored.
            if checker.closed {
                let after =
                    harness.machine.discoveryLogChanged()
                    + harness.machine.keepAliveTimerFired(now: harness.now + .hours(1))
                if !after.isEmpty { result.issues.append("events after close produced \(after)") }
                result.closes += 1
            }
            result.pdus += harness.framesSeen
            result.terminations += checker.terminations
            result.completions += checker.completions
            result.controllersCreated += checker.controllerCreated ? 1 : 0
            if result.issues.count < 20 { result.issues += checker.issues }
        }
        return result
    }
}

/// Inputs the fuzzer found that crashed (trapped) the controller. Each runs in its own process
/// (an exit test), so a crash fails the test instead of ending the run.
@Suite("Fuzz regressions")
struct FuzzRegressionTests {
    @Test("Connect with SQSIZE FFFFh is refused with Connect Invalid Parameters (IPO 44), not a division by zero")
    func connectWithMaximumSQSIZE() async {
        await #expect(processExitsWith: .success) {
            var harness = ControllerHarness()
            _ = harness.feed(HostPDU.icreq())
            let actions = harness.feed(HostPDU.connect(cid: 1, submissionQueueSize: 0xFFFF))
            // SQSIZE above CAP.MQES (1023): Connect Invalid Parameters, IPO 44 (SQSIZE).
            guard let completion = actions.completions.first,
                completion.status == NVMeStatus.connectInvalidParameters.withDoNotRetry,
                completion.result == 44
            else { exit(2) }
        }
    }
}
