import DEMCore
import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// Browses multicast DNS for discovery controllers (TP8009 `_nvme-disc._tcp`) on every IPv4
/// interface: asks at once, then after 1, 2, 4 … up to 60 s (RFC 6762 §5.2), keeps what the
/// responses say until their TTL runs out (a goodbye ends it at once), and reports the
/// controllers each time the set changes. The sockets are the same as dem's responder's
/// (``MDNSSocket``); what the records mean is ``MDNSBrowserState``.
public final class MDNSBrowser: Sendable {
    /// Each new set of controllers found.
    public let updates: AsyncStream<[MDNSDiscoveredController]>
    private let continuation: AsyncStream<[MDNSDiscoveredController]>.Continuation
    private let state = Mutex(MDNSBrowserState())
    private let last = Mutex<[MDNSDiscoveredController]?>(nil)
    private let logger: Logger
    private let start = ContinuousClock.now

    public init(logger: Logger) {
        (updates, continuation) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(16))
        self.logger = logger
    }

    private var now: Double {
        let elapsed = start.duration(to: .now).components
        return Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
    }

    /// Browses until cancelled.
    public func run() async {
        var sockets: [MDNSSocket] = []
        for address in multicastCapableIPv4Addresses() {
            do {
                sockets.append(
                    try await MDNSSocket.open(interfaceAddress: address, logger: logger) { [self] message, sender in
                        if message.isResponse {
                            logger.debug(
                                "mDNS: response heard",
                                metadata: [
                                    "from": "\(sender)",
                                    "records":
                                        "\((message.answers + message.additionals).map { "\($0.name) \($0.data.type) ttl \($0.ttl)" })",
                                ]
                            )
                        }
                        state.withLock { $0.heard(message, now: now) }
                        publish()
                    }
                )
            } catch {
                logger.warning(
                    "mDNS: cannot browse on this interface",
                    metadata: ["interface": "\(address)", "error": "\(error)"]
                )
            }
        }
        if sockets.isEmpty {
            logger.warning("mDNS: no IPv4 interface besides loopback to browse on")
        } else {
            logger.notice(
                "mDNS: browsing for _nvme-disc._tcp",
                metadata: ["interfaces": "\(sockets.map(\.interfaceAddress))"]
            )
        }
        var interval: Double = 1
        var nextQuery: Double = 0
        while !Task.isCancelled {
            if now >= nextQuery {
                for socket in sockets { socket.send(MDNSBrowserState.query()) }
                nextQuery = now + interval
                interval = min(interval * 2, 60)
            }
            state.withLock { $0.expire(now: now) }
            publish()
            do { try await Task.sleep(for: .milliseconds(500)) } catch { break }
        }
        for socket in sockets { await socket.close() }
        continuation.finish()
    }

    private func publish() {
        let controllers = state.withLock { $0.controllers }
        let changed = last.withLock { last -> Bool in
            guard last != controllers else { return false }
            last = controllers
            return true
        }
        guard changed else { return }
        logger.info(
            "mDNS: discovery controllers found",
            metadata: ["controllers": "\(controllers.map { "\($0.instance) \($0.address):\($0.port)" })"]
        )
        continuation.yield(controllers)
    }
}

extension DiscoveryControllerAddress {
    /// A controller found by mDNS, as a discovery controller to watch.
    public init(_ found: MDNSDiscoveredController) {
        self.init(
            transportType: found.transport == "rdma" ? .rdma : .tcp,
            transportAddress: found.address,
            transportServiceIdentifier: String(found.port)
        )
    }
}

/// Browses multicast DNS and makes `fleet` watch the controllers found (dem-ac, dem-dm).
public struct MDNSFollowService: Service {
    public let fleet: DiscoveryFleet
    public let browser: MDNSBrowser
    /// Only centralized discovery controllers (the `_cdc` subtype), or any.
    public let centralOnly: Bool

    public init(fleet: DiscoveryFleet, browser: MDNSBrowser, centralOnly: Bool = false) {
        self.fleet = fleet
        self.browser = browser
        self.centralOnly = centralOnly
    }

    public func run() async throws {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await cancelWhenGracefulShutdown { await browser.run() } }
            group.addTask {
                for await found in browser.updates {
                    fleet.setDiscovered(
                        found.filter { !centralOnly || $0.isCentral }.map(DiscoveryControllerAddress.init)
                    )
                }
            }
        }
    }
}
