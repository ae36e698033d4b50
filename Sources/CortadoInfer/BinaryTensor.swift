import CortadoCore

/// Tensor values as the binary tensor data extension of Triton's HTTP/REST protocol sends
/// them after the JSON: each element little-endian at its datatype's width, row-major; BYTES
/// elements as a 4-byte little-endian length and that many bytes. `tritonclient` sends inputs
/// this way unless told not to.
public enum BinaryTensor {
    /// Bytes per element; nil for BYTES, whose elements carry their own lengths.
    public static func elementSize(_ type: InferTensor.DataType) -> Int? {
        switch type {
        case .int8, .uint8, .bool: return 1
        case .fp16, .int16, .uint16: return 2
        case .fp32, .int32, .uint32: return 4
        case .fp64, .int64, .uint64: return 8
        case .bytes: return nil
        }
    }

    /// The bytes BYTES elements take: a 4-byte length and the UTF-8 bytes of each.
    public static func size(_ strings: [String]) -> Int { strings.reduce(0) { $0 + 4 + $1.utf8.count } }

    /// `count` elements of `type` from `raw`, which must hold exactly them. `field` names the
    /// size in errors (`inputs[0].parameters.binary_data_size`).
    static func values(
        _ raw: UnsafeRawBufferPointer, type: InferTensor.DataType, count: Int, field: String
    ) throws -> TensorValues {
        guard let width = elementSize(type) else { return .mixed(try strings(raw, count: count, field: field)) }
        guard raw.count == count * width else {
            throw CortadoError.usage(
                "\(field): \(raw.count) bytes for \(count) \(type.rawValue) values (\(count * width) expected)")
        }
        let out = [Double](unsafeUninitializedCapacity: count) { o, initialized in
            func read<T>(_: T.Type, _ convert: (T) -> Double) {
                for j in 0..<count { o[j] = convert(raw.loadUnaligned(fromByteOffset: j * width, as: T.self)) }
            }
            switch type {
            case .fp32: read(UInt32.self) { Double(Float(bitPattern: UInt32(littleEndian: $0))) }
            case .fp64: read(UInt64.self) { Double(bitPattern: UInt64(littleEndian: $0)) }
            case .fp16: read(UInt16.self) { Double(Float(Float16(bitPattern: UInt16(littleEndian: $0)))) }
            case .int8: read(Int8.self) { Double($0) }
            case .uint8, .bool: read(UInt8.self) { Double($0) }
            case .int16: read(Int16.self) { Double(Int16(littleEndian: $0)) }
            case .uint16: read(UInt16.self) { Double(UInt16(littleEndian: $0)) }
            case .int32: read(Int32.self) { Double(Int32(littleEndian: $0)) }
            case .uint32: read(UInt32.self) { Double(UInt32(littleEndian: $0)) }
            case .int64: read(Int64.self) { Double(Int64(littleEndian: $0)) }
            case .uint64: read(UInt64.self) { Double(UInt64(littleEndian: $0)) }
            case .bytes: break // (handled above)
            }
            initialized = count
        }
        if type == .bool, let j = out.firstIndex(where: { $0 > 1 }) {
            throw CortadoError.usage("\(field): BOOL element \(j) is \(Int(out[j])), not 0 or 1")
        }
        return .numbers(out)
    }

    /// BYTES elements: a 4-byte little-endian length, then the bytes (UTF-8 text here).
    static func strings(_ raw: UnsafeRawBufferPointer, count: Int, field: String) throws -> [JSONScalar] {
        var out = [JSONScalar](), at = 0
        out.reserveCapacity(min(count, raw.count / 4))
        for j in 0..<count {
            guard raw.count - at >= 4 else {
                throw CortadoError.usage("\(field): the data ends before BYTES element \(j) of \(count)")
            }
            let length = Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt32.self)))
            at += 4
            guard length <= raw.count - at else {
                throw CortadoError.usage(
                    "\(field): BYTES element \(j) claims \(length) bytes; \(raw.count - at) are left")
            }
            guard let s = String(validating: raw[at..<(at + length)], as: UTF8.self) else {
                throw CortadoError.usage("\(field): BYTES element \(j) is not UTF-8 text")
            }
            out.append(.string(s))
            at += length
        }
        guard at == raw.count else {
            throw CortadoError.usage("\(field): \(raw.count - at) bytes left after \(count) BYTES elements")
        }
        return out
    }
}
