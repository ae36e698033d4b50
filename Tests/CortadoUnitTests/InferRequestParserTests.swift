import CortadoCore
import CortadoInfer
import CortadoTestSupport
import Foundation
import XCTest

/// The server's request reader (`InferRequest.parse`, a single-pass JSON scanner): numbers
/// get strtod's bits, the JSON grammar is strict, strings decode every escape, nesting is
/// capped, and every refusal is one line naming the field.
final class InferRequestParserTests: XCTestCase {
    func parse(_ body: String) throws -> InferRequest { try InferRequest.parse(Data(body.utf8)) }

    /// A one-tensor request around `data` (a JSON array text) of `count` FP64 values.
    func tensor(_ data: String, count: Int, datatype: String = "FP64") -> String {
        "{\"inputs\":[{\"name\":\"input\",\"shape\":[\(count)],\"datatype\":\"\(datatype)\",\"data\":\(data)}]}"
    }

    func numbers(_ data: String, count: Int, file: StaticString = #filePath, line: UInt = #line) throws -> [Double] {
        let r = try parse(tensor(data, count: count))
        guard case .numbers(let v) = r.inputs[0].data else {
            XCTFail("\(data): not all numbers", file: file, line: line)
            return []
        }
        return v
    }

    func fails(_ body: String, _ mentions: String, file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try parse(body)
            XCTFail("accepted: \(body.prefix(120))", file: file, line: line)
        } catch let e as CortadoError {
            XCTAssertTrue(
                e.message.contains(mentions), "'\(e.message)' should mention '\(mentions)'", file: file, line: line)
            XCTAssertFalse(e.message.contains("\n"), "one line: \(e.message)", file: file, line: line)
        } catch {
            XCTFail("not a CortadoError: \(error)", file: file, line: line)
        }
    }

    func testNumbersHaveStrtodBits() throws {
        let texts = [
            "0", "-0", "0.0", "-0.0", "1", "-1", "0.5", "1e2", "1E2", "1e+2", "1e-2", "2.5E-3", "123456789012345",
            "1234567890123456789", "0.1", "0.30000000000000004", "3.141592653589793", "1e22", "1e23",
            "9007199254740993",
            "1.7976931348623157e308", "2.2250738585072014e-308", "2.2250738585072011e-308", "4.9e-324", "5e-324",
            "1e-400", "0.000001", "0.123456", "100e-2", "0e99999", "1e-99999", "12345678901234567890e-10",
            // The exact case's edges: a mantissa of 2^53 (in) and 2^53 + 1 with a fraction (out), 19
            // digits counting a fraction's leading zeros (in) and 20 (out), a 20-digit mantissa
            // that wraps an unsigned 64-bit integer.
            "9007199254740992", "9007199254740992e-22", "900719925474099.3", "0.000000000000000001",
            "0.0000000000000000001", "0.00000000000000000123", "18446744073709551617", "18446744073709551617e-5"
        ]
        let got = try numbers("[" + texts.joined(separator: ",") + "]", count: texts.count)
        for (t, x) in zip(texts, got) {
            XCTAssertEqual(x.bitPattern, Double(t)!.bitPattern, "\(t) read as \(x)")
        }
        XCTAssertEqual(got[1].sign, .minus, "-0 keeps its sign")
        XCTAssertEqual(got[23], Double.leastNonzeroMagnitude, "subnormals are read, not flushed")
        // Random doubles and floats in their shortest form (what clients' encoders write): bit
        // for bit what strtod gives.
        var rng = SeededRNG(seed: 5)
        var texts2 = [String]()
        for k in 0..<3000 {
            let bits = UInt64(rng.below(1 << 31)) << 33 | UInt64(rng.below(1 << 31)) << 2 | UInt64(k & 3)
            let d = Double(bitPattern: bits)
            if d.isFinite { texts2.append("\(d)") }
            let f = Float(rng.below(1 << 20)) / Float(1 + rng.below(1000)) - 300
            texts2.append("\(f)")
        }
        let got2 = try numbers("[" + texts2.joined(separator: ", ") + "]", count: texts2.count)
        XCTAssertEqual(got2.map(\.bitPattern), texts2.map { Double($0)!.bitPattern })
    }

    /// Digits are read eight at a time where eight bytes remain: runs of every length 1…20 in
    /// the integer part and the fraction (leading zeros in fractions, which are not
    /// significant), with and without exponents, get strtod's bits; so do the same numbers as
    /// the last value of a body, where fewer than eight bytes are left.
    func testDigitRunsOfEveryLength() throws {
        var rng = SeededRNG(seed: 11)
        func digits(_ count: Int, first: ClosedRange<Int> = 0...9) -> String {
            (0..<count).map { j in String(j == 0 ? first.lowerBound + rng.below(first.count) : rng.below(10)) }.joined()
        }
        var texts = [String]()
        for intLen in 1...20 {
            for fracLen in 0...20 {
                let int = intLen == 1 && rng.below(3) == 0 ? "0" : digits(intLen, first: 1...9)
                let zeros = String(repeating: "0", count: fracLen > 2 ? rng.below(fracLen) : 0)
                let frac = fracLen == 0 ? "" : "." + zeros + digits(max(1, fracLen - zeros.count))
                let exp = rng.below(3) == 0 ? "e\(rng.below(40) - 20)" : ""
                texts.append((rng.below(2) == 0 ? "-" : "") + int + frac + exp)
            }
        }
        texts += [
            "0.00000000", "0.000000001", "12345678", "123456789", "0.12345678", "0.123456789", "99999999.99999999"
        ]
        let got = try numbers("[" + texts.joined(separator: ",") + "]", count: texts.count)
        XCTAssertEqual(got.count, texts.count)
        for (t, x) in zip(texts, got) {
            XCTAssertEqual(x.bitPattern, Double(t)!.bitPattern, "\(t) read as \(x)")
        }
        for t in texts.suffix(40) {
            let last = try numbers("[1," + t + "]", count: 2)
            XCTAssertEqual(last.last?.bitPattern, Double(t)!.bitPattern, "\(t) at the end")
            let alone = try parse(
                "{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP64\",\"data\":" + t + "}]}")
            guard case .numbers(let v) = alone.inputs[0].data else { return XCTFail(t) }
            XCTAssertEqual(v.first?.bitPattern, Double(t)!.bitPattern, "\(t) as a scalar")
        }
    }

    /// A value inside a long run of numbers (the reader's fast loop, `numberRun`) reads as it
    /// does alone: the same bits, the same kind, the same error at the same field and byte.
    func testValuesInLongRunsReadAsAlone() throws {
        let pad = Array(repeating: "0.5", count: 30).joined(separator: ", ")
        let head = pad + ", "
        /// The values (numbers as bit patterns, mixed as descriptions) or the error.
        func outcome(_ data: String, count: Int, datatype: String) -> (kind: String, values: [String]) {
            do {
                let v = try parse(tensor(data, count: count, datatype: datatype)).inputs[0].data
                guard case .numbers(let x) = v else { return ("mixed", (0..<v.count).map { v[$0].description }) }
                return ("numbers", x.map { String($0.bitPattern, radix: 16) })
            } catch let e as CortadoError {
                return ("error", [e.message])
            } catch {
                return ("error", ["\(error)"])
            }
        }
        // An error alone, moved to where the long body has it: 30 values and `head`'s bytes on,
        // and `bytes` more before the data (the shape's count is longer).
        func shifted(_ message: String, bytes: Int) -> String {
            var out = message
            for (pattern, by) in [(#"data\[(\d+)\]"#, 30), (#"byte (\d+)"#, head.utf8.count + bytes)] {
                let re = try! NSRegularExpression(pattern: pattern)
                for m in re.matches(in: out, range: NSRange(out.startIndex..., in: out)).reversed() {
                    let r = Range(m.range(at: 1), in: out)!
                    out.replaceSubrange(r, with: String(Int(out[r])! + by))
                }
            }
            return out
        }
        for (value, count, datatype) in [
            ("1", 1, "FP64"), ("-0", 1, "FP64"), ("0.25", 1, "FP64"), ("-12.5", 1, "FP64"), ("1e3", 1, "FP64"),
            ("2.5E-3", 1, "FP64"), ("12345678901234567890", 1, "FP64"), ("0.1234567890123456789012", 1, "FP64"),
            ("9007199254740993", 1, "FP64"), ("99999999.99999999", 1, "FP64"), ("1 ", 1, "FP64"),
            ("\t5\n", 1, "FP64"), ("[1, 2.5]", 2, "FP64"), ("[]", 0, "FP64"), ("\"NaN\"", 1, "FP64"),
            ("null", 1, "BYTES"), ("\"red\"", 1, "BYTES"), ("true", 1, "BYTES"),
            ("01", 1, "FP64"), ("1.", 1, "FP64"), (".5", 1, "FP64"), ("+1", 1, "FP64"), ("1e", 1, "FP64"),
            ("-", 1, "FP64"), ("--1", 1, "FP64"), ("0x10", 1, "FP64"), ("1.5.2", 1, "FP64"), ("1 2", 1, "FP64"),
            ("", 0, "FP64"), ("tru", 1, "BYTES")
        ] {
            let alone = outcome("[\(value), 0.5]", count: count + 1, datatype: datatype)
            let long = outcome("[" + head + value + ", " + pad + "]", count: count + 60, datatype: datatype)
            XCTAssertEqual(long.kind, alone.kind, value)
            if alone.kind == "error" {
                let bytes = String(count + 60).count - String(count + 1).count
                XCTAssertEqual(long.values, alone.values.map { shifted($0, bytes: bytes) }, value)
            } else {
                let half = Array(repeating: alone.values.last!, count: 30) // 0.5 as this kind writes it
                XCTAssertEqual(long.values, half + alone.values.dropLast() + half, value)
            }
        }
    }

    func testOutOfRangeAndNonFiniteAreRefusedByPosition() {
        fails(tensor("[1, 1e309]", count: 2), "inputs[0].data[1]: inf is not a finite number")
        fails(tensor("[-1e400]", count: 1), "inputs[0].data[0]: -inf is not a finite number")
        fails(tensor("[0, 0, \"NaN\"]", count: 3), "inputs[0].data[2]: nan is not a finite number")
        fails(tensor("[\"Infinity\"]", count: 1), "inputs[0].data[0]: inf is not a finite number")
        fails(tensor("[\"-Infinity\"]", count: 1), "inputs[0].data[0]: -inf is not a finite number")
    }

    func testBadNumberTokensAreBadJSON() {
        for bad in [
            "01", "1.", ".5", "+1", "1e", "1e+", "-", "--1", "NaN", "Infinity", "-Infinity", "0x10", "1.5.2", "1,",
            "1 2", "1e5e5", "tru", "nul"
        ] {
            fails(tensor("[\(bad)]", count: 1), "bad JSON")
        }
        fails(tensor("[1,,2]", count: 2), "bad JSON: inputs[0].data[1]: expected a value")
    }

    func testNestedDataIsFlattenedRowMajorAndCapped() throws {
        XCTAssertEqual(try numbers("[[1, 2], [3, 4], []]", count: 4), [1, 2, 3, 4])
        XCTAssertEqual(try numbers("7.5", count: 1), [7.5], "a scalar is a one-value tensor")
        let eight = String(repeating: "[", count: 8) + "1" + String(repeating: "]", count: 8)
        XCTAssertEqual(try numbers(eight, count: 1), [1])
        let nine = String(repeating: "[", count: 9) + "1" + String(repeating: "]", count: 9)
        fails(tensor(nine, count: 1), "inputs[0].data: nested deeper than 8 levels")
        // A hostile depth is an error, not a stack overflow, wherever it is.
        let deep = String(repeating: "[", count: 100_000)
        fails(tensor(deep, count: 1), "nested deeper than 8 levels")
        fails("{\"parameters\":{\"x\":\(deep)}, \"inputs\":[]}", "parameters.x: nested deeper than 32 levels")
        fails(
            "{\"inputs\":[{\"name\":\"a\",\"parameters\":\(deep)}]}",
            "inputs[0].parameters: nested deeper than 32 levels")
        fails(tensor("[1, {\"a\": 1}]", count: 2), "inputs[0].data[1]: wrong type")
    }

    func testMixedValuesKeepTheirPositions() throws {
        let r = try parse(tensor("[1.5, null, \"red\", true, 2]", count: 5, datatype: "BYTES"))
        guard case .mixed(let v) = r.inputs[0].data else { return XCTFail("numbers") }
        XCTAssertEqual(v.map(\.description), ["1.5", "null", "'red'", "true", "2.0"])
        fails(tensor("[1, 2, \"red\"]", count: 3), "inputs[0].data[2]: 'red' is not a number (datatype FP64")
        fails(tensor("[1, 2, 3]", count: 3, datatype: "BYTES"), "inputs[0].data: datatype BYTES needs strings")
        fails(
            tensor("[1, 2.5]", count: 2, datatype: "INT64"), "inputs[0].data[1]: 2.5 is not an integer (datatype INT64)"
        )
        XCTAssertEqual(try parse(tensor("[1, null]", count: 2)).inputs[0].data.count, 2, "null is a missing value")
    }

    func testStringsDecodeEveryEscapeAndRefuseBadText() throws {
        let r = try parse(
            #"{"\u0069d":"q\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00é","inputs":[{"name":"a","shape":[1],"datatype":"FP32","data":[1]}]}"#
        )
        XCTAssertEqual(r.id, "q\"\\/\u{8}\u{c}\n\r\té😀é")
        let t = #","inputs":[{"name":"a","shape":[1],"datatype":"FP32","data":[1]}]}"#
        fails(#"{"id":"\ud83d"# + "\"" + t, "bad JSON: id: unpaired surrogate")
        fails(#"{"id":"\ude00"# + "\"" + t, "unpaired surrogate")
        fails(#"{"id":"\x"# + "\"" + t, "bad JSON: id: invalid escape")
        fails(#"{"id":"\u12g4"# + "\"" + t, "invalid \\u escape")
        fails("{\"id\":\"a\u{1}b\"" + t, "unescaped control character")
        fails("{\"id\":\"abc", "bad JSON: id: unterminated string")
        var bytes = Array("{\"id\":\"a".utf8) + [0xC3, 0x28] + Array(("\"" + t).utf8)
        XCTAssertThrowsError(try InferRequest.parse(Data(bytes))) {
            XCTAssertTrue("\($0)".contains("invalid UTF-8"), "\($0)")
        }
        bytes = Array("{\"id\":\"".utf8) + [0xED, 0xA0, 0x80] + Array(("\"" + t).utf8) // an encoded surrogate
        XCTAssertThrowsError(try InferRequest.parse(Data(bytes)))
    }

    func testRequestFields() throws {
        let r = try parse(
            """
            {"id": null, "parameters": {"top_k": 3, "note": "x", "deep": {"a": [1, {"b": null}]}, "t": true, "nan": "NaN"},
             "outputs": [{"name": "class", "parameters": {"binary_data": false}}, {"name": "predicted"}],
             "inputs": [{"name": "input", "shape": [2, 2], "datatype": "FP32", "parameters": {}, "data": [[1, 2], [3, 4]]}]}
            """)
        XCTAssertNil(r.id)
        XCTAssertEqual(r.parameters["top_k"], 3)
        XCTAssertNil(r.parameters["note"], "only number parameters are kept")
        XCTAssertTrue(r.parameters["nan"]?.isNaN ?? false, "\"NaN\" is the number, so top_k: \"NaN\" is refused")
        XCTAssertEqual(r.outputs, ["class", "predicted"])
        XCTAssertEqual(r.inputs[0].shape, [2, 2])
        XCTAssertEqual(r.inputs[0].datatype, .fp32)
        XCTAssertEqual(
            try parse(" \n\t{\"inputs\":[{\"data\":[],\"datatype\":\"FP32\",\"shape\":[0],\"name\":\"\"}]} \r\n").inputs
                .count, 1)
    }

    /// Triton's classification extension (`outputs[].parameters.classification`) is read; its
    /// shared-memory extension is refused rather than ignored (the client would read a region
    /// the server never wrote).
    func testClassificationAndSharedMemoryParameters() throws {
        let input = "\"inputs\":[{\"name\":\"input\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1]}]"
        let r = try parse(
            "{\(input),\"outputs\":[{\"name\":\"probabilities\",\"parameters\":{\"classification\":3,\"binary_data\":true}},{\"name\":\"class\"}]}"
        )
        XCTAssertEqual(r.classCounts, ["probabilities": 3])
        XCTAssertTrue(r.wantsBinary("probabilities"))
        XCTAssertFalse(r.wantsBinary("class"))
        fails(
            "{\(input),\"outputs\":[{\"name\":\"p\",\"parameters\":{\"classification\":0}}]}",
            "outputs[0].parameters.classification: 0.0 is not a class count")
        fails(
            "{\(input),\"outputs\":[{\"name\":\"p\",\"parameters\":{\"classification\":1.5}}]}",
            "outputs[0].parameters.classification: 1.5")
        fails(
            "{\(input),\"outputs\":[{\"name\":\"p\",\"parameters\":{\"shared_memory_region\":\"r\",\"shared_memory_byte_size\":40}}]}",
            "outputs[0].parameters.shared_memory_region: the shared-memory extension is not supported")
        fails(
            "{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\",\"parameters\":{\"shared_memory_region\":\"r\"}}]}",
            "inputs[0].parameters.shared_memory_region: the shared-memory extension is not supported")
    }

    func testEveryRefusalNamesItsField() {
        let ok = #"{"name":"input","shape":[1],"datatype":"FP32","data":[1]}"#
        fails("", "bad JSON: the body is empty")
        fails("  ", "bad JSON: the body is empty")
        fails("[1]", "bad JSON: the body must be a JSON object, not an array")
        fails("xyz", "bad JSON: expected a value at byte 0, found 'x'")
        fails("nonsense", "bad JSON")
        fails("{\"inputs\": [}", "bad JSON")
        fails("{\"inputs\":[\(ok)]} x", "bad JSON: unexpected data after the request object at byte")
        fails("{\"inputs\":[\(ok)]", "bad JSON: the body ends where ',' or '}' should be")
        fails("{\"inputs\":[\(ok),]}", "bad JSON: inputs[1]: expected a value")
        fails("{\"inputs\":[\(ok)],}", "bad JSON: expected a quoted field name")
        fails("{'inputs':[]}", "bad JSON: expected a quoted field name at byte 1, found '''")
        fails("{\"inputs\" []}", "bad JSON: expected ':'")
        fails("{\"id\": \"x\"}", "inputs: missing")
        fails("{\"inputs\": null}", "inputs: is null")
        fails("{\"inputs\": {}}", "inputs: wrong type: expected an array, found an object")
        fails("{\"inputs\": []}", "inputs: at least one input tensor is required")
        fails("{\"id\": 1, \"inputs\": []}", "id: wrong type: expected a string, found a number")
        fails(
            "{\"inputs\":[\(ok)], \"input\": 1}",
            "unknown field 'input' (a request has id, inputs, outputs, parameters)")
        fails("{\"inputs\":[\(ok)], \"inputs\": []}", "inputs: given twice")
        fails("{\"inputs\":[\(ok)], \"parameters\": {\"k\": 1, \"k\": 2}}", "parameters.k: given twice")
        fails("{\"inputs\":[\(ok)], \"parameters\": [1]}", "parameters: wrong type: expected an object")
        fails("{\"inputs\":[\(ok)], \"outputs\": [{\"nam\": \"x\"}]}", "outputs[0]: unknown field 'nam'")
        fails("{\"inputs\":[\(ok)], \"outputs\": [{}]}", "outputs[0].name: missing")
        fails(
            "{\"inputs\":[\(ok)], \"outputs\": [\"class\"]}",
            "outputs[0]: wrong type: expected an object, found a string")
        fails("{\"inputs\":[1]}", "inputs[0]: wrong type: expected an object, found a number")
        fails(#"{"inputs":[{"shape":[1],"datatype":"FP32","data":[1]}]}"#, "inputs[0].name: missing")
        fails(#"{"inputs":[{"name":null,"shape":[1],"datatype":"FP32","data":[1]}]}"#, "inputs[0].name: is null")
        fails(#"{"inputs":[{"name":"a","datatype":"FP32","data":[1]}]}"#, "inputs[0].shape: missing")
        fails(#"{"inputs":[{"name":"a","shape":[1],"data":[1]}]}"#, "inputs[0].datatype: missing")
        fails(#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP32"}]}"#, "inputs[0].data: missing")
        fails(
            #"{"inputs":[{"name":"a","shape":[1],"shape":[1],"datatype":"FP32","data":[1]}]}"#,
            "inputs[0].shape: given twice")
        fails(
            #"{"inputs":[{"name":"a","shape":[1],"datatype":"FP32","data":[1],"dtype":1}]}"#,
            "inputs[0]: unknown field 'dtype'")
        fails(#"{"inputs":[{"name":"a","shape":"1","datatype":"FP32","data":[1]}]}"#, "inputs[0].shape: wrong type")
        fails(#"{"inputs":[{"name":"a","shape":null,"datatype":"FP32","data":[1]}]}"#, "inputs[0].shape: is null")
        fails(
            #"{"inputs":[{"name":"a","shape":[1.5],"datatype":"FP32","data":[1]}]}"#,
            "inputs[0].shape[0]: wrong type: 1.5 is not an integer")
        fails(
            #"{"inputs":[{"name":"a","shape":[1,"2"],"datatype":"FP32","data":[1]}]}"#,
            "inputs[0].shape[1]: wrong type: expected an integer")
        fails(
            #"{"inputs":[{"name":"a","shape":[],"datatype":"FP32","data":[]}]}"#,
            "inputs[0].shape: [] must have 1 to 8 dimensions")
        fails(
            #"{"inputs":[{"name":"a","shape":[1,1,1,1,1,1,1,1,1],"datatype":"FP32","data":[1]}]}"#,
            "must have 1 to 8 dimensions")
        fails(
            #"{"inputs":[{"name":"a","shape":[-1],"datatype":"FP32","data":[1]}]}"#,
            "inputs[0].shape: dimension -1 out of range")
        fails(
            #"{"inputs":[{"name":"a","shape":[16777216,16777216],"datatype":"FP32","data":[1]}]}"#,
            "inputs[0].shape: [16777216, 16777216] is too large")
        fails(
            #"{"inputs":[{"name":"a","shape":[1],"datatype":"FP99","data":[1]}]}"#,
            "inputs[0].datatype: 'FP99' is not one of FP32")
        fails(#"{"inputs":[{"name":"a","shape":[1],"datatype":32,"data":[1]}]}"#, "inputs[0].datatype: wrong type")
        fails(
            #"{"inputs":[{"name":"a","shape":[2],"datatype":"FP32","data":[1]}]}"#,
            "inputs[0].data: 1 values for shape [2] (2 expected)")
        fails("{\"inputs\":[\(ok),\(ok.replacingOccurrences(of: "FP32", with: "FP1"))]}", "inputs[1].datatype")
    }
}
