import CortadoCore
import CortadoData
import CortadoTestSupport
import XCTest

final class RowSetTests: XCTestCase {
    func testHashSetAndBitFlagsAgreeWithTheStandardLibrary() {
        var rng = SeededRNG(seed: 12)
        var mine = HashSet64(), reference = Set<UInt64>()
        var flags = BitFlags(), bools = [Bool]()
        for _ in 0..<200_000 {
            let h = rng.below(4) == 0 ? UInt64(rng.below(50)) : rng.next() // many repeats, and 0
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
