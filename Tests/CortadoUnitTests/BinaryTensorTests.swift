import CortadoCore
import CortadoInfer
import Foundation
import XCTest

/// The binary tensor data extension (Triton's HTTP/REST protocol, `tritonclient`'s default):
/// the JSON is the body's first `Inference-Header-Content-Length` bytes and inputs with
/// `parameters.binary_data_size` take their values, in order, from the bytes after it.
final class BinaryTensorTests: XCTestCase {
    /// A body of `json` followed by `tail`, and the JSON's length.
    func body(_ json: String, _ tail: [UInt8]) -> (Data, Int) {
        (Data(json.utf8) + Data(tail), json.utf8.count)
    }

    func le<T: FixedWidthInteger>(_ x: T) -> [UInt8] { withUnsafeBytes(of: x.littleEndian) { Array($0) } }

    func input(_ name: String, _ shape: [Int], _ datatype: String, size: Int) -> String {
        "{\"name\":\"\(name)\",\"shape\":\(shape),\"datatype\":\"\(datatype)\",\"parameters\":{\"binary_data_size\":\(size)}}"
    }

    func testFP32ValuesKeepTheirBitsAndMatchTheJSONRequest() throws {
        var rng = SystemRandomNumberGenerator()
        var xs = (0..<64).map { _ in
            Float(bitPattern: UInt32.random(in: 0...0x7F7F_FFFF, using: &rng)) * (Bool.random() ? 1 : -1)
        }
        xs += [0, -0.0, .leastNonzeroMagnitude, .greatestFiniteMagnitude, 0.1]
        let (data, n) = body(
            "{\"id\":\"b\",\"inputs\":[\(input("input", [1, xs.count], "FP32", size: 4 * xs.count))]}",
            xs.flatMap { le($0.bitPattern) })
        let r = try InferRequest.parse(data, headerLength: n)
        guard case .numbers(let got) = r.inputs[0].data else { return XCTFail("not numbers") }
        XCTAssertEqual(got.map { Float($0).bitPattern }, xs.map(\.bitPattern))
        XCTAssertEqual(r.inputs[0].shape, [1, xs.count])
        XCTAssertEqual(r.id, "b")
        // The same values as JSON text (shortest round-trip form) read to the same bits.
        let json = try InferRequest.parse(
            Data(
                "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,\(xs.count)],\"datatype\":\"FP32\",\"data\":[\(xs.map { "\($0)" }.joined(separator: ","))]}]}"
                    .utf8))
        guard case .numbers(let fromText) = json.inputs[0].data else { return XCTFail("not numbers") }
        XCTAssertEqual(fromText.map { Float($0).bitPattern }, xs.map(\.bitPattern))
    }

    func testEveryDatatypeAndJSONInputsBesideBinaryOnes() throws {
        let inputs: [(String, [UInt8], [Double])] = [
            ("INT8", [0xFD, 0x7F], [-3, 127]), ("UINT8", [0, 255], [0, 255]), ("BOOL", [1, 0], [1, 0]),
            ("INT16", le(Int16(-300)) + le(Int16(7)), [-300, 7]),
            ("UINT16", le(UInt16(65535)) + le(UInt16(1)), [65535, 1]),
            ("FP16", le(Float16(0.5).bitPattern) + le(Float16(-2).bitPattern), [0.5, -2]),
            ("INT32", le(Int32(-70000)) + le(Int32(1)), [-70000, 1]),
            ("UINT32", le(UInt32(4_000_000_000)) + le(UInt32(2)), [4e9, 2]),
            ("INT64", le(Int64(-1 << 40)) + le(Int64(5)), [-0x100_0000_0000, 5]),
            ("UINT64", le(UInt64(1 << 50)) + le(UInt64(9)), [0x4_0000_0000_0000, 9]),
            ("FP64", le((0.1).bitPattern) + le((-1e300).bitPattern), [0.1, -1e300])
        ]
        // A JSON input in the middle takes no binary bytes.
        var tensors = inputs.map { input($0.0.lowercased(), [2], $0.0, size: $0.1.count) }
        tensors.insert("{\"name\":\"text\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[4]}", at: 3)
        let (data, n) = body("{\"inputs\":[\(tensors.joined(separator: ","))]}", inputs.flatMap(\.1))
        var r = try InferRequest.parse(data, headerLength: n)
        guard case .numbers(let text) = r.inputs.remove(at: 3).data else { return XCTFail("not numbers") }
        XCTAssertEqual(text, [4])
        for (t, want) in zip(r.inputs, inputs) {
            guard case .numbers(let got) = t.data else { return XCTFail("\(want.0): not numbers") }
            XCTAssertEqual(got, want.2, want.0)
            XCTAssertEqual(t.datatype.rawValue, want.0)
        }
    }

    func testBytesElementsAreLengthPrefixedText() throws {
        let words = ["red", "", "grün"]
        let tail = words.flatMap { le(UInt32($0.utf8.count)) + Array($0.utf8) }
        let (data, n) = body("{\"inputs\":[\(input("color", [3], "BYTES", size: tail.count))]}", tail)
        let r = try InferRequest.parse(data, headerLength: n)
        guard case .mixed(let got) = r.inputs[0].data else { return XCTFail("not strings") }
        XCTAssertEqual(got.map(\.description), ["'red'", "''", "'grün'"])
    }

    func testOutputsAskedForAsBinary() throws {
        let x = input("input", [1, 1], "FP32", size: 4)
        func request(_ rest: String) throws -> InferRequest {
            let (data, n) = body("{\"inputs\":[\(x)]\(rest)}", le(Float(1).bitPattern))
            return try InferRequest.parse(data, headerLength: n)
        }
        XCTAssertFalse(try request("").wantsBinary("probabilities"), "binary inputs alone keep JSON outputs")
        let all = try request(",\"parameters\":{\"binary_data_output\":true}")
        XCTAssertTrue(all.wantsBinary("probabilities"))
        let some = try request(
            ",\"outputs\":[{\"name\":\"class\",\"parameters\":{\"binary_data\":false}},{\"name\":\"probabilities\",\"parameters\":{\"binary_data\":true,\"class_count\":0}}],\"parameters\":{\"binary_data_output\":true}"
        )
        XCTAssertFalse(some.wantsBinary("class"), "an output's own flag wins")
        XCTAssertTrue(some.wantsBinary("probabilities"))
        XCTAssertTrue(some.wantsBinary("predicted"), "the request's default for the rest")
        XCTAssertEqual(some.outputs, ["class", "probabilities"])
    }

    func testRefusalsNameTheFieldOrHeader() {
        let one = input("input", [1, 2], "FP32", size: 8)
        let cases: [(String, [UInt8], Int?, String)] = [
            (
                "{\"inputs\":[\(one)]}", Array(repeating: 0, count: 8), nil,
                "needs the Inference-Header-Content-Length header"
            ),
            (
                "{\"inputs\":[\(one)]}", Array(repeating: 0, count: 4), -1,
                "inputs[0].parameters.binary_data_size: 8 bytes, but only 4"
            ),
            ("{\"inputs\":[\(one)]}", Array(repeating: 0, count: 12), -1, "4 bytes after the JSON belong to no input"),
            (
                "{\"inputs\":[\(input("input", [1, 2], "FP32", size: 6))]}", Array(repeating: 0, count: 6), -1,
                "binary_data_size: 6 bytes for 2 FP32 values (8 expected)"
            ),
            (
                "{\"inputs\":[\(input("c", [2], "BYTES", size: 9))]}", le(UInt32(1)) + [65] + le(UInt32(9)), -1,
                "BYTES element 1 claims 9 bytes; 0 are left"
            ),
            (
                "{\"inputs\":[\(input("c", [1], "BYTES", size: 6))]}", le(UInt32(2)) + [0xC3, 0x28], -1,
                "BYTES element 0 is not UTF-8"
            ),
            ("{\"inputs\":[\(input("b", [1], "BOOL", size: 1))]}", [2], -1, "BOOL element 0 is 2"),
            ("{\"inputs\":[\(input("x", [1], "FP7", size: 1))]}", [2], -1, "inputs[0].datatype: 'FP7'"),
            (
                "{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1],\"parameters\":{\"binary_data_size\":4}}]}",
                [0, 0, 0, 0], -1, "inputs[0]: has both data and parameters.binary_data_size"
            ),
            (
                "{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\",\"parameters\":{\"binary_data_size\":-4}}]}",
                [], -1, "binary_data_size: -4.0 is not a byte count"
            ),
            (
                "{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\",\"parameters\":{}}]}", [], -1,
                "inputs[0].data: missing"
            ),
            ("{\"inputs\":[\(one)]}", [], 500, "Inference-Header-Content-Length: 500 is not within the body's")
        ]
        for (json, tail, header, mentions) in cases {
            let (data, n) = body(json, tail)
            do {
                _ = try InferRequest.parse(data, headerLength: header.map { $0 < 0 ? n : $0 })
                XCTFail("accepted: \(json)")
            } catch let e as CortadoError {
                XCTAssertTrue(e.message.contains(mentions), "'\(e.message)' should mention '\(mentions)'")
                XCTAssertFalse(e.message.contains("\n"))
            } catch {
                XCTFail("not a CortadoError: \(error)")
            }
        }
    }
}
