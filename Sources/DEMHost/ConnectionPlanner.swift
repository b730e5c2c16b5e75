import DEMCore
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// When dem-ac disconnects the controllers it created.
public enum DisconnectPolicy: String, Sendable, Hashable, Codable, CaseIterable {
    /// Never: controllers stay after their subsystem left every discovery log page.
    case never
    /// When no watched discovery controller lists the subsystem at that address any more.
    case removed
}

/// The host's side of every connect: its identity and the connect tunables.
public struct HostConnectParameters: Sendable, Hashable {
    public var hostNQN: String
    public var hostID: String
    public var hostTraddr: String?
    public var hostIface: String?
    public var ctrlLossTimeout: Int?
    public var keepAliveTimeout: Int?
    public var nrIOQueues: Int?
    /// The host's DH-HMAC-CHAP secrets, passed to the kernel on every connect.
    public var dhchapSecret: DHCHAPSecret?
    public var dhchapControllerSecret: DHCHAPSecret?

    public init(
        hostNQN: String,
        hostID: String,
        hostTraddr: String? = nil,
        hostIface: String? = nil,
        ctrlLossTimeout: Int? = nil,
        keepAliveTimeout: Int? = nil,
        nrIOQueues: Int? = nil
    ) {
        self.hostNQN = hostNQN
        self.hostID = hostID
        self.hostTraddr = hostTraddr
        self.hostIface = hostIface
        self.ctrlLossTimeout = ctrlLossTimeout
        self.keepAliveTimeout = keepAliveTimeout
        self.nrIOQueues = nrIOQueues
    }

    /// The parameters of `identity`, its host ID written as a lowercase UUID as nvme-cli does.
    public init(
        identity: HostIdentity,
        hostTraddr: String? = nil,
        hostIface: String? = nil,
        ctrlLossTimeout: Int? = nil,
        keepAliveTimeout: Int? = nil,
        nrIOQueues: Int? = nil
    ) {
        self.init(
            hostNQN: identity.hostNQN.value,
            hostID: identity.hostIdentifierUUID.uuidString.lowercased(),
            hostTraddr: hostTraddr,
            hostIface: hostIface,
            ctrlLossTimeout: ctrlLossTimeout,
            keepAliveTimeout: keepAliveTimeout,
            nrIOQueues: nrIOQueues
        )
        dhchapSecret = identity.dhchapSecret
        dhchapControllerSecret = identity.dhchapControllerSecret
    }
}

/// What identifies a connection: transport, address, service, subsystem and host NQN.
public struct ConnectionKey: Sendable, Hashable, Codable, CustomStringConvertible {
    public var transport: String
    public var traddr: String
    public var trsvcid: String
    public var subsystemNQN: String
    public var hostNQN: String

    public init(transport: String, traddr: String, trsvcid: String, subsystemNQN: String, hostNQN: String) {
        self.transport = transport
        self.traddr = traddr
        self.trsvcid = trsvcid
        self.subsystemNQN = subsystemNQN
        self.hostNQN = hostNQN
    }

    public init(_ options: ConnectOptions) {
        self.init(
            transport: options.transport,
            traddr: options.traddr,
            trsvcid: options.trsvcid,
            subsystemNQN: options.nqn,
            hostNQN: options.hostNQN
        )
    }

    enum CodingKeys: String, CodingKey {
        case transport
        case traddr
        case trsvcid
        case subsystemNQN = "subnqn"
        case hostNQN = "hostnqn"
    }

    public var description: String {
        "\(subsystemNQN) at \(transport) \(ConnectionPlanner.hostPort(traddr, trsvcid)) as \(hostNQN)"
    }

    /// Whether `controller` is this connection: same transport, address, service and subsystem,
    /// and the same host NQN when the controller shows one. Addresses are compared in canonical
    /// form (`::0:1` is `::1`), service IDs as numbers when both are.
    public func matches(_ controller: KernelController) -> Bool {
        if let hostNQN = controller.hostNQN, hostNQN != self.hostNQN { return false }
        return ConnectionPlanner.Address(self) == ConnectionPlanner.Address(controller)
    }
}

/// One step towards the wanted connections.
public enum ConnectionAction: Sendable, Hashable, CustomStringConvertible {
    case connect(ConnectOptions)
    /// Delete the kernel controller `name` (such as `nvme3`).
    case disconnect(name: String)

    public var description: String {
        switch self {
        case .connect(let options): "connect \(ConnectionKey(options))"
        case .disconnect(let name): "disconnect \(name)"
        }
    }
}

/// Decides which controllers to connect and which to disconnect. Pure: it reads nothing and
/// changes nothing.
public enum ConnectionPlanner {
    /// The transports the kernel's host can connect to from a discovery log entry.
    public static let supportedTransports: [TransportType: String] = [.tcp: "tcp", .rdma: "rdma"]

    /// The actions that bring the kernel's controllers in step with `wanted`.
    ///
    /// - Parameters:
    ///   - wanted: the entries of every watched discovery controller; only NVM subsystems over
    ///     TCP or RDMA are considered, and the same subsystem at the same address seen through
    ///     several discovery controllers is connected once.
    ///   - existing: the kernel's controllers. One that is deleting or dead does not count.
    ///   - ledger: the controllers dem-ac created; no other controller is ever disconnected.
    ///   - host: the host's identity and connect tunables.
    ///   - policy: whether dem-ac's controllers whose entry is no longer wanted are disconnected.
    /// - Returns: connects in the order of `wanted`, then disconnects in the order of
    ///   `existing`.
    public static func plan(
        wanted: [DiscoveryLogEntry],
        existing: [KernelController],
        ledger: ConnectionLedger,
        host: HostConnectParameters,
        policy: DisconnectPolicy
    ) -> [ConnectionAction] {
        let present = existing.filter { !$0.state.isGoingAway }
        var wantedAddresses: Set<Address> = []
        var actions: [ConnectionAction] = []
        for entry in wanted {
            guard let options = connectOptions(for: entry, host: host) else { continue }
            let key = ConnectionKey(options)
            guard wantedAddresses.insert(Address(key)).inserted else { continue }
            if !present.contains(where: key.matches) { actions.append(.connect(options)) }
        }
        guard policy == .removed else { return actions }
        for controller in present where ledger.owns(controller) {
            let sameHost = controller.hostNQN.map { $0 == host.hostNQN } ?? true
            let stillWanted = sameHost && wantedAddresses.contains(Address(controller))
            if !stillWanted { actions.append(.disconnect(name: controller.name)) }
        }
        return actions
    }

    /// The connect options of `entry`, or nil when it is not an NVM subsystem over a
    /// supported transport.
    public static func connectOptions(for entry: DiscoveryLogEntry, host: HostConnectParameters) -> ConnectOptions? {
        guard entry.subsystemType == .nvm, let transport = supportedTransports[entry.transportType] else { return nil }
        return ConnectOptions(
            transport: transport,
            traddr: entry.transportAddress,
            trsvcid: entry.transportServiceIdentifier,
            nqn: entry.subsystemNQN,
            hostNQN: host.hostNQN,
            hostID: host.hostID,
            hostTraddr: host.hostTraddr,
            hostIface: host.hostIface,
            ctrlLossTimeout: host.ctrlLossTimeout,
            keepAliveTimeout: host.keepAliveTimeout,
            nrIOQueues: host.nrIOQueues,
            dhchapSecret: host.dhchapSecret,
            dhchapControllerSecret: host.dhchapControllerSecret
        )
    }

    /// `traddr:trsvcid`, with an IPv6 address in brackets; `traddr` alone without a service.
    static func hostPort(_ traddr: String, _ trsvcid: String) -> String {
        let address = traddr.contains(":") ? "[\(traddr)]" : traddr
        return trsvcid.isEmpty ? address : "\(address):\(trsvcid)"
    }

    /// Transport, address, service and subsystem in comparable form (host NQN aside).
    struct Address: Hashable {
        var transport: String
        var traddr: String
        var trsvcid: String
        var subsystemNQN: String

        init(transport: String, traddr: String, trsvcid: String, subsystemNQN: String) {
            self.transport = transport.lowercased()
            self.traddr = Self.canonicalAddress(traddr)
            self.trsvcid = Self.canonicalService(trsvcid)
            self.subsystemNQN = subsystemNQN
        }

        init(_ key: ConnectionKey) {
            self.init(
                transport: key.transport,
                traddr: key.traddr,
                trsvcid: key.trsvcid,
                subsystemNQN: key.subsystemNQN
            )
        }

        init(_ controller: KernelController) {
            self.init(
                transport: controller.transport,
                traddr: controller.traddr,
                trsvcid: controller.trsvcid,
                subsystemNQN: controller.subsystemNQN
            )
        }

        /// An IP address (brackets and surrounding blanks dropped) as `inet_ntop` writes it;
        /// anything else lowercased.
        static func canonicalAddress(_ raw: String) -> String {
            var text = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if text.hasPrefix("["), text.hasSuffix("]") { text = String(text.dropFirst().dropLast()) }
            var v4 = in_addr()
            var v6 = in6_addr()
            var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
            if inet_pton(AF_INET, text, &v4) == 1, inet_ntop(AF_INET, &v4, &buffer, socklen_t(buffer.count)) != nil {
                return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            }
            if inet_pton(AF_INET6, text, &v6) == 1, inet_ntop(AF_INET6, &v6, &buffer, socklen_t(buffer.count)) != nil {
                return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            }
            return text.lowercased()
        }

        /// A decimal port as its number (`04420` is `4420`); anything else as written.
        static func canonicalService(_ raw: String) -> String {
            let text = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !text.isEmpty, text.allSatisfy({ $0.isASCII && $0.isNumber }), let number = Int(text) else {
                return text
            }
            return String(number)
        }
    }
}
