import NIOCore
import NIOPosix
import Synchronization

/// How an ``InBandClient`` connects.
public struct InBandClientOptions: Sendable {
    /// HOSTNQN (must be on dem-em's allow-list when it has one).
    public var hostNQN: String
    /// HOSTID, 16 bytes.
    public var hostIdentifier: [UInt8]
    /// dem-em's management NQN.
    public var subsystemNQN: String
    /// The fabric credential the challenge is answered with.
    public var credential: String
    /// KATO in milliseconds.
    public var keepAliveTimeout: UInt32 = 60_000
    /// How long one segment command may take.
    public var commandTimeout: TimeAmount = .seconds(10)
    /// How long a request may run on the target (the final Send segment completes with it).
    public var requestTimeout: TimeAmount = .seconds(30)
    /// How long the connection may take to open.
    public var connectTimeout: TimeAmount = .seconds(10)
    /// NVMe/TCP, or NVMe/RDMA (in a build with the `RDMA` trait).
    public var transport: NVMeTransport = .tcp
    /// Bytes of a request per Send segment (in-capsule data; dem-em takes up to 8 KiB).
    public var sendSegmentLength = 8192
    /// Bytes of a response per Receive segment.
    public var receiveSegmentLength = 32_768

    public init(hostNQN: String, hostIdentifier: [UInt8], subsystemNQN: String, credential: String) {
        self.hostNQN = hostNQN
        self.hostIdentifier = hostIdentifier
        self.subsystemNQN = subsystemNQN
        self.credential = credential
    }
}

/// dem's side of the in-band management channel (``InBandManagement``): an admin session with
/// dem-em's management controller, authenticated by answering its challenge, over which dem-em's
/// REST requests travel in NVMe-MI Send and Receive segments. One request at a time: callers
/// serialize.
public final class InBandClient: Sendable {
    /// The admin session.
    public let session: DiscoveryClient
    private let options: InBandClientOptions
    private let nextTag = Mutex<UInt16>(1)

    private init(session: DiscoveryClient, options: InBandClientOptions) {
        self.session = session
        self.options = options
    }

    /// Connects to the management controller at `host`:`port` and authenticates.
    ///
    /// - Throws: ``NVMeHostError``; `commandFailed` with Connect Invalid Host when this host NQN
    ///   is not allowed, `authenticationFailed` when the credentials differ (two-way
    ///   DH-HMAC-CHAP with keys derived from it, ``InBandManagement/keys(credential:)``).
    public static func connect(
        host: String,
        port: Int,
        options: InBandClientOptions,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> InBandClient {
        var session = DiscoveryClientOptions(hostNQN: options.hostNQN, hostIdentifier: options.hostIdentifier)
        session.subsystemNQN = options.subsystemNQN
        session.keepAliveTimeout = options.keepAliveTimeout
        session.commandTimeout = options.commandTimeout
        session.connectTimeout = options.connectTimeout
        session.transport = options.transport
        // Two-way DH-HMAC-CHAP: dem-em's controller proves it holds the credential too.
        let keys = InBandManagement.keys(credential: options.credential)
        session.hostKey = keys.host
        session.controllerKey = keys.controller
        let client = InBandClient(
            session: try await DiscoveryClient.connect(host: host, port: port, options: session, group: group),
            options: options
        )
        guard client.session.identify.controllerType == IdentifyControllerData.ControllerType.administrative else {
            await client.close()
            throw NVMeHostError.protocolViolation(
                "\(options.subsystemNQN) is not an administrative controller (CNTRLTYPE \(client.session.identify.controllerType))"
            )
        }
        return client
    }

    /// Sends `request` and returns dem-em's response.
    public func perform(_ request: InBandRequest) async throws -> InBandResponse {
        let message = request.encoded()
        guard message.readableBytes <= InBandManagement.maximumMessageLength else {
            throw NVMeHostError.protocolViolation("request of \(message.readableBytes) bytes is too large")
        }
        let tag = nextTag.withLock { tag in
            defer { tag = tag == UInt16.max ? 1 : tag + 1 }
            return tag
        }
        var offset = 0
        var responseLength = 0
        while offset < message.readableBytes {
            let length = min(options.sendSegmentLength, message.readableBytes - offset)
            let last = offset + length == message.readableBytes
            let result = try await session.execute(
                "Request segment",
                InBandCommand(
                    opcode: AdminOpcode.nvmeMISend,
                    operation: InBandManagement.Opcode.requestSegment,
                    tag: tag,
                    offset: UInt32(offset),
                    messageLength: UInt32(message.readableBytes)
                ).submissionQueueEntry(commandIdentifier: 0, dataLength: length),
                data: message.getSlice(at: message.readerIndex + offset, length: length)!,
                timeout: last ? options.requestTimeout : nil
            )
            offset += length
            if last { responseLength = Int(result.completion.result) }
        }
        guard responseLength >= InBandResponse.headerLength, responseLength <= InBandManagement.maximumMessageLength
        else { throw NVMeHostError.protocolViolation("response length \(responseLength)") }
        var response = ByteBuffer()
        response.reserveCapacity(responseLength)
        while response.readableBytes < responseLength {
            let length = min(options.receiveSegmentLength, responseLength - response.readableBytes)
            let result = try await session.execute(
                "Response segment",
                InBandCommand(
                    opcode: AdminOpcode.nvmeMIReceive,
                    operation: InBandManagement.Opcode.responseSegment,
                    tag: tag,
                    offset: UInt32(response.readableBytes)
                ).submissionQueueEntry(commandIdentifier: 0, dataLength: length),
                expectedDataLength: length
            )
            guard var data = result.data, data.readableBytes == length else {
                throw NVMeHostError.protocolViolation(
                    "response segment of \(result.data?.readableBytes ?? 0) bytes, \(length) asked for"
                )
            }
            response.writeBuffer(&data)
        }
        do {
            return try InBandResponse(decoding: response)
        } catch {
            throw NVMeHostError.protocolViolation("response: \(error)")
        }
    }

    /// Sends a Keep Alive.
    public func keepAlive() async throws { try await session.keepAlive() }

    /// Whether the connection is still open.
    public var isActive: Bool { session.connection.isActive }

    /// Ends the association.
    public func close() async { await session.close() }
}
