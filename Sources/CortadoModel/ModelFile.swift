import CortadoCore
import Foundation

/// The `.cmodel` file that cortado-train emits and cortado-infer loads, version 2 or 3.
///
/// Layout (little-endian):
///
///     0   magic "CRTDMODL"          8 bytes
///     8   version                   UInt32
///     12  header length H           UInt32
///     16  header, JSON (UTF-8)      H bytes: architecture, precision, tensor table, metadata
///     ..  zero padding to a multiple of 64
///     D   tensor data               each tensor at D + offset, offsets 64-byte aligned
///     end SHA-256 of all bytes before it   32 bytes
///
/// Self-describing like tinygrad's safetensors-style files: a reader needs nothing but the file.
/// `load` checks every size, offset and the checksum before anything touches the data.
public struct ModelFile {
    public static let magic = Array("CRTDMODL".utf8)
    /// 2 added the optional `recommender` header section, 16-bit floats and sparse (CSR)
    /// weights stored as `NAME.values` / `NAME.indptr` / `NAME.indices`; version-1 files load.
    /// 3 added the recommender's time terms (`TimeBias`: the `time` section, the tensors
    /// `global_drift`, `user_drift`, `user_mean_day`); only files that have them are written as
    /// version 3, so a version-2 reader, which would score them without those terms, refuses them
    /// and reads every other file.
    public static let version: UInt32 = 2
    public static let timeTermsVersion: UInt32 = 3
    /// 4 added the per-(user, day) bias (`TimeBias.userDays`: `user_day_bias` and its index
    /// `user_day_user`/`user_day_day`); only files with it are written as version 4, so a
    /// version-3 reader, which would drop the term, refuses them.
    public static let userDayVersion: UInt32 = 4
    public static let readableVersions: ClosedRange<UInt32> = 1...4
    static let alignment = 64

    /// Element types of stored tensors: values (float32, float16, bfloat16, int8) and the
    /// index arrays of sparse (CSR) weights (int32 row pointers, uint16/int32 column indices).
    public enum DType: String, Codable {
        case float32, float16, bfloat16, int8, int32, uint16
        public var size: Int {
            switch self {
            case .float32, .int32: 4
            case .float16, .bfloat16, .uint16: 2
            case .int8: 1
            }
        }
    }

    /// One entry of the tensor table. Quantized tensors name the tensor holding their scales.
    public struct Tensor: Codable, Equatable {
        public var name: String
        public var dtype: DType
        public var shape: [Int]
        public var offset: Int // bytes from the start of the data section
        public var nbytes: Int
        public var quantization: Quantization?
        /// Elements, or -1 when the shape's product overflows (a corrupt table).
        public var count: Int { checkedProduct(shape) ?? -1 }
    }

    /// Symmetric quantization: real = scale[channel] · q, one scale per index along `axis`.
    public struct Quantization: Codable, Equatable {
        public var scheme: String // "symmetric_per_channel"
        public var axis: Int
        public var scales: String // name of a float32 tensor with shape[axis] entries
        public init(scheme: String, axis: Int, scales: String) {
            self.scheme = scheme; self.axis = axis; self.scales = scales
        }
    }

    /// A tensor to write: its table entry's fields and its raw bytes.
    public struct TensorData {
        public var name: String
        public var dtype: DType
        public var shape: [Int]
        public var quantization: Quantization?
        public var bytes: Data
        public init(name: String, dtype: DType, shape: [Int], quantization: Quantization? = nil, bytes: Data) {
            self.name = name; self.dtype = dtype; self.shape = shape; self.quantization = quantization;
            self.bytes = bytes
        }
    }

    /// The JSON header.
    public struct Header: Codable, Equatable {
        public var format: String = "cortado-model"
        public var precision: String // "fp32" or "int8"
        /// Classifiers: the network. Recommenders: the MLP tower on the concatenated embeddings.
        public var model: ModelSpec
        public var classes: [String]
        public var tensors: [Tensor]
        public var metadata: [String: String]
        /// Present for recommenders (then `classes` is empty).
        public var recommender: RecommenderSpec?
        /// Present for text classifiers (`model` is then the head; the tokenizer and vocabulary
        /// are the `text` metadata value, a `TextVocabulary` as JSON).
        public var text: TextSpec?
    }

    public let header: Header
    /// The whole file (memory-mapped by `load`).
    public let bytes: Data
    let dataStart: Int

    /// Writes a model file atomically from a header (whose tensor offsets are filled in here)
    /// and each tensor's raw bytes, in table order.
    public static func write(
        path: String, precision: String, model: ModelSpec, classes: [String],
        tensors: [TensorData],
        metadata: [String: String], recommender: RecommenderSpec? = nil, text: TextSpec? = nil
    ) throws {
        var table = [Tensor]()
        var offset = 0
        for t in tensors {
            let n = t.shape.reduce(1, *) * t.dtype.size
            precondition(n == t.bytes.count, "tensor \(t.name): \(t.bytes.count) bytes for shape \(t.shape)")
            table.append(
                Tensor(
                    name: t.name, dtype: t.dtype, shape: t.shape, offset: offset, nbytes: n,
                    quantization: t.quantization))
            offset = roundUp(offset + n)
        }
        let header = Header(
            precision: precision, model: model, classes: classes, tensors: table, metadata: metadata,
            recommender: recommender, text: text)
        let json = try stableJSON(header, pretty: false)
        var out = Data(magic)
        let v =
            recommender?.time?.userDays != nil ? userDayVersion : recommender?.time != nil ? timeTermsVersion : version
        withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt32(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        out.append(Data(count: roundUp(out.count) - out.count))
        let dataStart = out.count
        for (t, e) in zip(tensors, table) {
            out.append(Data(count: dataStart + e.offset - out.count))
            out.append(t.bytes)
        }
        out.append(Data(count: dataStart + offset - out.count))
        var h = SHA256()
        h.update(out)
        out.append(contentsOf: h.finalize())
        try AtomicFile.write(out, to: path)
    }

    /// Loads and validates a model file; any inconsistency is a one-line error naming the file.
    public static func load(_ path: String) throws -> ModelFile {
        let bytes: Data
        guard FileManager.default.fileExists(atPath: path) else {
            throw CortadoError.model("\(path): no such model file")
        }
        do { bytes = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) } catch {
            throw CortadoError.io("\(path): cannot read model file: \(error.localizedDescription)")
        }
        return try parse(bytes, path: path)
    }

    /// Validates a whole model file held in memory (`path` names it in errors); the fuzzer's
    /// entry. Every size, offset and table entry is checked before a tensor is touched.
    public static func parse(_ bytes: Data, path: String) throws -> ModelFile {
        let hint = "(is it a model written by cortado-train?)"
        guard bytes.count >= 16 + 32 else {
            throw CortadoError.model("\(path): \(bytes.count) bytes is too short for a model file \(hint)")
        }
        guard Array(bytes.prefix(8)) == magic else {
            throw CortadoError.model("\(path): bad magic, not a Cortado model \(hint)")
        }
        let version = bytes.withUnsafeBytes {
            UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        }
        guard readableVersions.contains(version) else {
            throw CortadoError.model(
                "\(path): model format version \(version), this build reads versions \(readableVersions.lowerBound)–\(readableVersions.upperBound)"
            )
        }
        let headerLength = Int(
            bytes.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 12, as: UInt32.self)) })
        guard 16 + headerLength <= bytes.count - 32 else {
            throw CortadoError.model(
                "\(path): header length \(headerLength) runs past the end of the \(bytes.count)-byte file (truncated?)")
        }
        var h = SHA256()
        bytes.withUnsafeBytes { h.update(UnsafeRawBufferPointer(rebasing: $0[0..<(bytes.count - 32)])) }
        guard h.finalize() == Array(bytes.suffix(32)) else {
            throw CortadoError.model("\(path): checksum mismatch, the file is corrupt or truncated")
        }
        let header: Header
        do { header = try JSONDecoder().decode(Header.self, from: bytes.subdata(in: 16..<(16 + headerLength))) } catch {
            throw CortadoError.model("\(path): bad header: \(describe(error))")
        }
        guard header.recommender?.time == nil || version >= timeTermsVersion else {
            throw CortadoError.model(
                "\(path): version \(version) file with recommender time terms (they need version \(timeTermsVersion)) \(hint)"
            )
        }
        guard header.recommender?.time?.userDays == nil || version >= userDayVersion else {
            throw CortadoError.model(
                "\(path): version \(version) file with a per-(user, day) bias (it needs version \(userDayVersion)) \(hint)"
            )
        }
        let dataStart = roundUp(16 + headerLength)
        let dataLength = bytes.count - 32 - dataStart
        for t in header.tensors {
            guard t.shape.allSatisfy({ $0 > 0 }), t.count >= 0, t.nbytes == checkedProduct([t.count, t.dtype.size])
            else {
                throw CortadoError.model(
                    "\(path): tensor '\(t.name)' has shape \(t.shape) but \(t.nbytes) bytes of \(t.dtype.rawValue)")
            }
            guard t.offset >= 0, t.offset % alignment == 0, t.offset + t.nbytes <= dataLength else {
                throw CortadoError.model(
                    "\(path): tensor '\(t.name)' at offset \(t.offset) (+\(t.nbytes)) lies outside the \(dataLength)-byte data section"
                )
            }
            if let q = t.quantization {
                // A CSR weight's values carry one scale per row of the dense weight.
                let csrRows =
                    t.name.hasSuffix(".values")
                    ? header.tensors.first { $0.name == t.name.dropLast(7) + ".indptr" }.map { $0.count - 1 } : nil
                guard let s = header.tensors.first(where: { $0.name == q.scales }), s.dtype == .float32,
                    q.axis >= 0, q.axis < t.shape.count, s.count == csrRows ?? t.shape[q.axis]
                else {
                    throw CortadoError.model(
                        "\(path): tensor '\(t.name)' names scales '\(q.scales)' that are missing or of the wrong size")
                }
            }
        }
        return ModelFile(header: header, bytes: bytes, dataStart: dataStart)
    }

    public func tensor(_ name: String) -> Tensor? { header.tensors.first { $0.name == name } }

    /// Byte offset of the tensor data section in the file (tests that damage a tensor).
    public static func dataOffset(_ f: ModelFile) -> Int { f.dataStart }

    /// Copies a tensor's values out (the file stays mapped; layers copy into aligned buffers).
    public func values<E>(_ t: Tensor, as: E.Type) -> [E] {
        let n = t.nbytes / MemoryLayout<E>.stride
        return [E](unsafeUninitializedCapacity: n) { buf, count in
            bytes.withUnsafeBytes { raw in
                if n > 0 { memcpy(buf.baseAddress!, raw.baseAddress! + dataStart + t.offset, t.nbytes) }
            }
            count = n
        }
    }

    static func roundUp(_ n: Int) -> Int { (n + alignment - 1) / alignment * alignment }
}
