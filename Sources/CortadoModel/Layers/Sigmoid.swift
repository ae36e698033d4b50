/// Sigmoid, 1/(1 + e⁻ˣ); backward from the forward output.
public enum Sigmoid: ActivationKind {
    public static let name = "sigmoid"
    public static func forward(
        out: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, count: Int, params: [Double]
    ) {
        sigmoidForward(out: out, input: input, count: count)
    }
    public static func forward(
        out: UnsafeMutablePointer<Double>, input: UnsafePointer<Double>, count: Int, params: [Double]
    ) {
        sigmoidForward(out: out, input: input, count: count)
    }
    public static func backward(
        dInput: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>, input: UnsafePointer<Float>,
        out: UnsafePointer<Float>, count: Int, params: [Double]
    ) {
        sigmoidBackward(dInput: dInput, dOut: dOut, out: out, count: count)
    }
    public static func backward(
        dInput: UnsafeMutablePointer<Double>, dOut: UnsafePointer<Double>, input: UnsafePointer<Double>,
        out: UnsafePointer<Double>, count: Int, params: [Double]
    ) {
        sigmoidBackward(dInput: dInput, dOut: dOut, out: out, count: count)
    }
    public static func onnx(_ params: [Double]) -> (op: String, attributes: [(String, Float)])? { ("Sigmoid", []) }
}
