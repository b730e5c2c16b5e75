import DEMCore
import Foundation
import Testing

@testable import DEMEndpoint

@Suite("nvmetcli config.json")
struct NvmetcliConfigTests {
    static let host = "nqn.2014-08.org.nvmexpress:uuid:8c1c2e4a-7d1b-4f3e-9a55-0c2d3e4f5a6b"
    static let vol1 = "nqn.2024-01.io.example:vol1"
    static let vol2 = "nqn.2024-01.io.example:vol2"

    /// What `nvmetcli save` writes for a target with a TCP and an RDMA port, an open subsystem
    /// and one restricted to a host (keys it has that dem does not use are kept to prove they
    /// are ignored).
    static let sample = """
        {
          "hosts": [
            {
              "nqn": "\(host)"
            }
          ],
          "ports": [
            {
              "addr": {
                "adrfam": "ipv4",
                "traddr": "192.168.10.5",
                "treq": "not specified",
                "trsvcid": "4420",
                "trtype": "tcp",
                "tsas": "none"
              },
              "ana_groups": [
                {
                  "ana": {
                    "state": "optimized"
                  },
                  "grpid": 1
                }
              ],
              "param": {
                "inline_data_size": "16384",
                "pi_enable": "0"
              },
              "portid": 1,
              "referrals": [],
              "subsystems": [
                "\(vol1)"
              ]
            },
            {
              "addr": {
                "adrfam": "ipv4",
                "traddr": "192.168.20.5",
                "treq": "not specified",
                "trsvcid": "4421",
                "trtype": "rdma",
                "tsas": "reserved"
              },
              "ana_groups": [],
              "param": {},
              "portid": 2,
              "referrals": [],
              "subsystems": [
                "\(vol2)",
                "\(vol1)"
              ]
            }
          ],
          "subsystems": [
            {
              "allowed_hosts": [],
              "attr": {
                "allow_any_host": "1",
                "cntlid_max": "65519",
                "cntlid_min": "1",
                "model": "Linux",
                "pi_enable": "0",
                "serial": "a1b2c3d4e5f60718",
                "version": "1.3"
              },
              "namespaces": [
                {
                  "ana_grpid": 1,
                  "device": {
                    "nguid": "00000000-0000-0000-0000-000000000000",
                    "p2pmem": "",
                    "path": "/dev/nvme0n1",
                    "uuid": "5F6E7D8C-9BAA-4BCC-8DDE-EF0011223344"
                  },
                  "enable": 1,
                  "nsid": 1
                }
              ],
              "nqn": "\(vol1)"
            },
            {
              "allowed_hosts": [
                "\(host)"
              ],
              "attr": {
                "allow_any_host": "0",
                "model": "DEM volume",
                "serial": "0123456789abcdef",
                "version": "1.3"
              },
              "namespaces": [
                {
                  "device": {
                    "nguid": "11223344-5566-7788-99aa-bbccddeeff00",
                    "path": "/dev/nullb0"
                  },
                  "enable": 0,
                  "nsid": 2
                },
                {
                  "device": {
                    "path": "/srv/images/disk3.img"
                  },
                  "enable": 1,
                  "nsid": "3"
                }
              ],
              "nqn": "\(vol2)"
            }
          ]
        }
        """

    static var expected: EndpointConfiguration {
        EndpointConfiguration(
            ports: [
                FabricPort(
                    portID: 1,
                    transportType: "tcp",
                    addressFamily: "ipv4",
                    transportAddress: "192.168.10.5",
                    transportServiceIdentifier: 4420,
                    transportRequirements: "not specified",
                    securityType: "none"
                ),
                FabricPort(
                    portID: 2,
                    transportType: "rdma",
                    addressFamily: "ipv4",
                    transportAddress: "192.168.20.5",
                    transportServiceIdentifier: 4421,
                    transportRequirements: "not specified"
                ),
            ],
            hosts: [host],
            subsystems: [
                EndpointSubsystem(
                    nqn: vol1,
                    allowAnyHost: true,
                    serial: "a1b2c3d4e5f60718",
                    model: "Linux",
                    namespaces: [
                        EndpointNamespace(
                            namespaceID: 1,
                            devicePath: "/dev/nvme0n1",
                            uuid: "5f6e7d8c-9baa-4bcc-8dde-ef0011223344"
                        )
                    ],
                    ports: [1, 2]
                ),
                EndpointSubsystem(
                    nqn: vol2,
                    allowAnyHost: false,
                    serial: "0123456789abcdef",
                    model: "DEM volume",
                    namespaces: [
                        EndpointNamespace(
                            namespaceID: 2,
                            devicePath: "/dev/nullb0",
                            nguid: "11223344-5566-7788-99aa-bbccddeeff00",
                            enabled: false
                        ),
                        EndpointNamespace(namespaceID: 3, devicePath: "/srv/images/disk3.img"),
                    ],
                    hosts: [host],
                    ports: [2]
                ),
            ]
        )
    }

    @Test("a saved nvmetcli config decodes to the endpoint configuration, links moved to the subsystems")
    func decodeSample() throws {
        let configuration = try NvmetcliConfig.decode(Data(Self.sample.utf8))
        #expect(configuration == Self.expected)
    }

    @Test("encode then decode gives the same configuration; trsvcid and flags are strings as nvmetcli has them")
    func roundTrip() throws {
        let data = try NvmetcliConfig.encode(Self.expected)
        #expect(try NvmetcliConfig.decode(data) == Self.expected)

        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let ports = try #require(json["ports"] as? [[String: Any]])
        #expect(ports.map { $0["portid"] as? Int } == [1, 2])
        let addr = try #require(ports[1]["addr"] as? [String: String])
        #expect(
            addr == [
                "trtype": "rdma", "adrfam": "ipv4", "traddr": "192.168.20.5", "trsvcid": "4421",
                "treq": "not specified",
            ]
        )
        #expect(ports[1]["subsystems"] as? [String] == [Self.vol1, Self.vol2])
        let subsystems = try #require(json["subsystems"] as? [[String: Any]])
        let attr = try #require(subsystems[0]["attr"] as? [String: String])
        #expect(attr["allow_any_host"] == "1")
        let namespaces = try #require(subsystems[1]["namespaces"] as? [[String: Any]])
        #expect(namespaces.map { $0["enable"] as? Int } == [0, 1])
        #expect((namespaces[1]["device"] as? [String: String]) == ["path": "/srv/images/disk3.img"])
        #expect((json["hosts"] as? [[String: String]]) == [["nqn": Self.host]])
    }

    @Test("the tree read from an nvmet folder exports and imports unchanged")
    func exportOfTree() throws {
        let exported = try NvmetcliConfig.encode(NvmetSample.tree.configuration)
        #expect(try NvmetcliConfig.decode(exported) == NvmetSample.tree.configuration)
    }

    private func failure(_ text: String) -> NvmetcliConfigError? {
        do {
            _ = try NvmetcliConfig.decode(Data(text.utf8))
            return nil
        } catch {
            return error
        }
    }

    @Test("a namespace without a device path is refused, naming its JSON path")
    func missingDevicePath() throws {
        let bad = Self.sample.replacingOccurrences(of: "\"path\": \"/dev/nullb0\"", with: "\"pth\": \"/dev/nullb0\"")
        let error = try #require(failure(bad))
        #expect(error.path == "subsystems[1].namespaces[0].device.path")
        #expect(error.message == "missing")
        #expect(error.description == "subsystems[1].namespaces[0].device.path: missing")
    }

    @Test(
        "other malformed files name the path at fault",
        arguments: [
            (#"{"ports": [{"portid": 1, "addr": {"trtype": "tcp", "trsvcid": "http"}}]}"#, "ports[0].addr.trsvcid"),
            (
                #"{"ports": [{"portid": 1, "addr": {"trtype": "tcp"}, "subsystems": ["nqn.x:y"]}]}"#,
                "ports[0].subsystems[0]"
            ),
            (#"{"ports": [{"portid": "one", "addr": {"trtype": "tcp"}}]}"#, "ports[0].portid"),
            (
                #"{"subsystems": [{"nqn": "nqn.x:y", "namespaces": [{"nsid": 1, "device": {"path": 7}}]}]}"#,
                "subsystems[0].namespaces[0].device.path"
            ),
            (
                #"{"subsystems": [{"nqn": "nqn.x:y", "attr": {"allow_any_host": "maybe"}}]}"#,
                "subsystems[0].attr.allow_any_host"
            ),
            (#"{"subsystems": [{"nqn": "nqn.x:y"}, {"nqn": "nqn.x:y"}]}"#, "subsystems[1].nqn"),
            (#"{"hosts": [{"name": "h"}]}"#, "hosts[0].nqn"),
            (#"{"hosts": {}}"#, "hosts"),
            (#"[1, 2]"#, ""),
            (#"{"ports": [ }"#, ""),
        ]
    )
    func malformed(text: String, path: String) throws {
        let error = try #require(failure(text))
        #expect(error.path == path)
    }

    @Test("an empty object is an empty configuration")
    func empty() throws {
        #expect(try NvmetcliConfig.decode(Data("{}".utf8)) == EndpointConfiguration())
    }
}
