import DEMCore
import Foundation
import Testing

// The fabric resource model: nvme-dem's configuration JSON, the checks of every change, and who
// may see what (AllowAnyHost, access lists and the group rule).

/// The fabric most tests start from.
private enum Sample {
    static let h1NQN = "nqn.2014-08.org.nvmexpress:uuid:dad2e259-4f21-4823-88c2-9865a7aa9759"
    static let h2NQN = "nqn.2024-01.io.example:host-2"
    static let h3NQN = "nqn.2024-01.io.example:host-3"
    static let s1 = "nqn.2024-01.io.example:s1"
    static let s2 = "nqn.2024-01.io.example:s2"

    /// A TCP/IPv4 port.
    static func tcp(_ portID: Int, _ address: String = "192.168.0.1", _ service: Int = 4420) -> FabricPort {
        FabricPort(
            portID: portID,
            transportType: "tcp",
            addressFamily: "ipv4",
            transportAddress: address,
            transportServiceIdentifier: service
        )
    }

    /// Hosts h1, h2, h3. Target t1 (local): port 1 (tcp 192.168.0.1:4420) and port 2 (tcp
    /// [fd00::2]:4420, TLS); s1 for any host with NSID 1, s2 for h1 and h3. Target t2
    /// (out-of-band, reporting devices 0/1 and -1): s1 for any host. Group g1: t2 with h1 and h2.
    static func fabric() throws -> Fabric {
        try Fabric(
            targets: [
                FabricTarget(
                    alias: "t1",
                    ports: [
                        tcp(1),
                        FabricPort(
                            portID: 2,
                            transportType: "tcp",
                            addressFamily: "ipv6",
                            transportAddress: "fd00::2",
                            transportRequirements: "required",
                            securityType: "tls1.3"
                        ),
                    ],
                    subsystems: [
                        FabricSubsystem(
                            nqn: s1,
                            namespaces: [FabricNamespace(namespaceID: 1, devicePath: "/dev/nullb0")]
                        ),
                        FabricSubsystem(nqn: s2, allowAnyHost: false, hosts: ["h1", "h3"]),
                    ]
                ),
                FabricTarget(
                    alias: "t2",
                    managementMode: .outOfBand,
                    interface: ManagementInterface(address: "10.0.0.5", port: 22334),
                    subsystems: [FabricSubsystem(nqn: s1)],
                    reportedDevices: [ReportedDevice(deviceID: 0, deviceNamespaceID: 1), ReportedDevice(deviceID: -1)]
                ),
            ],
            hosts: [
                FabricHost(alias: "h1", nqn: h1NQN),
                FabricHost(alias: "h2", nqn: h2NQN),
                FabricHost(alias: "h3", nqn: h3NQN),
            ],
            groups: [FabricGroup(name: "g1", targets: ["t2"], hosts: ["h1", "h2"])]
        )
    }

    /// The configuration example of nvme-dem's README (with real NQNs, and a nullb0 namespace).
    static let nvmeDEMExample = #"""
        {"Targets":[{"Alias":"t1","Refresh":5,"MgmtMode":"OutOfBandMgmt",
           "Interface":{"FAMILY":"ipv4","ADDRESS":"10.0.0.5","PORT":22334},
           "Interfaces":[{"TRTYPE":"rdma","ADRFAM":"ipv4","TRADDR":"192.168.22.1"}],
           "NSDevices":[{"DeviceID":0,"DeviceNSID":1},{"DeviceID":-1}],
           "PortIDs":[{"PORTID":1,"TRTYPE":"rdma","ADRFAM":"ipv4","TRADDR":"192.168.22.1","TRSVCID":4420}],
           "Subsystems":[{"SUBNQN":"nqn.2024-01.io.example:s1","AllowAnyHost":0,
              "NSIDs":[{"NSID":1,"DeviceID":0,"DeviceNSID":1},{"NSID":2,"DeviceID":-1}],"Hosts":["h1"]}]}],
         "Hosts":[{"Alias":"h1","HOSTNQN":"nqn.2014-08.org.nvmexpress:uuid:dad2e259-4f21-4823-88c2-9865a7aa9759"}],
         "Groups":[{"Name":"g1","Targets":["t1"],"Hosts":["h1"]}]}
        """#

    /// The same, with every number as a string and AllowAnyHost as a boolean.
    static let nvmeDEMExampleWithStrings = #"""
        {"Targets":[{"Alias":"t1","Refresh":"5","MgmtMode":"OutOfBandMgmt",
           "Interface":{"FAMILY":"ipv4","ADDRESS":"10.0.0.5","PORT":"22334"},
           "Interfaces":[{"TRTYPE":"rdma","ADRFAM":"ipv4","TRADDR":"192.168.22.1"}],
           "NSDevices":[{"DeviceID":0,"DeviceNSID":1},{"DeviceID":-1}],
           "PortIDs":[{"PORTID":"1","TRTYPE":"rdma","ADRFAM":"ipv4","TRADDR":"192.168.22.1","TRSVCID":"4420"}],
           "Subsystems":[{"SUBNQN":"nqn.2024-01.io.example:s1","AllowAnyHost":false,
              "NSIDs":[{"NSID":"1","DeviceID":"0","DeviceNSID":"1"},{"NSID":"2","DeviceID":"-1"}],"Hosts":["h1"]}]}],
         "Hosts":[{"Alias":"h1","HOSTNQN":"nqn.2014-08.org.nvmexpress:uuid:dad2e259-4f21-4823-88c2-9865a7aa9759"}],
         "Groups":[{"Name":"g1","Targets":["t1"],"Hosts":["h1"]}]}
        """#

    /// What the example describes, built through the API.
    static func example() throws -> Fabric {
        try Fabric(
            targets: [
                FabricTarget(
                    alias: "t1",
                    refresh: 5,
                    managementMode: .outOfBand,
                    interface: ManagementInterface(family: "ipv4", address: "10.0.0.5", port: 22334),
                    ports: [
                        FabricPort(
                            portID: 1,
                            transportType: "rdma",
                            addressFamily: "ipv4",
                            transportAddress: "192.168.22.1",
                            transportServiceIdentifier: 4420
                        )
                    ],
                    subsystems: [
                        FabricSubsystem(
                            nqn: s1,
                            allowAnyHost: false,
                            namespaces: [
                                FabricNamespace(namespaceID: 1, deviceID: 0, deviceNamespaceID: 1),
                                FabricNamespace(namespaceID: 2, deviceID: -1),
                            ],
                            hosts: ["h1"]
                        )
                    ],
                    reportedDevices: [ReportedDevice(deviceID: 0, deviceNamespaceID: 1), ReportedDevice(deviceID: -1)],
                    reportedInterfaces: [
                        ReportedInterface(
                            transportType: "rdma",
                            addressFamily: "ipv4",
                            transportAddress: "192.168.22.1"
                        )
                    ]
                )
            ],
            hosts: [FabricHost(alias: "h1", nqn: h1NQN)],
            groups: [FabricGroup(name: "g1", targets: ["t1"], hosts: ["h1"])]
        )
    }

    static func decode<T: Decodable>(_ type: T.Type, _ json: String) throws -> T {
        try JSONDecoder().decode(type, from: Data(json.utf8))
    }

    /// The JSON object `json` encodes, keyed by nvme-dem's keys.
    static func object(_ data: Data) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }
}

// MARK: - JSON

/// nvme-dem's configuration file and REST bodies, read leniently and written with its keys.
@Suite("Fabric model: JSON")
struct FabricModelJSONTests {
    @Test("nvme-dem's configuration example decodes: DeviceID -1, TRSVCID an integer, AllowAnyHost 0")
    func decodesNVMeDEMExample() throws {
        let fabric = try Sample.decode(Fabric.self, Sample.nvmeDEMExample)
        #expect(fabric == (try Sample.example()))

        let target = try fabric.target("t1")
        #expect(target.managementMode == .outOfBand)
        #expect(target.interface == ManagementInterface(family: "ipv4", address: "10.0.0.5", port: 22334))
        #expect(target.ports.map(\.transportServiceIdentifier) == [4420])
        #expect(target.reportedDevices.last == ReportedDevice(deviceID: -1))
        let subsystem = try fabric.subsystem(target: "t1", nqn: Sample.s1)
        #expect(!subsystem.allowAnyHost)
        #expect(subsystem.hosts == ["h1"])
        #expect(subsystem.namespaces.map(\.deviceID) == [0, -1])
        #expect(subsystem.namespaces.map(\.deviceNamespaceID) == [1, nil])
        #expect(try fabric.group("g1") == FabricGroup(name: "g1", targets: ["t1"], hosts: ["h1"]))
    }

    @Test("numbers may be strings and AllowAnyHost a boolean")
    func lenientNumbers() throws {
        let fabric = try Sample.decode(Fabric.self, Sample.nvmeDEMExampleWithStrings)
        #expect(fabric == (try Sample.example()))
    }

    @Test(
        "AllowAnyHost is 0, 1, false or true, and 1 when absent",
        arguments: [
            (#","AllowAnyHost":0"#, false),
            (#","AllowAnyHost":1"#, true),
            (#","AllowAnyHost":false"#, false),
            (#","AllowAnyHost":true"#, true),
            ("", true),
        ]
    )
    func allowAnyHost(_ member: String, _ expected: Bool) throws {
        let subsystem = try Sample.decode(FabricSubsystem.self, #"{"SUBNQN":"nqn.2024-01.io.example:s1"\#(member)}"#)
        #expect(subsystem.allowAnyHost == expected)
        #expect(subsystem.namespaces.isEmpty && subsystem.hosts.isEmpty)
    }

    @Test(
        "values that are neither a number nor a flag are refused",
        arguments: [
            #"{"SUBNQN":"nqn.2024-01.io.example:s1","AllowAnyHost":2}"#,
            #"{"SUBNQN":"nqn.2024-01.io.example:s1","AllowAnyHost":"yes"}"#,
            #"{"SUBNQN":"nqn.2024-01.io.example:s1","NSIDs":[{"NSID":"one","DevicePath":"/dev/nullb0"}]}"#,
        ]
    )
    func refusedValues(_ json: String) {
        #expect(throws: DecodingError.self) { try Sample.decode(FabricSubsystem.self, json) }
    }

    @Test("a port without TRSVCID gets 4420; TREQ may be 0, 1 or 2")
    func portDefaults() throws {
        let port = try Sample.decode(
            FabricPort.self,
            #"{"PORTID":3,"TRTYPE":"tcp","ADRFAM":"ipv4","TRADDR":"10.0.0.1"}"#
        )
        #expect(port == Sample.tcp(3, "10.0.0.1"))
        #expect(port.transportRequirements == nil && port.securityType == nil)
        for (number, text) in [(0, "not specified"), (1, "required"), (2, "not required")] {
            let json = #"{"PORTID":3,"TRTYPE":"tcp","ADRFAM":"ipv4","TRADDR":"10.0.0.1","TREQ":\#(number)}"#
            #expect(try Sample.decode(FabricPort.self, json).transportRequirements == text)
        }
    }

    @Test("encoding writes nvme-dem's keys, AllowAnyHost as 0 or 1")
    func encodesNVMeDEMKeys() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = try encoder.encode(try Sample.example())
        let text = String(decoding: data, as: UTF8.self)
        #expect(text.contains(#""AllowAnyHost":0"#))
        #expect(!text.contains("false") && !text.contains("true"))
        #expect(text.contains(#""TRSVCID":4420"#))
        #expect(text.contains(#""MgmtMode":"OutOfBandMgmt""#))

        let root = try Sample.object(data)
        #expect(Set(root.keys) == ["Targets", "Hosts", "Groups"])
        let target = try #require((root["Targets"] as? [[String: Any]])?.first)
        #expect(
            Set(target.keys)
                == ["Alias", "Refresh", "MgmtMode", "Interface", "PortIDs", "Subsystems", "NSDevices", "Interfaces"]
        )
        #expect(Set(try #require(target["Interface"] as? [String: Any]).keys) == ["FAMILY", "ADDRESS", "PORT"])
        let port = try #require((target["PortIDs"] as? [[String: Any]])?.first)
        #expect(Set(port.keys) == ["PORTID", "TRTYPE", "ADRFAM", "TRADDR", "TRSVCID"])
        let devices = try #require(target["NSDevices"] as? [[String: Any]])
        #expect(devices.map { Set($0.keys) } == [["DeviceID", "DeviceNSID"], ["DeviceID"]])
        let subsystem = try #require((target["Subsystems"] as? [[String: Any]])?.first)
        #expect(Set(subsystem.keys) == ["SUBNQN", "AllowAnyHost", "NSIDs", "Hosts"])
        let namespaces = try #require(subsystem["NSIDs"] as? [[String: Any]])
        #expect(namespaces.map { Set($0.keys) } == [["NSID", "DeviceID", "DeviceNSID"], ["NSID", "DeviceID"]])
        let host = try #require((root["Hosts"] as? [[String: Any]])?.first)
        #expect(Set(host.keys) == ["Alias", "HOSTNQN"])
        let group = try #require((root["Groups"] as? [[String: Any]])?.first)
        #expect(Set(group.keys) == ["Name", "Targets", "Hosts"])

        var open = try Sample.example()
        try open.updateSubsystem(target: "t1", nqn: Sample.s1, .init(allowAnyHost: true))
        #expect(String(decoding: try encoder.encode(open), as: UTF8.self).contains(#""AllowAnyHost":1"#))
    }

    @Test("what is encoded decodes to the same fabric (TREQ, TSAS, HOSTID, DevicePath, UUID included)")
    func roundTrip() throws {
        var fabric = try Sample.fabric()
        try fabric.updateHost("h3", .init(hostID: "dad2e259-4f21-4823-88c2-9865a7aa9759"))
        try fabric.setNamespace(
            target: "t1",
            subsystem: Sample.s2,
            FabricNamespace(
                namespaceID: 7,
                devicePath: "/dev/nvme0n1",
                uuid: "dad2e259-4f21-4823-88c2-9865a7aa9759",
                nguid: "0123456789abcdef0123456789ABCDEF"
            )
        )
        for value in [fabric, try Sample.example()] {
            let data = try JSONEncoder().encode(value)
            #expect(try JSONDecoder().decode(Fabric.self, from: data) == value)
        }
    }
}

// MARK: - Refused changes

/// Each change is refused with the field at fault, and the fabric stays as it was.
@Suite("Fabric model: refused changes")
struct FabricModelRefusalTests {
    /// A change the model must refuse, with the kind of refusal and the field it names.
    struct Refusal: Sendable, CustomTestStringConvertible {
        var name: String
        var kind: ModelError.Kind
        var field: String
        var change: @Sendable (inout Fabric) throws -> Void

        init(
            _ name: String,
            _ kind: ModelError.Kind,
            _ field: String,
            _ change: @escaping @Sendable (inout Fabric) throws -> Void
        ) {
            self.name = name
            self.kind = kind
            self.field = field
            self.change = change
        }

        var testDescription: String { name }

        /// Applies the change to the sample fabric: it must throw a ``ModelError`` of the kind and
        /// field expected, and leave the fabric as it was.
        func check(sourceLocation: SourceLocation = #_sourceLocation) throws {
            var fabric = try Sample.fabric()
            let before = fabric
            do {
                try change(&fabric)
                Issue.record("\(name): accepted", sourceLocation: sourceLocation)
            } catch let error as ModelError {
                #expect(error.kind == kind, "\(error)", sourceLocation: sourceLocation)
                #expect(error.field == field, "\(error)", sourceLocation: sourceLocation)
                #expect(!error.message.isEmpty, sourceLocation: sourceLocation)
            }
            #expect(fabric == before, "a refused change leaves the fabric as it was", sourceLocation: sourceLocation)
        }
    }

    static let invalid: [Refusal] = [
        .init("alias with a space", .invalid, "Alias") { try $0.addTarget(FabricTarget(alias: "t 3")) },
        .init("alias of 65 characters", .invalid, "Alias") {
            try $0.addHost(FabricHost(alias: String(repeating: "h", count: 65), nqn: "nqn.2024-01.io.example:h9"))
        },
        .init("bad SUBNQN", .invalid, "SUBNQN") {
            try $0.addSubsystem(target: "t1", FabricSubsystem(nqn: "nqn.x:s3"))
        },
        .init("well-known discovery NQN as SUBNQN", .invalid, "SUBNQN") {
            try $0.addSubsystem(target: "t1", FabricSubsystem(nqn: DEMCore.wellKnownDiscoveryNQN))
        },
        .init("bad HOSTNQN", .invalid, "HOSTNQN") { try $0.updateHost("h1", .init(nqn: "host-1")) },
        .init("HOSTID not a UUID", .invalid, "HOSTID") {
            try $0.addHost(FabricHost(alias: "h4", nqn: "nqn.2024-01.io.example:host-4", hostID: "1234"))
        },
        .init("PORTID 0", .invalid, "PORTID") { try $0.setPort(target: "t1", Sample.tcp(0, "192.168.0.3")) },
        .init("PORTID 65535", .invalid, "PORTID") { try $0.setPort(target: "t1", Sample.tcp(65535, "192.168.0.3")) },
        .init("TRTYPE udp", .invalid, "TRTYPE") {
            try $0.setPort(
                target: "t1",
                FabricPort(portID: 3, transportType: "udp", addressFamily: "ipv4", transportAddress: "192.168.0.3")
            )
        },
        .init("ipv4 family with an IPv6 address", .invalid, "TRADDR") {
            try $0.setPort(target: "t1", Sample.tcp(3, "fd00::3"))
        },
        .init("ipv6 family with an IPv4 address", .invalid, "TRADDR") {
            try $0.setPort(
                target: "t1",
                FabricPort(portID: 3, transportType: "tcp", addressFamily: "ipv6", transportAddress: "192.168.0.3")
            )
        },
        .init("TRSVCID 0 on tcp", .invalid, "TRSVCID") {
            try $0.setPort(target: "t1", Sample.tcp(3, "192.168.0.3", 0))
        },
        .init("TRSVCID 70000", .invalid, "TRSVCID") {
            try $0.setPort(target: "t1", Sample.tcp(3, "192.168.0.3", 70000))
        },
        .init("TREQ that is no requirement", .invalid, "TREQ") {
            var port = Sample.tcp(3, "192.168.0.3")
            port.transportRequirements = "maybe"
            try $0.setPort(target: "t1", port)
        },
        .init("TSAS on rdma", .invalid, "TSAS") {
            try $0.setPort(
                target: "t1",
                FabricPort(
                    portID: 3,
                    transportType: "rdma",
                    addressFamily: "ipv4",
                    transportAddress: "192.168.0.3",
                    securityType: "tls1.3"
                )
            )
        },
        .init("NSID 0", .invalid, "NSID") {
            try $0.setNamespace(target: "t1", subsystem: Sample.s1, FabricNamespace(namespaceID: 0, deviceID: -1))
        },
        .init("neither DeviceID nor DevicePath", .invalid, "DeviceID") {
            try $0.setNamespace(target: "t1", subsystem: Sample.s1, FabricNamespace(namespaceID: 2))
        },
        .init("DeviceID 3 without DeviceNSID", .invalid, "DeviceNSID") {
            try $0.setNamespace(target: "t1", subsystem: Sample.s1, FabricNamespace(namespaceID: 2, deviceID: 3))
        },
        .init("relative DevicePath", .invalid, "DevicePath") {
            try $0.setNamespace(
                target: "t1",
                subsystem: Sample.s1,
                FabricNamespace(namespaceID: 2, devicePath: "dev/nullb1")
            )
        },
        .init("UUID that is none", .invalid, "UUID") {
            try $0.setNamespace(
                target: "t1",
                subsystem: Sample.s1,
                FabricNamespace(namespaceID: 2, deviceID: -1, uuid: "not-a-uuid")
            )
        },
        .init("NGUID with a g", .invalid, "NGUID") {
            try $0.setNamespace(
                target: "t1",
                subsystem: Sample.s1,
                FabricNamespace(namespaceID: 2, deviceID: -1, nguid: "0123456789abcdef0123456789abcdeg")
            )
        },
        .init("NGUID of full-width digits", .invalid, "NGUID") {
            try $0.setNamespace(
                target: "t1",
                subsystem: Sample.s1,
                FabricNamespace(namespaceID: 2, deviceID: -1, nguid: String(repeating: "\u{FF10}", count: 32))
            )
        },
        .init("device the target does not report", .invalid, "DeviceID") {
            try $0.setNamespace(
                target: "t2",
                subsystem: Sample.s1,
                FabricNamespace(namespaceID: 1, deviceID: 5, deviceNamespaceID: 1)
            )
        },
        .init("negative Refresh", .invalid, "Refresh") { try $0.updateTarget("t1", .init(refresh: -1)) },
        .init("OutOfBandMgmt without an Interface", .invalid, "Interface") {
            try $0.updateTarget("t1", .init(managementMode: .outOfBand))
        },
        .init("InBandMgmt with a bad TRADDR", .invalid, "Interface.TRADDR") {
            try $0.updateTarget(
                "t1",
                .init(
                    managementMode: .inBand,
                    interface: ManagementInterface(
                        transportType: "tcp",
                        addressFamily: "ipv4",
                        transportAddress: "10.0.0.256",
                        transportServiceIdentifier: 4420
                    )
                )
            )
        },
    ]

    @Test("malformed or out-of-range values are invalid", arguments: invalid)
    func invalidValue(_ refusal: Refusal) throws { try refusal.check() }

    static let conflicts: [Refusal] = [
        .init("duplicate target alias", .conflict, "Alias") { try $0.addTarget(FabricTarget(alias: "t2")) },
        .init("target renamed onto another", .conflict, "Alias") { try $0.updateTarget("t1", .init(alias: "t2")) },
        .init("duplicate host alias", .conflict, "Alias") {
            try $0.addHost(FabricHost(alias: "h2", nqn: "nqn.2024-01.io.example:host-9"))
        },
        .init("duplicate HOSTNQN", .conflict, "HOSTNQN") {
            try $0.addHost(FabricHost(alias: "h9", nqn: Sample.h1NQN))
        },
        .init("HOSTNQN changed to another host's", .conflict, "HOSTNQN") {
            try $0.updateHost("h2", .init(nqn: Sample.h1NQN))
        },
        .init("duplicate SUBNQN on a target", .conflict, "SUBNQN") {
            try $0.addSubsystem(target: "t1", FabricSubsystem(nqn: Sample.s1))
        },
        .init("subsystem renamed onto another", .conflict, "SUBNQN") {
            try $0.updateSubsystem(target: "t1", nqn: Sample.s2, .init(nqn: Sample.s1))
        },
        .init("second port on the same TRADDR and TRSVCID", .conflict, "TRADDR") {
            try $0.setPort(target: "t1", Sample.tcp(3))
        },
        .init("port renumbered onto an existing PORTID", .conflict, "PORTID") {
            try $0.setPort(target: "t1", Sample.tcp(2), replacing: 1)
        },
    ]

    @Test("clashes with what exists are conflicts", arguments: conflicts)
    func conflict(_ refusal: Refusal) throws { try refusal.check() }

    static let missing: [Refusal] = [
        .init("access list entry for an unknown host", .notFound, "Alias") {
            try $0.allowHost(target: "t1", subsystem: Sample.s2, host: "h9")
        },
        .init("unknown host as group member", .notFound, "Alias") { try $0.addGroupMember(group: "g1", host: "h9") },
        .init("unknown target as group member", .notFound, "Alias") {
            try $0.addGroupMember(group: "g1", target: "t9")
        },
        .init("renumbering a port that does not exist", .notFound, "PORTID") {
            try $0.setPort(target: "t1", Sample.tcp(3, "192.168.0.3"), replacing: 9)
        },
    ]

    @Test("references to what does not exist are not found", arguments: missing)
    func notFound(_ refusal: Refusal) throws { try refusal.check() }

    /// A document to import, and the error it must stop at.
    struct Import: Sendable, CustomTestStringConvertible {
        var json: String
        var kind: ModelError.Kind
        var field: String
        var testDescription: String { field }
    }

    static let imports: [Import] = [
        .init(
            json: #"""
                {"Targets":[{"Alias":"t1","PortIDs":[
                  {"PORTID":1,"TRTYPE":"tcp","ADRFAM":"ipv4","TRADDR":"10.0.0.1"},
                  {"PORTID":2,"TRTYPE":"tcp","ADRFAM":"ipv4","TRADDR":"fd00::1"}]}]}
                """#,
            kind: .invalid,
            field: "Targets[0].PortIDs[1].TRADDR"
        ),
        .init(
            json: #"""
                {"Targets":[{"Alias":"t1","PortIDs":[
                  {"PORTID":1,"TRTYPE":"tcp","ADRFAM":"ipv4","TRADDR":"10.0.0.1"},
                  {"PORTID":1,"TRTYPE":"tcp","ADRFAM":"ipv4","TRADDR":"10.0.0.2"}]}]}
                """#,
            kind: .conflict,
            field: "Targets[0].PortIDs[1].PORTID"
        ),
        .init(
            json: #"""
                {"Targets":[{"Alias":"t1"},{"Alias":"t2","Subsystems":[{"SUBNQN":"nqn.2024-01.io.example:s1",
                  "NSIDs":[{"NSID":1,"DeviceID":3}]}]}]}
                """#,
            kind: .invalid,
            field: "Targets[1].Subsystems[0].NSIDs[0].DeviceNSID"
        ),
        .init(
            json: #"""
                {"Targets":[{"Alias":"t1","Subsystems":[{"SUBNQN":"nqn.2024-01.io.example:s1",
                  "NSIDs":[{"NSID":1,"DeviceID":-1},{"NSID":1,"DevicePath":"/dev/nullb1"}]}]}]}
                """#,
            kind: .conflict,
            field: "Targets[0].Subsystems[0].NSIDs[1].NSID"
        ),
        .init(
            json: #"""
                {"Targets":[{"Alias":"t1","Subsystems":[{"SUBNQN":"nqn.2024-01.io.example:s1",
                  "AllowAnyHost":0,"Hosts":["h9"]}]}]}
                """#,
            kind: .notFound,
            field: "Targets[0].Subsystems[0].Hosts[0].Alias"
        ),
        .init(
            json: #"""
                {"Hosts":[{"Alias":"h1","HOSTNQN":"nqn.2024-01.io.example:h"},
                  {"Alias":"h2","HOSTNQN":"nqn.2024-01.io.example:h"}]}
                """#,
            kind: .conflict,
            field: "Hosts[1].HOSTNQN"
        ),
        .init(
            json: #"""
                {"Targets":[{"Alias":"t1"}],"Hosts":[{"Alias":"h1","HOSTNQN":"nqn.2024-01.io.example:h"}],
                 "Groups":[{"Name":"g1","Targets":["t1"],"Hosts":["h1","h2"]}]}
                """#,
            kind: .notFound,
            field: "Groups[0].Hosts[1].Alias"
        ),
    ]

    @Test("an import stops at the first error, named by its path in the document", arguments: imports)
    func importError(_ input: Import) throws {
        do {
            _ = try Sample.decode(Fabric.self, input.json)
            Issue.record("imported")
        } catch let error as ModelError {
            #expect(error.kind == input.kind, "\(error)")
            #expect(error.field == input.field, "\(error)")
        }
    }
}

// MARK: - Changes

/// Renames follow into every reference, deletes unlink, and every list stays sorted.
@Suite("Fabric model: changes")
struct FabricModelChangeTests {
    @Test("a host rename follows into access lists and groups, in sorted place")
    func hostRename() throws {
        var fabric = try Sample.fabric()
        try fabric.updateHost("h1", .init(alias: "a1"))
        #expect(fabric.hosts.map(\.alias) == ["a1", "h2", "h3"])
        #expect(try fabric.host("a1").nqn == Sample.h1NQN)
        #expect(try fabric.subsystem(target: "t1", nqn: Sample.s2).hosts == ["a1", "h3"])
        #expect(try fabric.group("g1").hosts == ["a1", "h2"])
        #expect(throws: ModelError.self) { try fabric.host("h1") }
    }

    @Test("a target rename follows into groups and keeps its ports and subsystems")
    func targetRename() throws {
        var fabric = try Sample.fabric()
        try fabric.addGroupMember(group: "g1", target: "t1")
        let old = try fabric.target("t2")
        try fabric.updateTarget("t2", .init(alias: "a2"))
        #expect(fabric.targets.map(\.alias) == ["a2", "t1"])
        #expect(try fabric.group("g1").targets == ["a2", "t1"])
        var renamed = try fabric.target("a2")
        renamed.alias = "t2"
        #expect(renamed == old)
    }

    @Test("deleting a host takes it off access lists and out of groups")
    func hostDelete() throws {
        var fabric = try Sample.fabric()
        try fabric.deleteHost("h1")
        #expect(fabric.hosts.map(\.alias) == ["h2", "h3"])
        #expect(try fabric.subsystem(target: "t1", nqn: Sample.s2).hosts == ["h3"])
        #expect(try fabric.group("g1").hosts == ["h2"])
    }

    @Test("deleting a target takes it out of its groups, which stay")
    func targetDelete() throws {
        var fabric = try Sample.fabric()
        try fabric.deleteTarget("t2")
        #expect(fabric.targets.map(\.alias) == ["t1"])
        #expect(try fabric.group("g1") == FabricGroup(name: "g1", hosts: ["h1", "h2"]))
    }

    @Test("targets, hosts, groups, ports, subsystems, namespaces, access lists and members stay sorted")
    func sortedLists() throws {
        var fabric = Fabric()
        for alias in ["hb", "hc", "ha"] {
            try fabric.addHost(FabricHost(alias: alias, nqn: "nqn.2024-01.io.example:\(alias)"))
        }
        try fabric.addTarget(FabricTarget(alias: "tz"))
        try fabric.addTarget(
            FabricTarget(
                alias: "tm",
                ports: [Sample.tcp(5, "10.0.0.5"), Sample.tcp(1, "10.0.0.1")],
                subsystems: [
                    FabricSubsystem(nqn: Sample.s2),
                    FabricSubsystem(
                        nqn: Sample.s1,
                        allowAnyHost: false,
                        namespaces: [
                            FabricNamespace(namespaceID: 9, deviceID: -1),
                            FabricNamespace(namespaceID: 2, devicePath: "/dev/nullb2"),
                        ],
                        hosts: ["hc", "ha"]
                    ),
                ]
            )
        )
        try fabric.addTarget(FabricTarget(alias: "ta"))
        try fabric.setPort(target: "tm", Sample.tcp(3, "10.0.0.3"))
        try fabric.setNamespace(target: "tm", subsystem: Sample.s1, FabricNamespace(namespaceID: 4, deviceID: -1))
        try fabric.allowHost(target: "tm", subsystem: Sample.s1, host: "hb")
        for name in ["gz", "ga"] { try fabric.addGroup(name) }
        for target in ["tz", "ta"] { try fabric.addGroupMember(group: "ga", target: target) }
        for host in ["hc", "ha"] { try fabric.addGroupMember(group: "ga", host: host) }

        #expect(fabric.hosts.map(\.alias) == ["ha", "hb", "hc"])
        #expect(fabric.targets.map(\.alias) == ["ta", "tm", "tz"])
        #expect(fabric.groups.map(\.name) == ["ga", "gz"])
        let target = try fabric.target("tm")
        #expect(target.ports.map(\.portID) == [1, 3, 5])
        #expect(target.subsystems.map(\.nqn) == [Sample.s1, Sample.s2])
        #expect(target.subsystems[0].namespaces.map(\.namespaceID) == [2, 4, 9])
        #expect(target.subsystems[0].hosts == ["ha", "hb", "hc"])
        #expect(try fabric.group("ga") == FabricGroup(name: "ga", targets: ["ta", "tz"], hosts: ["ha", "hc"]))
    }

    @Test("setPort creates, replaces by PORTID and renumbers in place")
    func setPort() throws {
        var fabric = try Sample.fabric()
        #expect(try fabric.setPort(target: "t1", Sample.tcp(9, "192.168.0.9")))
        #expect(!(try fabric.setPort(target: "t1", Sample.tcp(9, "192.168.0.10"))))
        #expect(!(try fabric.setPort(target: "t1", Sample.tcp(3, "192.168.0.10"), replacing: 9)))
        let ports = try fabric.target("t1").ports
        #expect(ports.map(\.portID) == [1, 2, 3])
        #expect(ports.last == Sample.tcp(3, "192.168.0.10"))
        // The same address on another service is another port.
        #expect(try fabric.setPort(target: "t1", Sample.tcp(4, "192.168.0.1", 4421)))
    }
}

// MARK: - Access

/// The fabric of the access tests: hosts h1, h2, h3; target `open` in no group (ports 2 and 1;
/// `any` for any host, `acl` for h1 and h3, `empty` for nobody), target `closed` in g1 with h2
/// and h3 (`any`, and `acl` for h1 and h3), target `lonely` in g2, which has no hosts (`any`).
private enum Access {
    static let nqn1 = "nqn.2024-01.io.example:host-1"
    static let nqn2 = "nqn.2024-01.io.example:host-2"
    static let nqn3 = "nqn.2024-01.io.example:host-3"
    static let acl = "nqn.2024-01.io.example:acl"
    static let any = "nqn.2024-01.io.example:any"
    static let empty = "nqn.2024-01.io.example:empty"

    static func fabric() throws -> Fabric {
        try Fabric(
            targets: [
                FabricTarget(
                    alias: "open",
                    ports: [Sample.tcp(2, "10.0.0.1"), Sample.tcp(1, "10.0.0.1", 4421)],
                    subsystems: [
                        FabricSubsystem(nqn: any),
                        FabricSubsystem(nqn: acl, allowAnyHost: false, hosts: ["h1", "h3"]),
                        FabricSubsystem(nqn: empty, allowAnyHost: false),
                    ]
                ),
                FabricTarget(
                    alias: "closed",
                    ports: [Sample.tcp(1, "10.0.1.1")],
                    subsystems: [
                        FabricSubsystem(nqn: any),
                        FabricSubsystem(nqn: acl, allowAnyHost: false, hosts: ["h1", "h3"]),
                    ]
                ),
                FabricTarget(
                    alias: "lonely",
                    ports: [Sample.tcp(1, "10.0.2.1")],
                    subsystems: [FabricSubsystem(nqn: any)]
                ),
            ],
            hosts: [
                FabricHost(alias: "h1", nqn: nqn1),
                FabricHost(alias: "h2", nqn: nqn2),
                FabricHost(alias: "h3", nqn: nqn3),
            ],
            groups: [
                FabricGroup(name: "g1", targets: ["closed"], hosts: ["h2", "h3"]),
                FabricGroup(name: "g2", targets: ["lonely"]),
            ]
        )
    }

    /// An entry reduced to what the access tests compare.
    struct Row: Hashable, CustomStringConvertible {
        var target: String
        var nqn: String
        var portID: UInt16
        var allowed: Set<String>?
        var description: String { "\(target) \(nqn) port \(portID) \(allowed.map { "\($0.sorted())" } ?? "any host")" }
    }

    static func rows(_ fabric: Fabric, target: String? = nil) -> [Row] {
        fabric.discoveryEntries(target: target).map {
            Row(
                target: $0.targetAlias,
                nqn: $0.entry.subsystemNQN,
                portID: $0.entry.portIdentifier,
                allowed: $0.allowedHostNQNs
            )
        }
    }
}

/// Who sees what: AllowAnyHost, access lists and the group rule (nvme-dem §5).
@Suite("Fabric model: access")
struct FabricModelAccessTests {
    @Test(
        "a host sees the shared and restricted subsystems of the targets the group rule leaves it",
        arguments: [
            ("h1", ["open/any"], ["open/acl"]),
            ("h2", ["closed/any", "open/any"], []),
            ("h3", ["closed/any", "open/any"], ["closed/acl", "open/acl"]),
        ]
    )
    func visibleSubsystems(_ host: String, _ shared: [String], _ restricted: [String]) throws {
        let visible = try Access.fabric().subsystems(visibleTo: host)
        let name = { (reference: SubsystemReference) in
            "\(reference.target)/\(reference.nqn.dropFirst("nqn.2024-01.io.example:".count))"
        }
        #expect(visible.shared.map(name) == shared)
        #expect(visible.restricted.map(name) == restricted)
    }

    @Test("subsystems(visibleTo:) of an unknown host is not found")
    func visibleToUnknownHost() throws {
        let error = #expect(throws: ModelError.self) { try Access.fabric().subsystems(visibleTo: "h9") }
        #expect(error?.kind == .notFound)
        #expect(error?.field == "Alias")
    }

    @Test("every entry: target, subsystem and PORTID order, one entry per port")
    func allEntries() throws {
        let rows = Access.rows(try Access.fabric())
        let both: Set<String> = [Access.nqn1, Access.nqn3]
        #expect(
            rows == [
                .init(target: "closed", nqn: Access.acl, portID: 1, allowed: [Access.nqn3]),
                .init(target: "closed", nqn: Access.any, portID: 1, allowed: [Access.nqn2, Access.nqn3]),
                .init(target: "open", nqn: Access.acl, portID: 1, allowed: both),
                .init(target: "open", nqn: Access.acl, portID: 2, allowed: both),
                .init(target: "open", nqn: Access.any, portID: 1, allowed: nil),
                .init(target: "open", nqn: Access.any, portID: 2, allowed: nil),
            ]
        )
    }

    @Test("an allow-any subsystem on a target in no group is for every host (nil)")
    func allowAnyUngrouped() throws {
        let rows = Access.rows(try Access.fabric(), target: "open").filter { $0.nqn == Access.any }
        #expect(rows.map(\.portID) == [1, 2])
        #expect(rows.allSatisfy { $0.allowed == nil })
    }

    @Test("a restricted subsystem is for exactly its access list's HOSTNQNs")
    func restricted() throws {
        var fabric = try Access.fabric()
        let rows = Access.rows(fabric, target: "open").filter { $0.nqn == Access.acl }
        #expect(rows.map(\.allowed) == [[Access.nqn1, Access.nqn3], [Access.nqn1, Access.nqn3]])

        try fabric.disallowHost(target: "open", subsystem: Access.acl, host: "h3")
        try fabric.allowHost(target: "open", subsystem: Access.acl, host: "h2")
        try fabric.updateHost("h1", .init(nqn: "nqn.2024-01.io.example:host-1b"))
        let changed = Access.rows(fabric, target: "open").filter { $0.nqn == Access.acl }
        #expect(
            changed.map(\.allowed) == [
                [Access.nqn2, "nqn.2024-01.io.example:host-1b"], [Access.nqn2, "nqn.2024-01.io.example:host-1b"],
            ]
        )
    }

    @Test("a restricted subsystem with an empty access list yields no entry")
    func emptyAccessList() throws {
        var fabric = try Access.fabric()
        #expect(!Access.rows(fabric).contains { $0.nqn == Access.empty })
        // Emptied by deleting its hosts.
        try fabric.deleteHost("h1")
        try fabric.deleteHost("h3")
        #expect(!Access.rows(fabric).contains { $0.nqn == Access.acl })
    }

    @Test("a grouped target is only for hosts sharing a group, allow-any or restricted")
    func groupedTarget() throws {
        var fabric = try Access.fabric()
        let rows = Access.rows(fabric, target: "closed")
        #expect(rows.first { $0.nqn == Access.any }?.allowed == [Access.nqn2, Access.nqn3])
        #expect(rows.first { $0.nqn == Access.acl }?.allowed == [Access.nqn3])
        #expect(Access.rows(fabric, target: "lonely").isEmpty, "a group without hosts hides its targets")

        // h1 joins g2: the lonely target is now for h1 only.
        try fabric.addGroupMember(group: "g2", host: "h1")
        #expect(Access.rows(fabric, target: "lonely").map(\.allowed) == [[Access.nqn1]])
        #expect(try fabric.subsystems(visibleTo: "h1").shared.map(\.target) == ["lonely", "open"])

        // Out of every group, a target is for everyone again.
        try fabric.removeGroupMember(group: "g1", target: "closed")
        #expect(Access.rows(fabric, target: "closed").map(\.allowed) == [[Access.nqn1, Access.nqn3], nil])
    }

    /// A port and the discovery log entry fields it must yield.
    struct EntryCase: Sendable, CustomTestStringConvertible {
        var name: String
        var port: FabricPort
        var transportType: UInt8
        var addressFamily: UInt8
        var transportRequirements: UInt8
        var transportSpecificAddressSubtype: TransportSpecificAddressSubtype
        var testDescription: String { name }
    }

    static let entryCases: [EntryCase] = [
        .init(
            name: "tcp ipv4",
            port: Sample.tcp(7, "192.168.0.1", 4420),
            transportType: 3,
            addressFamily: 1,
            transportRequirements: 0,
            transportSpecificAddressSubtype: .tcp(securityType: 0)
        ),
        .init(
            name: "tcp ipv6 TLS 1.3, secure channel required",
            port: FabricPort(
                portID: 65534,
                transportType: "tcp",
                addressFamily: "ipv6",
                transportAddress: "fd00::1",
                transportServiceIdentifier: 8009,
                transportRequirements: "required",
                securityType: "tls1.3"
            ),
            transportType: 3,
            addressFamily: 2,
            transportRequirements: 1,
            transportSpecificAddressSubtype: .tcp(securityType: 2)
        ),
        .init(
            name: "tcp TSAS none, secure channel not required",
            port: FabricPort(
                portID: 1,
                transportType: "tcp",
                addressFamily: "ipv4",
                transportAddress: "10.0.0.1",
                transportRequirements: "not required",
                securityType: "none"
            ),
            transportType: 3,
            addressFamily: 1,
            transportRequirements: 2,
            transportSpecificAddressSubtype: .tcp(securityType: 0)
        ),
        .init(
            name: "rdma ib",
            port: FabricPort(portID: 2, transportType: "rdma", addressFamily: "ib", transportAddress: "fe80::2"),
            transportType: 1,
            addressFamily: 3,
            transportRequirements: 0,
            transportSpecificAddressSubtype: .rdmaDefault
        ),
        .init(
            name: "fc",
            port: FabricPort(
                portID: 3,
                transportType: "fc",
                addressFamily: "fc",
                transportAddress: "nn-0x1000000000000001:pn-0x2000000000000001",
                transportServiceIdentifier: 0
            ),
            transportType: 2,
            addressFamily: 4,
            transportRequirements: 0,
            transportSpecificAddressSubtype: .raw([UInt8](repeating: 0, count: 256))
        ),
        .init(
            name: "loop",
            port: FabricPort(
                portID: 4,
                transportType: "loop",
                addressFamily: "loop",
                transportAddress: "loop",
                transportServiceIdentifier: 0
            ),
            transportType: 254,
            addressFamily: 254,
            transportRequirements: 0,
            transportSpecificAddressSubtype: .raw([UInt8](repeating: 0, count: 256))
        ),
    ]

    @Test("a port's discovery log entry", arguments: entryCases)
    func entryFields(_ input: EntryCase) throws {
        let fabric = try Fabric(
            targets: [FabricTarget(alias: "t1", ports: [input.port], subsystems: [FabricSubsystem(nqn: Sample.s1)])],
            hosts: [],
            groups: []
        )
        let entries = fabric.discoveryEntries()
        try #require(entries.count == 1)
        let entry = entries[0].entry
        #expect(entries[0].targetAlias == "t1")
        #expect(entry == input.port.discoveryLogEntry(subsystemNQN: Sample.s1))
        #expect(entry.transportType.rawValue == input.transportType)
        #expect(entry.addressFamily.rawValue == input.addressFamily)
        #expect(entry.subsystemType == .nvm)
        #expect(entry.subsystemType.rawValue == 2)
        #expect(entry.transportRequirements.rawValue == input.transportRequirements)
        #expect(Int(entry.portIdentifier) == input.port.portID)
        #expect(entry.transportServiceIdentifier == String(input.port.transportServiceIdentifier))
        #expect(entry.subsystemNQN == Sample.s1)
        #expect(entry.transportAddress == input.port.transportAddress)
        #expect(entry.controllerIdentifier == 0xFFFF)
        #expect(entry.transportSpecificAddressSubtype == input.transportSpecificAddressSubtype)
    }
}

// MARK: - Zoning

/// Zoning (TP8010): zones evaluated with the access lists and groups as one rule.
@Suite("Fabric model: zoning")
struct FabricModelZoningTests {
    /// The access fabric with every access list emptied: what the lists gave is given by zones.
    static func zonedInsteadOfLists() throws -> Fabric {
        var fabric = try Access.fabric()
        for (target, hosts) in [("open", ["h1", "h3"]), ("closed", ["h1", "h3"])] {
            for host in hosts { try fabric.disallowHost(target: target, subsystem: Access.acl, host: host) }
        }
        return fabric
    }

    @Test("an access list and a zone with the same hosts and subsystem yield the same pages; groups still apply")
    func sameAsAccessLists() throws {
        let lists = try Access.fabric()
        var zoned = try Self.zonedInsteadOfLists()
        #expect(Access.rows(zoned) != Access.rows(lists), "without the lists, the pages differ")
        // The open target's list as a zone on its ports; the closed target's list was h1, h3 of
        // whom only h3 shares its group: one zone member on its port.
        try zoned.addZoneMember(group: "lab", zone: "open-acl", FabricZoneMember(kind: .host, nqn: "h1"))
        try zoned.addZoneMember(group: "lab", zone: "open-acl", FabricZoneMember(kind: .host, nqn: Access.nqn3))
        try zoned.addZoneMember(
            group: "lab",
            zone: "open-acl",
            FabricZoneMember(kind: .subsystem, nqn: Access.acl, transportAddress: "10.0.0.1")
        )
        #expect(Access.rows(zoned) != Access.rows(lists), "configured, not active: no effect")
        zoned.activateZoning()
        // The closed target's port is 10.0.1.1: the open-acl zone does not reach it.
        #expect(Access.rows(zoned, target: "open") == Access.rows(lists, target: "open"))
        try zoned.addZoneMember(group: "lab", zone: "closed-acl", FabricZoneMember(kind: .host, nqn: Access.nqn3))
        try zoned.addZoneMember(
            group: "lab",
            zone: "closed-acl",
            FabricZoneMember(
                kind: .subsystem,
                nqn: Access.acl,
                transportAddress: "10.0.1.1",
                transportServiceIdentifier: 4420
            )
        )
        zoned.activateZoning()
        #expect(Access.rows(zoned) == Access.rows(lists))
        for host in ["h1", "h2", "h3"] {
            #expect(try zoned.subsystems(visibleTo: host).restricted == lists.subsystems(visibleTo: host).restricted)
        }
        let rules = zoned.accessRules
        #expect(
            zoned.visibility(host: "h3", target: "closed", subsystem: Access.acl, rules: rules)
                == "in zone lab/closed-acl"
        )
        // The target's own access list (what dem-em writes to nvmet) lets the zoned hosts in.
        let open = try zoned.target("open")
        let access = zoned.subsystemAccess(of: open, rules: rules).first { $0.subsystem.nqn == Access.acl }
        #expect(access?.allowedHostNQNs == [Access.nqn1, Access.nqn3])
    }

    @Test("a zone reaches a host the lists and groups leave out, on the port it names only")
    func zoneAddsToGroups() throws {
        var fabric = try Access.fabric()
        // h1 is not in g1, so closed's `any` is hidden from it; a zone gives it the one port.
        try fabric.addZoneMember(group: "z", zone: "a", FabricZoneMember(kind: .host, nqn: Access.nqn1))
        try fabric.addZoneMember(group: "z", zone: "a", FabricZoneMember(kind: .subsystem, nqn: Access.any))
        fabric.activateZoning()
        let closedAny = Access.rows(fabric, target: "closed").first { $0.nqn == Access.any }
        #expect(closedAny?.allowed == [Access.nqn1, Access.nqn2, Access.nqn3])
        #expect(
            fabric.visibility(host: "h1", target: "closed", subsystem: Access.any, rules: fabric.accessRules)
                == "in zone z/a"
        )
        // An entry for any host stays for any host.
        #expect(Access.rows(fabric, target: "open").first { $0.nqn == Access.any }?.allowed == nil)
        // The empty subsystem nobody may use stays out until a zone names it.
        #expect(!Access.rows(fabric).contains { $0.nqn == Access.empty })
        try fabric.addZoneMember(group: "z", zone: "a", FabricZoneMember(kind: .subsystem, nqn: Access.empty))
        fabric.activateZoning()
        #expect(Access.rows(fabric).filter { $0.nqn == Access.empty }.map(\.allowed) == [[Access.nqn1], [Access.nqn1]])
    }

    @Test("the dry run names per host what it gains and loses; activation changes exactly that")
    func dryRun() throws {
        var fabric = try Access.fabric()
        try fabric.addZoneMember(group: "z", zone: "a", FabricZoneMember(kind: .host, nqn: "h2"))
        try fabric.addZoneMember(group: "z", zone: "a", FabricZoneMember(kind: .subsystem, nqn: Access.acl))
        let outsider = "nqn.2024-01.io.example:registered-only"
        let changes = fabric.zoningChanges(otherHosts: [outsider])
        #expect(changes.map(\.hostNQN) == [Access.nqn2])
        #expect(changes.first?.host == "h2")
        #expect(changes.first?.gained.map(\.target) == ["closed", "open", "open"])
        #expect(changes.first?.lost == [])
        var activated = fabric
        activated.activateZoning()
        #expect(activated.zoningChanges() == [], "nothing pending after activation")
        // Deactivating: delete the zone, the dry run shows the loss.
        try activated.deleteZone(group: "z", zone: "a")
        #expect(activated.zoneGroups.isEmpty)
        let undo = activated.zoningChanges()
        #expect(undo.map(\.hostNQN) == [Access.nqn2])
        #expect(undo.first?.lost.count == 3)
        // An entry going from any host to some: every known host not kept loses it.
        var restricted = try Access.fabric()
        try restricted.updateSubsystem(target: "open", nqn: Access.any, .init(allowAnyHost: false))
        let all = try Access.fabric().accessChanges(to: restricted, otherHosts: [outsider])
        #expect(Set(all.map(\.hostNQN)) == [Access.nqn1, Access.nqn2, Access.nqn3, outsider])
    }

    @Test(
        "bad members are refused with the field named; the configuration round-trips and a replacement names lost zone groups"
    )
    func badMembersAndRoundTrip() throws {
        var fabric = try Access.fabric()
        func refused(_ member: FabricZoneMember, _ field: String) {
            var copy = fabric
            let error = #expect(throws: ModelError.self) { try copy.addZoneMember(group: "z", zone: "a", member) }
            #expect(error?.field == field, "\(member)")
        }
        refused(FabricZoneMember(kind: .host, nqn: "not an nqn"), "NQN")
        refused(FabricZoneMember(kind: .host, nqn: Access.nqn1, transportAddress: "10.0.0.1"), "TRADDR")
        refused(FabricZoneMember(kind: .subsystem, nqn: Access.any, transportServiceIdentifier: 4420), "TRSVCID")
        refused(
            FabricZoneMember(
                kind: .subsystem,
                nqn: Access.any,
                transportAddress: "10.0.0.1",
                transportServiceIdentifier: 70000
            ),
            "TRSVCID"
        )
        #expect(throws: ModelError.self) { try fabric.addZone(group: "z/x", zone: "a") }
        #expect(throws: ModelError.self) {
            try fabric.removeZoneMember(group: "z", zone: "a", kind: .host, nqn: Access.nqn1)
        }
        try fabric.addZone(group: "z", zone: "a")
        #expect(throws: ModelError.self) { try fabric.addZone(group: "z", zone: "a") }
        try fabric.addZoneMember(group: "z", zone: "a", FabricZoneMember(kind: .host, nqn: "h1"))
        #expect(
            try !fabric.addZoneMember(group: "z", zone: "a", FabricZoneMember(kind: .host, nqn: Access.nqn1)),
            "the alias is its NQN"
        )
        fabric.activateZoning()
        let data = try JSONEncoder().encode(fabric)
        #expect(try JSONDecoder().decode(Fabric.self, from: data) == fabric)
        let member =
            #"{"Targets":[],"ZoneGroups":[{"Name":"z","Zones":[{"Name":"a","Members":[{"Type":"router","NQN":"nqn.2024-01.io.example:x"}]}]}]}"#
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(Fabric.self, from: Data(member.utf8)) }
        // nvme-dem's configuration has no zoning: its export writes none.
        let plain = String(decoding: try JSONEncoder().encode(try Access.fabric()), as: UTF8.self)
        #expect(!plain.contains("Zone"))
        let removed = FabricReplacement(old: fabric, new: try Access.fabric())
        #expect(removed.zoneGroups == ["z"])
        #expect(!removed.isEmpty)
    }
}
