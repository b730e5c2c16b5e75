import DEMCore
import Foundation
import Synchronization
import Testing

@testable import DEMHost

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Stands in for `/dev/nvme-fabrics`: records what is written and answers a canned reply. The
/// real device needs root and the nvme-fabrics module; it is exercised in the VM harness.
final class RecordingFabricsDevice: FabricsDevice {
    let path = "/dev/nvme-fabrics (test double)"
    private let reply: Result<String, FabricsError>
    private let written = Mutex<[String]>([])

    init(reply: Result<String, FabricsError>) {
        self.reply = reply
    }

    var writes: [String] { written.withLock { $0 } }

    func exchange(_ options: String) throws(FabricsError) -> String {
        written.withLock { $0.append(options) }
        return try reply.get()
    }
}

@Suite("fabrics connector")
struct FabricsConnectorTests {
    private let minimal = ConnectOptions(
        transport: "tcp",
        traddr: "10.0.2.15",
        trsvcid: "4420",
        nqn: HostSample.volumeA,
        hostNQN: HostSample.hostNQN,
        hostID: HostSample.hostID
    )

    @Test("the options string, with only the required options")
    func minimalOptions() {
        #expect(
            minimal.optionsString
                == "nqn=nqn.2024-01.io.dem:vol-a,transport=tcp,traddr=10.0.2.15,trsvcid=4420,"
                + "hostnqn=nqn.2014-08.org.nvmexpress:uuid:3a8b2c1d-0000-4000-8000-00000000000a,"
                + "hostid=3a8b2c1d-0000-4000-8000-00000000000a"
        )
    }

    @Test("the options string, with every option, in order")
    func fullOptions() {
        var options = minimal
        options.transport = "rdma"
        options.traddr = "fd00::15"
        options.hostTraddr = "fd00::1"
        options.hostIface = "eth1"
        options.ctrlLossTimeout = -1
        options.keepAliveTimeout = 5
        options.nrIOQueues = 4
        #expect(
            options.optionsString
                == "nqn=nqn.2024-01.io.dem:vol-a,transport=rdma,traddr=fd00::15,trsvcid=4420,"
                + "hostnqn=nqn.2014-08.org.nvmexpress:uuid:3a8b2c1d-0000-4000-8000-00000000000a,"
                + "hostid=3a8b2c1d-0000-4000-8000-00000000000a,host_traddr=fd00::1,host_iface=eth1,"
                + "ctrl_loss_tmo=-1,keep_alive_tmo=5,nr_io_queues=4"
        )
    }

    @Test("DH-HMAC-CHAP secrets go to the kernel last, and never into what is encoded or described")
    func secrets() throws {
        var options = minimal
        let key = "DHHC-1:00:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+KfiaR:"
        let controller = "DHHC-1:00:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj/jBqb2:"
        options.dhchapSecret = try DHCHAPSecret(parsing: key)
        options.dhchapControllerSecret = try DHCHAPSecret(parsing: controller)
        #expect(options.optionsString.hasSuffix(",dhchap_secret=\(key),dhchap_ctrl_secret=\(controller)"))
        let encoded = String(decoding: try JSONEncoder().encode(options), as: UTF8.self)
        #expect(!encoded.contains("DHHC"))
        #expect(!"\(options)".contains("AAECAwQF"))
        var identity = HostIdentity(
            hostNQN: try NQN(HostSample.hostNQN),
            hostIdentifier: Array(repeating: 1, count: 16)
        )
        identity.dhchapSecret = options.dhchapSecret
        let parameters = HostConnectParameters(identity: identity)
        #expect(parameters.dhchapSecret == options.dhchapSecret)
        #expect(identity.clientOptions.hostKey == options.dhchapSecret)
    }

    @Test("an empty service ID and host ID are left out")
    func emptyOptionalFields() {
        var options = minimal
        options.trsvcid = ""
        options.hostID = ""
        #expect(
            options.optionsString
                == "nqn=nqn.2024-01.io.dem:vol-a,transport=tcp,traddr=10.0.2.15,"
                + "hostnqn=nqn.2014-08.org.nvmexpress:uuid:3a8b2c1d-0000-4000-8000-00000000000a"
        )
    }

    @Test("connect writes the options once and reads the controller's name back")
    func connects() async throws {
        let device = RecordingFabricsDevice(reply: .success("instance=3,cntlid=1\n"))
        let outcome = try await FabricsConnector(device: device).connect(minimal)
        #expect(outcome == .connected(ConnectedController(instance: 3, controllerID: 1)))
        if case .connected(let controller) = outcome { #expect(controller.name == "nvme3") }
        #expect(device.writes == [minimal.optionsString])
    }

    @Test("EALREADY on the write is reported as already connected, not as a failure")
    func alreadyConnected() async throws {
        let device = RecordingFabricsDevice(
            reply: .failure(.system(operation: "write", path: "/dev/nvme-fabrics", code: EALREADY))
        )
        let outcome = try await FabricsConnector(device: device).connect(minimal)
        #expect(outcome == .alreadyConnected)
        #expect(device.writes.count == 1)
    }

    @Test("other errors are thrown with their errno")
    func otherErrors() async {
        let refused = FabricsError.system(operation: "write", path: "/dev/nvme-fabrics", code: ECONNREFUSED)
        let device = RecordingFabricsDevice(reply: .failure(refused))
        await #expect(throws: refused) { try await FabricsConnector(device: device).connect(minimal) }
        #expect(refused.description.contains("ECONNREFUSED"))

        // EALREADY from open is not the kernel's duplicate check.
        let openFailure = FabricsError.system(operation: "open", path: "/dev/nvme-fabrics", code: EALREADY)
        let opening = RecordingFabricsDevice(reply: .failure(openFailure))
        await #expect(throws: openFailure) { try await FabricsConnector(device: opening).connect(minimal) }
    }

    @Test("an answer without an instance number is an error")
    func unexpectedAnswer() async {
        let device = RecordingFabricsDevice(reply: .success("cntlid=1\n"))
        await #expect(throws: FabricsError.unexpectedAnswer("cntlid=1\n")) {
            try await FabricsConnector(device: device).connect(minimal)
        }
        #expect(
            ConnectedController.parse("instance=12,cntlid=7\n") == ConnectedController(instance: 12, controllerID: 7)
        )
        #expect(ConnectedController.parse("instance=2") == ConnectedController(instance: 2))
        #expect(ConnectedController.parse("instance=-1,cntlid=1") == nil)
        #expect(ConnectedController.parse("") == nil)
    }

    @Test("options that would inject other options are refused before the device is touched")
    func refusesInjection() async {
        let device = RecordingFabricsDevice(reply: .success("instance=1,cntlid=1"))
        var options = minimal
        options.traddr = "10.0.2.15,host_iface=eth9"
        await #expect(throws: FabricsError.invalidOption(field: "traddr", value: "10.0.2.15,host_iface=eth9")) {
            try await FabricsConnector(device: device).connect(options)
        }
        options = minimal
        options.nqn = "nqn.x\nduplicate_connect"
        #expect(options.invalidField?.name == "nqn")
        options = minimal
        options.hostNQN = ""
        #expect(options.invalidField?.name == "hostnqn")
        options = minimal
        options.hostIface = "eth0,"
        #expect(options.invalidField?.name == "host_iface")
        #expect(minimal.invalidField == nil)
        #expect(device.writes.isEmpty)
    }

    @Test("the real device on a regular file: the options are written in one piece, but nothing answers")
    func characterDeviceOnAFile() async throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        try folder.file("nvme-fabrics", "")
        let connector = FabricsConnector(device: FabricsCharacterDevice(path: folder.path + "/nvme-fabrics"))
        await #expect(throws: FabricsError.unexpectedAnswer("")) { try await connector.connect(minimal) }
        #expect(folder.read("nvme-fabrics") == minimal.optionsString)

        let missing = FabricsConnector(device: FabricsCharacterDevice(path: folder.path + "/absent"))
        await #expect(throws: FabricsError.system(operation: "open", path: folder.path + "/absent", code: ENOENT)) {
            try await missing.connect(minimal)
        }
    }

    @Test("disconnect writes 1 to the controller's delete_controller")
    func disconnects() async throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        try folder.file("class/nvme/nvme3/delete_controller", "")
        let connector = FabricsConnector(device: RecordingFabricsDevice(reply: .success("")), sysfsRoot: folder.path)
        #expect(try await connector.disconnect(controller: "nvme3") == .disconnected)
        #expect(folder.read("class/nvme/nvme3/delete_controller") == "1")
        #expect(try await connector.disconnect(controller: "nvme4") == .notFound)
        await #expect(throws: FabricsError.invalidControllerName("../nvme3")) {
            try await connector.disconnect(controller: "../nvme3")
        }
    }
}
