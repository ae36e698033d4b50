import CortadoCore
import Foundation

/// One layer of a model as written in a job spec or a model file header.
public enum LayerSpec: Codable, Equatable, CustomStringConvertible {
    case dense(units: Int)
    /// An elementwise activation (relu, gelu, sigmoid, tanh, …: `ActivationRegistry`).
    case activation(Activation)
    /// Zeroes each value with probability `rate` in training (scaled by 1/(1−rate)); identity
    /// in evaluation.
    case dropout(rate: Double)
    /// Normalizes each sample over all its features, then a learned scale and shift.
    case layerNorm
    /// (C, H, W) → (filters, H', W'), H' = (H + 2·padding − kernel) / stride + 1.
    case conv2d(filters: Int, kernel: Int, stride: Int, padding: Int)
    case maxPool(size: Int, stride: Int)
    case avgPool(size: Int, stride: Int)
    case flatten

    public static let relu = LayerSpec.activation(Activation(ReLU.self))
    public static let gelu = LayerSpec.activation(Activation(GELU.self))
    public static let sigmoid = LayerSpec.activation(Activation(Sigmoid.self))
    public static let tanh = LayerSpec.activation(Activation(Tanh.self))

    /// The names job specs and model files use.
    public static var typeNames: [String] {
        ["dense"] + ActivationRegistry.kinds.map { $0.name } + [
            "dropout", "layer_norm", "conv2d", "max_pool", "avg_pool", "flatten"
        ]
    }

    /// The one layer parser, for job specs (`ConfigReader`, strict) and model files (JSON):
    /// errors name `fields.path`'s key (`model.layers.2.slope: …`).
    public static func parse(_ l: some LayerFields) throws -> LayerSpec {
        let type = try l.required("type", l.string)
        switch type {
        case "dense": return .dense(units: try l.required("units", l.int))
        case "dropout": return .dropout(rate: try l.required("rate", l.double))
        case "layer_norm": return .layerNorm
        case "flatten": return .flatten
        case "conv2d":
            return .conv2d(
                filters: try l.required("filters", l.int), kernel: try l.required("kernel", l.int),
                stride: try l.int("stride") ?? 1, padding: try l.int("padding") ?? 0)
        case "max_pool", "avg_pool":
            let size = try l.required("size", l.int)
            let stride = try l.int("stride") ?? size
            return type == "max_pool" ? .maxPool(size: size, stride: stride) : .avgPool(size: size, stride: stride)
        default:
            guard let kind = ActivationRegistry.kind(named: type) else {
                throw CortadoError.usage(
                    "\(l.keyPath("type")): unknown layer '\(type)' (known: \(typeNames.joined(separator: ", ")))")
            }
            let params = try kind.keys.map { try l.double($0.key) ?? $0.default }
            if let why = kind.problem(params) {
                throw CortadoError.usage("\(l.keyPath(kind.keys.first?.key ?? "type")): \(why)")
            }
            return .activation(Activation(kind, params: params))
        }
    }

    public init(from decoder: Decoder) throws {
        self = try Self.parse(
            DecodedLayerFields(
                container: try decoder.container(keyedBy: AnyCodingKey.self),
                path: decoder.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")))
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: AnyCodingKey.self)
        func put<V: Encodable>(_ k: String, _ v: V) throws { try c.encode(v, forKey: AnyCodingKey(k)) }
        try put("type", typeName)
        switch self {
        case .dense(let units): try put("units", units)
        case .dropout(let rate): try put("rate", rate)
        case let .conv2d(f, k, s, p):
            try put("filters", f); try put("kernel", k); try put("stride", s); try put("padding", p)
        case let .maxPool(size, stride), let .avgPool(size, stride): try put("size", size); try put("stride", stride)
        case .activation(let a): for (k, v) in zip(a.kind.keys, a.params) { try put(k.key, v) }
        case .layerNorm, .flatten: break
        }
    }

    public var typeName: String {
        switch self {
        case .dense: return "dense"
        case .activation(let a): return a.kind.name
        case .dropout: return "dropout"
        case .layerNorm: return "layer_norm"
        case .conv2d: return "conv2d"
        case .maxPool: return "max_pool"
        case .avgPool: return "avg_pool"
        case .flatten: return "flatten"
        }
    }

    public var description: String {
        switch self {
        case .dense(let u): return "dense(\(u))"
        case .dropout(let r): return "dropout(\(r))"
        case let .conv2d(f, k, s, p): return "conv2d(\(f), \(k)x\(k), stride \(s), pad \(p))"
        case let .maxPool(size, stride): return "max_pool(\(size), stride \(stride))"
        case let .avgPool(size, stride): return "avg_pool(\(size), stride \(stride))"
        case .activation(let a): return a.description
        default: return typeName
        }
    }

    static func bad(_ why: String) -> Result<[Int], ShapeProblem> { .failure(ShapeProblem(why: why)) }

    /// The output shape for an input shape, or a message saying why the layer cannot take it.
    public func outputShape(_ input: [Int]) -> Result<[Int], ShapeProblem> {
        let count = input.reduce(1, *)
        switch self {
        case .dense(let u): return u > 0 ? .success([u]) : Self.bad("units must be positive, got \(u)")
        case .activation, .layerNorm: return .success(input)
        case .dropout(let r): return r >= 0 && r < 1 ? .success(input) : Self.bad("rate must be in [0, 1), got \(r)")
        case .flatten: return .success([count])
        case let .conv2d(f, k, s, p):
            guard input.count == 3 else { return Self.bad("needs a (channels, height, width) input, got \(input)") }
            guard f > 0, k > 0, s > 0, p >= 0 else {
                return Self.bad("filters, kernel and stride must be positive and padding non-negative")
            }
            let h = (input[1] + 2 * p - k) / s + 1, w = (input[2] + 2 * p - k) / s + 1
            guard input[1] + 2 * p >= k, input[2] + 2 * p >= k, h > 0, w > 0 else {
                return Self.bad("kernel \(k) does not fit input \(input) with padding \(p)")
            }
            return .success([f, h, w])
        case let .maxPool(size, stride), let .avgPool(size, stride):
            guard input.count == 3 else { return Self.bad("needs a (channels, height, width) input, got \(input)") }
            guard size > 0, stride > 0, input[1] >= size, input[2] >= size else {
                return Self.bad("window \(size) does not fit input \(input)")
            }
            return .success([input[0], (input[1] - size) / stride + 1, (input[2] - size) / stride + 1])
        }
    }
}

/// Why a layer cannot take an input shape.
public struct ShapeProblem: Error, Equatable { public let why: String }

/// A model's architecture: input features, the layer list and the loss. Shapes are inferred
/// layer to layer; `validate` names the layer and both sizes when they do not fit.
public struct ModelSpec: Codable, Equatable {
    public var inputShape: [Int]
    public var layers: [LayerSpec]
    public var loss: String // "softmax_cross_entropy"

    enum CodingKeys: String, CodingKey { case inputShape = "input_shape", layers, loss }

    public init(inputShape: [Int], layers: [LayerSpec], loss: String = "softmax_cross_entropy") {
        self.inputShape = inputShape
        self.layers = layers
        self.loss = loss
    }

    public var inputSize: Int { inputShape.reduce(1, *) }

    /// Output shape after each layer (valid specs only; `validate` reports problems).
    public var shapes: [[Int]] {
        var shape = inputShape
        return layers.map { l in
            if case .success(let out) = l.outputShape(shape) { shape = out }
            return shape
        }
    }

    /// Output width (values per sample) after each layer.
    public var widths: [Int] { shapes.map { $0.reduce(1, *) } }

    public var outputSize: Int { widths.last ?? inputSize }

    /// Checks the architecture against the data: every layer fits its input shape (naming the
    /// layer and both shapes when not), a known loss, and as many outputs as classes.
    public func validate(classes: Int) throws {
        guard inputSize > 0 else { throw CortadoError.usage("model: input_shape \(inputShape) has no features") }
        guard !layers.isEmpty else { throw CortadoError.usage("model.layers: empty") }
        guard loss == "softmax_cross_entropy" else {
            throw CortadoError.usage("model.loss: '\(loss)' is not supported (supported: softmax_cross_entropy)")
        }
        var shape = inputShape
        for (i, l) in layers.enumerated() {
            switch l.outputShape(shape) {
            case .success(let out): shape = out
            case .failure(let problem):
                throw CortadoError.usage("model.layers.\(i) (\(l)): input shape \(shape): \(problem.why)")
            }
        }
        guard outputSize == classes else {
            throw CortadoError.usage(
                "model.layers.\(layers.count - 1) (\(layers.last!)): output shape \(shape) has \(outputSize) values but the data has \(classes) classes"
            )
        }
    }

    /// The parameter table: every tensor's name, shape and offset in the flat arena, in layer
    /// order (weight then bias). Gradients and optimizer moments share it.
    public var parameterLayout: ParameterLayout {
        var tensors = [TensorSpec]()
        var offset = 0
        var shape = inputShape
        for (i, l) in layers.enumerated() {
            let inCount = shape.reduce(1, *)
            let weight: [Int]?, bias: Int
            switch l {
            case .dense(let u): (weight, bias) = ([u, inCount], u)
            case let .conv2d(f, k, _, _): (weight, bias) = ([f, shape.first ?? 1, k, k], f)
            case .layerNorm: (weight, bias) = ([inCount], inCount)
            default: (weight, bias) = (nil, 0)
            }
            if let weight {
                tensors.append(TensorSpec(name: "layers.\(i).weight", shape: weight, offset: offset))
                offset += weight.reduce(1, *)
                tensors.append(TensorSpec(name: "layers.\(i).bias", shape: [bias], offset: offset))
                offset += bias
            }
            if case .success(let out) = l.outputShape(shape) { shape = out }
        }
        return ParameterLayout(tensors: tensors, count: offset)
    }
}

/// A named view into a flat arena: (name, shape, offset).
public struct TensorSpec: Codable, Equatable {
    public var name: String
    public var shape: [Int]
    public var offset: Int
    public var count: Int { shape.reduce(1, *) }

    public init(name: String, shape: [Int], offset: Int) {
        self.name = name
        self.shape = shape
        self.offset = offset
    }
}

/// The table of named views shared by the parameter, gradient and moment arenas.
public struct ParameterLayout: Codable, Equatable {
    public var tensors: [TensorSpec]
    public var count: Int

    public init(tensors: [TensorSpec], count: Int) {
        self.tensors = tensors
        self.count = count
    }

    public func tensor(_ name: String) -> TensorSpec? { tensors.first { $0.name == name } }

    /// Whether every tensor's shape has a sane product and its view lies inside the arena —
    /// checked on layouts read from files before any view is taken.
    public var isValid: Bool {
        count >= 0
            && tensors.allSatisfy { t in
                guard let n = checkedProduct(t.shape), t.offset >= 0 else { return false }
                return t.offset <= count && n <= count - t.offset
            }
    }
}

/// Where a layer's keys come from: a job spec mapping (`ConfigReader`: strict, the caller
/// calls `finish()`) or a model file's JSON header (`DecodedLayerFields`).
public protocol LayerFields {
    func string(_ k: String) throws -> String?
    func int(_ k: String) throws -> Int?
    func double(_ k: String) throws -> Double?
    /// The full key path of `k`, for errors.
    func keyPath(_ k: String) -> String
}

extension LayerFields {
    func required<V>(_ k: String, _ get: (String) throws -> V?) throws -> V {
        guard let v = try get(k) else { throw CortadoError.usage("\(keyPath(k)): required") }
        return v
    }
}

extension ConfigReader: LayerFields {
    public func keyPath(_ k: String) -> String { path.isEmpty ? k : path + "." + k }
}

/// Any JSON key.
struct AnyCodingKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ s: String) { stringValue = s }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

/// A model file's layer object (`{"type": "dense", "units": 10}`).
struct DecodedLayerFields: LayerFields {
    let container: KeyedDecodingContainer<AnyCodingKey>
    let path: String
    func string(_ k: String) throws -> String? { try container.decodeIfPresent(String.self, forKey: AnyCodingKey(k)) }
    func int(_ k: String) throws -> Int? { try container.decodeIfPresent(Int.self, forKey: AnyCodingKey(k)) }
    func double(_ k: String) throws -> Double? { try container.decodeIfPresent(Double.self, forKey: AnyCodingKey(k)) }
    func keyPath(_ k: String) -> String { path.isEmpty ? k : path + "." + k }
}
