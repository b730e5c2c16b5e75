import DEMCore
import Foundation
import Logging
import Testing

@testable import DEMEndpoint

/// The SPDK backend against the exchanges recorded from SPDK v24.01's nvmf_tgt, replayed by a
/// Unix-socket server (``SPDKReplayTarget``): every request dem-em sends must have the shape of
/// one the real target accepted, and every recorded answer (errors included) is handled.
@Suite struct SPDKContractTests {
    static let subsystem = "nqn.2016-06.io.spdk:cnode2"
    static let host = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555"

    /// The desired state the minimal recording made by hand: a malloc bdev M2 of 2048 blocks,
    /// a subsystem with it, a TCP listener on 127.0.0.1:4421, one host.
    static var desired: EndpointConfiguration {
        EndpointConfiguration(
            ports: [
                FabricPort(
                    portID: 1,
                    transportType: "tcp",
                    addressFamily: "ipv4",
                    transportAddress: "127.0.0.1",
                    transportServiceIdentifier: 4421
                )
            ],
            hosts: [host],
            subsystems: [
                EndpointSubsystem(
                    nqn: subsystem,
                    allowAnyHost: false,
                    namespaces: [
                        EndpointNamespace(
                            namespaceID: 1,
                            devicePath: "/spdk/malloc/M2/1M",
                            uuid: "2cd6d322-06fc-4164-b218-3fbb4bcc276f"
                        )
                    ],
                    hosts: [host],
                    ports: [1]
                )
            ]
        )
    }

    final class Box {
        let directory: String
        let target: SPDKReplayTarget
        let client: SPDKRPCClient

        init() throws {
            directory =
                FileManager.default.temporaryDirectory.appendingPathComponent("spdk-\(UUID().uuidString.prefix(8))")
                .path
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            target = try SPDKReplayTarget(path: directory + "/spdk.sock")
            client = SPDKRPCClient(socketPath: target.path, timeout: .seconds(5))
            // The state before: the recorded answers of a target with the TCP transport, only
            // the discovery subsystem (after the recording's teardown), and no bdevs.
            let recording = SPDKRecording.shared
            target.answer("nvmf_get_transports", with: recording.answer("nvmf_get_transports"))
            target.answer("nvmf_get_subsystems", with: Self.emptySubsystems)
            // Not in the recording (rpc.py was not asked for all bdevs or controllers): an
            // empty list, which is what v24.01 answers on a target without any.
            target.answer("bdev_get_bdevs", with: Self.result(.array([])))
            target.answer("bdev_nvme_get_controllers", with: Self.result(.array([])))
        }

        func backend() throws -> SPDKBackend {
            try SPDKBackend(client: client, ledgerPath: directory + "/owned-spdk.json", logger: Logger(label: "test"))
        }

        deinit {
            target.stop()
            try? FileManager.default.removeItem(atPath: directory)
        }

        static var emptySubsystems: JSONValue {
            SPDKRecording.shared.answer("nvmf_get_subsystems") { answer in
                answer["result"]?.arrayValue?.map { $0["nqn"]?.stringValue } == [SPDKState.discoveryNQN]
            }
        }

        static func result(_ value: JSONValue) -> JSONValue {
            .members([("jsonrpc", .string("2.0")), ("id", .int(0)), ("result", value)])
        }
    }

    @Test func createsWhatTheRecordingMadeWithRequestsTheTargetAccepted() throws {
        let box = try Box()
        // After the calls, the target reads as the recording's answer for cnode2.
        let made = SPDKRecording.shared.answer("nvmf_get_subsystems") { answer in
            answer["result"]?.arrayValue?.contains { $0["nqn"]?.stringValue == Self.subsystem } == true
        }
        var madeWithDiscovery = made
        if case .object(var members) = made, let index = members.firstIndex(where: { $0.key == "result" }),
            case .array(let subsystems) = members[index].value
        {
            let discovery = JSONValue.members([
                ("nqn", .string(SPDKState.discoveryNQN)), ("subtype", .string("Discovery")),
                (
                    "listen_addresses",
                    .array([
                        SPDKAddress(
                            transportType: "TCP",
                            addressFamily: "IPv4",
                            address: "127.0.0.1",
                            serviceID: "4421"
                        ).json
                    ])
                ),
                ("allow_any_host", .bool(true)), ("hosts", .array([])),
            ])
            members[index].value = .array([discovery] + subsystems)
            madeWithDiscovery = .object(members)
        }
        box.target.answer("nvmf_get_subsystems", with: Box.emptySubsystems, madeWithDiscovery)
        box.target.answer(
            "bdev_get_bdevs",
            with: Box.result(.array([])),
            SPDKRecording.shared.answer("bdev_get_bdevs").replacingName("Malloc0", with: "M2")
                .replacingMember("num_blocks", with: .int(2048))
        )
        let backend = try box.backend()
        let result = backend.reconcile(Self.desired)
        #expect(result.errors == [])
        #expect(box.target.unmatched == [], "requests no recorded one has the shape of")
        let sent = box.target.methods.filter { !$0.contains("get_") }
        #expect(
            sent == [
                "bdev_malloc_create", "nvmf_create_subsystem", "nvmf_subsystem_add_ns", "nvmf_subsystem_add_host",
                "nvmf_subsystem_add_listener", "nvmf_subsystem_add_listener",
            ]
        )
        // The calls that equal recorded ones byte for byte (once parsed): the bdev, the host, the listener.
        let requests = box.target.received
        let recorded = SPDKRecording.shared
        for method in ["bdev_malloc_create", "nvmf_subsystem_add_host"] {
            let request = try #require(requests.first { $0["method"]?.stringValue == method })
            #expect(recorded.calls(method).contains { SPDKRecording.equal($0.params, request["params"]) }, "\(method)")
        }
        let listener = try #require(requests.first { $0["method"]?.stringValue == "nvmf_subsystem_add_listener" })
        #expect(
            recorded.calls("nvmf_subsystem_add_listener").contains {
                SPDKRecording.equal($0.params, listener["params"])
            }
        )
        // The transport exists already: not made again (the recorded -32603 is never provoked).
        #expect(!box.target.methods.contains("nvmf_create_transport"))
        // The discovery subsystem listens on the port too, as nvmet's discovery does.
        let discovery = requests.filter { $0["params"]?["nqn"]?.stringValue == SPDKState.discoveryNQN }
        #expect(discovery.count == 1)
        #expect(backend.ownership.subsystems == [Self.subsystem])
        #expect(backend.ownership.bdevs == ["M2": "malloc"])
        #expect(backend.ownership.discoveryListeners == ["tcp:ipv4:127.0.0.1:4421"])
        // Read back: live on port 1, nothing left to do.
        #expect(result.live.first { $0.nqn == Self.subsystem }?.ports == [1])
        #expect(result.drift == [])
    }

    @Test func anRPCErrorInTheMiddleOfAPlanNamesTheObjectAndTheNextApplyConverges() throws {
        let box = try Box()
        // The recorded -32603 for a subsystem that cannot be made.
        let refused = SPDKRecording.shared.answer("nvmf_create_subsystem") { $0["error"] != nil }
        let accepted = SPDKRecording.shared.answer("nvmf_create_subsystem") { $0["result"] != nil }
        box.target.answer("nvmf_create_subsystem", with: refused, accepted)
        let backend = try box.backend()
        let first = backend.reconcile(Self.desired)
        let error = try #require(first.errors.first { $0.contains("nvmf_create_subsystem") })
        #expect(error.contains("subsystem \(Self.subsystem)"))
        #expect(error.contains("-32603"))
        // What needs the subsystem was not tried; the bdev and the discovery listener were made.
        #expect(first.errors.contains { $0.hasPrefix("skipped: nvmf_subsystem_add_ns subsystem \(Self.subsystem)") })
        #expect(!box.target.methods.contains("nvmf_subsystem_add_host"))
        #expect(!backend.ownership.subsystems.contains(Self.subsystem), "a subsystem that was refused is not owned")
        // The next apply makes it (the target still reads empty: the replay keeps no state).
        box.target.resetLog()
        let second = backend.reconcile(Self.desired)
        #expect(!second.errors.contains { $0.contains("nvmf_create_subsystem") })
        #expect(box.target.methods.contains("nvmf_subsystem_add_host"))
        #expect(second.operations.contains("nvmf_create_subsystem subsystem \(Self.subsystem)"))
    }

    @Test func invalidParametersAndUnknownMethodsAreNamed() throws {
        let box = try Box()
        box.target.answer(
            "nvmf_subsystem_add_ns",
            with: SPDKRecording.shared.answer("nvmf_subsystem_add_ns") { $0["error"] != nil }
        )
        let result = try box.backend().reconcile(Self.desired)
        let error = try #require(result.errors.first { $0.contains("nvmf_subsystem_add_ns") })
        #expect(error.contains("namespace 1 (bdev M2)"))
        #expect(error.contains("-32602 (invalid parameters): Invalid parameters"))
        // -32601 from the recording: an SPDK without the method.
        #expect(throws: SPDKRPCError.rpc(method: "no_such_method", code: -32601, message: "Method not found")) {
            try box.client.call("no_such_method")
        }
    }

    @Test func aDeadSocketIsAClearErrorAndNothingIsForgotten() throws {
        let box = try Box()
        let backend = try box.backend()
        _ = backend.reconcile(Self.desired)
        let owned = backend.ownership
        // On a kept connection the status names the version without a call of its own.
        box.target.resetLog()
        #expect(backend.describe().version == "SPDK v24.01 git sha1 247e1d7")
        #expect(backend.describe().reachable == true)
        #expect(box.target.methods == [])
        box.target.stop()
        let result = backend.reconcile(Self.desired)
        #expect(result.errors.count == 1)
        #expect(result.errors[0].contains("SPDK's RPC socket \(box.target.path)"))
        #expect(result.errors[0].contains("is nvmf_tgt running?"))
        #expect(backend.ownership == owned)
        let check = backend.check(Self.desired)
        #expect(check.drift.first?.object == "SPDK target \(box.target.path)")
        #expect(backend.describe().reachable == false)
    }

    @Test func garbageFromTheTargetIsAnErrorAndTheNextCallReconnects() throws {
        let box = try Box()
        box.target.garbage = Array("HTTP/1.1 400 Bad Request\r\n\r\n".utf8)
        #expect {
            try box.client.call("spdk_get_version")
        } throws: { error in
            "\(error)".contains("the target sent \"HTTP/1.") && "\(error)".contains("where a JSON object was expected")
        }
        #expect(!box.client.isConnected)
        let version = try box.client.call("spdk_get_version")
        #expect(version["version"]?.stringValue == "SPDK v24.01 git sha1 247e1d7")
        #expect(box.client.connectionsMade == 2)
    }

    @Test func aRestartedTargetIsNoticedAndTheStateAppliedAgain() throws {
        let box = try Box()
        let backend = try box.backend()
        _ = backend.reconcile(Self.desired)
        #expect(!backend.lostState())
        box.target.dropConnections()
        #expect(backend.lostState(), "a new connection: the target may have restarted with nothing")
        box.target.resetLog()
        _ = backend.reconcile(Self.desired)
        #expect(box.target.methods.contains("nvmf_create_subsystem"))
        #expect(!backend.lostState())
    }

    @Test func everyRequestThePlannerCanMakeHasARecordedShape() throws {
        // A target with cnode2 as recorded (owned), a foreign subsystem and M2.
        let recording = SPDKRecording.shared
        var state = SPDKState(transports: ["TCP"])
        state.subsystems = try SPDKState.parseSubsystems(
            recording.answer("nvmf_get_subsystems") {
                $0["result"]?.arrayValue?.first?["nqn"]?.stringValue == Self.subsystem
            }["result"]!
        )
        state.bdevs = [SPDKBdev(name: "M2", product: "Malloc disk", blockSize: 512, blocks: 2048)]
        var owned = SPDKOwnership()
        owned.insert(.subsystem(Self.subsystem))
        owned.insert(.bdev("M2", kind: "malloc"))
        var changed = Self.desired
        changed.subsystems[0].allowAnyHost = true
        changed.subsystems[0].hosts = []
        changed.ports[0].transportServiceIdentifier = 4420
        changed.subsystems[0].namespaces = [EndpointNamespace(namespaceID: 2, devicePath: "/spdk/malloc/M3/1M")]
        changed.ports.append(
            FabricPort(portID: 2, transportType: "rdma", addressFamily: "ipv4", transportAddress: "192.168.1.1")
        )
        let plans = [
            SPDKPlanner.plan(desired: Self.desired, actual: SPDKState(), owned: SPDKOwnership()),
            SPDKPlanner.plan(desired: changed, actual: state, owned: owned),
            SPDKPlanner.plan(desired: EndpointConfiguration(), actual: state, owned: owned),
        ]
        var methods = Set<String>()
        for operation in plans.flatMap(\.operations) {
            let request = SPDKRPCClient.request(method: operation.method, id: 1, params: operation.params)
            methods.insert(operation.method)
            #expect(recording.match(request) != nil, "\(operation): \(request.serialized(pretty: false))")
        }
        #expect(
            methods == [
                "nvmf_create_transport", "bdev_malloc_create", "nvmf_create_subsystem", "nvmf_subsystem_add_ns",
                "nvmf_subsystem_add_host", "nvmf_subsystem_add_listener", "nvmf_subsystem_remove_ns",
                "nvmf_subsystem_allow_any_host", "nvmf_subsystem_remove_host", "nvmf_subsystem_remove_listener",
                "nvmf_delete_subsystem", "bdev_malloc_delete",
            ]
        )
    }
}

extension JSONValue {
    /// The value with every member `key` given `value`.
    func replacingMember(_ key: String, with value: JSONValue) -> JSONValue {
        switch self {
        case .array(let elements): return .array(elements.map { $0.replacingMember(key, with: value) })
        case .object(let members):
            return .object(
                members.map {
                    JSONMember(key: $0.key, value: $0.key == key ? value : $0.value.replacingMember(key, with: value))
                }
            )
        default: return self
        }
    }

    /// The value with every string `old` replaced by `new`.
    func replacingName(_ old: String, with new: String) -> JSONValue {
        switch self {
        case .string(let text): return .string(text == old ? new : text)
        case .array(let elements): return .array(elements.map { $0.replacingName(old, with: new) })
        case .object(let members):
            return .object(members.map { JSONMember(key: $0.key, value: $0.value.replacingName(old, with: new)) })
        default: return self
        }
    }
}
