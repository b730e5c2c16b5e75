#if RDMA
import CRDMA
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// Registered memory: a page-aligned buffer and its memory region.
final class RDMABuffer {
    let bytes: UnsafeMutableRawPointer
    let count: Int
    let region: UnsafeMutablePointer<ibv_mr>

    init(_ protectionDomain: UnsafeMutablePointer<ibv_pd>, count: Int, access: ibv_access_flags) throws {
        self.count = count
        self.bytes = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: 4096)
        guard let region = crdma_reg_mr(protectionDomain, bytes, max(count, 1), Int32(access.rawValue)) else {
            let code = errno
            bytes.deallocate()
            throw RDMAError.call("ibv_reg_mr", code)
        }
        self.region = region
    }

    var address: UInt64 { UInt64(UInt(bitPattern: bytes)) }
    var localKey: UInt32 { region.pointee.lkey }
    var remoteKey: UInt32 { region.pointee.rkey }

    func copy(_ data: ByteBuffer) {
        data.withUnsafeReadableBytes { source in
            if let base = source.baseAddress { bytes.copyMemory(from: base, byteCount: min(source.count, count)) }
        }
    }

    func read(at offset: Int = 0, length: Int) -> ByteBuffer {
        ByteBuffer(bytes: UnsafeRawBufferPointer(start: bytes + offset, count: length))
    }

    func release() {
        ibv_dereg_mr(region)
        bytes.deallocate()
    }
}

/// One reliable-connected queue pair on an RDMA CM id, with its completion queue and its posted
/// receives; used on the reactor thread only. Every work request is signaled, and its memory is
/// released when it completes.
final class RDMAQueuePair: RDMACompletionClient {
    /// What the owner hears of completions.
    struct Handlers {
        /// A SEND arrived (the bytes are copied; the receive is posted again).
        var received: (ByteBuffer) -> Void
        /// A work request failed: the queue pair is in error and must be disconnected.
        var failed: (String) -> Void
    }

    private enum Work {
        case send(RDMABuffer)
        case read(RDMABuffer, length: Int, done: (ByteBuffer) -> Void)
        case write(RDMABuffer)
    }

    let id: UnsafeMutablePointer<rdma_cm_id>
    private let reactor: RDMAReactor
    private let protectionDomain: UnsafeMutablePointer<ibv_pd>
    private let completionQueue: UnsafeMutablePointer<ibv_cq>
    private let receives: RDMABuffer
    private let receiveSize: Int
    private let receiveCount: Int
    private var work: [UInt64: Work] = [:]
    private var nextWork: UInt64 = 1 << 63
    var handlers: Handlers?
    private var destroyed = false

    /// Creates the queue pair on `id` (whose route is resolved, or which came with a connection
    /// request) and posts `receiveCount` receives of `receiveSize` bytes.
    init(
        id: UnsafeMutablePointer<rdma_cm_id>,
        reactor: RDMAReactor,
        receiveCount: Int,
        receiveSize: Int,
        sendDepth: Int
    )
        throws
    {
        guard let context = id.pointee.verbs else { throw RDMAError.failed("the RDMA CM id has no device") }
        let device = try reactor.device(context)
        // Sends, RDMA READs and WRITEs of every command in flight, and the receives.
        let entries = Int32(receiveCount + sendDepth)
        guard let cq = ibv_create_cq(context, entries, nil, device.completionChannel, 0) else {
            throw RDMAError.call("ibv_create_cq", errno)
        }
        var attributes = ibv_qp_init_attr()
        attributes.send_cq = cq
        attributes.recv_cq = cq
        attributes.qp_type = IBV_QPT_RC
        attributes.cap.max_send_wr = UInt32(sendDepth)
        attributes.cap.max_recv_wr = UInt32(receiveCount)
        attributes.cap.max_send_sge = 1
        attributes.cap.max_recv_sge = 1
        guard rdma_create_qp(id, device.protectionDomain, &attributes) == 0 else {
            let code = errno
            ibv_destroy_cq(cq)
            throw RDMAError.call("rdma_create_qp", code)
        }
        let receives: RDMABuffer
        do {
            receives = try RDMABuffer(
                device.protectionDomain,
                count: receiveCount * receiveSize,
                access: IBV_ACCESS_LOCAL_WRITE
            )
        } catch {
            rdma_destroy_qp(id)
            ibv_destroy_cq(cq)
            throw error
        }
        self.id = id
        self.reactor = reactor
        self.protectionDomain = device.protectionDomain
        self.completionQueue = cq
        self.receives = receives
        self.receiveSize = receiveSize
        self.receiveCount = receiveCount
        reactor.register(cq, self)
        for index in 0..<receiveCount {
            guard postReceive(index) else {
                destroy()
                throw RDMAError.call("ibv_post_recv", errno)
            }
        }
        _ = crdma_req_notify_cq(cq)
    }

    /// Registered memory for a transfer of `count` bytes.
    func buffer(count: Int, access: ibv_access_flags) throws -> RDMABuffer {
        try RDMABuffer(protectionDomain, count: count, access: access)
    }

    /// SENDs `bytes`.
    func send(_ bytes: ByteBuffer) throws {
        let buffer = try RDMABuffer(protectionDomain, count: bytes.readableBytes, access: IBV_ACCESS_LOCAL_WRITE)
        buffer.copy(bytes)
        try post(.send(buffer)) { wr in
            crdma_post_send(self.id.pointee.qp, wr, buffer.bytes, UInt32(buffer.count), buffer.localKey)
        }
    }

    /// RDMA READs `length` bytes of the peer's memory; `done` gets them.
    func read(length: Int, address: UInt64, key: UInt32, done: @escaping (ByteBuffer) -> Void) throws {
        let buffer = try RDMABuffer(protectionDomain, count: length, access: IBV_ACCESS_LOCAL_WRITE)
        try post(.read(buffer, length: length, done: done)) { wr in
            crdma_post_rdma(self.id.pointee.qp, wr, 0, buffer.bytes, UInt32(length), buffer.localKey, address, key)
        }
    }

    /// RDMA WRITEs `bytes` into the peer's memory.
    func write(_ bytes: ByteBuffer, address: UInt64, key: UInt32) throws {
        let buffer = try RDMABuffer(protectionDomain, count: bytes.readableBytes, access: IBV_ACCESS_LOCAL_WRITE)
        buffer.copy(bytes)
        try post(.write(buffer)) { wr in
            crdma_post_rdma(
                self.id.pointee.qp,
                wr,
                1,
                buffer.bytes,
                UInt32(buffer.count),
                buffer.localKey,
                address,
                key
            )
        }
    }

    private func post(_ item: Work, _ call: (UInt64) -> Int32) throws {
        guard !destroyed else { throw RDMAError.failed("the queue pair is closed") }
        let wr = nextWork
        nextWork &+= 1
        work[wr] = item
        let result = call(wr)
        if result != 0 {
            work.removeValue(forKey: wr)
            Self.release(item)
            throw RDMAError.call("ibv_post_send", result)
        }
    }

    private func postReceive(_ index: Int) -> Bool {
        crdma_post_recv(
            id.pointee.qp,
            UInt64(index),
            receives.bytes + index * receiveSize,
            UInt32(receiveSize),
            receives.localKey
        ) == 0
    }

    func completionsReady() {
        guard !destroyed else { return }
        _ = crdma_req_notify_cq(completionQueue)
        var completions = [ibv_wc](repeating: ibv_wc(), count: 16)
        while !destroyed {
            let count = crdma_poll_cq(completionQueue, Int32(completions.count), &completions)
            guard count > 0 else { return }
            for completion in completions.prefix(Int(count)) {
                handle(completion)
                if destroyed { return }
            }
        }
    }

    private func handle(_ completion: ibv_wc) {
        let failed = completion.status != IBV_WC_SUCCESS
        if completion.wr_id < 1 << 63 {
            // A receive.
            guard !failed else {
                handlers?.failed("receive: \(String(cString: ibv_wc_status_str(completion.status)))")
                return
            }
            let index = Int(completion.wr_id)
            let bytes = receives.read(at: index * receiveSize, length: Int(completion.byte_len))
            if !postReceive(index) {
                handlers?.failed("ibv_post_recv: \(String(cString: strerror(errno)))")
                return
            }
            handlers?.received(bytes)
            return
        }
        guard let item = work.removeValue(forKey: completion.wr_id) else { return }
        defer { Self.release(item) }
        if failed {
            handlers?.failed("\(Self.name(item)): \(String(cString: ibv_wc_status_str(completion.status)))")
            return
        }
        if case .read(let buffer, let length, let done) = item {
            done(buffer.read(length: length))
        }
    }

    private static func name(_ item: Work) -> String {
        switch item {
        case .send: return "send"
        case .read: return "RDMA read"
        case .write: return "RDMA write"
        }
    }

    private static func release(_ item: Work) {
        switch item {
        case .send(let buffer), .read(let buffer, _, _), .write(let buffer): buffer.release()
        }
    }

    /// Destroys the queue pair, its completion queue and its memory (not the CM id).
    func destroy() {
        guard !destroyed else { return }
        destroyed = true
        handlers = nil
        reactor.forget(completionQueue)
        rdma_destroy_qp(id)
        ibv_destroy_cq(completionQueue)
        for item in work.values { Self.release(item) }
        work.removeAll()
        receives.release()
    }
}
#endif
