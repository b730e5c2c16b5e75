/// What a discovery controller advertises over multicast DNS (TP8009, RFC 6762 and 6763): the
/// `_nvme-disc._tcp` service with the `_cdc` subtype, its SRV (host and port), TXT (`nqn=`,
/// `p=tcp`) and the host's A records. Pure: queries in, responses out; the responder around it
/// sends them.
public struct MDNSAdvertisement: Sendable, Hashable {
    public static let serviceType: DNSName = "_nvme-disc._tcp.local"
    /// A centralized discovery controller (TP8009's subtype).
    public static let centralSubtype: DNSName = "_cdc._sub._nvme-disc._tcp.local"
    /// DNS-SD's service type enumeration (RFC 6763 §9).
    public static let serviceEnumeration: DNSName = "_services._dns-sd._udp.local"

    /// The service instance's label, such as `dem on head`.
    public var instance: String
    /// The host's name, such as `head.local`.
    public var hostName: DNSName
    public var port: UInt16
    /// The discovery controller's unique NQN.
    public var nqn: String
    /// The IPv4 addresses the host is reached at (4 bytes each).
    public var ipv4Addresses: [[UInt8]]
    /// TTL of the host's address and SRV records (RFC 6762 §10: 120 s).
    public var hostTTL: UInt32 = 120
    /// TTL of the other records (RFC 6762 §10: 75 minutes).
    public var otherTTL: UInt32 = 4500

    public init(instance: String, hostName: DNSName, port: UInt16, nqn: String, ipv4Addresses: [[UInt8]]) {
        self.instance = instance
        self.hostName = hostName
        self.port = port
        self.nqn = nqn
        self.ipv4Addresses = ipv4Addresses
    }

    /// The instance's full name: `dem on head._nvme-disc._tcp.local`.
    public var instanceName: DNSName { Self.serviceType.prepending(instance) }

    /// TXT: the NQN and the transport (TP8009).
    public var text: [String] { ["nqn=\(nqn)", "p=tcp"] }

    /// Every record, with its TTL (0: the goodbye).
    public func records(ttl: UInt32? = nil) -> [DNSMessage.Record] {
        let shared = ttl ?? otherTTL
        let host = ttl ?? hostTTL
        var records = [
            DNSMessage.Record(name: Self.serviceType, data: .pointer(instanceName), ttl: shared),
            DNSMessage.Record(name: Self.centralSubtype, data: .pointer(instanceName), ttl: shared),
            DNSMessage.Record(name: Self.serviceEnumeration, data: .pointer(Self.serviceType), ttl: shared),
            DNSMessage.Record(
                name: instanceName,
                data: .service(priority: 0, weight: 0, port: port, target: hostName),
                cacheFlush: true,
                ttl: host
            ),
            DNSMessage.Record(name: instanceName, data: .text(text), cacheFlush: true, ttl: shared),
        ]
        for address in ipv4Addresses {
            records.append(DNSMessage.Record(name: hostName, data: .ipv4(address), cacheFlush: true, ttl: host))
        }
        return records
    }

    /// An unsolicited response with every record (RFC 6762 §8.3), sent at start and when the
    /// addresses change.
    public func announcement() -> DNSMessage {
        var message = DNSMessage(isResponse: true, authoritative: true)
        message.answers = records()
        return message
    }

    /// Every record with TTL 0 (RFC 6762 §10.1), sent at shutdown.
    public func goodbye() -> DNSMessage {
        var message = DNSMessage(isResponse: true, authoritative: true)
        message.answers = records(ttl: 0)
        return message
    }

    /// The response to `query`: the records its questions ask for, and the ones a resolver
    /// needs next as additional records (RFC 6763 §12); nil when none of them is ours. Answers
    /// the query lists as known with at least half their TTL left are left out (RFC 6762 §7.1).
    public func response(to query: DNSMessage) -> DNSMessage? {
        guard !query.isResponse else { return nil }
        let all = records()
        var answers: [DNSMessage.Record] = []
        for question in query.questions {
            for record in all
            where record.name == question.name && (question.type == DNSType.any || question.type == record.data.type)
                && !answers.contains(record)
            {
                let known = query.answers.contains {
                    $0.name == record.name && $0.data == record.data && $0.ttl >= record.ttl / 2
                }
                if !known { answers.append(record) }
            }
        }
        guard !answers.isEmpty else { return nil }
        var additionals: [DNSMessage.Record] = []
        func add(_ wanted: (DNSMessage.Record) -> Bool) {
            for record in all where wanted(record) && !answers.contains(record) && !additionals.contains(record) {
                additionals.append(record)
            }
        }
        if answers.contains(where: { $0.data == .pointer(instanceName) }) {
            add { $0.name == instanceName }
        }
        if answers.contains(where: { $0.name == instanceName }) || !additionals.isEmpty {
            add { $0.name == hostName }
        }
        var message = DNSMessage(isResponse: true, authoritative: true)
        message.answers = answers
        message.additionals = additionals
        return message
    }

    /// Whether `query` asks for one of the records with the QU bit (a unicast answer is wanted).
    public func wantsUnicast(_ query: DNSMessage) -> Bool {
        let names = Set(records().map(\.name))
        return query.questions.contains { $0.unicastResponse && names.contains($0.name) }
    }
}

/// A discovery controller found by browsing `_nvme-disc._tcp` (TP8009).
public struct MDNSDiscoveredController: Sendable, Hashable {
    public var instance: DNSName
    public var address: String
    public var port: Int
    public var nqn: String?
    /// Whether it advertised the `_cdc` subtype.
    public var isCentral: Bool
    /// The TXT `p=` transport (`tcp`, `rdma`), tcp when absent.
    public var transport: String
}

/// What a browser has learned from the responses it heard: pure; records in, the controllers
/// they describe out, records expiring with their TTL.
public struct MDNSBrowserState: Sendable {
    private var records: [DNSMessage.Record: Double] = [:]

    public init() {}

    /// The question a browser asks (PTR of the service type, and of the CDC subtype).
    public static func query() -> DNSMessage {
        var message = DNSMessage(isResponse: false)
        message.questions = [
            .init(name: MDNSAdvertisement.serviceType, type: DNSType.pointer),
            .init(name: MDNSAdvertisement.centralSubtype, type: DNSType.pointer),
        ]
        return message
    }

    /// Takes in the records of a response heard at `now` (seconds); TTL 0 removes a record.
    public mutating func heard(_ message: DNSMessage, now: Double) {
        guard message.isResponse else { return }
        for record in message.answers + message.additionals {
            // A cache-flush record replaces the others of its name and type (RFC 6762 §10.2).
            if record.cacheFlush {
                for key in records.keys
                where key.name == record.name && key.data.type == record.data.type && key != record {
                    records[key] = nil
                }
            }
            var key = record
            key.ttl = 0
            key.cacheFlush = false
            records[key] = record.ttl == 0 ? nil : now + Double(record.ttl)
        }
    }

    /// Drops records whose TTL ran out at `now`.
    public mutating func expire(now: Double) {
        records = records.filter { $0.value > now }
    }

    /// The controllers the records describe: each instance of `_nvme-disc._tcp` with its SRV,
    /// TXT and an address of its host.
    public var controllers: [MDNSDiscoveredController] {
        let keys = Array(records.keys)
        let instances = Set(
            keys.compactMap { record -> DNSName? in
                guard record.name == MDNSAdvertisement.serviceType, case .pointer(let name) = record.data else {
                    return nil
                }
                return name
            }
        )
        let central = Set(
            keys.compactMap { record -> DNSName? in
                guard record.name == MDNSAdvertisement.centralSubtype, case .pointer(let name) = record.data else {
                    return nil
                }
                return name
            }
        )
        var found: [MDNSDiscoveredController] = []
        for instance in instances.union(central) {
            guard
                let (port, target) = keys.lazy.compactMap({ record -> (UInt16, DNSName)? in
                    guard record.name == instance, case .service(_, _, let port, let target) = record.data else {
                        return nil
                    }
                    return (port, target)
                }).first
            else { continue }
            var text: [String: String] = [:]
            for record in keys where record.name == instance {
                guard case .text(let strings) = record.data else { continue }
                for string in strings {
                    let parts = string.split(separator: "=", maxSplits: 1).map(String.init)
                    if parts.count == 2 { text[parts[0].lowercased()] = parts[1] }
                }
            }
            let addresses = keys.compactMap { record -> String? in
                guard record.name == target, case .ipv4(let bytes) = record.data else { return nil }
                return bytes.map(String.init).joined(separator: ".")
            }.sorted()
            for address in addresses {
                found.append(
                    MDNSDiscoveredController(
                        instance: instance,
                        address: address,
                        port: Int(port),
                        nqn: text["nqn"],
                        isCentral: central.contains(instance),
                        transport: text["p"] ?? "tcp"
                    )
                )
            }
        }
        return found.sorted { ($0.instance.description, $0.address) < ($1.instance.description, $1.address) }
    }
}
