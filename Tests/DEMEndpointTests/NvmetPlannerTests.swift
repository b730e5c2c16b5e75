import DEMCore
import Testing

@testable import DEMEndpoint

/// Shared desired state and matching tree for the nvmet tests.
enum NvmetSample {
    static let host = "nqn.2014-08.org.nvmexpress:uuid:3a8b2c1d-0000-4000-8000-00000000000a"
    static let otherHost = "nqn.2014-08.org.nvmexpress:uuid:3a8b2c1d-0000-4000-8000-00000000000b"
    static let subsystem = "nqn.2024-01.io.dem:vol-a"
    static let otherSubsystem = "nqn.2024-01.io.dem:vol-b"
    static let uuid = "6b3a9a0e-52c4-4d0e-9d7f-2a1c3e4f5a6b"

    static var port: FabricPort {
        FabricPort(
            portID: 1,
            transportType: "tcp",
            addressFamily: "ipv4",
            transportAddress: "10.0.0.1",
            transportServiceIdentifier: 4420
        )
    }

    static var volume: EndpointSubsystem {
        EndpointSubsystem(
            nqn: subsystem,
            allowAnyHost: false,
            serial: "DEM0000000001",
            namespaces: [EndpointNamespace(namespaceID: 1, devicePath: "/dev/nullb0", uuid: uuid)],
            hosts: [host],
            ports: [1]
        )
    }

    static var desired: EndpointConfiguration {
        EndpointConfiguration(ports: [port], hosts: [host], subsystems: [volume])
    }

    /// The tree `desired` produces on the kernel.
    static var tree: NvmetTree {
        NvmetTree(
            ports: [
                NvmetPortState(
                    id: 1,
                    transportType: "tcp",
                    addressFamily: "ipv4",
                    transportAddress: "10.0.0.1",
                    serviceID: "4420",
                    transportRequirements: "not specified",
                    securityType: "none",
                    links: [NvmetLink(subsystem)]
                )
            ],
            subsystems: [
                NvmetSubsystemState(
                    nqn: subsystem,
                    allowAnyHost: false,
                    serial: "DEM0000000001",
                    model: "Linux",
                    allowedHosts: [NvmetLink(host)],
                    namespaces: [NvmetNamespaceState(id: 1, devicePath: "/dev/nullb0", uuid: uuid, enabled: true)]
                )
            ],
            hosts: [host]
        )
    }

    static var owned: NvmetOwnership { NvmetOwnership.everything(in: tree) }
}

@Suite("nvmet planner")
struct NvmetPlannerTests {
    typealias S = NvmetSample
    let sub = "subsystems/\(NvmetSample.subsystem)"

    private func lines(_ plan: NvmetPlan) -> [String] { plan.operations.map(\.description) }

    @Test("an empty tree gets hosts, ports, subsystems, namespaces, allowed hosts, port links, in that order")
    func creationOrder() {
        let plan = NvmetPlanner.plan(desired: S.desired, actual: NvmetTree(), owned: NvmetOwnership())
        #expect(
            lines(plan) == [
                "mkdir hosts/\(S.host)",
                "mkdir ports/1",
                "write ports/1/addr_trtype = tcp",
                "write ports/1/addr_adrfam = ipv4",
                "write ports/1/addr_traddr = 10.0.0.1",
                "write ports/1/addr_trsvcid = 4420",
                "mkdir \(sub)",
                "write \(sub)/attr_serial = DEM0000000001",
                "mkdir \(sub)/namespaces/1",
                "write \(sub)/namespaces/1/device_path = /dev/nullb0",
                "write \(sub)/namespaces/1/device_uuid = \(S.uuid)",
                "write \(sub)/namespaces/1/enable = 1",
                "symlink \(sub)/allowed_hosts/\(S.host) -> hosts/\(S.host)",
                "symlink ports/1/subsystems/\(S.subsystem) -> \(sub)",
            ]
        )
        #expect(plan.foreign.isEmpty)
        #expect(Set(plan.drift.map(\.object)) == ["ports/1", sub, "hosts/\(S.host)"])
        #expect(plan.drift.allSatisfy { $0.expected == "present" && $0.actual == nil })
    }

    @Test("a tree that matches plans nothing and shows no drift")
    func idempotent() {
        let plan = NvmetPlanner.plan(desired: S.desired, actual: S.tree, owned: S.owned)
        #expect(plan.operations.isEmpty)
        #expect(plan.drift.isEmpty)
        #expect(plan.foreign.isEmpty)
        #expect(plan.notes.isEmpty)
    }

    @Test("identifiers compare in canonical form: upper case without dashes is no change")
    func canonicalIdentifiers() {
        var desired = S.desired
        desired.subsystems[0].namespaces[0].uuid = S.uuid.uppercased().replacingOccurrences(of: "-", with: "")
        let plan = NvmetPlanner.plan(desired: desired, actual: S.tree, owned: S.owned)
        #expect(plan.operations.isEmpty)
        #expect(plan.drift.isEmpty)
    }

    @Test("one differing attribute is the only write")
    func singleAttribute() {
        var desired = S.desired
        desired.subsystems[0].model = "DEM volume"
        let plan = NvmetPlanner.plan(desired: desired, actual: S.tree, owned: S.owned)
        #expect(lines(plan) == ["write \(sub)/attr_model = DEM volume"])
        #expect(
            plan.drift == [EndpointDrift(object: sub, attribute: "attr_model", expected: "DEM volume", actual: "Linux")]
        )
    }

    @Test("a device change disables the namespace, rewrites it and enables it again")
    func deviceChange() {
        var desired = S.desired
        desired.subsystems[0].namespaces[0].devicePath = "/dev/nullb1"
        desired.subsystems[0].namespaces[0].nguid = "0011223344556677-8899AABBCCDDEEFF"
        let plan = NvmetPlanner.plan(desired: desired, actual: S.tree, owned: S.owned)
        #expect(
            lines(plan) == [
                "write \(sub)/namespaces/1/enable = 0",
                "write \(sub)/namespaces/1/device_path = /dev/nullb1",
                "write \(sub)/namespaces/1/device_nguid = 00112233-4455-6677-8899-aabbccddeeff",
                "write \(sub)/namespaces/1/enable = 1",
            ]
        )
    }

    @Test("only the enable flag differs: one write")
    func enableOnly() {
        var desired = S.desired
        desired.subsystems[0].namespaces[0].enabled = false
        let plan = NvmetPlanner.plan(desired: desired, actual: S.tree, owned: S.owned)
        #expect(lines(plan) == ["write \(sub)/namespaces/1/enable = 0"])
    }

    @Test("a port address change lifts the links, writes the address and restores the links")
    func portAddressChange() {
        var desired = S.desired
        desired.ports[0].transportAddress = "10.0.0.2"
        desired.ports[0].transportServiceIdentifier = 4421
        let plan = NvmetPlanner.plan(desired: desired, actual: S.tree, owned: S.owned)
        #expect(
            lines(plan) == [
                "unlink ports/1/subsystems/\(S.subsystem)",
                "write ports/1/addr_traddr = 10.0.0.2",
                "write ports/1/addr_trsvcid = 4421",
                "symlink ports/1/subsystems/\(S.subsystem) -> \(sub)",
            ]
        )
    }

    @Test("a transport change rewrites the security type the kernel resets, and the requirements after it")
    func transportChange() {
        var desired = S.desired
        desired.ports[0].transportType = "rdma"
        desired.ports[0].securityType = "none"
        desired.ports[0].transportRequirements = "not specified"
        var tree = S.tree
        tree.ports[0].links = []
        desired.subsystems[0].ports = []
        let plan = NvmetPlanner.plan(desired: desired, actual: tree, owned: S.owned)
        #expect(
            lines(plan) == [
                "write ports/1/addr_trtype = rdma",
                "write ports/1/addr_tsas = none",
                "write ports/1/addr_treq = not specified",
            ]
        )
        // Only the transport type actually differs.
        #expect(
            plan.drift == [EndpointDrift(object: "ports/1", attribute: "addr_trtype", expected: "rdma", actual: "tcp")]
        )
    }

    @Test("removing everything goes links, allowed hosts, namespaces, subsystems, ports, hosts")
    func removalOrder() {
        let plan = NvmetPlanner.plan(desired: EndpointConfiguration(), actual: S.tree, owned: S.owned)
        #expect(
            lines(plan) == [
                "unlink ports/1/subsystems/\(S.subsystem)",
                "unlink \(sub)/allowed_hosts/\(S.host)",
                "write \(sub)/namespaces/1/enable = 0",
                "rmdir \(sub)/namespaces/1",
                "rmdir \(sub)",
                "rmdir ports/1",
                "rmdir hosts/\(S.host)",
            ]
        )
        #expect(plan.drift.allSatisfy { $0.expected == nil && $0.actual == "present" })
        #expect(plan.drift.count == 3)
    }

    @Test("objects dem-em did not create and nobody asked for are never touched")
    func foreignUntouched() {
        var tree = S.tree
        tree.subsystems.append(
            NvmetSubsystemState(
                nqn: "nqn.2024-01.local:admin",
                namespaces: [NvmetNamespaceState(id: 5, devicePath: "/dev/sdb", enabled: true)]
            )
        )
        tree.ports.append(NvmetPortState(id: 9, transportType: "loop", links: [NvmetLink("nqn.2024-01.local:admin")]))
        tree.hosts.append("nqn.2024-01.local:admin-host")
        // dem-em owns only its own objects; the desired state drops everything it owns.
        let plan = NvmetPlanner.plan(desired: EndpointConfiguration(), actual: tree, owned: S.owned)
        for operation in plan.operations {
            #expect(!operation.path.contains("admin"))
            #expect(!operation.path.hasPrefix("ports/9"))
        }
        #expect(plan.operations.count == 7)
        #expect(plan.foreign.isEmpty)
        #expect(!plan.drift.contains { $0.object.contains("admin") || $0.object.hasPrefix("ports/9") })
    }

    @Test("a desired object that exists but is foreign is reported and left alone")
    func desiredButForeign() {
        var tree = S.tree
        tree.subsystems[0].serial = "SOMEONE-ELSE"
        let plan = NvmetPlanner.plan(desired: S.desired, actual: tree, owned: NvmetOwnership())
        #expect(plan.operations.isEmpty)
        #expect(plan.foreign == ["hosts/\(S.host)", "ports/1", sub])
        #expect(
            plan.drift == [
                EndpointDrift(object: sub, attribute: "attr_serial", expected: "DEM0000000001", actual: "SOMEONE-ELSE")
            ]
        )
    }

    @Test("adopt takes a foreign desired object over and reconciles it")
    func adopt() {
        var tree = S.tree
        tree.subsystems[0].serial = "SOMEONE-ELSE"
        let plan = NvmetPlanner.plan(desired: S.desired, actual: tree, owned: NvmetOwnership(), adopt: true)
        #expect(plan.foreign.isEmpty)
        #expect(plan.adopted == ["hosts/\(S.host)", "ports/1", sub])
        #expect(lines(plan) == ["write \(sub)/attr_serial = DEM0000000001"])
    }

    @Test("drift lists missing objects, extra links and differing values")
    func driftListing() {
        var tree = S.tree
        tree.ports[0].transportAddress = "10.9.9.9"
        tree.ports[0].links.append(NvmetLink(S.otherSubsystem))
        tree.subsystems[0].namespaces = []
        tree.subsystems.append(NvmetSubsystemState(nqn: S.otherSubsystem))
        var owned = S.owned
        owned.subsystems.insert(S.otherSubsystem)
        let plan = NvmetPlanner.plan(desired: S.desired, actual: tree, owned: owned)
        #expect(
            Set(plan.drift) == [
                EndpointDrift(object: "ports/1", attribute: "addr_traddr", expected: "10.0.0.1", actual: "10.9.9.9"),
                EndpointDrift(object: "ports/1/subsystems/\(S.otherSubsystem)", expected: nil, actual: "present"),
                EndpointDrift(object: "\(sub)/namespaces/1", expected: "present", actual: nil),
                EndpointDrift(object: "subsystems/\(S.otherSubsystem)", expected: nil, actual: "present"),
            ]
        )
        // The extra subsystem is unlinked before the address write; the kept link comes back.
        #expect(
            lines(plan) == [
                "unlink ports/1/subsystems/\(S.otherSubsystem)",
                "unlink ports/1/subsystems/\(S.subsystem)",
                "rmdir subsystems/\(S.otherSubsystem)",
                "write ports/1/addr_traddr = 10.0.0.1",
                "mkdir \(sub)/namespaces/1",
                "write \(sub)/namespaces/1/device_path = /dev/nullb0",
                "write \(sub)/namespaces/1/device_uuid = \(S.uuid)",
                "write \(sub)/namespaces/1/enable = 1",
                "symlink ports/1/subsystems/\(S.subsystem) -> \(sub)",
            ]
        )
    }

    @Test("allow_any_host: allowed-host links go before it is set (the kernel refuses both)")
    func allowAnyHost() {
        var desired = S.desired
        desired.subsystems[0].allowAnyHost = true
        let plan = NvmetPlanner.plan(desired: desired, actual: S.tree, owned: S.owned)
        #expect(
            lines(plan) == [
                "unlink \(sub)/allowed_hosts/\(S.host)",
                "write \(sub)/attr_allow_any_host = 1",
            ]
        )
    }

    @Test("a subsystem linked from a foreign port is kept, with a note")
    func deletionHeldBack() {
        var tree = S.tree
        tree.ports.append(NvmetPortState(id: 7, transportType: "loop", links: [NvmetLink(S.subsystem)]))
        let plan = NvmetPlanner.plan(desired: EndpointConfiguration(), actual: tree, owned: S.owned)
        #expect(!plan.operations.contains { $0.path.hasPrefix(sub) })
        #expect(!plan.operations.contains { $0.path.hasPrefix("ports/7") })
        #expect(plan.operations.contains(.removeDirectory("ports/1")))
        // The host stays too: the kept subsystem still allows it.
        #expect(!plan.operations.contains(.removeDirectory("hosts/\(S.host)")))
        #expect(plan.notes.count == 2)
        #expect(plan.notes.first?.contains("ports/7") == true)
    }

    @Test("a link in a managed port to a foreign subsystem nobody asked for is kept")
    func foreignLinkKept() {
        var tree = S.tree
        tree.subsystems.append(NvmetSubsystemState(nqn: "nqn.2024-01.local:admin"))
        tree.ports[0].links.append(NvmetLink("nqn.2024-01.local:admin"))
        let plan = NvmetPlanner.plan(desired: S.desired, actual: tree, owned: S.owned)
        #expect(plan.operations.isEmpty)
        #expect(plan.drift.isEmpty)
    }
}
