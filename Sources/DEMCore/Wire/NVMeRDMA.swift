import NIOCore

/// The NVMe/RDMA transport binding's wire format (NVMe over Fabrics RDMA Transport 1.1): the
/// private data of the RDMA CM exchange that opens a queue. Capsules travel in SEND messages
/// (a 64-byte SQE, a 16-byte CQE) and data through Keyed SGL Data Blocks (``SGLDescriptor/keyed(address:length:key:invalidate:)``).
public enum NVMeRDMA {
    /// The private data of an RDMA CM exchange is 32 bytes.
    public static let privateDataLength = 32

    /// RDMA_CM_REQUEST private data (Figure 3): what the host asks for a queue.
    public struct ConnectRequest: Sendable, Hashable {
        /// RECFMT, 0.
        public var recordFormat: UInt16 = 0
        /// QID: 0 for the admin queue.
        public var queueIdentifier: UInt16
        /// HRQSIZE: the host's receive queue size (responses it can take).
        public var hostReceiveQueueSize: UInt16
        /// HSQSIZE: the submission queue size, 0's based.
        public var hostSendQueueSize: UInt16

        public init(queueIdentifier: UInt16 = 0, hostReceiveQueueSize: UInt16, hostSendQueueSize: UInt16) {
            self.queueIdentifier = queueIdentifier
            self.hostReceiveQueueSize = hostReceiveQueueSize
            self.hostSendQueueSize = hostSendQueueSize
        }

        /// Reads it from the private data received, or `nil` when there are fewer than 8 bytes.
        public init?(_ bytes: [UInt8]) {
            guard bytes.count >= 8 else { return nil }
            func u16(_ at: Int) -> UInt16 { UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8 }
            self.recordFormat = u16(0)
            self.queueIdentifier = u16(2)
            self.hostReceiveQueueSize = u16(4)
            self.hostSendQueueSize = u16(6)
        }

        /// The 32 bytes sent.
        public var bytes: [UInt8] {
            NVMeRDMA.record([recordFormat, queueIdentifier, hostReceiveQueueSize, hostSendQueueSize])
        }
    }

    /// RDMA_CM_ACCEPT private data (Figure 4).
    public struct ConnectAccept: Sendable, Hashable {
        /// RECFMT, 0.
        public var recordFormat: UInt16 = 0
        /// CRQSIZE: the controller's receive queue size (capsules it can take).
        public var controllerReceiveQueueSize: UInt16

        public init(controllerReceiveQueueSize: UInt16) {
            self.controllerReceiveQueueSize = controllerReceiveQueueSize
        }

        public init?(_ bytes: [UInt8]) {
            guard bytes.count >= 4 else { return nil }
            self.recordFormat = UInt16(bytes[0]) | UInt16(bytes[1]) << 8
            self.controllerReceiveQueueSize = UInt16(bytes[2]) | UInt16(bytes[3]) << 8
        }

        public var bytes: [UInt8] { NVMeRDMA.record([recordFormat, controllerReceiveQueueSize]) }
    }

    /// RDMA_CM_REJECT private data (Figure 5): why a queue was refused.
    public struct ConnectReject: Error, Sendable, Hashable, CustomStringConvertible {
        /// RECFMT, 0.
        public var recordFormat: UInt16 = 0
        /// STS (Figure 6).
        public var status: UInt16

        /// 01h invalid private data length.
        public static let invalidLength: UInt16 = 0x01
        /// 02h invalid RECFMT.
        public static let invalidRecordFormat: UInt16 = 0x02
        /// 03h invalid QID.
        public static let invalidQueueIdentifier: UInt16 = 0x03
        /// 04h invalid HSQSIZE.
        public static let invalidHostSendQueueSize: UInt16 = 0x04
        /// 05h invalid HRQSIZE.
        public static let invalidHostReceiveQueueSize: UInt16 = 0x05
        /// 06h no resources.
        public static let noResources: UInt16 = 0x06

        public init(status: UInt16) { self.status = status }

        public init?(_ bytes: [UInt8]) {
            guard bytes.count >= 4 else { return nil }
            self.recordFormat = UInt16(bytes[0]) | UInt16(bytes[1]) << 8
            self.status = UInt16(bytes[2]) | UInt16(bytes[3]) << 8
        }

        public var bytes: [UInt8] { NVMeRDMA.record([recordFormat, status]) }

        public var description: String {
            switch status {
            case Self.invalidLength: return "invalid private data length"
            case Self.invalidRecordFormat: return "invalid RECFMT"
            case Self.invalidQueueIdentifier: return "invalid QID"
            case Self.invalidHostSendQueueSize: return "invalid HSQSIZE"
            case Self.invalidHostReceiveQueueSize: return "invalid HRQSIZE"
            case Self.noResources: return "no resources"
            default: return "status \(status)"
            }
        }
    }

    /// Whether the controller accepts a queue asked for with `privateData`, and with what.
    /// Discovery and management controllers have an admin queue only.
    ///
    /// - Parameter maximumQueueSize: the largest queue the controller gives (CAP.MQES + 1).
    public static func answer(
        connectRequest privateData: [UInt8],
        maximumQueueSize: Int
    ) -> Result<(request: ConnectRequest, accept: ConnectAccept), ConnectReject> {
        guard let request = ConnectRequest(privateData) else {
            return .failure(ConnectReject(status: ConnectReject.invalidLength))
        }
        guard request.recordFormat == 0 else {
            return .failure(ConnectReject(status: ConnectReject.invalidRecordFormat))
        }
        guard request.queueIdentifier == 0 else {
            return .failure(ConnectReject(status: ConnectReject.invalidQueueIdentifier))
        }
        guard request.hostSendQueueSize > 0, Int(request.hostSendQueueSize) < maximumQueueSize else {
            return .failure(ConnectReject(status: ConnectReject.invalidHostSendQueueSize))
        }
        guard request.hostReceiveQueueSize > 0 else {
            return .failure(ConnectReject(status: ConnectReject.invalidHostReceiveQueueSize))
        }
        // One receive per submission queue slot, as nvmet-rdma sizes it.
        return .success((request, ConnectAccept(controllerReceiveQueueSize: request.hostSendQueueSize + 1)))
    }

    /// Which way a command moves data: bits 1:0 of its opcode, or of FCTYPE for a Fabrics
    /// command (NVMe Base 2.1 §5.1, Figure 28; NVMe-oF 1.1 §6).
    public enum DataDirection: Sendable, Hashable {
        case none
        case hostToController
        case controllerToHost
        case bidirectional
    }

    public static func dataDirection(of command: SubmissionQueueEntry) -> DataDirection {
        let code =
            command.opcode == AdminOpcode.fabrics
            ? UInt8(truncatingIfNeeded: command.namespaceIdentifier) : command.opcode
        switch code & 0x3 {
        case 1: return .hostToController
        case 2: return .controllerToHost
        case 3: return .bidirectional
        default: return .none
        }
    }

    private static func record(_ fields: [UInt16]) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: privateDataLength)
        for (index, field) in fields.enumerated() {
            bytes[index * 2] = UInt8(truncatingIfNeeded: field)
            bytes[index * 2 + 1] = UInt8(truncatingIfNeeded: field >> 8)
        }
        return bytes
    }
}
