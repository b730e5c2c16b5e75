#if RDMA
import CRDMA
import Foundation
import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Receives what an RDMA CM id reports.
protocol RDMAConnectionManagerClient: AnyObject {
    func connectionManagerEvent(_ event: RDMAReactor.Event)
}

/// Receives the completions of a completion queue.
protocol RDMACompletionClient: AnyObject {
    /// The completion queue has work completions to poll.
    func completionsReady()
}

/// The thread that owns every RDMA resource of the process: one RDMA CM event channel, the
/// completion channels of the devices in use, timers and jobs handed over from other threads.
/// Every verbs and CM call of the transport runs here, so no resource is shared between threads.
final class RDMAReactor: @unchecked Sendable {
    /// An RDMA CM event, copied out before it is acknowledged.
    struct Event {
        var type: rdma_cm_event_type
        var status: Int32
        var id: UnsafeMutablePointer<rdma_cm_id>
        var listenID: UnsafeMutablePointer<rdma_cm_id>?
        var privateData: [UInt8]
        /// The RDMA READs the peer answers at once (a connection request's responder resources).
        var peerResponderResources: UInt8
        /// The RDMA READs the peer issues at once.
        var peerInitiatorDepth: UInt8

        var name: String { String(cString: rdma_event_str(type)) }
    }

    /// A device's protection domain and completion channel, shared by its queue pairs.
    struct Device {
        var protectionDomain: UnsafeMutablePointer<ibv_pd>
        var completionChannel: UnsafeMutablePointer<ibv_comp_channel>
        /// The RDMA READs a queue pair of this device may have outstanding, as initiator or
        /// responder (at most 16).
        var readDepth: UInt8
    }

    private static let instance = Mutex<RDMAReactor?>(nil)

    /// The process's reactor, started at first use.
    static func shared() throws -> RDMAReactor {
        try instance.withLock { reactor in
            if let reactor { return reactor }
            let started = try RDMAReactor()
            reactor = started
            return started
        }
    }

    let eventChannel: UnsafeMutablePointer<rdma_event_channel>
    /// A pipe whose read end wakes the thread for jobs.
    private let wake: (read: Int32, write: Int32)
    private let jobs = Mutex<[@Sendable () -> Void]>([])

    // The reactor thread's own state.
    private var devices: [UnsafeMutablePointer<ibv_context>: Device] = [:]
    private var clients: [UnsafeMutablePointer<rdma_cm_id>: any RDMAConnectionManagerClient] = [:]
    private var completionClients: [UnsafeMutablePointer<ibv_cq>: any RDMACompletionClient] = [:]
    private var timers: [UInt64: (deadline: NIODeadline, job: () -> Void)] = [:]
    private var nextTimer: UInt64 = 1

    private init() throws {
        guard let channel = rdma_create_event_channel() else {
            throw RDMAError.call("rdma_create_event_channel", errno)
        }
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else {
            rdma_destroy_event_channel(channel)
            throw RDMAError.call("pipe", errno)
        }
        for end in ends {
            Self.setNonBlocking(end)
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
        }
        let wake = (read: ends[0], write: ends[1])
        Self.setNonBlocking(channel.pointee.fd)
        self.eventChannel = channel
        self.wake = wake
        let thread = Thread { [self] in self.run() }
        thread.name = "dem-rdma"
        thread.start()
    }

    /// Runs `job` on the reactor thread.
    func execute(_ job: @escaping @Sendable () -> Void) {
        jobs.withLock { $0.append(job) }
        var one: UInt8 = 1
        _ = write(wake.write, &one, 1)
    }

    /// Runs `job` on the reactor thread and returns its result.
    func submit<T: Sendable>(_ job: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            execute { continuation.resume(with: Result { try job() }) }
        }
    }

    // MARK: - Reactor thread only

    /// Runs `job` after `delay`; returns the timer to cancel.
    func schedule(in delay: TimeAmount, _ job: @escaping () -> Void) -> UInt64 {
        let timer = nextTimer
        nextTimer += 1
        timers[timer] = (NIODeadline.now() + delay, job)
        return timer
    }

    func cancel(timer: UInt64) {
        timers.removeValue(forKey: timer)
    }

    /// Delivers `id`'s events to `client` until ``forget(_:)``.
    func register(_ id: UnsafeMutablePointer<rdma_cm_id>, _ client: any RDMAConnectionManagerClient) {
        clients[id] = client
    }

    func forget(_ id: UnsafeMutablePointer<rdma_cm_id>) {
        clients.removeValue(forKey: id)
    }

    func register(_ cq: UnsafeMutablePointer<ibv_cq>, _ client: any RDMACompletionClient) {
        completionClients[cq] = client
    }

    func forget(_ cq: UnsafeMutablePointer<ibv_cq>) {
        completionClients.removeValue(forKey: cq)
    }

    /// The protection domain and completion channel of `context`'s device, made at first use.
    func device(_ context: UnsafeMutablePointer<ibv_context>) throws -> Device {
        if let device = devices[context] { return device }
        guard let protectionDomain = ibv_alloc_pd(context) else { throw RDMAError.call("ibv_alloc_pd", errno) }
        guard let completionChannel = ibv_create_comp_channel(context) else {
            ibv_dealloc_pd(protectionDomain)
            throw RDMAError.call("ibv_create_comp_channel", errno)
        }
        Self.setNonBlocking(completionChannel.pointee.fd)
        var attributes = ibv_device_attr()
        let depth =
            ibv_query_device(context, &attributes) == 0
            ? min(16, attributes.max_qp_rd_atom, attributes.max_qp_init_rd_atom) : 1
        let device = Device(
            protectionDomain: protectionDomain,
            completionChannel: completionChannel,
            readDepth: UInt8(clamping: max(1, depth))
        )
        devices[context] = device
        return device
    }

    private func run() {
        while true {
            var descriptors = [pollfd(fd: wake.read, events: Int16(POLLIN), revents: 0)]
            descriptors.append(pollfd(fd: eventChannel.pointee.fd, events: Int16(POLLIN), revents: 0))
            let channels = Array(devices.values.map(\.completionChannel))
            for channel in channels {
                descriptors.append(pollfd(fd: channel.pointee.fd, events: Int16(POLLIN), revents: 0))
            }
            var timeout: Int32 = -1
            if let next = timers.values.map(\.deadline).min() {
                let nanoseconds = max(0, (next - NIODeadline.now()).nanoseconds)
                timeout = Int32(clamping: (nanoseconds + 999_999) / 1_000_000)
            }
            let ready = poll(&descriptors, nfds_t(descriptors.count), timeout)
            if ready < 0 && errno != EINTR { fatalError("poll on the RDMA channels failed: \(errno)") }
            if descriptors[0].revents != 0 {
                var drain = [UInt8](repeating: 0, count: 256)
                while read(wake.read, &drain, drain.count) > 0 {}
                let pending = jobs.withLock { jobs in
                    defer { jobs.removeAll() }
                    return jobs
                }
                for job in pending { job() }
            }
            if descriptors[1].revents != 0 { connectionManagerEvents() }
            for (index, channel) in channels.enumerated() where descriptors[index + 2].revents != 0 {
                completionEvents(channel)
            }
            runTimers()
        }
    }

    private func connectionManagerEvents() {
        while true {
            var received: UnsafeMutablePointer<rdma_cm_event>?
            guard rdma_get_cm_event(eventChannel, &received) == 0, let event = received else { return }
            var length: UInt8 = 0
            var privateData: [UInt8] = []
            if let bytes = crdma_event_private_data(event, &length), length > 0 {
                privateData = Array(UnsafeRawBufferPointer(start: bytes, count: Int(length)))
            }
            var responder: UInt8 = 0
            var initiator: UInt8 = 0
            crdma_event_read_depths(event, &responder, &initiator)
            let copy = Event(
                type: event.pointee.event,
                status: event.pointee.status,
                id: event.pointee.id,
                listenID: event.pointee.listen_id,
                privateData: privateData,
                peerResponderResources: responder,
                peerInitiatorDepth: initiator
            )
            rdma_ack_cm_event(event)
            // A connection request belongs to the listener; the new id has no client yet.
            let owner = copy.type == RDMA_CM_EVENT_CONNECT_REQUEST ? copy.listenID : copy.id
            if let owner, let client = clients[owner] {
                client.connectionManagerEvent(copy)
            } else if copy.type == RDMA_CM_EVENT_CONNECT_REQUEST {
                rdma_reject(copy.id, nil, 0)
                rdma_destroy_id(copy.id)
            }
        }
    }

    private func completionEvents(_ channel: UnsafeMutablePointer<ibv_comp_channel>) {
        while true {
            var cq: UnsafeMutablePointer<ibv_cq>?
            var context: UnsafeMutableRawPointer?
            guard ibv_get_cq_event(channel, &cq, &context) == 0, let cq else { return }
            ibv_ack_cq_events(cq, 1)
            completionClients[cq]?.completionsReady()
        }
    }

    private func runTimers() {
        let now = NIODeadline.now()
        let due = timers.filter { $0.value.deadline <= now }.sorted { $0.value.deadline < $1.value.deadline }
        for (timer, entry) in due {
            timers.removeValue(forKey: timer)
            entry.job()
        }
    }

    private static func setNonBlocking(_ fd: Int32) {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }
}

/// The IP address and port of a socket address.
func rdmaAddressText(_ address: UnsafeMutablePointer<sockaddr>?) -> (address: String, port: Int)? {
    guard let address else { return nil }
    var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
    switch Int32(address.pointee.sa_family) {
    case AF_INET:
        return address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { inet in
            var raw = inet.pointee.sin_addr
            inet_ntop(AF_INET, &raw, &text, socklen_t(text.count))
            return (String(cString: text), Int(UInt16(bigEndian: inet.pointee.sin_port)))
        }
    case AF_INET6:
        return address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { inet in
            var raw = inet.pointee.sin6_addr
            inet_ntop(AF_INET6, &raw, &text, socklen_t(text.count))
            return (String(cString: text), Int(UInt16(bigEndian: inet.pointee.sin6_port)))
        }
    default:
        return nil
    }
}

/// A failed RDMA call.
public enum RDMAError: Error, CustomStringConvertible {
    case call(String, Int32)
    case failed(String)

    public var description: String {
        switch self {
        case .call(let name, let code): return "\(name): \(String(cString: strerror(code)))"
        case .failed(let reason): return reason
        }
    }
}
#endif
