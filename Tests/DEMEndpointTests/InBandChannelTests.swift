import AsyncHTTPClient
import DEMCore
import DEMEndpoint
import DEMServer
import Foundation
import NIOCore
import Testing

// dem-em's in-band management channel over real NVMe/TCP sockets on 127.0.0.1, driven by
// DEMCore's host side (the real kernel host is in the `inband` scenario of scripts/interop).

@Suite("dem-em's in-band management channel")
struct InBandChannelTests {
    static let dem = "nqn.2014-08.org.nvmexpress:uuid:dddddddd-0000-4000-8000-00000000000d"
    static let hostIdentifier = [UInt8](repeating: 0x5A, count: 16)

    static func options(_ credential: String, hostNQN: String = dem) -> InBandClientOptions {
        InBandClientOptions(
            hostNQN: hostNQN,
            hostIdentifier: hostIdentifier,
            subsystemNQN: InBandManagement.managementNQN(alias: "t1"),
            credential: credential
        )
    }

    static func status(of error: any Error) -> NVMeStatus? {
        guard case .commandFailed(_, let status) = error as? NVMeHostError else { return nil }
        return NVMeStatus(statusCodeType: status.statusCodeType, statusCode: status.statusCode)
    }

    @Test("a host without the credential cannot even finish the association; with it, it reads the inventory")
    func credentialRequired() async throws {
        let directory = try temporaryDirectory()
        let key = directory + "/fabric.key"
        let credential = try FabricCredential.ensure(path: key).secret
        let endpoint = try await RunningEndpoint.start(directory: directory + "/target", credentialPath: key)

        // No key at all: the Connect asks for DH-HMAC-CHAP, which a keyless host cannot do.
        var session = DiscoveryClientOptions(hostNQN: Self.dem, hostIdentifier: Self.hostIdentifier)
        session.subsystemNQN = InBandManagement.managementNQN(alias: "t1")
        await #expect {
            _ = try await DiscoveryClient.connect(host: "127.0.0.1", port: endpoint.inBandPort, options: session)
        } throws: { error in
            guard case .authenticationFailed(let why) = error as? NVMeHostError else { return false }
            return why.contains("requires DH-HMAC-CHAP")
        }

        // Another credential: dem-em refuses the response (AUTH_Failure1).
        await #expect {
            _ = try await InBandClient.connect(
                host: "127.0.0.1",
                port: endpoint.inBandPort,
                options: Self.options(String(credential.reversed()))
            )
        } throws: { error in
            guard case .authenticationFailed(let why) = error as? NVMeHostError else { return false }
            return why.contains("AUTH_Failure1")
        }

        // The right one.
        let client = try await InBandClient.connect(
            host: "127.0.0.1",
            port: endpoint.inBandPort,
            options: Self.options(credential)
        )
        let response = try await client.perform(InBandRequest(method: .get, path: "/inventory"))
        #expect(response.status == 200)
        let inventory = try JSONDecoder().decode(EndpointInventory.self, from: Data(response.body.readableBytesView))
        #expect(inventory.devices.isEmpty)
        await client.close()
        try await endpoint.stop()
    }

    @Test("a host NQN not on the allow-list is refused at Connect; dem says which flag lets it in and writes nothing")
    func allowList() async throws {
        let directory = try temporaryDirectory()
        let dem = try await RunningManager.start(directory: directory + "/dem")
        let key = directory + "/dem/fabric.key"
        let endpoint = try await RunningEndpoint.start(
            directory: directory + "/target",
            credentialPath: key,
            allowedHosts: ["nqn.2014-08.org.nvmexpress:uuid:eeeeeeee-0000-4000-8000-00000000000e"]
        )
        try await ManagedTargetTests.describe(dem, endpoint, .inBand)
        #expect(try await eventually { dem.state("t1") == .unreachable })
        let error = dem.application.monitor.status("t1")?.lastError ?? ""
        #expect(error.contains("--inband-allow-host"), "\(error)")
        #expect(dem.served(to: ManagedTargetTests.host).isEmpty)
        #expect(!FileManager.default.fileExists(atPath: endpoint.nvmetRoot + "/subsystems/\(ManagedTargetTests.open)"))
        // Directly: Connect Invalid Host.
        await #expect {
            _ = try await InBandClient.connect(
                host: "127.0.0.1",
                port: endpoint.inBandPort,
                options: Self.options(try FabricCredential.load(path: key))
            )
        } throws: { Self.status(of: $0) == .connectInvalidHost }
        try await endpoint.stop()
        try await dem.stop()
    }

    @Test(
        "requests and responses larger than a segment travel in pieces, and answers are the REST API's, byte for byte"
    )
    func sameAnswersAsREST() async throws {
        let directory = try temporaryDirectory()
        let key = directory + "/fabric.key"
        let credential = try FabricCredential.ensure(path: key).secret
        let endpoint = try await RunningEndpoint.start(directory: directory + "/target", credentialPath: key)
        let client = try await InBandClient.connect(
            host: "127.0.0.1",
            port: endpoint.inBandPort,
            options: {
                var options = Self.options(credential)
                options.sendSegmentLength = 4096
                options.receiveSegmentLength = 4096
                return options
            }()
        )
        // 120 subsystems: a request of several segments, a response of several more.
        let subsystems = (1...120).map { index in
            #"{"SUBNQN":"nqn.2024-01.io.dem.test:bulk-\#(index)","AllowAnyHost":1,"PortIDs":[1],"NSIDs":[{"NSID":1,"DevicePath":"/dev/nullb0"}]}"#
        }
        let body =
            #"{"Version":1,"PortIDs":[{"PORTID":1,"TRTYPE":"tcp","ADRFAM":"ipv4","TRADDR":"192.0.2.1","TRSVCID":4420}],"Subsystems":[\#(subsystems.joined(separator: ","))]}"#
        #expect(body.utf8.count > 3 * 4096)
        let applied = try await client.perform(
            InBandRequest(method: .put, path: "/config", body: ByteBuffer(string: body))
        )
        #expect(applied.status == 200, "\(String(buffer: applied.body))")
        #expect(applied.body.readableBytes > 4096)
        let status = try JSONDecoder().decode(EndpointStatus.self, from: Data(applied.body.readableBytesView))
        #expect(status.live.count == 120)
        #expect(endpoint.attribute("subsystems/nqn.2024-01.io.dem.test:bulk-120/namespaces/1/enable") == "1")

        // The same requests over HTTP and in-band get the same status and body.
        let requests: [(InBandRequest.Method, String, String?)] = [
            (.get, "/config", nil),
            (.put, "/config", #"{"Version":1,"Subsystems":[{"SUBNQN":"not an nqn"}]}"#),
            (.put, "/config", #"{"Version":1,"Bogus":1}"#),
            (.put, "/config", "not json"),
            (.get, "/no/such/route", nil),
            (.post, "/reconcile", nil),
        ]
        for (method, path, body) in requests {
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(endpoint.port)\(path)")
            request.method = .init(rawValue: method.name)
            request.headers.add(name: "Authorization", value: "Bearer \(credential)")
            if let body {
                request.body = .bytes(ByteBuffer(string: body))
                request.headers.add(name: "Content-Type", value: "application/json")
            }
            let http = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
            let httpBody = try await http.body.collect(upTo: 1 << 20)
            let inBand = try await client.perform(
                InBandRequest(method: method, path: path, body: body.map { ByteBuffer(string: $0) } ?? ByteBuffer())
            )
            #expect(inBand.status == Int(http.status.code), "\(method.name) \(path)")
            // Status bodies carry the time of the check; compare the rest.
            if path == "/reconcile" { continue }
            #expect(String(buffer: inBand.body) == String(buffer: httpBody), "\(method.name) \(path)")
        }
        await client.close()
        try await endpoint.stop()
    }
}
