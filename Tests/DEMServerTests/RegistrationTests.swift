import DEMCore
import DEMServer
import Foundation
import HummingbirdTesting
import Logging
import NIOCore
import Testing

/// Discovery registrations (TP8010) from the command to the store, the REST API and adoption.
@Suite("Discovery registrations")
struct RegistrationTests {
    static let guestNQN = "nqn.2014-08.org.nvmexpress:uuid:c9773de9-fb1c-42ba-855e-34e5c63e6676"
    static let guestID: [UInt8] = [
        0xC9, 0x77, 0x3D, 0xE9, 0xFB, 0x1C, 0x42, 0xBA, 0x85, 0x5E, 0x34, 0xE5, 0xC6, 0x3E, 0x66, 0x76,
    ]

    /// What nvme-cli's `nvme dim --task register` sends: an extended entry with an empty TRADDR.
    static func information(
        nqn: String = guestNQN,
        type: DiscoveryEntityType = .host,
        name: String = "guest",
        address: String = "",
        service: String = ""
    ) -> DiscoveryInformation {
        DiscoveryInformation(
            format: .extended,
            entityType: type,
            entityIdentifier: nqn,
            entityName: name,
            entityVersion: "Linux 6.1.0-28-amd64",
            entries: [
                DiscoveryInformationEntry(
                    entry: DiscoveryLogEntry(
                        transportType: .tcp,
                        addressFamily: .ipv4,
                        subsystemType: .nvm,
                        portIdentifier: 0,
                        transportServiceIdentifier: service,
                        subsystemNQN: nqn,
                        transportAddress: address
                    ),
                    hostIdentifier: type == .host ? guestID : nil,
                    symbolicName: name
                )
            ]
        )
    }

    static func context(_ nqn: String = guestNQN) -> DiscoveryHostContext {
        DiscoveryHostContext(
            hostNQN: nqn,
            hostIdentifier: guestID,
            subsystemNQN: "nqn.2014-08.org.nvmexpress:uuid:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
            remoteAddress: "192.0.2.7:51000"
        )
    }

    @Test(
        "register over NVMe/TCP to a running dem: listed by REST with NQN, host name and address; deregister drops it"
    )
    func overTheWire() async throws {
        let dem = try await RunningDEM.start()
        let client = try await dem.client(hostNQN: Self.guestNQN, subsystemNQN: dem.application.catalog.uniqueNQN)
        func send(_ task: DiscoveryInformationCommand.Task, _ data: ByteBuffer) async throws -> NVMeStatus {
            do {
                let result = try await client.execute(
                    "DIM",
                    DiscoveryInformationCommand.submissionQueueEntry(
                        task: task,
                        commandIdentifier: 0,
                        length: UInt32(data.readableBytes)
                    ),
                    data: data
                )
                return result.completion.status
            } catch NVMeHostError.commandFailed(_, let status) {
                return status
            }
        }
        #expect(try await send(.register, Self.information().encoded()) == .success)
        let registrations = dem.application.service.registrations
        #expect(registrations.map(\.nqn) == [Self.guestNQN])
        #expect(registrations.first?.name == "guest")
        #expect(registrations.first?.addresses.first?.address == "127.0.0.1", "the empty TRADDR is the socket's")
        // Bad data: 2Fh, and the connection serves on.
        var truncated = Self.information().encoded()
        truncated.moveWriterIndex(to: 1100)
        #expect(try await send(.register, truncated) == NVMeStatus.invalidDiscoveryInformation.withDoNotRetry)
        #expect(try await client.readDiscoveryLogPage().entries.count >= 1)
        #expect(try await send(.deregister, Self.information().encoded()) == .success)
        #expect(dem.application.service.registrations.isEmpty)
        await client.close()
        try await dem.stop()
    }

    @Test("registrations survive a restart; an update keeps the first time; the limit gives 32h; events name them")
    func durable() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dem-reg-\(UUID().uuidString)")
            .path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var logger = Logger(label: "dem-registration-test")
        logger.logLevel = .critical
        let path = directory + "/dem.sqlite"
        do {
            let service = try FabricService(store: SQLiteFabricStore(path: path), logger: logger, registrationLimit: 2)
            {
                _ in
            }
            let (events, cancel) = service.subscribe()
            defer { cancel() }
            let request = DiscoveryInformationRequest(task: .register, information: Self.information())
            #expect(await service.discoveryInformation(request, host: Self.context()) == .success)
            let first = try #require(service.registrations.first)
            var update = request
            update.task = .update
            update.information.entityVersion = "Linux 6.12"
            #expect(await service.discoveryInformation(update, host: Self.context()) == .success)
            let updated = try #require(service.registrations.first)
            #expect(updated.registered == first.registered)
            #expect(updated.version == "Linux 6.12")
            let other = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-000000000002"
            let third = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-000000000003"
            let second = DiscoveryInformationRequest(task: .register, information: Self.information(nqn: other))
            #expect(await service.discoveryInformation(second, host: Self.context(other)) == .success)
            let full = DiscoveryInformationRequest(task: .register, information: Self.information(nqn: third))
            #expect(
                await service.discoveryInformation(full, host: Self.context(third))
                    == NVMeStatus.insufficientDiscoveryResources.withDoNotRetry
            )
            var seen: [String] = []
            for await event in events {
                seen.append("\(event.action.rawValue) \(event.path)")
                if seen.count == 3 { break }
            }
            #expect(
                seen == [
                    "created /registration/\(Self.guestNQN)", "updated /registration/\(Self.guestNQN)",
                    "created /registration/\(other)",
                ]
            )
        }
        let reopened = try FabricService(store: SQLiteFabricStore(path: path), logger: logger) { _ in }
        #expect(
            reopened.registrations.map(\.nqn).sorted()
                == [Self.guestNQN, "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-000000000002"].sorted()
        )
        #expect(reopened.registrations.first { $0.nqn == Self.guestNQN }?.version == "Linux 6.12")
        let deregister = DiscoveryInformationRequest(task: .deregister, information: Self.information())
        #expect(await reopened.discoveryInformation(deregister, host: Self.context()) == .success)
        let again = try FabricService(store: SQLiteFabricStore(path: path), logger: logger) { _ in }
        #expect(
            again.registrations.map(\.nqn) == ["nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-000000000002"]
        )
    }

    @Test(
        "REST: registered and seen hosts listed; a host adopted by its name in one call; a DDC adopted as a local target"
    )
    func adoption() async throws {
        let fixture = try await APIFixture.make()
        let token = fixture.adminToken
        let catalog = fixture.feed.catalog
        catalog.setRegistrar(fixture.service)
        let request = DiscoveryInformationRequest(task: .register, information: Self.information())
        #expect(await catalog.discoveryInformation(request, host: Self.context()) == .success)
        // A host that connects and never registers is seen.
        let lurker = "nqn.2014-08.org.nvmexpress:uuid:dddddddd-0000-4000-8000-000000000004"
        let token0 = catalog.controllerCreated(Self.context(lurker)) {}
        catalog.controllerRemoved(token0)
        _ = catalog.controllerCreated(Self.context()) {}
        let ddc = "nqn.2014-08.org.nvmexpress.discovery:ddc-t9"
        let ddcRequest = DiscoveryInformationRequest(
            task: .register,
            information: Self.information(
                nqn: ddc,
                type: .directDiscoveryController,
                name: "t9",
                address: "10.0.0.9",
                service: "8009"
            )
        )
        #expect(await catalog.discoveryInformation(ddcRequest, host: Self.context(hostA)) == .success)
        try await fixture.test { client in
            let list = try await client.call(.get, "/registration", token: token)
            #expect(list.status == .ok)
            let registrations = list.json["Registrations"] as? [[String: Any]] ?? []
            #expect(registrations.compactMap { $0["NQN"] as? String }.sorted() == [Self.guestNQN, ddc].sorted())
            let guest = registrations.first { $0["NQN"] as? String == Self.guestNQN } ?? [:]
            #expect(guest["Name"] as? String == "guest")
            #expect(guest["Type"] as? String == "host")
            #expect(guest["HOSTID"] as? String == "c9773de9-fb1c-42ba-855e-34e5c63e6676")
            #expect(guest["Adopted"] == nil)
            let seen = list.json["Seen"] as? [[String: Any]] ?? []
            #expect(seen.compactMap { $0["NQN"] as? String } == [lurker], "registered hosts are not listed again")

            // Adopted by its host name: no NQN typed.
            let adopted = try await client.call(.post, "/registration/guest/adopt", token: token)
            #expect(adopted.status == .created, "\(adopted.body)")
            let host = try await client.call(.get, "/host/guest", token: token)
            #expect(host.status == .ok)
            #expect(host.body.contains(Self.guestNQN))
            #expect(host.body.contains("c9773de9-fb1c-42ba-855e-34e5c63e6676"))
            let after = try await client.call(.get, "/registration/guest", token: token)
            #expect(after.json["Adopted"] as? String == "guest")
            // Adopting again is a conflict naming the field.
            let twice = try await client.call(
                .post,
                "/registration/guest/adopt",
                token: token,
                body: #"{"Alias":"g2"}"#
            )
            #expect(twice.status == .conflict)
            #expect(twice.json["field"] as? String == "HOSTNQN")
            // A seen host is adopted by its NQN, with the alias given.
            let lurk = try await client.call(
                .post,
                "/registration/\(lurker)/adopt",
                token: token,
                body: #"{"Alias":"lurker"}"#
            )
            #expect(lurk.status == .created, "\(lurk.body)")
            // A DDC becomes a locally managed target whose discovery controller is where it
            // registered; it has no NVM port until dem reads its page.
            let target = try await client.call(.post, "/registration/t9/adopt", token: token)
            #expect(target.status == .created, "\(target.body)")
            let t9 = try fixture.service.fabric.target("t9")
            #expect(t9.managementMode == .local)
            #expect(t9.interface?.transportAddress == "10.0.0.9")
            #expect(t9.interface?.transportServiceIdentifier == 8009)
            #expect(t9.ports.isEmpty)
            let ddcView = try await client.call(.get, "/registration/t9", token: token)
            #expect(ddcView.json["Adopted"] as? String == "t9")
            // Unknown names, bad bodies, read-only tokens.
            #expect(try await client.call(.post, "/registration/nobody/adopt", token: token).status == .notFound)
            let bad = try await client.call(.post, "/registration/guest/adopt", token: token, body: #"{"Alais":"x"}"#)
            #expect(bad.status == .badRequest)
            // The administrator removes a registration.
            #expect(try await client.call(.delete, "/registration/guest", token: token).status == .noContent)
            #expect(try await client.call(.get, "/registration/guest", token: token).status == .notFound)
        }
        // Adoption grants nothing by itself: the host's page lists only dem's discovery controller.
        let page = catalog.discoveryLogPage(hostNQN: Self.guestNQN)
        #expect(page.entries.map(\.subsystemType) == [.currentDiscovery])
    }
}

/// Zoning through the REST API: edit, dry run, activate; notices only to hosts whose page changed.
@Suite("REST API: zoning")
struct RESTZoningTests {
    @Test(
        "a zone edited, dry-run per host, activated: the zoned host's page lists the subsystem and only it is notified"
    )
    func zoneThenActivate() async throws {
        let fixture = try await APIFixture.make()
        let token = fixture.adminToken
        let catalog = fixture.feed.catalog
        let counts = CallCounter()
        for nqn in [hostA, hostB] {
            _ = catalog.controllerCreated(
                DiscoveryHostContext(hostNQN: nqn, hostIdentifier: [], subsystemNQN: DEMCore.wellKnownDiscoveryNQN)
            ) {
                counts.add(nqn)
            }
        }
        let restricted = "nqn.2024-01.io.example:zoned"
        try await fixture.test { client in
            try await client.call(.put, "/host", token: token, body: #"{"Alias":"h1","HOSTNQN":"\#(hostA)"}"#)
            try await client.call(.put, "/host", token: token, body: #"{"Alias":"h2","HOSTNQN":"\#(hostB)"}"#)
            try await client.call(.post, "/target/t1", token: token)
            try await client.call(
                .put,
                "/target/t1/portid",
                token: token,
                body: #"{"PORTID":1,"TRTYPE":"tcp","ADRFAM":"ipv4","TRADDR":"10.0.0.1","TRSVCID":4420}"#
            )
            try await client.call(
                .put,
                "/target/t1/subsystem",
                token: token,
                body: #"{"SUBNQN":"\#(restricted)","AllowAnyHost":0}"#
            )
            fixture.feed.flush()
            #expect(counts.snapshot.isEmpty)

            let host = try await client.call(.put, "/zoning/lab/z1/host/h1", token: token)
            #expect(host.status == .created, "\(host.body)")
            let again = try await client.call(.put, "/zoning/lab/z1/host/\(hostA)", token: token)
            #expect(again.status == .ok, "the alias is its NQN: already a member")
            let subsystem = try await client.call(.put, "/zoning/lab/z1/subsystem/\(restricted)", token: token)
            #expect(subsystem.status == .created, "\(subsystem.body)")
            let zoning = try await client.call(.get, "/zoning", token: token)
            #expect(zoning.json["Pending"] as? Bool == true)
            fixture.feed.flush()
            #expect(counts.snapshot.isEmpty, "configured, not active: no page changed")

            let diff = try await client.call(.get, "/zoning/diff", token: token)
            let hosts = diff.json["Hosts"] as? [[String: Any]] ?? []
            #expect(hosts.map { $0["HOSTNQN"] as? String } == [hostA])
            #expect(hosts.first?["Host"] as? String == "h1")
            #expect((hosts.first?["Gained"] as? [[String: Any]])?.map { $0["SUBNQN"] as? String } == [restricted])

            let activated = try await client.call(.post, "/zoning/activate", token: token)
            #expect(activated.status == .ok)
            fixture.feed.flush()
            #expect(counts.snapshot == [hostA: 1], "only h1's page changed")
            let page = try await client.call(.get, "/host/h1/logpage", token: token)
            #expect(page.body.contains(restricted))
            #expect(page.body.contains(#""reason":"in zone lab\/z1""#))
            #expect(fixture.feed.catalog.discoveryLogPage(hostNQN: hostB).entries.count == 1)

            // Bad edits name the field and change nothing.
            let hostBody = try await client.call(
                .put,
                "/zoning/lab/z1/host/h2",
                token: token,
                body: #"{"TRADDR":"1.2.3.4"}"#
            )
            #expect(hostBody.status == .badRequest)
            let lonePort = try await client.call(
                .put,
                "/zoning/lab/z1/subsystem/\(restricted)",
                token: token,
                body: #"{"TRSVCID":4420}"#
            )
            #expect(lonePort.status == .unprocessableContent)
            #expect(lonePort.json["field"] as? String == "TRSVCID")
            let unknown = try await client.call(
                .put,
                "/zoning/lab/z1/subsystem/\(restricted)",
                token: token,
                body: #"{"PORT":1}"#
            )
            #expect(unknown.status == .badRequest)
            #expect(try await client.call(.delete, "/zoning/lab/z1/host/h2", token: token).status == .notFound)
            #expect(try await client.call(.delete, "/zoning/lab/nope", token: token).status == .notFound)

            // Deactivating: delete the zone and activate; h1 loses the entry and is notified again.
            #expect(try await client.call(.delete, "/zoning/lab/z1", token: token).status == .noContent)
            let undo = try await client.call(.post, "/zoning/activate", token: token)
            let lost = (undo.json["Hosts"] as? [[String: Any]])?.first?["Lost"] as? [[String: Any]]
            #expect(lost?.map { $0["SUBNQN"] as? String } == [restricted])
            fixture.feed.flush()
            #expect(counts.snapshot == [hostA: 2])
            #expect(fixture.feed.catalog.discoveryLogPage(hostNQN: hostA).entries.count == 1)
        }
        // The active zoning is in the store.
        let stored = try SQLiteFabricStore(path: fixture.directory + "/dem.sqlite").loadFabric()
        #expect(stored == fixture.service.fabric)
    }
}
