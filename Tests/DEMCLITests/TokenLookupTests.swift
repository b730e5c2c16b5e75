import Testing

@testable import dem_cli

/// Which token dem-cli sends, with a fake environment and file system.
@Suite("dem-cli token lookup")
struct TokenLookupTests {
    /// A fake environment and file system; a file missing from `files` cannot be read.
    struct World {
        var options = CLIOptions()
        var environment: [String: String] = [:]
        var files: [String: String] = [:]
        /// Files that exist but may not be read.
        var unreadable: Set<String> = []

        func resolve() throws(UsageError) -> TokenResolution {
            try resolveToken(
                options: options,
                environment: { environment[$0] },
                readFile: { (path: String) throws(FileReadError) -> String in
                    if unreadable.contains(path) { throw FileReadError(reason: "Permission denied") }
                    guard let contents = files[path] else { throw FileReadError(reason: "No such file or directory") }
                    return contents
                }
            )
        }
    }

    /// Every source holds a different token.
    static let everything = World(
        options: CLIOptions(token: "from-option", tokenFile: "/etc/opt.token"),
        environment: [
            "DEM_TOKEN": "from-env", "DEM_TOKEN_FILE": "/etc/env.token", "DEM_DATA_DIR": "/srv/dem",
            "XDG_STATE_HOME": "/home/u/state", "HOME": "/home/u",
        ],
        files: [
            "/etc/opt.token": "from-option-file\n", "/etc/env.token": "  from-env-file  \nsecond line\n",
            "/srv/dem/admin.token": "from-data-dir\n", "/var/lib/dem/admin.token": "from-var-lib\n",
            "/home/u/state/dem/admin.token": "from-xdg\n", "/home/u/.local/state/dem/admin.token": "from-home\n",
        ]
    )

    /// After taking away the first `removed` sources of ``everything``: the token and its origin.
    struct Step: Sendable, CustomTestStringConvertible {
        var removed: Int
        var token: String?
        var origin: TokenOrigin?
        var testDescription: String { "\(removed) sources removed → \(origin?.description ?? "no token")" }
    }

    static let steps: [Step] = [
        .init(removed: 0, token: "from-option", origin: .option),
        .init(removed: 1, token: "from-env", origin: .environment),
        .init(removed: 2, token: "from-option-file", origin: .optionFile("/etc/opt.token")),
        .init(removed: 3, token: "from-env-file", origin: .environmentFile("/etc/env.token")),
        .init(removed: 4, token: "from-data-dir", origin: .dataDirectory("/srv/dem/admin.token")),
        .init(removed: 5, token: "from-var-lib", origin: .dataDirectory("/var/lib/dem/admin.token")),
        .init(removed: 6, token: "from-xdg", origin: .dataDirectory("/home/u/state/dem/admin.token")),
        .init(removed: 7, token: "from-home", origin: .dataDirectory("/home/u/.local/state/dem/admin.token")),
        .init(removed: 8, token: nil, origin: nil),
    ]

    static func world(removing count: Int) -> World {
        var world = everything
        let removals: [(inout World) -> Void] = [
            { $0.options.token = nil },
            { $0.environment["DEM_TOKEN"] = nil },
            { $0.options.tokenFile = nil },
            { $0.environment["DEM_TOKEN_FILE"] = nil },
            { $0.environment["DEM_DATA_DIR"] = nil },
            { $0.unreadable.insert("/var/lib/dem/admin.token") },
            { $0.environment["XDG_STATE_HOME"] = nil },
            { $0.files["/home/u/.local/state/dem/admin.token"] = nil },
        ]
        for removal in removals.prefix(count) { removal(&world) }
        return world
    }

    @Test(
        "--token > DEM_TOKEN > --token-file > DEM_TOKEN_FILE > $DEM_DATA_DIR > /var/lib/dem > XDG state or HOME",
        arguments: steps
    )
    func order(_ step: Step) throws {
        let resolution = try Self.world(removing: step.removed).resolve()
        #expect(resolution.token == step.token)
        #expect(resolution.origin == step.origin)
    }

    @Test("admin token files passed over are listed with the reason")
    func searched() throws {
        let resolution = try Self.world(removing: 8).resolve()
        #expect(
            resolution.searched == [
                SearchedFile(path: "/var/lib/dem/admin.token", reason: "Permission denied"),
                SearchedFile(path: "/home/u/.local/state/dem/admin.token", reason: "No such file or directory"),
            ]
        )
    }

    @Test("with DEM_DATA_DIR set only that directory is searched, as dem-cli(8) says")
    func dataDirectoryOnly() throws {
        var world = Self.world(removing: 4)
        world.environment["DEM_DATA_DIR"] = "/srv/other/"
        let resolution = try world.resolve()
        #expect(resolution.token == nil)
        #expect(
            resolution.searched == [SearchedFile(path: "/srv/other/admin.token", reason: "No such file or directory")]
        )
    }

    @Test("an empty DEM_TOKEN counts as unset")
    func emptyEnvironmentToken() throws {
        var world = Self.world(removing: 1)
        world.environment["DEM_TOKEN"] = ""
        #expect(try world.resolve().origin == .optionFile("/etc/opt.token"))
    }

    /// A token file named on the command line or in the environment that cannot be used.
    struct BadFile: Sendable, CustomTestStringConvertible {
        var removed: Int
        var change: @Sendable (inout World) -> Void
        var message: String
        var testDescription: String { message }
    }

    static let badFiles: [BadFile] = [
        .init(
            removed: 2,
            change: { $0.options.tokenFile = "/missing" },
            message: "cannot read the token file --token-file /missing: No such file or directory"
        ),
        .init(
            removed: 3,
            change: { $0.unreadable.insert("/etc/env.token") },
            message: "cannot read the token file DEM_TOKEN_FILE (/etc/env.token): Permission denied"
        ),
        .init(
            removed: 2,
            change: { $0.files["/etc/opt.token"] = "\nfrom-line-two\n" },
            message: "the token from --token-file /etc/opt.token is empty"
        ),
        .init(
            removed: 0,
            change: { $0.options.token = "two words" },
            message: "the token from -t/--token contains spaces"
        ),
    ]

    @Test("a named token file that cannot be read, or a bad token, is an error", arguments: badFiles)
    func badFile(_ input: BadFile) {
        var world = Self.world(removing: input.removed)
        input.change(&world)
        let error = #expect(throws: UsageError.self) { try world.resolve() }
        #expect(error?.message.contains(input.message) == true, "message: \(error?.message ?? "none")")
    }
}
