import Logging
import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// How many connections one port takes: in total, and from one source address.
public struct ConnectionLimits: Sendable, Hashable {
    public var total: Int
    public var perSource: Int

    public init(total: Int, perSource: Int) {
        self.total = total
        self.perSource = perSource
    }
}

/// The door of one port (a discovery controller's listeners, a REST API): it admits a new
/// connection only while the port has fewer than its limits open, in total and from the
/// connection's source address, and counts what it admitted, refused and timed out for
/// `/metrics`. A refused connection is closed at once, so it holds no descriptor.
///
/// Refusals are logged once when they start (with the counts), then at most once a minute
/// while they go on.
public final class ConnectionGate: Sendable {
    /// What `/metrics` shows of a port.
    public struct Counts: Sendable, Hashable {
        /// Connections open now.
        public var open: Int
        /// Connections admitted since the start.
        public var accepted: Int
        /// Connections refused since the start (a limit was reached).
        public var refused: Int
        /// Connections closed because the peer stalled (setup, a PDU, an HTTP request).
        public var timedOut: Int
    }

    private struct State {
        var bySource: [String: Int] = [:]
        var counts = Counts(open: 0, accepted: 0, refused: 0, timedOut: 0)
        var lastRefusalLog: NIODeadline?
    }

    /// What the port is, for logs: "discovery", "REST API", "in-band".
    public let name: String
    public let limits: ConnectionLimits
    private let state = Mutex(State())
    private let logger: Logger

    public init(name: String, limits: ConnectionLimits, logger: Logger) {
        self.name = name
        self.limits = limits
        self.logger = logger
    }

    /// The counts now.
    public var counts: Counts { state.withLock { $0.counts } }

    /// Admits a connection from `source` (an IP address), or refuses it (the caller closes it).
    /// An admitted connection is ``release(source:)``d when it closes.
    public func admit(source: String) -> Bool {
        let now = NIODeadline.now()
        let (admitted, log): (Bool, (refused: Int, reason: String)?) = state.withLock { state in
            let fromSource = state.bySource[source, default: 0]
            var reason: String? = nil
            if state.counts.open >= limits.total {
                reason = "\(state.counts.open) connections are open, the limit (total \(limits.total))"
            } else if fromSource >= limits.perSource {
                reason = "\(fromSource) connections are open from \(source), the limit (per source \(limits.perSource))"
            }
            guard let reason else {
                state.bySource[source] = fromSource + 1
                state.counts.open += 1
                state.counts.accepted += 1
                return (true, nil)
            }
            state.counts.refused += 1
            if let last = state.lastRefusalLog, now - last < .seconds(60) { return (false, nil) }
            state.lastRefusalLog = now
            return (false, (state.counts.refused, reason))
        }
        if let log {
            logger.warning(
                "refusing connections",
                metadata: [
                    "port": "\(name)", "why": "\(log.reason)", "refused": "\(log.refused) since the start",
                    "fix": "raise the limits (see dem(8), LIMITS) if these are real hosts",
                ]
            )
        }
        return admitted
    }

    /// An admitted connection from `source` closed.
    public func release(source: String) {
        state.withLock { state in
            state.counts.open -= 1
            let left = state.bySource[source, default: 1] - 1
            state.bySource[source] = left > 0 ? left : nil
        }
    }

    /// A connection was closed because its peer stalled.
    public func timedOut() {
        state.withLock { $0.counts.timedOut += 1 }
    }

    /// Admits `channel` (closing it when refused) and releases it when it closes.
    /// - Returns: whether it was admitted.
    @discardableResult
    public func admit(_ channel: any Channel) -> Bool {
        let source = channel.remoteAddress?.ipAddress ?? "?"
        guard admit(source: source) else {
            channel.close(promise: nil)
            return false
        }
        channel.closeFuture.whenComplete { [self] _ in release(source: source) }
        return true
    }
}

/// The process's limit on open descriptors, which bounds every connection it can hold.
public enum DescriptorLimit {
    /// The soft and hard limits (RLIMIT_NOFILE).
    public static func current() -> (soft: Int, hard: Int) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return (1024, 1024) }
        return (clamp(limit.rlim_cur), clamp(limit.rlim_max))
    }

    /// Raises the soft limit to the hard one (a process may, unprivileged) and returns the
    /// limits then, and whether it was raised.
    @discardableResult
    public static func raise() -> (soft: Int, hard: Int, raised: Bool) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return (1024, 1024, false) }
        guard limit.rlim_cur < limit.rlim_max else { return (clamp(limit.rlim_cur), clamp(limit.rlim_max), false) }
        var raised = limit
        raised.rlim_cur = limit.rlim_max
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 {
            return (clamp(raised.rlim_cur), clamp(raised.rlim_max), true)
        }
        return (clamp(limit.rlim_cur), clamp(limit.rlim_max), false)
    }

    /// Limits that fit `descriptors`: `reserve` descriptors are kept for files, the store and
    /// calls out; the rest is shared by the ports in proportion to what they ask for, and no
    /// port gets more than it asked for.
    public static func fit(_ wanted: [ConnectionLimits], descriptors: Int, reserve: Int = 128) -> [ConnectionLimits] {
        let available = max(16, descriptors - reserve)
        let asked = wanted.reduce(0) { $0 + $1.total }
        guard asked > available else { return wanted }
        return wanted.map { limits in
            let total = max(8, available * limits.total / max(1, asked))
            return ConnectionLimits(total: total, perSource: min(limits.perSource, total))
        }
    }

    private static func clamp(_ value: rlim_t) -> Int {
        value > rlim_t(Int.max) ? Int.max : Int(value)
    }
}

/// Stops a listener accepting for a second when accepting fails for want of descriptors or
/// memory, and says so (with the connections open; at most once a minute).
///
/// NIO's own `AcceptBackoffHandler` cannot do it: after a failed accept the server channel keeps
/// its read pending, so it never asks for the read the handler would delay, and stays
/// registered for readability — the event loop retries the accept at once, for ever, and one
/// core spins. Turning `autoRead` off takes the socket out of the poll set; turning it on again
/// after the pause registers it anew.
public final class AcceptBackoff: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = any Channel
    public typealias InboundOut = any Channel

    private let name: String
    private let gate: ConnectionGate?
    private let logger: Logger
    private let pause: TimeAmount
    private var paused: Scheduled<Void>?
    private var lastWarning: NIODeadline?

    public init(name: String, gate: ConnectionGate?, logger: Logger, pause: TimeAmount = .seconds(1)) {
        self.name = name
        self.gate = gate
        self.logger = logger
        self.pause = pause
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let code = (error as? IOError)?.errnoCode, [EMFILE, ENFILE, ENOBUFS, ENOMEM].contains(code) else {
            context.fireErrorCaught(error)
            return
        }
        let now = NIODeadline.now()
        if lastWarning.map({ now - $0 >= .seconds(60) }) ?? true {
            lastWarning = now
            let limit = DescriptorLimit.current()
            logger.error(
                "cannot accept connections: pausing a second between tries",
                metadata: [
                    "port": "\(name)", "error": "\(Errno.describe(code))",
                    "open": "\(gate.map { "\($0.counts.open)" } ?? "?")",
                    "descriptor-limit": "\(limit.soft) (hard \(limit.hard))",
                ]
            )
        }
        guard paused == nil else { return }
        context.channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in }
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        paused = context.eventLoop.scheduleTask(in: pause) {
            let (handler, context) = loopBound.value
            handler.paused = nil
            context.channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in }
        }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        paused?.cancel()
        paused = nil
    }
}
