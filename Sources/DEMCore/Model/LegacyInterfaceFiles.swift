import Foundation

/// nvme-dem's interface files: ifcfg-like files in `/etc/nvme/nvmeof-dem/`, one per fabric
/// interface, each with `TRTYPE=rdma|tcp`, `ADRFAM=ipv4|ipv6|fc`, `TRADDR=` and `TRSVCID=` (keys
/// in any case; `#` starts a comment; values may be quoted). Every file in the folder counts but
/// `config` (nvme-dem's configuration, which `dem import` reads) and `signature`.
///
/// nvme-dem's dem opened a discovery listener per file, on TRSVCID (4420 when absent); its dem-em
/// reported them as its fabric interfaces. DEM does both, for users coming from nvme-dem.
public struct LegacyInterface: Sendable, Hashable {
    public var transportType: String
    public var addressFamily: String
    public var transportAddress: String
    /// TRSVCID, when the file gives one.
    public var transportServiceIdentifier: Int?
    /// The file it came from.
    public var file: String

    public init(
        transportType: String,
        addressFamily: String,
        transportAddress: String,
        transportServiceIdentifier: Int?,
        file: String
    ) {
        self.transportType = transportType
        self.addressFamily = addressFamily
        self.transportAddress = transportAddress
        self.transportServiceIdentifier = transportServiceIdentifier
        self.file = file
    }

    /// The folder nvme-dem read.
    public static let defaultFolder = "/etc/nvme/nvmeof-dem"
    /// The discovery port nvme-dem's dem took when a file gives no TRSVCID.
    public static let defaultServiceIdentifier = 4420

    /// Every interface file in `folder`, in name order; none when the folder does not exist.
    ///
    /// - Throws: ``LegacyInterfaceError`` naming the file and line of the first bad one.
    public static func read(folder: String = defaultFolder) throws(LegacyInterfaceError) -> [LegacyInterface] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory) else { return [] }
        guard isDirectory.boolValue else {
            throw LegacyInterfaceError(file: folder, line: nil, message: "is not a folder")
        }
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
        } catch {
            throw LegacyInterfaceError(
                file: folder,
                line: nil,
                message: "cannot be read: \(error.localizedDescription)"
            )
        }
        var result: [LegacyInterface] = []
        for name in names where !["config", "signature"].contains(name) && !name.hasPrefix(".") {
            let path = folder + "/" + name
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), !isFolder.boolValue else {
                continue
            }
            guard let data = FileManager.default.contents(atPath: path) else {
                throw LegacyInterfaceError(file: path, line: nil, message: "cannot be read")
            }
            result.append(try parse(String(decoding: data, as: UTF8.self), file: path))
        }
        return result
    }

    /// One file's text.
    public static func parse(_ text: String, file: String) throws(LegacyInterfaceError) -> LegacyInterface {
        var values: [String: (value: String, line: Int)] = [:]
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let number = index + 1
            var line = Substring(rawLine)
            if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
            let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if trimmed.isEmpty { continue }
            guard let equals = trimmed.firstIndex(of: "=") else {
                throw LegacyInterfaceError(file: file, line: number, message: "\"\(trimmed)\" is not KEY=value")
            }
            let key = trimmed[..<equals].trimmingCharacters(in: .whitespaces).uppercased()
            var value = trimmed[trimmed.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            if value.count >= 2, let first = value.first, first == "\"" || first == "'", value.last == first {
                value = String(value.dropFirst().dropLast())
            }
            guard ["TRTYPE", "ADRFAM", "TRADDR", "TRSVCID"].contains(key) else {
                throw LegacyInterfaceError(
                    file: file,
                    line: number,
                    message: "unknown key \(key) (the keys are TRTYPE, ADRFAM, TRADDR and TRSVCID)"
                )
            }
            guard values[key] == nil else {
                throw LegacyInterfaceError(file: file, line: number, message: "\(key) is given twice")
            }
            values[key] = (value, number)
        }
        func required(_ key: String) throws(LegacyInterfaceError) -> (value: String, line: Int) {
            guard let found = values[key], !found.value.isEmpty else {
                throw LegacyInterfaceError(file: file, line: nil, message: "\(key)= is missing")
            }
            return found
        }
        let type = try required("TRTYPE")
        let transport = type.value.lowercased()
        guard ["tcp", "rdma"].contains(transport) else {
            throw LegacyInterfaceError(
                file: file,
                line: type.line,
                message: "TRTYPE must be tcp or rdma, not \"\(type.value)\""
            )
        }
        let family = try required("ADRFAM")
        let adrfam = family.value.lowercased()
        guard ["ipv4", "ipv6"].contains(adrfam) else {
            throw LegacyInterfaceError(
                file: file,
                line: family.line,
                message: adrfam == "fc"
                    ? "ADRFAM fc: Fibre Channel is not a transport DEM serves (tcp or rdma over ipv4 or ipv6)"
                    : "ADRFAM must be ipv4 or ipv6, not \"\(family.value)\""
            )
        }
        let address = try required("TRADDR")
        let valid = adrfam == "ipv4" ? IPAddressText.isIPv4(address.value) : IPAddressText.isIPv6(address.value)
        guard valid else {
            throw LegacyInterfaceError(
                file: file,
                line: address.line,
                message:
                    "TRADDR \"\(address.value)\" is not an \(adrfam == "ipv4" ? "IPv4" : "IPv6") address (ADRFAM=\(adrfam))"
            )
        }
        var port: Int? = nil
        if let service = values["TRSVCID"] {
            guard let number = Int(service.value), (1...65535).contains(number) else {
                throw LegacyInterfaceError(
                    file: file,
                    line: service.line,
                    message: "TRSVCID must be a port 1...65535, not \"\(service.value)\""
                )
            }
            port = number
        }
        return LegacyInterface(
            transportType: transport,
            addressFamily: adrfam,
            transportAddress: address.value,
            transportServiceIdentifier: port,
            file: file
        )
    }
}

/// An interface file nvme-dem would have read cannot be used: which file, which line, why.
public struct LegacyInterfaceError: Error, Sendable, Hashable, CustomStringConvertible {
    public var file: String
    public var line: Int?
    public var message: String

    public var description: String {
        "\(file)\(line.map { ", line \($0)" } ?? ""): \(message)"
    }
}
