import CKernels
import CortadoCore
import CortadoJob
import CortadoModel
import CortadoTestSupport
import XCTest

/// The 16-bit gradient exchange's conversions (`distributed.precision`, CKernels/half.c)
/// against independent references, and its job-spec key.
final class HalfPrecisionTests: XCTestCase {
    let bf16 = Int32(CORTADO_HALF_BF16), fp16 = Int32(CORTADO_HALF_FP16)

    /// bf16 by definition: of the two bf16 neighbours of x (truncated, and one unit further from
    /// zero), the nearer in exact (Double) arithmetic; on a tie the one with an even last bit.
    /// Past the largest bf16 the upper neighbour is Inf, which counts as 2^128 (IEEE's rule).
    func referenceBF16(_ x: Float) -> UInt16 {
        let u = x.bitPattern
        if x.isNaN { return UInt16(u >> 16) | 0x0040 }
        let lo = UInt16(u >> 16), hi = lo &+ 1
        func value(_ h: UInt16) -> Double {
            (h & 0x7FFF) == 0x7F80 ? (h & 0x8000 != 0 ? -0x1p128 : 0x1p128) : Double(Float(bitPattern: UInt32(h) << 16))
        }
        if x.isInfinite || u & 0xFFFF == 0 { return lo }
        let dl = abs(Double(x) - value(lo)), dh = abs(value(hi) - Double(x))
        return dl < dh ? lo : dh < dl ? hi : (lo & 1 == 0 ? lo : hi)
    }

    func toHalf(_ xs: [Float], _ format: Int32) -> [UInt16] {
        var h = [UInt16](repeating: 0, count: xs.count)
        cortado_to_half(xs, &h, xs.count, format)
        return h
    }

    func fromHalf(_ hs: [UInt16], _ format: Int32) -> [Float] {
        var x = [Float](repeating: 0, count: hs.count)
        cortado_from_half(hs, &x, hs.count, format)
        return x
    }

    /// Values at the edges: ties either way, the largest finite values and overflow, ±0,
    /// ±Inf, NaNs (one whose payload is only in the low half, which a naive round makes Inf),
    /// the smallest normal and denormal numbers of both formats, and 20 000 random bit patterns.
    var cases: [Float] {
        var xs: [Float] = [
            0, -0, 1, -1, .infinity, -.infinity, .nan, Float(bitPattern: 0x7F80_0001), Float(bitPattern: 0xFFC0_0001),
            Float(bitPattern: 0x3F80_8000), Float(bitPattern: 0x3F81_8000), Float(bitPattern: 0x3F80_8001),
            Float(bitPattern: 0x3F80_7FFF), .greatestFiniteMagnitude, -.greatestFiniteMagnitude,
            Float(bitPattern: 0x7F7F_7FFF), Float(bitPattern: 0x7F7F_8000), .leastNormalMagnitude,
            .leastNonzeroMagnitude, Float(bitPattern: 0x0000_8000), Float(bitPattern: 0x0001_8000),
            Float(bitPattern: 0x807F_FFFF), 65504, 65519.99, 65520, -65520, 1e6, 0x1p-14, 0x1p-24, 0x1p-25,
            0x1.8p-25, 0x1p-26, -0x1.7p-20, 1 + 0x1p-11, 1 + 0x3p-11, 2049, 2051, 1e-3, 3.14159
        ]
        var rng = SeededRNG(seed: 17)
        for _ in 0..<20_000 { xs.append(Float(bitPattern: UInt32(truncatingIfNeeded: rng.next()))) }
        return xs
    }

    /// The model file's bf16 tensors (`emit: bf16`) use the same rounding: a NaN whose payload
    /// is only in the low half used to come out as Inf there.
    func testModelFileBFloat16MatchesTheReference() {
        for x in cases {
            XCTAssertEqual(bfloat16Bits(x), referenceBF16(x), "bfloat16Bits(0x\(String(x.bitPattern, radix: 16)))")
        }
        XCTAssertTrue(Float(bitPattern: UInt32(bfloat16Bits(Float(bitPattern: 0x7F80_0001))) << 16).isNaN)
    }

    func testBFloat16RoundsToNearestEvenLikeTheReference() {
        let xs = cases, got = toHalf(xs, bf16)
        for (x, h) in zip(xs, got) {
            XCTAssertEqual(h, referenceBF16(x), "bf16(\(x), bits 0x\(String(x.bitPattern, radix: 16)))")
        }
        // The edges by name: a tie rounds to even, overflow to Inf, NaN stays NaN, denormals stay.
        XCTAssertEqual(toHalf([Float(bitPattern: 0x3F80_8000)], bf16), [0x3F80])
        XCTAssertEqual(toHalf([Float(bitPattern: 0x3F81_8000)], bf16), [0x3F82])
        XCTAssertEqual(toHalf([Float(bitPattern: 0x7F7F_8000)], bf16), [0x7F80])
        XCTAssertEqual(toHalf([Float(bitPattern: 0x7F80_0001)], bf16), [0x7FC0])
        XCTAssertEqual(toHalf([Float(bitPattern: 0x0001_8000)], bf16), [0x0002])
        XCTAssertEqual(toHalf([Float.leastNonzeroMagnitude], bf16), [0x0000])
    }

    /// fp16 against Swift's own IEEE conversion (Float16.init, round to nearest even).
    func testFloat16MatchesSwiftsIEEEConversion() {
        let xs = cases, got = toHalf(xs, fp16)
        for (x, h) in zip(xs, got) {
            let want = Float16(x)
            if want.isNaN {
                XCTAssertTrue(Float16(bitPattern: h).isNaN, "fp16(NaN 0x\(String(x.bitPattern, radix: 16)))")
                XCTAssertEqual(h & 0x8000, want.bitPattern & 0x8000)
            } else {
                XCTAssertEqual(h, want.bitPattern, "fp16(\(x), bits 0x\(String(x.bitPattern, radix: 16)))")
            }
        }
        XCTAssertEqual(toHalf([65520, 65519.99, 0x1p-25, 0x1.8p-25], fp16), [0x7C00, 0x7BFF, 0x0000, 0x0001])
    }

    /// Back to fp32 is exact for all 65 536 bit patterns of both formats.
    func testEveryHalfValueConvertsBackExactly() {
        let all = (0...UInt16.max).map { $0 }
        let b = fromHalf(all, bf16), f = fromHalf(all, fp16)
        for h in all {
            let wantB = Float(bitPattern: UInt32(h) << 16), wantF = Float(Float16(bitPattern: h))
            XCTAssertTrue(b[Int(h)].bitPattern == wantB.bitPattern, "bf16 0x\(String(h, radix: 16))")
            if wantF.isNaN {
                XCTAssertTrue(f[Int(h)].isNaN, "fp16 0x\(String(h, radix: 16))")
            } else {
                XCTAssertTrue(f[Int(h)].bitPattern == wantF.bitPattern, "fp16 0x\(String(h, radix: 16))")
            }
        }
        // Round trip: every finite 16-bit value survives fp32 and back.
        XCTAssertEqual(
            toHalf(b, bf16).enumerated().filter { !b[$0.offset].isNaN }.map(\.element),
            all.filter { !b[Int($0)].isNaN })
    }

    /// The owner's sum: fp32, in rank order ((a + b) + c), from 16-bit inputs.
    func testOwnerSumsInFP32InRankOrder() {
        // Three ranks' values of a slice of 2, stride 2: rank r's at [2r, 2r + 1].
        let x: [Float] = [1, 0x1p-8, 0x1p-9, 3, 0x1p-9, -2]
        let h = toHalf(x, bf16)
        var sum = [Float](repeating: .nan, count: 2)
        cortado_sum_half(h, 2, 3, 2, &sum, bf16)
        XCTAssertEqual(sum[0], (1 + 0x1p-9) + 0x1p-9) // exact in fp32; bf16 would have lost both
        XCTAssertEqual(sum[1], (0x1p-8 + 3) + -2)
    }

    /// `distributed.precision`: fp32 by default and then absent from the canonical JSON (so
    /// existing checkpoints keep their hash); bf16/fp16 read back; errors name the key.
    func testSpecKey() throws {
        let base = """
            data: d/manifest.json
            model: {layers: [{type: dense, units: 10}]}
            """
        let plain = try spec(base)
        XCTAssertEqual(plain.distributed.precision, .fp32)
        XCTAssertFalse(plain.canonicalJSON.contains("precision"))
        XCTAssertFalse(try spec(base, ["distributed.precision=fp32"]).canonicalJSON.contains("precision"))
        for p in ["bf16", "fp16"] {
            let s = try spec(base, ["distributed.precision=\(p)"])
            XCTAssertEqual(s.distributed.precision.rawValue, p)
            XCTAssertTrue(s.canonicalJSON.contains(#""precision":"\#(p)""#), s.canonicalJSON)
            let decoded = try JSONDecoder().decode(JobSpec.self, from: Data(s.canonicalJSON.utf8))
            XCTAssertEqual(decoded.distributed.precision.rawValue, p)
        }
        XCTAssertNoThrow(try spec(base, ["distributed.precision=bf16", "distributed.zero=true"]))
        expectError(base, ["distributed.precision=fp8"], contains: "distributed.precision")
        expectError(
            base, ["distributed.precision=bf16", "distributed.overlap=test"],
            contains: "distributed.precision: bf16 gradients are exchanged after backward; set distributed.overlap: off"
        )
    }
}
