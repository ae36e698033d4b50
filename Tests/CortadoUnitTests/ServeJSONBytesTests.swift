import CortadoServe
import Foundation
import NIOCore
import XCTest

/// The server's byte-level JSON writers: strings read back as sent (every control character,
/// quotes, backslashes, non-ASCII), floats as the same shortest text `Float.description` gives
/// and the same bits when read back, integers as `String(Int)`, and the access log line as one
/// JSON object with the fields the server's tests read.
final class ServeJSONBytesTests: XCTestCase {
    func text(_ write: (inout ByteBuffer) -> Void) -> String {
        var b = ByteBuffer()
        write(&b)
        return String(buffer: b)
    }

    func testStringsReadBackAsSent() throws {
        let controls = String((0..<0x20).map { Character(Unicode.Scalar(UInt8($0))) })
        let samples = [
            "", "plain", "a\"b", "back\\slash", controls, "tab\there\nnew\rline", "ünïcødé ✓ 🚀", "\u{7f}del",
            "end\\"
        ]
        for s in samples {
            let json = text { $0.writeJSONString(s) }
            let back = try JSONSerialization.jsonObject(with: Data("[\(json)]".utf8)) as? [String]
            XCTAssertEqual(back, [s], "\(json)")
        }
        XCTAssertEqual(text { $0.writeJSONString("q\"\u{1}") }, "\"q\\\"\\u0001\"")
        XCTAssertEqual(text { $0.writeJSONString("\u{1f}") }, "\"\\u001f\"")
    }

    func testFloatsRoundTripBitForBit() {
        var rng = SystemRandomNumberGenerator()
        var values: [Float] = [
            0, -0.0, 1, 0.1, 1e-5, 123456.79, .leastNonzeroMagnitude, .leastNormalMagnitude, .greatestFiniteMagnitude,
            -.greatestFiniteMagnitude
        ]
        for _ in 0..<20000 {
            let x = Float(bitPattern: UInt32.random(in: 0...UInt32.max, using: &rng))
            if x.isFinite { values.append(x) }
        }
        for x in values {
            let t = text { $0.writeJSONFloat(x) }
            XCTAssertEqual(t, x.description)
            XCTAssertEqual(Float(t)?.bitPattern, x.bitPattern, t)
        }
        XCTAssertEqual(text { $0.writeJSONFloat(.nan) }, "null")
        XCTAssertEqual(text { $0.writeJSONFloat(-.infinity) }, "null")
        XCTAssertEqual(text { $0.writeJSONFloats([1.5, .infinity, 0.25][...]) }, "1.5,null,0.25")
        XCTAssertEqual(text { $0.writeJSONFloats([][...]) }, "")
    }

    func testIntegersAsStringInt() {
        for n in [0, 7, -7, 10, 99, 100, 1_234_567, Int.max, Int.min + 1, Int.min] {
            XCTAssertEqual(text { $0.writeDecimal(n) }, String(n))
        }
    }

    func testAccessLogLineIsOneJSONObject() throws {
        let line = String(
            buffer: accessLogLine(
                method: "POST", path: "/v2/models/m/infer", status: 200, seconds: 0.000412, model: "m", version: "2",
                requestID: "r\"1"))
        XCTAssertTrue(line.hasSuffix("}\n"))
        XCTAssertEqual(line.filter { $0 == "\n" }.count, 1)
        let obj = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        XCTAssertEqual(obj["method"] as? String, "POST")
        XCTAssertEqual(obj["path"] as? String, "/v2/models/m/infer")
        XCTAssertEqual(obj["status"] as? Int, 200)
        XCTAssertEqual(obj["model"] as? String, "m")
        XCTAssertEqual(obj["version"] as? String, "2")
        XCTAssertEqual(obj["request_id"] as? String, "r\"1")
        XCTAssertTrue(line.contains("\"ms\":0.412,"), line)
        let time = try XCTUnwrap(obj["time"] as? String)
        XCTAssertNotNil(
            time.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"#, options: .regularExpression), time)
        let parsed = ISO8601DateFormatter()
        parsed.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let when = try XCTUnwrap(parsed.date(from: time), time)
        XCTAssertLessThan(abs(when.timeIntervalSinceNow), 60)
        // Long paths and ids are cut to 200 characters.
        let long = String(
            buffer: accessLogLine(
                method: "GET", path: "/" + String(repeating: "p", count: 500), status: 404, seconds: 2.5, model: "",
                version: "", requestID: String(repeating: "i", count: 300)))
        let cut = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(long.utf8)) as? [String: Any])
        XCTAssertEqual((cut["path"] as? String)?.count, 200)
        XCTAssertEqual((cut["request_id"] as? String)?.count, 200)
        XCTAssertTrue(long.contains("\"ms\":2500.000,"), long)
    }

    /// The infer shortcut takes only the plain forms; everything else is the router's.
    func testInferShortcutPaths() {
        func target(_ p: String) -> [String?]? { ModelServer.inferTarget(p).map { [$0.0, $0.1] } }
        XCTAssertEqual(target("/v2/models/mlp-int8/infer"), ["mlp-int8", nil])
        XCTAssertEqual(target("/v2/models/m.v_2/versions/12/infer"), ["m.v_2", "12"])
        for other in [
            "/v2/models/m/infer/", "/v2/models//infer", "/v2/models/.hidden/infer", "/v2/models/..%2Fx/infer",
            "/v2/models/m/versions//infer", "/v2/models/m/versions/x1/infer", "/v2/models/m/versions/1",
            "/v2/models/m", "/v2/models/m/ready", "/v2/models/m/inference", "/v2/model/m/infer", "/v2/models/ü/infer",
            "/v2/models/m/versions/1/infer/x", "/v2/models/" + String(repeating: "n", count: 129) + "/infer"
        ] {
            XCTAssertNil(target(other), other)
        }
    }
}

/// Ids for requests that bring none: version-4 UUID text that Foundation reads back, and no two
/// alike in a process (they come from a counter through a bijection, not from a system call each).
final class ServeRequestIDTests: XCTestCase {
    func testIDsAreDistinctVersion4UUIDs() {
        var seen = Set<String>()
        for _ in 0..<100_000 {
            let id = randomRequestID()
            seen.insert(id)
            guard let u = UUID(uuidString: id) else { return XCTFail("\(id) is not a UUID") }
            let bytes = u.uuid
            XCTAssertEqual(bytes.6 >> 4, 4, "\(id): version")
            XCTAssertEqual(bytes.8 >> 6, 2, "\(id): variant")
        }
        XCTAssertEqual(seen.count, 100_000)
    }
}
