/// Softmax cross-entropy over integer class labels, fused with its gradient.
///
/// Forward and backward in one pass: the softmax is needed by both, and fusing avoids a second
/// buffer. Losses are summed in `Double` so a 10 000-row evaluation does not lose precision.
public enum SoftmaxCrossEntropy {
    /// - logits: (batch, classes); labels: (batch), values in 0..<classes.
    /// - dLogits: (batch, classes) or nil; receives (softmax − onehot) · `gradScale`
    ///   (1/batch for the mean loss).
    /// - smoothing: label smoothing ε — the target is (1 − ε)·onehot + ε/classes.
    /// - Returns: the summed loss over the batch and the number of rows whose arg-max is the label.
    @inlinable
    public static func evaluate<T: Real>(logits: UnsafePointer<T>, labels: UnsafePointer<Int32>,
                                         batch: Int, classes: Int,
                                         dLogits: UnsafeMutablePointer<T>?, gradScale: T, smoothing: T = 0) -> (lossSum: Double, correct: Int) {
        let offTarget = smoothing / T(classes), onTarget = 1 - smoothing + offTarget
        var lossSum = 0.0
        var correct = 0
        for r in 0..<batch {
            let z = logits + r * classes
            var maxV = z[0], arg = 0
            for c in 1..<classes where z[c] > maxV { maxV = z[c]; arg = c }
            var sum: T = 0
            for c in 0..<classes { sum += T.exp(z[c] - maxV) }
            let y = Int(labels[r])
            if smoothing == 0 {
                lossSum += Double(T.log(sum) - (z[y] - maxV))
            } else {
                // −Σ q_c log p_c with Σ q_c = 1: log Σ exp − Σ q_c (z_c − max)
                var expected: T = 0
                for c in 0..<classes { expected += (c == y ? onTarget : offTarget) * (z[c] - maxV) }
                lossSum += Double(T.log(sum) - expected)
            }
            if arg == y { correct += 1 }
            if let dLogits {
                let d = dLogits + r * classes
                let inv = 1 / sum
                for c in 0..<classes { d[c] = (T.exp(z[c] - maxV) * inv - (c == y ? onTarget : offTarget)) * gradScale }
            }
        }
        return (lossSum, correct)
    }
}

/// Binary cross-entropy on logits, fused with its gradient: ℓ = softplus(z) − y·z, computed as
/// max(z, 0) − y·z + log(1 + e^−|z|) so it never overflows; dℓ/dz = σ(z) − y.
public enum BinaryCrossEntropy {
    /// - logits, targets: (batch), targets in [0, 1]; dLogits: (batch) or nil, scaled by `gradScale`.
    /// - Returns: the summed loss and the rows whose sign of z matches y ≥ 0.5.
    @inlinable
    public static func evaluate<T: Real>(logits: UnsafePointer<T>, targets: UnsafePointer<T>, batch: Int,
                                         dLogits: UnsafeMutablePointer<T>?, gradScale: T) -> (lossSum: Double, correct: Int) {
        var lossSum = 0.0, correct = 0
        for r in 0..<batch {
            let z = logits[r], y = targets[r]
            let a = z < 0 ? -z : z
            lossSum += Double((z > 0 ? z : 0) - y * z + T.log(1 + T.exp(-a)))
            if (z > 0) == (y >= 0.5) { correct += 1 }
            if let dLogits {
                let s = z >= 0 ? 1 / (1 + T.exp(-z)) : T.exp(z) / (1 + T.exp(z))
                dLogits[r] = (s - y) * gradScale
            }
        }
        return (lossSum, correct)
    }
}

/// Squared error, fused with its gradient: ℓ = (p − y)², dℓ/dp = 2(p − y). The mean over rows
/// is the MSE; its square root over a split is the RMSE that recommenders report.
public enum MeanSquaredError {
    /// - predictions, targets: (batch); dPredictions: (batch) or nil, scaled by `gradScale`.
    /// - Returns: the summed squared error (and 0 as "correct": regression has no accuracy).
    @inlinable
    public static func evaluate<T: Real>(predictions: UnsafePointer<T>, targets: UnsafePointer<T>, batch: Int,
                                         dPredictions: UnsafeMutablePointer<T>?, gradScale: T) -> (lossSum: Double, correct: Int) {
        var lossSum = 0.0
        for r in 0..<batch {
            let e = predictions[r] - targets[r]
            lossSum += Double(e * e)
            if let dPredictions { dPredictions[r] = 2 * e * gradScale }
        }
        return (lossSum, 0)
    }
}
