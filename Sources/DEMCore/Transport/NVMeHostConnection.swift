import NIOCore

/// One host connection to a controller's admin queue, over NVMe/TCP (``NVMeTCPHostConnection``)
/// or NVMe/RDMA (``NVMeRDMAHostConnection``): commands in, completions and their data out.
public protocol NVMeHostConnection: Sendable {
    /// The event loop the connection's futures complete on.
    var eventLoop: any EventLoop { get }
    /// Whether commands can still be sent.
    var isActive: Bool { get }
    /// Completes when the connection has closed.
    var closeFuture: EventLoopFuture<Void> { get }
    /// Sends a command; the future completes with its completion, or fails when the connection
    /// closes first.
    func submitFuture(
        _ command: SubmissionQueueEntry,
        data: ByteBuffer?,
        expectedDataLength: Int
    ) -> EventLoopFuture<NVMeCommandResult>
    /// Closes the connection without waiting.
    func abort()
    /// Closes the connection.
    func close() async
}

extension NVMeHostConnection {
    /// Sends a command with no data.
    public func submitFuture(_ command: SubmissionQueueEntry) -> EventLoopFuture<NVMeCommandResult> {
        submitFuture(command, data: nil, expectedDataLength: 0)
    }

    /// Sends a command and waits for its completion (with no time limit: use for AERs).
    public func submit(
        _ command: SubmissionQueueEntry,
        data: ByteBuffer? = nil,
        expectedDataLength: Int = 0
    ) async throws -> NVMeCommandResult {
        try await submitFuture(command, data: data, expectedDataLength: expectedDataLength).get()
    }
}

/// An NVMe-oF transport DEM speaks.
public enum NVMeTransport: String, Sendable, Hashable, CaseIterable {
    case tcp
    case rdma
}
