// swift-tools-version: 6.2
import PackageDescription

let package = Package(
    name: "dem",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "DEMCore", targets: ["DEMCore"]),
        .library(name: "DEMServer", targets: ["DEMServer"]),
        .executable(name: "dem", targets: ["dem"]),
        .library(name: "DEMEndpoint", targets: ["DEMEndpoint"]),
        .executable(name: "dem-em", targets: ["dem-em"]),
        .library(name: "DEMHost", targets: ["DEMHost"]),
        .executable(name: "dem-ac", targets: ["dem-ac"]),
        .executable(name: "dem-dm", targets: ["dem-dm"]),
        .executable(name: "dem-cli", targets: ["dem-cli"]),
        .executable(name: "dem-bench", targets: ["dem-bench"]),
    ],
    traits: [
        // The NVMe/RDMA transport (discovery controller, in-band channel, hosts) over librdmacm and
        // libibverbs: `swift build --traits RDMA` needs librdmacm-dev and libibverbs-dev.
        .trait(name: "RDMA")
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-configuration.git", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-system.git", from: "1.8.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.0"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.0"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.0"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.0"),
    ],
    targets: [
        // librdmacm and libibverbs, for the RDMA trait only.
        .systemLibrary(
            name: "CRDMA",
            path: "Sources/CRDMA",
            providers: [.apt(["librdmacm-dev", "libibverbs-dev"])]
        ),
        // OpenSSL's libcrypto: the RFC 7919 Diffie-Hellman groups of DH-HMAC-CHAP.
        .systemLibrary(
            name: "COpenSSL",
            path: "Sources/COpenSSL",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]
        ),
        // The executables' configuration: flags over environment over a JSON file over defaults
        // (swift-configuration), the option table read off each command's help.
        .target(
            name: "DEMConfig",
            dependencies: [
                "DEMCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // NVMe-oF wire format, the pure controller and host state machines, and the NIO transport that drives them.
        .target(
            name: "DEMCore",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                "COpenSSL",
                .target(name: "CRDMA", condition: .when(traits: ["RDMA"])),
            ]
        ),
        // The fabric's PKI: its CA, the certificates it issues and the roles they carry, and the
        // TLS settings of dem's and dem-em's listeners (shared by dem-cli, which has no server).
        .target(
            name: "DEMTLS",
            dependencies: [
                "DEMCore",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ]
        ),
        // What dem's and dem-em's REST APIs share: JSON bodies read with errors naming the field,
        // errors turned into status codes in one place, TLS and the fabric's certificates.
        .target(
            name: "DEMHTTP",
            dependencies: [
                "DEMCore",
                "DEMTLS",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // dem's application: the fabric store, the REST API, discovery sources, the discovery
        // catalog and the service group `dem` runs.
        .target(
            name: "DEMServer",
            dependencies: [
                "DEMCore",
                "DEMHTTP",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        // dem-em's application: inventory, the nvmet configfs backend, its desired state and its
        // REST API.
        .target(
            name: "DEMEndpoint",
            dependencies: [
                "DEMCore",
                "DEMHTTP",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "dem-em",
            dependencies: [
                "DEMConfig",
                "DEMEndpoint",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The host agents' library: the kernel's NVMe-oF host (/dev/nvme-fabrics, sysfs), which
        // controllers to connect, and how changes of discovery log pages are reported.
        .target(
            name: "DEMHost",
            dependencies: [
                "DEMConfig",
                "DEMCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "dem-ac",
            dependencies: [
                "DEMConfig",
                "DEMHost",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "dem-dm",
            dependencies: [
                "DEMConfig",
                "DEMHost",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "dem",
            dependencies: [
                "DEMConfig",
                "DEMServer",
                "DEMHTTP",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The administrator's command line over dem's REST API.
        .executableTarget(
            name: "dem-cli",
            dependencies: [
                "DEMCore",
                "DEMTLS",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ]
        ),
        // Load generator for scripts/bench: dem against a canned-bytes floor server, side by side.
        .executableTarget(
            name: "dem-bench",
            dependencies: [
                "DEMCore",
                "DEMServer",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "DEMCoreTests",
            dependencies: [
                "DEMCore",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
            ],
            resources: [.copy("Fixtures")]
        ),
        .testTarget(
            name: "DEMEndpointTests",
            dependencies: [
                "DEMCore",
                "DEMEndpoint",
                "DEMServer",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
            ],
            resources: [.copy("Fixtures")]
        ),
        .testTarget(
            name: "DEMHostTests",
            dependencies: [
                "DEMCore",
                "DEMHost",
                "DEMServer",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "DEMCLITests",
            dependencies: [
                "dem-cli",
                "DEMCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ]
        ),
        .testTarget(
            name: "DEMServerTests",
            dependencies: [
                "DEMConfig",
                "DEMCore",
                "DEMHTTP",
                "DEMServer",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
    ]
)
