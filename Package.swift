// swift-tools-version:6.0
import PackageDescription

// Native libraries come from Debian packages (see `make setup`); each system-library target
// names the package that provides it so a missing library fails with an actionable message.
let package = Package(
    name: "elip",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "elip", targets: ["elip"]),
        .library(name: "ELIPTensor", targets: ["ELIPTensor"]),
        .library(name: "ELIPModel", targets: ["ELIPModel"]),
        .library(name: "ELIPText", targets: ["ELIPText"]),
        .library(name: "ELIPImage", targets: ["ELIPImage"]),
        .library(name: "ELIPShards", targets: ["ELIPShards"]),
        .library(name: "ELIPEval", targets: ["ELIPEval"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
    ],
    targets: [
        // MARK: native libraries
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
        .systemLibrary(name: "CLMDB", pkgConfig: "lmdb",
                       providers: [.apt(["liblmdb-dev"])]),
        .systemLibrary(name: "CTurboJPEG", pkgConfig: "libturbojpeg",
                       providers: [.apt(["libturbojpeg0-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng",
                       providers: [.apt(["libpng-dev"])]),
        // MPI's predefined handles are C macros; this shim turns them into functions.
        .target(name: "CMPIShim", dependencies: ["CMPI"]),
        // Small C kernels: FMA peak probe and hot loops that need guaranteed vectorisation.
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O3"])]),

        // MARK: Swift modules
        .target(name: "Safetensors", swiftSettings: swiftSettings),
        .target(name: "ELIPTensor", dependencies: ["CBLAS", "CKernels", "Safetensors"],
                swiftSettings: swiftSettings),
        .target(name: "ELIPNN", dependencies: ["ELIPTensor"], swiftSettings: swiftSettings),
        .target(name: "ELIPModel", dependencies: ["ELIPNN", "ELIPTensor", "Safetensors", "Yams"], swiftSettings: swiftSettings),
        .target(name: "ELIPDistributed", dependencies: ["CMPI", "CMPIShim", "ELIPTensor"], swiftSettings: swiftSettings),
        .target(name: "ELIPTrain", dependencies: ["ELIPModel", "ELIPTensor", "ELIPText", "ELIPImage", "ELIPShards", "ELIPEval",
                                                  "ELIPDistributed", "Safetensors", "CKernels"],
                swiftSettings: swiftSettings),
        // Data: text (tokenizers, pre_caption), images (codecs, resize, augmentation), LMDB shards
        // (dataset build/inspection, the training loader, the synthetic corpus).
        .target(name: "ELIPText", swiftSettings: swiftSettings),
        .target(name: "ELIPImage", dependencies: ["CTurboJPEG", "CPNG"], swiftSettings: swiftSettings),
        .target(name: "ELIPShards", dependencies: ["CLMDB", "ELIPText", "ELIPImage"], swiftSettings: swiftSettings),
        // Evaluation and visualisation output (for now the bitmap font and line charts).
        .target(name: "ELIPEval", dependencies: ["ELIPImage"], swiftSettings: swiftSettings),
        .executableTarget(name: "elip", dependencies: [
            "ELIPTensor", "ELIPNN", "ELIPModel", "ELIPText", "ELIPImage", "ELIPShards", "ELIPDistributed", "ELIPTrain", "Safetensors",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: swiftSettings),

        // MARK: tests
        .testTarget(name: "ELIPTensorTests", dependencies: ["ELIPTensor"], swiftSettings: swiftSettings),
        .testTarget(name: "ELIPModelTests", dependencies: ["ELIPModel"], swiftSettings: swiftSettings),
        .testTarget(name: "ELIPDistributedTests", dependencies: ["ELIPDistributed"], swiftSettings: swiftSettings),
        .testTarget(name: "ELIPTrainTests", dependencies: ["ELIPTrain", "ELIPText", "ELIPImage", "ELIPShards", "ELIPEval"],
                    swiftSettings: swiftSettings),
        // End-to-end tests of the `elip` command (runs the built executable).
        .testTarget(name: "CLITests", dependencies: ["elip", "Safetensors"], swiftSettings: swiftSettings),
        .testTarget(name: "SafetensorsTests", dependencies: ["Safetensors"], swiftSettings: swiftSettings),
        .testTarget(name: "ELIPTextTests", dependencies: ["ELIPText"], swiftSettings: swiftSettings),
        .testTarget(name: "ELIPImageTests", dependencies: ["ELIPImage"], swiftSettings: swiftSettings),
        .testTarget(name: "ELIPShardsTests", dependencies: ["ELIPShards", "ELIPText", "ELIPImage"], swiftSettings: swiftSettings),
        .testTarget(name: "ELIPEvalTests", dependencies: ["ELIPEval", "ELIPImage"], swiftSettings: swiftSettings),
    ],
    swiftLanguageModes: [.v5]
)

var swiftSettings: [SwiftSetting] { [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))] }
