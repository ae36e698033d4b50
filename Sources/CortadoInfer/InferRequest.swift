import CortadoCore
import CortadoData
import Foundation

/// An Open Inference Protocol (KServe v2) inference request as JSON bytes decode it: the
/// request id, the input tensors and the request's parameters. Knows nothing of HTTP; the
/// server hands it the body and turns a thrown `CortadoError` into a 400 naming the field.
///
///     {"id": "r1", "parameters": {"top_k": 5},
///      "inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": [1, 2, …]}]}
public struct InferRequest {
    public var id: String?
    public var inputs: [InferTensor]
    /// Output names the client asked for (`outputs[].name`); empty means all.
    public var outputs: [String]
    /// Request-level parameters with number values (`top_k`); others are ignored.
    public var parameters: [String: Double]
    /// `outputs[].parameters.binary_data` by output name, where the client set it.
    var binaryOutputs: [String: Bool] = [:]
    /// `outputs[].parameters.classification` by output name: the classification extension's
    /// top-K classes, as `"probability:index:label"` strings, instead of the tensor.
    public var classCounts: [String: Int] = [:]
    /// The request's `parameters.binary_data_output`: binary for the outputs not named above.
    var binaryOutputDefault = false

    /// Whether output `name` goes back as binary data after the JSON (the binary tensor data
    /// extension of Triton's HTTP protocol, which `tritonclient` uses by default).
    public func wantsBinary(_ name: String) -> Bool { binaryOutputs[name] ?? binaryOutputDefault }

    /// Decodes a request body. Errors name the field: `inputs[1].shape: …`.
    public static func parse(_ body: Data, headerLength: Int? = nil) throws -> InferRequest {
        try body.withUnsafeBytes { try parse(bytes: $0, headerLength: headerLength) }
    }

    /// Decodes a request body in one pass over its bytes (`RequestScanner`): no JSON tree, no
    /// `Decodable` machinery, each number read straight from the bytes into the data array —
    /// a 784-number row took most of a served request's time through `JSONDecoder`.
    ///
    /// `headerLength` is the `Inference-Header-Content-Length` header of the binary tensor data
    /// extension: the JSON is the body's first `headerLength` bytes, and the inputs with
    /// `parameters.binary_data_size` take their values, in order, from the bytes after it.
    public static func parse(bytes: UnsafeRawBufferPointer, headerLength: Int? = nil) throws -> InferRequest {
        let jsonLength = headerLength ?? bytes.count
        guard jsonLength >= 0, jsonLength <= bytes.count else {
            throw CortadoError.usage(
                "Inference-Header-Content-Length: \(jsonLength) is not within the body's \(bytes.count) bytes")
        }
        var scanner = RequestScanner(UnsafeRawBufferPointer(rebasing: bytes[..<jsonLength]))
        var wire = try scanner.request()
        guard !wire.inputs.isEmpty else { throw CortadoError.usage("inputs: at least one input tensor is required") }
        try attachBinary(&wire.inputs, UnsafeRawBufferPointer(rebasing: bytes[jsonLength...]), headerLength != nil)
        var inputs = [InferTensor]()
        for (i, t) in wire.inputs.enumerated() {
            inputs.append(try validate(t, field: "inputs[\(i)]"))
        }
        var r = InferRequest(
            id: wire.id, inputs: inputs, outputs: wire.outputs.map(\.name), parameters: wire.parameters.numbers)
        r.binaryOutputDefault = wire.parameters.flags["binary_data_output"] ?? false
        for o in wire.outputs {
            if let b = o.binary { r.binaryOutputs[o.name] = b }
            if let k = o.classification { r.classCounts[o.name] = k }
        }
        return r
    }

    /// Gives each input with `binary_data_size` its values from `tail`, in input order; the
    /// sizes must account for every byte of it.
    static func attachBinary(_ inputs: inout [WireTensor], _ tail: UnsafeRawBufferPointer, _ hasHeader: Bool) throws {
        var at = 0
        for (k, t) in inputs.enumerated() {
            guard let size = t.binarySize else { continue }
            let field = "inputs[\(k)].parameters.binary_data_size"
            guard hasHeader else {
                throw CortadoError.usage("\(field): binary data needs the Inference-Header-Content-Length header")
            }
            guard size <= tail.count - at else {
                throw CortadoError.usage(
                    "\(field): \(size) bytes, but only \(tail.count - at) of binary data are left after the JSON")
            }
            let type = try datatype(t, field: "inputs[\(k)]")
            let count = try elementCount(t.shape, field: "inputs[\(k)]")
            let values = try BinaryTensor.values(
                UnsafeRawBufferPointer(rebasing: tail[at..<(at + size)]), type: type, count: count, field: field)
            inputs[k].data = values
            at += size
        }
        guard at == tail.count else {
            throw CortadoError.usage(
                "Inference-Header-Content-Length: \(tail.count - at) bytes after the JSON belong to no input's binary_data_size"
            )
        }
    }

    /// The values a shape holds: 1 to 8 dimensions, each and their product in range.
    static func elementCount(_ shape: [Int], field: String) throws -> Int {
        guard !shape.isEmpty, shape.count <= 8 else {
            throw CortadoError.usage("\(field).shape: \(shape) must have 1 to 8 dimensions")
        }
        var count = 1
        for d in shape {
            guard d >= 0, d <= 1 << 24 else {
                throw CortadoError.usage("\(field).shape: dimension \(d) out of range")
            }
            count = count.multipliedReportingOverflow(by: d).partialValue
            guard count <= 1 << 26 else { throw CortadoError.usage("\(field).shape: \(shape) is too large") }
        }
        return count
    }

    static func datatype(_ t: WireTensor, field: String) throws -> InferTensor.DataType {
        guard let type = InferTensor.DataType(rawValue: t.datatype) else {
            throw CortadoError.usage(
                "\(field).datatype: '\(t.datatype.prefix(40))' is not one of \(InferTensor.DataType.allCases.map(\.rawValue).joined(separator: ", "))"
            )
        }
        return type
    }

    /// A tensor as sent, checked: 1 to 8 dimensions, a known datatype, as many values as the
    /// shape says, finite numbers (integers for integer datatypes), strings only for BYTES.
    static func validate(_ t: WireTensor, field: String) throws -> InferTensor {
        let count = try elementCount(t.shape, field: field)
        let type = try datatype(t, field: field)
        // (`attachBinary` has given every binary input its values by now.)
        guard let data = t.data else { throw CortadoError.usage("\(field).data: missing") }
        guard data.count == count else {
            throw CortadoError.usage(
                "\(field).data: \(data.count) values for shape \(t.shape) (\(count) expected)")
        }
        switch (type, data) {
        case (.bytes, .numbers): throw CortadoError.usage("\(field).data: datatype BYTES needs strings")
        case (.bytes, _): break
        case (_, .numbers(let v)):
            if let j = v.firstIndex(where: { !$0.isFinite }) {
                throw CortadoError.usage("\(field).data[\(j)]: \(v[j]) is not a finite number")
            }
            if type.isInteger, let j = v.firstIndex(where: { $0 != $0.rounded() }) {
                throw CortadoError.usage(
                    "\(field).data[\(j)]: \(v[j]) is not an integer (datatype \(type.rawValue))")
            }
        case (_, .mixed(let v)):
            // null is a missing value (raw columns impute it); strings need BYTES.
            if let j = v.firstIndex(where: {
                switch $0 {
                case .number, .null: return false
                default: return true
                }
            }) {
                throw CortadoError.usage(
                    "\(field).data[\(j)]: \(v[j]) is not a number (datatype \(type.rawValue); send BYTES for strings)"
                )
            }
        }
        return InferTensor(name: t.name, shape: t.shape, datatype: type, data: data)
    }
}

/// One input tensor: name, shape, datatype and its values, row-major.
public struct InferTensor {
    public enum DataType: String, CaseIterable {
        case fp32 = "FP32", fp64 = "FP64", fp16 = "FP16", int8 = "INT8", int16 = "INT16", int32 = "INT32",
            int64 = "INT64", uint8 = "UINT8", uint16 = "UINT16", uint32 = "UINT32", uint64 = "UINT64", bool = "BOOL",
            bytes = "BYTES"
        var isInteger: Bool { self != .fp32 && self != .fp64 && self != .fp16 && self != .bytes && self != .bool }
    }
    public var name: String
    public var shape: [Int]
    public var datatype: DataType
    public var data: TensorValues
    /// The first dimension: the rows of the batch.
    public var rows: Int { shape[0] }
}

/// A tensor's values: all numbers (the fast path) or anything else, element by element.
public enum TensorValues {
    case numbers([Double])
    case mixed([JSONScalar])

    public var count: Int {
        switch self {
        case .numbers(let v): return v.count
        case .mixed(let v): return v.count
        }
    }

    public subscript(i: Int) -> JSONScalar {
        switch self {
        case .numbers(let v): return .number(v[i])
        case .mixed(let v): return v[i]
        }
    }
}

/// A JSON leaf value.
public enum JSONScalar: CustomStringConvertible {
    case number(Double), string(String), bool(Bool), null

    public var description: String {
        switch self {
        case .number(let x): return "\(x)"
        case .string(let s): return "'\(s.prefix(40))'"
        case .bool(let b): return "\(b)"
        case .null: return "null"
        }
    }
}

/// What a model takes, as the server decodes requests for it: the encoded feature rows of a
/// classifier (directly as one tensor, or as raw named columns through the transforms the
/// model file carries) or the user ids of a recommender.
public struct RequestDecoder {
    public let inputSize: Int
    public let inputShape: [Int]
    /// The model's raw columns when it was trained on CSV (nil otherwise).
    let preprocessing: Preprocessing?
    let encoder: RowEncoder?
    let featureColumns: [Int]
    let parser: RowParser?

    public init(inputShape: [Int], preprocessingJSON: String?) {
        inputSize = inputShape.reduce(1, *)
        self.inputShape = inputShape
        let pre = preprocessingJSON.flatMap { try? JSONDecoder().decode(Preprocessing.self, from: Data($0.utf8)) }
        preprocessing = pre
        encoder = pre.map { RowEncoder(columns: $0.columns) }
        featureColumns = pre?.columns.indices.filter { pre!.columns[$0].role == "feature" } ?? []
        parser = pre.map {
            RowParser(columns: $0.columns, labelIndex: nil, regression: false, missingTokens: $0.csv.missingValues)
        }
    }

    /// The raw columns a CSV-trained model reads (name, "numeric"/"categorical"), else empty.
    public var columns: [(name: String, type: String)] {
        featureColumns.map { (preprocessing!.columns[$0].name, preprocessing!.columns[$0].schema.type.rawValue) }
    }

    /// The rows of the request as features (rows, inputSize), row-major.
    public func features(_ r: InferRequest) throws -> (rows: Int, x: [Float]) {
        if r.inputs.count == 1, preprocessing == nil || r.inputs[0].name == "input" {
            return try tensorRows(r.inputs[0], field: "inputs[0]")
        }
        guard let pre = preprocessing, let encoder, let parser else {
            throw CortadoError.usage("inputs: this model takes one tensor 'input' of shape [rows, \(inputSize)]")
        }
        // Raw columns, one tensor per column of shape [rows] or [rows, 1].
        var byColumn = [Int: Int]() // column index → input index
        let rows = r.inputs[0].rows
        for (i, t) in r.inputs.enumerated() {
            guard let j = pre.columns.firstIndex(where: { $0.name == t.name }) else {
                throw CortadoError.usage(
                    "inputs[\(i)].name: unknown column '\(t.name.prefix(60))' (the model reads: \(columns.map(\.name).joined(separator: ", ")))"
                )
            }
            guard t.shape == [rows] || t.shape == [rows, 1] else {
                throw CortadoError.usage("inputs[\(i)].shape: \(t.shape); a column is [\(rows)] or [\(rows), 1]")
            }
            guard byColumn[j] == nil else {
                throw CortadoError.usage("inputs[\(i)].name: column '\(t.name)' given twice")
            }
            byColumn[j] = i
        }
        for j in featureColumns where byColumn[j] == nil {
            throw CortadoError.usage("inputs: column '\(pre.columns[j].name)' that the model needs is missing")
        }
        let d = encoder.featureCount
        var x = [Float](repeating: 0, count: rows * d)
        var row = parser.makeRow()
        var scratch = [Int64](repeating: 0, count: max(encoder.categoricalCount, 1))
        for n in 0..<rows {
            row.dropReason = nil
            row.missingColumns.removeAll(keepingCapacity: true)
            for j in featureColumns {
                let i = byColumn[j]!, v = r.inputs[i].data[n], c = pre.columns[j]
                row.numbers[j] = nil
                row.strings[j] = nil
                switch (c.schema.type, v) {
                case (_, .null): row.missingColumns.append(j)
                case (.numeric, .number(let x)): row.numbers[j] = x
                case (.numeric, .string(let s)):
                    if s.isEmpty || pre.csv.missingValues.contains(s) {
                        row.missingColumns.append(j)
                    } else if let x = Array(s.utf8).withUnsafeBufferPointer({ parseDouble($0) }), x.isFinite {
                        row.numbers[j] = x
                    } else {
                        throw CortadoError.usage(
                            "inputs[\(i)].data[\(n)]: column '\(c.name)': '\(s.prefix(40))' is not a finite number")
                    }
                case (.categorical, .string(let s)):
                    if s.isEmpty || pre.csv.missingValues.contains(s) {
                        row.missingColumns.append(j)
                    } else {
                        row.strings[j] = s
                    }
                case (.categorical, .number(let x)):
                    // A category written as a number in the CSV ("3") is that text.
                    row.strings[j] = x == x.rounded() && abs(x) < 1e15 ? String(Int64(x)) : "\(x)"
                default:
                    throw CortadoError.usage(
                        "inputs[\(i)].data[\(n)]: column '\(c.name)': \(v) is not a value it takes")
                }
            }
            x.withUnsafeMutableBufferPointer { xb in
                scratch.withUnsafeMutableBufferPointer {
                    encoder.encode(row, features: xb.baseAddress! + n * d, categorical: $0.baseAddress!)
                }
            }
        }
        return (rows, x)
    }

    /// One numeric tensor [rows, inputSize] or [rows, inputShape…] as feature rows.
    func tensorRows(_ t: InferTensor, field: String) throws -> (rows: Int, x: [Float]) {
        guard t.datatype != .bytes else {
            throw CortadoError.usage("\(field).datatype: BYTES; this input takes numbers (FP32)")
        }
        guard t.shape.count >= 2, Array(t.shape.dropFirst()).reduce(1, *) == inputSize,
            t.shape.count == 2 || Array(t.shape.dropFirst()) == inputShape
        else {
            throw CortadoError.usage(
                "\(field).shape: \(t.shape); the model takes [rows, \(inputSize)]"
                    + (inputShape.count > 1 ? " or [rows, \(inputShape.map(String.init).joined(separator: ", "))]" : "")
            )
        }
        guard case .numbers(let v) = t.data else {
            throw CortadoError.usage("\(field).data: numbers expected (null is a missing value only in raw columns)")
        }
        return (t.shape[0], v.map { Float($0) })
    }
}
