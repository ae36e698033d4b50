import CortadoCore
import CortadoModel
import Foundation
import SwiftProtobuf

/// `.cmodel` classifier → ONNX model (fp32), for ONNX Runtime and other runtimes.
///
/// The graph computes what cortado-infer computes:
///
///     input (batch, inputSize) float32      the model's encoded feature rows (HDF5 /features)
///       layers, one to a few nodes each     see the table below; a Reshape to (batch, C, H, W)
///                                           before the first conv2d/pool
///     probabilities (batch, classes)        Softmax(axis 1) of the logits
///
/// | cortado layer | ONNX |
/// |---|---|
/// | dense (weight (out, in)) | [Flatten(1) when the input is (C, H, W)], Gemm(transB = 1) |
/// | conv2d (weight (f, c, k, k), NCHW) | Conv(kernel k, stride s, symmetric pads p) |
/// | max_pool, avg_pool (no padding, floor) | MaxPool, AveragePool |
/// | flatten | Flatten(axis 1) (nothing when already flat) |
/// | relu, sigmoid, tanh | Relu, Sigmoid, Tanh |
/// | gelu (tanh form) | 0.5·x·(1 + Tanh(√(2/π)·(x + 0.044715·x³))) from Mul/Add/Tanh (ONNX's Gelu needs opset 20) |
/// | layer_norm (over all of a sample's features, ε = 1e-5) | LayerNormalization(axis 1, ε = 1e-5), scale and bias shaped like the sample |
/// | dropout | nothing (identity at inference) |
///
/// Opset 17, IR version 8 (ONNX Runtime ≥ 1.12). Weights are read with `ModelFile.floats`, so
/// any storage exports: fp32, fp16/bf16 (widened), sparse CSR (densified) and **int8, which is
/// dequantized (q · per-channel scale) into fp32 weights**: the ONNX model then computes in
/// fp32 with the int8 file's weights, while cortado-infer's int8 path also quantizes each
/// activation row, so the two agree to that rounding, not to 1e-4. Recommender models (embedding
/// tables, id inputs) are refused. A model trained on CSV data takes the *encoded* features
/// (after imputation, scaling and one-hot encoding), not raw CSV columns.
public enum ONNXExport {
    /// The operator set the graph uses (LayerNormalization needs 17).
    public static let opset = 17
    /// The IR version that goes with opset 17.
    public static let irVersion = 8

    /// What `export` wrote.
    public struct Summary: Codable, Equatable {
        public var path: String
        public var bytes: Int
        public var opset: Int
        public var nodes: Int
        public var initializers: Int
        public var parameters: Int
    }

    /// Loads the model file at `modelPath`, builds its ONNX graph and writes it atomically to
    /// `outputPath`. Errors are one line naming the file.
    @discardableResult
    public static func export(model modelPath: String, to outputPath: String) throws -> Summary {
        let file = try ModelFile.load(modelPath)
        let model = try build(file, path: modelPath)
        let data: Data
        do { data = try model.serializedBytes() } catch {
            throw CortadoError.model("\(modelPath): cannot serialize the ONNX model: \(error)")
        }
        try AtomicFile.write(data, to: outputPath)
        return Summary(
            path: outputPath, bytes: data.count, opset: opset, nodes: model.graph.node.count,
            initializers: model.graph.initializer.count, parameters: file.header.model.parameterLayout.count)
    }

    /// Reads an ONNX file back (tests, `cortado inspect`-style tools).
    public static func read(_ path: String) throws -> Onnx_ModelProto {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw CortadoError.io("\(path): cannot read: \(error.localizedDescription)")
        }
        do { return try Onnx_ModelProto(serializedBytes: data) } catch {
            throw CortadoError.model("\(path): not an ONNX model: \(error)")
        }
    }

    /// The ONNX model of a loaded classifier file (`path` names it in errors and metadata).
    public static func build(_ file: ModelFile, path: String) throws -> Onnx_ModelProto {
        let header = file.header
        guard header.recommender == nil else {
            throw CortadoError.model(
                "\(path): a recommender model cannot be exported to ONNX (only classifiers, whose input is a feature row)"
            )
        }
        let spec = header.model
        do { try spec.validate(classes: spec.outputSize) } catch let e as CortadoError {
            throw CortadoError.model("\(path): bad architecture: \(e.message)")
        }
        let name = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
        var g = ONNXGraphBuilder(
            name: name, doc: "Cortado classifier \(spec.layers.map(\.description).joined(separator: ", "))")
        g.input("input", dims: [nil, spec.inputSize])
        do { try addLayers(spec, file: file, to: &g) } catch let e as CortadoError {
            throw CortadoError.model("\(path): \(e.message)")
        }
        g.output("probabilities", dims: [nil, spec.outputSize])

        var m = Onnx_ModelProto()
        m.irVersion = Int64(irVersion)
        var op = Onnx_OperatorSetIdProto()
        op.domain = ""
        op.version = Int64(opset)
        m.opsetImport = [op]
        m.producerName = "cortado"
        m.producerVersion = cortadoVersion
        m.modelVersion = 1
        m.docString = """
            Exported by `cortado export onnx` from \((path as NSString).lastPathComponent) (\(header.precision)). \
            Input 'input' (batch, \(spec.inputSize)) float32: feature rows as in the data's HDF5 /features\
            \(spec.inputShape.count > 1 ? " (each sample \(spec.inputShape) row-major)" : ""). \
            Output 'probabilities' (batch, \(spec.outputSize)): softmax class probabilities, as cortado-infer.\
            \(header.precision.contains("int8") ? " Weights are the int8 file's, dequantized to fp32." : "")
            """
        let classes =
            header.classes.count == spec.outputSize ? header.classes : (0..<spec.outputSize).map { "class\($0)" }
        var meta: [(String, String)] = [
            ("cortado.source_file", (path as NSString).lastPathComponent),
            ("cortado.source_sha256", SHA256.hex(file.bytes)),
            ("cortado.precision", header.precision),
            ("cortado.weights", header.precision.contains("int8") ? "int8 dequantized to fp32" : "fp32"),
            ("cortado.classes", String(decoding: try stableJSON(classes, pretty: false), as: UTF8.self)),
            ("cortado.input_shape", spec.inputShape.map(String.init).joined(separator: ","))
        ]
        if header.metadata["preprocessing"] != nil {
            meta.append(("cortado.input", "encoded features (the model's CSV preprocessing is not in the graph)"))
        }
        m.metadataProps = meta.map { k, v in
            var e = Onnx_StringStringEntryProto()
            e.key = k
            e.value = v
            return e
        }
        m.graph = g.graph
        return m
    }

    /// Appends the nodes of every layer, then the softmax. Values stay (batch, features) until a
    /// convolution or pooling needs (batch, C, H, W) (one Reshape) and go back with Flatten
    /// before a dense layer, so an MLP on image-shaped data has no reshapes at all.
    static func addLayers(_ spec: ModelSpec, file: ModelFile, to g: inout ONNXGraphBuilder) throws {
        let layout = spec.parameterLayout
        func weights(_ i: Int) throws -> (w: [Float], wShape: [Int], b: [Float]) {
            guard let w = layout.tensor("layers.\(i).weight"), let b = layout.tensor("layers.\(i).bias") else {
                throw CortadoError.model("layer \(i) has no parameters in the layout")
            }
            return (try file.floats(w.name, shape: w.shape), w.shape, try file.floats(b.name, shape: b.shape))
        }

        var x = "input"
        var shape = spec.inputShape // cortado's per-sample shape: (features) or (C, H, W)
        var flat = true // whether x is (batch, features) rather than (batch, C, H, W)
        for (i, layer) in spec.layers.enumerated() {
            let out = "layers.\(i).\(layer.typeName)"
            // Convolutions and pools need (batch, C, H, W); dense layers take (batch, features).
            let spatial: Bool
            switch layer {
            case .conv2d, .maxPool, .avgPool: spatial = true
            default: spatial = false
            }
            if spatial && flat {
                let target = g.initializer("layers.\(i).input_shape", int64s: [-1] + shape.map(Int64.init))
                x = g.node("Reshape", [x, target], "layers.\(i).reshape")
                flat = false
            } else if case .dense = layer, !flat {
                x = g.node("Flatten", [x], "layers.\(i).flatten", [ONNXAttribute.int("axis", 1)])
                flat = true
            }
            switch layer {
            case .dense:
                let p = try weights(i)
                let w = g.initializer("layers.\(i).weight", dims: p.wShape, p.w)
                let b = g.initializer("layers.\(i).bias", dims: [p.b.count], p.b)
                x = g.node("Gemm", [x, w, b], out, [ONNXAttribute.int("transB", 1)])
            case .activation(let a):
                // Every kind names its operator; GELU's tanh form is built from primitives.
                if let op = a.kind.onnx(a.params) {
                    x = g.node(op.op, [x], out, op.attributes.map { ONNXAttribute.float($0.0, $0.1) })
                } else if a.kind.name == GELU.name {
                    x = addGELU(x, out, to: &g)
                } else {
                    throw CortadoError.usage("layers.\(i) (\(a.kind.name)): no ONNX operator for this activation")
                }
            case .dropout: break
            case .layerNorm:
                // Over all of a sample's values, flat or (C, H, W): scale and bias shaped alike.
                let p = try weights(i), dims = flat ? [p.w.count] : shape
                let scale = g.initializer("layers.\(i).weight", dims: dims, p.w)
                let bias = g.initializer("layers.\(i).bias", dims: dims, p.b)
                x = g.node(
                    "LayerNormalization", [x, scale, bias], out,
                    [ONNXAttribute.int("axis", 1), ONNXAttribute.float("epsilon", 1e-5)])
            case let .conv2d(_, k, s, pad):
                let p = try weights(i)
                let w = g.initializer("layers.\(i).weight", dims: p.wShape, p.w)
                let b = g.initializer("layers.\(i).bias", dims: [p.b.count], p.b)
                x = g.node(
                    "Conv", [x, w, b], out,
                    [
                        ONNXAttribute.ints("kernel_shape", [k, k]), ONNXAttribute.ints("strides", [s, s]),
                        ONNXAttribute.ints("pads", [pad, pad, pad, pad])
                    ])
            case let .maxPool(size, stride), let .avgPool(size, stride):
                let op = layer.typeName == "max_pool" ? "MaxPool" : "AveragePool"
                x = g.node(
                    op, [x], out,
                    [ONNXAttribute.ints("kernel_shape", [size, size]), ONNXAttribute.ints("strides", [stride, stride])])
            case .flatten:
                if !flat { x = g.node("Flatten", [x], out, [ONNXAttribute.int("axis", 1)]) }
                flat = true
            }
            if case .success(let next) = layer.outputShape(shape) { shape = next }
        }
        if !flat { x = g.node("Flatten", [x], "logits.flatten", [ONNXAttribute.int("axis", 1)]) }
        g.node("Softmax", [x], "probabilities", [ONNXAttribute.int("axis", 1)])
    }

    /// GELU as cortado computes it (`geluForward`, tanh form):
    /// 0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³))), from opset-17 primitives.
    static func addGELU(_ x: String, _ out: String, to g: inout ONNXGraphBuilder) -> String {
        func constant(_ suffix: String, _ v: Float) -> String {
            let name = "\(out).\(suffix)"
            return g.initializer(name, dims: [], [v])
        }
        let k = constant("k", 0.044715), c = constant("c", 0.7978845608028654)
        let one = constant("one", 1), half = constant("half", 0.5)
        let x2 = g.node("Mul", [x, x], "\(out).x2")
        let x3 = g.node("Mul", [x2, x], "\(out).x3")
        let inner = g.node("Add", [x, g.node("Mul", [x3, k], "\(out).kx3")], "\(out).inner")
        let t = g.node("Tanh", [g.node("Mul", [inner, c], "\(out).scaled")], "\(out).tanh")
        let gate = g.node("Mul", [g.node("Add", [t, one], "\(out).onePlusTanh"), half], "\(out).gate")
        return g.node("Mul", [x, gate], out)
    }
}
