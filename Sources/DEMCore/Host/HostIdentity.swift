import Foundation

/// Who this host is to NVMe-oF controllers: HOSTNQN and HOSTID, as nvme-cli finds them in
/// `/etc/nvme/hostnqn` and `/etc/nvme/hostid`.
public struct HostIdentity: Sendable, Hashable {
    /// Where nvme-cli keeps the host NQN.
    public static let defaultHostNQNPath = "/etc/nvme/hostnqn"
    /// Where nvme-cli keeps the host ID.
    public static let defaultHostIDPath = "/etc/nvme/hostid"

    /// HOSTNQN.
    public var hostNQN: NQN
    /// HOSTID, 16 bytes.
    public var hostIdentifier: [UInt8]
    /// The host's DH-HMAC-CHAP secret, for controllers that ask (discovery and I/O).
    public var dhchapSecret: DHCHAPSecret?
    /// The controllers' secret, when the host wants them to prove themselves too (two-way).
    public var dhchapControllerSecret: DHCHAPSecret?

    /// - Precondition: `hostIdentifier` is 16 bytes.
    public init(hostNQN: NQN, hostIdentifier: [UInt8]) {
        precondition(hostIdentifier.count == 16, "a host ID is 16 bytes")
        self.hostNQN = hostNQN
        self.hostIdentifier = hostIdentifier
    }

    /// The host ID as a UUID.
    public var hostIdentifierUUID: UUID {
        UUID(
            uuid: (
                hostIdentifier[0], hostIdentifier[1], hostIdentifier[2], hostIdentifier[3],
                hostIdentifier[4], hostIdentifier[5], hostIdentifier[6], hostIdentifier[7],
                hostIdentifier[8], hostIdentifier[9], hostIdentifier[10], hostIdentifier[11],
                hostIdentifier[12], hostIdentifier[13], hostIdentifier[14], hostIdentifier[15]
            )
        )
    }

    /// Options for a ``DiscoveryClient`` connecting as this host.
    public var clientOptions: DiscoveryClientOptions {
        var options = DiscoveryClientOptions(hostNQN: hostNQN.value, hostIdentifier: hostIdentifier)
        options.hostKey = dhchapSecret
        options.controllerKey = dhchapControllerSecret
        return options
    }

    /// Finds the host's identity.
    ///
    /// The host NQN is `hostNQN` when given, else the content of `hostNQNPath`; the host ID is
    /// `hostID` when given, else the content of `hostIDPath`, else — when that file does not exist
    /// or is empty and the host NQN has the form `nqn.2014-08.org.nvmexpress:uuid:<uuid>` — that
    /// UUID, as nvme-cli does. File contents are trimmed of blanks and newlines.
    ///
    /// - Parameters:
    ///   - hostNQN: the host NQN given on the command line, overriding the file.
    ///   - hostID: the host ID (a UUID) given on the command line, overriding the file.
    /// - Throws: ``HostIdentityError`` naming the file or the override that is missing or wrong.
    public static func load(
        hostNQN: String? = nil,
        hostID: String? = nil,
        hostNQNPath: String = defaultHostNQNPath,
        hostIDPath: String = defaultHostIDPath
    ) throws(HostIdentityError) -> HostIdentity {
        let nqn: NQN
        if let hostNQN {
            let text = hostNQN.trimmingCharacters(in: .whitespacesAndNewlines)
            do {
                nqn = try NQN(text)
            } catch {
                throw .invalidHostNQN(source: .override, reason: error.reason)
            }
        } else {
            guard let text = try readFile(hostNQNPath) else { throw .hostNQNFileMissing(path: hostNQNPath) }
            do {
                nqn = try NQN(text)
            } catch {
                throw .invalidHostNQN(source: .file(hostNQNPath), reason: error.reason)
            }
        }
        let identifier: [UInt8]
        if let hostID {
            let text = hostID.trimmingCharacters(in: .whitespacesAndNewlines)
            guard let bytes = hostIdentifier(fromUUID: text) else {
                throw .invalidHostID(source: .override, value: text)
            }
            identifier = bytes
        } else if let text = try readFile(hostIDPath), !text.isEmpty {
            guard let bytes = hostIdentifier(fromUUID: text) else {
                throw .invalidHostID(source: .file(hostIDPath), value: text)
            }
            identifier = bytes
        } else if let bytes = hostIdentifier(fromHostNQN: nqn.value) {
            identifier = bytes
        } else {
            throw .hostIDUnavailable(path: hostIDPath, hostNQN: nqn.value)
        }
        return HostIdentity(hostNQN: nqn, hostIdentifier: identifier)
    }

    /// The 16 bytes of a UUID written `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (either case).
    public static func hostIdentifier(fromUUID text: String) -> [UInt8]? {
        guard text.utf8.count == 36, let uuid = UUID(uuidString: text) else { return nil }
        return withUnsafeBytes(of: uuid.uuid) { Array($0) }
    }

    /// The UUID of a `nqn.2014-08.org.nvmexpress:uuid:<uuid>` NQN, as 16 bytes.
    public static func hostIdentifier(fromHostNQN nqn: String) -> [UInt8]? {
        let prefix = "nqn.2014-08.org.nvmexpress:uuid:"
        guard nqn.hasPrefix(prefix) else { return nil }
        return hostIdentifier(fromUUID: String(nqn.dropFirst(prefix.count)))
    }

    /// The trimmed content of `path`, or `nil` when there is no such file.
    private static func readFile(_ path: String) throws(HostIdentityError) -> String? {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return nil }
        guard !isDirectory.boolValue else { throw .unreadable(path: path, reason: "it is a directory") }
        do {
            return try String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        } catch {
            throw .unreadable(path: path, reason: error.localizedDescription)
        }
    }
}

/// Why the host's identity could not be found.
public enum HostIdentityError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Where a value came from.
    public enum Source: Sendable, Hashable, CustomStringConvertible {
        /// A file.
        case file(String)
        /// The caller's override (a command-line flag).
        case override

        public var description: String {
            switch self {
            case .file(let path): return path
            case .override: return "the value given on the command line"
            }
        }
    }

    /// No host NQN was given and the file does not exist.
    case hostNQNFileMissing(path: String)
    /// A file exists but cannot be read.
    case unreadable(path: String, reason: String)
    /// The host NQN is not a valid NQN.
    case invalidHostNQN(source: Source, reason: String)
    /// The host ID is not a UUID.
    case invalidHostID(source: Source, value: String)
    /// No host ID was given, the file does not exist and the host NQN is not of the UUID form.
    case hostIDUnavailable(path: String, hostNQN: String)

    public var description: String {
        switch self {
        case .hostNQNFileMissing(let path):
            return "no host NQN: \(path) does not exist (give one with --hostnqn, or create the file)"
        case .unreadable(let path, let reason):
            return "\(path) cannot be read: \(reason)"
        case .invalidHostNQN(let source, let reason):
            return "the host NQN in \(source) is not valid: \(reason)"
        case .invalidHostID(let source, let value):
            return "the host ID in \(source) is not a UUID: \"\(value)\""
        case .hostIDUnavailable(let path, let hostNQN):
            return "no host ID: \(path) does not exist and the host NQN \(hostNQN) has no UUID "
                + "(give one with --hostid, or create the file)"
        }
    }
}

extension DiscoveryControllerAddress {
    /// Options for a ``DiscoveryClient`` connecting to this controller as `identity`, unless the
    /// address names its own host NQN or host ID (`--hostnqn`, `--hostid` in `discovery.conf`).
    /// `host_traddr` and `host_iface` are not carried: ``DiscoveryClient`` picks the route itself.
    public func clientOptions(for identity: HostIdentity) -> DiscoveryClientOptions {
        var options = DiscoveryClientOptions(
            hostNQN: hostNQN ?? identity.hostNQN.value,
            hostIdentifier: hostIdentifier ?? identity.hostIdentifier
        )
        options.subsystemNQN = subsystemNQN
        // The host's keys go with its own NQN only.
        if options.hostNQN == identity.hostNQN.value {
            options.hostKey = identity.dhchapSecret
            options.controllerKey = identity.dhchapControllerSecret
        }
        // An rdma line of discovery.conf (or -t rdma) is reached over NVMe/RDMA, not TCP.
        if transportType == .rdma { options.transport = .rdma }
        return options
    }
}
