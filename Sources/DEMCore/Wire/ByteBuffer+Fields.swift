import NIOCore

extension ByteBuffer {
    /// Reads a little-endian integer at `index` (absolute), as every NVMe structure is little-endian.
    @inlinable
    func le<T: FixedWidthInteger>(_ index: Int, as: T.Type = T.self) -> T {
        self.getInteger(at: index, endianness: .little, as: T.self) ?? 0
    }

    /// Sets a little-endian integer at `index` (absolute).
    @inlinable
    mutating func setLE<T: FixedWidthInteger>(_ value: T, at index: Int) {
        self.setInteger(value, at: index, endianness: .little)
    }

    /// Reads a fixed-width ASCII field: up to the first NUL, trailing spaces trimmed (how nvme-cli
    /// shows NQN, TRADDR and TRSVCID, which some peers pad with NULs and others with spaces).
    public func getFixedString(at index: Int, length: Int) -> String? {
        guard let bytes = self.getBytes(at: index, length: length) else { return nil }
        var end = bytes.firstIndex(of: 0) ?? bytes.count
        while end > 0 && bytes[end - 1] == 0x20 { end -= 1 }
        return String(decoding: bytes[0..<end], as: UTF8.self)
    }

    /// Writes `string` into a fixed-width field at `index`, padded with `pad` (NUL by default)
    /// and cut at `length` bytes.
    public mutating func setFixedString(_ string: String, at index: Int, length: Int, pad: UInt8 = 0) {
        var utf8 = Array(string.utf8.prefix(length))
        if utf8.count < length { utf8.append(contentsOf: repeatElement(pad, count: length - utf8.count)) }
        self.setBytes(utf8, at: index)
    }

    /// Appends `count` zero bytes.
    @inlinable
    public mutating func writeZeros(_ count: Int) {
        guard count > 0 else { return }
        self.writeRepeatingByte(0, count: count)
    }
}
