import NIOCore
import NIOPosix

/// How a ``DiscoveryClient`` connects.
public struct DiscoveryClientOptions: Sendable {
    /// HOSTNQN.
    public var hostNQN: String
    /// HOSTID, 16 bytes.
    public var hostIdentifier: [UInt8]
    /// The discovery subsystem NQN to connect to.
    public var subsystemNQN: String = DEMCore.wellKnownDiscoveryNQN
    /// Digests to ask for.
    public var digests: NVMeTCPDigests = []
    /// KATO in milliseconds (0: none).
    public var keepAliveTimeout: UInt32 = 0
    /// The size of each Get Log Page read of the entries (libnvme reads 4 KiB at a time).
    public var logPageChunkLength: Int = 4096
    /// How long one command may take before the session is given up.
    public var commandTimeout: TimeAmount = .seconds(10)
    /// How long the connection may take to open.
    public var connectTimeout: TimeAmount = .seconds(10)
    /// NVMe/TCP, or NVMe/RDMA (in a build with the `RDMA` trait).
    public var transport: NVMeTransport = .tcp
    /// The host's DH-HMAC-CHAP secret, used when the controller asks (AUTHREQ); without one, a
    /// controller that asks is refused.
    public var hostKey: DHCHAPSecret?
    /// The controller's secret: with it the controller must authenticate too (two-way), and a
    /// controller that does not ask for authentication is refused.
    public var controllerKey: DHCHAPSecret?

    public init(hostNQN: String, hostIdentifier: [UInt8]) {
        self.hostNQN = hostNQN
        self.hostIdentifier = hostIdentifier
    }
}

/// A host's discovery session with a discovery controller, in the order Linux uses: ICReq,
/// Connect, CC.EN, CSTS.RDY, Identify, then the log page read in chunks with the GENCTR re-check.
/// The same admin session carries ``InBandClient`` to dem-em's management controller.
public final class DiscoveryClient: Sendable {
    /// The connection.
    public let connection: any NVMeHostConnection
    /// The controller's Identify Controller data.
    public let identify: IdentifyControllerData
    /// The CNTLID the controller gave this session.
    public let controllerIdentifier: UInt16
    private let options: DiscoveryClientOptions

    private init(
        connection: any NVMeHostConnection,
        identify: IdentifyControllerData,
        controllerIdentifier: UInt16,
        options: DiscoveryClientOptions
    ) {
        self.connection = connection
        self.identify = identify
        self.controllerIdentifier = controllerIdentifier
        self.options = options
    }

    /// Connects to the discovery controller at `host`:`port` and brings it to ready.
    public static func connect(
        host: String,
        port: Int = DEMCore.discoveryPort,
        options: DiscoveryClientOptions,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> DiscoveryClient {
        let connection: any NVMeHostConnection
        switch options.transport {
        case .tcp:
            let tcp = try await NVMeTCPHostConnection.connect(
                host: host,
                port: port,
                group: group,
                connectTimeout: options.connectTimeout
            )
            do {
                _ = try await tcp.initialize(InitializeConnectionRequest(digests: options.digests))
            } catch {
                await tcp.close()
                throw error
            }
            connection = tcp
        case .rdma:
            // The RDMA CM exchange opens the queue; there is no ICReq.
            connection = try await NVMeRDMAHostConnection.connect(
                host: host,
                port: port,
                group: group,
                connectTimeout: options.connectTimeout
            )
        }
        do {
            var data = ByteBuffer()
            data.writeConnectData(
                ConnectData(
                    hostIdentifier: options.hostIdentifier,
                    subsystemNQN: options.subsystemNQN,
                    hostNQN: options.hostNQN
                )
            )
            let connect = ConnectCommand(keepAliveTimeout: options.keepAliveTimeout)
            let connected = try await run(
                connection,
                "Connect",
                connect.submissionQueueEntry(commandIdentifier: 0),
                data: data,
                options: options
            )
            let controllerIdentifier = UInt16(truncatingIfNeeded: connected.completion.result)
            let requirements = UInt16(truncatingIfNeeded: connected.completion.result >> 16)
            try await authenticate(connection, requirements: requirements, options: options)
            _ = try await run(
                connection,
                "Property Get CAP",
                FabricsCommand.propertyGetEntry(
                    commandIdentifier: 0,
                    offset: ControllerProperty.capabilities,
                    size8: true
                ),
                options: options
            )
            _ = try await run(
                connection,
                "Property Set CC",
                FabricsCommand.propertySetEntry(
                    commandIdentifier: 0,
                    offset: ControllerProperty.configuration,
                    value: 0x46_0001
                ),
                options: options
            )
            var ready = false
            for _ in 0..<50 {
                let status = try await run(
                    connection,
                    "Property Get CSTS",
                    FabricsCommand.propertyGetEntry(
                        commandIdentifier: 0,
                        offset: ControllerProperty.status,
                        size8: false
                    ),
                    options: options
                )
                if status.completion.result & 1 == 1 {
                    ready = true
                    break
                }
                try await Task.sleep(for: .milliseconds(100))
            }
            guard ready else { throw NVMeHostError.timedOut("CSTS.RDY") }
            let identified = try await run(
                connection,
                "Identify",
                IdentifyCommand(controllerOrNamespaceStructure: IdentifyCommand.CNS.controller)
                    .submissionQueueEntry(commandIdentifier: 0),
                expectedDataLength: IdentifyControllerData.size,
                options: options
            )
            guard var identifyData = identified.data, let identify = identifyData.readIdentifyControllerData() else {
                throw NVMeHostError.protocolViolation("Identify returned \(identified.data?.readableBytes ?? 0) bytes")
            }
            return DiscoveryClient(
                connection: connection,
                identify: identify,
                controllerIdentifier: controllerIdentifier,
                options: options
            )
        } catch {
            await connection.close()
            throw error
        }
    }

    /// DH-HMAC-CHAP on the admin queue (T_ID 0) when the Connect response asks for it (AUTHREQ
    /// ATR), or when the caller holds the controller's key and wants it proven.
    private static func authenticate(
        _ connection: any NVMeHostConnection,
        requirements: UInt16,
        options: DiscoveryClientOptions
    ) async throws {
        guard requirements & DHCHAP.authenticationRequired != 0 else {
            if options.controllerKey != nil {
                throw NVMeHostError.authenticationFailed(
                    "\(options.subsystemNQN) did not ask for authentication, so it cannot prove its controller key"
                )
            }
            return
        }
        guard let hostKey = options.hostKey else {
            throw NVMeHostError.authenticationFailed(
                "\(options.subsystemNQN) requires DH-HMAC-CHAP and no key was given"
            )
        }
        var exchange = DHCHAPHostExchange(
            hostNQN: options.hostNQN,
            subsystemNQN: options.subsystemNQN,
            hostKey: hostKey,
            controllerKey: options.controllerKey
        )
        func send(_ message: AuthenticationMessage) async throws {
            let bytes = message.bytes
            _ = try await run(
                connection,
                "Authentication Send (\(message.name))",
                AuthenticationCommand.sendEntry(commandIdentifier: 0, length: bytes.readableBytes),
                data: bytes,
                options: options
            )
        }
        try await send(exchange.start())
        for _ in 0..<3 {
            let received = try await run(
                connection,
                "Authentication Receive",
                AuthenticationCommand.receiveEntry(commandIdentifier: 0, length: 4096),
                expectedDataLength: 4096,
                options: options
            )
            switch exchange.received(received.data ?? ByteBuffer()) {
            case .send(let message):
                try await send(message)
            case .sendAndFinish(let message):
                try await send(message)
                return
            case .finished:
                return
            case .failed(let message, let reason):
                if let message { try? await send(message) }
                throw NVMeHostError.authenticationFailed(reason)
            }
        }
        throw NVMeHostError.authenticationFailed("the controller did not finish the transaction")
    }

    /// Reads `length` bytes of the discovery log page at `offset`.
    public func readLogPage(
        offset: UInt64,
        length: Int,
        retainAsynchronousEvent: Bool = false
    ) async throws -> ByteBuffer {
        let command = GetLogPageCommand(
            logPageIdentifier: LogPageIdentifier.discovery,
            retainAsynchronousEvent: retainAsynchronousEvent,
            numberOfDwords: UInt64(length / 4),
            offset: offset
        )
        let result = try await Self.run(
            connection,
            "Get Log Page",
            command.submissionQueueEntry(commandIdentifier: 0),
            expectedDataLength: length,
            options: options
        )
        guard let data = result.data, data.readableBytes == length else {
            throw NVMeHostError.protocolViolation(
                "Get Log Page returned \(result.data?.readableBytes ?? 0) of \(length) bytes"
            )
        }
        return data
    }

    /// Reads the whole discovery log page: the header, the entries in chunks, then the header again;
    /// when GENCTR moved in between, starts over (up to 10 times, as libnvme does).
    public func readDiscoveryLogPage() async throws -> DiscoveryLogPage {
        var bytes = try await readRawDiscoveryLogPage()
        do {
            return try bytes.readDiscoveryLogPage()
        } catch {
            throw NVMeHostError.protocolViolation("discovery log page: \(error)")
        }
    }

    /// Like ``readDiscoveryLogPage()`` but returns the page's bytes as read.
    public func readRawDiscoveryLogPage() async throws -> ByteBuffer {
        for _ in 0..<10 {
            var header = try await readLogPage(
                offset: 0,
                length: DiscoveryLogPageHeader.size,
                retainAsynchronousEvent: true
            )
            let first = header.readDiscoveryLogPageHeader()!
            let total = Int(clamping: first.numberOfRecords) * DiscoveryLogEntry.size
            var page = ByteBuffer()
            page.reserveCapacity(DiscoveryLogPageHeader.size + total)
            header.moveReaderIndex(to: 0)
            page.writeBuffer(&header)
            var offset = 0
            while offset < total {
                let length = min(options.logPageChunkLength, total - offset)
                var chunk = try await readLogPage(
                    offset: UInt64(DiscoveryLogPageHeader.size + offset),
                    length: length,
                    retainAsynchronousEvent: true
                )
                page.writeBuffer(&chunk)
                offset += length
            }
            var again = try await readLogPage(offset: 0, length: DiscoveryLogPageHeader.size)
            let second = again.readDiscoveryLogPageHeader()!
            if second.generationCounter == first.generationCounter {
                return page
            }
        }
        throw NVMeHostError.protocolViolation("GENCTR kept changing while the log page was read")
    }

    /// Parks an Asynchronous Event Request and waits (without a time limit) for its completion.
    public func nextAsynchronousEvent() async throws -> AsynchronousEvent {
        let result = try await connection.submit(AsynchronousEvent.requestEntry(commandIdentifier: 0))
        guard result.completion.status.isSuccess else {
            throw NVMeHostError.commandFailed("Asynchronous Event Request", result.completion.status)
        }
        return AsynchronousEvent(result: result.completion.result)
    }

    /// Sends a Keep Alive.
    public func keepAlive() async throws {
        _ = try await Self.run(
            connection,
            "Keep Alive",
            AsynchronousEvent.keepAliveEntry(commandIdentifier: 0),
            options: options
        )
    }

    /// Runs one admin command on the session and returns its result; an error status throws
    /// ``NVMeHostError/commandFailed(_:_:)`` naming it `name`.
    ///
    /// - Parameter timeout: how long it may take (the session's command timeout by default);
    ///   when it passes, the connection is closed.
    public func execute(
        _ name: String,
        _ command: SubmissionQueueEntry,
        data: ByteBuffer? = nil,
        expectedDataLength: Int = 0,
        timeout: TimeAmount? = nil
    ) async throws -> NVMeCommandResult {
        try await Self.run(
            connection,
            name,
            command,
            data: data,
            expectedDataLength: expectedDataLength,
            options: options,
            timeout: timeout
        )
    }

    /// Shuts the controller down (CC.SHN) and closes the connection.
    public func close() async {
        _ = try? await Self.run(
            connection,
            "Property Set CC",
            FabricsCommand.propertySetEntry(
                commandIdentifier: 0,
                offset: ControllerProperty.configuration,
                value: 0x46_4001
            ),
            options: options
        )
        await connection.close()
    }

    private static func run(
        _ connection: any NVMeHostConnection,
        _ name: String,
        _ command: SubmissionQueueEntry,
        data: ByteBuffer? = nil,
        expectedDataLength: Int = 0,
        options: DiscoveryClientOptions,
        timeout limit: TimeAmount? = nil
    ) async throws -> NVMeCommandResult {
        let future = connection.submitFuture(command, data: data, expectedDataLength: expectedDataLength)
        let timeout = connection.eventLoop.scheduleTask(in: limit ?? options.commandTimeout) {
            connection.abort()
        }
        defer { timeout.cancel() }
        let result = try await future.get()
        guard result.completion.status.isSuccess else {
            throw NVMeHostError.commandFailed(name, result.completion.status)
        }
        return result
    }
}
