// OpenSSL's libcrypto, for the finite-field Diffie-Hellman groups of RFC 7919 (DH-HMAC-CHAP).
#include <openssl/core_names.h>
#include <openssl/dh.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
