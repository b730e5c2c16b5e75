import DEMCore
import DEMEndpoint
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The exchanges recorded from SPDK v24.01's nvmf_tgt (Fixtures/spdk).
struct SPDKRecording {
    struct Exchange {
        var request: JSONValue
        var response: JSONValue
        var method: String { request["method"]?.stringValue ?? "" }
        var params: JSONValue? { request["params"] }
    }

    let exchanges: [Exchange]

    static let shared = SPDKRecording()

    private init() {
        var exchanges: [Exchange] = []
        for name in ["nvmf_tgt-v24.01-rpc-minimal", "nvmf_tgt-v24.01-rpc"] {
            let url = Bundle.module.url(forResource: "Fixtures/spdk/\(name)", withExtension: "json")!
            let file = try! JSONValue(parsing: Array(try! Data(contentsOf: url)))
            for call in file["calls"]?.arrayValue ?? [] {
                exchanges.append(Exchange(request: call["request"]!, response: call["response"]!))
            }
        }
        self.exchanges = exchanges
    }

    /// The recorded exchanges of `method`.
    func calls(_ method: String) -> [Exchange] { exchanges.filter { $0.method == method } }

    /// The recorded answer to the first call of `method` whose answer satisfies `where`.
    func answer(_ method: String, where test: (JSONValue) -> Bool = { _ in true }) -> JSONValue {
        calls(method).map(\.response).first(where: test)!
    }

    /// Parameters SPDK v24.01 documents for a method that the recording does not show, which
    /// dem-em sends; each was accepted by the real target in `scripts/interop/run.sh spdk`.
    static let optionalMembers: [String: Set<String>] = [
        "nvmf_subsystem_add_ns.namespace": ["nsid", "uuid", "nguid"],
        "nvmf_subsystem_remove_listener.listen_address": ["adrfam"],
    ]

    /// The recorded exchange whose request has the shape of `request`: the same method, the
    /// same members (recursively, with the same JSON types), optional ones aside. An exact
    /// match is preferred.
    func match(_ request: JSONValue) -> Exchange? {
        let method = request["method"]?.stringValue ?? ""
        let candidates = calls(method)
        if let exact = candidates.first(where: { Self.equal($0.params, request["params"]) }) { return exact }
        return candidates.first { Self.sameShape($0.params, request["params"], path: method) }
    }

    static func equal(_ a: JSONValue?, _ b: JSONValue?) -> Bool {
        switch (a, b) {
        case (nil, nil): return true
        case (.object(let x)?, .object(let y)?):
            guard x.count == y.count else { return false }
            return x.allSatisfy { member in equal(member.value, y.first { $0.key == member.key }?.value) }
        case (.array(let x)?, .array(let y)?):
            return x.count == y.count && zip(x, y).allSatisfy { equal($0, $1) }
        default: return a == b
        }
    }

    static func sameShape(_ recorded: JSONValue?, _ sent: JSONValue?, path: String) -> Bool {
        switch (recorded, sent) {
        case (nil, nil): return true
        case (.object(let x)?, .object(let y)?):
            let optional = optionalMembers[path] ?? []
            let recordedKeys = Set(x.map(\.key))
            let sentKeys = Set(y.map(\.key))
            // Every member sent was recorded (or is a documented optional one); every member
            // recorded that is not optional in SPDK (rpc.py's defaults aside) is sent.
            guard sentKeys.subtracting(optional).isSubset(of: recordedKeys) else { return false }
            return y.allSatisfy { member in
                guard let other = x.first(where: { $0.key == member.key })?.value else { return true }
                return sameShape(other, member.value, path: "\(path).\(member.key)")
            }
        case (.array?, .array?): return true
        case (.string?, .string?), (.number?, .number?), (.bool?, .bool?), (.null?, .null?): return true
        default: return false
        }
    }
}

/// A Unix-socket server that answers as SPDK v24.01's nvmf_tgt answered in the recording (the
/// real nvmf_tgt is built from SPDK's source, which CI does not have; `SPDKRealTargetTests` and
/// the interop scenario run the real one when SPDK_DIR is given). Each request is matched with
/// a recorded one of the same shape and answered with that recorded answer, its id replaced;
/// the test can set the answer of a method (a recorded one) for the calls that read state.
/// Answers are sent in small pieces, and two answers can share one write.
final class SPDKReplayTarget: @unchecked Sendable {
    let path: String
    private let listener: Int32
    private let lock = NSLock()
    private var _received: [JSONValue] = []
    private var _unmatched: [JSONValue] = []
    private var answers: [String: [JSONValue]] = [:]
    private var clients: [Int32] = []
    private var thread: Thread?
    private var stopped = false
    /// Bytes sent instead of the next answer (garbage), once.
    var garbage: [UInt8]?

    init(path: String) throws {
        self.path = path
        unlink(path)
        listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in path.utf8.enumerated() { raw[i] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0, listen(listener, 8) == 0 else { throw POSIXError(.EADDRINUSE) }
        let thread = Thread { [unowned self] in self.acceptLoop() }
        self.thread = thread
        thread.start()
    }

    /// Every request received, in order.
    var received: [JSONValue] { lock.withLock { _received } }
    /// The methods of the requests received.
    var methods: [String] { received.compactMap { $0["method"]?.stringValue } }
    /// Requests no recorded one has the shape of.
    var unmatched: [JSONValue] { lock.withLock { _unmatched } }

    /// Answers the next calls of `method` with `responses` (recorded answers: a result or an
    /// error object), then the last one for every later call.
    func answer(_ method: String, with responses: JSONValue...) {
        lock.withLock { answers[method] = responses }
    }

    func resetLog() { lock.withLock { _received = [] } }

    /// Closes every connection (the target "restarts"): the next call must reconnect.
    func dropConnections() {
        lock.withLock {
            for client in clients { shutdown(client, Int32(SHUT_RDWR)) }
            clients = []
        }
    }

    func stop() {
        lock.withLock { stopped = true }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        dropConnections()
        unlink(path)
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 { return }
            let done = lock.withLock { () -> Bool in
                if stopped { return true }
                clients.append(client)
                return false
            }
            if done {
                close(client)
                return
            }
            Thread { [unowned self] in self.serve(client) }.start()
        }
    }

    private func serve(_ client: Int32) {
        defer { close(client) }
        var stream = SPDKJSONStream()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = recv(client, &buffer, buffer.count, 0)
            if count <= 0 { return }
            stream.append(buffer[0..<count])
            var output: [UInt8] = []
            while let request = try? stream.next() {
                output += respond(to: request)
            }
            // Sent in pieces of 7 bytes: the client must reassemble.
            var offset = 0
            while offset < output.count {
                let end = min(offset + 7, output.count)
                let sent = output[offset..<end].withUnsafeBytes {
                    Glibc.send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
                }
                if sent <= 0 { return }
                offset += sent
            }
        }
    }

    private func respond(to request: JSONValue) -> [UInt8] {
        let method = request["method"]?.stringValue ?? ""
        let id = request["id"] ?? .null
        let scripted: JSONValue? = lock.withLock {
            _received.append(request)
            if let junk = garbage {
                garbage = nil
                return .string(String(decoding: junk, as: UTF8.self))
            }
            guard var list = answers[method], let first = list.first else { return nil }
            if list.count > 1 {
                list.removeFirst()
                answers[method] = list
            }
            return first
        }
        if case .string(let junk)? = scripted { return Array(junk.utf8) }
        var response: JSONValue
        if let scripted {
            response = scripted
        } else if let exchange = SPDKRecording.shared.match(request) {
            response = exchange.response
        } else {
            lock.withLock { _unmatched.append(request) }
            response = .members([
                ("jsonrpc", .string("2.0")), ("id", id),
                ("error", .members([("code", .int(-32601)), ("message", .string("Method not found"))])),
            ])
        }
        guard case .object(let members) = response else { return [] }
        response = .object(members.map { $0.key == "id" ? JSONMember(key: "id", value: id) : $0 })
        return Array(response.serialized(pretty: false).utf8)
    }
}
