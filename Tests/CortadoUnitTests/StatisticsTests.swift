import CortadoCore
import CortadoData
import CortadoTestSupport
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
            XCTAssertEqual(
                h.quantile(q, min: sorted.first!, max: sorted.last!), exact, accuracy: abs(exact) / 64 + 1e-3, "q=\(q)")
        }
        var a = QuantileHistogram(), b = QuantileHistogram()
        values[..<7000].forEach { a.add($0) }
        values[7000...].forEach { b.add($0) }
        a.merge(b)
        XCTAssertEqual(a, h)
    }
}
