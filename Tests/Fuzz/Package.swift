// swift-tools-version:6.2
import PackageDescription

// A libFuzzer target for the request path of IdentityGraph: JSON reading, normalization, identify.
// A package of its own so that the sanitizer flags never reach the main build; see README.md.
let package = Package(
    name: "identity-graph-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        // Named, because SwiftPM would otherwise name it after whatever folder the checkout is in.
        .package(name: "identity-graph", path: "../.."),
    ],
    targets: [
        .executableTarget(
            name: "RequestFuzzer",
            dependencies: [
                .product(name: "IdentityGraph", package: "identity-graph"),
            ],
            swiftSettings: [
                .swiftLanguageMode(.v6),
                .enableUpcomingFeature("ExistentialAny"),
                .enableUpcomingFeature("MemberImportVisibility"),
                // `@_extern(c)`, to declare libFuzzer's C entry point with the C calling convention.
                .enableExperimentalFeature("Extern"),
            ]
        ),
    ]
)
