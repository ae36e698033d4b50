import CortadoCore
import CortadoData
import XCTest

final class StatisticsTests: XCTestCase {
    func testExactSumIsOrderIndependent() {
        var rng = SeededRNG(seed: 4)
        let values = (0..<5000).map { _ in (rng.uniform() - 0.5) * pow(10, Double(rng.below(30)) - 15) }
        var whole = ExactSum()
        values.forEach { whole.add($0) }
        var a = ExactSum(), b = ExactSum(), c = ExactSum()
        values[..<1234].reversed().forEach { a.add($0) }
        values[1234..<4000].forEach { b.add($0) }
        values[4000...].shuffled(using: &rng).forEach { c.add($0) }
        c.merge(a); c.merge(b)
        XCTAssertEqual(whole.value, c.value, "bit-identical whatever the order and split")
        // A case where naive summation loses everything.
        var s = ExactSum()
        [1e100, 1.0, -1e100, 1e-3].forEach { s.add($0) }
        XCTAssertEqual(s.value, 1.001)
    }

    func testHistogramQuantilesAreWithinABin() {
        var rng = SeededRNG(seed: 5)
        let values = (0..<20000).map { _ in rng.normal() * 50 - 20 }
        var h = QuantileHistogram()
        values.forEach { h.add($0) }
        let sorted = values.sorted()
        for q in [0.01, 0.1, 0.5, 0.9, 0.99] {
            let exact = sorted[Int(q * Double(sorted.count - 1))]
            XCTAssertEqual(h.quantile(q, min: sorted.first!, max: sorted.last!), exact, accuracy: abs(exact) / 64 + 1e-3, "q=\(q)")
        }
        var a = QuantileHistogram(), b = QuantileHistogram()
        values[..<7000].forEach { a.add($0) }
        values[7000...].forEach { b.add($0) }
        a.merge(b)
        XCTAssertEqual(a, h)
    }
}

/// The fast decimal path must give exactly strtod's bits, or step aside.
final class NumberParsingTests: XCTestCase {
    func parse(_ s: String) -> Double? { Array(s.utf8).withUnsafeBufferPointer { parseDouble($0) } }
    func strtod(_ s: String) -> Double? { Array(s.utf8).withUnsafeBufferPointer { strtodWhole($0) } }

    func testFastPathMatchesStrtodBitForBit() {
        var rng = SeededRNG(seed: 8)
        var cases = ["0", "-0", "1", "+2.5", ".5", "5.", "0.000123", "1e5", "1E-5", "-3.25e+10", "123456789012345",
                     "1234567890123456", "0.1", "9007199254740993", "1e22", "1e23", "2.2250738585072014e-308", "inf", "-nan"]
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

final class RowSetTests: XCTestCase {
    func testHashSetAndBitFlagsAgreeWithTheStandardLibrary() {
        var rng = SeededRNG(seed: 12)
        var mine = HashSet64(), reference = Set<UInt64>()
        var flags = BitFlags(), bools = [Bool]()
        for _ in 0..<200_000 {
            let h = rng.below(4) == 0 ? UInt64(rng.below(50)) : rng.next()   // many repeats, and 0
            XCTAssertEqual(mine.insert(h), reference.insert(h).inserted)
            let b = rng.below(3) == 0
            flags.append(b)
            bools.append(b)
        }
        XCTAssertEqual(mine.count, reference.count)
        flags[17] = !flags[17]
        bools[17].toggle()
        XCTAssertEqual((0..<bools.count).map { flags[$0] }, bools)
    }
}
