import Foundation

/// 16 bytes as a UUID's text, lowercase (`c9773de9-fb1c-42ba-855e-34e5c63e6676`), as Linux
/// writes host IDs and namespace UUIDs; nil unless there are 16.
public func uuidText(_ bytes: [UInt8]) -> String? {
    guard bytes.count == 16 else { return nil }
    let uuid = UUID(
        uuid: (
            bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
            bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]
        )
    )
    return uuid.uuidString.lowercased()
}
