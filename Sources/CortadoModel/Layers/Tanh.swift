/// tanh(x); backward from the forward output.
public enum Tanh: ActivationKind {
    public static let name = "tanh"
    public static func forward(
        out: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, count: Int, params: [Double]
    ) {
        tanhForward(out: out, input: input, count: count)
    }
    public static func forward(
        out: UnsafeMutablePointer<Double>, input: UnsafePointer<Double>, count: Int, params: [Double]
    ) {
        tanhForward(out: out, input: input, count: count)
    }
    public static func backward(
        dInput: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>, input: UnsafePointer<Float>,
        out: UnsafePointer<Float>, count: Int, params: [Double]
    ) {
        tanhBackward(dInput: dInput, dOut: dOut, out: out, count: count)
    }
    public static func backward(
        dInput: UnsafeMutablePointer<Double>, dOut: UnsafePointer<Double>, input: UnsafePointer<Double>,
        out: UnsafePointer<Double>, count: Int, params: [Double]
    ) {
        tanhBackward(dInput: dInput, dOut: dOut, out: out, count: count)
    }
    public static func onnx(_ params: [Double]) -> (op: String, attributes: [(String, Float)])? { ("Tanh", []) }
}
