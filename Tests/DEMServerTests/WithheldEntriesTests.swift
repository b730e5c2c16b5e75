import AsyncHTTPClient
import DEMCore
import DEMServer
import Foundation
import Logging
import NIOCore
import Testing

/// The README's first example: a LocalMgmt target whose discovery controller dem cannot reach.
/// Its entries are withheld, and the host's page says which and why; with `--unreachable keep`
/// they are served from the model.
@Suite("withheld entries are explained", .serialized)
struct WithheldEntriesTests {
    static let shared = "nqn.2024-01.io.example:shared"
    static let restricted = "nqn.2024-01.io.example:private"

    func start(_ policy: UnreachablePolicy) async throws -> (DEMApplication, Task<Void, any Error>, Int) {
        let directory = temporaryDirectory("dem-withheld")
        var options = DEMOptions(
            uniqueNQN: "nqn.2014-08.org.nvmexpress:uuid:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f4",
            dataDirectory: directory
        )
        options.port = 0
        options.apiPort = 0
        options.coalescing = .milliseconds(5)
        options.probeInterval = .milliseconds(200)
        options.unreachablePolicy = policy
        options.unreachableAfter = .zero
        var logger = Logger(label: "withheld-test")
        logger.logLevel = .critical
        let application = try await DEMApplication.build(options: options, logger: logger, signals: [])
        let task = Task { try await application.serviceGroup.run() }
        let closed = try TakenPort().freed()
        try await application.service.change(.updated, path: "/test") { fabric throws(ModelError) in
            try fabric.addTarget(FabricTarget(alias: "t1"))
            try fabric.setPort(
                target: "t1",
                FabricPort(
                    portID: 1,
                    transportType: "tcp",
                    addressFamily: "ipv4",
                    transportAddress: "127.0.0.1",
                    transportServiceIdentifier: closed
                )
            )
            try fabric.addSubsystem(target: "t1", FabricSubsystem(nqn: Self.shared))
            try fabric.addSubsystem(target: "t1", FabricSubsystem(nqn: Self.restricted, allowAnyHost: false))
            try fabric.addHost(FabricHost(alias: "h1", nqn: TestHosts.a))
            _ = try fabric.allowHost(target: "t1", subsystem: Self.restricted, host: "h1")
        }
        return (application, task, await application.apiAddress.port())
    }

    func get(_ application: DEMApplication, port: Int, _ path: String) async throws -> [String: Any] {
        let token = try String(contentsOfFile: application.adminToken.path, encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 1 << 20)
        return (try JSONSerialization.jsonObject(with: Data(buffer: body))) as? [String: Any] ?? [:]
    }

    @Test(
        "withdraw (the default): h1's page lists both entries as withheld, each with the reason; list target counts them"
    )
    func withheldWithReasons() async throws {
        let (application, task, port) = try await start(.withdraw)
        defer { task.cancel() }
        #expect(try await eventually { application.monitor.status("t1")?.state == .unreachable })
        let page = try await get(application, port: port, "/host/h1/logpage")
        let records = page["records"] as? [[String: Any]] ?? []
        #expect(records.allSatisfy { $0["subtype"] as? String == "current discovery subsystem" }, "\(records)")
        let withheld = page["withheld"] as? [[String: Any]] ?? []
        #expect(Set(withheld.compactMap { $0["subnqn"] as? String }) == [Self.shared, Self.restricted])
        for entry in withheld {
            #expect(entry["target"] as? String == "t1")
            let reason = entry["reason"] as? String ?? ""
            #expect(reason.contains("dem cannot read target \"t1\"'s own discovery controller"), "\(reason)")
            #expect(reason.contains("Connection refused"), "\(reason)")
            #expect(reason.contains("--unreachable keep"), "\(reason)")
        }
        let targets = try await get(application, port: port, "/dem/targets")["Targets"] as? [[String: Any]] ?? []
        #expect(targets.first?["Withheld"] as? Int == 2)
        #expect(targets.first?["Serving"] as? Int == 0)
        await application.serviceGroup.triggerGracefulShutdown()
        try await task.value
    }

    @Test("--unreachable keep: the model's entries of the target dem cannot read are served, none withheld")
    func keepServesTheModel() async throws {
        let (application, task, port) = try await start(.keep)
        defer { task.cancel() }
        #expect(try await eventually { application.monitor.status("t1")?.state == .unreachable })
        let page = try await get(application, port: port, "/host/h1/logpage")
        let subsystems = (page["records"] as? [[String: Any]] ?? []).compactMap { $0["subnqn"] as? String }
        #expect(subsystems.contains(Self.shared))
        #expect(subsystems.contains(Self.restricted))
        #expect((page["withheld"] as? [Any])?.isEmpty == true)
        await application.serviceGroup.triggerGracefulShutdown()
        try await task.value
    }
}
