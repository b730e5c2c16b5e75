import DEMCore

/// What backs a namespace on an SPDK target, read from its DevicePath:
///
/// - `/spdk/bdev/NAME`: a bdev that exists already (made by someone else); used, never made or
///   deleted.
/// - `/spdk/malloc/NAME/SIZE`, `/spdk/null/NAME/SIZE`: a RAM or null bdev (for tests), made
///   with 512-byte blocks; SIZE is bytes or a number with K, M, G or T (binary).
/// - `/spdk/nvme/PCI-ADDRESS/nK`: namespace K of a local NVMe controller, attached by PCI
///   address (`bdev_nvme_attach_controller`); the bdev is the controller's `nK`.
/// - any other absolute path: a block device or file, through Linux AIO (`bdev_aio_create`).
public enum SPDKDevice: Sendable, Hashable {
    case existing(name: String)
    case malloc(name: String, blocks: Int, blockSize: Int)
    case null(name: String, blocks: Int, blockSize: Int)
    case nvme(controller: String, pciAddress: String, namespace: Int)
    case aio(name: String, path: String)

    public static let blockSize = 512

    /// The bdev the namespace uses.
    public var bdevName: String {
        switch self {
        case .existing(let name), .malloc(let name, _, _), .null(let name, _, _), .aio(let name, _): name
        case .nvme(let controller, _, let namespace): "\(controller)n\(namespace)"
        }
    }

    /// What a namespace on it needs made first: the controller of an NVMe namespace, else the
    /// bdev.
    var dependency: String {
        if case .nvme(let controller, _, _) = self { return "controller:\(controller)" }
        return "bdev:\(bdevName)"
    }

    /// The kind kept in the ledger for a bdev dem-em made (it picks the delete call).
    public var kind: String {
        switch self {
        case .existing: "existing"
        case .malloc: "malloc"
        case .null: "null"
        case .nvme: "nvme"
        case .aio: "aio"
        }
    }

    /// Reads a DevicePath; the error says what is wrong with it.
    public static func parse(_ path: String) -> Result<SPDKDevice, SPDKDeviceError> {
        guard path.hasPrefix("/") else { return .failure(SPDKDeviceError("DevicePath must be an absolute path")) }
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init)
        guard parts.first == "spdk" else {
            return .success(.aio(name: aioName(path), path: path))
        }
        switch (parts.count > 1 ? parts[1] : "", parts.count) {
        case ("bdev", 3) where !parts[2].isEmpty:
            return .success(.existing(name: parts[2]))
        case ("malloc", 4), ("null", 4):
            guard validName(parts[2]) else {
                return .failure(SPDKDeviceError("\(path): the bdev name must be letters, digits, _ . -"))
            }
            guard let bytes = size(parts[3]), bytes > 0, bytes % blockSize == 0 else {
                return .failure(
                    SPDKDeviceError("\(path): the size must be a positive multiple of \(blockSize) bytes (e.g. 64M)")
                )
            }
            return .success(
                parts[1] == "malloc"
                    ? .malloc(name: parts[2], blocks: bytes / blockSize, blockSize: blockSize)
                    : .null(name: parts[2], blocks: bytes / blockSize, blockSize: blockSize)
            )
        case ("nvme", 4):
            let address = parts[2]
            guard isPCIAddress(address) else {
                return .failure(SPDKDeviceError("\(path): \(address) is not a PCI address such as 0000:01:00.0"))
            }
            guard parts[3].hasPrefix("n"), let namespace = Int(parts[3].dropFirst()), namespace > 0 else {
                return .failure(SPDKDeviceError("\(path): the last part names the namespace, n1, n2, …"))
            }
            return .success(.nvme(controller: controllerName(address), pciAddress: address, namespace: namespace))
        default:
            return .failure(
                SPDKDeviceError(
                    "\(path): an SPDK device is /spdk/bdev/NAME, /spdk/malloc/NAME/SIZE, /spdk/null/NAME/SIZE or /spdk/nvme/PCI-ADDRESS/nK"
                )
            )
        }
    }

    /// The controller name dem-em gives a local NVMe controller: `dem_0000_01_00_0`.
    public static func controllerName(_ pciAddress: String) -> String {
        "dem_" + pciAddress.map { $0.isLetter || $0.isNumber ? String($0) : "_" }.joined()
    }

    /// The bdev name dem-em gives a block device or file: `dem_aio_dev_sdb`.
    public static func aioName(_ path: String) -> String {
        "dem_aio" + path.map { $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" ? String($0) : "_" }.joined()
    }

    static func validName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 64
            && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "." || $0 == "-") }
    }

    static func isPCIAddress(_ text: String) -> Bool {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[2].split(separator: ".").count == 2 else { return false }
        return text.allSatisfy { $0.isHexDigit || $0 == ":" || $0 == "." }
    }

    /// Bytes from `65536`, `64K`, `64M`, `1G`, `1T`.
    static func size(_ text: String) -> Int? {
        guard let last = text.last else { return nil }
        let units: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
        if let unit = units[Character(last.uppercased())] {
            guard let number = Int(text.dropLast()) else { return nil }
            let (bytes, overflow) = number.multipliedReportingOverflow(by: unit)
            return overflow ? nil : bytes
        }
        return Int(text)
    }
}

/// Why a DevicePath names no SPDK device.
public struct SPDKDeviceError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
