// swift-tools-version:6.2
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

// The server tests call the C socket API directly. Which module "defines" `sockaddr_in` and its
// members depends on which of Glibc and NIO's CNIOLinux the compiler reads the system header
// through first, so member import visibility fails them at random; they are built without it.
let serverTestSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "identity-graph",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "identity-graph", targets: ["identity-graph"]),
        .library(name: "IdentityGraph", targets: ["IdentityGraph"]),
        .library(name: "IdentityServer", targets: ["IdentityServer"]),
        .library(name: "IdentityGraphClient", targets: ["IdentityGraphClient"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
    ],
    targets: [
        // The C library, found through pkg-config; Debian's liblmdb-dev provides it.
        .systemLibrary(
            name: "CLMDB",
            pkgConfig: "lmdb",
            providers: [.apt(["liblmdb-dev"])]
        ),
        // LZ4, found through pkg-config; Debian's liblz4-dev provides it. Checkpoints travel compressed:
        // a join moves about a third of the bytes through PostgreSQL and decompresses them on both cores.
        .systemLibrary(
            name: "CLZ4",
            pkgConfig: "liblz4",
            providers: [.apt(["liblz4-dev"])]
        ),
        // A small safe wrapper over LMDB: no domain types, no C pointers above it.
        .target(
            name: "LMDB",
            dependencies: ["CLMDB"],
            swiftSettings: swiftSettings
        ),
        // A cache prefetch hint, which Swift cannot express: the index's rebuild asks for the table
        // slots of the next rows while it inserts the current ones.
        .target(name: "CPrefetch"),
        // The domain: contacts, normalization, the index, identify, persistence. No networking.
        .target(
            name: "IdentityGraph",
            dependencies: ["LMDB", "CPrefetch"],
            swiftSettings: swiftSettings
        ),
        // The wire: HTTP routes (Hummingbird), the line protocol (SwiftNIO), services, limits.
        .target(
            name: "IdentityServer",
            dependencies: [
                "IdentityGraph",
                "IdentityCluster",
                "IdentityGraphClient",
                // Followers relay HTTP changes to the leader through it (cluster mode); the test helpers of
                // Hummingbird build it already.
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            // The OpenAPI document served at GET /openapi.json, byte for byte (see OpenAPIDocument).
            resources: [.copy("HTTP/openapi.json")],
            swiftSettings: swiftSettings
        ),
        // Cluster mode (SPEC.md section 17): the lease and the log in PostgreSQL. No HTTP.
        .target(
            name: "IdentityCluster",
            dependencies: [
                "IdentityGraph",
                "CLZ4",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // A client of the line protocol for Swift applications (and cluster followers): SwiftNIO and
        // NIOSSL only, no server code.
        .target(
            name: "IdentityGraphClient",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                // The TLS handshake's completion event, which NIOSSL sends.
                .product(name: "NIOTLS", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "identity-graph",
            dependencies: [
                "IdentityGraph",
                "IdentityServer",
                "IdentityCluster",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // The shared conformance scenarios, read at test time by every suite that speaks identify.
        .target(
            name: "ConformanceSupport",
            dependencies: ["IdentityGraph"],
            path: "Tests/ConformanceSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "LMDBTests",
            dependencies: ["LMDB"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "IdentityGraphTests",
            dependencies: ["IdentityGraph", "LMDB", "ConformanceSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "IdentityServerTests",
            dependencies: [
                "IdentityServer",
                "IdentityCluster",
                "IdentityGraph",
                "IdentityGraphClient",
                "ConformanceSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
            ],
            swiftSettings: serverTestSettings
        ),
    ]
)
