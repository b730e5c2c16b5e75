import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import DEMCore

/// The bounds on what a peer can hold: the setup timer of the controller state machine, the
/// connection gate's limits, and limits fitted to the descriptor limit.
@Suite("connection bounds: setup timeouts, limits per source and in total")
struct ConnectionBoundsTests {
    @Test(
        "no ICReq within the setup timeout: the connection is closed; an ICReq in time moves the deadline to the Connect"
    )
    func setupTimeout() {
        var configuration = TestValues.configuration()
        configuration.setupTimeout = .seconds(10)
        var silent = ControllerSession(configuration: configuration)
        #expect(silent.machine.connectionOpened(now: silent.now) == [.scheduleKeepAliveCheck(after: .seconds(10))])
        silent.advance(.seconds(4))
        // A timer that fires early is scheduled again for the rest.
        #expect(silent.machine.keepAliveTimerFired(now: silent.now) == [.scheduleKeepAliveCheck(after: .seconds(6))])
        silent.advance(.seconds(6))
        let closed = silent.machine.keepAliveTimerFired(now: silent.now)
        #expect(closed.count == 1)
        if case .close(let reason) = closed.first {
            #expect(reason.contains("no ICReq"))
        } else {
            Issue.record("expected a close, got \(closed)")
        }
        #expect(silent.machine.isClosed)

        // ICReq at 9 s: the Connect is due 10 s after it.
        var slow = ControllerSession(configuration: configuration)
        _ = slow.machine.connectionOpened(now: slow.now)
        slow.advance(.seconds(9))
        let icresp = slow.initialize()
        #expect(icresp.last == .scheduleKeepAliveCheck(after: .seconds(10)))
        slow.advance(.seconds(9))
        #expect(slow.machine.keepAliveTimerFired(now: slow.now) == [.scheduleKeepAliveCheck(after: .seconds(1))])
        slow.advance(.seconds(1))
        let noConnect = slow.machine.keepAliveTimerFired(now: slow.now)
        if case .close(let reason) = noConnect.first {
            #expect(reason.contains("no Connect"))
        } else {
            Issue.record("expected a close, got \(noConnect)")
        }

        // A Connect in time: the keep-alive timeout takes over.
        var prompt = ControllerSession(configuration: configuration)
        _ = prompt.machine.connectionOpened(now: prompt.now)
        prompt.advance(.seconds(1))
        prompt.initialize()
        prompt.advance(.seconds(1))
        let connected = prompt.receive(HostPDU.connect(cid: 0, keepAliveTimeout: 30_000))
        #expect(connected.last == .scheduleKeepAliveCheck(after: .milliseconds(30_000)))
        prompt.advance(.seconds(9))
        #expect(
            prompt.machine.keepAliveTimerFired(now: prompt.now).allSatisfy {
                if case .close = $0 { false } else { true }
            }
        )
        #expect(!prompt.machine.isClosed)
    }

    @Test("the gate admits up to its limits per source and in total, refuses beyond, and counts")
    func gateLimits() {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let gate = ConnectionGate(name: "test", limits: ConnectionLimits(total: 5, perSource: 2), logger: logger)
        #expect(gate.admit(source: "10.0.0.1"))
        #expect(gate.admit(source: "10.0.0.1"))
        #expect(!gate.admit(source: "10.0.0.1"), "a third from one source")
        #expect(gate.admit(source: "10.0.0.2"))
        #expect(gate.admit(source: "10.0.0.2"))
        #expect(gate.admit(source: "10.0.0.3"))
        #expect(!gate.admit(source: "10.0.0.4"), "the sixth in all")
        #expect(gate.counts == .init(open: 5, accepted: 5, refused: 2, timedOut: 0))
        gate.release(source: "10.0.0.1")
        #expect(gate.admit(source: "10.0.0.4"))
        gate.timedOut()
        #expect(gate.counts == .init(open: 5, accepted: 6, refused: 2, timedOut: 1))
    }

    @Test("limits are fitted to the descriptor limit, in proportion, never above what was asked")
    func fitted() {
        let asked = [ConnectionLimits(total: 4096, perSource: 256), ConnectionLimits(total: 512, perSource: 64)]
        let at1024 = DescriptorLimit.fit(asked, descriptors: 1024)
        #expect(at1024[0].total + at1024[1].total <= 1024 - 128)
        #expect(at1024[0].total > at1024[1].total)
        #expect(at1024[1].perSource <= at1024[1].total)
        #expect(DescriptorLimit.fit(asked, descriptors: 1 << 20) == asked)
    }

    @Test("a failed connection reads as the system's reason, not NIO's call and errno")
    func connectionFailureText() {
        let unreachable = IOError(errnoCode: ENETUNREACH, reason: "connect(descriptor:addr:size:)")
        #expect(ConnectionFailure.describe(unreachable) == "Network is unreachable (ENETUNREACH)")
        struct Wrapper: Error { var errors: [any Error] }
        let wrapped = Wrapper(errors: [IOError(errnoCode: ECONNREFUSED, reason: "connect")])
        #expect(ConnectionFailure.describe(wrapped) == "Connection refused (ECONNREFUSED)")
        #expect(ConnectionFailure.isRefused(wrapped))
        #expect(ConnectionFailure.describe(ChannelError.connectTimeout(.seconds(3))) == "no answer within 3 s")
    }

    @Test(
        "a host whose connection is already closed fails its ICReq and its commands at once, never waits for an answer"
    )
    func closedBeforeICReq() async throws {
        let listener = try await NVMeTCPDiscoveryListener.bind(
            host: "127.0.0.1",
            port: 0,
            configuration: TestValues.configuration(),
            service: FakeDiscoveryService(),
            group: MultiThreadedEventLoopGroup.singleton,
            logger: Logger(label: "test")
        )
        let port = try #require(listener.localAddress?.port)
        // As when the controller refuses the connection as soon as it is accepted: the write
        // never reaches the host's handler, so only its failure can end the wait.
        let connection = try await NVMeTCPHostConnection.connect(host: "127.0.0.1", port: port)
        await connection.close()
        /// How `body` ended: its error, "answered" when it returned, or "still waiting" after 10 s
        /// (a wait that would otherwise never end; its task is left behind).
        func outcome(_ body: @escaping @Sendable () async throws -> Void) async -> String {
            let settled = Mutex(false)
            return await withCheckedContinuation { (continuation: CheckedContinuation<String, Never>) in
                let finish: @Sendable (String) -> Void = { text in
                    let first = settled.withLock { done in
                        defer { done = true }
                        return !done
                    }
                    if first { continuation.resume(returning: text) }
                }
                Task {
                    do {
                        try await body()
                        finish("answered")
                    } catch {
                        finish("\(error)")
                    }
                }
                Task {
                    try? await Task.sleep(for: .seconds(10))
                    finish("still waiting")
                }
            }
        }
        let initialized = await outcome {
            _ = try await connection.initialize(InitializeConnectionRequest(digests: []))
        }
        #expect(initialized == "\(ChannelError.ioOnClosedChannel)")
        let submitted = await outcome {
            _ = try await connection.submit(SubmissionQueueEntry(opcode: AdminOpcode.keepAlive))
        }
        #expect(submitted == "\(ChannelError.ioOnClosedChannel)")
        try await listener.close()
    }
}
