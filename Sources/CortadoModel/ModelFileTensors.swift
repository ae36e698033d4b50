import CKernels
import CortadoCore
import Foundation

/// Reading a weight back from a `.cmodel`, whatever way it was stored: dense in float32,
/// float16, bfloat16 or int8 (with per-row scales), or sparse as CSR (`NAME.values`,
/// `NAME.indptr` int32 [rows + 1], `NAME.indices` uint16/int32 [nnz]). Every index is
/// checked before it is used, so a damaged table is an error naming the tensor, not a crash.
extension ModelFile {
    /// Every tensor of `layout` as dense fp32 into the arena at `dst` (its offsets); errors
    /// name the file at `path`.
    public func readTensors(_ layout: ParameterLayout, into dst: UnsafeMutablePointer<Float>, path: String) throws {
        do {
            for t in layout.tensors {
                try floats(t.name, shape: t.shape).withUnsafeBufferPointer {
                    (dst + t.offset).update(from: $0.baseAddress!, count: t.count)
                }
            }
        } catch let e as CortadoError { throw CortadoError.model("\(path): \(e.message)") }
    }

    /// The weight `name` of logical `shape` as dense fp32 (dequantized, densified).
    public func floats(_ name: String, shape: [Int]) throws -> [Float] {
        if let int8 = try int8Rows(name, shape: shape) {
            let cols = shape.reduce(1, *) / max(shape.first ?? 1, 1)
            return int8.q.enumerated().map { Float($0.element) * int8.scales[$0.offset / cols] }
        }
        if let t = tensor(name) {
            try expect(t, shape: shape)
            return try decodeFloats(t)
        }
        let (values, positions) = try csr(name, shape: shape)
        var dense = [Float](repeating: 0, count: shape.reduce(1, *))
        let v = try decodeFloats(values)
        for (k, p) in positions.enumerated() { dense[p] = v[k] }
        return dense
    }

    /// The int8 weight `name` (rows, cols…) with its per-row scales (per output channel or
    /// filter), densified if stored sparse; nil when it is not stored as int8.
    public func int8Rows(_ name: String, shape: [Int]) throws -> (q: [Int8], scales: [Float])? {
        let stored = tensor(name) ?? tensor(name + ".values")
        guard let stored, stored.dtype == .int8 else { return nil }
        guard shape.count >= 2, let qz = stored.quantization, let st = tensor(qz.scales), st.dtype == .float32,
            st.shape == [shape[0]]
        else {
            throw CortadoError.model("\(name): int8 tensor '\(stored.name)' has no per-row scales for shape \(shape)")
        }
        let scales = values(st, as: Float.self)
        if stored.name == name {
            try expect(stored, shape: shape)
            return (values(stored, as: Int8.self), scales)
        }
        let (v, positions) = try csr(name, shape: shape)
        var dense = [Int8](repeating: 0, count: shape.reduce(1, *))
        let q = values(v, as: Int8.self)
        for (k, p) in positions.enumerated() { dense[p] = q[k] }
        return (dense, scales)
    }

    /// A weight stored as CSR, as fp32 values (dequantized when int8) with its row pointers
    /// and column indices, validated; nil when it is stored dense.
    public func sparseRows(_ name: String, shape: [Int]) throws -> (indptr: [Int32], indices: [Int32], values: [Float])?
    {
        guard let stored = tensor(name + ".values"), tensor(name) == nil else { return nil }
        let (v, positions) = try csr(name, shape: shape)
        let cols = shape[1]
        let indptr = values(tensor(name + ".indptr")!, as: Int32.self)
        let indices = positions.map { Int32($0 % cols) }
        if stored.dtype == .int8 {
            guard let q = try int8Rows(name, shape: shape) else { return nil }
            return (indptr, indices, positions.map { Float(q.q[$0]) * q.scales[$0 / cols] })
        }
        return (indptr, indices, try decodeFloats(v))
    }

    /// Non-zero count of a stored weight (sparse: its values; dense: counted).
    public func nonZeros(_ name: String, shape: [Int]) throws -> Int {
        if let v = tensor(name + ".values") { return v.count }
        return try floats(name, shape: shape).reduce(0) { $0 + ($1 != 0 ? 1 : 0) }
    }

    private func expect(_ t: Tensor, shape: [Int]) throws {
        guard t.shape == shape else {
            throw CortadoError.model("tensor '\(t.name)' is \(t.dtype.rawValue)\(t.shape), expected \(shape)")
        }
    }

    private func decodeFloats(_ t: Tensor) throws -> [Float] {
        switch t.dtype {
        case .float32: return values(t, as: Float.self)
        case .float16: return values(t, as: UInt16.self).map { Float(Float16(bitPattern: $0)) }
        case .bfloat16: return values(t, as: UInt16.self).map { Float(bitPattern: UInt32($0) << 16) }
        default: throw CortadoError.model("tensor '\(t.name)' is \(t.dtype.rawValue), not a float type")
        }
    }

    /// A CSR weight's values tensor and the row-major position of each value, validated.
    private func csr(_ name: String, shape: [Int]) throws -> (values: Tensor, positions: [Int]) {
        guard let v = tensor(name + ".values"), let ip = tensor(name + ".indptr"), let ix = tensor(name + ".indices")
        else {
            throw CortadoError.model("missing tensor '\(name)'")
        }
        guard shape.count == 2, ip.dtype == .int32, ip.shape == [shape[0] + 1], [.uint16, .int32].contains(ix.dtype),
            ix.shape.count == 1, v.shape == ix.shape
        else {
            throw CortadoError.model("sparse tensor '\(name)': index arrays do not fit shape \(shape)")
        }
        let indptr = values(ip, as: Int32.self).map(Int.init)
        let indices =
            ix.dtype == .uint16 ? values(ix, as: UInt16.self).map(Int.init) : values(ix, as: Int32.self).map(Int.init)
        guard indptr.first == 0, indptr.last == indices.count, zip(indptr, indptr.dropFirst()).allSatisfy({ $0 <= $1 }),
            indices.allSatisfy({ $0 >= 0 && $0 < shape[1] })
        else {
            throw CortadoError.model("sparse tensor '\(name)': row pointers or column indices out of range")
        }
        var positions = [Int](repeating: 0, count: indices.count)
        for r in 0..<shape[0] { for k in indptr[r]..<indptr[r + 1] { positions[k] = r * shape[1] + indices[k] } }
        return (v, positions)
    }
}

/// fp32 → bfloat16 bits, round to nearest even (the top half of the float32); NaN stays NaN.
/// The conversion is the 16-bit exchange's (CKernels/half.c), so there is one rounding rule.
public func bfloat16Bits(_ x: Float) -> UInt16 {
    var x = x, h: UInt16 = 0
    cortado_to_half(&x, &h, 1, Int32(CORTADO_HALF_BF16))
    return h
}
