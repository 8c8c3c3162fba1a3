// swift-tools-version:6.2
import PackageDescription

// The benchmarks are their own package so that the main build and CI never compile
// benchmark-only dependencies. See README.md here and RESULTS.md for the numbers.
let swiftSettings: [SwiftSetting] = [.swiftLanguageMode(.v6)]

let package = Package(
    name: "identity-graph-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "identity-graph", path: "../"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        // Seeded NDJSON request streams modelled on checkout traffic; prints the mix it produced.
        .executableTarget(
            name: "workload",
            dependencies: [
                .product(name: "IdentityGraph", package: "identity-graph"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        // Replays a workload against a running server over the line protocol or HTTP/1.1.
        .executableTarget(
            name: "loadgen",
            dependencies: [
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: swiftSettings
        ),
        // Builds a store of N contacts quickly, for the memory and restart measurements.
        .executableTarget(
            name: "populate",
            dependencies: [
                .product(name: "IdentityGraph", package: "identity-graph"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        // The engine in-process on a workload: memory only, and durable with group commit.
        .executableTarget(
            name: "engine-throughput",
            dependencies: [
                .product(name: "IdentityGraph", package: "identity-graph"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        // Micro-benchmarks of the engine with ordo-one/benchmark (`swift package benchmark`).
        .executableTarget(
            name: "EngineBenchmarks",
            dependencies: [
                .product(name: "IdentityGraph", package: "identity-graph"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/EngineBenchmarks",
            swiftSettings: swiftSettings,
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
