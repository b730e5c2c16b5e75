import Foundation
import NIOCore
import Testing

@testable import DEMCore

/// The DIM data (TP8010, NVMe Base 2.1 §5.3.3) against its layout field by field, built by byte
/// offset as nvme-cli 2.3 (libnvme's nvmf_dim and nvmf_fill_die) fills it: an extended entry
/// with TEL, NUMEXAT, the host ID and the symbolic name, each EXATLEN rounded up to 4 bytes.
@Suite struct DiscoveryInformationTests {
    static let hostNQN = "nqn.2014-08.org.nvmexpress:uuid:c9773de9-fb1c-42ba-855e-34e5c63e6676"
    static let hostID: [UInt8] = [
        0xC9, 0x77, 0x3D, 0xE9, 0xFB, 0x1C, 0x42, 0xBA, 0x85, 0x5E, 0x34, 0xE5, 0xC6, 0x3E, 0x66, 0x76,
    ]

    /// A registration as libnvme lays it out: header (TDL, NUMENT, ENTFMT 2, ETYPE 1, EID,
    /// ENAME, EVER), then one extended DIE (TRTYPE tcp, ADRFAM ipv4, an empty TRADDR: "the DC
    /// infers it from the socket"), TEL, NUMEXAT 2, HOSTID and SYMNAME ("lab guest", padded).
    static func libnvmeRegistration(
        type: UInt16 = 1,
        entries: UInt64 = 1,
        tdl: UInt32? = nil,
        tel: UInt32? = nil
    ) -> ByteBuffer {
        var die = ByteBuffer(repeating: 0, count: 1024)
        die.setInteger(UInt8(3), at: 0)  // TRTYPE tcp
        die.setInteger(UInt8(1), at: 1)  // ADRFAM ipv4
        die.setBytes(Array(hostNQN.utf8), at: 256)  // NQN
        die.writeInteger(UInt32(0), endianness: .little)  // TEL, set below
        die.writeInteger(UInt16(2), endianness: .little)  // NUMEXAT
        die.writeInteger(UInt16(0), endianness: .little)
        die.writeInteger(UInt16(1), endianness: .little)  // EXATTYPE HOSTID
        die.writeInteger(UInt16(16), endianness: .little)
        die.writeBytes(hostID)
        die.writeInteger(UInt16(2), endianness: .little)  // EXATTYPE SYMNAME
        die.writeInteger(UInt16(12), endianness: .little)  // EXATLEN: rounded up to 4
        die.writeBytes(Array("lab guest".utf8) + [0, 0, 0])
        die.setInteger(tel ?? UInt32(die.readableBytes), at: 1024, endianness: .little)
        var data = ByteBuffer(repeating: 0, count: 1024)
        data.setInteger(tdl ?? UInt32(1024 + die.readableBytes), at: 0, endianness: .little)
        data.setInteger(entries, at: 8, endianness: .little)
        data.setInteger(UInt16(2), at: 16, endianness: .little)  // ENTFMT extended
        data.setInteger(type, at: 18, endianness: .little)  // ETYPE
        data.setBytes(Array(hostNQN.utf8), at: 24)  // EID
        data.setBytes(Array("guest".utf8), at: 280)  // ENAME
        data.setBytes(Array("Linux 6.1.0-28-amd64".utf8), at: 536)  // EVER
        data.writeBuffer(&die)
        return data
    }

    @Test func aRegistrationAsLibnvmeSendsIt() throws {
        let data = Self.libnvmeRegistration()
        #expect(data.readableBytes == 1024 + 1032 + 20 + 16)
        let dim = try DiscoveryInformation(parsing: data)
        #expect(dim.format == .extended)
        #expect(dim.entityType == .host)
        #expect(dim.entityIdentifier == Self.hostNQN)
        #expect(dim.entityName == "guest")
        #expect(dim.entityVersion == "Linux 6.1.0-28-amd64")
        #expect(dim.entries.count == 1)
        let entry = try #require(dim.entries.first)
        #expect(entry.entry.transportType == .tcp)
        #expect(entry.entry.addressFamily == .ipv4)
        #expect(entry.entry.subsystemNQN == Self.hostNQN)
        #expect(entry.entry.transportAddress == "")
        #expect(entry.hostIdentifier == Self.hostID)
        #expect(entry.symbolicName == "lab guest")
        // Our encoder writes the same bytes.
        #expect(dim.encoded() == data)
    }

    @Test func theTaskIsInCDW10() {
        for task in DiscoveryInformationCommand.Task.allCases {
            let entry = DiscoveryInformationCommand.submissionQueueEntry(task: task, commandIdentifier: 7, length: 2092)
            #expect(entry.opcode == 0x21)
            #expect(DiscoveryInformationCommand(entry).task == task)
        }
        var reserved = SubmissionQueueEntry(opcode: 0x21, commandIdentifier: 1)
        reserved.cdw10 = 0xF3
        #expect(DiscoveryInformationCommand(reserved).task == nil)
        #expect(DiscoveryInformationCommand(reserved).taskValue == 3)
    }

    @Test func basicEntries() throws {
        let entry = DiscoveryLogEntry(
            transportType: .tcp,
            addressFamily: .ipv4,
            subsystemType: .nvm,
            portIdentifier: 1,
            transportServiceIdentifier: "8009",
            subsystemNQN: "nqn.2024-01.io.example:ddc",
            transportAddress: "192.0.2.7"
        )
        let dim = DiscoveryInformation(
            format: .basic,
            entityType: .directDiscoveryController,
            entityIdentifier: "nqn.2024-01.io.example:ddc",
            entries: [DiscoveryInformationEntry(entry: entry), DiscoveryInformationEntry(entry: entry)]
        )
        let data = dim.encoded()
        #expect(data.readableBytes == 1024 + 2 * 1024)
        #expect(try DiscoveryInformation(parsing: data) == dim)
    }

    @Test func badDataIsInvalidDiscoveryInformation() {
        func refused(_ data: ByteBuffer, _ words: String) {
            #expect {
                try DiscoveryInformation(parsing: data)
            } throws: { error in
                "\(error)".contains(words)
            }
        }
        var truncated = Self.libnvmeRegistration()
        truncated.moveWriterIndex(to: 1000)
        refused(truncated, "less than the 1024-byte header")
        refused(Self.libnvmeRegistration(tdl: 5000), "TDL 5000 does not fit")
        refused(Self.libnvmeRegistration(entries: 3), "NUMENT 3 entries do not fit TDL")
        refused(Self.libnvmeRegistration(entries: 1 << 60), "do not fit TDL")
        refused(Self.libnvmeRegistration(type: 9), "ETYPE 9 is not")
        refused(Self.libnvmeRegistration(tel: 1030), "TEL 1030 is not a multiple of 4")
        refused(Self.libnvmeRegistration(tel: 1036), "ends past TEL 1036")
        var wrongID = Self.libnvmeRegistration()
        wrongID.setInteger(UInt16(8), at: 1024 + 1034, endianness: .little)
        refused(wrongID, "HOSTID is 8 bytes")
        var noEID = Self.libnvmeRegistration()
        noEID.setBytes([UInt8](repeating: 0, count: 256), at: 24)
        refused(noEID, "EID is empty")
        var badFormat = Self.libnvmeRegistration()
        badFormat.setInteger(UInt16(3), at: 16, endianness: .little)
        refused(badFormat, "ENTFMT 3")
        // An ENAME filling its 256 bytes with no NUL is read whole, never past its field.
        var longName = Self.libnvmeRegistration()
        longName.setBytes([UInt8](repeating: 0x41, count: 256), at: 280)
        #expect((try? DiscoveryInformation(parsing: longName))?.entityName.count == 256)
    }
}

/// The controller core with Discovery Information Management: checked in the core, carried out
/// by the service, completed when the service answers; bad data answered 2Fh, the controller
/// serving on.
@Suite struct DiscoveryInformationControllerTests {
    private func capsule(_ pdu: NVMeTCPPDU) -> CapsuleCommand {
        guard case .capsuleCommand(let capsule) = pdu else { preconditionFailure("not a command: \(pdu)") }
        return capsule
    }

    private func completion(_ actions: [ControllerStateMachine.Action]) -> CompletionQueueEntry? {
        for action in actions {
            if case .complete(let entry, _) = action { return entry }
        }
        return nil
    }

    private func ready() -> ControllerStateMachine {
        var core = ControllerStateMachine(
            configuration: TestValues.configuration(),
            serving: .discovery(FakeDiscoveryService()),
            transportSetupStep: nil,
            remoteAddress: "192.0.2.7:51000"
        )
        _ = core.connectionOpened(now: TestValues.start)
        _ = core.commandReceived(capsule(HostPDU.connect(cid: 1)), now: TestValues.start)
        _ = core.commandReceived(capsule(HostPDU.enable(cid: 2)), now: TestValues.start)
        return core
    }

    private func dim(
        _ task: DiscoveryInformationCommand.Task,
        cid: UInt16,
        _ data: ByteBuffer
    ) -> CapsuleCommand {
        CapsuleCommand(
            command: DiscoveryInformationCommand.submissionQueueEntry(
                task: task,
                commandIdentifier: cid,
                length: UInt32(data.readableBytes)
            ),
            data: data
        )
    }

    private func registration(eid: String = TestValues.hostNQN) -> ByteBuffer {
        let entry = DiscoveryLogEntry(
            transportType: .tcp,
            addressFamily: .ipv4,
            subsystemType: .nvm,
            portIdentifier: 0,
            transportServiceIdentifier: "",
            subsystemNQN: eid,
            transportAddress: ""
        )
        return DiscoveryInformation(
            format: .extended,
            entityType: .host,
            entityIdentifier: eid,
            entityName: "guest",
            entityVersion: "Linux 6.1",
            entries: [DiscoveryInformationEntry(entry: entry, hostIdentifier: TestValues.hostID, symbolicName: "lab")]
        ).encoded()
    }

    @Test("a registration goes to the service and completes with the service's status")
    func registers() throws {
        var core = ready()
        let actions = core.commandReceived(dim(.register, cid: 5, registration()), now: TestValues.start)
        #expect(completion(actions) == nil, "waits for the service")
        let performed = actions.compactMap { action -> DiscoveryInformationRequest? in
            if case .session(.performDiscoveryInformation(let request, let host)) = action {
                #expect(host.hostNQN == TestValues.hostNQN)
                return request
            }
            return nil
        }
        let request = try #require(performed.first)
        #expect(request.task == .register)
        #expect(request.information.entityName == "guest")
        // A command reusing the running one's CID conflicts; another one waits its turn.
        let conflict = completion(core.commandReceived(capsule(HostPDU.identify(cid: 5)), now: TestValues.start))
        #expect(conflict?.status == NVMeStatus.commandIdentifierConflict.withDoNotRetry)
        let second = completion(core.commandReceived(dim(.update, cid: 6, registration()), now: TestValues.start))
        #expect(second?.status == .commandSequenceError)
        let done = try #require(completion(core.discoveryInformationCompleted(.success)))
        #expect(done.commandIdentifier == 5)
        #expect(done.status == .success)
        #expect(core.discoveryInformationCompleted(.success).isEmpty, "nothing runs any more")
        let full = core.commandReceived(dim(.register, cid: 7, registration()), now: TestValues.start)
        #expect(completion(full) == nil)
        let refused = try #require(completion(core.discoveryInformationCompleted(.insufficientDiscoveryResources)))
        #expect(refused.status == .insufficientDiscoveryResources)
    }

    @Test(
        "bad data is Invalid Discovery Information (2Fh) with the reason, and the controller serves on",
        arguments: [
            ("truncated", DiscoveryInformationTests.libnvmeRegistration().getSlice(at: 0, length: 1500)!),
            ("NUMENT beyond TDL", DiscoveryInformationTests.libnvmeRegistration(entries: 3)),
            ("unknown ETYPE", DiscoveryInformationTests.libnvmeRegistration(type: 9)),
            ("TEL past TDL", DiscoveryInformationTests.libnvmeRegistration(tel: 4096)),
        ]
    )
    func badData(_ name: String, _ data: ByteBuffer) throws {
        var core = ready()
        let actions = core.commandReceived(dim(.register, cid: 5, data), now: TestValues.start)
        let refused = try #require(completion(actions), "\(name)")
        #expect(refused.status == NVMeStatus.invalidDiscoveryInformation.withDoNotRetry, "\(name)")
        #expect(
            actions.contains { if case .session(.discoveryInformationRefused) = $0 { true } else { false } },
            "\(name): the reason goes to the log"
        )
        let identified = completion(core.commandReceived(capsule(HostPDU.identify(cid: 6)), now: TestValues.start))
        #expect(identified?.status == .success, "\(name)")
        #expect(!core.isClosed)
    }

    @Test("a host registers itself only: an EID other than its Connect's host NQN is refused")
    func othersEID() throws {
        var core = ready()
        let other = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000001"
        let refused = try #require(
            completion(core.commandReceived(dim(.register, cid: 5, registration(eid: other)), now: TestValues.start))
        )
        #expect(refused.status == NVMeStatus.invalidDiscoveryInformation.withDoNotRetry)
    }

    @Test("no data, a reserved task, data the SGL does not announce: each refused")
    func malformedCommands() throws {
        var core = ready()
        let noData = CapsuleCommand(
            command: DiscoveryInformationCommand.submissionQueueEntry(task: .register, commandIdentifier: 5, length: 0)
        )
        #expect(
            completion(core.commandReceived(noData, now: TestValues.start))?.status
                == NVMeStatus.invalidDiscoveryInformation.withDoNotRetry
        )
        var reserved = dim(.register, cid: 6, registration())
        reserved.command.cdw10 = 7
        #expect(
            completion(core.commandReceived(reserved, now: TestValues.start))?.status
                == NVMeStatus.invalidField.withDoNotRetry
        )
        var short = dim(.register, cid: 7, registration())
        short.command.dataPointer = .inCapsule(length: 100)
        #expect(
            completion(core.commandReceived(short, now: TestValues.start))?.status
                == NVMeStatus.dataSGLLengthInvalid.withDoNotRetry
        )
        // Host data on any other command of a discovery controller is still refused.
        var identify = capsule(HostPDU.identify(cid: 8))
        identify.data = ByteBuffer(bytes: [1, 2, 3, 4])
        #expect(
            completion(core.commandReceived(identify, now: TestValues.start))?.status
                == NVMeStatus.invalidField.withDoNotRetry
        )
    }

    @Test("the registration made: an empty TRADDR is the address the command came from; the host ID")
    func registrationRecord() throws {
        let information = try DiscoveryInformation(parsing: DiscoveryInformationTests.libnvmeRegistration())
        let host = DiscoveryHostContext(
            hostNQN: DiscoveryInformationTests.hostNQN,
            hostIdentifier: DiscoveryInformationTests.hostID,
            subsystemNQN: TestValues.uniqueNQN,
            remoteAddress: "192.0.2.7:51000"
        )
        let record = DiscoveryRegistration(information, host: host, now: Date(timeIntervalSince1970: 1000))
        #expect(record.nqn == DiscoveryInformationTests.hostNQN)
        #expect(record.entityType == "host")
        #expect(record.name == "guest")
        #expect(record.version == "Linux 6.1.0-28-amd64")
        #expect(record.hostID == "c9773de9-fb1c-42ba-855e-34e5c63e6676")
        #expect(record.symbolicName == "lab guest")
        #expect(
            record.addresses == [
                .init(
                    transport: "tcp",
                    family: "ipv4",
                    address: "192.0.2.7",
                    service: "",
                    subsystemNQN: DiscoveryInformationTests.hostNQN
                )
            ]
        )
        #expect(record.from == "192.0.2.7")
        #expect(record.suggestedAlias == "guest")
        var v6 = host
        v6.remoteAddress = "fe80::1:4420"
        #expect(DiscoveryRegistration(information, host: v6, now: Date()).from == "fe80::1")
    }
}
