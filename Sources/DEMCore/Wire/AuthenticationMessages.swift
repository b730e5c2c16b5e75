import NIOCore

/// The messages of NVMe in-band authentication with DH-HMAC-CHAP (NVMe Base 2.1 §8.3.4.5),
/// carried as the data of Authentication Send (host to controller) and Authentication Receive
/// (controller to host). Multi-byte fields are little-endian; a message may be followed by
/// padding (Authentication Receive returns the whole allocation).
public enum AuthenticationMessage: Sendable, Hashable {
    case negotiate(Negotiate)
    case challenge(Challenge)
    case reply(Reply)
    case success1(Success1)
    case success2(transactionIdentifier: UInt16)
    /// AUTH_Failure1 (controller to host).
    case failure1(Failure)
    /// AUTH_Failure2 (host to controller).
    case failure2(Failure)

    /// AUTH-Type: the common messages (Negotiate, Failure) or DH-HMAC-CHAP's.
    enum AuthType {
        static let common: UInt8 = 0x00
        static let dhchap: UInt8 = 0x01
    }

    /// AUTH-ID of each message.
    enum AuthID {
        static let negotiate: UInt8 = 0x00
        static let challenge: UInt8 = 0x01
        static let reply: UInt8 = 0x02
        static let success1: UInt8 = 0x03
        static let success2: UInt8 = 0x04
        static let failure2: UInt8 = 0xF0
        static let failure1: UInt8 = 0xF1
    }

    /// AUTH_Negotiate: the protocols, hashes and groups the host offers.
    public struct Negotiate: Sendable, Hashable {
        public var transactionIdentifier: UInt16
        /// SC_C: secure channel concatenation asked for (0: none).
        public var secureChannelConcatenation: UInt8 = 0
        /// The protocol descriptors: (AUTHID, hash IDs, DH group IDs), as sent.
        public var protocols: [Descriptor]

        public struct Descriptor: Sendable, Hashable {
            public var identifier: UInt8
            public var hashIdentifiers: [UInt8]
            public var groupIdentifiers: [UInt8]

            public init(identifier: UInt8, hashIdentifiers: [UInt8], groupIdentifiers: [UInt8]) {
                self.identifier = identifier
                self.hashIdentifiers = hashIdentifiers
                self.groupIdentifiers = groupIdentifiers
            }
        }

        public init(transactionIdentifier: UInt16, secureChannelConcatenation: UInt8 = 0, protocols: [Descriptor]) {
            self.transactionIdentifier = transactionIdentifier
            self.secureChannelConcatenation = secureChannelConcatenation
            self.protocols = protocols
        }
    }

    /// DH-HMAC-CHAP_Challenge: the controller's hash, group, sequence number, challenge C1 and
    /// DH value.
    public struct Challenge: Sendable, Hashable {
        public var transactionIdentifier: UInt16
        public var hashIdentifier: UInt8
        public var groupIdentifier: UInt8
        public var sequenceNumber: UInt32
        public var challenge: [UInt8]
        public var dhValue: [UInt8]

        public init(
            transactionIdentifier: UInt16,
            hashIdentifier: UInt8,
            groupIdentifier: UInt8,
            sequenceNumber: UInt32,
            challenge: [UInt8],
            dhValue: [UInt8]
        ) {
            self.transactionIdentifier = transactionIdentifier
            self.hashIdentifier = hashIdentifier
            self.groupIdentifier = groupIdentifier
            self.sequenceNumber = sequenceNumber
            self.challenge = challenge
            self.dhValue = dhValue
        }
    }

    /// DH-HMAC-CHAP_Reply: the host's response R1, its own challenge C2 (bidirectional) with
    /// its sequence number S2, and its DH value.
    public struct Reply: Sendable, Hashable {
        public var transactionIdentifier: UInt16
        public var response: [UInt8]
        /// C2, when the host wants the controller to authenticate too (CVALID).
        public var challenge: [UInt8]?
        public var sequenceNumber: UInt32
        public var dhValue: [UInt8]

        public init(
            transactionIdentifier: UInt16,
            response: [UInt8],
            challenge: [UInt8]?,
            sequenceNumber: UInt32,
            dhValue: [UInt8]
        ) {
            self.transactionIdentifier = transactionIdentifier
            self.response = response
            self.challenge = challenge
            self.sequenceNumber = sequenceNumber
            self.dhValue = dhValue
        }
    }

    /// DH-HMAC-CHAP_Success1: the host is authenticated; R2 when the host asked for it.
    public struct Success1: Sendable, Hashable {
        public var transactionIdentifier: UInt16
        /// HL.
        public var hashLength: UInt8
        /// R2 (RVALID).
        public var response: [UInt8]?

        public init(transactionIdentifier: UInt16, hashLength: UInt8, response: [UInt8]?) {
            self.transactionIdentifier = transactionIdentifier
            self.hashLength = hashLength
            self.response = response
        }
    }

    /// AUTH_Failure1/2: reason code 01h (authentication failed) and its explanation.
    public struct Failure: Sendable, Hashable {
        public var transactionIdentifier: UInt16
        public var reasonCode: UInt8 = 1
        public var explanation: UInt8

        public init(transactionIdentifier: UInt16, reason: DHCHAP.FailureReason) {
            self.transactionIdentifier = transactionIdentifier
            self.explanation = reason.rawValue
        }

        init(transactionIdentifier: UInt16, reasonCode: UInt8, explanation: UInt8) {
            self.transactionIdentifier = transactionIdentifier
            self.reasonCode = reasonCode
            self.explanation = explanation
        }

        /// The explanation, when it is one NVMe defines.
        public var reason: DHCHAP.FailureReason? { DHCHAP.FailureReason(rawValue: explanation) }
    }

    /// A message that cannot be read, with the failure explanation it earns.
    public struct ParseError: Error, Sendable, Hashable, CustomStringConvertible {
        public var reason: DHCHAP.FailureReason
        public var description: String
    }

    /// The transaction the message belongs to (T_ID).
    public var transactionIdentifier: UInt16 {
        switch self {
        case .negotiate(let m): m.transactionIdentifier
        case .challenge(let m): m.transactionIdentifier
        case .reply(let m): m.transactionIdentifier
        case .success1(let m): m.transactionIdentifier
        case .success2(let id): id
        case .failure1(let m), .failure2(let m): m.transactionIdentifier
        }
    }

    /// The message's name as NVMe writes it.
    public var name: String {
        switch self {
        case .negotiate: "AUTH_Negotiate"
        case .challenge: "DH-HMAC-CHAP_Challenge"
        case .reply: "DH-HMAC-CHAP_Reply"
        case .success1: "DH-HMAC-CHAP_Success1"
        case .success2: "DH-HMAC-CHAP_Success2"
        case .failure1: "AUTH_Failure1"
        case .failure2: "AUTH_Failure2"
        }
    }

    /// Reads one message from the start of `bytes` (anything after it is padding).
    public init(parsing bytes: ByteBuffer) throws(ParseError) {
        var bytes = bytes
        func short(_ what: String) -> ParseError {
            ParseError(reason: .incorrectPayload, description: "\(what) is cut short")
        }
        guard bytes.readableBytes >= 8, let type = bytes.getInteger(at: bytes.readerIndex, as: UInt8.self),
            let id = bytes.getInteger(at: bytes.readerIndex + 1, as: UInt8.self),
            let transaction = bytes.getInteger(at: bytes.readerIndex + 4, endianness: .little, as: UInt16.self)
        else { throw short("the authentication message") }
        let base = bytes.readerIndex
        func byte(_ offset: Int) -> UInt8 { bytes.getInteger(at: base + offset, as: UInt8.self) ?? 0 }
        func bytesAt(_ offset: Int, _ count: Int) -> [UInt8] { bytes.getBytes(at: base + offset, length: count) ?? [] }
        switch (type, id) {
        case (AuthType.common, AuthID.negotiate):
            let count = Int(byte(7))
            guard bytes.readableBytes >= 8 + 64 * count else { throw short("AUTH_Negotiate") }
            var protocols: [Negotiate.Descriptor] = []
            for index in 0..<count {
                let start = 8 + 64 * index
                let hashes = Int(byte(start + 2))
                let groups = Int(byte(start + 3))
                guard hashes <= 30, groups <= 30 else {
                    throw ParseError(
                        reason: .incorrectPayload,
                        description: "AUTH_Negotiate lists \(hashes) hashes and \(groups) groups (at most 30 each)"
                    )
                }
                protocols.append(
                    Negotiate.Descriptor(
                        identifier: byte(start),
                        hashIdentifiers: bytesAt(start + 4, hashes),
                        groupIdentifiers: bytesAt(start + 34, groups)
                    )
                )
            }
            self = .negotiate(
                Negotiate(transactionIdentifier: transaction, secureChannelConcatenation: byte(6), protocols: protocols)
            )
        case (AuthType.dhchap, AuthID.challenge), (AuthType.dhchap, AuthID.reply):
            guard bytes.readableBytes >= 16,
                let dhLength = bytes.getInteger(at: base + 10, endianness: .little, as: UInt16.self),
                let sequence = bytes.getInteger(at: base + 12, endianness: .little, as: UInt32.self)
            else { throw short(id == AuthID.challenge ? "DH-HMAC-CHAP_Challenge" : "DH-HMAC-CHAP_Reply") }
            let hashLength = Int(byte(6))
            if id == AuthID.challenge {
                guard bytes.readableBytes >= 16 + hashLength + Int(dhLength) else {
                    throw short("DH-HMAC-CHAP_Challenge")
                }
                self = .challenge(
                    Challenge(
                        transactionIdentifier: transaction,
                        hashIdentifier: byte(8),
                        groupIdentifier: byte(9),
                        sequenceNumber: sequence,
                        challenge: bytesAt(16, hashLength),
                        dhValue: bytesAt(16 + hashLength, Int(dhLength))
                    )
                )
            } else {
                guard bytes.readableBytes >= 16 + 2 * hashLength + Int(dhLength) else {
                    throw short("DH-HMAC-CHAP_Reply")
                }
                self = .reply(
                    Reply(
                        transactionIdentifier: transaction,
                        response: bytesAt(16, hashLength),
                        challenge: byte(8) & 1 == 1 ? bytesAt(16 + hashLength, hashLength) : nil,
                        sequenceNumber: sequence,
                        dhValue: bytesAt(16 + 2 * hashLength, Int(dhLength))
                    )
                )
            }
        case (AuthType.dhchap, AuthID.success1):
            let hashLength = Int(byte(6))
            let valid = byte(8) & 1 == 1
            guard bytes.readableBytes >= 16 + (valid ? hashLength : 0) else { throw short("DH-HMAC-CHAP_Success1") }
            self = .success1(
                Success1(
                    transactionIdentifier: transaction,
                    hashLength: UInt8(hashLength),
                    response: valid ? bytesAt(16, hashLength) : nil
                )
            )
        case (AuthType.dhchap, AuthID.success2):
            guard bytes.readableBytes >= 16 else { throw short("DH-HMAC-CHAP_Success2") }
            self = .success2(transactionIdentifier: transaction)
        case (AuthType.common, AuthID.failure1), (AuthType.common, AuthID.failure2):
            let failure = Failure(transactionIdentifier: transaction, reasonCode: byte(6), explanation: byte(7))
            self = id == AuthID.failure1 ? .failure1(failure) : .failure2(failure)
        default:
            throw ParseError(
                reason: .incorrectProtocolMessage,
                description: "unknown authentication message (AUTH-Type \(type), AUTH-ID \(id))"
            )
        }
    }

    /// The message's bytes.
    public var bytes: ByteBuffer {
        var buffer = ByteBuffer()
        write(into: &buffer)
        return buffer
    }

    /// Appends the message to `buffer`.
    public func write(into buffer: inout ByteBuffer) {
        func header(_ type: UInt8, _ id: UInt8, _ transaction: UInt16) {
            buffer.writeInteger(type)
            buffer.writeInteger(id)
            buffer.writeInteger(UInt16(0))
            buffer.writeInteger(transaction, endianness: .little)
        }
        switch self {
        case .negotiate(let m):
            header(AuthType.common, AuthID.negotiate, m.transactionIdentifier)
            buffer.writeInteger(m.secureChannelConcatenation)
            buffer.writeInteger(UInt8(m.protocols.count))
            for p in m.protocols {
                let start = buffer.writerIndex
                buffer.writeZeros(64)
                buffer.setInteger(p.identifier, at: start)
                buffer.setInteger(UInt8(p.hashIdentifiers.count), at: start + 2)
                buffer.setInteger(UInt8(p.groupIdentifiers.count), at: start + 3)
                buffer.setBytes(p.hashIdentifiers.prefix(30), at: start + 4)
                buffer.setBytes(p.groupIdentifiers.prefix(30), at: start + 34)
            }
        case .challenge(let m):
            header(AuthType.dhchap, AuthID.challenge, m.transactionIdentifier)
            buffer.writeInteger(UInt8(m.challenge.count))
            buffer.writeInteger(UInt8(0))
            buffer.writeInteger(m.hashIdentifier)
            buffer.writeInteger(m.groupIdentifier)
            buffer.writeInteger(UInt16(m.dhValue.count), endianness: .little)
            buffer.writeInteger(m.sequenceNumber, endianness: .little)
            buffer.writeBytes(m.challenge)
            buffer.writeBytes(m.dhValue)
        case .reply(let m):
            header(AuthType.dhchap, AuthID.reply, m.transactionIdentifier)
            buffer.writeInteger(UInt8(m.response.count))
            buffer.writeInteger(UInt8(0))
            buffer.writeInteger(UInt8(m.challenge == nil ? 0 : 1))
            buffer.writeInteger(UInt8(0))
            buffer.writeInteger(UInt16(m.dhValue.count), endianness: .little)
            buffer.writeInteger(m.sequenceNumber, endianness: .little)
            buffer.writeBytes(m.response)
            buffer.writeBytes(m.challenge ?? [UInt8](repeating: 0, count: m.response.count))
            buffer.writeBytes(m.dhValue)
        case .success1(let m):
            header(AuthType.dhchap, AuthID.success1, m.transactionIdentifier)
            buffer.writeInteger(m.hashLength)
            buffer.writeInteger(UInt8(0))
            buffer.writeInteger(UInt8(m.response == nil ? 0 : 1))
            buffer.writeZeros(7)
            if let response = m.response { buffer.writeBytes(response) }
        case .success2(let transaction):
            header(AuthType.dhchap, AuthID.success2, transaction)
            buffer.writeZeros(10)
        case .failure1(let m), .failure2(let m):
            if case .failure1 = self {
                header(AuthType.common, AuthID.failure1, m.transactionIdentifier)
            } else {
                header(AuthType.common, AuthID.failure2, m.transactionIdentifier)
            }
            buffer.writeInteger(m.reasonCode)
            buffer.writeInteger(m.explanation)
        }
    }
}

/// Authentication Send and Receive (Fabrics command types 05h/06h): SECP, SPSP0/1 in CDW10,
/// TL/AL in CDW11.
public struct AuthenticationCommand: Sendable, Hashable {
    public var securityProtocol: UInt8
    public var securityProtocolSpecific0: UInt8
    public var securityProtocolSpecific1: UInt8
    /// TL (Send: the message length) or AL (Receive: the most the host takes).
    public var length: UInt32

    public init(_ entry: SubmissionQueueEntry) {
        securityProtocolSpecific0 = UInt8(truncatingIfNeeded: entry.cdw10 >> 8)
        securityProtocolSpecific1 = UInt8(truncatingIfNeeded: entry.cdw10 >> 16)
        securityProtocol = UInt8(truncatingIfNeeded: entry.cdw10 >> 24)
        length = entry.cdw11
    }

    /// Whether SECP and SPSP name DH-HMAC-CHAP.
    public var isDHCHAP: Bool {
        securityProtocol == DHCHAP.securityProtocol && securityProtocolSpecific0 == DHCHAP.securityProtocolSpecific
            && securityProtocolSpecific1 == DHCHAP.securityProtocolSpecific
    }

    /// The SQE of an Authentication Send of `length` bytes of in-capsule data.
    public static func sendEntry(commandIdentifier: UInt16, length: Int) -> SubmissionQueueEntry {
        entry(FabricsCommandType.authenticationSend, commandIdentifier, length, inCapsule: true)
    }

    /// The SQE of an Authentication Receive of up to `length` bytes.
    public static func receiveEntry(commandIdentifier: UInt16, length: Int) -> SubmissionQueueEntry {
        entry(FabricsCommandType.authenticationReceive, commandIdentifier, length, inCapsule: false)
    }

    private static func entry(
        _ type: UInt8,
        _ identifier: UInt16,
        _ length: Int,
        inCapsule: Bool
    ) -> SubmissionQueueEntry {
        SubmissionQueueEntry(
            opcode: AdminOpcode.fabrics,
            commandIdentifier: identifier,
            namespaceIdentifier: UInt32(type),
            dataPointer: inCapsule
                ? .inCapsule(length: UInt32(length))
                : .transport(length: UInt32(length)),
            cdw10: UInt32(DHCHAP.securityProtocol) << 24 | UInt32(DHCHAP.securityProtocolSpecific) << 16
                | UInt32(DHCHAP.securityProtocolSpecific) << 8,
            cdw11: UInt32(length)
        )
    }
}
