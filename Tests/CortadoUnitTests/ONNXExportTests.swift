import CortadoCompress
import CortadoCore
import CortadoData
import CortadoInfer
import CortadoJob
import CortadoModel
import CortadoONNX
import CortadoPipeline
import CortadoTestSupport
import Foundation
import XCTest

/// `cortado export onnx`: exported models run in ONNX Runtime (one thread) and give the
/// probabilities cortado-infer's runtime gives, within 1e-4 on every row — for an MLP with every
/// elementwise layer, layer norm and dropout, and CNNs with padding, strides, both poolings, a
/// layer norm over (C, H, W) and a dense layer straight after a pooling; fp32, fp16 and int8
/// (dequantized) storage. Recommenders and damaged files are refused with the file named.
///
/// The comparison runs `cluster/onnx-check.py` in the venv that `cluster/install-deps.sh` makes;
/// without it these tests fail and say so.
final class ONNXExportTests: XCTestCase {
    static let rows = 257 // more than one batch of 256 in cortado, fewer than ORT's 1024

    /// He-initialized parameters plus a seeded perturbation of every value, so biases, layer-norm
    /// shifts and scales are all non-trivial and a mix-up between them shows.
    func parameters(_ spec: ModelSpec, seed: UInt64) -> [Float] {
        let net = Network<Float>(spec: spec, maxBatch: 1)
        net.initialize(seed: seed)
        var rng = SeededRNG(seed: seed, stream: 99)
        return net.params.array.map { $0 + Float(rng.normal() * 0.1) }
    }

    /// `rows` seeded feature rows in [0, 1) written as DIR/data.h5 /features (rows, inputSize).
    func writeFeatures(_ dir: String, inputSize: Int) throws -> (path: String, x: [Float]) {
        var rng = SeededRNG(seed: 7, stream: UInt64(inputSize))
        let x = (0..<(Self.rows * inputSize)).map { _ in Float(rng.uniform()) }
        let path = dir + "/data.h5"
        let h5 = try HDF5File.create(path)
        try h5.write("features", x, shape: [Self.rows, inputSize])
        try h5.close()
        return (path, x)
    }

    /// cortado-infer's probabilities for `x` (through `InferenceModel.predict`, as cortado-infer
    /// scores), written as a float32 .npy (rows, classes) for onnx-check.py.
    func expectedProbabilities(model: String, x: [Float], to path: String) throws {
        let m = try InferenceModel(path: model)
        var p = [Float](repeating: 0, count: Self.rows * m.classes)
        x.withUnsafeBufferPointer { xb in
            p.withUnsafeMutableBufferPointer { pb in
                m.predict(xb.baseAddress!, batch: Self.rows, probabilities: pb.baseAddress!)
            }
        }
        try writeNPY(p, shape: [Self.rows, m.classes], to: path)
    }

    /// Exports `model`, runs onnx-check.py on it against `expected` (.npy) and checks every
    /// row's largest difference is within 1e-4. Returns the overall maximum.
    @discardableResult
    func exportAndCheck(
        _ model: String, data: String, expected: String, file: StaticString = #filePath, line: UInt = #line
    ) throws -> Double {
        let python = try Support.venvPython(importing: "numpy, h5py, onnx, onnxruntime")
        let onnx = model + ".onnx"
        let s = try ONNXExport.export(model: model, to: onnx)
        XCTAssertEqual(s.opset, 17, file: file, line: line)
        XCTAssertEqual(
            s.bytes, (try FileManager.default.attributesOfItem(atPath: onnx)[.size] as? Int) ?? -1, file: file,
            line: line)
        let r = try Support.run(
            [python, Support.repoRoot + "/cluster/onnx-check.py", onnx, data, expected, "--json"], timeout: 300)
        print(r.stdout.split(separator: "\n").first ?? "", r.stderr)
        XCTAssertEqual(r.status, 0, "onnx-check.py: \(r.output)", file: file, line: line)
        let j = try Support.lastJSON(r)
        let perRow = (j["row_max_abs_diff"] as? [Double]) ?? []
        XCTAssertEqual(perRow.count, Self.rows, "rows compared", file: file, line: line)
        for (i, d) in perRow.enumerated() where !(d <= 1e-4) {
            XCTFail("\(model): row \(i) differs by \(d) > 1e-4", file: file, line: line)
        }
        XCTAssertEqual(j["argmax_agree"] as? Int, Self.rows, file: file, line: line)
        return (j["max_abs_diff"] as? Double) ?? .infinity
    }

    /// Writes a model by `recipe`; for int8 also the fp32 file holding its dequantized weights,
    /// which is what the exported (fp32) graph computes with. Returns the file to take expected
    /// probabilities from.
    func writeModel(_ spec: ModelSpec, _ params: [Float], recipe: String, dir: String) throws -> (
        model: String, reference: String
    ) {
        let classes = (0..<spec.outputSize).map { "c\($0)" }
        let path = dir + "/model-\(recipe).cmodel"
        try params.withUnsafeBufferPointer {
            try ModelExport.write(
                path: path, recipe: try Recipe(recipe), model: spec, classes: classes, params: $0, metadata: [:])
        }
        guard recipe.contains("int8") else { return (path, path) }
        let f = try ModelFile.load(path)
        var dequantized = [Float](repeating: 0, count: params.count)
        for t in spec.parameterLayout.tensors {
            dequantized.replaceSubrange(t.offset..<(t.offset + t.count), with: try f.floats(t.name, shape: t.shape))
        }
        let reference = dir + "/model-\(recipe)-dequantized.cmodel"
        try dequantized.withUnsafeBufferPointer {
            try ModelExport.write(
                path: reference, recipe: try Recipe("fp32"), model: spec, classes: classes, params: $0, metadata: [:])
        }
        return (path, reference)
    }

    /// Writes `spec` by each recipe, exports and checks it; returns the scratch folder.
    @discardableResult
    func check(_ spec: ModelSpec, recipes: [String], name: String) throws -> String {
        let dir = Support.scratch("onnx-" + name)
        let (data, x) = try writeFeatures(dir, inputSize: spec.inputSize)
        let params = parameters(spec, seed: 5)
        for recipe in recipes {
            let (model, reference) = try writeModel(spec, params, recipe: recipe, dir: dir)
            let expected = dir + "/expected-\(recipe).npy"
            try expectedProbabilities(model: reference, x: x, to: expected)
            let d = try exportAndCheck(model, data: data, expected: expected)
            print("ONNX export \(name) \(recipe): max abs diff \(d) over \(Self.rows) rows")
        }
        return dir
    }

    func testMLPWithEveryElementwiseLayerMatchesOnnxRuntime() throws {
        // Image-shaped input, as Fashion-MNIST's (1, 28, 28): an MLP needs no Reshape or Flatten.
        let spec = ModelSpec(
            inputShape: [1, 8, 8],
            layers: [
                .dense(units: 48), .layerNorm, .gelu, .dropout(rate: 0.3), .dense(units: 32), .tanh, .flatten,
                .dense(units: 24), .sigmoid, .dense(units: 16), .relu, .dense(units: 5)
            ])
        let dir = try check(spec, recipes: ["fp32", "fp16", "int8"], name: "mlp")
        let graph = try ONNXExport.read(dir + "/model-fp32.cmodel.onnx").graph
        XCTAssertEqual(graph.node.map(\.opType).filter { ["Reshape", "Flatten"].contains($0) }, [])
        // Gemm ×5, LayerNormalization, GELU's 9, Tanh/Sigmoid/Relu, Softmax
        XCTAssertEqual(graph.node.count, 5 + 1 + 9 + 3 + 1)
    }

    func testCNNMatchesOnnxRuntime() throws {
        // (2, 12, 12) → conv pad 1 (6, 12, 12) → max pool (6, 6, 6) → conv stride 2 pad 1 (8, 3, 3)
        // → layer norm over (8, 3, 3) → gelu → avg pool 2 stride 1 (8, 2, 2) → dense (no flatten).
        let spec = ModelSpec(
            inputShape: [2, 12, 12],
            layers: [
                .conv2d(filters: 6, kernel: 3, stride: 1, padding: 1), .relu, .maxPool(size: 2, stride: 2),
                .conv2d(filters: 8, kernel: 3, stride: 2, padding: 1), .layerNorm, .gelu, .avgPool(size: 2, stride: 1),
                .dense(units: 16), .relu, .dense(units: 4)
            ])
        try check(spec, recipes: ["fp32", "int8"], name: "cnn")
        // A layer norm on the flat image, then a convolution whose (classes, 1, 1) output is the
        // logits: reshaped before the convolution, flattened before the softmax.
        let last = ModelSpec(
            inputShape: [1, 5, 5], layers: [.layerNorm, .conv2d(filters: 3, kernel: 5, stride: 1, padding: 0)])
        try check(last, recipes: ["fp32"], name: "cnn-spatial-logits")
    }

    /// The command line: one line naming the file, its size, the opset and the node count.
    func testCommandLinePrintsOneLine() throws {
        let dir = Support.scratch("onnx-cli")
        let spec = ModelSpec(inputShape: [10], layers: [.dense(units: 8), .relu, .dense(units: 3)])
        let (model, _) = try writeModel(spec, parameters(spec, seed: 1), recipe: "fp32", dir: dir)
        let r = try Support.run([Support.product("cortado"), "export", "onnx", model, "--out", dir + "/m.onnx"])
        XCTAssertEqual(r.status, 0, r.output)
        let lines = r.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, r.stdout)
        XCTAssertTrue(r.stdout.contains("wrote \(dir)/m.onnx: ") && r.stdout.contains("opset 17, 4 nodes"), r.stdout)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/m.onnx"))
    }

    /// A recommender and a damaged file: a one-line error naming the file, exit code 2, no
    /// output file (not even a temporary one).
    func testRecommenderAndDamagedModelsAreRefused() throws {
        let dir = Support.scratch("onnx-refuse")
        var rs = RecommenderSpec(userColumn: "u", itemColumn: "i", users: 4, items: 6, dim: 3)
        rs.mlp = [.dense(units: 4), .relu, .dense(units: 1)]
        let recommender = dir + "/recsys.cmodel"
        let p = [Float](repeating: 0.25, count: rs.parameterLayout.count)
        try p.withUnsafeBufferPointer {
            try ModelExport.write(
                path: recommender, recipe: try Recipe("fp32"), recommender: rs, params: $0, metadata: [:])
        }
        let spec = ModelSpec(inputShape: [10], layers: [.dense(units: 3)])
        let (damaged, _) = try writeModel(spec, parameters(spec, seed: 2), recipe: "fp32", dir: dir)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: damaged))
        bytes[bytes.count - 40] ^= 0xFF // a weight byte: the checksum no longer matches
        try bytes.write(to: URL(fileURLWithPath: damaged))

        for (model, why) in [
            (recommender, "recommender"), (damaged, "checksum mismatch"),
            (dir + "/missing.cmodel", "no such model file")
        ] {
            XCTAssertThrowsError(try ONNXExport.export(model: model, to: dir + "/out.onnx")) { e in
                let message = "\(e)"
                XCTAssertTrue(
                    message.hasPrefix(model + ":") && message.contains(why) && !message.contains("\n"), message)
                XCTAssertEqual((e as? CortadoError)?.exitCode, 2)
            }
            let r = try Support.run([Support.product("cortado"), "export", "onnx", model, "--out", dir + "/out.onnx"])
            XCTAssertEqual(r.status, 2, r.output)
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
            XCTAssertTrue(r.stderr.contains(model) && r.stdout.isEmpty, r.output)
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out.onnx"))
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out.onnx.tmp"))
        }
    }
}
