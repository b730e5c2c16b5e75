#!/usr/bin/env python3
"""Reads testssl.sh's --jsonfile and says what falls short of DEM's TLS policy: no protocol
below TLS 1.2 offered (DEM offers TLS 1.3 alone), no NULL, anonymous, export, LOW, 3DES/IDEA or
CBC ("AVERAGE") cipher, strong (AEAD) ones offered, and a chain of trust that verifies against
the CA given with --add-ca, the host name included. Prints one line: "ok: …" or the problems;
exits 0 or 1."""
import json
import sys

WANT = {
    "SSLv2": "not offered",
    "SSLv3": "not offered",
    "TLS1": "not offered",
    "TLS1_1": "not offered",
    "cipherlist_NULL": "not offered",
    "cipherlist_aNULL": "not offered",
    "cipherlist_EXPORT": "not offered",
    "cipherlist_LOW": "not offered",
    "cipherlist_3DES_IDEA": "not offered",
    "cipherlist_AVERAGE": "not offered",
    "cipherlist_STRONG": "offered",
}
PREFIX = {"TLS1_3": "offered", "cert_chain_of_trust": "passed", "cert_trust": "Ok"}

try:
    findings = {f["id"]: f["finding"] for f in json.load(open(sys.argv[1]))}
except (OSError, ValueError, KeyError, IndexError) as error:
    print(f"cannot read testssl.sh's findings: {error}")
    sys.exit(1)
problems = []
for key, want in WANT.items():
    if findings.get(key) != want:
        problems.append(f"{key}: {findings.get(key, 'not tested')!r}, not {want!r}")
for key, want in PREFIX.items():
    if not str(findings.get(key, "")).startswith(want):
        problems.append(f"{key}: {findings.get(key, 'not tested')!r}, not {want!r}")
# TLS 1.2 may be offered by policy; below it never.
tls12 = findings.get("TLS1_2", "not tested")
if problems:
    print("; ".join(problems))
    sys.exit(1)
print(f"ok: TLS 1.3 {findings['TLS1_3']}, TLS 1.2 {tls12}, nothing older; AEAD ciphers only; chain of trust {findings['cert_chain_of_trust']} ({findings['cert_trust']})")
