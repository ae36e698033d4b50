import COpenBLAS
import Foundation

/// The scalar types the layers run in: `Float` for training and inference (sgemm), `Double` for
/// gradient checks (dgemm), with the same generic code. Kernels are `@inlinable` so callers in
/// other modules get them specialized: unspecialized generic loops are 100× slower.
public protocol Real: BinaryFloatingPoint, Codable {
    /// C = alpha · op(A) · op(B) + beta · C, row-major; op(A) is (m, k), op(B) is (k, n).
    static func gemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Self,
        a: UnsafePointer<Self>, lda: Int, b: UnsafePointer<Self>, ldb: Int,
        beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int)
    /// y += alpha · x over n values (BLAS axpy). Loops that must stay fast are written with
    /// it: the compiler does not always specialize a generic loop (`denseBiasBackward` ran
    /// through generic witnesses, 14 % of an MLP step), and a protocol call per row costs little.
    static func axpy(n: Int, alpha: Self, x: UnsafePointer<Self>, y: UnsafeMutablePointer<Self>)
    static func exp(_ x: Self) -> Self
    static func log(_ x: Self) -> Self
    static func tanh(_ x: Self) -> Self
    /// An activation kind's forward/backward in this concrete type (specialized loops; see
    /// `ActivationKind`).
    static func activationForward(
        _ k: any ActivationKind.Type, out: UnsafeMutablePointer<Self>, input: UnsafePointer<Self>,
        count: Int, params: [Double])
    static func activationBackward(
        _ k: any ActivationKind.Type, dInput: UnsafeMutablePointer<Self>, dOut: UnsafePointer<Self>,
        input: UnsafePointer<Self>, out: UnsafePointer<Self>, count: Int, params: [Double])
}

extension Float: Real {
    public static func activationForward(
        _ k: any ActivationKind.Type, out: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
        count: Int, params: [Double]
    ) {
        k.forward(out: out, input: input, count: count, params: params)
    }
    public static func activationBackward(
        _ k: any ActivationKind.Type, dInput: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
        input: UnsafePointer<Float>, out: UnsafePointer<Float>, count: Int, params: [Double]
    ) {
        k.backward(dInput: dInput, dOut: dOut, input: input, out: out, count: count, params: params)
    }
    @inlinable
    public static func gemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        // One row (batch-1 inference): OpenBLAS's sgemm runs a 1-row product 3× slower than
        // its sgemv (measured: 0.086 vs 0.03 ms for the MLP), so take the matrix-vector path.
        if m == 1 && !transA {
            cblas_sgemv(
                CblasRowMajor, transB ? CblasNoTrans : CblasTrans, Int32(transB ? n : k), Int32(transB ? k : n),
                alpha, b, Int32(ldb), a, 1, beta, c, 1)
            return
        }
        cblas_sgemm(
            CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
    @inlinable
    public static func axpy(n: Int, alpha: Float, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        cblas_saxpy(Int32(n), alpha, x, 1, y, 1)
    }
    @inlinable public static func exp(_ x: Float) -> Float { Foundation.exp(x) }
    @inlinable public static func log(_ x: Float) -> Float { Foundation.log(x) }
    @inlinable public static func tanh(_ x: Float) -> Float { Foundation.tanh(x) }
}

extension Double: Real {
    public static func activationForward(
        _ k: any ActivationKind.Type, out: UnsafeMutablePointer<Double>, input: UnsafePointer<Double>,
        count: Int, params: [Double]
    ) {
        k.forward(out: out, input: input, count: count, params: params)
    }
    public static func activationBackward(
        _ k: any ActivationKind.Type, dInput: UnsafeMutablePointer<Double>, dOut: UnsafePointer<Double>,
        input: UnsafePointer<Double>, out: UnsafePointer<Double>, count: Int, params: [Double]
    ) {
        k.backward(dInput: dInput, dOut: dOut, input: input, out: out, count: count, params: params)
    }
    @inlinable
    public static func gemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Double,
        a: UnsafePointer<Double>, lda: Int, b: UnsafePointer<Double>, ldb: Int,
        beta: Double, c: UnsafeMutablePointer<Double>, ldc: Int
    ) {
        cblas_dgemm(
            CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
    @inlinable
    public static func axpy(n: Int, alpha: Double, x: UnsafePointer<Double>, y: UnsafeMutablePointer<Double>) {
        cblas_daxpy(Int32(n), alpha, x, 1, y, 1)
    }
    @inlinable public static func exp(_ x: Double) -> Double { Foundation.exp(x) }
    @inlinable public static func log(_ x: Double) -> Double { Foundation.log(x) }
    @inlinable public static func tanh(_ x: Double) -> Double { Foundation.tanh(x) }
}

/// Sets OpenBLAS's thread count for this process (each MPI rank sets its own).
public func setBLASThreads(_ n: Int) { openblas_set_num_threads(Int32(n)) }
public func blasThreads() -> Int { Int(openblas_get_num_threads()) }

/// One flat, 64-byte-aligned buffer for a role (parameters, gradients, optimizer moments,
/// activations). Allocated once; its address never moves, so MPI and BLAS can hold it.
public final class Arena<T: Real> {
    public let buffer: UnsafeMutableBufferPointer<T>
    @inlinable public var count: Int { buffer.count }
    @inlinable public var base: UnsafeMutablePointer<T> { buffer.baseAddress! }
    /// The arena this one is a view into (nil: this one owns its memory).
    let owner: Arena<T>?

    public init(count: Int) {
        let bytes = max(count, 1) * MemoryLayout<T>.stride
        let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        // All-zero bytes are 0 in every Real; a generic initialize(repeating:) copied one value
        // at a time through the type's witness table (perf: a large model's arenas took longer
        // to clear than a batch took to score).
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        let p = raw.bindMemory(to: T.self, capacity: max(count, 1))
        buffer = UnsafeMutableBufferPointer(start: p, count: count)
        owner = nil
    }

    /// A view of `count` slots of `parent` from `offset`: a model made of parts (a recommender's
    /// MLP tower) keeps one arena while each part sees its own slice. Keeps `parent` alive.
    public init(viewOf parent: Arena<T>, offset: Int, count: Int) {
        precondition(offset >= 0 && offset + count <= parent.count, "arena view out of bounds")
        buffer = UnsafeMutableBufferPointer(start: parent.base + offset, count: count)
        owner = parent
    }

    deinit { if owner == nil { UnsafeMutableRawPointer(buffer.baseAddress!).deallocate() } }

    @inlinable public func zero() { buffer.update(repeating: 0) }

    /// Copies values in (sizes must match).
    public func load<C: Collection>(_ values: C) where C.Element == T {
        precondition(values.count == count, "arena load: \(values.count) values for \(count) slots")
        _ = buffer.update(fromContentsOf: values)
    }

    public var array: [T] { Array(buffer) }
}
