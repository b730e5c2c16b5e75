import DEMCore
import Foundation

/// What identifies an entry across two pages of one discovery controller: subsystem NQN,
/// transport, address and service. Any other field may change in place.
public struct DiscoveryEntryKey: Sendable, Hashable {
    public var subsystemNQN: String
    public var transportType: TransportType
    public var transportAddress: String
    public var transportServiceIdentifier: String

    public init(_ entry: DiscoveryLogEntry) {
        subsystemNQN = entry.subsystemNQN
        transportType = entry.transportType
        transportAddress = entry.transportAddress
        transportServiceIdentifier = entry.transportServiceIdentifier
    }
}

/// One difference between two pages of one discovery controller.
public enum DiscoveryChange: Sendable, Hashable {
    case added(DiscoveryLogEntry)
    case removed(DiscoveryLogEntry)
    /// Same key, other fields differ (port ID, TREQ, EFLAGS, …).
    case changed(old: DiscoveryLogEntry, new: DiscoveryLogEntry)
}

/// What dem-dm reports about one discovery controller.
public enum DiscoveryEvent: Sendable, Hashable {
    case added(DiscoveryLogEntry)
    case removed(DiscoveryLogEntry)
    case changed(old: DiscoveryLogEntry, new: DiscoveryLogEntry)
    /// The controller stopped answering.
    case lost(reason: String)
    /// The controller answers again.
    case back
    /// The controller's current page.
    case page(DiscoveryLogPage)

    public init(_ change: DiscoveryChange) {
        switch change {
        case .added(let entry): self = .added(entry)
        case .removed(let entry): self = .removed(entry)
        case .changed(let old, let new): self = .changed(old: old, new: new)
        }
    }

    /// The event's name in reports: `added`, `removed`, `changed`, `lost`, `back`, `page`.
    public var name: String {
        switch self {
        case .added: "added"
        case .removed: "removed"
        case .changed: "changed"
        case .lost: "lost"
        case .back: "back"
        case .page: "page"
        }
    }
}

/// Finds and formats the changes of discovery log pages. Pure.
public enum DiscoveryChangeReporter {
    /// The differences from `old` to `new`, entries of one discovery controller. Entries are
    /// paired by ``DiscoveryEntryKey``; an unchanged entry yields nothing. Additions and
    /// changes come in the order of `new`, then removals in the order of `old`. Entries with the
    /// same key on one page are paired in page order.
    public static func changes(from old: [DiscoveryLogEntry], to new: [DiscoveryLogEntry]) -> [DiscoveryChange] {
        var unmatched: [DiscoveryEntryKey: [Int]] = [:]
        for (index, entry) in old.enumerated() { unmatched[DiscoveryEntryKey(entry), default: []].append(index) }
        var result: [DiscoveryChange] = []
        var matchedOld = Set<Int>()
        for entry in new {
            let key = DiscoveryEntryKey(entry)
            if let index = unmatched[key]?.first {
                unmatched[key]?.removeFirst()
                matchedOld.insert(index)
                if old[index] != entry { result.append(.changed(old: old[index], new: entry)) }
            } else {
                result.append(.added(entry))
            }
        }
        for (index, entry) in old.enumerated() where !matchedOld.contains(index) {
            result.append(.removed(entry))
        }
        return result
    }

    // MARK: Text

    /// The event as readable lines, each starting with the time and the controller:
    /// `2026-11-21T20:00:00Z 10.0.2.2:8009 added nvme subsystem nqn.x at tcp 10.0.2.15:4420`.
    /// A page gives a line with its generation counter and one line per entry. Control
    /// characters in names from the wire are shown as `\xNN`.
    public static func textLines(
        _ event: DiscoveryEvent,
        controller: DiscoveryControllerAddress,
        at time: Date
    ) -> [String] {
        let place = ConnectionPlanner.hostPort(controller.transportAddress, controller.transportServiceIdentifier)
        let prefix = "\(timestamp(time)) \(printable(place))"
        switch event {
        case .added(let entry):
            return ["\(prefix) added \(describe(entry))"]
        case .removed(let entry):
            return ["\(prefix) removed \(describe(entry))"]
        case .changed(let old, let new):
            let details = differences(old, new).map { "\($0.field) \($0.old) -> \($0.new)" }
            return ["\(prefix) changed \(describe(new)): \(details.joined(separator: ", "))"]
        case .lost(let reason):
            return ["\(prefix) lost: \(printable(reason))"]
        case .back:
            return ["\(prefix) back"]
        case .page(let page):
            let count = page.entries.count
            let header = "\(prefix) page genctr \(page.generationCounter), \(count) record\(count == 1 ? "" : "s")"
            return [header] + page.entries.map { "\(prefix) page \(describe($0))" }
        }
    }

    /// `nvme subsystem nqn.x at tcp 10.0.2.15:4420`.
    public static func describe(_ entry: DiscoveryLogEntry) -> String {
        let subtype = NVMeCLIWords.subtype(entry.subsystemType)
        let transport = NVMeCLIWords.transport(entry.transportType)
        let place = ConnectionPlanner.hostPort(entry.transportAddress, entry.transportServiceIdentifier)
        return printable("\(subtype) \(entry.subsystemNQN) at \(transport) \(place)")
    }

    /// The fields that differ between two entries, in nvme-cli's words (`cntlid` and `asqsz`
    /// too, which nvme-cli's JSON leaves out).
    public static func differences(
        _ old: DiscoveryLogEntry,
        _ new: DiscoveryLogEntry
    ) -> [(field: String, old: String, new: String)] {
        func fields(_ e: DiscoveryLogEntry) -> [(String, String)] {
            var list: [(String, String)] = [
                ("trtype", NVMeCLIWords.transport(e.transportType)),
                ("adrfam", NVMeCLIWords.addressFamily(e.addressFamily)),
                ("subtype", NVMeCLIWords.subtype(e.subsystemType)),
                ("treq", NVMeCLIWords.transportRequirements(e.transportRequirements)),
                ("portid", String(e.portIdentifier)),
                ("cntlid", String(e.controllerIdentifier)),
                ("asqsz", String(e.adminMaximumSubmissionQueueSize)),
                ("trsvcid", e.transportServiceIdentifier),
                ("subnqn", e.subsystemNQN),
                ("traddr", e.transportAddress),
                ("eflags", NVMeCLIWords.entryFlags(e.entryFlags)),
            ]
            for (key, value) in DiscoveryRecordJSON.tsasFields(e.transportSpecificAddressSubtype) {
                if case .string(let text) = value {
                    list.append((key, text))
                } else {
                    list.append((key, value.serialized(pretty: false)))
                }
            }
            if case .raw(let bytes) = e.transportSpecificAddressSubtype {
                list.append(("tsas", bytes.map { String($0, radix: 16) }.joined(separator: " ")))
            }
            return list
        }
        let before = fields(old)
        let after = fields(new)
        var result: [(field: String, old: String, new: String)] = []
        var seen = Set<String>()
        for (key, value) in before {
            seen.insert(key)
            let other = after.first { $0.0 == key }?.1 ?? "-"
            if other != value { result.append((key, printable(value), printable(other))) }
        }
        for (key, value) in after where !seen.contains(key) { result.append((key, "-", printable(value))) }
        return result
    }

    // MARK: JSON

    /// The event as one JSON line (no trailing newline):
    /// `{"time":"…","controller":{"traddr":…,"trsvcid":…,"trtype":…},"event":"added","entry":{…}}`.
    /// Entries use nvme-cli's `discover -o json` keys. `changed` carries the new entry as
    /// `entry` and the previous one as `old`; `lost` carries `reason`; `page` carries `genctr`
    /// and `records`.
    public static func jsonLine(
        _ event: DiscoveryEvent,
        controller: DiscoveryControllerAddress,
        at time: Date
    ) -> String {
        var members: [(String, JSONValue)] = [
            ("time", .string(timestamp(time))),
            (
                "controller",
                .members([
                    ("traddr", .string(controller.transportAddress)),
                    ("trsvcid", .string(controller.transportServiceIdentifier)),
                    ("trtype", .string(NVMeCLIWords.transport(controller.transportType))),
                ])
            ),
            ("event", .string(event.name)),
        ]
        switch event {
        case .added(let entry), .removed(let entry):
            members.append(("entry", DiscoveryRecordJSON.object(entry)))
        case .changed(let old, let new):
            members.append(("entry", DiscoveryRecordJSON.object(new)))
            members.append(("old", DiscoveryRecordJSON.object(old)))
        case .lost(let reason):
            members.append(("reason", .string(reason)))
        case .back:
            break
        case .page(let page):
            members.append(("genctr", .integer(page.generationCounter)))
            members.append(("records", .array(page.entries.map(DiscoveryRecordJSON.object))))
        }
        return JSONValue.members(members).serialized(pretty: false)
    }

    // MARK: Helpers

    /// `time` in UTC to the second: `2026-11-21T20:00:00Z`.
    public static func timestamp(_ time: Date) -> String {
        let interval = time.timeIntervalSince1970.rounded(.down)
        guard interval.isFinite, abs(interval) < 1e15 else { return "1970-01-01T00:00:00Z" }
        var seconds = time_t(interval)
        var parts = tm()
        guard gmtime_r(&seconds, &parts) != nil else { return "1970-01-01T00:00:00Z" }
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02dZ",
            parts.tm_year + 1900,
            parts.tm_mon + 1,
            parts.tm_mday,
            parts.tm_hour,
            parts.tm_min,
            parts.tm_sec
        )
    }

    /// `text` with control characters (including line breaks) shown as `\xNN`, so one event
    /// stays on one line.
    static func printable(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: isControl) else { return text }
        var out = ""
        for scalar in text.unicodeScalars {
            if isControl(scalar) {
                let hex = String(scalar.value, radix: 16)
                out += "\\x" + (hex.count < 2 ? "0" : "") + hex
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    private static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || scalar.value == 0x7F || (0x80...0x9F).contains(scalar.value)
            || scalar == "\u{2028}" || scalar == "\u{2029}"
    }
}
