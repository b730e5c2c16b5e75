// The pure half of deciding which certificate authorities dem-cli trusts for dem's TLS.

/// The CA files dem-cli adds to the system's trust roots for dem's certificate, and where they
/// came from.
struct TrustResolution: Equatable, Sendable {
    /// `--cacert` or `DEM_CACERT`: the one CA named; nothing else is looked for.
    var explicit: String?
    /// Without one: the CA pinned for this server by `dem-cli trust`, and dem's own CA in its data
    /// directory (on the head node), those that exist.
    var found: [String] = []

    var files: [String] { explicit.map { [$0] } ?? found }
}

/// The file where `dem-cli trust` pins the CA of dem at `host`:`port`:
/// `${XDG_CONFIG_HOME:-$HOME/.config}/dem/trust/<host>_<port>.pem`; nil without either variable.
func pinnedCAPath(host: String, port: Int, environment: (String) -> String?) -> String? {
    let base: String
    if let config = environment("XDG_CONFIG_HOME"), !config.isEmpty {
        base = config
    } else if let home = environment("HOME"), !home.isEmpty {
        base = home + "/.config"
    } else {
        return nil
    }
    let name = String(host.map { $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" ? $0 : "_" })
    return base + "/dem/trust/\(name)_\(port).pem"
}

/// dem's fabric CA in its data directory: `$DEM_DATA_DIR/fabric-ca.pem` if set, else
/// `/var/lib/dem/fabric-ca.pem` and `${XDG_STATE_HOME:-$HOME/.local/state}/dem/fabric-ca.pem`
/// (the places dem-cli looks for the admin token).
func dataDirectoryCAPaths(environment: (String) -> String?) -> [String] {
    func nonEmpty(_ name: String) -> String? {
        guard let value = environment(name), !value.isEmpty else { return nil }
        return value
    }
    let file = "fabric-ca.pem"
    if let directory = nonEmpty("DEM_DATA_DIR") {
        return [directory.hasSuffix("/") ? directory + file : directory + "/" + file]
    }
    var paths = ["/var/lib/dem/" + file]
    if let state = nonEmpty("XDG_STATE_HOME") {
        paths.append(state + "/dem/" + file)
    } else if let home = nonEmpty("HOME") {
        paths.append(home + "/.local/state/dem/" + file)
    }
    return paths
}

/// The CA files to trust for `options`' server: `--cacert`, else `DEM_CACERT`, else those of
/// the pinned file and dem's data directories that exist.
func resolveTrust(
    options: CLIOptions,
    environment: (String) -> String?,
    fileExists: (String) -> Bool
) -> TrustResolution {
    if let file = options.caCertificate { return TrustResolution(explicit: file) }
    if let file = environment("DEM_CACERT"), !file.isEmpty { return TrustResolution(explicit: file) }
    var found: [String] = []
    if let pinned = pinnedCAPath(host: options.host, port: options.port, environment: environment), fileExists(pinned) {
        found.append(pinned)
    }
    found += dataDirectoryCAPaths(environment: environment).filter(fileExists)
    return TrustResolution(found: found)
}
