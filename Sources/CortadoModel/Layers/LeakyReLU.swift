/// Leaky ReLU, max(x, slope·x) for 0 ≤ slope < 1 (PyTorch's negative_slope, default 0.01);
/// backward from the forward input. ONNX: LeakyRelu (alpha = slope).
public enum LeakyReLU: ActivationKind {
    public static let name = "leaky_relu"
    public static let keys: [(key: String, default: Double)] = [("slope", 0.01)]

    public static func problem(_ params: [Double]) -> String? {
        params[0] >= 0 && params[0] < 1 ? nil : "must be in [0, 1), got \(params[0])"
    }

    @inlinable
    static func forward<T: Real>(_ out: UnsafeMutablePointer<T>, _ input: UnsafePointer<T>, _ count: Int, slope: T) {
        for i in 0..<count { out[i] = max(input[i], slope * input[i]) }
    }

    /// dInput = dOut where the input was positive, else slope·dOut (both loaded first, so the
    /// loop is a vector select, as ReLU's).
    @inlinable
    static func backward<T: Real>(
        _ dInput: UnsafeMutablePointer<T>, _ dOut: UnsafePointer<T>, _ input: UnsafePointer<T>, _ count: Int,
        slope: T
    ) {
        for i in 0..<count {
            let d = dOut[i], x = input[i]
            dInput[i] = x > 0 ? d : slope * d
        }
    }

    public static func forward(
        out: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, count: Int, params: [Double]
    ) {
        forward(out, input, count, slope: Float(params[0]))
    }
    public static func forward(
        out: UnsafeMutablePointer<Double>, input: UnsafePointer<Double>, count: Int, params: [Double]
    ) {
        forward(out, input, count, slope: params[0])
    }
    public static func backward(
        dInput: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>, input: UnsafePointer<Float>,
        out: UnsafePointer<Float>, count: Int, params: [Double]
    ) {
        backward(dInput, dOut, input, count, slope: Float(params[0]))
    }
    public static func backward(
        dInput: UnsafeMutablePointer<Double>, dOut: UnsafePointer<Double>, input: UnsafePointer<Double>,
        out: UnsafePointer<Double>, count: Int, params: [Double]
    ) {
        backward(dInput, dOut, input, count, slope: params[0])
    }
    public static func onnx(_ params: [Double]) -> (op: String, attributes: [(String, Float)])? {
        ("LeakyRelu", [("alpha", Float(params[0]))])
    }
}
