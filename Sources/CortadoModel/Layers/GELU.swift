/// GELU, tanh approximation (`geluForward`); backward from the forward input. ONNX: built
/// from primitives by the exporter (opset 17 has no tanh-form Gelu).
public enum GELU: ActivationKind {
    public static let name = "gelu"
    public static func forward(
        out: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, count: Int, params: [Double]
    ) {
        geluForward(out: out, input: input, count: count)
    }
    public static func forward(
        out: UnsafeMutablePointer<Double>, input: UnsafePointer<Double>, count: Int, params: [Double]
    ) {
        geluForward(out: out, input: input, count: count)
    }
    public static func backward(
        dInput: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>, input: UnsafePointer<Float>,
        out: UnsafePointer<Float>, count: Int, params: [Double]
    ) {
        geluBackward(dInput: dInput, dOut: dOut, input: input, count: count)
    }
    public static func backward(
        dInput: UnsafeMutablePointer<Double>, dOut: UnsafePointer<Double>, input: UnsafePointer<Double>,
        out: UnsafePointer<Double>, count: Int, params: [Double]
    ) {
        geluBackward(dInput: dInput, dOut: dOut, input: input, count: count)
    }
    public static func onnx(_ params: [Double]) -> (op: String, attributes: [(String, Float)])? { nil }
}
