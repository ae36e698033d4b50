import CortadoCore
import CortadoData
import CortadoInfer
import CortadoJob
import CortadoModel
import Foundation

/// Fuzz harnesses for the parsers that read files a user hands us: the model file, the data
/// manifest, the job spec, the checkpoint. Built with libFuzzer by `cluster/fuzz.sh`
/// (AddressSanitizer, coverage, `-D FUZZING`); the target is picked by CORTADO_FUZZ_TARGET. A
/// harness may throw CortadoError (that is the point: a clear error) but must not crash,
/// hang or trip AddressSanitizer.
///
/// Built normally (without FUZZING) it replays files: `cortado-fuzz TARGET FILE…` — how a
/// crash the fuzzer found is reproduced and kept as a regression input.
enum Harness {
    static let target = ProcessInfo.processInfo.environment["CORTADO_FUZZ_TARGET"] ?? "model"
    static let tensorDecoder = RequestDecoder(inputShape: [1, 2, 2], preprocessingJSON: nil)
    static let columnDecoder: RequestDecoder = {
        var age = ColumnInfo(schema: ColumnSchema(name: "age", type: .numeric), role: "feature")
        age.mean = 40
        age.std = 10
        age.offset = 0
        age.width = 1
        age.clipRange = [0, 100]
        var color = ColumnInfo(schema: ColumnSchema(name: "color", type: .categorical), role: "feature")
        color.vocabulary = ["red", "green"]
        color.offset = 1
        color.width = 3
        let pre = Preprocessing(
            columns: [age, color], csv: CSVDialect(delimiter: ",", header: true, missingValues: ["", "NA"]))
        let json = (try? stableJSON(pre, pretty: false)).map { String(decoding: $0, as: UTF8.self) }
        return RequestDecoder(inputShape: [4], preprocessingJSON: json)
    }()

    static func run(_ target: String, _ data: Data) {
        switch target {
        case "model":
            // Append the checksum the file format requires, so the fuzzer reaches the header,
            // table and offset checks instead of stopping at the checksum gate.
            var h = SHA256()
            h.update(data)
            var bytes = data
            bytes.append(contentsOf: h.finalize())
            if let m = try? ModelFile.parse(bytes, path: "fuzz.cmodel") {
                for t in m.header.tensors {
                    switch t.dtype {
                    case .float32: _ = m.values(t, as: Float.self)
                    case .int8: _ = m.values(t, as: Int8.self)
                    case .int32: _ = m.values(t, as: Int32.self)
                    case .float16, .bfloat16, .uint16: _ = m.values(t, as: UInt16.self)
                    }
                    // The readers behind the table: dequantize, densify CSR (checked indices).
                    if t.name.hasSuffix(".values"), let ip = m.tensor(String(t.name.dropLast(7)) + ".indptr"),
                        ip.shape.count == 1, ip.shape[0] > 1
                    {
                        _ = try? m.floats(String(t.name.dropLast(7)), shape: [ip.shape[0] - 1, 64])
                    } else if t.shape.count == 2 {
                        _ = try? m.floats(t.name, shape: t.shape)
                    }
                }
            }
        case "manifest":
            _ = try? DatasetManifest.parse(data, path: "fuzz.json")
        case "spec":
            guard let text = String(data: data, encoding: .utf8) else { return }
            if let tree = try? ConfigNode.parse(text, origin: "fuzz.yaml") { _ = try? JobSpec(tree: tree) }
        case "checkpoint":
            // The reader as a file meets it: the whole-file checksum gate, then libhdf5 and
            // the checks behind it. In memory (HDF5's core driver), ~no syscalls.
            _ = try? Checkpoint.parse(data, path: "fuzz.h5")
        case "checkpoint-body":
            // Past the gate: every input gets a valid checksum, so libhdf5 parses mutated
            // files. This reaches libhdf5 1.10's own bugs (a use-after-free in H5Aexists on
            // a malformed object header), which the gate keeps from real checkpoints.
            _ = try? Checkpoint.parse(Checkpoint.stamped(data), path: "fuzz.h5")
        case "infer-request":
            // The server's request parser (Open Inference Protocol JSON → tensors), then the
            // decoders behind it: a tensor model [rows, 4] and a model that reads raw CSV
            // columns through its transforms (numeric, one-hot).
            // Then the same bytes as the binary tensor data extension sends them: the JSON up
            // to the last '}', binary tensor data after it.
            var requests = [try? InferRequest.parse(data)]
            if let end = data.lastIndex(of: UInt8(ascii: "}")) {
                requests.append(try? InferRequest.parse(data, headerLength: end - data.startIndex + 1))
            }
            for case let r? in requests {
                _ = try? Harness.tensorDecoder.features(r)
                _ = try? Harness.columnDecoder.features(r)
            }
        default:
            fatalError(
                "CORTADO_FUZZ_TARGET: unknown target '\(target)' (model, manifest, spec, checkpoint, checkpoint-body, infer-request)"
            )
        }
    }
}

#if FUZZING
    /// libFuzzer's driver (linked from libclang_rt.fuzzer_no_main, so SwiftPM's main stays ours).
    @_silgen_name("LLVMFuzzerRunDriver")
    func LLVMFuzzerRunDriver(
        _ argc: UnsafeMutablePointer<Int32>,
        _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
        _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
    ) -> Int32
#endif

@main
struct FuzzMain {
    static func main() {
        #if FUZZING
            var argc = CommandLine.argc
            var argv = Optional(CommandLine.unsafeArgv)
            exit(
                LLVMFuzzerRunDriver(&argc, &argv) { data, size in
                    Harness.run(Harness.target, size > 0 ? Data(bytes: data!, count: size) : Data())
                    return 0
                })
        #else
            let args = CommandLine.arguments.dropFirst()
            guard let target = args.first else {
                print(
                    "usage: cortado-fuzz model|manifest|spec|checkpoint FILE…   (replays inputs; cluster/fuzz.sh builds the fuzzer)"
                )
                print(
                    "       cortado-fuzz seed-checkpoint FILE                       (writes a small valid checkpoint as a seed)"
                )
                return
            }
            if target == "seed-checkpoint", let path = args.dropFirst().first {
                // A 2×3 + 3 layout: every part of the format, in ~3 KB, so the fuzzer's inputs stay
                // small and fast (a real checkpoint is mostly float payload it cannot mutate usefully).
                let layout = ParameterLayout(
                    tensors: [
                        TensorSpec(name: "layers.0.weight", shape: [2, 3], offset: 0),
                        TensorSpec(name: "layers.0.bias", shape: [3], offset: 6)
                    ], count: 9)
                let params = (0..<9).map { Float($0) / 8 }, state = [Float](repeating: 0.5, count: 9)
                do {
                    try params.withUnsafeBufferPointer { p in
                        try state.withUnsafeBufferPointer { s in
                            try Checkpoint.writeFile(
                                path, step: 3, stepsPerEpoch: 2, worldSize: 2, dataPartitions: 2,
                                jobSpecJSON: #"{"batch_size":4}"#, layout: layout, params: p, optimizerState: s)
                        }
                    }
                    print("wrote \(path)")
                } catch { print("\(error)"); exit(1) }
                return
            }
            for file in args.dropFirst() {
                guard let data = FileManager.default.contents(atPath: file) else {
                    print("cannot read \(file)"); continue
                }
                Harness.run(target, data)
                print("ok \(file)")
            }
        #endif
    }
}
