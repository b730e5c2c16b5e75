import DEMCore
import Foundation
import Logging
import Testing

@testable import DEMEndpoint

/// A built SPDK tree named by SPDK_DIR.
enum SPDKBuild {
    static var nvmfTarget: String? {
        guard let directory = ProcessInfo.processInfo.environment["SPDK_DIR"] else { return nil }
        let path = directory + "/build/bin/nvmf_tgt"
        return FileManager.default.isExecutableFile(atPath: path) ? path : nil
    }
}

/// The SPDK backend against a real SPDK nvmf_tgt, started here without hugepages, root-only
/// features or kernel modules (`--no-huge -s 1024 -u`). SPDK is built from its source, which CI
/// does not have: the suite runs when SPDK_DIR names a built SPDK tree (its build/bin/nvmf_tgt),
/// and is skipped otherwise (`SPDKContractTests` replays the recorded exchanges instead).
@Suite(
    .enabled(if: SPDKBuild.nvmfTarget != nil, "SPDK_DIR does not name a built SPDK (build/bin/nvmf_tgt)"),
    .serialized
)
struct SPDKRealTargetTests {

    final class Target {
        let directory: String
        let socket: String
        var process: Process?

        init() throws {
            directory =
                FileManager.default.temporaryDirectory.appendingPathComponent(
                    "spdk-real-\(UUID().uuidString.prefix(8))"
                ).path
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            socket = directory + "/spdk.sock"
            try start()
        }

        func start() throws {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: SPDKBuild.nvmfTarget!)
            process.arguments = ["--no-huge", "-s", "1024", "-u", "-r", socket]
            var environment = ProcessInfo.processInfo.environment
            let library = ProcessInfo.processInfo.environment["SPDK_DIR"]! + "/build/lib"
            environment["LD_LIBRARY_PATH"] = library + (environment["LD_LIBRARY_PATH"].map { ":" + $0 } ?? "")
            process.environment = environment
            process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
            process.standardError = FileHandle(forWritingAtPath: "/dev/null")
            try process.run()
            self.process = process
            let client = SPDKRPCClient(socketPath: socket, timeout: .seconds(2))
            for _ in 0..<200 {
                if (try? client.call("spdk_get_version")) != nil { return }
                usleep(50_000)
            }
            throw SPDKRPCError.unreachable(socket: socket, reason: "nvmf_tgt did not start in 10 s")
        }

        /// A client of its socket and a backend with a ledger in its folder.
        func backend() throws -> (SPDKRPCClient, SPDKBackend) {
            let client = SPDKRPCClient(socketPath: socket)
            let backend = try SPDKBackend(
                client: client,
                ledgerPath: directory + "/owned-spdk.json",
                logger: Logger(label: "test")
            )
            return (client, backend)
        }

        func stop() {
            process?.terminate()
            process?.waitUntilExit()
            process = nil
        }

        deinit {
            stop()
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    static let port = 4600 + Int(getpid() % 200)

    static var desired: EndpointConfiguration {
        var desired = SPDKContractTests.desired
        desired.ports[0].transportServiceIdentifier = port
        desired.subsystems[0].serial = "DEM0001"
        desired.subsystems[0].model = "DEM test"
        desired.subsystems[0].namespaces = [
            EndpointNamespace(namespaceID: 1, devicePath: "/spdk/malloc/M2/1M"),
            EndpointNamespace(
                namespaceID: 3,
                devicePath: "/spdk/null/N3/2M",
                uuid: "2cd6d322-06fc-4164-b218-3fbb4bcc276f"
            ),
        ]
        return desired
    }

    /// A bdev and a subsystem made by someone else (as SPDK's rpc.py would).
    static func makeTheirs(_ client: SPDKRPCClient) throws {
        _ = try client.call(
            "bdev_malloc_create",
            .members([("num_blocks", .int(2048)), ("block_size", .int(512)), ("name", .string("theirs"))])
        )
        _ = try client.call(
            "nvmf_create_subsystem",
            .members([("nqn", .string("nqn.2016-06.io.spdk:theirs")), ("allow_any_host", .bool(true))])
        )
    }

    @Test func appliesIdempotentlyLeavesOthersAloneAndSurvivesARestart() throws {
        let target = try Target()
        let (client, backend) = try target.backend()
        // Someone else's subsystem and bdev, there before.
        try Self.makeTheirs(client)

        let first = backend.reconcile(Self.desired)
        #expect(first.errors == [])
        #expect(first.drift == [], "\(first.drift)")
        let state = try backend.state()
        let made = try #require(state.subsystems.first { $0.nqn == SPDKContractTests.subsystem })
        #expect(made.serial == "DEM0001")
        #expect(made.model == "DEM test")
        #expect(made.allowAnyHost == false)
        #expect(made.hosts == [SPDKContractTests.host])
        #expect(made.namespaces.map(\.nsid) == [1, 3])
        #expect(made.namespaces.first { $0.nsid == 3 }?.uuid == "2cd6d322-06fc-4164-b218-3fbb4bcc276f")
        #expect(made.listeners.map(\.serviceID) == ["\(Self.port)"])
        #expect(state.discoveryListeners.map(\.serviceID).contains("\(Self.port)"))
        #expect(first.live.first { $0.nqn == SPDKContractTests.subsystem }?.ports == [1])

        // Again: nothing to do.
        let second = backend.reconcile(Self.desired)
        #expect(second.operations == [])
        #expect(second.errors == [])

        // A change: the host list opened, a namespace gone.
        var changed = Self.desired
        changed.subsystems[0].allowAnyHost = true
        changed.subsystems[0].hosts = []
        changed.subsystems[0].namespaces.removeLast()
        let third = backend.reconcile(changed)
        #expect(third.errors == [])
        #expect(third.drift == [])
        #expect(backend.ownership.bdevs == ["M2": "malloc"])

        // nvmf_tgt restarts with nothing: noticed, applied again.
        target.stop()
        #expect(!backend.lostState())
        #expect(backend.check(changed).drift.first?.object.hasPrefix("SPDK target") == true)
        try target.start()
        #expect(backend.lostState())
        let again = backend.reconcile(changed)
        #expect(again.errors == [])
        #expect(again.drift == [])
        #expect(try backend.state().subsystems.contains { $0.nqn == SPDKContractTests.subsystem })

        // Someone else's again, then the desired state emptied: only dem-em's objects go.
        try Self.makeTheirs(client)
        let removed = backend.reconcile(EndpointConfiguration())
        #expect(removed.errors == [])
        let after = try backend.state()
        #expect(after.storageSubsystems.map(\.nqn) == ["nqn.2016-06.io.spdk:theirs"])
        #expect(after.bdevs.map(\.name) == ["theirs"])
        #expect(after.discoveryListeners == [])
        #expect(backend.ownership.isEmpty)
    }

    @Test func aMissingBdevAndAFileThroughAIO() throws {
        let target = try Target()
        let (client, backend) = try target.backend()
        let file = target.directory + "/disk.img"
        FileManager.default.createFile(atPath: file, contents: Data(count: 1 << 20))
        var desired = Self.desired
        desired.subsystems[0].namespaces = [
            EndpointNamespace(namespaceID: 1, devicePath: file),
            EndpointNamespace(namespaceID: 2, devicePath: "/spdk/bdev/nosuch"),
        ]
        let result = backend.reconcile(desired)
        #expect(result.errors.contains { $0.contains("bdev nosuch: the target has no such bdev") })
        #expect(result.drift.contains { $0.object == "bdev nosuch" })
        let made = try #require(try backend.state().subsystems.first { $0.nqn == SPDKContractTests.subsystem })
        #expect(made.namespaces.map(\.bdev) == [SPDKDevice.aioName(file)])
        let removed = backend.reconcile(EndpointConfiguration())
        #expect(removed.errors == [])
        #expect(try backend.state().bdevs.isEmpty)
    }

    @Test func anNVMeDriveThatIsNotThereIsAnErrorNamingItAndNothingElseIsLost() throws {
        // nvmf_tgt runs without PCI (-u): the attach is refused as on a machine without the drive.
        let target = try Target()
        let (_, backend) = try target.backend()
        var desired = Self.desired
        desired.subsystems[0].namespaces.append(
            EndpointNamespace(namespaceID: 2, devicePath: "/spdk/nvme/0000:01:00.0/n1")
        )
        let result = backend.reconcile(desired)
        #expect(
            result.errors.contains {
                $0.hasPrefix(
                    "NVMe controller dem_0000_01_00_0 (0000:01:00.0): bdev_nvme_attach_controller: SPDK error -19 (errno 19)"
                )
            },
            "\(result.errors)"
        )
        #expect(
            result.errors.contains {
                $0.hasPrefix("skipped: nvmf_subsystem_add_ns subsystem \(SPDKContractTests.subsystem) namespace 2")
            }
        )
        #expect(backend.ownership.controllers.isEmpty)
        // The rest is served.
        let made = try #require(try backend.state().subsystems.first { $0.nqn == SPDKContractTests.subsystem })
        #expect(made.namespaces.map(\.nsid) == [1, 3])
        #expect(result.drift.contains { $0.object == "NVMe controller dem_0000_01_00_0" })
    }
}
