import DEMCore
import NIOCore
import NIOPosix
import Synchronization

/// dem's association with one target's in-band management channel: connected (and
/// authenticated) at the first request, kept between requests, and connected again after it
/// fails. Requests take turns: one runs at a time.
public final class InBandEndpointSession: Sendable {
    /// Where the channel is.
    public let host: String
    public let port: Int
    public let options: InBandClientOptions
    private let group: any EventLoopGroup
    private let client = Mutex<InBandClient?>(nil)
    private let turns = Turns()

    public init(host: String, port: Int, options: InBandClientOptions, group: any EventLoopGroup) {
        self.host = host
        self.port = port
        self.options = options
        self.group = group
    }

    /// Where dem-em is, for messages.
    public var location: String {
        let address = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        return "nvme-\(options.transport.rawValue)://\(address)/\(options.subsystemNQN)"
    }

    /// Sends `request` (connecting first when needed) and returns dem-em's response.
    public func perform(_ request: InBandRequest, timeout: TimeAmount) async throws(EndpointCallError) -> InBandResponse
    {
        await turns.take()
        defer { turns.pass() }
        let started = ContinuousClock.now
        do {
            let connected: InBandClient
            if let existing = client.withLock({ $0 }), existing.isActive {
                connected = existing
            } else {
                var options = self.options
                options.commandTimeout = timeout
                options.requestTimeout = max(timeout, options.requestTimeout)
                options.connectTimeout = min(timeout, .seconds(3))
                connected = try await InBandClient.connect(host: host, port: port, options: options, group: group)
                client.withLock { $0 = connected }
            }
            do {
                return try await connected.perform(request)
            } catch {
                // The association is in an unknown state: start a new one next time.
                client.withLock { $0 = nil }
                Task { await connected.close() }
                throw error
            }
        } catch let error as NVMeHostError {
            throw classify(error, request: request, elapsed: ContinuousClock.now - started, timeout: timeout)
        } catch {
            throw EndpointCallError(kind: .unreachable, message: "dem-em at \(location) is unreachable: \(error)")
        }
    }

    private func classify(
        _ error: NVMeHostError,
        request: InBandRequest,
        elapsed: Duration,
        timeout: TimeAmount
    ) -> EndpointCallError {
        if case .commandFailed(_, let status) = error {
            let plain = NVMeStatus(statusCodeType: status.statusCodeType, statusCode: status.statusCode)
            if plain == .connectInvalidHost {
                return EndpointCallError(
                    kind: .refused(status: 403),
                    message:
                        "dem-em at \(location) refused dem's host NQN \(options.hostNQN): add it with --inband-allow-host"
                )
            }
        }
        if case .authenticationFailed(let why) = error {
            // Two-way DH-HMAC-CHAP with keys from the fabric credential failed on one side.
            return EndpointCallError(
                kind: .refused(status: 401),
                message:
                    "dem-em at \(location) and dem failed DH-HMAC-CHAP (\(why)): the fabric credentials of dem and dem-em differ"
            )
        }
        if elapsed >= .nanoseconds(timeout.nanoseconds)
            || { if case .timedOut = error { return true } else { return false } }()
        {
            return EndpointCallError(
                kind: .timeout,
                message: "dem-em at \(location) did not answer \(request.path) in time"
            )
        }
        return EndpointCallError(kind: .unreachable, message: "dem-em at \(location) is unreachable: \(error)")
    }

    /// Ends the association.
    public func close() async {
        if let existing = client.withLock({ current in
            defer { current = nil }
            return current
        }) {
            await existing.close()
        }
    }
}

/// First come, first served, across tasks.
private final class Turns: Sendable {
    private let state = Mutex<(busy: Bool, waiting: [CheckedContinuation<Void, Never>])>((false, []))

    func take() async {
        await withCheckedContinuation { continuation in
            let now = state.withLock { state -> Bool in
                if !state.busy {
                    state.busy = true
                    return true
                }
                state.waiting.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    func pass() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.waiting.isEmpty {
                state.busy = false
                return nil
            }
            return state.waiting.removeFirst()
        }
        next?.resume()
    }
}
