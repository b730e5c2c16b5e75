import DEMCore
import Foundation
import Testing

@testable import DEMHost

/// A fresh folder under the system's temporary directory, removed by `remove()`.
struct TemporaryFolder {
    let path: String

    init() throws {
        let base = NSTemporaryDirectory() + "dem-host-tests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        path = base
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }

    /// Creates `relative` as a folder.
    func folder(_ relative: String) throws {
        try FileManager.default.createDirectory(atPath: path + "/" + relative, withIntermediateDirectories: true)
    }

    /// Writes `text` to `relative`, creating its folder.
    func file(_ relative: String, _ text: String) throws {
        try file(relative, Data(text.utf8))
    }

    func file(_ relative: String, _ data: Data) throws {
        let full = path + "/" + relative
        try FileManager.default.createDirectory(
            atPath: (full as NSString).deletingLastPathComponent,
            withIntermediateDirectories: true
        )
        try data.write(to: URL(fileURLWithPath: full))
    }

    func read(_ relative: String) -> String? {
        FileManager.default.contents(atPath: path + "/" + relative).map { String(decoding: $0, as: UTF8.self) }
    }
}

/// Shared names and entries.
enum HostSample {
    static let hostNQN = "nqn.2014-08.org.nvmexpress:uuid:3a8b2c1d-0000-4000-8000-00000000000a"
    static let otherHostNQN = "nqn.2014-08.org.nvmexpress:uuid:3a8b2c1d-0000-4000-8000-00000000000b"
    static let hostID = "3a8b2c1d-0000-4000-8000-00000000000a"
    static let volumeA = "nqn.2024-01.io.dem:vol-a"
    static let volumeB = "nqn.2024-01.io.dem:vol-b"
    static let discoveryNQN = "nqn.2014-08.org.nvmexpress.discovery"

    static let host = HostConnectParameters(hostNQN: hostNQN, hostID: hostID)

    static func entry(
        _ nqn: String = volumeA,
        traddr: String = "10.0.2.15",
        trsvcid: String = "4420",
        transport: TransportType = .tcp,
        subtype: SubsystemType = .nvm,
        portID: UInt16 = 1
    ) -> DiscoveryLogEntry {
        DiscoveryLogEntry(
            transportType: transport,
            addressFamily: .ipv4,
            subsystemType: subtype,
            portIdentifier: portID,
            transportServiceIdentifier: trsvcid,
            subsystemNQN: nqn,
            transportAddress: traddr
        )
    }

    static func controller(
        _ name: String,
        nqn: String = volumeA,
        traddr: String = "10.0.2.15",
        trsvcid: String = "4420",
        transport: String = "tcp",
        hostNQN: String? = HostSample.hostNQN,
        state: KernelControllerState = .live
    ) -> KernelController {
        KernelController(
            name: name,
            transport: transport,
            traddr: traddr,
            trsvcid: trsvcid,
            subsystemNQN: nqn,
            hostNQN: hostNQN,
            state: state
        )
    }

    /// The ledger record of a controller dem-ac created for `entry` as this host.
    static func record(_ name: String, _ entry: DiscoveryLogEntry) -> ConnectionLedger.Record {
        ConnectionLedger.Record(
            name: name,
            key: ConnectionKey(ConnectionPlanner.connectOptions(for: entry, host: host)!)
        )
    }
}
