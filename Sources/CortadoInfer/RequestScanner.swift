import CortadoCore
import CortadoData

/// An inference request as sent, before its tensors are checked (`InferRequest.validate`).
struct WireRequest {
    var id: String?
    var inputs: [WireTensor]
    var outputs: [WireOutput]
    var parameters: RequestParameters
}

/// An output the client asks for, with what its parameters ask of it.
struct WireOutput {
    var name: String
    /// `parameters.binary_data` (the binary tensor data extension), where given.
    var binary: Bool?
    /// `parameters.classification` (the classification extension): the top this many classes.
    var classification: Int?
}

struct WireTensor {
    var name: String
    var shape: [Int]
    var datatype: String
    /// The values written in the JSON; nil when they follow it as binary data.
    var data: TensorValues?
    /// `parameters.binary_data_size`: the bytes of binary data this tensor's values take.
    var binarySize: Int?
}

/// A parameters object's values that mean something here: numbers (`top_k`) and booleans
/// (`binary_data_output`). Strings and nested values are skipped.
struct RequestParameters {
    var numbers = [String: Double]()
    var flags = [String: Bool]()
}

/// A strict single-pass JSON reader for the Open Inference Protocol request, over the raw body
/// bytes: it reads the request's own fields in place (no tree of values first) and appends
/// each number of `data` to one `[Double]` as it meets it. RFC 8259 grammar, nothing lenient:
/// no comments, trailing commas, leading zeros, single quotes or bare NaN; strings must be
/// valid UTF-8 with their escapes (surrogate pairs included) well formed.
///
/// What it accepts is what `JSONDecoder` accepted before it, plus two refusals: a field given
/// twice and a field the protocol does not define are 400s (they used to be ignored silently).
/// As before, the strings "NaN", "Infinity" and "-Infinity" in `data` or `parameters` are the
/// numbers they name, so the error says NaN rather than "not a number"; a `data` that is one
/// scalar is a tensor of one value. Errors name the field and, for syntax, the byte offset.
struct RequestScanner {
    let b: UnsafeBufferPointer<UInt8>
    var i = 0
    var n: Int { b.count }

    init(_ bytes: UnsafeRawBufferPointer) { b = bytes.bindMemory(to: UInt8.self) }

    /// The whole body: one object, nothing but white space after it.
    mutating func request() throws -> WireRequest {
        skipSpace()
        guard i < n else { throw CortadoError.usage("bad JSON: the body is empty") }
        guard byte == .lbrace else {
            try checkValueStart("")
            throw CortadoError.usage("bad JSON: the body must be a JSON object, not \(kind)")
        }
        var id: String?, inputs: [WireTensor]?, outputs = [WireOutput]()
        var parameters = RequestParameters()
        var seen: UInt8 = 0
        if try beginObject("") {
            repeat {
                let key = try self.key("")
                switch key {
                case "id":
                    try once(&seen, 1, key)
                    id = try isNull() ? nil : string("id")
                case "inputs":
                    try once(&seen, 2, key)
                    try notNull("inputs")
                    var list = [WireTensor]()
                    if try beginArray("inputs") {
                        repeat { list.append(try tensor("inputs[\(list.count)]")) } while try moreElements("inputs")
                    }
                    inputs = list
                case "outputs":
                    try once(&seen, 4, key)
                    if try !isNull(), try beginArray("outputs") {
                        repeat {
                            outputs.append(try output("outputs[\(outputs.count)]"))
                        } while try moreElements("outputs")
                    }
                case "parameters":
                    try once(&seen, 8, key)
                    if try !isNull() { parameters = try self.parameters("parameters") }
                default:
                    throw CortadoError.usage(
                        "unknown field '\(key.prefix(40))' (a request has id, inputs, outputs, parameters)")
                }
            } while try moreMembers("")
        }
        skipSpace()
        guard i == n else {
            throw CortadoError.usage(
                "bad JSON: unexpected data after the request object at byte \(i) (binary tensor data after the JSON needs the Inference-Header-Content-Length header)"
            )
        }
        guard let inputs else { throw CortadoError.usage("inputs: missing") }
        return WireRequest(
            id: id, inputs: inputs, outputs: outputs, parameters: parameters)
    }

    /// `{"name": …, "shape": […], "datatype": …, "data": […], "parameters": {…}}`; `data` may
    /// be left out when `parameters.binary_data_size` says the values follow the JSON.
    mutating func tensor(_ field: String) throws -> WireTensor {
        guard byte == .lbrace else { throw try wrongType(field, "an object") }
        var name: String?, shape: [Int]?, datatype: String?, data: TensorValues?, binarySize: Int?
        var seen: UInt8 = 0
        if try beginObject(field) {
            repeat {
                let key = try self.key(field)
                switch key {
                case "name":
                    try once(&seen, 1, key, in: field)
                    try notNull(field + ".name")
                    name = try string(field + ".name")
                case "shape":
                    try once(&seen, 2, key, in: field)
                    shape = try dimensions(field + ".shape")
                case "datatype":
                    try once(&seen, 4, key, in: field)
                    try notNull(field + ".datatype")
                    datatype = try string(field + ".datatype")
                case "data":
                    try once(&seen, 8, key, in: field)
                    // Room for the values the shape names (when it came first), never more
                    // than the rest of the body could hold.
                    var expected = 0
                    if let shape {
                        expected = 1
                        for d in shape { expected = expected.multipliedReportingOverflow(by: max(d, 0)).partialValue }
                    }
                    data = try values(field + ".data", capacity: max(0, min(expected, (n - i) / 2 + 1)))
                case "parameters":
                    try once(&seen, 16, key, in: field)
                    let f = field + ".parameters"
                    if byte != .lbrace {
                        try skipValue(f, depth: 0) // (not an object: nothing in it to read, as before)
                    } else if let x = try parameters(f).numbers["binary_data_size"] {
                        guard x >= 0, x == x.rounded(), x < 1e15 else {
                            throw CortadoError.usage("\(f).binary_data_size: \(x) is not a byte count")
                        }
                        binarySize = Int(x)
                    }
                default:
                    throw CortadoError.usage(
                        "\(field): unknown field '\(key.prefix(40))' (a tensor has name, shape, datatype, data, parameters)"
                    )
                }
            } while try moreMembers(field)
        }
        guard let name else { throw CortadoError.usage("\(field).name: missing") }
        guard let shape else { throw CortadoError.usage("\(field).shape: missing") }
        guard let datatype else { throw CortadoError.usage("\(field).datatype: missing") }
        switch (data, binarySize) {
        case (nil, nil):
            throw CortadoError.usage("\(field).data: missing (or parameters.binary_data_size for binary data)")
        case (.some, .some):
            throw CortadoError.usage("\(field): has both data and parameters.binary_data_size")
        default: break
        }
        return WireTensor(name: name, shape: shape, datatype: datatype, data: data, binarySize: binarySize)
    }

    /// `{"name": …, "parameters": {…}}`: an output the client asks for, with
    /// `parameters.binary_data` and `parameters.classification` where given.
    mutating func output(_ field: String) throws -> WireOutput {
        guard byte == .lbrace else { throw try wrongType(field, "an object") }
        var name: String?, binary: Bool?, classification: Int?, seen: UInt8 = 0
        if try beginObject(field) {
            repeat {
                let key = try self.key(field)
                switch key {
                case "name":
                    try once(&seen, 1, key, in: field)
                    try notNull(field + ".name")
                    name = try string(field + ".name")
                case "parameters":
                    try once(&seen, 2, key, in: field)
                    if byte == .lbrace {
                        let f = field + ".parameters", p = try parameters(f)
                        binary = p.flags["binary_data"]
                        if let k = p.numbers["classification"] {
                            guard k >= 1, k == k.rounded(), k < 1e9 else {
                                throw CortadoError.usage("\(f).classification: \(k) is not a class count")
                            }
                            classification = Int(k)
                        }
                    } else {
                        try skipValue(field + ".parameters", depth: 0)
                    }
                default:
                    throw CortadoError.usage(
                        "\(field): unknown field '\(key.prefix(40))' (an output has name, parameters)")
                }
            } while try moreMembers(field)
        }
        guard let name else { throw CortadoError.usage("\(field).name: missing") }
        return WireOutput(name: name, binary: binary, classification: classification)
    }

    /// A parameters object's numbers and booleans; values of other kinds are skipped. The
    /// shared-memory extension's parameters are refused.
    mutating func parameters(_ field: String) throws -> RequestParameters {
        guard byte == .lbrace else { throw try wrongType(field, "an object") }
        var out = RequestParameters(), skipped = [String]()
        if try beginObject(field) {
            repeat {
                let key = try self.key(field)
                // (Parameters are few: a look through what was read beats a Set's allocation.)
                guard out.numbers[key] == nil, out.flags[key] == nil, !skipped.contains(key) else {
                    throw CortadoError.usage("\(field).\(key.prefix(40)): given twice")
                }
                // Ignored, this would answer in the body while the client reads shared memory.
                guard !key.hasPrefix("shared_memory_") else {
                    throw CortadoError.usage(
                        "\(field).\(key.prefix(40)): the shared-memory extension is not supported; send the values in the body"
                    )
                }
                switch byte {
                case .minus, .zero ... .nine: out.numbers[key] = try number(field + "." + key)
                case .quote:
                    if let x = Self.nonFinite(try string(field + "." + key)) {
                        out.numbers[key] = x
                    } else {
                        skipped.append(key)
                    }
                case .t, .f:
                    switch try literal(field + "." + key) {
                    case .bool(let flag): out.flags[key] = flag
                    default: skipped.append(key)
                    }
                default:
                    try skipValue(field + "." + key, depth: 0)
                    skipped.append(key)
                }
            } while try moreMembers(field)
        }
        return out
    }

    /// A shape: an array of integers.
    mutating func dimensions(_ field: String) throws -> [Int] {
        guard byte == .lbracket else {
            if try isNull() { throw CortadoError.usage("\(field): is null") }
            throw try wrongType(field, "an array of integers")
        }
        var out = [Int]()
        if try beginArray(field) {
            repeat {
                let f = "\(field)[\(out.count)]"
                guard byte == .minus || (byte >= .zero && byte <= .nine) else { throw try wrongType(f, "an integer") }
                let x = try number(f)
                guard x == x.rounded(), abs(x) < 1e15 else {
                    throw CortadoError.usage("\(f): wrong type: \(x) is not an integer")
                }
                out.append(Int(x))
            } while try moreElements(field)
        }
        return out
    }

    /// A tensor's `data`: flat or nested (at most 8 levels, flattened row-major), numbers,
    /// strings, booleans and nulls. All numbers (the usual case) stay one `[Double]`; the first
    /// value of another kind turns the values read so far into `JSONScalar`s.
    mutating func values(_ field: String, capacity: Int) throws -> TensorValues {
        var sink = ValueSink()
        sink.numbers.reserveCapacity(capacity)
        try value(field, depth: 0, &sink)
        return sink.isMixed ? .mixed(sink.scalars) : .numbers(sink.numbers)
    }

    struct ValueSink {
        var numbers = [Double](), scalars = [JSONScalar](), isMixed = false
        var count: Int { isMixed ? scalars.count : numbers.count }

        mutating func append(_ x: Double) {
            if isMixed { scalars.append(.number(x)) } else { numbers.append(x) }
        }

        mutating func append(_ v: JSONScalar) {
            if case .number(let x) = v { return append(x) }
            if !isMixed {
                scalars = numbers.map { .number($0) }
                numbers = []
                isMixed = true
            }
            scalars.append(v)
        }
    }

    private mutating func value(_ field: String, depth: Int, _ sink: inout ValueSink) throws {
        switch byte {
        case .lbracket:
            guard depth < 8 else { throw CortadoError.usage("\(field): nested deeper than 8 levels") }
            i += 1
            skipSpace()
            if byte == .rbracket {
                i += 1
                return
            }
            while true {
                if !sink.isMixed { numberRun(&sink.numbers) }
                let c = byte
                if c == .minus || (c >= .zero && c <= .nine) {
                    sink.append(try number(field))
                } else {
                    try value(field, depth: depth + 1, &sink)
                }
                skipSpace()
                if byte == .comma {
                    i += 1
                    skipSpace()
                } else if byte == .rbracket {
                    i += 1
                    return
                } else {
                    throw expected("',' or ']'", field)
                }
            }
        case .minus, .zero ... .nine: sink.append(try number(field))
        case .quote:
            let s = try string(field)
            sink.append(Self.nonFinite(s).map { .number($0) } ?? .string(s))
        case .t, .f, .n: sink.append(try literal(field))
        default:
            throw try wrongType("\(field)[\(sink.count)]", "a number, string, boolean, null or array")
        }
    }

    static func nonFinite(_ s: String) -> Double? {
        switch s {
        case "NaN": return .nan
        case "Infinity": return .infinity
        case "-Infinity": return -.infinity
        default: return nil
        }
    }

    // MARK: JSON grammar

    @inline(__always) var byte: UInt8 { i < n ? b[i] : 0 }

    @inline(__always) mutating func skipSpace() {
        while i < n {
            let c = b[i]
            guard c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 else { return }
            i += 1
        }
    }

    /// A number (RFC 8259: `-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?`), its decimal digits
    /// gathered as it is checked. A mantissa of at most 19 digits that is exact in a double
    /// (≤ 2^53) and a power of ten within ±22 is Clinger's exact case (one multiply or divide
    /// of two exact doubles: correctly rounded); anything else goes to `parseDouble` (strtod),
    /// so every number gets strtod's bits. Out of range is ±Infinity, which the tensor check
    /// refuses; below range is 0 or subnormal.
    @inline(__always) mutating func number(_ field: String) throws -> Double {
        let start = i
        let negative = byte == .minus
        if negative { i += 1 }
        // `digits` counts every digit, a fraction's leading zeros too: it only has to show that
        // the mantissa did not wrap (≤ 19 digits); leading zeros add nothing to it.
        var mantissa: UInt64 = 0, digits = 0, scale = 0
        if byte == .zero {
            i += 1
        } else if byte >= .one && byte <= .nine {
            digits = digitRun(&mantissa)
        } else {
            throw syntax("a number", field, at: start)
        }
        if byte == .dot {
            i += 1
            guard byte >= .zero && byte <= .nine else { throw syntax("a digit after '.'", field, at: i) }
            let k = digitRun(&mantissa)
            digits += k
            scale = -k
        }
        if byte == .e || byte == .E {
            i += 1
            var negativeExponent = false
            if byte == .plus || byte == .minus {
                negativeExponent = byte == .minus
                i += 1
            }
            guard byte >= .zero && byte <= .nine else { throw syntax("a digit in the exponent", field, at: i) }
            var e = 0
            while i < n, b[i] >= .zero, b[i] <= .nine {
                if e < 100_000 { e = e * 10 + Int(b[i] &- .zero) }
                i += 1
            }
            scale += negativeExponent ? -e : e
        }
        if digits <= 19, mantissa <= 1 << 53, scale >= -22, scale <= 22 {
            // Exact in a double, so the signed conversion (one instruction where the unsigned
            // one was five at this target) loses nothing.
            let m = Double(Int64(truncatingIfNeeded: mantissa))
            let x = scale < 0 ? m / Self.powerOfTen(-scale) : m * Self.powerOfTen(scale)
            return negative ? -x : x
        }
        // The grammar above is a subset of what strtod reads whole, so this never fails.
        return parseDouble(UnsafeBufferPointer(rebasing: b[start..<i])) ?? .nan
    }

    /// The numbers at `i` that are each followed by a comma, appended to `numbers` while each is
    /// plain: `-?(0|[1-9]\d*)(\.\d+)?` within Clinger's exact case, as `number` reads it. Stops
    /// with `i` at the start of the first value that is not — the array's last number, one with
    /// an exponent, a string, a nested array, a syntax error — which `value` then reads as
    /// before, so the bits and the errors are `number`'s. What goes is the per-value work around
    /// the number: the call, the sink's kind check, the array's growth check (sixteen numbers
    /// to an append), and most bounds checks (the loop keeps 64 bytes of body ahead of `i`).
    mutating func numberRun(_ numbers: inout [Double]) {
        withUnsafeTemporaryAllocation(of: Double.self, capacity: 16) { chunk in
            var k = 0
            while n &- i >= 64 {
                let start = i
                guard let x = plainNumber(), byte == .comma else {
                    i = start
                    break
                }
                i &+= 1
                skipSpace()
                chunk[k] = x
                k &+= 1
                if k == 16 {
                    numbers.append(contentsOf: chunk)
                    k = 0
                }
            }
            numbers.append(contentsOf: chunk[..<k])
        }
    }

    /// `numberRun`'s number: the value when `i` starts a plain number (nil for anything else,
    /// `i` then anywhere in it). The first two bytes are inside the body (the caller's margin);
    /// after a digit run, which can reach the end, reads are checked.
    @inline(__always) mutating func plainNumber() -> Double? {
        let negative = b[i] == .minus
        if negative { i &+= 1 }
        var mantissa: UInt64 = 0, digits = 0, scale = 0
        let c = b[i]
        if c == .zero {
            i &+= 1
        } else if c >= .one && c <= .nine {
            digits = digitRun(&mantissa)
        } else {
            return nil
        }
        if byte == .dot {
            i &+= 1
            guard byte >= .zero && byte <= .nine else { return nil }
            let k = digitRun(&mantissa)
            digits &+= k
            scale = -k
        }
        let next = byte
        guard next != .e, next != .E, digits <= 19, mantissa <= 1 << 53 else { return nil }
        // `number`'s exact case with no exponent: the scale is -digits ≥ -19.
        let m = Double(Int64(truncatingIfNeeded: mantissa))
        let x = scale < 0 ? m / Self.powerOfTen(-scale) : m
        return negative ? -x : x
    }

    /// The run of decimal digits at `i` (at least one), appended to `mantissa` (wrapping past
    /// 19 digits; the caller then leaves it to strtod); returns how many there were.
    @inline(__always) mutating func digitRun(_ mantissa: inout UInt64) -> Int {
        let first = i
        while true {
            let (k, v) = eightDigits()
            mantissa = mantissa &* Self.integerPower(k) &+ v
            i &+= k
            if k < 8 { break }
        }
        while i < n, b[i] >= .zero, b[i] <= .nine {
            mantissa = mantissa &* 10 &+ UInt64(b[i] &- .zero)
            i &+= 1
        }
        return i &- first
    }

    /// The decimal digits at `i`, up to 8 of them, read in one step (SWAR, as simdjson's
    /// `parse_eight_digits_unrolled`): how many there are and their value. (0, 0) when fewer
    /// than 8 bytes are left; the byte-by-byte loops read those. Digit by digit, each digit of
    /// a row's 784 numbers (`0.603922`) waited for the multiply-add of the one before.
    @inline(__always) func eightDigits() -> (count: Int, value: UInt64) {
        guard n &- i >= 8, let base = b.baseAddress else { return (0, 0) }
        let w = UInt64(littleEndian: UnsafeRawPointer(base + i).loadUnaligned(as: UInt64.self))
        // Per byte, x = byte - '0' for digits; a byte is not a digit when x > 9, which sets its
        // high bit in x or in x + 0x76. Carries run only from a non-digit byte upwards, so the
        // lowest flagged byte is the first non-digit.
        let x = w ^ 0x3030_3030_3030_3030
        let flags = (x | (x &+ 0x7676_7676_7676_7676)) & 0x8080_8080_8080_8080
        let k = flags == 0 ? 8 : flags.trailingZeroBitCount >> 3
        guard k > 0 else { return (0, 0) }
        // The k digits to the top of the word (the first byte is the most significant digit),
        // zero bytes below them as leading zeros; then pairs, fours and eights of digits.
        var v = x &<< UInt64(8 &* (8 &- k))
        v = v &* 10 &+ (v >> 8)
        v =
            (((v & 0x0000_00FF_0000_00FF) &* 0x000F_4240_0000_0064)
                &+ (((v >> 16) & 0x0000_00FF_0000_00FF) &* 0x0000_2710_0000_0001)) >> 32
        return (k, v)
    }

    /// 10^k for k in 0…8, for `eightDigits`' runs, without a branch: a switch became a jump
    /// table, and its indirect jump was mispredicted whenever a number's digit count differed
    /// from the one before (most numbers of a row).
    @inline(__always) static func integerPower(_ k: Int) -> UInt64 {
        var p: UInt64 = k & 1 != 0 ? 10 : 1
        p &*= k & 2 != 0 ? 100 : 1
        p &*= k & 4 != 0 ? 10_000 : 1
        p &*= k & 8 != 0 ? 100_000_000 : 1
        return p
    }

    /// 10^k for k in 0…22: every one an exact double.
    @inline(__always) static func powerOfTen(_ k: Int) -> Double {
        switch k {
        case 0: return 1e0
        case 1: return 1e1
        case 2: return 1e2
        case 3: return 1e3
        case 4: return 1e4
        case 5: return 1e5
        case 6: return 1e6
        case 7: return 1e7
        case 8: return 1e8
        case 9: return 1e9
        case 10: return 1e10
        case 11: return 1e11
        case 12: return 1e12
        case 13: return 1e13
        case 14: return 1e14
        case 15: return 1e15
        case 16: return 1e16
        case 17: return 1e17
        case 18: return 1e18
        case 19: return 1e19
        case 20: return 1e20
        case 21: return 1e21
        default: return 1e22
        }
    }

    /// A string: the bytes up to the closing quote when there is no escape (the usual case),
    /// else decoded escape by escape. Control characters must be escaped; UTF-8 must be valid.
    mutating func string(_ field: String) throws -> String {
        guard byte == .quote else { throw try wrongType(field, "a string") }
        let open = i
        i += 1
        let start = i
        while i < n {
            let c = b[i]
            if c == .quote {
                i += 1
                return try utf8(UnsafeBufferPointer(rebasing: b[start..<(i - 1)]), field, at: open)
            }
            if c == .backslash || c < 0x20 { break }
            i += 1
        }
        var out = Array(b[start..<i])
        while true {
            guard i < n else {
                throw CortadoError.usage("bad JSON: \(prefix(field))unterminated string from byte \(open)")
            }
            let c = b[i]
            if c == .quote {
                i += 1
                break
            }
            guard c >= 0x20 else {
                throw CortadoError.usage(
                    "bad JSON: \(prefix(field))unescaped control character in a string at byte \(i)")
            }
            guard c == .backslash else {
                out.append(c)
                i += 1
                continue
            }
            i += 1
            let escape = byte
            i += 1
            switch escape {
            case .quote, .backslash, .slash: out.append(escape)
            case .b: out.append(0x08)
            case .f: out.append(0x0C)
            case .n: out.append(0x0A)
            case .r: out.append(0x0D)
            case .t: out.append(0x09)
            case .u:
                var scalar = try hex4(field)
                if scalar >= 0xD800 && scalar < 0xDC00 {
                    // A high surrogate is half of a pair: a low one must follow.
                    guard byte == .backslash, i + 1 < n, b[i + 1] == .u else {
                        throw CortadoError.usage(
                            "bad JSON: \(prefix(field))unpaired surrogate in a string at byte \(i)")
                    }
                    i += 2
                    let low = try hex4(field)
                    guard low >= 0xDC00 && low < 0xE000 else {
                        throw CortadoError.usage(
                            "bad JSON: \(prefix(field))unpaired surrogate in a string at byte \(i)")
                    }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if scalar >= 0xDC00 && scalar < 0xE000 {
                    throw CortadoError.usage("bad JSON: \(prefix(field))unpaired surrogate in a string at byte \(i)")
                }
                // Not a surrogate here, so always a scalar.
                guard let u = Unicode.Scalar(scalar) else {
                    throw CortadoError.usage("bad JSON: \(prefix(field))invalid \\u escape in a string at byte \(i)")
                }
                out.append(contentsOf: String(u).utf8)
            default:
                throw CortadoError.usage("bad JSON: \(prefix(field))invalid escape in a string at byte \(i - 2)")
            }
        }
        return try out.withUnsafeBufferPointer { try utf8($0, field, at: open) }
    }

    private mutating func hex4(_ field: String) throws -> UInt32 {
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = byte
            let d: UInt8
            switch c {
            case .zero ... .nine: d = c - .zero
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = c - UInt8(ascii: "A") + 10
            default: throw CortadoError.usage("bad JSON: \(prefix(field))invalid \\u escape in a string at byte \(i)")
            }
            v = v << 4 | UInt32(d)
            i += 1
        }
        return v
    }

    private func utf8(_ bytes: UnsafeBufferPointer<UInt8>, _ field: String, at: Int) throws -> String {
        guard let s = String(validating: bytes, as: UTF8.self) else {
            throw CortadoError.usage("bad JSON: \(prefix(field))invalid UTF-8 in the string at byte \(at)")
        }
        return s
    }

    /// `true`, `false` or `null`.
    private mutating func literal(_ field: String) throws -> JSONScalar {
        for (word, value) in [("true", JSONScalar.bool(true)), ("false", .bool(false)), ("null", .null)]
        where word.utf8.first == byte {
            guard n - i >= word.utf8.count, b[i..<(i + word.utf8.count)].elementsEqual(word.utf8) else { break }
            i += word.utf8.count
            return value
        }
        throw syntax("a value", field, at: i)
    }

    /// Consumes `null` when it is next.
    mutating func isNull() throws -> Bool {
        guard byte == .n else { return false }
        _ = try literal("")
        return true
    }

    mutating func notNull(_ field: String) throws {
        if try isNull() { throw CortadoError.usage("\(field): is null") }
    }

    /// Any JSON value, skipped (the tensors' and outputs' `parameters`); nesting is capped so a
    /// hostile body cannot recurse the reader off the stack.
    mutating func skipValue(_ field: String, depth: Int) throws {
        guard depth < 32 else { throw CortadoError.usage("\(field): nested deeper than 32 levels") }
        switch byte {
        case .lbrace:
            if try beginObject(field) {
                repeat {
                    _ = try key(field)
                    try skipValue(field, depth: depth + 1)
                } while try moreMembers(field)
            }
        case .lbracket:
            if try beginArray(field) {
                repeat { try skipValue(field, depth: depth + 1) } while try moreElements(field)
            }
        case .quote: _ = try string(field)
        case .minus, .zero ... .nine: _ = try number(field)
        default: _ = try literal(field)
        }
    }

    /// After `{`: false (and past `}`) for an empty object.
    mutating func beginObject(_ field: String) throws -> Bool {
        i += 1
        skipSpace()
        if byte == .rbrace {
            i += 1
            return false
        }
        return true
    }

    /// A member's key and its colon; the value is next.
    mutating func key(_ field: String) throws -> String {
        guard byte == .quote else { throw expected("a quoted field name", field) }
        let k = try string(field)
        skipSpace()
        guard byte == .colon else { throw expected("':'", field) }
        i += 1
        skipSpace()
        return k
    }

    /// After a member's value: true (and past the comma) when another member follows.
    mutating func moreMembers(_ field: String) throws -> Bool { try more(field, closing: .rbrace, "',' or '}'") }

    /// After an element: true (and past the comma) when another element follows.
    mutating func moreElements(_ field: String) throws -> Bool { try more(field, closing: .rbracket, "',' or ']'") }

    /// Past a comma (true) or the closing bracket (false); anything else is refused.
    private mutating func more(_ field: String, closing: UInt8, _ expectation: String) throws -> Bool {
        skipSpace()
        if byte == .comma {
            i += 1
            skipSpace()
            return true
        }
        guard byte == closing else { throw expected(expectation, field) }
        i += 1
        return false
    }

    /// After `[`: false (and past `]`) for an empty array; wrong types are refused.
    mutating func beginArray(_ field: String) throws -> Bool {
        guard byte == .lbracket else { throw try wrongType(field, "an array") }
        i += 1
        skipSpace()
        if byte == .rbracket {
            i += 1
            return false
        }
        return true
    }

    /// A field seen for the second time in one object is refused: which one counts is
    /// ambiguous, and JSON parsers disagree.
    func once(_ seen: inout UInt8, _ bit: UInt8, _ key: String, in field: String = "") throws {
        guard seen & bit == 0 else { throw CortadoError.usage("\(prefix(field, dot: true))\(key): given twice") }
        seen |= bit
    }

    // MARK: errors

    /// What starts at the cursor, for messages.
    var kind: String {
        switch byte {
        case .lbrace: return "an object"
        case .lbracket: return "an array"
        case .quote: return "a string"
        case .t, .f: return "a boolean"
        case .n: return "null"
        default: return "a number"
        }
    }

    /// A value of the wrong kind ("wrong type"), or a syntax error when no value starts here.
    func wrongType(_ field: String, _ wanted: String) throws -> CortadoError {
        try checkValueStart(field)
        return CortadoError.usage("\(field): wrong type: expected \(wanted), found \(kind)")
    }

    func checkValueStart(_ field: String) throws {
        switch byte {
        case .lbrace, .lbracket, .quote, .t, .f, .n, .minus, .zero ... .nine: return
        default: throw expected("a value", field)
        }
    }

    func expected(_ what: String, _ field: String) -> CortadoError {
        syntax(what, field, at: i)
    }

    func syntax(_ what: String, _ field: String, at: Int) -> CortadoError {
        guard at < n else {
            return CortadoError.usage("bad JSON: \(prefix(field))the body ends where \(what) should be (byte \(at))")
        }
        let c = b[at]
        let found = c >= 0x20 && c < 0x7F ? "'\(Character(Unicode.Scalar(c)))'" : "byte 0x\(String(c, radix: 16))"
        return CortadoError.usage("bad JSON: \(prefix(field))expected \(what) at byte \(at), found \(found)")
    }

    func prefix(_ field: String, dot: Bool = false) -> String {
        field.isEmpty ? "" : field + (dot ? "." : ": ")
    }
}

extension UInt8 {
    fileprivate static let lbrace = UInt8(ascii: "{"), rbrace = UInt8(ascii: "}")
    fileprivate static let lbracket = UInt8(ascii: "["), rbracket = UInt8(ascii: "]")
    fileprivate static let quote = UInt8(ascii: "\""), backslash = UInt8(ascii: "\\"), slash = UInt8(ascii: "/")
    fileprivate static let comma = UInt8(ascii: ","), colon = UInt8(ascii: ":"), dot = UInt8(ascii: ".")
    fileprivate static let minus = UInt8(ascii: "-"), plus = UInt8(ascii: "+")
    fileprivate static let zero = UInt8(ascii: "0"), one = UInt8(ascii: "1"), nine = UInt8(ascii: "9")
    fileprivate static let e = UInt8(ascii: "e"), E = UInt8(ascii: "E")
    fileprivate static let t = UInt8(ascii: "t"), f = UInt8(ascii: "f"), n = UInt8(ascii: "n")
    fileprivate static let b = UInt8(ascii: "b"), r = UInt8(ascii: "r"), u = UInt8(ascii: "u")
}
