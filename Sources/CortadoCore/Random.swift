import Foundation

/// A small, seedable, platform-independent generator (xoshiro256**, seeded by SplitMix64).
///
/// Swift's default generator cannot be seeded, and every rank must be able to recreate the same
/// stream (weight init, per-epoch shuffles, splits) from the job's seed alone.
public struct SeededRNG: RandomNumberGenerator {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    /// Streams for different purposes (`stream`) come from one user seed without overlapping.
    public init(seed: UInt64, stream: UInt64 = 0) {
        var x = seed ^ (stream &* 0x9E37_79B9_7F4A_7C15)
        func next() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s = (next(), next(), next(), next())
    }

    public mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0; s.3 ^= s.1; s.1 ^= s.2; s.0 ^= s.3
        s.2 ^= t
        s.3 = (s.3 << 45) | (s.3 >> 19)
        return result
    }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func uniform() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    /// Uniform integer in [0, n), without modulo bias.
    public mutating func below(_ n: Int) -> Int { Int(truncatingIfNeeded: next(upperBound: UInt64(n))) }

    /// Standard normal (Box–Muller); deterministic across platforms given the seed.
    public mutating func normal() -> Double {
        let u1 = max(uniform(), 1e-300), u2 = uniform()
        return (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
    }

    /// Fisher–Yates shuffle of `buffer`, in place, with this generator's stream.
    public mutating func shuffle<T>(_ buffer: UnsafeMutableBufferPointer<T>) {
        if buffer.count < 2 { return }
        for i in stride(from: buffer.count - 1, to: 0, by: -1) {
            buffer.swapAt(i, below(i + 1))
        }
    }
}
