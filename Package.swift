// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "profile-jobs-gateway",
    products: [
        .executable(name: "profile-jobs-gateway", targets: ["profile-jobs-gateway"]),
        .library(name: "ProfileJobsGateway", targets: ["ProfileJobsGateway"]),
    ],
    targets: [
        .systemLibrary(
            name: "CMicroHTTPD",
            pkgConfig: "libmicrohttpd",
            providers: [.apt(["libmicrohttpd-dev"])]
        ),
        .systemLibrary(
            name: "CCurl",
            pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]
        ),
        /// epoll and eventfd, which Glibc's module leaves out; only the event loop's file imports it.
        .systemLibrary(name: "CEpoll"),
        .target(
            name: "ProfileJobsGateway",
            dependencies: ["CMicroHTTPD", "CCurl", "CEpoll"],
            linkerSettings: [.linkedLibrary("m")]
        ),
        .target(
            name: "UpstreamSimulators",
            dependencies: ["ProfileJobsGateway"]
        ),
        .executableTarget(
            name: "profile-jobs-gateway",
            dependencies: ["ProfileJobsGateway", "UpstreamSimulators"]
        ),
        /// libFuzzer's entry point over every reader of untrusted bytes; scripts/fuzz builds it with -DFUZZING, and
        /// without that flag it is a stub, so the normal build needs no libFuzzer.
        .executableTarget(
            name: "GatewayFuzz",
            dependencies: ["ProfileJobsGateway"],
            path: "Fuzz/GatewayFuzz"
        ),
        /// Times one job document's translation (upstream dialect in, canonical JSON out); bench/run also counts its
        /// instructions under callgrind.
        .executableTarget(
            name: "TranslationBench",
            dependencies: ["ProfileJobsGateway"],
            path: "bench/TranslationBench"
        ),
        .testTarget(
            name: "ProfileJobsGatewayTests",
            dependencies: ["ProfileJobsGateway", "UpstreamSimulators"],
            exclude: ["Support/upstream_test_server.py"],
            resources: [.copy("Fixtures")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
