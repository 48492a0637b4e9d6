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
        .systemLibrary(name: "CGIF", pkgConfig: "libgif",
                       providers: [.apt(["libgif-dev"])]),
        .systemLibrary(name: "CWebP", pkgConfig: "libwebp",
                       providers: [.apt(["libwebp-dev"])]),
        // MPI's predefined handles are C macros; this shim turns them into functions.
        .target(name: "CMPIShim", dependencies: ["CMPI"]),
        // Small C kernels: FMA peak probe and hot loops that need guaranteed vectorisation.
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O3", "-fno-math-errno"])]),

        // MARK: Swift modules, bottom to top (docs/ARCHITECTURE.md draws the graph)
        .target(name: "ELIPJSON", swiftSettings: swiftSettings),
        .target(name: "Safetensors", dependencies: ["ELIPJSON"], swiftSettings: swiftSettings),
        // PyTorch checkpoints (torch.save zip and legacy formats) read with a restricted unpickler.
        .target(name: "TorchCheckpoint", dependencies: ["ELIPJSON", "Safetensors"], swiftSettings: swiftSettings),
        // Tensor engine: tensors, autograd, parameter arena, ops with their backward, kernels.
        .target(name: "ELIPTensor", dependencies: ["CBLAS", "CKernels"], swiftSettings: swiftSettings),
        // Typed configuration reading (unknown keys, ranges) shared by every config file.
        .target(name: "ELIPConfig", dependencies: ["Yams"], swiftSettings: swiftSettings),
        // Layers: Linear, LayerNorm, Embedding, attention, MLP, pre-/post-LN transformer blocks.
        .target(name: "ELIPNN", dependencies: ["ELIPTensor"], swiftSettings: swiftSettings),
        // ELIP's text-guided token pruning over any vision encoder that gives one query row of attention.
        .target(name: "ELIPPruning", dependencies: ["ELIPConfig", "ELIPTensor"], swiftSettings: swiftSettings),
        // Encoders: vision (timm ViT), text and fusion (BERT stacks, cross-attention, MLM head).
        .target(name: "ELIPEncoders", dependencies: ["ELIPConfig", "ELIPNN", "ELIPPruning", "ELIPTensor"], swiftSettings: swiftSettings),
        // Objectives: momentum twin, contrastive queue, hard negatives, masked and causal LM.
        .target(name: "ELIPObjectives", dependencies: ["CKernels", "ELIPNN", "ELIPTensor"], swiftSettings: swiftSettings),
        // Models (one file per backbone), the model protocol, registry, state dicts, reference replay.
        .target(name: "ELIPModel", dependencies: ["ELIPConfig", "ELIPEncoders", "ELIPImage", "ELIPNN", "ELIPObjectives", "ELIPPruning",
                                                  "ELIPTensor", "ELIPText", "Safetensors"], swiftSettings: swiftSettings),
        .target(name: "ELIPDistributed", dependencies: ["CMPI", "CMPIShim", "ELIPTensor"], swiftSettings: swiftSettings),
        // Data: text (tokenizers, pre_caption), images (codecs, resize, augmentation), LMDB shards
        // (dataset build/inspection, the training loader, the synthetic corpus).
        .target(name: "ELIPText", dependencies: ["ELIPJSON"], swiftSettings: swiftSettings),
        .target(name: "ELIPImage", dependencies: ["CGIF", "CPNG", "CTurboJPEG", "CWebP"], swiftSettings: swiftSettings),
        .target(name: "ELIPShards", dependencies: ["CLMDB", "ELIPJSON", "ELIPText", "ELIPImage", "Safetensors"], swiftSettings: swiftSettings),
        // Training generic over the model: config file, trainer, checkpoints, optimizer, metrics.
        .target(name: "ELIPTrain", dependencies: ["CKernels", "ELIPConfig", "ELIPDistributed", "ELIPImage", "ELIPModel", "ELIPNN",
                                                  "ELIPObjectives", "ELIPShards", "ELIPTensor", "ELIPText", "Safetensors", "TorchCheckpoint"],
                swiftSettings: swiftSettings),
        // Evaluation and pictures: retrieval, pruning pictures and analysis, training plots, charts.
        .target(name: "ELIPEval", dependencies: ["ELIPDistributed", "ELIPImage", "ELIPModel", "ELIPNN", "ELIPPruning",
                                                 "ELIPTensor", "ELIPText", "ELIPTrain", "Safetensors", "TorchCheckpoint"], swiftSettings: swiftSettings),
        .executableTarget(name: "elip", dependencies: [
            "CBLAS", "CKernels", "ELIPDistributed", "ELIPEncoders", "ELIPEval", "ELIPImage", "ELIPJSON", "ELIPModel", "ELIPNN", "ELIPObjectives",
            "ELIPPruning", "ELIPShards",
            "ELIPTensor", "ELIPText", "ELIPTrain", "Safetensors", "TorchCheckpoint",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: swiftSettings),

        // MARK: tests
        .testTarget(name: "ELIPTensorTests", dependencies: ["CKernels", "ELIPTensor"], swiftSettings: swiftSettings),
        .testTarget(name: "ELIPConfigTests", dependencies: ["ELIPConfig"], swiftSettings: swiftSettings),
        .testTarget(name: "ELIPNNTests", dependencies: ["ELIPNN", "ELIPTensor"], swiftSettings: swiftSettings),
        .testTarget(name: "ELIPPruningTests", dependencies: ["ELIPEncoders", "ELIPNN", "ELIPPruning", "ELIPTensor"], swiftSettings: swiftSettings),
        .testTarget(name: "ELIPObjectivesTests", dependencies: ["ELIPNN", "ELIPObjectives", "ELIPTensor"], swiftSettings: swiftSettings),
        .testTarget(name: "ELIPModelTests", dependencies: ["ELIPConfig", "ELIPEncoders", "ELIPModel", "ELIPNN", "ELIPObjectives", "ELIPPruning",
                                                           "ELIPTensor", "Safetensors"], swiftSettings: swiftSettings),
        .testTarget(name: "ELIPDistributedTests", dependencies: ["ELIPDistributed", "ELIPTensor"], swiftSettings: swiftSettings),
        .testTarget(name: "ELIPTrainTests", dependencies: ["ELIPConfig", "ELIPDistributed", "ELIPEncoders", "ELIPImage", "ELIPModel", "ELIPNN",
                                                           "ELIPObjectives", "ELIPPruning", "ELIPShards", "ELIPTensor", "ELIPText", "ELIPTrain",
                                                           "Safetensors"],
                    swiftSettings: swiftSettings),
        // End-to-end tests of the `elip` command (runs the built executable).
        .testTarget(name: "CLITests", dependencies: ["elip", "ImageFormatFixtures", "Safetensors", "TorchSaveFixtures"], swiftSettings: swiftSettings),
        .testTarget(name: "SafetensorsTests", dependencies: ["Safetensors"], swiftSettings: swiftSettings),
        // Writes torch.save's bytes without PyTorch: fixtures for the checkpoint reader's tests.
        .target(name: "TorchSaveFixtures", path: "Tests/TorchSaveFixtures", swiftSettings: swiftSettings),
        .testTarget(name: "TorchCheckpointTests", dependencies: ["Safetensors", "TorchCheckpoint", "TorchSaveFixtures"], swiftSettings: swiftSettings),
        .testTarget(name: "ELIPJSONTests", dependencies: ["ELIPJSON"], swiftSettings: swiftSettings),
        .testTarget(name: "ELIPTextTests", dependencies: ["ELIPJSON", "ELIPText"], swiftSettings: swiftSettings),
        // Writes PNG/GIF/WebP/BMP/JPEG test images (libraries' encoders or bytes by hand).
        .target(name: "ImageFormatFixtures", dependencies: ["CGIF", "CWebP", "ELIPImage"], path: "Tests/ImageFormatFixtures", swiftSettings: swiftSettings),
        .testTarget(name: "ELIPImageTests", dependencies: ["ELIPImage", "ImageFormatFixtures"], swiftSettings: swiftSettings),
        .testTarget(name: "ELIPShardsTests", dependencies: ["ELIPShards", "ELIPText", "ELIPImage"], swiftSettings: swiftSettings),
        .testTarget(name: "ELIPEvalTests", dependencies: ["ELIPDistributed", "ELIPEncoders", "ELIPEval", "ELIPImage", "ELIPModel", "ELIPNN", "ELIPShards",
                                                          "ELIPTensor", "ELIPText", "ELIPTrain"], swiftSettings: swiftSettings),
    ],
    swiftLanguageModes: [.v5]
)

var swiftSettings: [SwiftSetting] { [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))] }
