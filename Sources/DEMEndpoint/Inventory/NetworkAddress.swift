#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An IP address configured on a network device, as `getifaddrs` reports it.
public struct NetworkAddress: Sendable, Hashable {
    /// The network device, such as `eth0`.
    public var netdev: String
    /// `ipv4` or `ipv6` (nvme-dem's ADRFAM spelling).
    public var family: String
    /// The address in its textual form, `192.0.2.7` or `2001:db8::7`, without a scope.
    public var address: String
    /// Whether the device is a loopback device (`IFF_LOOPBACK`).
    public var isLoopback: Bool

    public init(netdev: String, family: String, address: String, isLoopback: Bool = false) {
        self.netdev = netdev
        self.family = family
        self.address = address
        self.isLoopback = isLoopback
    }

    /// The IPv4 and IPv6 addresses of this machine's network devices, loopback included, in
    /// `getifaddrs` order; empty when `getifaddrs` fails.
    public static func system() -> [NetworkAddress] {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return [] }
        defer { freeifaddrs(list) }
        var result: [NetworkAddress] = []
        var cursor = list
        while let entry = cursor {
            cursor = entry.pointee.ifa_next
            guard let socketAddress = entry.pointee.ifa_addr, let name = entry.pointee.ifa_name else { continue }
            let isLoopback = entry.pointee.ifa_flags & UInt32(IFF_LOOPBACK) != 0
            let family: String
            let text: String?
            switch Int32(socketAddress.pointee.sa_family) {
            case AF_INET:
                family = "ipv4"
                text = socketAddress.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                    var address = $0.pointee.sin_addr
                    return presentation(AF_INET, &address, length: Int(INET_ADDRSTRLEN))
                }
            case AF_INET6:
                family = "ipv6"
                text = socketAddress.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                    var address = $0.pointee.sin6_addr
                    return presentation(AF_INET6, &address, length: Int(INET6_ADDRSTRLEN))
                }
            default:
                continue
            }
            guard let text else { continue }
            result.append(
                NetworkAddress(netdev: String(cString: name), family: family, address: text, isLoopback: isLoopback)
            )
        }
        return result
    }

    /// `inet_ntop` of the address at `address`.
    private static func presentation(_ family: Int32, _ address: UnsafeRawPointer, length: Int) -> String? {
        var buffer = [CChar](repeating: 0, count: length + 1)
        let converted = buffer.withUnsafeMutableBufferPointer {
            inet_ntop(family, address, $0.baseAddress, socklen_t(length)) != nil
        }
        guard converted else { return nil }
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    /// Whether `address` is an IPv6 link-local address (fe80::/10), which is usable only with a
    /// scope (`%eth0`). A scope suffix, if any, is ignored.
    static func isIPv6LinkLocal(_ address: String) -> Bool {
        guard let bytes = ipv6Bytes(address) else { return false }
        return bytes[0] == 0xFE && bytes[1] & 0xC0 == 0x80
    }

    /// Whether `address` is a loopback address (127.0.0.0/8 or ::1).
    static func isLoopbackAddress(_ address: String, family: String) -> Bool {
        switch family {
        case "ipv4":
            var parsed = in_addr()
            guard inet_pton(AF_INET, address, &parsed) == 1 else { return false }
            return withUnsafeBytes(of: &parsed) { $0[0] == 127 }
        case "ipv6":
            guard let bytes = ipv6Bytes(address) else { return false }
            return bytes.dropLast().allSatisfy { $0 == 0 } && bytes[15] == 1
        default:
            return false
        }
    }

    /// The 16 bytes of an IPv6 address, ignoring a `%scope` suffix.
    private static func ipv6Bytes(_ address: String) -> [UInt8]? {
        let bare = address.split(separator: "%", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init)
        var parsed = in6_addr()
        guard let bare, inet_pton(AF_INET6, bare, &parsed) == 1 else { return nil }
        return withUnsafeBytes(of: &parsed) { Array($0) }
    }
}
