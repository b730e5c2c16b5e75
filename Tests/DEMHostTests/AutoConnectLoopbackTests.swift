import DEMCore
import DEMServer
import Foundation
import Logging
import Synchronization
import Testing

@testable import DEMHost

// dem-ac's AutoConnect against a real dem in this process, over NVMe/TCP on 127.0.0.1. The
// kernel's side is a stand-in: /dev/nvme-fabrics needs root and the nvme-fabrics module, so a
// device double "connects" by creating the controller's sysfs folder in a temporary tree, as
// the kernel would. The real device and sysfs are proven by the autoconnect scenario of
// scripts/interop.

/// Connects by adding `class/nvme-fabrics/ctl/nvmeN` (and `class/nvme/nvmeN/delete_controller`)
/// to a fake sysfs tree, and remembers what was written.
final class KernelDouble: FabricsDevice {
    let path = "/dev/nvme-fabrics (test double)"
    let sysfs: String
    private let state = Mutex<(next: Int, written: [String])>((0, []))

    init(sysfs: String) { self.sysfs = sysfs }

    var written: [String] { state.withLock { $0.written } }

    func exchange(_ options: String) throws(FabricsError) -> String {
        var fields: [String: String] = [:]
        for pair in options.split(separator: ",") {
            let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
            if parts.count == 2 { fields[parts[0]] = parts[1] }
        }
        let instance = state.withLock { state in
            state.written.append(options)
            defer { state.next += 1 }
            return state.next
        }
        let name = "nvme\(instance)"
        let directory = "\(sysfs)/class/nvme-fabrics/ctl/\(name)"
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let files = [
            "transport": fields["transport"] ?? "",
            "address": "traddr=\(fields["traddr"] ?? ""),trsvcid=\(fields["trsvcid"] ?? "")",
            "subsysnqn": fields["nqn"] ?? "", "hostnqn": fields["hostnqn"] ?? "", "state": "live",
        ]
        for (file, value) in files {
            try? (value + "\n").write(toFile: "\(directory)/\(file)", atomically: true, encoding: .utf8)
        }
        try? FileManager.default.createDirectory(
            atPath: "\(sysfs)/class/nvme/\(name)",
            withIntermediateDirectories: true
        )
        _ = FileManager.default.createFile(atPath: "\(sysfs)/class/nvme/\(name)/delete_controller", contents: nil)
        return "instance=\(instance),cntlid=1\n"
    }

    /// The controller connected for `nqn`, if any.
    func controller(for nqn: String) -> String? {
        let directory = "\(sysfs)/class/nvme-fabrics/ctl"
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] {
            let text = try? String(contentsOfFile: "\(directory)/\(name)/subsysnqn", encoding: .utf8)
            if text?.trimmingCharacters(in: .whitespacesAndNewlines) == nqn { return name }
        }
        return nil
    }

    func deleted(_ name: String) -> Bool {
        (try? String(contentsOfFile: "\(sysfs)/class/nvme/\(name)/delete_controller", encoding: .utf8)) == "1"
    }
}

func eventually(_ seconds: Double = 10, _ condition: @Sendable () async throws -> Bool) async throws -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}

@Suite("dem-ac against a real dem")
struct AutoConnectLoopbackTests {
    static let a = "nqn.2024-01.io.dem.test:a"
    static let b = "nqn.2024-01.io.dem.test:b"
    static let foreign = "nqn.2024-01.io.dem.test:by-hand"

    @Test(
        "connects what the page lists, connects an added subsystem on the change notice, disconnects only its own removed controller"
    )
    func autoConnect() async throws {
        try await run(removalGrace: .zero)
    }

    @Test("with a removal grace, a controller whose entry just went away stays connected")
    func removalGrace() async throws {
        try await run(removalGrace: .seconds(60))
    }

    func run(removalGrace: Duration) async throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        var options = DEMOptions(
            uniqueNQN: "nqn.2014-08.org.nvmexpress:uuid:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f3",
            dataDirectory: folder.path + "/dem"
        )
        options.port = 0
        options.apiPort = 0
        options.coalescing = .milliseconds(10)
        // The target's own discovery controller is not reachable here: serve the model's entries.
        options.unreachablePolicy = .keep
        var logger = Logger(label: "autoconnect-test")
        logger.logLevel = .warning
        let dem = try await DEMApplication.build(options: options, logger: logger, signals: [])
        let demTask = Task { try await dem.serviceGroup.run() }
        let port = dem.listeners.boundAddresses[0].port
        try await dem.service.change(.updated, path: "/test") { fabric throws(ModelError) in
            try fabric.addTarget(FabricTarget(alias: "t1"))
            try fabric.setPort(
                target: "t1",
                FabricPort(portID: 1, transportType: "tcp", addressFamily: "ipv4", transportAddress: "192.0.2.30")
            )
            try fabric.addSubsystem(target: "t1", FabricSubsystem(nqn: Self.a))
        }

        // A controller made by hand, for a subsystem dem does not list.
        try folder.file("sys/class/nvme-fabrics/ctl/nvme90/transport", "tcp\n")
        try folder.file("sys/class/nvme-fabrics/ctl/nvme90/address", "traddr=192.0.2.99,trsvcid=4420\n")
        try folder.file("sys/class/nvme-fabrics/ctl/nvme90/subsysnqn", Self.foreign + "\n")
        try folder.file("sys/class/nvme-fabrics/ctl/nvme90/state", "live\n")
        try folder.file("sys/class/nvme/nvme90/delete_controller", "")

        let kernel = KernelDouble(sysfs: folder.path + "/sys")
        let identity = try HostIdentity.load(hostNQN: HostSample.hostNQN, hostID: HostSample.hostID)
        let fleet = DiscoveryFleet(
            controllers: [
                DiscoveryControllerAddress(transportAddress: "127.0.0.1", transportServiceIdentifier: "\(port)")
            ],
            identity: identity,
            logger: logger
        )
        let autoConnect = AutoConnect(
            fleet: fleet,
            connector: FabricsConnector(device: kernel, sysfsRoot: folder.path + "/sys"),
            controllers: FabricsControllers(sysfsRoot: folder.path + "/sys"),
            ledgerFile: ConnectionLedgerFile(stateDirectory: folder.path + "/state"),
            host: HostConnectParameters(identity: identity, ctrlLossTimeout: -1),
            policy: .removed,
            removalGrace: removalGrace,
            logger: logger
        )
        let running = Task { await autoConnect.run() }

        #expect(try await eventually { kernel.controller(for: Self.a) != nil })
        let first = try #require(kernel.written.first)
        #expect(first.contains("nqn=\(Self.a)"))
        #expect(first.contains("transport=tcp,traddr=192.0.2.30,trsvcid=4420"))
        #expect(first.contains("hostnqn=\(HostSample.hostNQN)"))
        #expect(first.contains("ctrl_loss_tmo=-1"))

        // An added subsystem: the change notice, a re-read, a connect.
        try await dem.service.change(.updated, path: "/test") { fabric throws(ModelError) in
            try fabric.addSubsystem(target: "t1", FabricSubsystem(nqn: Self.b))
        }
        #expect(try await eventually { kernel.controller(for: Self.b) != nil })
        #expect(kernel.written.count == 2)

        // A removed subsystem: dem-ac's controller for it is deleted; the hand-made one is not.
        let controllerA = try #require(kernel.controller(for: Self.a))
        try await dem.service.change(.updated, path: "/test") { fabric throws(ModelError) in
            try fabric.deleteSubsystem(target: "t1", nqn: Self.a)
        }
        if removalGrace == .zero {
            #expect(try await eventually { kernel.deleted(controllerA) })
        } else {
            // The page no longer lists A (B is still served), yet A's controller stays.
            #expect(
                try await eventually { dem.catalog.discoveryLogPage(hostNQN: HostSample.hostNQN).entries.count == 2 }
            )
            try await Task.sleep(for: .seconds(1))
            #expect(!kernel.deleted(controllerA))
        }
        #expect(!kernel.deleted("nvme90"))
        #expect(kernel.written.count == 2)
        // The ledger says which controllers are dem-ac's.
        let ledger = try ConnectionLedgerFile(stateDirectory: folder.path + "/state").load()
        #expect(ledger.records.map(\.key.subsystemNQN).contains(Self.b))
        #expect(!ledger.records.map(\.key.subsystemNQN).contains(Self.foreign))

        await fleet.stop()
        await running.value
        await dem.serviceGroup.triggerGracefulShutdown()
        try await demTask.value
    }
}
