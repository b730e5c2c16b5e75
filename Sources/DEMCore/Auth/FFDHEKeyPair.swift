import COpenSSL

/// A Diffie-Hellman key pair in an RFC 7919 group, made and used by OpenSSL's libcrypto
/// (constant-time modular exponentiation; the peer's value range-checked by
/// `EVP_PKEY_public_check_quick` before it is used).
public final class FFDHEKeyPair: DHCHAPKeyPair, @unchecked Sendable {
    // The key is never changed after init; OpenSSL's EVP_PKEY is safe to read from several
    // threads.
    private let key: OpaquePointer
    public let group: DHCHAP.Group
    public let publicValue: [UInt8]

    /// A fresh key pair in `group` (not null).
    public init(group: DHCHAP.Group) throws {
        guard group != .null else { throw DHCHAPKeyError("the null group has no key pair") }
        self.group = group
        guard let context = EVP_PKEY_CTX_new_from_name(nil, "DH", nil) else {
            throw DHCHAPKeyError("OpenSSL has no DH: \(Self.lastError())")
        }
        defer { EVP_PKEY_CTX_free(context) }
        guard EVP_PKEY_keygen_init(context) == 1 else {
            throw DHCHAPKeyError("DH key generation: \(Self.lastError())")
        }
        let set = group.description.withCString { name -> Int32 in
            var parameters = [
                OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, UnsafeMutablePointer(mutating: name), 0),
                OSSL_PARAM_construct_end(),
            ]
            return EVP_PKEY_CTX_set_params(context, &parameters)
        }
        guard set == 1 else { throw DHCHAPKeyError("DH group \(group): \(Self.lastError())") }
        var generated: OpaquePointer?
        guard EVP_PKEY_generate(context, &generated) == 1, let generated else {
            throw DHCHAPKeyError("DH key generation in \(group): \(Self.lastError())")
        }
        key = generated
        var value = [UInt8](repeating: 0, count: group.valueLength)
        var length = 0
        guard
            EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, &value, value.count, &length)
                == 1, length == group.valueLength
        else {
            EVP_PKEY_free(key)
            throw DHCHAPKeyError("DH public value in \(group): \(Self.lastError())")
        }
        publicValue = value
    }

    deinit { EVP_PKEY_free(key) }

    public func sharedSecret(peerPublicValue: [UInt8]) throws -> [UInt8] {
        guard peerPublicValue.count == group.valueLength else {
            throw DHCHAPKeyError(
                "DH value of \(peerPublicValue.count) bytes, \(group) needs \(group.valueLength)"
            )
        }
        guard let peer = EVP_PKEY_new() else { throw DHCHAPKeyError("out of memory") }
        defer { EVP_PKEY_free(peer) }
        guard EVP_PKEY_copy_parameters(peer, key) == 1,
            EVP_PKEY_set1_encoded_public_key(peer, peerPublicValue, peerPublicValue.count) == 1
        else {
            throw DHCHAPKeyError("the peer's DH value is not a \(group) value: \(Self.lastError())")
        }
        guard let context = EVP_PKEY_CTX_new_from_pkey(nil, key, nil) else {
            throw DHCHAPKeyError("out of memory")
        }
        defer { EVP_PKEY_CTX_free(context) }
        guard EVP_PKEY_derive_init(context) == 1, EVP_PKEY_CTX_set_dh_pad(context, 1) == 1 else {
            throw DHCHAPKeyError("DH derivation: \(Self.lastError())")
        }
        // The RFC 7919 primes are safe primes: besides the large prime-order subgroup there are
        // only the subgroups of order 1 and 2, {1} and {1, p-1}, which the range check
        // 1 < y < p-1 excludes (what OpenSSL's quick check does, and the kernel). The full check
        // (y^q mod p = 1) would add a 2047-bit exponentiation, 10 times the derivation's cost.
        guard let check = EVP_PKEY_CTX_new_from_pkey(nil, peer, nil) else { throw DHCHAPKeyError("out of memory") }
        defer { EVP_PKEY_CTX_free(check) }
        guard EVP_PKEY_public_check_quick(check) == 1 else {
            throw DHCHAPKeyError("the peer's DH value is not valid in \(group): \(Self.lastError())")
        }
        guard EVP_PKEY_derive_set_peer_ex(context, peer, 0) == 1 else {
            throw DHCHAPKeyError("the peer's DH value is not valid in \(group): \(Self.lastError())")
        }
        var secret = [UInt8](repeating: 0, count: group.valueLength)
        var length = secret.count
        guard EVP_PKEY_derive(context, &secret, &length) == 1, length == group.valueLength else {
            throw DHCHAPKeyError("DH derivation in \(group): \(Self.lastError())")
        }
        return secret
    }

    /// OpenSSL's oldest queued error, as text (and the queue cleared).
    private static func lastError() -> String {
        let code = ERR_get_error()
        ERR_clear_error()
        guard code != 0 else { return "no reason given" }
        var text = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &text, text.count)
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
