import CKernels
import CortadoModel

/// A pruned dense layer run sparse: its CSR weight (fp32 values, dequantized when stored
/// int8) times the batch, skipping the zeros (see sparse.c). Taken instead of the dense path when the layer's density is below
/// `SparseLayer.maxDensity`, the crossover measured by Benchmarks/sparse-crossover.sh.
struct SparseLayer {
    /// Sparse wins below this fraction of non-zeros. Measured on the 784-256-128-10 MLP's
    /// layers (AMD EPYC, AVX2, 1 thread) against the dense int8 GEMM, the faster dense path;
    /// see the README's compression section for the table.
    static let maxDensity = 0.2
    /// Batches smaller than this stay dense: one sample at a time the sparse kernel gathers
    /// its inputs, and the dense int8 GEMM was faster at every sparsity measured.
    static let minBatch = 16

    let indptr: [Int32], indices: [Int32], values: [Float], bias: [Float]
    let inDim: Int, outDim: Int
    let relu: Bool

    var density: Double { Double(values.count) / Double(max(inDim * outDim, 1)) }

    /// out (batch, outDim) = x (batch, inDim) · Wᵀ + bias, ReLU fused when one follows;
    /// scratch holds 32·(inDim + outDim) floats.
    func forward(
        _ x: UnsafePointer<Float>, batch: Int, out: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>,
        path: Int
    ) {
        indptr.withUnsafeBufferPointer { ip in
            indices.withUnsafeBufferPointer { ix in
                values.withUnsafeBufferPointer { v in
                    bias.withUnsafeBufferPointer { b in
                        cortado_csr_spmm(
                            ip.baseAddress!, ix.baseAddress!, v.baseAddress!, Int32(outDim), Int32(inDim), x,
                            Int32(batch),
                            b.baseAddress!, relu ? 1 : 0, out, scratch, Int32(path))
                    }
                }
            }
        }
    }
}
