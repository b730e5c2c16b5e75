import DEMCore
import DEMServer
import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// A dem running in-process on 127.0.0.1 with a free port, with its entries in a temporary file.
final class RunningDEM: Sendable {
    let application: DEMApplication
    let entriesPath: String
    let port: Int
    let runTask: Task<Void, any Error>

    static func start(
        entries: String = #"{"entries": []}"#,
        controller: ((inout DiscoveryControllerConfiguration) -> Void)? = nil
    ) async throws -> RunningDEM {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dem-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent("entries.json").path
        try entries.write(toFile: path, atomically: true, encoding: .utf8)
        var options = DEMOptions(
            uniqueNQN: "nqn.2014-08.org.nvmexpress:uuid:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
            dataDirectory: directory.appendingPathComponent("data").path
        )
        options.port = 0
        options.apiPort = 0
        options.entriesPath = path
        options.pollInterval = .milliseconds(50)
        controller?(&options.controller)
        var logger = Logger(label: "dem-test")
        logger.logLevel = .warning
        let application = try await DEMApplication.build(options: options, logger: logger, signals: [])
        let port = application.listeners.boundAddresses[0].port
        let task = Task { try await application.serviceGroup.run() }
        return RunningDEM(application: application, entriesPath: path, port: port, runTask: task)
    }

    private init(application: DEMApplication, entriesPath: String, port: Int, runTask: Task<Void, any Error>) {
        self.application = application
        self.entriesPath = entriesPath
        self.port = port
        self.runTask = runTask
    }

    func writeEntries(_ json: String) throws {
        try json.write(toFile: entriesPath, atomically: true, encoding: .utf8)
    }

    func stop() async throws {
        await application.serviceGroup.triggerGracefulShutdown()
        try await runTask.value
    }

    func client(
        hostNQN: String = TestHosts.a,
        digests: NVMeTCPDigests = [],
        subsystemNQN: String = DEMCore.wellKnownDiscoveryNQN
    ) async throws -> DiscoveryClient {
        var options = DiscoveryClientOptions(hostNQN: hostNQN, hostIdentifier: Array(repeating: 7, count: 16))
        options.digests = digests
        options.subsystemNQN = subsystemNQN
        options.keepAliveTimeout = 30_000
        return try await DiscoveryClient.connect(host: "127.0.0.1", port: port, options: options)
    }
}

enum TestHosts {
    static let a = "nqn.2014-08.org.nvmexpress:uuid:aaaaaaaa-0000-4000-8000-000000000001"
    static let b = "nqn.2014-08.org.nvmexpress:uuid:bbbbbbbb-0000-4000-8000-000000000002"
}

/// An entries file with `count` TCP entries, each visible to `hosts` (nil: any host).
func entriesJSON(_ subsystems: [(nqn: String, hosts: [String]?)]) -> String {
    let items = subsystems.enumerated().map { index, subsystem -> String in
        var item =
            #"{"subnqn": "\#(subsystem.nqn)", "trtype": "tcp", "adrfam": "ipv4", "traddr": "10.0.0.\#(index % 250 + 1)", "trsvcid": "4420", "portid": \#(index + 1)"#
        if let hosts = subsystem.hosts {
            item += #", "hosts": [\#(hosts.map { "\"\($0)\"" }.joined(separator: ", "))]"#
        }
        return item + "}"
    }
    return #"{"entries": [\#(items.joined(separator: ",\n"))]}"#
}

/// Waits up to `seconds` for `condition`, polling; for events that happen asynchronously.
func eventually(_ seconds: Double = 5, _ condition: @Sendable () async throws -> Bool) async throws -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}
