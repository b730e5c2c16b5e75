import Logging
import NIOCore
import NIOPosix

/// A UDP socket on the multicast DNS port (5353) of one IPv4 interface, joined to 224.0.0.251
/// there: messages heard on that interface in, messages out to the group (or to one peer). Port
/// 5353 is shared with other responders on the host (avahi-daemon): SO_REUSEADDR and
/// SO_REUSEPORT, and IP_MULTICAST_ALL off so the socket hears only its interface's group.
public final class MDNSSocket: Sendable {
    public static let port = 5353
    public static let group = try! SocketAddress(ipAddress: "224.0.0.251", port: port)

    /// The interface's IPv4 address.
    public let interfaceAddress: String
    private let channel: any Channel

    private init(interfaceAddress: String, channel: any Channel) {
        self.interfaceAddress = interfaceAddress
        self.channel = channel
    }

    /// Binds and joins on the interface whose address is `interfaceAddress`; `received` gets
    /// every message heard (and who sent it), on the channel's event loop. A datagram that is no
    /// DNS message is dropped.
    public static func open(
        interfaceAddress: String,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger,
        received: @escaping @Sendable (DNSMessage, SocketAddress) -> Void
    ) async throws -> MDNSSocket {
        let device = try System.enumerateDevices().first { device in
            device.address?.ipAddress == interfaceAddress
        }
        guard let device else {
            throw MDNSSocketError("no interface has the address \(interfaceAddress)")
        }
        let channel = try await DatagramBootstrap(group: group)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .channelOption(
                ChannelOptions.Types.SocketOption(level: .socket, name: NIOBSDSocket.Option(rawValue: 15)),
                value: 1
            )  // SO_REUSEPORT
            .channelInitializer { channel in
                channel.pipeline.addHandler(MDNSHandler(logger: logger, received: received))
            }
            .bind(host: "0.0.0.0", port: port)
            .get()
        do {
            // IP_MULTICAST_ALL (49): only the groups this socket joined, on its interface.
            try await channel.setOption(
                ChannelOptions.Types.SocketOption(level: .ip, name: NIOBSDSocket.Option(rawValue: 49)),
                value: 0
            ).get()
            guard case .v4(let v4) = try SocketAddress(ipAddress: interfaceAddress, port: 0) else {
                throw MDNSSocketError("\(interfaceAddress) is not an IPv4 address")
            }
            guard let options = channel as? any SocketOptionProvider else {
                throw MDNSSocketError("the datagram channel cannot set socket options")
            }
            try await options.setIPMulticastIF(v4.address.sin_addr).get()
            try await options.setIPMulticastTTL(255).get()
            try await (channel as! any MulticastChannel).joinGroup(Self.group, device: device).get()
        } catch {
            try? await channel.close()
            throw error
        }
        return MDNSSocket(interfaceAddress: interfaceAddress, channel: channel)
    }

    /// Sends `message` to the group, or to `peer`.
    public func send(_ message: DNSMessage, to peer: SocketAddress? = nil) {
        let envelope = AddressedEnvelope(remoteAddress: peer ?? Self.group, data: message.encoded())
        channel.writeAndFlush(envelope, promise: nil)
    }

    /// Sends `message` and waits until it is written.
    public func sendNow(_ message: DNSMessage) async {
        let envelope = AddressedEnvelope(remoteAddress: Self.group, data: message.encoded())
        try? await channel.writeAndFlush(envelope).get()
    }

    public func close() async {
        try? await channel.close()
    }
}

public struct MDNSSocketError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

private final class MDNSHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    let logger: Logger
    let received: @Sendable (DNSMessage, SocketAddress) -> Void

    init(logger: Logger, received: @escaping @Sendable (DNSMessage, SocketAddress) -> Void) {
        self.logger = logger
        self.received = received
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        do {
            received(try DNSMessage(parsing: envelope.data), envelope.remoteAddress)
        } catch {
            logger.debug(
                "mDNS: a datagram that is no DNS message was dropped",
                metadata: ["from": "\(envelope.remoteAddress)", "reason": "\(error)"]
            )
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("mDNS socket error", metadata: ["error": "\(error)"])
    }
}

/// The IPv4 addresses of the host's interfaces that are up and not loopback.
public func multicastCapableIPv4Addresses() -> [String] {
    let devices = (try? System.enumerateDevices()) ?? []
    var addresses: [String] = []
    for device in devices {
        guard let address = device.address, case .v4 = address, let ip = address.ipAddress else { continue }
        guard !ip.hasPrefix("127.") else { continue }
        if !addresses.contains(ip) { addresses.append(ip) }
    }
    return addresses
}
