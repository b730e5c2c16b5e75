import DEMCore
import Foundation
import Testing

@testable import DEMEndpoint

/// The SPDK planner (pure) and the stream framing.
@Suite struct SPDKPlannerTests {
    typealias C = SPDKContractTests

    /// The target as it is once `C.desired` is applied, owned by dem-em.
    static var applied: (SPDKState, SPDKOwnership) {
        let address = SPDKAddress(transportType: "TCP", addressFamily: "IPv4", address: "127.0.0.1", serviceID: "4421")
        let state = SPDKState(
            transports: ["TCP"],
            subsystems: [
                SPDKSubsystem(
                    nqn: SPDKState.discoveryNQN,
                    isDiscovery: true,
                    listeners: [address],
                    allowAnyHost: true,
                    hosts: [],
                    namespaces: []
                ),
                SPDKSubsystem(
                    nqn: C.subsystem,
                    isDiscovery: false,
                    listeners: [address],
                    allowAnyHost: false,
                    hosts: [C.host],
                    serial: "00000000000000000000",
                    model: "SPDK bdev Controller",
                    namespaces: [SPDKNamespace(nsid: 1, bdev: "M2", uuid: "2cd6d322-06fc-4164-b218-3fbb4bcc276f")]
                ),
            ],
            bdevs: [SPDKBdev(name: "M2", product: "Malloc disk", blockSize: 512, blocks: 2048)]
        )
        var owned = SPDKOwnership()
        owned.insert(.subsystem(C.subsystem))
        owned.insert(.bdev("M2", kind: "malloc"))
        owned.insert(.discoveryListener("tcp:ipv4:127.0.0.1:4421"))
        return (state, owned)
    }

    @Test func nothingToDoWhenTheTargetMatches() {
        let (state, owned) = Self.applied
        let plan = SPDKPlanner.plan(desired: C.desired, actual: state, owned: owned)
        #expect(plan.operations == [])
        #expect(plan.drift == [])
        #expect(plan.problems == [])
    }

    @Test func objectsOfOthersAreLeftAlone() {
        let (state, _) = Self.applied
        // Nothing owned: the subsystem of the same name is someone else's.
        let plan = SPDKPlanner.plan(desired: C.desired, actual: state, owned: SPDKOwnership())
        #expect(plan.foreign == ["subsystem \(C.subsystem)"])
        #expect(!plan.operations.contains { $0.params["nqn"]?.stringValue == C.subsystem })
        // Emptying the desired state deletes nothing dem-em did not make.
        let empty = SPDKPlanner.plan(desired: EndpointConfiguration(), actual: state, owned: SPDKOwnership())
        #expect(empty.operations == [])
        // With adopt it is taken over.
        let adopted = SPDKPlanner.plan(desired: C.desired, actual: state, owned: SPDKOwnership(), adopt: true)
        #expect(adopted.adopted.contains(.subsystem(C.subsystem)))
        #expect(adopted.foreign == [])
    }

    @Test func removalDeletesOnlyWhatWasMadeInOrder() {
        let (state, owned) = Self.applied
        let plan = SPDKPlanner.plan(desired: EndpointConfiguration(), actual: state, owned: owned)
        #expect(
            plan.operations.map(\.description) == [
                "nvmf_delete_subsystem subsystem \(C.subsystem)",
                "nvmf_subsystem_remove_listener discovery listener tcp:ipv4:127.0.0.1:4421",
                "bdev_malloc_delete malloc bdev M2",
            ]
        )
    }

    @Test func changesOfAnOwnedSubsystem() {
        let (state, owned) = Self.applied
        var desired = C.desired
        desired.subsystems[0].allowAnyHost = true
        desired.subsystems[0].hosts = []
        desired.subsystems[0].namespaces[0].uuid = "11111111-06fc-4164-b218-3fbb4bcc276f"
        desired.subsystems[0].serial = "DEM1"
        let plan = SPDKPlanner.plan(desired: desired, actual: state, owned: owned)
        #expect(
            plan.operations.map(\.method) == [
                "nvmf_subsystem_remove_ns", "nvmf_subsystem_add_ns", "nvmf_subsystem_allow_any_host",
                "nvmf_subsystem_remove_host",
            ]
        )
        #expect(plan.drift.contains { $0.attribute == "serial_number" && $0.expected == "DEM1" })
        #expect(plan.notes.contains { $0.contains("serial_number is set when a subsystem is made") })
    }

    @Test func whatSPDKCannotDoIsAProblemNotASilentOtherMeaning() {
        var desired = C.desired
        desired.ports.append(
            FabricPort(portID: 2, transportType: "fc", addressFamily: "fc", transportAddress: "nn-0x1:pn-0x2")
        )
        desired.ports.append(
            FabricPort(
                portID: 3,
                transportType: "tcp",
                addressFamily: "ipv4",
                transportAddress: "10.0.0.1",
                securityType: "tls1.3"
            )
        )
        desired.subsystems[0].ports = [1, 2, 3]
        desired.hostKeys = [
            EndpointHostKey(
                hostNQN: C.host,
                sealedSecret: "x",
                sealedControllerSecret: nil,
                hash: "sha256",
                group: "null"
            )
        ]
        desired.subsystems[0].namespaces.append(EndpointNamespace(namespaceID: 2, devicePath: "/spdk/malloc/M9/7"))
        let plan = SPDKPlanner.plan(desired: desired, actual: SPDKState(transports: ["TCP"]), owned: SPDKOwnership())
        #expect(plan.problems.contains { $0.hasPrefix("PortIDs[1].TRTYPE") })
        #expect(plan.problems.contains { $0.hasPrefix("PortIDs[2].TSAS") })
        #expect(plan.problems.contains { $0.hasPrefix("HostKeys[0].HOSTNQN") && $0.contains("not allowed in") })
        #expect(
            plan.problems.contains {
                $0.hasPrefix("Subsystems[0].NSIDs[1].DevicePath") && $0.contains("multiple of 512")
            }
        )
        // Neither the key's host nor the TLS port is served without what they ask for.
        #expect(!plan.operations.contains { $0.method == "nvmf_subsystem_add_host" })
        #expect(!plan.operations.contains { $0.params["listen_address"]?["traddr"]?.stringValue == "10.0.0.1" })
    }

    @Test func aNamespaceWithoutUUIDGetsTheSameOneEveryTime() {
        let namespace = EndpointNamespace(namespaceID: 1, devicePath: "/spdk/malloc/M2/1M")
        let uuid = SPDKPlanner.uuid(of: namespace, in: C.subsystem)
        #expect(uuid == SPDKPlanner.uuid(of: namespace, in: C.subsystem))
        #expect(uuid != SPDKPlanner.uuid(of: namespace, in: C.subsystem + "x"))
        #expect(UUID(uuidString: uuid) != nil)
        #expect(Array(uuid)[14] == "8", "version 8")
        let plan = SPDKPlanner.plan(
            desired: EndpointConfiguration(subsystems: [
                EndpointSubsystem(nqn: C.subsystem, allowAnyHost: true, namespaces: [namespace])
            ]),
            actual: SPDKState(),
            owned: SPDKOwnership()
        )
        #expect(
            plan.operations.first { $0.method == "nvmf_subsystem_add_ns" }?.params["namespace"]?["uuid"]?.stringValue
                == uuid
        )
    }

    @Test func devicePaths() throws {
        #expect(try SPDKDevice.parse("/spdk/malloc/M2/1M").get() == .malloc(name: "M2", blocks: 2048, blockSize: 512))
        #expect(try SPDKDevice.parse("/spdk/null/N1/1G").get() == .null(name: "N1", blocks: 2_097_152, blockSize: 512))
        #expect(try SPDKDevice.parse("/spdk/bdev/Nvme0n1").get() == .existing(name: "Nvme0n1"))
        #expect(
            try SPDKDevice.parse("/spdk/nvme/0000:01:00.0/n2").get()
                == .nvme(controller: "dem_0000_01_00_0", pciAddress: "0000:01:00.0", namespace: 2)
        )
        #expect(try SPDKDevice.parse("/dev/sdb").get() == .aio(name: "dem_aio_dev_sdb", path: "/dev/sdb"))
        for bad in [
            "/spdk/malloc/M2", "/spdk/malloc/M 2/1M", "/spdk/nvme/01:00/n1", "/spdk/nvme/0000:01:00.0/x", "/spdk/what",
            "dev/sdb",
        ] {
            #expect(throws: SPDKDeviceError.self, "\(bad)") { try SPDKDevice.parse(bad).get() }
        }
    }

    @Test func theStreamIsCutIntoValuesWhateverTheChunks() throws {
        let answers = SPDKRecording.shared.exchanges.map(\.response)
        // Strings with braces, quotes and escapes inside, values back to back with no delimiter.
        let tricky = JSONValue.members([("result", .string("a } \" { [ \\ ]")), ("id", .int(99))])
        let all = answers + [tricky]
        let bytes = Array(all.map { $0.serialized(pretty: true) }.joined().utf8)
        for size in [1, 7, 4096] {
            var stream = SPDKJSONStream()
            var out: [JSONValue] = []
            var offset = 0
            while offset < bytes.count {
                stream.append(bytes[offset..<min(offset + size, bytes.count)])
                offset += size
                while let value = try stream.next() { out.append(value) }
            }
            #expect(out == all, "chunks of \(size)")
            #expect(stream.pending == 0)
        }
        var garbage = SPDKJSONStream()
        garbage.append(Array("{\"a\":1}xyz".utf8))
        #expect(try garbage.next() == .members([("a", .int(1))]))
        #expect(throws: SPDKRPCError.self) { try garbage.next() }
        var broken = SPDKJSONStream()
        broken.append(Array("{\"a\":tru}".utf8))
        #expect(throws: SPDKRPCError.self) { try broken.next() }
    }
}
