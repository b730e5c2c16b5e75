import DEMCore
import NIOCore
import Testing

/// What a discovery controller does with bad input, as one table. Each case is fed exactly as the
/// NIO handler feeds the controller: bytes into the frame decoder (`nextFrame`), each frame into
/// `NVMeTCPPDU.decode(frame:digests:)` with the digests negotiated so far, each PDU into the state
/// machine, and framing or parsing errors into `transportErrorCaught`.
///
/// Two kinds of reaction (DESIGN.md "Two kinds of error"):
/// - a broken transport gets a C2HTermReq with FES/FEI and the connection closes (`.terminate`);
/// - a bad command gets an NVMe status in its CapsuleResp and the queue goes on (`.status`).
struct BadInput: Sendable, CustomTestStringConvertible {
    /// How far the connection got before the bad input.
    enum Stage: Sendable {
        /// Nothing received yet.
        case fresh
        /// ICReq/ICResp done.
        case initialized
        /// Connect done, CC.EN still 0.
        case connected
        /// Connect done and CC.EN = 1.
        case enabled
    }

    /// One event fed to the connection.
    enum Step: Sendable {
        /// A PDU, written with the digests negotiated on the connection.
        case pdu(NVMeTCPPDU)
        /// Bytes on the wire.
        case bytes([UInt8])
        /// A PDU written with the negotiated digests, then changed.
        case mutated(NVMeTCPPDU, @Sendable (inout [UInt8]) -> Void)
        /// The discovery log page changed.
        case logChanged
    }

    /// The controller's reaction to the last step.
    enum Reaction: Sendable, Equatable, CustomStringConvertible {
        /// A C2HTermReq with this FES and FEI, then close.
        case terminate(fes: UInt16, fei: UInt32)
        /// A CapsuleResp with this SCT/SC/DNR; the connection stays open.
        case status(sct: UInt8, sc: UInt8, dnr: Bool)
        /// Close without sending anything.
        case close

        var description: String {
            switch self {
            case .terminate(let fes, let fei): return "C2HTermReq FES \(fes) FEI \(fei), close"
            case .status(let sct, let sc, let dnr): return "status \(sct)/\(String(sc, radix: 16))h\(dnr ? " DNR" : "")"
            case .close: return "close, no reply"
            }
        }
    }

    var name: String
    var stage: Stage = .enabled
    var digests: NVMeTCPDigests = []
    var steps: [Step]
    var expected: Reaction

    var testDescription: String { name }
}

// Reactions by name.
private let invalidHeaderField: UInt16 = 0x01
private let pduSequenceError: UInt16 = 0x02
private let headerDigestError: UInt16 = 0x03
private let dataTransferLimitExceeded: UInt16 = 0x05
private let unsupportedParameter: UInt16 = 0x06
private let commandSequenceError = BadInput.Reaction.status(sct: 0, sc: 0x0C, dnr: true)
private let invalidField = BadInput.Reaction.status(sct: 0, sc: 0x02, dnr: true)
private let invalidOpcode = BadInput.Reaction.status(sct: 0, sc: 0x01, dnr: true)
private let connectInvalidParameters = BadInput.Reaction.status(sct: 1, sc: 0x82, dnr: true)

/// A common header (and zeros up to `length` bytes) with PLEN `plen`.
private func header(type: UInt8, hlen: UInt8, pdo: UInt8 = 0, flags: UInt8 = 0, plen: UInt32, length: Int) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: length)
    bytes[0] = type
    bytes[1] = flags
    bytes[2] = hlen
    bytes[3] = pdo
    bytes.setLE32(plen, at: 4)
    return bytes
}

private let maximumPDULength = TestValues.configuration().maximumPDULength

extension BadInput {
    static let catalogue: [BadInput] = [
        // MARK: Transport: PDU types illegal in the state
        BadInput(
            name: "first PDU a 72-byte CapsuleCmd (PLEN ≠ 128 of an ICReq) → FES 01h, FEI 4 (PLEN)",
            stage: .fresh,
            steps: [.pdu(HostPDU.identify(cid: 1))],
            expected: .terminate(fes: invalidHeaderField, fei: 4)
        ),
        BadInput(
            name: "CapsuleCmd of exactly 128 bytes before ICReq → FES 02h PDU Sequence Error",
            stage: .fresh,
            steps: [
                .pdu(
                    HostPDU.command(
                        SubmissionQueueEntry(opcode: 0x18, commandIdentifier: 1, dataPointer: .inCapsule(length: 56)),
                        data: ByteBuffer(repeating: 0, count: 56)
                    )
                )
            ],
            expected: .terminate(fes: pduSequenceError, fei: 0)
        ),
        BadInput(
            name: "second ICReq → FES 02h PDU Sequence Error",
            stage: .initialized,
            steps: [.pdu(HostPDU.icreq())],
            expected: .terminate(fes: pduSequenceError, fei: 0)
        ),
        BadInput(
            name: "H2CData without an R2T → FES 02h PDU Sequence Error",
            steps: [
                .pdu(
                    .hostToControllerData(
                        HostToControllerData(
                            commandIdentifier: 1,
                            transferTag: 0,
                            dataOffset: 0,
                            data: ByteBuffer(repeating: 1, count: 16),
                            isLast: true
                        )
                    )
                )
            ],
            expected: .terminate(fes: pduSequenceError, fei: 0)
        ),
        BadInput(
            name: "R2T from the host → FES 01h, FEI 0 (PDU-TYPE)",
            steps: [
                .pdu(.readyToTransfer(ReadyToTransfer(commandIdentifier: 1, transferTag: 1, offset: 0, length: 512)))
            ],
            expected: .terminate(fes: invalidHeaderField, fei: 0)
        ),
        BadInput(
            name: "CapsuleResp from the host → FES 01h, FEI 0 (PDU-TYPE)",
            steps: [.pdu(.capsuleResponse(CapsuleResponse(completion: CompletionQueueEntry(commandIdentifier: 1))))],
            expected: .terminate(fes: invalidHeaderField, fei: 0)
        ),
        BadInput(
            name: "C2HData from the host → FES 01h, FEI 0 (PDU-TYPE)",
            steps: [
                .pdu(
                    .controllerToHostData(
                        ControllerToHostData(
                            commandIdentifier: 1,
                            dataOffset: 0,
                            data: ByteBuffer(repeating: 1, count: 16),
                            isLast: true
                        )
                    )
                )
            ],
            expected: .terminate(fes: invalidHeaderField, fei: 0)
        ),
        BadInput(
            name: "ICResp from the host → FES 01h, FEI 0 (PDU-TYPE)",
            stage: .initialized,
            steps: [.pdu(.initializeConnectionResponse(InitializeConnectionResponse(maximumH2CDataLength: 8192)))],
            expected: .terminate(fes: invalidHeaderField, fei: 0)
        ),

        // MARK: Transport: malformed headers and lengths
        BadInput(
            name: "unknown PDU type 08h → FES 01h, FEI 0 (PDU-TYPE)",
            steps: [.bytes(header(type: 0x08, hlen: 24, plen: 24, length: 24))],
            expected: .terminate(fes: invalidHeaderField, fei: 0)
        ),
        BadInput(
            name: "PLEN 16 below the CapsuleCmd HLEN 72 → FES 01h, FEI 4 (PLEN)",
            steps: [.bytes(header(type: 0x04, hlen: 72, plen: 16, length: 16))],
            expected: .terminate(fes: invalidHeaderField, fei: 4)
        ),
        BadInput(
            name: "PLEN 4, below the 8-byte common header → FES 01h, FEI 4 (PLEN)",
            steps: [.bytes(header(type: 0x04, hlen: 72, plen: 4, length: 8))],
            expected: .terminate(fes: invalidHeaderField, fei: 4)
        ),
        BadInput(
            name:
                "H2CData with PLEN above the maximum (header only: refused before buffering) → FES 05h Data Transfer Limit Exceeded",
            steps: [.bytes(header(type: 0x06, hlen: 24, pdo: 24, plen: UInt32(maximumPDULength + 1), length: 24))],
            expected: .terminate(fes: dataTransferLimitExceeded, fei: 0)
        ),
        BadInput(
            name: "CapsuleCmd with PLEN above the maximum (header only) → FES 01h, FEI 4 (PLEN)",
            steps: [.bytes(header(type: 0x04, hlen: 72, pdo: 72, plen: UInt32(maximumPDULength + 1), length: 72))],
            expected: .terminate(fes: invalidHeaderField, fei: 4)
        ),
        BadInput(
            name: "CapsuleCmd with PLEN FFFFFFFFh → FES 01h, FEI 4 (PLEN)",
            steps: [.bytes(header(type: 0x04, hlen: 72, pdo: 72, plen: 0xFFFF_FFFF, length: 8))],
            expected: .terminate(fes: invalidHeaderField, fei: 4)
        ),
        BadInput(
            name: "CapsuleCmd with HLEN 24 → FES 01h, FEI 2 (HLEN)",
            steps: [.bytes(header(type: 0x04, hlen: 24, plen: 72, length: 72))],
            expected: .terminate(fes: invalidHeaderField, fei: 2)
        ),
        BadInput(
            name: "first PDU an ICReq with HLEN 72 → FES 01h, FEI 2 (HLEN)",
            stage: .fresh,
            steps: [.bytes(header(type: 0x00, hlen: 72, plen: 128, length: 128))],
            expected: .terminate(fes: invalidHeaderField, fei: 2)
        ),
        BadInput(
            name: "PDO 16, inside the CapsuleCmd header → FES 01h, FEI 3 (PDO)",
            steps: [
                .mutated(
                    HostPDU.command(
                        AsynchronousEvent.keepAliveEntry(commandIdentifier: 1),
                        data: ByteBuffer(repeating: 0, count: 8)
                    ),
                    { $0[3] = 16 }
                )
            ],
            expected: .terminate(fes: invalidHeaderField, fei: 3)
        ),
        BadInput(
            name: "in-capsule data above the 8 KiB admin limit → FES 01h, FEI 4 (PLEN)",
            steps: [
                .pdu(
                    HostPDU.command(
                        SubmissionQueueEntry(
                            opcode: 0x7F,
                            commandIdentifier: 1,
                            namespaceIdentifier: 4,
                            dataPointer: .inCapsule(length: 9000)
                        ),
                        data: ByteBuffer(repeating: 0, count: 9000)
                    )
                )
            ],
            expected: .terminate(fes: invalidHeaderField, fei: 4)
        ),
        BadInput(
            name: "H2CTermReq with PLEN 200 (above 152) → FES 01h, FEI 4 (PLEN)",
            steps: [.bytes(header(type: 0x02, hlen: 24, plen: 200, length: 200))],
            expected: .terminate(fes: invalidHeaderField, fei: 4)
        ),

        // MARK: Transport: ICReq parameters
        BadInput(
            name: "ICReq with PFV 1 → FES 06h Unsupported Parameter, FEI 8 (PFV)",
            stage: .fresh,
            steps: [.pdu(HostPDU.icreq(pduFormatVersion: 1))],
            expected: .terminate(fes: unsupportedParameter, fei: 8)
        ),
        BadInput(
            name: "ICReq with HPDA 32 (above 31) → FES 01h, FEI 10 (HPDA)",
            stage: .fresh,
            steps: [.pdu(HostPDU.icreq(hostPDUDataAlignment: 32))],
            expected: .terminate(fes: invalidHeaderField, fei: 10)
        ),

        // MARK: Transport: digests
        BadInput(
            name: "header digest mismatch → FES 03h Header Digest Error, FEI = the digest received",
            digests: .header,
            steps: [.mutated(HostPDU.keepAlive(cid: 2), { $0.setLE32(0xDEAD_BEEF, at: 72) })],
            expected: .terminate(fes: headerDigestError, fei: 0xDEAD_BEEF)
        ),
        BadInput(
            name: "HDGSTF missing while header digests are on → FES 01h, FEI 1 (FLAGS)",
            digests: .header,
            steps: [.bytes(HostPDU.keepAlive(cid: 2).encodedBytes(digests: []))],
            expected: .terminate(fes: invalidHeaderField, fei: 1)
        ),
        BadInput(
            name: "DDGSTF set while data digests are off → FES 01h, FEI 1 (FLAGS)",
            steps: [
                .bytes(
                    HostPDU.command(
                        AsynchronousEvent.keepAliveEntry(commandIdentifier: 2),
                        data: ByteBuffer(repeating: 7, count: 8)
                    ).encodedBytes(digests: .data)
                )
            ],
            expected: .terminate(fes: invalidHeaderField, fei: 1)
        ),
        BadInput(
            name: "data digest mismatch → Transient Transport Error (00h/22h), no DNR, queue goes on",
            digests: .data,
            steps: [
                .mutated(
                    HostPDU.command(
                        AsynchronousEvent.keepAliveEntry(commandIdentifier: 2),
                        data: ByteBuffer(repeating: 7, count: 8)
                    ),
                    { $0[$0.count - 6] ^= 0xFF }
                )
            ],
            expected: .status(sct: 0, sc: 0x22, dnr: false)
        ),

        // MARK: Transport: the host ends the connection
        BadInput(
            name: "the host's H2CTermReq → close without a reply",
            steps: [.pdu(HostPDU.h2cTermReq(.pduSequenceError))],
            expected: .close
        ),

        // MARK: Connect
        BadInput(
            name: "Connect to an unknown SUBNQN → Connect Invalid Parameters (01h/82h)",
            stage: .initialized,
            steps: [.pdu(HostPDU.connect(subsystemNQN: "nqn.2024-01.io.example:elsewhere"))],
            expected: connectInvalidParameters
        ),
        BadInput(
            name: "Connect with QID 1 (an I/O queue) → Connect Invalid Parameters (01h/82h)",
            stage: .initialized,
            steps: [.pdu(HostPDU.connect(queueIdentifier: 1))],
            expected: connectInvalidParameters
        ),
        BadInput(
            name: "Connect with CNTLID 0001h (static model) → Connect Invalid Parameters (01h/82h)",
            stage: .initialized,
            steps: [.pdu(HostPDU.connect(controllerIdentifier: 1))],
            expected: connectInvalidParameters
        ),
        BadInput(
            name: "Connect with SQSIZE 0 → Connect Invalid Parameters (01h/82h)",
            stage: .initialized,
            steps: [.pdu(HostPDU.connect(submissionQueueSize: 0))],
            expected: connectInvalidParameters
        ),
        BadInput(
            name: "Connect with only 512 bytes of Connect data → Data SGL Length Invalid (00h/0Fh)",
            stage: .initialized,
            steps: [.pdu(HostPDU.connect(dataLength: 512))],
            expected: .status(sct: 0, sc: 0x0F, dnr: true)
        ),
        BadInput(
            name: "Connect data not in-capsule (Transport SGL) → SGL Descriptor Type Invalid (00h/11h)",
            stage: .initialized,
            steps: [
                .pdu(
                    HostPDU.command(
                        ConnectCommand().submissionQueueEntry(commandIdentifier: 0).with {
                            $0.dataPointer = .transport(length: 1024)
                        }
                    )
                )
            ],
            expected: .status(sct: 0, sc: 0x11, dnr: true)
        ),
        BadInput(
            name: "Connect with RECFMT 1 → Connect Incompatible Format (01h/80h)",
            stage: .initialized,
            steps: [.pdu(HostPDU.connect(recordFormat: 1))],
            expected: .status(sct: 1, sc: 0x80, dnr: true)
        ),
        BadInput(
            name: "a second Connect on the admin queue → Command Sequence Error (00h/0Ch)",
            steps: [.pdu(HostPDU.connect(cid: 5))],
            expected: commandSequenceError
        ),

        // MARK: Command order
        BadInput(
            name: "Identify before Connect → Command Sequence Error (00h/0Ch)",
            stage: .initialized,
            steps: [.pdu(HostPDU.identify(cid: 1))],
            expected: commandSequenceError
        ),
        BadInput(
            name: "Property Get before Connect → Command Sequence Error (00h/0Ch)",
            stage: .initialized,
            steps: [.pdu(HostPDU.propertyGet(cid: 1, offset: 0, size8: true))],
            expected: commandSequenceError
        ),
        BadInput(
            name: "Get Log Page before CC.EN = 1 → Command Sequence Error (00h/0Ch)",
            stage: .connected,
            steps: [.pdu(HostPDU.getLogPage(cid: 1, length: 1024))],
            expected: commandSequenceError
        ),
        BadInput(
            name: "Keep Alive before CC.EN = 1 → Command Sequence Error (00h/0Ch)",
            stage: .connected,
            steps: [.pdu(HostPDU.keepAlive(cid: 1))],
            expected: commandSequenceError
        ),

        // MARK: Unknown or unsupported commands
        BadInput(
            name: "admin opcode 05h (Create I/O CQ) → Invalid Command Opcode (00h/01h)",
            steps: [.pdu(HostPDU.command(SubmissionQueueEntry(opcode: 0x05, commandIdentifier: 1)))],
            expected: invalidOpcode
        ),
        BadInput(
            name: "Fabrics FCTYPE 7Eh → Invalid Command Opcode (00h/01h)",
            steps: [
                .pdu(
                    HostPDU.command(SubmissionQueueEntry(opcode: 0x7F, commandIdentifier: 1, namespaceIdentifier: 0x7E))
                )
            ],
            expected: invalidOpcode
        ),
        BadInput(
            name: "Property Set of CSTS (read-only) → Invalid Field in Command (00h/02h)",
            steps: [.pdu(HostPDU.propertySet(cid: 1, offset: 0x1C, value: 1))],
            expected: invalidField
        ),
        BadInput(
            name: "Property Get of an unknown offset (30h) → Invalid Field in Command (00h/02h)",
            steps: [.pdu(HostPDU.propertyGet(cid: 1, offset: 0x30))],
            expected: invalidField
        ),
        BadInput(
            name: "Identify CNS 0 (namespace) → Invalid Field in Command (00h/02h)",
            steps: [.pdu(HostPDU.identify(cid: 1, cns: 0))],
            expected: invalidField
        ),
        BadInput(
            name: "Set Features KATO with SV = 1 → Feature Identifier Not Saveable (01h/0Dh)",
            steps: [.pdu(HostPDU.setFeatures(cid: 1, feature: 0x0F, value: 10_000, save: true))],
            expected: .status(sct: 1, sc: 0x0D, dnr: true)
        ),
        BadInput(
            name: "an admin command carrying in-capsule data → Invalid Field in Command (00h/02h)",
            steps: [
                .pdu(
                    HostPDU.command(
                        AsynchronousEvent.keepAliveEntry(commandIdentifier: 1).with {
                            $0.dataPointer = .inCapsule(length: 8)
                        },
                        data: ByteBuffer(repeating: 0, count: 8)
                    )
                )
            ],
            expected: invalidField
        ),

        // MARK: Get Log Page
        BadInput(
            name: "Get Log Page offset 8192, past the end of the 4 KiB page → Invalid Field in Command (00h/02h)",
            steps: [.pdu(HostPDU.getLogPage(cid: 1, offset: 8192, length: 1024))],
            expected: invalidField
        ),
        BadInput(
            name: "Get Log Page offset 6, not dword aligned → Invalid Field in Command (00h/02h)",
            steps: [.pdu(HostPDU.getLogPage(cid: 1, offset: 6, length: 1024))],
            expected: invalidField
        ),
        BadInput(
            name: "Get Log Page LID 02h (not the discovery log) → Invalid Log Page (01h/09h)",
            steps: [.pdu(HostPDU.getLogPage(cid: 1, length: 512, logPageIdentifier: 0x02))],
            expected: .status(sct: 1, sc: 0x09, dnr: true)
        ),

        // MARK: Asynchronous events
        BadInput(
            name: "a fifth AER (limit 4) → Asynchronous Event Request Limit Exceeded (01h/05h)",
            steps: (1...5).map { .pdu(HostPDU.asynchronousEventRequest(cid: UInt16($0))) },
            expected: .status(sct: 1, sc: 0x05, dnr: true)
        ),
        BadInput(
            name: "a command reusing a parked AER's CID → Command ID Conflict (00h/03h)",
            steps: [.pdu(HostPDU.asynchronousEventRequest(cid: 7)), .pdu(HostPDU.identify(cid: 7))],
            expected: .status(sct: 0, sc: 0x03, dnr: true)
        ),
    ]
}

@Suite("Bad input catalogue")
struct BadInputCatalogTests {
    @Test("every bad input gets its documented reaction", arguments: BadInput.catalogue)
    func reaction(_ input: BadInput) {
        var harness = ControllerHarness()
        // Reach the stage.
        var setup: [NVMeTCPPDU] = []
        switch input.stage {
        case .fresh: break
        case .initialized: setup = [HostPDU.icreq(digests: input.digests)]
        case .connected: setup = [HostPDU.icreq(digests: input.digests), HostPDU.connect(cid: 0)]
        case .enabled: setup = [HostPDU.icreq(digests: input.digests), HostPDU.connect(cid: 0), HostPDU.enable(cid: 1)]
        }
        for pdu in setup {
            let actions = harness.feed(pdu)
            #expect(
                !actions.containsClose && actions.terminationRequests.isEmpty,
                "setup failed at \(pdu.type): \(actions)"
            )
            if case .capsuleCommand = pdu {
                #expect(actions.completions.last?.status == .success, "setup command failed: \(actions)")
            }
        }
        #expect(harness.machine.digests == input.digests)

        // Feed the bad input; judge the reaction to the last step.
        var actions: [Action] = []
        for (index, step) in input.steps.enumerated() {
            switch step {
            case .pdu(let pdu): actions = harness.feed(pdu)
            case .bytes(let bytes): actions = harness.feed(bytes)
            case .mutated(let pdu, let mutate):
                var bytes = pdu.wireBytes(digests: harness.machine.digests)
                mutate(&bytes)
                actions = harness.feed(bytes)
            case .logChanged: actions = harness.discoveryLogChanged()
            }
            if index < input.steps.count - 1 {
                #expect(!actions.containsClose, "closed before the last step: \(actions)")
            }
        }

        switch input.expected {
        case .terminate(let fes, let fei):
            #expect(actions.count == 2, "expected C2HTermReq and close, got \(actions)")
            let request = actions.first?.terminationRequest
            #expect(request?.status.rawValue == fes, "FES")
            #expect(request?.fieldErrorInformation == fei, "FEI")
            #expect((request?.pduInError.readableBytes ?? 0) <= 128)
            #expect(actions.last?.isClose == true)
            #expect(harness.machine.isClosed)
        case .status(let sct, let sc, let dnr):
            let completion = actions.completions.last
            #expect(completion != nil, "expected a CapsuleResp, got \(actions)")
            #expect(
                completion?.status == NVMeStatus(statusCodeType: sct, statusCode: sc, doNotRetry: dnr),
                "got \(completion.map { "\($0.status)" } ?? "nothing")"
            )
            #expect(!actions.containsClose && !harness.machine.isClosed, "the connection stays open")
            #expect(actions.terminationRequests.isEmpty)
        case .close:
            #expect(actions.count == 1 && actions.first?.isClose == true, "expected only close, got \(actions)")
            #expect(harness.machine.isClosed)
        }
    }

    @Test("the catalogue's names are unique")
    func uniqueNames() {
        #expect(Set(BadInput.catalogue.map(\.name)).count == BadInput.catalogue.count)
    }
}
