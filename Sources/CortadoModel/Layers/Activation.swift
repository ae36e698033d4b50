import CortadoCore

/// An elementwise activation layer kind: its name in specs and model files, its numeric keys
/// with defaults, forward/backward for both scalar types, and its ONNX operator. One file per
/// kind under Layers/, listed once in `ActivationRegistry.kinds`; `LayerSpec.activation`,
/// `Network`, the layer parser and the ONNX exporter handle every kind alike.
///
/// Forward and backward are written per concrete type (each a one-line call of an
/// `@inlinable` generic loop) because a kind is a metatype picked at run time: a generic
/// requirement called through it would run unspecialized, about 100× slower (see `Real`).
public protocol ActivationKind {
    /// The `type` value in job specs and model files.
    static var name: String { get }
    /// Numeric keys (`slope`) and their defaults; `Activation.params` holds them in this order.
    static var keys: [(key: String, default: Double)] { get }
    /// Why a value in `params` is invalid (nil: valid), naming its key.
    static func problem(_ params: [Double]) -> String?
    /// out = f(input) over `count` values.
    static func forward(out: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, count: Int, params: [Double])
    static func forward(out: UnsafeMutablePointer<Double>, input: UnsafePointer<Double>, count: Int, params: [Double])
    /// dInput = dOut · f′ over `count` values (overwrites dInput), from the forward input and output.
    static func backward(
        dInput: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>, input: UnsafePointer<Float>,
        out: UnsafePointer<Float>, count: Int, params: [Double])
    static func backward(
        dInput: UnsafeMutablePointer<Double>, dOut: UnsafePointer<Double>, input: UnsafePointer<Double>,
        out: UnsafePointer<Double>, count: Int, params: [Double])
    /// The ONNX operator and its float attributes, or nil when the exporter builds the
    /// function from primitives (GELU's tanh form).
    static func onnx(_ params: [Double]) -> (op: String, attributes: [(String, Float)])?
}

extension ActivationKind {
    public static var keys: [(key: String, default: Double)] { [] }
    public static func problem(_ params: [Double]) -> String? { nil }
}

/// Every elementwise activation a spec can name. Adding one: its file under Layers/ and one
/// entry here.
public enum ActivationRegistry {
    public static let kinds: [any ActivationKind.Type] = [
        ReLU.self,
        GELU.self,
        Sigmoid.self,
        Tanh.self,
        LeakyReLU.self
    ]

    public static func kind(named name: String) -> (any ActivationKind.Type)? { kinds.first { $0.name == name } }
}

/// An activation layer: its kind and its key values (in `kind.keys` order).
public struct Activation: Equatable, CustomStringConvertible {
    public let kind: any ActivationKind.Type
    public let params: [Double]

    /// `params` default to the kind's defaults.
    public init(_ kind: any ActivationKind.Type, params: [Double]? = nil) {
        self.kind = kind
        self.params = params ?? kind.keys.map(\.default)
    }

    public static func == (a: Activation, b: Activation) -> Bool { a.kind.name == b.kind.name && a.params == b.params }

    public var description: String {
        params.isEmpty
            ? kind.name : "\(kind.name)(\(zip(kind.keys, params).map { "\($0.key) \($1)" }.joined(separator: ", ")))"
    }

    /// Elementwise forward in the network's scalar type (Float or Double).
    @inlinable
    public func forward<T: Real>(out: UnsafeMutablePointer<T>, input: UnsafePointer<T>, count: Int) {
        T.activationForward(kind, out: out, input: input, count: count, params: params)
    }

    @inlinable
    public func backward<T: Real>(
        dInput: UnsafeMutablePointer<T>, dOut: UnsafePointer<T>, input: UnsafePointer<T>, out: UnsafePointer<T>,
        count: Int
    ) {
        T.activationBackward(kind, dInput: dInput, dOut: dOut, input: input, out: out, count: count, params: params)
    }
}
