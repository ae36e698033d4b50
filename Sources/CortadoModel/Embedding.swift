/// Kernels of the recommender's layers, as forward/backward twins over raw row-major buffers
/// (the same conventions as Layers.swift: parameter gradients accumulate, input gradients
/// overwrite).
///
/// Concatenation costs nothing here: each embedding lookup writes its rows straight into its
/// column slice of one (batch, Σ dims) buffer (`outStride` = the concatenated width), and its
/// backward reads its slice of that buffer's gradient. Two-tower scoring is the dot product of
/// two such slices.

/// Embedding forward (a lookup): out[r, 0..<dim] = table[ids[r], 0..<dim].
/// - table: (rows, dim); ids: (batch), each in 0..<rows; out: row r at out + r·outStride.
@inlinable
public func embeddingForward<T: Real>(
    out: UnsafeMutablePointer<T>, outStride: Int, table: UnsafePointer<T>,
    ids: UnsafePointer<Int32>, batch: Int, dim: Int
) {
    for r in 0..<batch { (out + r * outStride).update(from: table + Int(ids[r]) * dim, count: dim) }
}

/// Embedding backward (a scatter-add): dTable[ids[r]] += dOut[r]. Rows not looked up keep
/// their gradient, which is why the trainer can exchange only the touched rows.
@inlinable
public func embeddingBackward<T: Real>(
    dTable: UnsafeMutablePointer<T>, dOut: UnsafePointer<T>, dOutStride: Int,
    ids: UnsafePointer<Int32>, batch: Int, dim: Int
) {
    for r in 0..<batch {
        let d = dTable + Int(ids[r]) * dim, g = dOut + r * dOutStride
        for j in 0..<dim { d[j] += g[j] }
    }
}

/// Dot product of two row sets: out[r] = Σⱼ a[r, j]·b[r, j] (two-tower scoring).
/// - a, b: row r at a + r·stride (slices of one concatenated buffer, or separate ones).
@inlinable
public func dotForward<T: Real>(
    out: UnsafeMutablePointer<T>, a: UnsafePointer<T>, b: UnsafePointer<T>,
    stride: Int, batch: Int, dim: Int
) {
    for r in 0..<batch {
        let x = a + r * stride, y = b + r * stride
        var s: T = 0
        for j in 0..<dim { s += x[j] * y[j] }
        out[r] = s
    }
}

/// Dot backward: dA[r] = dOut[r]·b[r], dB[r] = dOut[r]·a[r] (overwrite, same strides).
@inlinable
public func dotBackward<T: Real>(
    dA: UnsafeMutablePointer<T>, dB: UnsafeMutablePointer<T>, dOut: UnsafePointer<T>,
    a: UnsafePointer<T>, b: UnsafePointer<T>, stride: Int, batch: Int, dim: Int
) {
    for r in 0..<batch {
        let x = a + r * stride, y = b + r * stride, dx = dA + r * stride, dy = dB + r * stride
        let g = dOut[r]
        for j in 0..<dim { dx[j] = g * y[j]; dy[j] = g * x[j] }
    }
}
