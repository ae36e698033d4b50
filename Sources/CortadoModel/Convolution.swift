/// 2-D convolution lowered to GEMM (im2col, as Caffe), and pooling. Tensors are row-major
/// (batch, channels, height, width).

/// The geometry of one conv2d layer.
public struct ConvShape {
    public let c: Int, h: Int, w: Int // input channels, height, width
    public let f: Int, k: Int, s: Int, p: Int // filters, kernel, stride, padding
    public let oh: Int, ow: Int // output height, width
    @inlinable public var patch: Int { c * k * k } // rows of the column matrix
    @inlinable public var positions: Int { oh * ow } // columns of the column matrix
    @inlinable public var inCount: Int { c * h * w }
    @inlinable public var outCount: Int { f * oh * ow }

    public init(c: Int, h: Int, w: Int, f: Int, k: Int, s: Int, p: Int) {
        self.c = c; self.h = h; self.w = w; self.f = f; self.k = k; self.s = s; self.p = p
        oh = (h + 2 * p - k) / s + 1
        ow = (w + 2 * p - k) / s + 1
    }
}

/// cols (patch, positions) ← one sample's input (c, h, w); zero outside the padded border.
/// Rows are `ld` apart (default positions): a chunk of samples' column matrices side by side.
/// Each (channel, kernel offset) row is filled per output line: the output columns whose input
/// column falls inside the image ([lo, hi), computed once per kernel column) are copied — one
/// contiguous block at stride 1 — and only the border is zeroed, instead of a bounds test per
/// element (that test made im2col a third of the CNN's inference time).
@inlinable
public func im2col<T: Real>(_ x: UnsafePointer<T>, _ g: ConvShape, cols: UnsafeMutablePointer<T>, ld: Int? = nil) {
    let ld = ld ?? g.positions
    var row = 0
    for ci in 0..<g.c {
        for ki in 0..<g.k {
            for kj in 0..<g.k {
                let out = cols + row * ld
                // ix = ox·s − p + kj ∈ [0, w)  ⇔  ox ∈ [lo, hi).
                let lo = min(g.ow, g.p > kj ? (g.p - kj + g.s - 1) / g.s : 0)
                let last = g.w - 1 + g.p - kj
                let hi = max(lo, last < 0 ? 0 : min(g.ow, last / g.s + 1))
                for oy in 0..<g.oh {
                    let iy = oy * g.s - g.p + ki
                    let o = out + oy * g.ow
                    guard iy >= 0 && iy < g.h else {
                        o.update(repeating: 0, count: g.ow)
                        continue
                    }
                    let src = x + (ci * g.h + iy) * g.w
                    if lo > 0 { o.update(repeating: 0, count: lo) }
                    if g.s == 1 {
                        if hi > lo { (o + lo).update(from: src + (lo - g.p + kj), count: hi - lo) }
                    } else {
                        for ox in lo..<hi { o[ox] = src[ox * g.s - g.p + kj] }
                    }
                    if hi < g.ow { (o + hi).update(repeating: 0, count: g.ow - hi) }
                }
                row += 1
            }
        }
    }
}

/// rows (positions, patch) ← one sample's input: im2col transposed, so each output position's
/// receptive field is contiguous (the int8 path quantizes and multiplies it row by row).
@inlinable
public func im2row<T: Real>(_ x: UnsafePointer<T>, _ g: ConvShape, rows: UnsafeMutablePointer<T>) {
    for oy in 0..<g.oh {
        for ox in 0..<g.ow {
            var out = rows + (oy * g.ow + ox) * g.patch
            for ci in 0..<g.c {
                for ki in 0..<g.k {
                    let iy = oy * g.s - g.p + ki
                    for kj in 0..<g.k {
                        let ix = ox * g.s - g.p + kj
                        out.pointee = iy >= 0 && iy < g.h && ix >= 0 && ix < g.w ? x[(ci * g.h + iy) * g.w + ix] : 0
                        out += 1
                    }
                }
            }
        }
    }
}

/// dx (c, h, w) += scatter of dCols (patch, positions): im2col's adjoint.
@inlinable
public func col2im<T: Real>(_ dCols: UnsafePointer<T>, _ g: ConvShape, dx: UnsafeMutablePointer<T>) {
    var row = 0
    for ci in 0..<g.c {
        for ki in 0..<g.k {
            for kj in 0..<g.k {
                let src = dCols + row * g.positions
                for oy in 0..<g.oh {
                    let iy = oy * g.s - g.p + ki
                    guard iy >= 0 && iy < g.h else { continue }
                    for ox in 0..<g.ow {
                        let ix = ox * g.s - g.p + kj
                        if ix >= 0 && ix < g.w { dx[(ci * g.h + iy) * g.w + ix] += src[oy * g.ow + ox] }
                    }
                }
                row += 1
            }
        }
    }
}

/// Samples per inference conv GEMM: as many as keep a chunk's column matrices and products
/// (patch + f values per output position) within about 1 MiB, an L2 cache; at least one.
@inlinable
public func convChunk<T: Real>(_ g: ConvShape, batch: Int, of _: T.Type) -> Int {
    max(1, min(batch, (1 << 20) / max(1, MemoryLayout<T>.stride * g.positions * (g.patch + g.f))))
}

/// Conv forward: out[n] (f, positions) = weight (f, patch) · cols[n] + bias. Keeps every
/// sample's column matrix in `cols` (batch, patch, positions) for backward, or, when not
/// `keepColumns` (inference), runs chunks of `convChunk` samples: their column matrices side
/// by side in `cols` (patch, chunk · positions), one GEMM for the chunk into the products
/// (f, chunk · positions) after them in `cols`, then each sample's rows copied out. `cols`
/// then holds convChunk · positions · (patch + f) values. Each output is the same sum
/// (bias, then the GEMM's k-loop) whatever the chunk, so a sample's result does not depend on
/// the batch it came in.
@inlinable
public func conv2dForward<T: Real>(
    out: UnsafeMutablePointer<T>, cols: UnsafeMutablePointer<T>, input: UnsafePointer<T>,
    weight: UnsafePointer<T>, bias: UnsafePointer<T>, batch: Int, _ g: ConvShape,
    keepColumns: Bool = true
) {
    let chunk = keepColumns ? 1 : convChunk(g, batch: batch, of: T.self)
    for first in stride(from: 0, to: batch, by: chunk) {
        let samples = min(chunk, batch - first), ld = samples * g.positions
        let cn = cols + (keepColumns ? first * g.patch * g.positions : 0)
        for i in 0..<samples { im2col(input + (first + i) * g.inCount, g, cols: cn + i * g.positions, ld: ld) }
        // One sample: straight into out, whose layout the products already have.
        let y = samples == 1 ? out + first * g.outCount : cols + chunk * g.patch * g.positions
        for fi in 0..<g.f { (y + fi * ld).update(repeating: bias[fi], count: ld) }
        T.gemm(
            transA: false, transB: false, m: g.f, n: ld, k: g.patch, alpha: 1,
            a: weight, lda: g.patch, b: cn, ldb: ld, beta: 1, c: y, ldc: ld)
        guard samples > 1 else { continue }
        for i in 0..<samples {
            for fi in 0..<g.f {
                (out + (first + i) * g.outCount + fi * g.positions).update(
                    from: y + fi * ld + i * g.positions, count: g.positions)
            }
        }
    }
}

/// Conv backward: dWeight += Σₙ dOut[n] · cols[n]ᵀ, dBias += Σ dOut, and (unless nil)
/// dInput[n] = col2im(weightᵀ · dOut[n]); `dCols` is scratch of (patch, positions).
@inlinable
public func conv2dBackward<T: Real>(
    dInput: UnsafeMutablePointer<T>?, dWeight: UnsafeMutablePointer<T>, dBias: UnsafeMutablePointer<T>,
    dCols: UnsafeMutablePointer<T>, dOut: UnsafePointer<T>, cols: UnsafePointer<T>,
    weight: UnsafePointer<T>, batch: Int, _ g: ConvShape
) {
    for n in 0..<batch {
        let dy = dOut + n * g.outCount, cn = cols + n * g.patch * g.positions
        T.gemm(
            transA: false, transB: true, m: g.f, n: g.patch, k: g.positions, alpha: 1,
            a: dy, lda: g.positions, b: cn, ldb: g.positions, beta: 1, c: dWeight, ldc: g.patch)
        for fi in 0..<g.f {
            var s: T = 0
            for j in 0..<g.positions { s += dy[fi * g.positions + j] }
            dBias[fi] += s
        }
        guard let dInput else { continue }
        T.gemm(
            transA: true, transB: false, m: g.patch, n: g.positions, k: g.f, alpha: 1,
            a: weight, lda: g.patch, b: dy, ldb: g.positions, beta: 0, c: dCols, ldc: g.positions)
        let dx = dInput + n * g.inCount
        for i in 0..<g.inCount { dx[i] = 0 }
        col2im(dCols, g, dx: dx)
    }
}

/// Pooling geometry: input (c, h, w), window `size`, `stride`.
public struct PoolShape {
    public let c: Int, h: Int, w: Int, size: Int, stride: Int, oh: Int, ow: Int
    @inlinable public var inCount: Int { c * h * w }
    @inlinable public var outCount: Int { c * oh * ow }
    public init(c: Int, h: Int, w: Int, size: Int, stride: Int) {
        self.c = c; self.h = h; self.w = w; self.size = size; self.stride = stride
        oh = (h - size) / stride + 1
        ow = (w - size) / stride + 1
    }
}

/// Max pool forward; `argmax` (batch, outCount) keeps each output's source index for backward.
@inlinable
public func maxPoolForward<T: Real>(
    out: UnsafeMutablePointer<T>, argmax: UnsafeMutablePointer<Int32>, input: UnsafePointer<T>,
    batch: Int, _ g: PoolShape
) {
    for n in 0..<batch {
        let x = input + n * g.inCount, y = out + n * g.outCount, am = argmax + n * g.outCount
        for ci in 0..<g.c {
            for oy in 0..<g.oh {
                for ox in 0..<g.ow {
                    var best = -T.infinity, bi = 0
                    for dy in 0..<g.size {
                        for dx in 0..<g.size {
                            let idx = (ci * g.h + oy * g.stride + dy) * g.w + ox * g.stride + dx
                            if x[idx] > best { best = x[idx]; bi = idx }
                        }
                    }
                    let o = (ci * g.oh + oy) * g.ow + ox
                    y[o] = best
                    am[o] = Int32(bi)
                }
            }
        }
    }
}

/// Max pool forward at inference: no argmax, and each output line computed over whole rows of
/// the window; the CNNs' 2×2, stride-2 pool keeps each output in a register instead (four
/// passes over the output line were a large share of the int8 CNN's batch-1 time). The same values as
/// `maxPoolForward`: the window scanned in the same order, the first largest kept.
@inlinable
public func maxPoolInference<T: Real>(out: UnsafeMutablePointer<T>, input: UnsafePointer<T>, batch: Int, _ g: PoolShape)
{
    for n in 0..<batch {
        let x = input + n * g.inCount, y = out + n * g.outCount
        for ci in 0..<g.c {
            for oy in 0..<g.oh {
                let o = y + (ci * g.oh + oy) * g.ow
                if g.size == 2 && g.stride == 2 {
                    // The CNNs' pool, one output at a time in the window order below: a
                    // register per output instead of four passes that load and store the line.
                    let r0 = x + (ci * g.h + oy * 2) * g.w, r1 = r0 + g.w
                    for ox in 0..<g.ow {
                        var m = -T.infinity
                        var v = r0[2 * ox]
                        m = v > m ? v : m
                        v = r0[2 * ox + 1]
                        m = v > m ? v : m
                        v = r1[2 * ox]
                        m = v > m ? v : m
                        v = r1[2 * ox + 1]
                        o[ox] = v > m ? v : m
                    }
                    continue
                }
                o.update(repeating: -T.infinity, count: g.ow)
                for dy in 0..<g.size {
                    let row = x + (ci * g.h + oy * g.stride + dy) * g.w
                    for dx in 0..<g.size {
                        for ox in 0..<g.ow {
                            let v = row[ox * g.stride + dx]
                            o[ox] = v > o[ox] ? v : o[ox]
                        }
                    }
                }
            }
        }
    }
}

@inlinable
public func maxPoolBackward<T: Real>(
    dInput: UnsafeMutablePointer<T>, dOut: UnsafePointer<T>, argmax: UnsafePointer<Int32>,
    batch: Int, _ g: PoolShape
) {
    for n in 0..<batch {
        let dx = dInput + n * g.inCount, dy = dOut + n * g.outCount, am = argmax + n * g.outCount
        for i in 0..<g.inCount { dx[i] = 0 }
        for o in 0..<g.outCount { dx[Int(am[o])] += dy[o] }
    }
}

@inlinable
public func avgPoolForward<T: Real>(out: UnsafeMutablePointer<T>, input: UnsafePointer<T>, batch: Int, _ g: PoolShape) {
    let inv = 1 / T(g.size * g.size)
    for n in 0..<batch {
        let x = input + n * g.inCount, y = out + n * g.outCount
        for ci in 0..<g.c {
            for oy in 0..<g.oh {
                for ox in 0..<g.ow {
                    var s: T = 0
                    for dy in 0..<g.size {
                        for dx in 0..<g.size { s += x[(ci * g.h + oy * g.stride + dy) * g.w + ox * g.stride + dx] }
                    }
                    y[(ci * g.oh + oy) * g.ow + ox] = s * inv
                }
            }
        }
    }
}

@inlinable
public func avgPoolBackward<T: Real>(
    dInput: UnsafeMutablePointer<T>, dOut: UnsafePointer<T>, batch: Int, _ g: PoolShape
) {
    let inv = 1 / T(g.size * g.size)
    for n in 0..<batch {
        let dx = dInput + n * g.inCount, dy = dOut + n * g.outCount
        for i in 0..<g.inCount { dx[i] = 0 }
        for ci in 0..<g.c {
            for oy in 0..<g.oh {
                for ox in 0..<g.ow {
                    let v = dy[(ci * g.oh + oy) * g.ow + ox] * inv
                    for a in 0..<g.size {
                        for b in 0..<g.size { dx[(ci * g.h + oy * g.stride + a) * g.w + ox * g.stride + b] += v }
                    }
                }
            }
        }
    }
}
