import DEMCore
import NIOCore
import Testing

/// The host side of an NVMe/RDMA admin queue: the pure machine, then the machine against the
/// controller's RDMA binding with the RDMA READs and WRITEs carried out in memory (the verbs
/// themselves are exercised by the real-kernel tier, soft-RoCE in the guest).
@Suite("NVMe/RDMA host state machine")
struct NVMeRDMAHostStateMachineTests {
    typealias Machine = NVMeRDMAHostStateMachine<String>

    private func ready(queueSize: Int = 32) -> Machine {
        var machine = Machine(queueSize: queueSize)
        machine.established()
        return machine
    }

    private func sent(_ actions: [Machine.Action]) -> (SubmissionQueueEntry, UInt16)? {
        guard actions.count == 1, case .send(var capsule, let identifier) = actions[0] else { return nil }
        #expect(capsule.readableBytes == SubmissionQueueEntry.size)
        guard let entry = capsule.readSubmissionQueueEntry() else { return nil }
        return (entry, identifier)
    }

    private func response(cid: UInt16, status: NVMeStatus = .success) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeCompletionQueueEntry(CompletionQueueEntry(commandIdentifier: cid, status: status))
        return buffer
    }

    @Test("commands get distinct CIDs and the keyed SGL of their block; responses complete them by CID, in any order")
    func numbersAndMatches() throws {
        var machine = ready()
        let block = SGLDescriptor.keyed(address: 0x1000, length: 4096, key: 0x42)
        let (first, firstCID) = try #require(
            sent(
                machine.submit(
                    SubmissionQueueEntry(opcode: 0x06),
                    dataBlock: block,
                    readLength: 4096,
                    context: "identify"
                )
            )
        )
        #expect(first.commandIdentifier == firstCID)
        #expect(first.dataPointer == block)
        let (second, secondCID) = try #require(
            sent(
                machine.submit(SubmissionQueueEntry(opcode: 0x18), dataBlock: nil, readLength: 0, context: "keep alive")
            )
        )
        #expect(secondCID != firstCID)
        #expect(second.dataPointer == .keyed(address: 0, length: 0, key: 0), "no data: a zero keyed block")
        #expect(machine.outstandingCount == 2)

        let completedSecond = machine.responseReceived(response(cid: secondCID))
        guard case .commandCompleted(let entry, "keep alive", readLength: 0) = completedSecond.first else {
            Issue.record("\(completedSecond)")
            return
        }
        #expect(entry.commandIdentifier == secondCID)
        let completedFirst = machine.responseReceived(response(cid: firstCID))
        guard case .commandCompleted(_, "identify", readLength: 4096) = completedFirst.first else {
            Issue.record("\(completedFirst)")
            return
        }
        #expect(machine.outstandingCount == 0)
    }

    @Test("a response for no outstanding command, or shorter than a CQE, fails the queue and every command on it")
    func strayResponse() {
        for bad in [response(cid: 99), ByteBuffer(bytes: [0, 0, 0, 0])] {
            var machine = ready()
            _ = machine.submit(SubmissionQueueEntry(opcode: 0x06), dataBlock: nil, readLength: 0, context: "a")
            _ = machine.submit(SubmissionQueueEntry(opcode: 0x06), dataBlock: nil, readLength: 0, context: "b")
            let actions = machine.responseReceived(bad)
            guard case .close(.protocolViolation, let outstanding, disconnect: true) = actions.first else {
                Issue.record("\(actions)")
                continue
            }
            #expect(outstanding == ["a", "b"])
            #expect(machine.responseReceived(response(cid: 0)).isEmpty, "nothing after the close")
            guard
                case .commandFailed(.connectionClosed, "c") = machine.submit(
                    SubmissionQueueEntry(opcode: 0x06),
                    dataBlock: nil,
                    readLength: 0,
                    context: "c"
                ).first
            else {
                Issue.record("a command after the close is failed at once")
                continue
            }
        }
    }

    @Test("at most queue size − 1 commands outstanding; the next fails alone and the queue serves on")
    func queueDepth() throws {
        var machine = ready(queueSize: 4)
        var identifiers: [UInt16] = []
        for index in 0..<3 {
            let (_, cid) = try #require(
                sent(
                    machine.submit(
                        SubmissionQueueEntry(opcode: 0x06),
                        dataBlock: nil,
                        readLength: 0,
                        context: "\(index)"
                    )
                )
            )
            identifiers.append(cid)
        }
        let refused = machine.submit(SubmissionQueueEntry(opcode: 0x06), dataBlock: nil, readLength: 0, context: "x")
        guard case .commandFailed(.protocolViolation, "x") = refused.first else {
            Issue.record("\(refused)")
            return
        }
        _ = machine.responseReceived(response(cid: identifiers[1]))
        let (_, reused) = try #require(
            sent(machine.submit(SubmissionQueueEntry(opcode: 0x06), dataBlock: nil, readLength: 0, context: "y"))
        )
        #expect(
            !identifiers.dropFirst(2).contains(reused) && reused != identifiers[0],
            "no CID of an outstanding command"
        )
    }

    @Test("before the connection is established nothing is sent; a failed SEND fails its command alone")
    func notReadyAndSendFailure() throws {
        var machine = Machine(queueSize: 32)
        guard
            case .commandFailed(.connectionClosed, "early") = machine.submit(
                SubmissionQueueEntry(opcode: 0x06),
                dataBlock: nil,
                readLength: 0,
                context: "early"
            ).first
        else {
            Issue.record("a command before ESTABLISHED is failed")
            return
        }
        machine.established()
        let (_, cid) = try #require(
            sent(machine.submit(SubmissionQueueEntry(opcode: 0x06), dataBlock: nil, readLength: 0, context: "a"))
        )
        let failed = machine.sendFailed(cid, .connectionFailed("ibv_post_send: ENOMEM"))
        guard case .commandFailed(.connectionFailed, "a") = failed.first else {
            Issue.record("\(failed)")
            return
        }
        #expect(machine.outstandingCount == 0)
        #expect(machine.isReady)
        let closed = machine.failed(.connectionClosed, disconnect: false)
        guard case .close(.connectionClosed, let outstanding, disconnect: false) = closed.first else {
            Issue.record("\(closed)")
            return
        }
        #expect(outstanding.isEmpty)
        #expect(machine.failed(.connectionClosed, disconnect: true).isEmpty, "closed once")
    }

    @Test("against the controller's RDMA binding: Connect, enable, Identify and the discovery log page")
    func againstTheControllerBinding() throws {
        var wire = RDMAWire()
        let connect = try wire.submit(
            ConnectCommand(keepAliveTimeout: 5000).submissionQueueEntry(commandIdentifier: 0),
            data: Array(HostPDU.connectData().readableBytesView)
        )
        #expect(connect.completion.status == .success)
        #expect(connect.completion.result & 0xFFFF == 1)
        let enable = try wire.submit(
            FabricsCommand.propertySetEntry(
                commandIdentifier: 0,
                offset: ControllerProperty.configuration,
                value: TestValues.enabledConfiguration,
                size8: false
            )
        )
        #expect(enable.completion.status == .success)
        let identify = try wire.submit(
            IdentifyCommand(controllerOrNamespaceStructure: IdentifyCommand.CNS.controller)
                .submissionQueueEntry(commandIdentifier: 0),
            receive: 4096
        )
        #expect(identify.completion.status == .success)
        #expect(identify.data.count == 4096)
        let length = FakeDiscoveryService.samplePageBytes.readableBytes
        let log = try wire.submit(
            GetLogPageCommand(logPageIdentifier: LogPageIdentifier.discovery, numberOfDwords: UInt64(length / 4))
                .submissionQueueEntry(commandIdentifier: 0),
            receive: length
        )
        #expect(log.completion.status == .success)
        #expect(log.data == Array(FakeDiscoveryService.samplePageBytes.readableBytesView))
        #expect(wire.host.outstandingCount == 0)
    }
}

/// The host machine and the controller's RDMA binding joined in memory: SENDs go across,
/// the controller's RDMA READs and WRITEs go to the host's registered blocks.
private struct RDMAWire {
    var host = NVMeRDMAHostStateMachine<Int>(queueSize: 32)
    var controller = NVMeRDMAControllerBinding(
        configuration: TestValues.configuration(),
        serving: .discovery(FakeDiscoveryService()),
        maximumReadLength: 1 << 20
    )
    /// Registered blocks by key, and the address each starts at.
    var memory: [UInt32: (address: UInt64, bytes: [UInt8])] = [:]
    var nextKey: UInt32 = 0x200

    init() {
        host.established()
        _ = controller.connectionOpened(now: TestValues.start)
    }

    struct Answer {
        var completion: CompletionQueueEntry
        var data: [UInt8]
    }

    struct Failed: Error {
        var actions: String
    }

    mutating func submit(_ entry: SubmissionQueueEntry, data: [UInt8]? = nil, receive: Int = 0) throws -> Answer {
        let key = nextKey
        nextKey += 1
        let address: UInt64 = 0x7F00_0000_0000 + UInt64(key) << 20
        var block: SGLDescriptor?
        if let data {
            memory[key] = (address, data)
            block = .keyed(address: address, length: UInt32(data.count), key: key)
        } else if receive > 0 {
            memory[key] = (address, [UInt8](repeating: 0, count: receive))
            block = .keyed(address: address, length: UInt32(receive), key: key)
        }
        var hostActions = host.submit(
            entry,
            dataBlock: block,
            readLength: data == nil ? receive : 0,
            context: Int(key)
        )
        while !hostActions.isEmpty {
            switch hostActions.removeFirst() {
            case .send(let capsule, _):
                var pending = controller.capsuleReceived(capsule, now: TestValues.start)
                while !pending.isEmpty {
                    switch pending.removeFirst() {
                    case .send(let response):
                        hostActions += host.responseReceived(response)
                    case .read(let token, let readAddress, let readKey, let length):
                        let region = memory[readKey]!
                        let offset = Int(readAddress - region.address)
                        let bytes = Array(region.bytes[offset..<offset + length])
                        pending += controller.readCompleted(
                            token,
                            data: ByteBuffer(bytes: bytes),
                            now: TestValues.start
                        )
                    case .write(let bytes, let writeAddress, let writeKey):
                        let offset = Int(writeAddress - memory[writeKey]!.address)
                        memory[writeKey]!.bytes.replaceSubrange(
                            offset..<offset + bytes.readableBytes,
                            with: Array(bytes.readableBytesView)
                        )
                    default:
                        break
                    }
                }
            case .commandCompleted(let completion, let context, let readLength):
                let bytes = memory.removeValue(forKey: UInt32(context))?.bytes ?? []
                return Answer(completion: completion, data: Array(bytes.prefix(readLength)))
            case let other:
                throw Failed(actions: "\(other)")
            }
        }
        throw Failed(actions: "no completion")
    }
}
