import DEMCore
import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// dem's multicast DNS responder (TP8009): on each IPv4 interface its discovery listeners
/// serve, it announces `_nvme-disc._tcp` with the `_cdc` subtype (three times, a second apart,
/// then again each time the TTL is half gone), answers queries, and says goodbye (TTL 0) on
/// shutdown. An interface whose socket cannot be opened is logged and left out; dem serves on.
///
/// An RFC 6762 responder of dem's own on NIO UDP multicast, not Avahi: dem then needs no
/// avahi-daemon and no D-Bus (a head node in a container has neither), and each dem advertises
/// exactly its own listeners and NQN. The port is shared with avahi-daemon when one runs.
/// Probing for name conflicts (RFC 6762 §8.1) is not done: the instance name carries the host
/// name, which is unique on the link.
public final class MDNSResponderService: Service {
    private let advertisements: [(address: String, advertisement: MDNSAdvertisement)]
    private let logger: Logger
    /// The sockets open now (each answers the queries it hears).
    private let open = SocketList()

    /// - Parameters:
    ///   - listenAddresses: the discovery listeners' IPv4 addresses (0.0.0.0: every interface).
    ///   - port: the discovery port.
    ///   - nqn: the discovery controller's unique NQN.
    public init(listenAddresses: [String], port: Int, nqn: String, hostName: String? = nil, logger: Logger) {
        let name = (hostName ?? ProcessInfo.processInfo.hostName).split(separator: ".").first.map(String.init) ?? "dem"
        var addresses: [String] = []
        for address in listenAddresses {
            if address == "0.0.0.0" {
                addresses += multicastCapableIPv4Addresses()
            } else if address.contains("."), !address.hasPrefix("127.") {
                addresses.append(address)
            }
        }
        var seen = Set<String>()
        advertisements = addresses.filter { seen.insert($0).inserted }.compactMap { address in
            let bytes = address.split(separator: ".").compactMap { UInt8($0) }
            guard bytes.count == 4 else { return nil }
            return (
                address,
                MDNSAdvertisement(
                    instance: "dem-\(name)",
                    hostName: DNSName("\(name).local"),
                    port: UInt16(clamping: port),
                    nqn: nqn,
                    ipv4Addresses: [bytes]
                )
            )
        }
        self.logger = logger
    }

    /// The interfaces it advertises on.
    public var interfaceAddresses: [String] { advertisements.map(\.address) }

    public func run() async throws {
        guard !advertisements.isEmpty else {
            logger.info("mDNS: no IPv4 interface besides loopback to advertise on")
            return
        }
        var sockets: [(MDNSSocket, MDNSAdvertisement)] = []
        for (address, advertisement) in advertisements {
            let logger = logger
            let open = open
            do {
                let socket = try await MDNSSocket.open(interfaceAddress: address, logger: logger) {
                    message,
                    sender in
                    guard let socket = open.withLock({ $0.first { $0.interfaceAddress == address } }) else { return }
                    Self.answer(message, from: sender, advertisement: advertisement, socket: socket, logger: logger)
                }
                sockets.append((socket, advertisement))
            } catch {
                logger.warning(
                    "mDNS: cannot advertise on this interface; discovery is not affected",
                    metadata: ["interface": "\(address)", "error": "\(error)"]
                )
            }
        }
        open.withLock { $0 = sockets.map(\.0) }
        guard !sockets.isEmpty else { return }
        logger.notice(
            "mDNS: advertising _nvme-disc._tcp (_cdc)",
            metadata: [
                "instance": "\(sockets[0].1.instanceName)", "interfaces": "\(sockets.map(\.0.interfaceAddress))",
                "port": "\(sockets[0].1.port)",
            ]
        )
        // Announce three times a second apart, then before half the host records' TTL is gone;
        // a graceful shutdown (or cancellation) ends the wait at once.
        let announcing = sockets
        try? await cancelWhenGracefulShutdown {
            let sockets = announcing
            var delays: [Duration] = [.zero, .seconds(1), .seconds(1)]
            while !Task.isCancelled {
                let delay = delays.isEmpty ? Duration.seconds(Int64(sockets[0].1.hostTTL / 2)) : delays.removeFirst()
                try await Task.sleep(for: delay)
                for (socket, advertisement) in sockets { socket.send(advertisement.announcement()) }
            }
        }
        open.withLock { $0 = [] }
        for (socket, advertisement) in sockets {
            await socket.sendNow(advertisement.goodbye())
            await socket.close()
        }
        logger.info("mDNS: goodbye sent, records withdrawn")
    }

    private static func answer(
        _ query: DNSMessage,
        from sender: SocketAddress,
        advertisement: MDNSAdvertisement,
        socket: MDNSSocket,
        logger: Logger
    ) {
        guard let response = advertisement.response(to: query) else { return }
        // A legacy resolver (not from port 5353) and a QU question get a unicast answer.
        if sender.port != MDNSSocket.port || advertisement.wantsUnicast(query) {
            var unicast = response
            unicast.identifier = query.identifier
            if sender.port != MDNSSocket.port { unicast.questions = query.questions }
            socket.send(unicast, to: sender)
        }
        if sender.port == MDNSSocket.port {
            socket.send(response)
        }
        logger.debug("mDNS: answered a query", metadata: ["from": "\(sender)", "records": "\(response.answers.count)"])
    }
}

/// A locked list of sockets.
final class SocketList: Sendable {
    private let list = Mutex<[MDNSSocket]>([])
    func withLock<R>(_ body: (inout [MDNSSocket]) -> R) -> R { list.withLock { body(&$0) } }
}
