import DEMCore
import Foundation
import Logging
import Testing

@testable import DEMEndpoint

// These tests run the backend on an ordinary temporary folder that stands in for configfs:
// configfs needs root and the nvmet module. `PosixNvmetFileSystem` in emulated mode creates the
// attribute files and subfolders the kernel would, and refuses what the kernel refuses (address
// writes on a linked port, device writes on an enabled namespace, rmdir of a folder with
// children or incoming links), so a wrong order of operations fails here too. The real configfs
// is proven separately in the VM harness.

/// A temporary nvmet root and ledger; `remove()` deletes them.
private struct Sandbox {
    let directory: String
    let root: String
    let ledger: String

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("nvmet-\(UUID().uuidString)").path
        root = directory + "/nvmet"
        ledger = directory + "/state/nvmet-ledger.json"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    }

    func remove() { try? FileManager.default.removeItem(atPath: directory) }

    func backend(credential: String? = nil) throws -> NvmetBackend {
        var logger = Logger(label: "test.nvmet")
        logger.logLevel = .error
        return try NvmetBackend(root: root, ledgerPath: ledger, logger: logger, mode: .emulated, credential: credential)
    }

    var fs: PosixNvmetFileSystem { PosixNvmetFileSystem(root: root, mode: .emulated) }

    func read(_ path: String) -> String? { try? fs.readAttribute(path) }
    func exists(_ path: String) -> Bool { fs.exists(path) }

    /// Writes a file directly, as an administrator editing by hand.
    func handEdit(_ path: String, _ value: String) throws {
        try Data((value + "\n").utf8).write(to: URL(fileURLWithPath: root + "/" + path))
    }
}

@Suite("nvmet backend on a folder standing in for configfs")
struct NvmetBackendTests {
    typealias S = NvmetSample
    let sub = "subsystems/\(NvmetSample.subsystem)"

    @Test("reconcile creates the tree the kernel would have")
    func createsTree() throws {
        let box = try Sandbox()
        defer { box.remove() }
        let backend = try box.backend()
        let result = backend.reconcile(S.desired)
        #expect(result.errors.isEmpty, "\(result.errorLines)")
        #expect(result.operationCount == 14)
        #expect(result.drift.isEmpty)
        #expect(result.foreign.isEmpty)
        #expect(result.live == [LiveSubsystem(nqn: S.subsystem, ports: [1], namespaces: [1])])

        #expect(box.read("ports/1/addr_trtype") == "tcp")
        #expect(box.read("ports/1/addr_traddr") == "10.0.0.1")
        #expect(box.read("ports/1/addr_trsvcid") == "4420")
        #expect(box.read("\(sub)/attr_serial") == "DEM0000000001")
        #expect(box.read("\(sub)/attr_allow_any_host") == "0")
        #expect(box.read("\(sub)/namespaces/1/device_path") == "/dev/nullb0")
        #expect(box.read("\(sub)/namespaces/1/device_uuid") == S.uuid)
        #expect(box.read("\(sub)/namespaces/1/enable") == "1")
        #expect(box.fs.kind("ports/1/subsystems/\(S.subsystem)") == .link)
        #expect(try box.fs.readLink("ports/1/subsystems/\(S.subsystem)") == "\(box.root)/\(sub)")
        #expect(box.fs.kind("\(sub)/allowed_hosts/\(S.host)") == .link)
        #expect(box.fs.kind("hosts/\(S.host)") == .directory)
        #expect(backend.ownership == S.owned)
        #expect(try backend.actual() == S.desired.withKernelDefaults)
    }

    @Test("a second reconcile, and one after a restart with the same ledger, do nothing")
    func idempotentAcrossRestart() throws {
        let box = try Sandbox()
        defer { box.remove() }
        let first = try box.backend().reconcile(S.desired)
        #expect(first.errors.isEmpty)
        #expect(first.operationCount > 0)
        let backend = try box.backend()
        let second = backend.reconcile(S.desired)
        #expect(second.operationCount == 0)
        #expect(second.errors.isEmpty)
        let restarted = try box.backend()
        #expect(restarted.ownership == S.owned)
        let third = restarted.reconcile(S.desired)
        #expect(third.operations == [])
        #expect(third.drift.isEmpty)
        #expect(third.foreign.isEmpty)
    }

    @Test("the ledger is a JSON file that survives a new backend")
    func ledgerSurvives() throws {
        let box = try Sandbox()
        defer { box.remove() }
        _ = try box.backend().reconcile(S.desired)
        let data = try Data(contentsOf: URL(fileURLWithPath: box.ledger))
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let owned = try #require(json["Owned"] as? [String: Any])
        #expect(owned["Ports"] as? [Int] == [1])
        #expect(owned["Subsystems"] as? [String] == [S.subsystem])
        #expect(owned["Hosts"] as? [String] == [S.host])
        #expect(try NvmetLedger(path: box.ledger).load() == S.owned)
        #expect(try box.backend().ownership == S.owned)
        // No temporary file is left behind.
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: box.directory + "/state")
        #expect(leftovers == ["nvmet-ledger.json"])
    }

    @Test("an object someone else made survives a reset and a reconcile")
    func foreignSurvives() throws {
        let box = try Sandbox()
        defer { box.remove() }
        let backend = try box.backend()
        _ = backend.reconcile(S.desired)
        // An administrator adds their own subsystem with a namespace and a port of their own.
        let admin = "nqn.2024-01.local:admin"
        try box.fs.makeDirectory("subsystems/\(admin)")
        try box.fs.makeDirectory("subsystems/\(admin)/namespaces/3")
        try box.fs.writeAttribute("subsystems/\(admin)/namespaces/3/device_path", "/dev/sdz")
        try box.fs.writeAttribute("subsystems/\(admin)/namespaces/3/enable", "1")
        try box.fs.makeDirectory("ports/9")
        try box.fs.writeAttribute("ports/9/addr_trtype", "loop")
        try box.fs.createLink("ports/9/subsystems/\(admin)", to: "subsystems/\(admin)")

        let again = backend.reconcile(S.desired)
        #expect(again.operationCount == 0)
        #expect(again.errors.isEmpty)
        #expect(again.live.contains(LiveSubsystem(nqn: admin, ports: [9], namespaces: [3])))

        let reset = backend.reset(all: false)
        #expect(reset.errors.isEmpty, "\(reset.errorLines)")
        #expect(reset.operationCount == 7)
        #expect(!box.exists("ports/1"))
        #expect(!box.exists(sub))
        #expect(!box.exists("hosts/\(S.host)"))
        #expect(box.read("subsystems/\(admin)/namespaces/3/enable") == "1")
        #expect(box.fs.kind("ports/9/subsystems/\(admin)") == .link)
        #expect(reset.foreign == ["ports/9", "subsystems/\(admin)"])
        #expect(backend.ownership.isEmpty)

        let rebuilt = backend.reconcile(S.desired)
        #expect(rebuilt.errors.isEmpty)
        #expect(rebuilt.operationCount == 14)
        #expect(box.read("subsystems/\(admin)/namespaces/3/device_path") == "/dev/sdz")
        #expect(box.read("ports/9/addr_trtype") == "loop")
    }

    @Test("reset all removes everything, in an order the kernel accepts")
    func resetAll() throws {
        let box = try Sandbox()
        defer { box.remove() }
        let backend = try box.backend()
        _ = backend.reconcile(S.desired)
        try box.fs.makeDirectory("hosts/nqn.2024-01.local:h")
        try box.fs.makeDirectory("subsystems/nqn.2024-01.local:s")
        try box.fs.createLink("subsystems/nqn.2024-01.local:s/allowed_hosts/h", to: "hosts/nqn.2024-01.local:h")
        try box.fs.createLink("ports/1/subsystems/nqn.2024-01.local:s", to: "subsystems/nqn.2024-01.local:s")
        let result = backend.reset(all: true)
        #expect(result.errors.isEmpty, "\(result.errorLines)")
        #expect(result.live.isEmpty)
        #expect(try box.fs.list("ports").isEmpty)
        #expect(try box.fs.list("subsystems").isEmpty)
        #expect(try box.fs.list("hosts").isEmpty)
        #expect(backend.ownership.isEmpty)
    }

    @Test("dropping a subsystem from the desired state removes its links and folders")
    func dropSubsystem() throws {
        let box = try Sandbox()
        defer { box.remove() }
        let backend = try box.backend()
        var desired = S.desired
        desired.hosts.append(S.otherHost)
        desired.subsystems.append(
            EndpointSubsystem(
                nqn: S.otherSubsystem,
                allowAnyHost: false,
                namespaces: [
                    EndpointNamespace(namespaceID: 1, devicePath: "/dev/nullb1"),
                    EndpointNamespace(namespaceID: 2, devicePath: "/dev/nullb2"),
                ],
                hosts: [S.otherHost],
                ports: [1]
            )
        )
        let created = backend.reconcile(desired)
        #expect(created.errors.isEmpty, "\(created.errorLines)")
        #expect(box.exists("subsystems/\(S.otherSubsystem)/namespaces/2"))

        let dropped = backend.reconcile(S.desired)
        #expect(dropped.errors.isEmpty, "\(dropped.errorLines)")
        #expect(
            dropped.operations == [
                "unlink ports/1/subsystems/\(S.otherSubsystem)",
                "unlink subsystems/\(S.otherSubsystem)/allowed_hosts/\(S.otherHost)",
                "write subsystems/\(S.otherSubsystem)/namespaces/1/enable = 0",
                "rmdir subsystems/\(S.otherSubsystem)/namespaces/1",
                "write subsystems/\(S.otherSubsystem)/namespaces/2/enable = 0",
                "rmdir subsystems/\(S.otherSubsystem)/namespaces/2",
                "rmdir subsystems/\(S.otherSubsystem)",
                "rmdir hosts/\(S.otherHost)",
            ]
        )
        #expect(!box.exists("subsystems/\(S.otherSubsystem)"))
        #expect(!box.exists("ports/1/subsystems/\(S.otherSubsystem)"))
        #expect(!box.exists("hosts/\(S.otherHost)"))
        #expect(box.fs.kind("ports/1/subsystems/\(S.subsystem)") == .link)
        #expect(backend.ownership == S.owned)
        #expect(dropped.live == [LiveSubsystem(nqn: S.subsystem, ports: [1], namespaces: [1])])
    }

    @Test("a hand-edited attribute is drift, and reconcile repairs it")
    func handEditRepaired() throws {
        let box = try Sandbox()
        defer { box.remove() }
        let backend = try box.backend()
        _ = backend.reconcile(S.desired)
        try box.handEdit("ports/1/addr_traddr", "10.9.9.9")
        try box.handEdit("\(sub)/attr_serial", "HACKED")

        let check = backend.check(S.desired)
        #expect(
            check.drift == [
                EndpointDrift(object: "ports/1", attribute: "addr_traddr", expected: "10.0.0.1", actual: "10.9.9.9"),
                EndpointDrift(object: sub, attribute: "attr_serial", expected: "DEM0000000001", actual: "HACKED"),
            ]
        )
        #expect(check.foreign.isEmpty)
        #expect(check.live == [LiveSubsystem(nqn: S.subsystem, ports: [1], namespaces: [1])])

        let repaired = backend.reconcile(S.desired)
        #expect(repaired.errors.isEmpty, "\(repaired.errorLines)")
        #expect(
            repaired.operations == [
                "unlink ports/1/subsystems/\(S.subsystem)",
                "write ports/1/addr_traddr = 10.0.0.1",
                "write \(sub)/attr_serial = DEM0000000001",
                "symlink ports/1/subsystems/\(S.subsystem) -> \(sub)",
            ]
        )
        #expect(repaired.drift.isEmpty)
        #expect(box.read("ports/1/addr_traddr") == "10.0.0.1")
        #expect(backend.check(S.desired).drift.isEmpty)
    }

    @Test("a foreign desired subsystem is reported, then adopted on request")
    func foreignThenAdopt() throws {
        let box = try Sandbox()
        defer { box.remove() }
        let backend = try box.backend()
        try box.fs.makeDirectory(sub)
        try box.fs.writeAttribute("\(sub)/attr_serial", "ADMIN")
        let first = backend.reconcile(S.desired)
        #expect(first.errors.isEmpty, "\(first.errorLines)")
        #expect(first.foreign == [sub])
        #expect(box.read("\(sub)/attr_serial") == "ADMIN")
        #expect(!box.exists("\(sub)/namespaces/1"))
        #expect(first.drift.contains(EndpointDrift(object: "\(sub)/namespaces/1", expected: "present", actual: nil)))
        #expect(!backend.ownership.subsystems.contains(S.subsystem))

        let adopted = backend.reconcile(S.desired, adopt: true)
        #expect(adopted.errors.isEmpty, "\(adopted.errorLines)")
        #expect(adopted.foreign.isEmpty)
        #expect(adopted.drift.isEmpty)
        #expect(box.read("\(sub)/attr_serial") == "DEM0000000001")
        #expect(backend.ownership == S.owned)
    }

    @Test("a failed operation is reported with its path and errno, and independent ones still run")
    func failuresReported() throws {
        let box = try Sandbox()
        defer { box.remove() }
        let backend = try box.backend()
        // A file where the host folder should go makes its mkdir fail with EEXIST.
        try Data().write(to: URL(fileURLWithPath: box.root + "/hosts/\(S.host)"))
        let result = backend.reconcile(S.desired)
        let failure = try #require(result.errors.first)
        #expect(result.errors.count == 1)
        #expect(failure.operation == .makeDirectory("hosts/\(S.host)"))
        #expect(failure.path == box.root + "/hosts/\(S.host)")
        #expect(failure.code == EEXIST)
        #expect(failure.description.contains("EEXIST"))
        #expect(
            result.skipped == [
                "symlink \(sub)/allowed_hosts/\(S.host) -> hosts/\(S.host) (mkdir hosts/\(S.host) failed)"
            ]
        )
        #expect(!result.succeeded)
        // Everything else was made and the host is not claimed.
        #expect(box.read("\(sub)/namespaces/1/enable") == "1")
        #expect(box.fs.kind("ports/1/subsystems/\(S.subsystem)") == .link)
        #expect(!backend.ownership.hosts.contains(S.host))
    }

    @Test("an invalid desired state is refused before anything changes")
    func invalidRefused() throws {
        let box = try Sandbox()
        defer { box.remove() }
        let backend = try box.backend()
        var desired = S.desired
        desired.subsystems[0].ports = [5]
        let result = backend.reconcile(desired)
        #expect(result.operationCount == 0)
        #expect(result.errors.first?.path == "Subsystems[0].PortIDs[0]")
        #expect(try box.fs.list("ports").isEmpty)
    }

    @Test("the emulated folder refuses what the kernel refuses")
    func emulationRefuses() throws {
        let box = try Sandbox()
        defer { box.remove() }
        _ = try box.backend().reconcile(S.desired)
        #expect(throws: NvmetFileError.self) { try box.fs.writeAttribute("ports/1/addr_traddr", "10.1.1.1") }
        #expect(throws: NvmetFileError.self) {
            try box.fs.writeAttribute("\(sub)/namespaces/1/device_path", "/dev/nullb9")
        }
        #expect(throws: NvmetFileError.self) { try box.fs.removeDirectory(sub) }
        #expect(throws: NvmetFileError.self) { try box.fs.removeDirectory("hosts/\(S.host)") }
        #expect(throws: NvmetFileError.self) { try box.fs.writeAttribute("\(sub)/attr_allow_any_host", "1") }
        do {
            try box.fs.writeAttribute("ports/1/addr_traddr", "10.1.1.1")
        } catch {
            #expect(error.code == EACCES)
        }
    }

    @Test("odd entries in the tree are skipped, not fatal")
    func oddContent() throws {
        let box = try Sandbox()
        defer { box.remove() }
        let backend = try box.backend()
        _ = backend.reconcile(S.desired)
        try FileManager.default.createDirectory(
            atPath: box.root + "/ports/not-a-number",
            withIntermediateDirectories: true
        )
        try Data("junk".utf8).write(to: URL(fileURLWithPath: box.root + "/ports/README"))
        try FileManager.default.createDirectory(
            atPath: box.root + "/\(sub)/namespaces/x",
            withIntermediateDirectories: true
        )
        try FileManager.default.removeItem(atPath: box.root + "/\(sub)/attr_model")
        try box.handEdit("\(sub)/namespaces/1/device_uuid", "garbage")
        let tree = backend.tree()
        #expect(tree.ports.map(\.id) == [1])
        #expect(tree.subsystems.first?.namespaces.map(\.id) == [1])
        #expect(tree.subsystems.first?.model == nil)
        #expect(tree.subsystems.first?.namespaces.first?.uuid == "garbage")
        #expect(backend.check(S.desired).drift.map(\.attribute) == ["device_uuid"])
    }

    @Test("a missing root is an error, not a crash")
    func missingRoot() throws {
        let box = try Sandbox()
        defer { box.remove() }
        #expect(throws: NvmetBackendError.self) {
            try NvmetBackend(root: box.root + "/absent", ledgerPath: box.ledger, logger: Logger(label: "test.nvmet"))
        }
    }
}

extension EndpointConfiguration {
    /// The configuration as read back from a fresh kernel target: the default model and
    /// requirements filled in.
    fileprivate var withKernelDefaults: EndpointConfiguration {
        var copy = self
        for index in copy.ports.indices { copy.ports[index].transportRequirements = "not specified" }
        for index in copy.subsystems.indices { copy.subsystems[index].model = copy.subsystems[index].model ?? "Linux" }
        return copy
    }
}

@Suite("nvmet backend: hosts' DH-HMAC-CHAP keys")
struct NvmetHostKeyTests {
    typealias S = NvmetSample
    static let credential = "demfabric_0123456789abcdef0123456789abcdef"

    static func desired(
        _ key: DHCHAPSecret,
        controller: DHCHAPSecret? = nil,
        credential: String = credential
    )
        -> EndpointConfiguration
    {
        var desired = S.desired
        desired.hostKeys = [
            EndpointHostKey(
                hostNQN: S.host,
                sealedSecret: HostKeySeal.seal(key, hostNQN: S.host, credential: credential),
                sealedControllerSecret: controller.map {
                    HostKeySeal.seal($0, hostNQN: S.host, credential: credential)
                },
                hash: "sha384",
                group: "ffdhe2048"
            )
        ]
        return desired
    }

    @Test("the keys are written before the host is allowed anywhere; a changed key is drift named without its value")
    func provisions() throws {
        let box = try Sandbox()
        defer { box.remove() }
        let backend = try box.backend(credential: Self.credential)
        let key = try DHCHAPSecret.generate()
        let controller = try DHCHAPSecret.generate()
        let plan = backend.plan(Self.desired(key, controller: controller))
        let operations = plan.operations.map(\.description)
        let keyWrite = try #require(operations.firstIndex { $0.contains("hosts/\(S.host)/dhchap_key") })
        let link = try #require(operations.firstIndex { $0.contains("allowed_hosts/\(S.host)") })
        #expect(keyWrite < link)
        #expect(!operations.joined().contains(key.text), "no secret in an operation's description")
        let result = backend.reconcile(Self.desired(key, controller: controller))
        #expect(result.errors.isEmpty, "\(result.errorLines)")
        #expect(result.drift.isEmpty)
        #expect(box.read("hosts/\(S.host)/dhchap_key") == key.text)
        #expect(box.read("hosts/\(S.host)/dhchap_ctrl_key") == controller.text)
        #expect(box.read("hosts/\(S.host)/dhchap_hash") == "hmac(sha384)")
        #expect(box.read("hosts/\(S.host)/dhchap_dhgroup") == "ffdhe2048")
        #expect(backend.reconcile(Self.desired(key, controller: controller)).operationCount == 0)

        // Someone writes another key by hand: drift (named, not shown), and the next reconcile mends it.
        try box.handEdit("hosts/\(S.host)/dhchap_key", try DHCHAPSecret.generate().text)
        let drift = backend.check(Self.desired(key, controller: controller)).drift
        #expect(drift.map(\.object) == ["hosts/\(S.host)/dhchap_key"])
        #expect(drift.first?.expected == "(secret)")
        #expect(drift.first?.actual == "another secret")
        _ = backend.reconcile(Self.desired(key, controller: controller))
        #expect(box.read("hosts/\(S.host)/dhchap_key") == key.text)
    }

    @Test("a key sealed under another credential is refused and nothing is applied")
    func wrongCredential() throws {
        let box = try Sandbox()
        defer { box.remove() }
        let backend = try box.backend(credential: Self.credential)
        let result = backend.reconcile(Self.desired(try DHCHAPSecret.generate(), credential: "another fabric"))
        #expect(result.errors.first?.path == "HostKeys[0].SealedSecret")
        #expect(result.operationCount == 0)
        #expect(!box.exists("hosts/\(S.host)"))
    }
}
