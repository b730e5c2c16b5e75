import NIOCore

/// The first handler of a TLS listener's connection: a TLS client's first byte is a handshake
/// record (22), and the connection goes on through `tls` (the handlers it adds after this one);
/// anything else is a client speaking plain HTTP to the TLS port (`http://host:22345/` typed into
/// a browser), which is answered with a redirect to `https://` the same host and port and closed.
/// The redirect names only the Host the client sent (checked to be a host name or address and a
/// port), and the console's page, never the path asked for. A client that sends nothing is closed
/// after `timeout`.
final class PlainHTTPRedirect: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let tls: (ChannelPipeline.SynchronousOperations) throws -> Void
    private let timeout: TimeAmount
    private var buffered: ByteBuffer?
    private var deadline: Scheduled<Void>?
    private var decided = false

    /// The largest plain request head read before answering it.
    static let maximumHead = 8192

    init(timeout: TimeAmount, tls: @escaping (ChannelPipeline.SynchronousOperations) throws -> Void) {
        self.timeout = timeout
        self.tls = tls
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        deadline = context.eventLoop.scheduleTask(in: timeout) {
            loopBound.value.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = Self.unwrapInboundIn(data)
        if decided {
            // Plain HTTP, being answered: the rest of the request is not read.
            return
        }
        if buffered == nil, let first = bytes.getInteger(at: bytes.readerIndex, as: UInt8.self), first == 22 {
            decided = true
            deadline?.cancel()
            do {
                try tls(context.pipeline.syncOperations)
            } catch {
                context.close(promise: nil)
                return
            }
            context.fireChannelRead(data)
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            return
        }
        if buffered == nil { buffered = bytes } else { buffered!.writeBuffer(&bytes) }
        guard let head = buffered, head.readableBytes <= Self.maximumHead else {
            answer(context, status: "400 Bad Request", location: nil)
            return
        }
        let text = String(decoding: head.readableBytesView, as: UTF8.self)
        guard text.contains("\r\n\r\n") || text.contains("\n\n") else { return }
        answer(context, status: "301 Moved Permanently", location: Self.location(head: text))
    }

    /// `https://<Host>/` for the Host header of a plain request head, if it is a host and port.
    static func location(head: String) -> String? {
        for line in head.split(whereSeparator: \.isNewline) {
            guard line.lowercased().hasPrefix("host:") else { continue }
            let host = line.dropFirst(5).trimmingCharacters(in: .whitespaces)
            let allowed = host.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-.:[]".contains($0)) }
            guard !host.isEmpty, host.count <= 260, allowed else { return nil }
            return "https://" + host + "/"
        }
        return nil
    }

    private func answer(_ context: ChannelHandlerContext, status: String, location: String?) {
        decided = true
        deadline?.cancel()
        let body =
            location.map { "This port speaks HTTPS: \($0)\n" }
            ?? "This port speaks HTTPS: use https:// and this host and port.\n"
        var head = "HTTP/1.1 \(location == nil ? "400 Bad Request" : status)\r\n"
        if let location { head += "Location: \(location)\r\n" }
        head +=
            "Content-Type: text/plain; charset=utf-8\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n"
        let response = context.channel.allocator.buffer(string: head + body)
        context.writeAndFlush(Self.wrapOutboundOut(response)).whenComplete { _ in
            context.close(promise: nil)
        }
    }
}
