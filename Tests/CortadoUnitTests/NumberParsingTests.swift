import CortadoCore
import CortadoData
import CortadoTestSupport
import XCTest

/// The fast decimal path must give exactly strtod's bits, or step aside.
final class NumberParsingTests: XCTestCase {
    func parse(_ s: String) -> Double? { Array(s.utf8).withUnsafeBufferPointer { parseDouble($0) } }
    func strtod(_ s: String) -> Double? { Array(s.utf8).withUnsafeBufferPointer { strtodWhole($0) } }

    func testFastPathMatchesStrtodBitForBit() {
        var rng = SeededRNG(seed: 8)
        var cases = [
            "0", "-0", "1", "+2.5", ".5", "5.", "0.000123", "1e5", "1E-5", "-3.25e+10", "123456789012345",
            "1234567890123456", "0.1", "9007199254740993", "1e22", "1e23", "2.2250738585072014e-308", "inf", "-nan"
        ]
        for _ in 0..<20000 {
            let v = (rng.uniform() - 0.5) * pow(10, Double(rng.below(40)) - 20)
            cases.append(String(format: ["%.3f", "%.7g", "%.15g", "%.17g", "%e", "%.1f"][rng.below(6)], v))
        }
        for s in cases {
            let a = parse(s), b = strtod(s)
            XCTAssertEqual(a?.bitPattern, b?.bitPattern, s)
            if a?.isNaN == true { XCTAssertTrue(b?.isNaN == true, s) }
        }
        for bad in ["", "-", "1e", "1.2.3", "12a", "0x", "e5", "1e5.5", " "] {
            XCTAssertNil(parse(bad), "'\(bad)'")
        }
    }
}
