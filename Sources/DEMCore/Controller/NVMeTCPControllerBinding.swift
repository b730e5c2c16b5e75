import NIOCore

/// One NVMe/TCP controller connection as a pure state machine: the NVMe/TCP binding in front of
/// the transport-neutral ``ControllerStateMachine``. PDUs and timer events in, ``Action``s (PDUs,
/// a close, the controller's session actions) out; it never touches a channel, an event loop or
/// a clock (``NVMeTCPControllerHandler`` carries the actions out).
///
/// The binding (NVMe/TCP 1.0): ICReq/ICResp opens the connection and negotiates digests and the
/// host's data alignment; a command capsule carries the SQE and its in-capsule data, or names a
/// transport data block, whose data the binding asks for with one R2T and collects from the
/// host's H2CData PDUs (in order, each within MAXH2CDATA, the last one marked) before the
/// command goes to the controller, as NVMe/RDMA's binding reads a keyed block first; data for
/// the host goes in C2HData PDUs of at most
/// ``DiscoveryControllerConfiguration/maximumC2HDataLength`` bytes before the CapsuleResp; a
/// transport error ends the connection with a C2HTermReq, a host's H2CTermReq ends it at once.
public struct NVMeTCPControllerBinding {
    /// What the caller must do, in order.
    public enum Action: Sendable, Hashable {
        /// Send this PDU.
        case send(NVMeTCPPDU)
        /// Close the connection (after the PDUs sent before this action).
        case close(reason: String)
        /// Carry out a session action of the controller (``ControllerSessionDriver``).
        case session(ControllerSessionAction)
    }

    /// The controller.
    public private(set) var machine: ControllerStateMachine
    private let configuration: DiscoveryControllerConfiguration
    /// The digests negotiated by ICReq/ICResp; the caller parses and writes later PDUs with them.
    public private(set) var digests: NVMeTCPDigests = []
    /// The data alignment the host asked for in HPDA, in bytes.
    public private(set) var hostDataAlignment: Int = 4

    /// A command whose data is being collected after an R2T.
    private struct Transfer {
        var command: SubmissionQueueEntry
        var length: Int
        var received: ByteBuffer
        var dataDigestMismatch = false
    }
    /// Transfers under way, by TTAG.
    private var transfers: [UInt16: Transfer] = [:]
    private var nextTransferTag: UInt16 = 0

    /// Commands whose data is being collected after an R2T.
    public var pendingTransfers: Int { transfers.count }

    /// - Parameters:
    ///   - configuration: the controller's fixed parameters.
    ///   - service: the discovery controller's log pages and controller IDs, or the management
    ///     controller's requests.
    ///   - localAddress: the local IP address of the connection (fills wildcard listener entries).
    ///   - remoteAddress: the host's address, for logs.
    public init(
        configuration: DiscoveryControllerConfiguration,
        serving service: ControllerService,
        localAddress: String? = nil,
        remoteAddress: String? = nil
    ) {
        self.configuration = configuration
        self.machine = ControllerStateMachine(
            configuration: configuration,
            serving: service,
            transportSetupStep: "ICReq",
            localAddress: localAddress,
            remoteAddress: remoteAddress
        )
    }

    /// A discovery controller.
    public init(
        configuration: DiscoveryControllerConfiguration,
        service: any DiscoveryControllerService,
        localAddress: String? = nil,
        remoteAddress: String? = nil
    ) {
        self.init(
            configuration: configuration,
            serving: .discovery(service),
            localAddress: localAddress,
            remoteAddress: remoteAddress
        )
    }

    /// The administrative controller of the in-band management channel.
    public init(
        configuration: DiscoveryControllerConfiguration,
        management: any ManagementControllerService,
        localAddress: String? = nil,
        remoteAddress: String? = nil
    ) {
        self.init(
            configuration: configuration,
            serving: .management(management),
            localAddress: localAddress,
            remoteAddress: remoteAddress
        )
    }

    /// Whether this is the in-band channel's controller.
    public var isManagementController: Bool { machine.isManagementController }
    /// Whether the connection has ended.
    public var isClosed: Bool { machine.isClosed }
    /// The host, once it has connected.
    public var host: DiscoveryHostContext? { machine.host }

    // MARK: - Events

    /// The connection opened at `now`: the host must send its ICReq, then its Connect, within
    /// the setup timeout.
    public mutating func connectionOpened(now: NIODeadline) -> [Action] {
        translate(machine.connectionOpened(now: now))
    }

    /// A PDU arrived.
    public mutating func pduReceived(_ pdu: NVMeTCPPDU, now: NIODeadline) -> [Action] {
        if machine.isClosed { return [] }
        if machine.isAwaitingTransport {
            guard case .initializeConnectionRequest(let request) = pdu else {
                return terminate(.pduSequenceError, 0, "\(pdu.type) before ICReq", pdu)
            }
            return initializeConnection(request, now: now)
        }
        switch pdu {
        case .capsuleCommand(let capsule):
            if let data = capsule.data, data.readableBytes > configuration.maximumInCapsuleDataLength {
                return terminate(.invalidHeaderField, 4, "in-capsule data of \(data.readableBytes) bytes", pdu)
            }
            let command = capsule.command
            // Connect's data comes in its capsule (AssociationSetup refuses any other descriptor).
            let isConnect =
                command.opcode == AdminOpcode.fabrics
                && UInt8(truncatingIfNeeded: command.namespaceIdentifier) == FabricsCommandType.connect
            if command.dataPointer.isTransportDataBlock, command.dataPointer.length > 0,
                (capsule.data?.readableBytes ?? 0) == 0, !isConnect,
                NVMeRDMA.dataDirection(of: command) == .hostToController
            {
                return requestData(for: command)
            }
            return translate(machine.commandReceived(capsule, now: now))
        case .hostToControllerTerminationRequest(let request):
            machine.channelClosed()
            return [
                .close(reason: "host terminated the connection: \(request.status) FEI \(request.fieldErrorInformation)")
            ]
        case .initializeConnectionRequest:
            return terminate(.pduSequenceError, 0, "second ICReq", pdu)
        case .hostToControllerData(let data):
            return hostDataReceived(data, pdu, now: now)
        case .initializeConnectionResponse, .controllerToHostTerminationRequest, .capsuleResponse,
            .controllerToHostData, .readyToTransfer:
            return terminate(.invalidHeaderField, 0, "\(pdu.type) is a controller-to-host PDU", pdu)
        }
    }

    /// The framer or the PDU parser found a fatal transport error.
    public mutating func transportErrorCaught(_ error: NVMeTCPTransportError) -> [Action] {
        if machine.isClosed { return [] }
        machine.channelClosed()
        return [
            .send(.controllerToHostTerminationRequest(error.terminationRequest)),
            .close(reason: error.description),
        ]
    }

    /// See ``ControllerStateMachine/keepAliveTimerFired(now:)``.
    public mutating func keepAliveTimerFired(now: NIODeadline) -> [Action] {
        translate(machine.keepAliveTimerFired(now: now))
    }

    /// See ``ControllerStateMachine/discoveryLogChanged()``.
    public mutating func discoveryLogChanged() -> [Action] {
        translate(machine.discoveryLogChanged())
    }

    /// See ``ControllerStateMachine/managementRequestCompleted(_:)``.
    public mutating func managementRequestCompleted(_ response: ByteBuffer) -> [Action] {
        translate(machine.managementRequestCompleted(response))
    }

    /// See ``ControllerStateMachine/discoveryInformationCompleted(_:)``.
    public mutating func discoveryInformationCompleted(_ status: NVMeStatus) -> [Action] {
        translate(machine.discoveryInformationCompleted(status))
    }

    /// The connection closed.
    public mutating func channelClosed() {
        machine.channelClosed()
        transfers.removeAll()
    }

    // MARK: - The binding

    private mutating func initializeConnection(_ request: InitializeConnectionRequest, now: NIODeadline) -> [Action] {
        guard request.pduFormatVersion == 0 else {
            return terminate(.unsupportedParameter, 8, "PFV \(request.pduFormatVersion) is not supported", nil)
        }
        guard request.hostPDUDataAlignment <= 31 else {
            return terminate(.invalidHeaderField, 10, "HPDA \(request.hostPDUDataAlignment) above 31", nil)
        }
        let negotiated = request.digests.intersection([.header, .data])
        hostDataAlignment = (Int(request.hostPDUDataAlignment) + 1) * 4
        let response = InitializeConnectionResponse(
            digests: negotiated,
            maximumH2CDataLength: configuration.maximumH2CDataLength
        )
        // The ICResp itself never carries digests; the negotiated ones apply from the next PDU.
        digests = negotiated
        return [.send(.initializeConnectionResponse(response))] + translate(machine.transportEstablished(now: now))
    }

    /// One R2T for the whole of `command`'s data (MAXR2T is at least one), or Data SGL Length
    /// Invalid when it announces more than a command may bring.
    private mutating func requestData(for command: SubmissionQueueEntry) -> [Action] {
        let length = Int(command.dataPointer.length)
        guard length <= configuration.maximumHostDataLength else {
            let completion = CompletionQueueEntry(
                commandIdentifier: command.commandIdentifier,
                status: .dataSGLLengthInvalid.withDoNotRetry
            )
            return [.send(.capsuleResponse(CapsuleResponse(completion: completion)))]
        }
        // A tag not in use (a host has at most its queue's depth of commands outstanding).
        while transfers[nextTransferTag] != nil { nextTransferTag &+= 1 }
        let tag = nextTransferTag
        nextTransferTag &+= 1
        transfers[tag] = Transfer(command: command, length: length, received: ByteBuffer())
        let request = ReadyToTransfer(
            commandIdentifier: command.commandIdentifier,
            transferTag: tag,
            offset: 0,
            length: UInt32(length)
        )
        return [.send(.readyToTransfer(request))]
    }

    /// An H2CData PDU: the next part of a transfer; the command goes to the controller with the
    /// last one. A PDU that does not continue a transfer in order ends the connection.
    private mutating func hostDataReceived(
        _ data: HostToControllerData,
        _ pdu: NVMeTCPPDU,
        now: NIODeadline
    ) -> [Action] {
        guard !transfers.isEmpty else {
            return terminate(.pduSequenceError, 0, "H2CData without an R2T", pdu)
        }
        guard var transfer = transfers[data.transferTag] else {
            return terminate(.invalidHeaderField, 10, "H2CData for TTAG \(data.transferTag), which no R2T gave", pdu)
        }
        guard transfer.command.commandIdentifier == data.commandIdentifier else {
            return terminate(
                .invalidHeaderField,
                8,
                "H2CData for CCCID \(data.commandIdentifier) under the TTAG of CID \(transfer.command.commandIdentifier)",
                pdu
            )
        }
        guard data.data.readableBytes <= Int(configuration.maximumH2CDataLength) else {
            return terminate(
                .dataTransferLimitExceeded,
                0,
                "H2CData of \(data.data.readableBytes) bytes, above MAXH2CDATA \(configuration.maximumH2CDataLength)",
                pdu
            )
        }
        guard Int(data.dataOffset) == transfer.received.readableBytes,
            transfer.received.readableBytes + data.data.readableBytes <= transfer.length
        else {
            return terminate(
                .dataTransferOutOfRange,
                12,
                "H2CData at offset \(data.dataOffset) with \(data.data.readableBytes) bytes; expected offset \(transfer.received.readableBytes) of \(transfer.length)",
                pdu
            )
        }
        var part = data.data
        transfer.received.writeBuffer(&part)
        transfer.dataDigestMismatch = transfer.dataDigestMismatch || data.dataDigestMismatch
        let complete = transfer.received.readableBytes == transfer.length
        guard complete == data.isLast else {
            return terminate(
                .pduSequenceError,
                0,
                complete
                    ? "the H2CData completing the transfer is not marked LAST_PDU"
                    : "H2CData marked LAST_PDU at \(transfer.received.readableBytes) of \(transfer.length) bytes",
                pdu
            )
        }
        guard complete else {
            transfers[data.transferTag] = transfer
            return []
        }
        transfers[data.transferTag] = nil
        // The controller sees the data as NVMe/RDMA's binding presents what it read: in the capsule.
        var command = transfer.command
        command.dataPointer = .inCapsule(length: UInt32(transfer.length))
        return translate(
            machine.commandReceived(
                CapsuleCommand(
                    command: command,
                    data: transfer.received,
                    dataDigestMismatch: transfer.dataDigestMismatch
                ),
                now: now
            )
        )
    }

    private func translate(_ actions: [ControllerStateMachine.Action]) -> [Action] {
        var out: [Action] = []
        out.reserveCapacity(actions.count + 1)
        for action in actions {
            switch action {
            case .complete(let completion, let data):
                if let data { appendData(data, for: completion.commandIdentifier, to: &out) }
                out.append(.send(.capsuleResponse(CapsuleResponse(completion: completion))))
            case .close(let reason):
                out.append(.close(reason: reason))
            case .session(let action):
                out.append(.session(action))
            }
        }
        return out
    }

    /// C2HData PDUs of at most `maximumC2HDataLength` bytes.
    private func appendData(_ data: ByteBuffer, for commandIdentifier: UInt16, to out: inout [Action]) {
        let total = data.readableBytes
        let chunk = max(configuration.maximumC2HDataLength, 4)
        out.reserveCapacity(out.count + total / chunk + 2)
        var offset = 0
        while offset < total {
            let length = min(chunk, total - offset)
            out.append(
                .send(
                    .controllerToHostData(
                        ControllerToHostData(
                            commandIdentifier: commandIdentifier,
                            dataOffset: UInt32(offset),
                            data: data.getSlice(at: data.readerIndex + offset, length: length)!,
                            isLast: offset + length == total
                        )
                    )
                )
            )
            offset += length
        }
    }

    private mutating func terminate(
        _ status: NVMeTCPFatalErrorStatus,
        _ fieldErrorInformation: UInt32,
        _ reason: String,
        _ pdu: NVMeTCPPDU?
    ) -> [Action] {
        var header = ByteBuffer()
        if let pdu {
            var encoded = ByteBuffer()
            encoded.writeNVMeTCPPDU(pdu)
            header = encoded.getSlice(at: 0, length: min(pdu.type.headerLength, encoded.readableBytes))!
        }
        return transportErrorCaught(
            NVMeTCPTransportError(
                status,
                fieldErrorInformation: fieldErrorInformation,
                pduHeader: header,
                reason: reason
            )
        )
    }
}
