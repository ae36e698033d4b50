import CortadoCore
import Foundation

/// One layer of a model as written in a job spec or a model file header.
public enum LayerSpec: Codable, Equatable, CustomStringConvertible {
    case dense(units: Int)
    case relu

    enum CodingKeys: String, CodingKey { case type, units }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        switch try c.decode(String.self, forKey: .type) {
        case "dense": self = .dense(units: try c.decode(Int.self, forKey: .units))
        case "relu": self = .relu
        case let t: throw CortadoError.model("unknown layer type '\(t)'")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .dense(let units): try c.encode("dense", forKey: .type); try c.encode(units, forKey: .units)
        case .relu: try c.encode("relu", forKey: .type)
        }
    }

    public var description: String {
        switch self {
        case .dense(let u): return "dense(\(u))"
        case .relu: return "relu"
        }
    }
}

/// A model's architecture: input features, the layer list and the loss. Shapes are inferred
/// layer to layer; `validate` names the layer and both sizes when they do not fit.
public struct ModelSpec: Codable, Equatable {
    public var inputShape: [Int]
    public var layers: [LayerSpec]
    public var loss: String   // "softmax_cross_entropy"

    enum CodingKeys: String, CodingKey { case inputShape = "input_shape", layers, loss }

    public init(inputShape: [Int], layers: [LayerSpec], loss: String = "softmax_cross_entropy") {
        self.inputShape = inputShape
        self.layers = layers
        self.loss = loss
    }

    public var inputSize: Int { inputShape.reduce(1, *) }

    /// Output width after each layer.
    public var widths: [Int] {
        var w = inputSize
        return layers.map { l in
            if case .dense(let u) = l { w = u }
            return w
        }
    }

    public var outputSize: Int { widths.last ?? inputSize }

    /// Checks the architecture against the data: positive sizes, a loss we know, and the last
    /// layer's width equal to the number of classes.
    public func validate(classes: Int) throws {
        guard inputSize > 0 else { throw CortadoError.usage("model: input_shape \(inputShape) has no features") }
        guard !layers.isEmpty else { throw CortadoError.usage("model.layers: empty") }
        guard loss == "softmax_cross_entropy" else {
            throw CortadoError.usage("model.loss: '\(loss)' is not supported (supported: softmax_cross_entropy)")
        }
        for (i, l) in layers.enumerated() {
            if case .dense(let u) = l, u <= 0 { throw CortadoError.usage("model.layers.\(i) (dense): units must be positive, got \(u)") }
        }
        guard outputSize == classes else {
            throw CortadoError.usage("model.layers.\(layers.count - 1) (\(layers.last!)): outputs \(outputSize) values but the data has \(classes) classes")
        }
    }

    /// The parameter table: every tensor's name, shape and offset in the flat arena, in layer
    /// order (weights then bias per dense layer). Gradients and optimizer moments share it.
    public var parameterLayout: ParameterLayout {
        var tensors = [TensorSpec]()
        var offset = 0, width = inputSize
        for (i, l) in layers.enumerated() {
            guard case .dense(let units) = l else { continue }
            tensors.append(TensorSpec(name: "layers.\(i).weight", shape: [units, width], offset: offset))
            offset += units * width
            tensors.append(TensorSpec(name: "layers.\(i).bias", shape: [units], offset: offset))
            offset += units
            width = units
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
}

/// The table of named views shared by the parameter, gradient and moment arenas.
public struct ParameterLayout: Codable, Equatable {
    public var tensors: [TensorSpec]
    public var count: Int

    public func tensor(_ name: String) -> TensorSpec? { tensors.first { $0.name == name } }
}
