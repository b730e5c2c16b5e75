// The pure half of finding the API token: the environment and the file reader are passed in.

/// Where the token dem-cli sends came from.
enum TokenOrigin: Equatable, Sendable, CustomStringConvertible {
    /// `-t/--token`.
    case option
    /// `DEM_TOKEN`.
    case environment
    /// `--token-file FILE`.
    case optionFile(String)
    /// `DEM_TOKEN_FILE`.
    case environmentFile(String)
    /// dem's admin token, `admin.token` in its data directory.
    case dataDirectory(String)

    var description: String {
        switch self {
        case .option: return "-t/--token"
        case .environment: return "DEM_TOKEN"
        case .optionFile(let path): return "--token-file \(path)"
        case .environmentFile(let path): return "DEM_TOKEN_FILE (\(path))"
        case .dataDirectory(let path): return path
        }
    }
}

/// An admin token file dem-cli looked at and passed over.
struct SearchedFile: Equatable, Sendable {
    var path: String
    /// Why it was passed over (`No such file or directory`, `Permission denied`, `empty`).
    var reason: String
}

/// The token to send, where it came from, and the admin token files passed over on the way.
struct TokenResolution: Equatable, Sendable {
    /// The token, or nil to send no `Authorization` header.
    var token: String?
    var origin: TokenOrigin?
    var searched: [SearchedFile] = []
}

/// Why a file could not be read (the `strerror` text).
struct FileReadError: Error, Equatable, Sendable {
    var reason: String
}

/// The name of dem's admin token file in its data directory.
let adminTokenFileName = "admin.token"

/// Finds the token to send: `--token`, `DEM_TOKEN`, `--token-file`, `DEM_TOKEN_FILE`, then
/// `admin.token` in `$DEM_DATA_DIR` if set, else in `/var/lib/dem` if readable, else in
/// `${XDG_STATE_HOME:-$HOME/.local/state}/dem`. A token file holds the token on its first line.
///
/// A token named explicitly (option or variable) that is empty, unreadable or malformed is a
/// usage error; an admin token file that cannot be read is passed over and listed in `searched`.
func resolveToken(
    options: CLIOptions,
    environment: (String) -> String?,
    readFile: (String) throws(FileReadError) -> String
) throws(UsageError) -> TokenResolution {
    func nonEmpty(_ name: String) -> String? {
        guard let value = environment(name), !value.isEmpty else { return nil }
        return value
    }

    if let token = options.token {
        return TokenResolution(token: try checkedToken(token, origin: .option), origin: .option)
    }
    if let token = nonEmpty("DEM_TOKEN") {
        return TokenResolution(token: try checkedToken(token, origin: .environment), origin: .environment)
    }
    for (path, origin) in [
        (options.tokenFile, options.tokenFile.map(TokenOrigin.optionFile)),
        (nonEmpty("DEM_TOKEN_FILE"), nonEmpty("DEM_TOKEN_FILE").map(TokenOrigin.environmentFile)),
    ] {
        guard let path, let origin else { continue }
        let contents: String
        do { contents = try readFile(path) } catch {
            throw UsageError("cannot read the token file \(origin): \(error.reason)")
        }
        return TokenResolution(token: try checkedToken(firstLine(contents), origin: origin), origin: origin)
    }

    var candidates: [String] = []
    if let directory = nonEmpty("DEM_DATA_DIR") {
        candidates.append(joinPath(directory, adminTokenFileName))
    } else {
        candidates.append("/var/lib/dem/" + adminTokenFileName)
        if let state = nonEmpty("XDG_STATE_HOME") {
            candidates.append(joinPath(joinPath(state, "dem"), adminTokenFileName))
        } else if let home = nonEmpty("HOME") {
            candidates.append(joinPath(home, ".local/state/dem/" + adminTokenFileName))
        }
    }
    var searched: [SearchedFile] = []
    for path in candidates {
        let token: String
        do { token = firstLine(try readFile(path)) } catch {
            searched.append(SearchedFile(path: path, reason: error.reason))
            continue
        }
        guard !token.isEmpty else {
            searched.append(SearchedFile(path: path, reason: "empty"))
            continue
        }
        let origin = TokenOrigin.dataDirectory(path)
        return TokenResolution(token: try checkedToken(token, origin: origin), origin: origin, searched: searched)
    }
    return TokenResolution(token: nil, origin: nil, searched: searched)
}

/// The first line of a token file, without surrounding white space.
func firstLine(_ contents: String) -> String {
    let line = contents.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
    return String(line).trimmingWhitespace
}

/// `token` if it can go in an `Authorization: Bearer` header (visible ASCII, no spaces).
func checkedToken(_ token: String, origin: TokenOrigin) throws(UsageError) -> String {
    guard !token.isEmpty else { throw UsageError("the token from \(origin) is empty") }
    guard token.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) else {
        throw UsageError("the token from \(origin) contains spaces, control or non-ASCII characters")
    }
    return token
}

private func joinPath(_ directory: String, _ name: String) -> String {
    directory.hasSuffix("/") ? directory + name : directory + "/" + name
}
