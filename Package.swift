// swift-tools-version:5.9
// Cortado: data-parallel deep-learning training for CPU clusters.
//
// The targets follow the pipeline: CortadoData (step 1, preparation), CortadoModel (layers, the
// flat arenas, the model file), CortadoTrain (step 2, MPI data-parallel training), CortadoCompress
// (step 3), CortadoInfer (step 4, links neither MPI nor the trainer). C libraries sit behind their
// own system targets with small shim headers for the macros Swift cannot import.
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
        // ONNX export: the message code is generated once and committed
        // (Sources/5-Reuse/ONNX/Generated, cluster/gen-onnx-proto.sh); no build plugin.
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        // C libraries (Debian packages; see cluster/install-deps.sh).
        .systemLibrary(name: "CMPI", path: "Sources/CShims/CMPI", pkgConfig: "ompi-c"),
        .systemLibrary(name: "CHDF5", path: "Sources/CShims/CHDF5", pkgConfig: "hdf5-serial"),
        .systemLibrary(name: "COpenBLAS", path: "Sources/CShims/COpenBLAS", pkgConfig: "openblas"),
        .systemLibrary(name: "CZlib", path: "Sources/CShims/CZlib", pkgConfig: "zlib"),

        // Shared foundations: errors, checksums, JSON helpers, deterministic RNG.
        .target(name: "CortadoCore", dependencies: [.product(name: "Yams", package: "Yams")],
                path: "Sources/CortadoCore"),
        // The MPI communicator: the only code that calls MPI (trainer, parallel prepare).
        .target(name: "CortadoMPI", dependencies: ["CortadoCore", "CMPI"], path: "Sources/Distributed"),
        // Step 1: raw data → HDF5 shards + manifest.
        .target(name: "CortadoData", dependencies: ["CortadoCore", "CHDF5", "CZlib"],
                path: "Sources/1-Data",
                // The CSV hot loops touch class state per byte; Swift's run-time exclusivity
                // checks on those accesses cost more than the parsing (measured with perf).
                swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]),
        // Layers, losses, the parameter/gradient arenas and the model file format.
        .target(name: "CortadoModel", dependencies: ["CortadoCore", "COpenBLAS"],
                path: "Sources/CortadoModel"),
        // Step 3: compression recipes — magnitude pruning, int8/fp16/bf16 storage, CSR — and
        // the report that measures each variant with the inference runtime.
        .target(name: "CortadoCompress", dependencies: ["CortadoCore", "CortadoData", "CortadoModel", "CortadoInfer"],
                path: "Sources/3-Compress"),
        // The int8 GEMM kernels (portable, AVX2, AVX-512 VNNI; picked at run time).
        .target(name: "CKernels", path: "Sources/CKernels", cSettings: [.unsafeFlags(["-O3"])]),
        // Step 4: the inference runtime (no MPI).
        .target(name: "CortadoInfer", dependencies: ["CortadoCore", "CortadoModel", "CortadoData", "CKernels"],
                path: "Sources/4-Infer"),
        // Step 2: job spec, MPI communicator, trainer, checkpoints.
        .target(name: "CortadoTrain",
                dependencies: ["CortadoCore", "CortadoData", "CortadoModel", "CortadoCompress",
                               "CortadoInfer", "CortadoMPI", "COpenBLAS", "CKernels"],
                path: "Sources/2-Train"),
        // Step 5 (reuse elsewhere): `.cmodel` classifiers → ONNX (fp32), for ONNX Runtime and
        // other runtimes. Only the `cortado` tool links it; cortado-infer does not.
        .target(name: "CortadoONNX",
                dependencies: ["CortadoCore", "CortadoModel", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
                path: "Sources/5-Reuse/ONNX",
                exclude: ["onnx.proto"]),

        .executableTarget(name: "cortado",
                          dependencies: ["CortadoCore", "CortadoData", "CortadoModel", "CortadoMPI", "CortadoTrain", "CortadoCompress",
                                         "CortadoONNX",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          path: "Sources/Tools/cortado"),
        .executableTarget(name: "cortado-fuzz",
                          dependencies: ["CortadoCore", "CortadoData", "CortadoModel", "CortadoTrain"],
                          path: "Sources/Tools/cortado-fuzz",
                          swiftSettings: [.unsafeFlags(["-parse-as-library"])]),
        .executableTarget(name: "cortado-train",
                          dependencies: ["CortadoTrain", "CortadoCore", "CortadoMPI",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          path: "Sources/Tools/cortado-train"),
        .executableTarget(name: "cortado-infer",
                          dependencies: ["CortadoInfer", "CortadoCore",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          path: "Sources/Tools/cortado-infer"),

        .testTarget(name: "CortadoTests",
                    dependencies: ["CortadoCore", "CortadoData", "CortadoModel", "CortadoCompress",
                                   "CortadoInfer", "CortadoTrain", "CortadoMPI", "CKernels", "CortadoONNX"],
                    path: "Tests/CortadoTests",
                    resources: [.copy("Fixtures")]),
    ]
)
