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
    public static func evaluate<T: Real>(
        logits: UnsafePointer<T>, labels: UnsafePointer<Int32>,
        batch: Int, classes: Int,
        dLogits: UnsafeMutablePointer<T>?, gradScale: T, smoothing: T = 0
    ) -> (lossSum: Double, correct: Int) {
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

/// Knowledge distillation (Hinton, Vinyals & Dean 2015): the student learns the labels and a
/// teacher's softened class probabilities together. Per row, with student logits z, teacher
/// logits t, temperature T and weight α:
///
///     ℓ = (1 − α)·CE(softmax(z), y) + α·T²·KL(softmax(t/T) ‖ softmax(z/T))
///     ∂ℓ/∂z = (1 − α)(softmax(z) − onehot(y)) + α·T·(softmax(z/T) − softmax(t/T))
///
/// The T² keeps the soft term's gradient on the same scale as the hard one's whatever T is
/// (its gradient carries 1/T from the softened softmax, times T²): that is what lets α mean
/// "share of the gradient", as in PyTorch's and Keras's distillation recipes. With α = 0 this
/// is `SoftmaxCrossEntropy` exactly (the soft term is not computed).
public enum DistillationLoss {
    /// - logits, teacherLogits: (batch, classes); labels: (batch), values in 0..<classes.
    /// - temperature: T > 0; alpha: α in [0, 1], the weight of the soft term.
    /// - dLogits: (batch, classes) or nil; receives ∂ℓ/∂z · `gradScale` (1/batch for the mean).
    /// - smoothing: label smoothing of the hard term (see `SoftmaxCrossEntropy`).
    /// - Returns: the summed total loss, the summed hard-label cross-entropy alone (comparable
    ///   with a run without a teacher), and the rows whose arg-max is the label.
    @inlinable
    public static func evaluate<T: Real>(
        logits: UnsafePointer<T>, teacherLogits: UnsafePointer<T>, labels: UnsafePointer<Int32>,
        batch: Int, classes: Int, temperature: T, alpha: T,
        dLogits: UnsafeMutablePointer<T>?, gradScale: T,
        smoothing: T = 0
    ) -> (lossSum: Double, hardLossSum: Double, correct: Int) {
        // The hard term writes (1 − α)(p − onehot)·scale; the soft term adds to it.
        let hard = SoftmaxCrossEntropy.evaluate(
            logits: logits, labels: labels, batch: batch, classes: classes,
            dLogits: dLogits, gradScale: (1 - alpha) * gradScale, smoothing: smoothing)
        guard alpha > 0 else { return (hard.lossSum, hard.lossSum, hard.correct) }
        let invT = 1 / temperature, softScale = alpha * temperature * gradScale
        var klSum = 0.0
        for r in 0..<batch {
            let z = logits + r * classes, t = teacherLogits + r * classes
            var zMax = z[0], tMax = t[0]
            for c in 1..<classes {
                if z[c] > zMax { zMax = z[c] }
                if t[c] > tMax { tMax = t[c] }
            }
            var zSum: T = 0, tSum: T = 0
            for c in 0..<classes { zSum += T.exp((z[c] - zMax) * invT); tSum += T.exp((t[c] - tMax) * invT) }
            let zLogSum = T.log(zSum), tLogSum = T.log(tSum)
            // KL(q ‖ p) = Σ q_c (log q_c − log p_c), both logs from the shifted logits, so an
            // underflowing q_c contributes 0 rather than 0 · (−∞).
            var kl: T = 0
            for c in 0..<classes {
                let logQ = (t[c] - tMax) * invT - tLogSum, logP = (z[c] - zMax) * invT - zLogSum
                let q = T.exp(logQ)
                kl += q * (logQ - logP)
                if let dLogits { dLogits[r * classes + c] += softScale * (T.exp(logP) - q) }
            }
            klSum += Double(kl)
        }
        let a = Double(alpha), t2 = Double(temperature) * Double(temperature)
        return ((1 - a) * hard.lossSum + a * t2 * klSum, hard.lossSum, hard.correct)
    }
}

/// Binary cross-entropy on logits, fused with its gradient: ℓ = softplus(z) − y·z, computed as
/// max(z, 0) − y·z + log(1 + e^−|z|) so it never overflows; dℓ/dz = σ(z) − y.
public enum BinaryCrossEntropy {
    /// - logits, targets: (batch), targets in [0, 1]; dLogits: (batch) or nil, scaled by `gradScale`.
    /// - Returns: the summed loss and the rows whose sign of z matches y ≥ 0.5.
    @inlinable
    public static func evaluate<T: Real>(
        logits: UnsafePointer<T>, targets: UnsafePointer<T>, batch: Int,
        dLogits: UnsafeMutablePointer<T>?, gradScale: T
    ) -> (lossSum: Double, correct: Int) {
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
    public static func evaluate<T: Real>(
        predictions: UnsafePointer<T>, targets: UnsafePointer<T>, batch: Int,
        dPredictions: UnsafeMutablePointer<T>?, gradScale: T
    ) -> (lossSum: Double, correct: Int) {
        var lossSum = 0.0
        for r in 0..<batch {
            let e = predictions[r] - targets[r]
            lossSum += Double(e * e)
            if let dPredictions { dPredictions[r] = 2 * e * gradScale }
        }
        return (lossSum, 0)
    }
}
