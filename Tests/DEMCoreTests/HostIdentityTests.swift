import DEMCore
import Foundation
import Testing

/// A fresh temporary directory, removed by `cleanUp()`.
private struct TemporaryDirectory {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("dem-host-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func path(_ name: String) -> String { url.appendingPathComponent(name).path }

    @discardableResult
    func write(_ name: String, _ text: String) throws -> String {
        let path = path(name)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func cleanUp() { try? FileManager.default.removeItem(at: url) }
}

@Suite("HostIdentity from /etc/nvme/hostnqn and /etc/nvme/hostid")
struct HostIdentityTests {
    let uuidNQN = "nqn.2014-08.org.nvmexpress:uuid:dad2e259-4f21-4823-88c2-9865a7aa9759"
    let hostIDText = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    let hostIDBytes: [UInt8] = [
        0x0F, 0x1E, 0x2D, 0x3C, 0x4B, 0x5A, 0x69, 0x78, 0x87, 0x96, 0xA5, 0xB4, 0xC3, 0xD2, 0xE1, 0xF0,
    ]

    @Test("both files, trimmed")
    func bothFiles() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanUp() }
        let nqnPath = try directory.write("hostnqn", "  nqn.2024-01.io.example:host-1 \n")
        let idPath = try directory.write("hostid", "\(hostIDText.uppercased())\n")
        let identity = try HostIdentity.load(hostNQNPath: nqnPath, hostIDPath: idPath)
        #expect(identity.hostNQN.value == "nqn.2024-01.io.example:host-1")
        #expect(identity.hostIdentifier == hostIDBytes)
        #expect(identity.hostIdentifierUUID.uuidString.lowercased() == hostIDText)
        #expect(identity.clientOptions.hostNQN == "nqn.2024-01.io.example:host-1")
        #expect(identity.clientOptions.hostIdentifier == hostIDBytes)
    }

    @Test("no hostid file: the UUID of a UUID-form host NQN, as nvme-cli does")
    func hostIDFromNQN() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanUp() }
        let nqnPath = try directory.write("hostnqn", uuidNQN + "\n")
        let identity = try HostIdentity.load(hostNQNPath: nqnPath, hostIDPath: directory.path("hostid"))
        #expect(identity.hostIdentifier == TestValues.hostID)
        // An empty hostid file counts as none.
        let idPath = try directory.write("hostid", "\n")
        #expect(try HostIdentity.load(hostNQNPath: nqnPath, hostIDPath: idPath).hostIdentifier == TestValues.hostID)
    }

    @Test("no hostid file and a host NQN without a UUID: an error naming the file")
    func hostIDUnavailable() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanUp() }
        let nqnPath = try directory.write("hostnqn", "nqn.2024-01.io.example:host-1")
        let idPath = directory.path("hostid")
        let error = #expect(throws: HostIdentityError.self) {
            try HostIdentity.load(hostNQNPath: nqnPath, hostIDPath: idPath)
        }
        #expect(error == .hostIDUnavailable(path: idPath, hostNQN: "nqn.2024-01.io.example:host-1"))
        #expect(error?.description.contains(idPath) == true)
    }

    @Test("no hostnqn file: an error naming it")
    func hostNQNMissing() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanUp() }
        let nqnPath = directory.path("hostnqn")
        let error = #expect(throws: HostIdentityError.self) {
            try HostIdentity.load(hostNQNPath: nqnPath, hostIDPath: directory.path("hostid"))
        }
        #expect(error == .hostNQNFileMissing(path: nqnPath))
        #expect(error?.description.contains(nqnPath) == true)
    }

    @Test("an invalid host NQN or host ID in a file: errors naming the file")
    func invalidFiles() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanUp() }
        let badNQN = try directory.write("bad-hostnqn", "host-1.example.com\n")
        let goodNQN = try directory.write("hostnqn", uuidNQN)
        let badID = try directory.write("hostid", "0f1e2d3c4b5a69788796a5b4c3d2e1f0\n")
        let nqnError = #expect(throws: HostIdentityError.self) {
            try HostIdentity.load(hostNQNPath: badNQN, hostIDPath: badID)
        }
        guard case .invalidHostNQN(.file(badNQN), _) = nqnError else {
            Issue.record("unexpected \(String(describing: nqnError))")
            return
        }
        #expect(nqnError?.description.contains(badNQN) == true)
        let idError = #expect(throws: HostIdentityError.self) {
            try HostIdentity.load(hostNQNPath: goodNQN, hostIDPath: badID)
        }
        #expect(idError == .invalidHostID(source: .file(badID), value: "0f1e2d3c4b5a69788796a5b4c3d2e1f0"))
        #expect(idError?.description.contains(badID) == true)
        let emptyNQN = try directory.write("empty-hostnqn", "\n")
        #expect(throws: HostIdentityError.self) { try HostIdentity.load(hostNQNPath: emptyNQN, hostIDPath: badID) }
    }

    @Test("overrides win over the files, and are validated")
    func overrides() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanUp() }
        let nqnPath = try directory.write("hostnqn", "nqn.2024-01.io.example:from-file")
        let idPath = try directory.write("hostid", hostIDText)
        let both = try HostIdentity.load(
            hostNQN: uuidNQN,
            hostID: " 8f8d5e5a-1111-4222-8333-444455556666 ",
            hostNQNPath: nqnPath,
            hostIDPath: idPath
        )
        #expect(both.hostNQN.value == uuidNQN)
        #expect(both.hostIdentifierUUID.uuidString.lowercased() == "8f8d5e5a-1111-4222-8333-444455556666")
        // Only the NQN overridden: the hostid file still counts.
        let nqnOnly = try HostIdentity.load(hostNQN: uuidNQN, hostNQNPath: nqnPath, hostIDPath: idPath)
        #expect(nqnOnly.hostIdentifier == hostIDBytes)
        // No files at all: a UUID-form override supplies both.
        let noFiles = try HostIdentity.load(
            hostNQN: uuidNQN,
            hostNQNPath: directory.path("none-nqn"),
            hostIDPath: directory.path("none-id")
        )
        #expect(noFiles.hostIdentifier == TestValues.hostID)
        #expect(throws: HostIdentityError.invalidHostID(source: .override, value: "not-a-uuid")) {
            try HostIdentity.load(hostID: "not-a-uuid", hostNQNPath: nqnPath, hostIDPath: idPath)
        }
        let error = #expect(throws: HostIdentityError.self) {
            try HostIdentity.load(hostNQN: "nqn.bad", hostNQNPath: nqnPath, hostIDPath: idPath)
        }
        guard case .invalidHostNQN(.override, _) = error else {
            Issue.record("unexpected \(String(describing: error))")
            return
        }
    }

    @Test("client options for an address: its own host NQN and ID win over the host's")
    func clientOptions() throws {
        let identity = HostIdentity(hostNQN: try NQN(uuidNQN), hostIdentifier: hostIDBytes)
        let plain = DiscoveryControllerAddress(transportAddress: "192.0.2.1")
        #expect(plain.clientOptions(for: identity).hostNQN == uuidNQN)
        #expect(plain.clientOptions(for: identity).hostIdentifier == hostIDBytes)
        #expect(plain.clientOptions(for: identity).subsystemNQN == DEMCore.wellKnownDiscoveryNQN)
        let own = DiscoveryControllerAddress(
            transportAddress: "192.0.2.1",
            hostNQN: "nqn.2024-01.io.example:other",
            hostIdentifier: TestValues.hostID,
            subsystemNQN: "nqn.2024-01.io.example:dc"
        )
        let options = own.clientOptions(for: identity)
        #expect(options.hostNQN == "nqn.2024-01.io.example:other")
        #expect(options.hostIdentifier == TestValues.hostID)
        #expect(options.subsystemNQN == "nqn.2024-01.io.example:dc")
        let watcher = DiscoveryWatcher(
            address: DiscoveryControllerAddress(transportAddress: "2001:db8::1", transportServiceIdentifier: "8010"),
            identity: identity,
            keepAliveMilliseconds: 0
        )
        #expect(watcher.host == "2001:db8::1")
        #expect(watcher.port == 8010)
        #expect(watcher.options.keepAliveTimeout == DiscoveryWatcher.defaultKeepAliveTimeout)
        #expect(watcher.configuration.keepAliveTimeout == .seconds(30))
    }

    @Test("UUID text to 16 bytes")
    func uuidBytes() {
        #expect(HostIdentity.hostIdentifier(fromUUID: hostIDText) == hostIDBytes)
        #expect(HostIdentity.hostIdentifier(fromUUID: hostIDText.uppercased()) == hostIDBytes)
        #expect(HostIdentity.hostIdentifier(fromUUID: "0f1e2d3c4b5a69788796a5b4c3d2e1f0") == nil)
        #expect(HostIdentity.hostIdentifier(fromUUID: "{\(hostIDText)}") == nil)
        #expect(HostIdentity.hostIdentifier(fromHostNQN: uuidNQN) == TestValues.hostID)
        #expect(HostIdentity.hostIdentifier(fromHostNQN: "nqn.2024-01.io.example:uuid:\(hostIDText)") == nil)
    }
}

@Suite("DiscoveryConfigurationFile: nvme-cli's discovery.conf")
struct DiscoveryConfigurationFileTests {
    @Test("long and short options, comments and blank lines")
    func parses() throws {
        let text = """
            # Discovery controllers
            --transport=tcp --traddr=192.0.2.1 --trsvcid=8009

              -t tcp -a 192.0.2.2 -s 4420 -w 192.0.2.100 -f eth1 -q nqn.2024-01.io.example:host -I 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0
            --transport tcp --traddr 2001:db8::1 --nqn nqn.2024-01.io.example:dc  # a unique discovery NQN
            -ttcp -a=192.0.2.3 --host-traddr=192.0.2.101 --host-iface eth2 --hostnqn=nqn.2024-01.io.example:other --hostid 8f8d5e5a-1111-4222-8333-444455556666
            --transport=tcp --traddr=192.0.2.4 --keep-alive-tmo=5 -g --hdr-digest --persistent -l 60 --tls-key x
            --transport=rdma --traddr=192.0.2.5
            \t
            """
        let addresses = try DiscoveryConfigurationFile.parse(text)
        #expect(addresses.count == 6)
        #expect(addresses[0] == DiscoveryControllerAddress(transportAddress: "192.0.2.1"))
        #expect(addresses[0].transportServiceIdentifier == "8009")
        #expect(addresses[0].subsystemNQN == DEMCore.wellKnownDiscoveryNQN)
        #expect(
            addresses[1]
                == DiscoveryControllerAddress(
                    transportType: .tcp,
                    transportAddress: "192.0.2.2",
                    transportServiceIdentifier: "4420",
                    hostTransportAddress: "192.0.2.100",
                    hostInterface: "eth1",
                    hostNQN: "nqn.2024-01.io.example:host",
                    hostIdentifier: [
                        0x0F, 0x1E, 0x2D, 0x3C, 0x4B, 0x5A, 0x69, 0x78, 0x87, 0x96, 0xA5, 0xB4, 0xC3, 0xD2, 0xE1, 0xF0,
                    ]
                )
        )
        #expect(addresses[2].transportAddress == "2001:db8::1")
        #expect(addresses[2].port == 8009)
        #expect(addresses[2].subsystemNQN == "nqn.2024-01.io.example:dc")
        #expect(addresses[3].transportAddress == "192.0.2.3")
        #expect(addresses[3].hostTransportAddress == "192.0.2.101")
        #expect(addresses[3].hostInterface == "eth2")
        #expect(addresses[3].hostNQN == "nqn.2024-01.io.example:other")
        #expect(addresses[3].hostIdentifier?.count == 16)
        #expect(addresses[4] == DiscoveryControllerAddress(transportAddress: "192.0.2.4"))
        #expect(addresses[5].transportType == .rdma)
        #expect(addresses[5].transportServiceIdentifier == "4420")
        #expect(try DiscoveryConfigurationFile.parse("") == [])
        #expect(try DiscoveryConfigurationFile.parse("# nothing\n\n   # here\n") == [])
    }

    @Test(
        "errors name the line",
        arguments: [
            ("--transport=tcp --traddr=192.0.2.1 --bogus=1", "unknown option --bogus"),
            ("--transport=tcp -a 192.0.2.1 -z", "unknown option -z"),
            ("--traddr=192.0.2.1", "no --transport (-t)"),
            ("--transport=tcp", "no --traddr (-a)"),
            ("--transport=ib --traddr=192.0.2.1", "unknown transport \"ib\" (tcp, rdma, fc or loop)"),
            ("-t tcp -a 192.0.2.1 -s http", "--trsvcid \"http\" is not a port number (1-65535)"),
            ("-t tcp -a 192.0.2.1 -s 70000", "--trsvcid \"70000\" is not a port number (1-65535)"),
            ("-t tcp -a 192.0.2.1 -I 1234", "--hostid \"1234\" is not a UUID"),
            ("-t tcp -a 192.0.2.1 --traddr", "--traddr needs a value"),
            ("-t tcp -a", "-a needs a value"),
            ("-t tcp -a 192.0.2.1 --persistent=yes", "--persistent takes no value"),
            ("-t tcp -a 192.0.2.1 stray", "unexpected \"stray\" (options start with - or --)"),
            ("--persistent", "no --transport (-t)"),
        ]
    )
    func lineErrors(line: String, reason: String) {
        let text = "# header\n--transport=tcp --traddr=192.0.2.9\n\(line)\n"
        let error = #expect(throws: DiscoveryConfigurationFileError.self) {
            try DiscoveryConfigurationFile.parse(text, path: "/etc/nvme/discovery.conf")
        }
        #expect(error == .invalidLine(path: "/etc/nvme/discovery.conf", line: 3, reason: reason))
        #expect(error?.description.hasPrefix("/etc/nvme/discovery.conf, line 3: ") == true)
    }

    @Test("invalid NQNs are reported with the NQN rule that failed")
    func invalidNQNs() {
        for option in ["--hostnqn", "--nqn"] {
            let error = #expect(throws: DiscoveryConfigurationFileError.self) {
                try DiscoveryConfigurationFile.parse("-t tcp -a 192.0.2.1 \(option)=nqn.bad")
            }
            guard case .invalidLine(nil, 1, let reason) = error else {
                Issue.record("unexpected \(String(describing: error))")
                continue
            }
            #expect(reason.hasPrefix("\(option): invalid NQN \"nqn.bad\""))
        }
    }

    @Test("reading a file; a missing file is .notFound")
    func readsFile() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanUp() }
        let path = try directory.write("discovery.conf", "-t tcp -a 192.0.2.1\n-t tcp -a 192.0.2.2 -s 8010\n")
        #expect(
            try DiscoveryConfigurationFile.read(path: path).map(\.key) == [
                DiscoveryControllerAddress(transportAddress: "192.0.2.1").key,
                DiscoveryControllerAddress(transportAddress: "192.0.2.2", transportServiceIdentifier: "8010").key,
            ]
        )
        let bad = try directory.write("bad.conf", "\n\n-t tcp\n")
        #expect(throws: DiscoveryConfigurationFileError.invalidLine(path: bad, line: 3, reason: "no --traddr (-a)")) {
            try DiscoveryConfigurationFile.read(path: bad)
        }
        let missing = directory.path("missing.conf")
        #expect(throws: DiscoveryConfigurationFileError.notFound(path: missing)) {
            try DiscoveryConfigurationFile.read(path: missing)
        }
    }
}
