import AsyncHTTPClient
import DEMCore
import NIOCore
import NIOHTTP1

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// `dem-cli`, the administrator's command line over dem's REST API.
///
/// This file is the I/O half: it reads the environment and token files, asks before deletes,
/// sends the requests with AsyncHTTPClient and prints what `Render.swift` makes of the answers.
/// The parsing (`CommandLine+Parsing.swift`), the token lookup (`TokenLookup.swift`) and the
/// rendering are pure functions.
@main
struct DEMCLI {
    /// dem-cli's version, printed by `--version` and sent as its User-Agent.
    static let version = "0.3.0"

    static func main() async {
        let status = await run(Array(CommandLine.arguments.dropFirst()))
        exit(status.rawValue)
    }

    /// Runs one command line and returns its exit status.
    static func run(_ arguments: [String]) async -> ExitStatus {
        let command: CLICommand
        do { command = try parseCommandLine(arguments) } catch {
            reportUsageError(error)
            return .usage
        }
        switch command {
        case .help:
            writeOut(CommandTable.helpText)
            return .success
        case .version:
            writeOut("dem-cli \(version)\n")
            return .success
        case .completionScript(let shell):
            writeOut(Completion.script(for: shell))
            return .success
        case .run(let options, let requests):
            return await send(requests, options: options)
        }
    }

    /// Sends `requests` one after the other, asking before each delete unless `-f`. Stops at the
    /// first connection failure or refused token; otherwise returns the highest status seen.
    static func send(_ requests: [CLIRequest], options: CLIOptions) async -> ExitStatus {
        let token: TokenResolution
        do {
            token = try resolveToken(options: options, environment: environmentValue, readFile: readTextFile)
        } catch {
            reportUsageError(error)
            return .usage
        }

        if !options.force, let first = requests.first(where: { $0.confirmation != nil }), isatty(STDIN_FILENO) == 0 {
            let question = first.confirmation ?? ""
            writeError(
                "Error: cannot ask '\(question)': standard input is not a terminal. "
                    + "Use -f (--yes) to go ahead without asking.\n"
            )
            return .refused
        }

        if let request = requests.first, case .trust(let fingerprint) = request.rendering {
            return await trust(options: options, expected: fingerprint)
        }
        let trust = resolveTrust(options: options, environment: environmentValue) { access($0, R_OK) == 0 }
        if let explicit = trust.explicit, access(explicit, R_OK) != 0 {
            reportUsageError(UsageError("cannot read the CA file \(explicit): \(String(cString: strerror(errno)))"))
            return .usage
        }
        var configuration = HTTPClient.Configuration()
        configuration.tlsConfiguration = Self.tlsConfiguration(trusting: trust.files)
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout = HTTPClient.Configuration.Timeout(connect: .seconds(10), read: .seconds(120))
        configuration.redirectConfiguration = .disallow
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)

        var worst = ExitStatus.success
        for request in requests {
            if let question = request.confirmation, !options.force, !confirm(question) {
                writeError(question.hasPrefix("Delete") ? "Not deleted.\n" : "Not done.\n")
                worst = max(worst, .refused)
                continue
            }
            do {
                let (status, body) = try await execute(request, client: client, options: options, token: token.token)
                let result = outcome(
                    httpStatus: status,
                    body: body,
                    request: request,
                    format: options.format,
                    token: token
                )
                writeError(result.standardError)
                writeOut(result.standardOutput)
                worst = max(worst, result.status)
                if result.status == .unauthorized { break }
            } catch {
                let failure = transportFailure(error, baseURL: options.baseURL, trusted: trust.files)
                writeError(failure.message + "\n")
                worst = max(worst, failure.status)
                break
            }
        }
        try? await client.shutdown()
        return worst
    }

    /// Sends one request and returns the status code and the whole body.
    static func execute(
        _ request: CLIRequest,
        client: HTTPClient,
        options: CLIOptions,
        token: String?
    ) async throws -> (Int, [UInt8]) {
        var http = HTTPClientRequest(url: options.baseURL + request.path)
        http.method = request.method
        http.headers.add(name: "Accept", value: "application/json")
        http.headers.add(name: "User-Agent", value: "dem-cli/\(version)")
        if let token { http.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let body = request.body {
            http.headers.add(name: "Content-Type", value: "application/json")
            http.body = .bytes(ByteBuffer(string: body.serialized(pretty: false)))
        }
        let response = try await client.execute(http, timeout: .seconds(150))
        var buffer = try await response.body.collect(upTo: 64 << 20)
        return (Int(response.status.code), buffer.readBytes(length: buffer.readableBytes) ?? [])
    }

    /// Asks `question (N/y)` on the terminal; only `y` or `yes` confirm.
    static func confirm(_ question: String) -> Bool {
        writeError(question + " (N/y) ")
        guard let answer = readLine() else {
            writeError("\n")
            return false
        }
        return ["y", "yes"].contains(answer.trimmingWhitespace.lowercased())
    }

    static func reportUsageError(_ error: UsageError) {
        var text = "dem-cli: \(error.message)\n"
        if let usage = error.usage { text += "Usage: \(usage)\n" }
        text += "Try 'dem-cli --help' for more information.\n"
        writeError(text)
    }
}

// MARK: - Connection failures

/// The message and exit status for a request that got no HTTP answer: `dem is not running` when
/// the connection was refused (status 3), a timeout or a closed connection after connecting
/// (status 5), anything else as a connection failure (status 3).
func transportFailure(
    _ error: any Error,
    baseURL: String,
    trusted: [String] = []
) -> (
    message: String, status: ExitStatus
) {
    if containsConnectionRefused(error) { return ("Error: dem is not running at \(baseURL)", .notRunning) }
    let text = String(describing: error)
    if text.contains("CERTIFICATE_VERIFY_FAILED") || text.contains("certificate verify failed")
        || text.contains("Hostname") || text.contains("hostname")
    {
        let tried =
            trusted.isEmpty ? "the system's CAs" : trusted.joined(separator: ", ")
        return (
            "Error: dem's certificate at \(baseURL) is not trusted (\(tried)): \(text)\n"
                + "On the head node dem-cli finds dem's CA in its data directory (DEM_DATA_DIR); elsewhere pass\n"
                + "--cacert FILE (a copy of dem's fabric-ca.pem) or run 'dem-cli -s HOST trust' to pin dem's CA\n"
                + "after comparing its fingerprint with the tls-ca-fingerprint dem logs at start.",
            .notRunning
        )
    }
    if trusted.isEmpty && text.contains("unknownError") {
        // NIOSSL cannot load the system's CA bundle (none installed) to verify dem's certificate.
        return (
            "Error: cannot verify dem's certificate at \(baseURL): this machine has no CA bundle and dem-cli\n"
                + "knows no CA of dem's (\(text)); pass --cacert FILE (a copy of dem's fabric-ca.pem), set\n"
                + "DEM_DATA_DIR to dem's data directory on the head node, or run 'dem-cli -s HOST trust'.",
            .notRunning
        )
    }
    if text.contains("HTTPParserError") || text.contains("invalidEOFState") || text.contains("handshake") {
        return (
            "Error: dem at \(baseURL) did not complete a TLS handshake (\(text)); if dem runs with --insecure-http, use -s http://HOST",
            .notRunning
        )
    }
    if let error = error as? HTTPClientError {
        switch error {
        case .connectTimeout:
            return ("Error: cannot connect to dem at \(baseURL): connection timed out", .notRunning)
        case .readTimeout, .deadlineExceeded:
            return ("Error: dem at \(baseURL) did not answer in time", .serverError)
        case .remoteConnectionClosed:
            return ("Error: dem at \(baseURL) closed the connection without answering", .serverError)
        case .bodyLengthMismatch:
            return ("Error: cannot read dem's answer from \(baseURL): \(error)", .serverError)
        default:
            break
        }
    }
    return ("Error: cannot connect to dem at \(baseURL): \(ConnectionFailure.describe(error))", .notRunning)
}

/// Whether `value` is, or wraps, an `IOError` with `ECONNREFUSED`.
func containsConnectionRefused(_ value: any Error) -> Bool { ConnectionFailure.isRefused(value) }

// MARK: - Process I/O

func environmentValue(_ name: String) -> String? {
    guard let value = getenv(name) else { return nil }
    return String(cString: value)
}

/// The contents of the file at `path` (at most 64 KiB; token files are one line).
func readTextFile(_ path: String) throws(FileReadError) -> String {
    guard let file = fopen(path, "r") else { throw FileReadError(reason: String(cString: strerror(errno))) }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while bytes.count < 65536 {
        let count = fread(&chunk, 1, chunk.count, file)
        bytes += chunk[0..<count]
        if count < chunk.count {
            if ferror(file) != 0 { throw FileReadError(reason: String(cString: strerror(errno))) }
            break
        }
    }
    return String(decoding: bytes, as: UTF8.self)
}

func writeOut(_ text: String) { writeAll(STDOUT_FILENO, text) }

func writeError(_ text: String) { writeAll(STDERR_FILENO, text) }

private func writeAll(_ descriptor: Int32, _ text: String) {
    guard !text.isEmpty else { return }
    var bytes = Array(text.utf8)[...]
    while !bytes.isEmpty {
        let written = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        if written < 0 {
            if errno == EINTR { continue }
            return
        }
        bytes = bytes.dropFirst(written)
    }
}
