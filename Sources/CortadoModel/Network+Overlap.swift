/// Backward that reports finished gradients as it goes (see `Network.gradientsReady`), for
/// the bucketed, overlapped gradient exchange.
extension Network {
    /// The offsets `gradientsReady` reports during one backward, in the order it reports them:
    /// what the exchange cuts its buckets at.
    public var gradientReadyPoints: [Int] {
        var points = [Int]()
        for step in steps.reversed() {
            switch step {
            case let .dense(inDim, outDim, w, _):
                let rows = denseBlockRows(outDim: outDim)
                for r0 in stride(from: (outDim - 1) / rows * rows, through: 0, by: -rows) {
                    points.append(w + r0 * inDim)
                }
            case let .layerNorm(_, w, _, _): points.append(w)
            case let .conv(_, w, _, _): points.append(w)
            default: break
            }
        }
        return points
    }

    /// Rows per block of a dense weight gradient (all rows when blocking is off or the
    /// tensor has no more rows than a block).
    @usableFromInline
    func denseBlockRows(outDim: Int) -> Int {
        gradientBlockRows > 0 && outDim > gradientBlockRows ? gradientBlockRows : outDim
    }

    /// `denseBackward` in the order that frees gradients soonest: the bias, then the weight
    /// gradient in row blocks from the last rows up (arena offsets falling), reporting after
    /// each; the input gradient last, so its GEMM overlaps the exchange of this layer's blocks.
    /// Each block is the same GEMM over fewer rows, so every value is computed as before.
    /// Inlined into `backpropagate`, so it runs specialized for Float: as a method of its
    /// own the compiler left it generic (perf showed it calling through type metadata).
    @usableFromInline @inline(__always)
    func reportingDenseBackward(
        dInput: UnsafeMutablePointer<T>?, w: Int, b: Int, dOut: UnsafePointer<T>, input: UnsafePointer<T>,
        batch: Int, inDim: Int, outDim: Int
    ) {
        let g = grads.base
        denseBiasBackward(dBias: g + b, dOut: dOut, batch: batch, outDim: outDim)
        let rows = denseBlockRows(outDim: outDim)
        for r0 in stride(from: (outDim - 1) / rows * rows, through: 0, by: -rows) {
            denseWeightBackward(
                dWeight: g + w, dOut: dOut, input: input, batch: batch, inDim: inDim, outDim: outDim,
                rows: r0..<min(r0 + rows, outDim))
            gradientsReady?(w + r0 * inDim)
        }
        if let dInput {
            denseInputBackward(
                dInput: dInput, dOut: dOut, weight: params.base + w, batch: batch, inDim: inDim, outDim: outDim)
        }
    }
}
