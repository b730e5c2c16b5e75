import Foundation
import Logging
import Synchronization

/// How DEM's programs write their logs to standard error.
public enum LogFormat: String, Sendable, CaseIterable {
    /// One line a record, `2026-12-04T17:57:35Z notice dem: key=value … [source] message`. Under
    /// systemd (standard error is the journal's stream) the time is left to the journal and
    /// each line starts with its syslog priority (`<5>`), so the journal keeps the level.
    case text
    /// One JSON object a line: `time`, `level`, `label`, `source`, `message` and the metadata.
    case json

    /// Routes every logger of the process to standard error in `format`, at `level`.
    public static func bootstrap(_ format: LogFormat, level: Logger.Level) {
        let journal = journaldOwnsStandardError()
        LoggingSystem.bootstrap { label in
            var handler = StandardErrorLogHandler(label: label, format: format, journal: journal)
            handler.logLevel = level
            return handler
        }
    }

    /// Whether standard error is the systemd journal's stream: `JOURNAL_STREAM` names its
    /// device and inode (sd_journal_stream_fd(3)).
    static func journaldOwnsStandardError() -> Bool {
        guard let value = ProcessInfo.processInfo.environment["JOURNAL_STREAM"] else { return false }
        let parts = value.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var info = stat()
        guard fstat(STDERR_FILENO, &info) == 0 else { return false }
        return UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode
    }
}

/// Writes records to standard error, one line each, whole (a lock keeps lines apart).
public struct StandardErrorLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    let label: String
    let format: LogFormat
    let journal: Bool

    private static let lock = Mutex(())

    public init(label: String, format: LogFormat, journal: Bool = false) {
        self.label = label
        self.format = format
        self.journal = journal
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        let line: String
        switch format {
        case .text:
            let fields = merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            let body =
                "\(event.level) \(label):\(fields.isEmpty ? "" : " " + fields) [\(event.source)] \(event.message)"
            line = journal ? "<\(Self.priority(event.level))>\(body)\n" : "\(Self.timestamp()) \(body)\n"
        case .json:
            var object: [String: Any] = [
                "time": Self.timestamp(), "level": event.level.rawValue, "label": label, "source": event.source,
                "message": "\(event.message)",
            ]
            for (key, value) in merged where object[key] == nil { object[key] = Self.json(value) }
            let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
            line = String(decoding: data, as: UTF8.self) + "\n"
        }
        Self.lock.withLock { _ in FileHandle.standardError.write(Data(line.utf8)) }
    }

    /// The syslog priority of a level, for the journal.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    static func json(_ value: Logger.Metadata.Value) -> Any {
        switch value {
        case .string(let text): text
        case .stringConvertible(let convertible): "\(convertible)"
        case .array(let values): values.map(json)
        case .dictionary(let dictionary): dictionary.mapValues(json)
        }
    }

    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
            parts.tm_year + 1900,
            parts.tm_mon + 1,
            parts.tm_mday,
            parts.tm_hour,
            parts.tm_min,
            parts.tm_sec,
            Int(now.tv_nsec / 1_000_000)
        )
    }
}
