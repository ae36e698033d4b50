import CortadoCore

/// Elementwise activations, forward/backward twins over `count` values. Backward functions
/// overwrite dInput; those that can, work from the forward *output* (`out`).

@inlinable
public func sigmoidForward<T: Real>(out: UnsafeMutablePointer<T>, input: UnsafePointer<T>, count: Int) {
    for i in 0..<count { out[i] = 1 / (1 + T.exp(-input[i])) }
}

@inlinable
public func sigmoidBackward<T: Real>(
    dInput: UnsafeMutablePointer<T>, dOut: UnsafePointer<T>, out: UnsafePointer<T>, count: Int
) {
    for i in 0..<count { dInput[i] = dOut[i] * out[i] * (1 - out[i]) }
}

@inlinable
public func tanhForward<T: Real>(out: UnsafeMutablePointer<T>, input: UnsafePointer<T>, count: Int) {
    for i in 0..<count { out[i] = T.tanh(input[i]) }
}

@inlinable
public func tanhBackward<T: Real>(
    dInput: UnsafeMutablePointer<T>, dOut: UnsafePointer<T>, out: UnsafePointer<T>, count: Int
) {
    for i in 0..<count { dInput[i] = dOut[i] * (1 - out[i] * out[i]) }
}

/// GELU, tanh approximation (as GPT-2 and llm.c): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
@inlinable
public func geluForward<T: Real>(out: UnsafeMutablePointer<T>, input: UnsafePointer<T>, count: Int) {
    let c = T(0.7978845608028654), k = T(0.044715)
    for i in 0..<count {
        let x = input[i]
        out[i] = x / 2 * (1 + T.tanh(c * (x + k * x * x * x)))
    }
}

/// GELU backward needs the forward *input*.
@inlinable
public func geluBackward<T: Real>(
    dInput: UnsafeMutablePointer<T>, dOut: UnsafePointer<T>, input: UnsafePointer<T>, count: Int
) {
    let c = T(0.7978845608028654), k = T(0.044715)
    for i in 0..<count {
        let x = input[i]
        let t = T.tanh(c * (x + k * x * x * x))
        let dt = (1 - t * t) * c * (1 + 3 * k * x * x)
        dInput[i] = dOut[i] * ((1 + t) / 2 + x / 2 * dt)
    }
}

/// Dropout: keeps each value with probability 1 − rate and scales kept ones by 1/(1 − rate)
/// (inverted dropout, so evaluation is the identity). The mask (0 or the scale) is drawn from
/// `rng` — seeded per rank and step by the trainer, so runs are reproducible — and kept for
/// backward.
@inlinable
public func dropoutForward<T: Real>(
    out: UnsafeMutablePointer<T>, mask: UnsafeMutablePointer<T>, input: UnsafePointer<T>,
    count: Int, rate: Double, rng: inout SeededRNG
) {
    let scale = T(1 / (1 - rate))
    for i in 0..<count {
        mask[i] = rng.uniform() < rate ? 0 : scale
        out[i] = input[i] * mask[i]
    }
}

@inlinable
public func dropoutBackward<T: Real>(
    dInput: UnsafeMutablePointer<T>, dOut: UnsafePointer<T>, mask: UnsafePointer<T>, count: Int
) {
    for i in 0..<count { dInput[i] = dOut[i] * mask[i] }
}

/// Layer norm over each row of `d` values: y = γ·(x − mean)/√(var + ε) + β. Saves mean and
/// 1/std per row for backward.
/// - input, out: (batch, d); gamma, beta: (d); stats: (batch, 2) = (mean, rstd).
@inlinable
public func layerNormForward<T: Real>(
    out: UnsafeMutablePointer<T>, stats: UnsafeMutablePointer<T>, input: UnsafePointer<T>,
    gamma: UnsafePointer<T>, beta: UnsafePointer<T>, batch: Int, d: Int
) {
    let eps = T(1e-5)
    for r in 0..<batch {
        let x = input + r * d, y = out + r * d
        var mean: T = 0
        for i in 0..<d { mean += x[i] }
        mean /= T(d)
        var v: T = 0
        for i in 0..<d { v += (x[i] - mean) * (x[i] - mean) }
        let rstd = 1 / (v / T(d) + eps).squareRoot()
        for i in 0..<d { y[i] = (x[i] - mean) * rstd * gamma[i] + beta[i] }
        stats[2 * r] = mean
        stats[2 * r + 1] = rstd
    }
}

/// Layer norm backward: dγ += Σ dy·x̂, dβ += Σ dy (accumulated), dx overwritten.
@inlinable
public func layerNormBackward<T: Real>(
    dInput: UnsafeMutablePointer<T>?, dGamma: UnsafeMutablePointer<T>, dBeta: UnsafeMutablePointer<T>,
    dOut: UnsafePointer<T>, input: UnsafePointer<T>, stats: UnsafePointer<T>,
    gamma: UnsafePointer<T>, batch: Int, d: Int
) {
    for r in 0..<batch {
        let x = input + r * d, dy = dOut + r * d
        let mean = stats[2 * r], rstd = stats[2 * r + 1]
        var meanDxhat: T = 0, meanDxhatXhat: T = 0
        for i in 0..<d {
            let xhat = (x[i] - mean) * rstd
            dGamma[i] += dy[i] * xhat
            dBeta[i] += dy[i]
            let dxhat = dy[i] * gamma[i]
            meanDxhat += dxhat
            meanDxhatXhat += dxhat * xhat
        }
        guard let dInput else { continue }
        meanDxhat /= T(d)
        meanDxhatXhat /= T(d)
        let dx = dInput + r * d
        for i in 0..<d {
            let xhat = (x[i] - mean) * rstd
            dx[i] = rstd * (dy[i] * gamma[i] - meanDxhat - xhat * meanDxhatXhat)
        }
    }
}
