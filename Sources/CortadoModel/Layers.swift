/// Layer kernels as forward/backward twins over raw row-major buffers. Backward functions
/// *accumulate* into parameter gradients (`+=`) and *overwrite* input gradients, as in llm.c.

/// Dense forward: out = input · weightᵀ + bias.
/// - input: (batch, inDim); weight: (outDim, inDim); bias: (outDim); out: (batch, outDim).
@inlinable
public func denseForward<T: Real>(
    out: UnsafeMutablePointer<T>, input: UnsafePointer<T>,
    weight: UnsafePointer<T>, bias: UnsafePointer<T>,
    batch: Int, inDim: Int, outDim: Int
) {
    for r in 0..<batch {
        let row = out + r * outDim
        for o in 0..<outDim { row[o] = bias[o] }
    }
    T.gemm(
        transA: false, transB: true, m: batch, n: outDim, k: inDim, alpha: 1,
        a: input, lda: inDim, b: weight, ldb: inDim, beta: 1, c: out, ldc: outDim)
}

/// Dense backward: dWeight += dOutᵀ · input, dBias += Σ_rows dOut, dInput = dOut · weight.
/// - dOut: (batch, outDim); dWeight: (outDim, inDim); dBias: (outDim);
///   dInput: (batch, inDim) or nil for the first layer (its input needs no gradient).
@inlinable
public func denseBackward<T: Real>(
    dInput: UnsafeMutablePointer<T>?, dWeight: UnsafeMutablePointer<T>,
    dBias: UnsafeMutablePointer<T>, dOut: UnsafePointer<T>,
    input: UnsafePointer<T>, weight: UnsafePointer<T>,
    batch: Int, inDim: Int, outDim: Int
) {
    denseWeightBackward(
        dWeight: dWeight, dOut: dOut, input: input, batch: batch, inDim: inDim, outDim: outDim, rows: 0..<outDim)
    denseBiasBackward(dBias: dBias, dOut: dOut, batch: batch, outDim: outDim)
    if let dInput {
        denseInputBackward(dInput: dInput, dOut: dOut, weight: weight, batch: batch, inDim: inDim, outDim: outDim)
    }
}

/// Rows `rows` of the dense weight gradient: dWeight[rows] += dOut[:, rows]ᵀ · input. Whole
/// rows are independent, so the bucketed exchange can compute them in blocks and send each
/// block while the next is computed.
@inlinable
public func denseWeightBackward<T: Real>(
    dWeight: UnsafeMutablePointer<T>, dOut: UnsafePointer<T>, input: UnsafePointer<T>,
    batch: Int, inDim: Int, outDim: Int, rows: Range<Int>
) {
    T.gemm(
        transA: true, transB: false, m: rows.count, n: inDim, k: batch, alpha: 1,
        a: dOut + rows.lowerBound, lda: outDim, b: input, ldb: inDim, beta: 1, c: dWeight + rows.lowerBound * inDim,
        ldc: inDim)
}

/// dBias += Σ_rows dOut.
@inlinable
public func denseBiasBackward<T: Real>(dBias: UnsafeMutablePointer<T>, dOut: UnsafePointer<T>, batch: Int, outDim: Int)
{
    for r in 0..<batch { T.axpy(n: outDim, alpha: 1, x: dOut + r * outDim, y: dBias) }
}

/// dInput = dOut · weight (overwrites).
@inlinable
public func denseInputBackward<T: Real>(
    dInput: UnsafeMutablePointer<T>, dOut: UnsafePointer<T>, weight: UnsafePointer<T>,
    batch: Int, inDim: Int, outDim: Int
) {
    T.gemm(
        transA: false, transB: false, m: batch, n: inDim, k: outDim, alpha: 1,
        a: dOut, lda: outDim, b: weight, ldb: inDim, beta: 0, c: dInput, ldc: inDim)
}

/// ReLU forward: out = max(input, 0), elementwise over `count` values.
@inlinable
public func reluForward<T: Real>(out: UnsafeMutablePointer<T>, input: UnsafePointer<T>, count: Int) {
    for i in 0..<count { out[i] = input[i] > 0 ? input[i] : 0 }
}

/// ReLU backward: dInput = dOut where the forward output was positive, else 0.
/// Both values are loaded before the test, so the loop compiles to a vector select: with
/// `dOut[i]` read only when positive, it stayed a scalar branch that mispredicts on half the
/// elements (measured: 3 % of the wide MLP's step, more than its optimizer update).
@inlinable
public func reluBackward<T: Real>(
    dInput: UnsafeMutablePointer<T>, dOut: UnsafePointer<T>,
    out: UnsafePointer<T>, count: Int
) {
    for i in 0..<count {
        let d = dOut[i], o = out[i]
        dInput[i] = o > 0 ? d : 0
    }
}
