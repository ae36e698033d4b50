import CortadoCore
import CortadoModel
import Foundation

/// Static int8 activation scales: the fp32 network runs on calibration rows (training data)
/// and each int8 layer's input gets one scale, s = v / 127 where v is the largest |x| it saw
/// (percentile 100, min/max) or that percentile of |x| (larger values clip to ±127·s at run
/// time). Static scales skip the per-row max at inference and give every row the same
/// resolution; min/max is exact for the rows seen, a percentile trades rare outliers for
/// resolution everywhere else (the usual choice for calibrated int8, as TensorRT's).
public enum Calibration {
    /// Scales by layer index for every dense and conv layer, from `rows` rows of `input`.
    public static func inputScales(
        model: ModelSpec, params: UnsafeBufferPointer<Float>, input: UnsafePointer<Float>,
        rows: Int, percentile: Double
    ) -> [Int: Float] {
        precondition(rows > 0 && percentile > 50 && percentile <= 100)
        let net = Network<Float>(spec: model, maxBatch: rows, training: false)
        net.params.load(Array(params))
        net.forward(input, batch: rows)
        var scales = [Int: Float]()
        let widths = [model.inputSize] + model.widths
        for (i, l) in model.layers.enumerated() {
            switch l {
            case .dense, .conv2d: break;
            default: continue
            }
            let x = i == 0 ? input : net.activation(i - 1)
            var mags = (0..<(rows * widths[i])).map { abs(x[$0]) }
            let v: Float
            if percentile >= 100 {
                v = mags.max() ?? 0
            } else {
                mags.sort()
                v = mags[min(mags.count - 1, Int((percentile / 100 * Double(mags.count)).rounded(.down)))]
            }
            scales[i] = v > 0 ? v / 127 : 1
        }
        return scales
    }
}
