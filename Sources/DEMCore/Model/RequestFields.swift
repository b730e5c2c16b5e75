/// A type read from a request body: the keys it reads are its own CodingKeys, and a body with
/// any other key is refused naming that key (the REST APIs' decoder checks them).
public protocol RequestFields: Decodable {
    /// Every key a body of this type may hold, from its CodingKeys.
    static var fieldNames: [String] { get }
}

extension RequestFields {
    /// The names of `keys`' cases.
    public static func names<Keys: CodingKey & CaseIterable>(_ keys: Keys.Type) -> [String] {
        keys.allCases.map(\.stringValue)
    }
}

extension FabricTarget: RequestFields {
    public static let fieldNames = names(CodingKeys.self)
}

extension FabricPort: RequestFields {
    public static let fieldNames = names(CodingKeys.self)
}

extension FabricSubsystem: RequestFields {
    public static let fieldNames = names(CodingKeys.self)
}

extension FabricNamespace: RequestFields {
    public static let fieldNames = names(CodingKeys.self)
}

extension FabricHost: RequestFields {
    public static let fieldNames = names(CodingKeys.self)
}

extension Fabric: RequestFields {
    public static let fieldNames = names(CodingKeys.self)
}

extension EndpointConfiguration: RequestFields {
    public static let fieldNames = names(CodingKeys.self)
}

extension EndpointJoin: RequestFields {
    public static let fieldNames = names(CodingKeys.self)
}
