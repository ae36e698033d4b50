import Foundation

/// An exactly rounded floating-point sum (Shewchuk's algorithm, as Python's math.fsum): the
/// partials represent the sum without error, so merging partial sums from any number of ranks,
/// in any order, gives the same bits — which is what makes `mpirun -np N cortado prepare`
/// produce exactly the 1-process statistics.
public struct ExactSum: Codable, Equatable {
    /// Non-overlapping partials, smallest first, in `storage[0..<count]`. A double sum never
    /// needs more than ~40 (the exponent range over 53 bits); the storage is allocated once.
    private var storage: [Double] = []
    private var count = 0

    public init() {}

    public var partials: [Double] { Array(storage.prefix(count)) }

    @inline(__always)
    public mutating func add(_ value: Double) {
        if storage.isEmpty { storage = [Double](repeating: 0, count: 48) }
        var n = count
        storage.withUnsafeMutableBufferPointer { p in
            var x = value
            var i = 0
            for j in 0..<n {
                var y = p[j]
                if abs(x) < abs(y) { swap(&x, &y) }
                let hi = x + y
                let lo = y - (hi - x)
                if lo != 0 { p[i] = lo; i += 1 }
                x = hi
            }
            p[i] = x
            n = i + 1
        }
        count = n
    }

    enum CodingKeys: String, CodingKey { case partials }
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        for v in try c.decode([Double].self, forKey: .partials) { add(v) }
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(partials, forKey: .partials)
    }
    public static func == (a: ExactSum, b: ExactSum) -> Bool { a.partials == b.partials }

    public mutating func merge(_ other: ExactSum) { for p in other.partials { add(p) } }

    /// The correctly rounded sum.
    public var value: Double {
        let partials = self.partials
        var n = partials.count
        guard n > 0 else { return 0 }
        n -= 1
        var hi = partials[n], lo = 0.0
        while n > 0 {
            n -= 1
            let x = hi, y = partials[n]
            hi = x + y
            lo = y - (hi - x)
            if lo != 0 { break }
        }
        if n > 0 && ((lo < 0 && partials[n - 1] < 0) || (lo > 0 && partials[n - 1] > 0)) {
            let y = lo * 2, x = hi + y
            if y == x - hi { hi = x }
        }
        return hi
    }
}

/// A mergeable histogram over all finite float32 values: bin = the top 16 bits of the value's
/// order-preserving bit pattern (sign, exponent, 7 mantissa bits), so any value range fits
/// without knowing it in advance, and per-rank histograms add exactly. Quantiles interpolate
/// within a bin: their relative error is below 2⁻⁷ (0.8 %), enough for median imputation and
/// quantile clipping, in bounded memory.
public struct QuantileHistogram: Codable, Equatable {
    /// Counts per bin, allocated on first use (65 536 bins); stored sparsely in JSON.
    public private(set) var bins: [Int] = []
    public private(set) var count = 0

    public init() {}

    @inline(__always) static func key(_ v: Double) -> Int {
        let bits = Float(v).bitPattern
        let ordered = bits & 0x8000_0000 != 0 ? ~bits : bits | 0x8000_0000
        return Int(ordered >> 16)
    }

    static func lowerBound(_ key: Int) -> Double {
        let ordered = UInt32(key) << 16
        let bits = ordered & 0x8000_0000 != 0 ? ordered & 0x7FFF_FFFF : ~ordered
        return Double(Float(bitPattern: bits))
    }

    @inline(__always)
    public mutating func add(_ v: Double) {
        if bins.isEmpty { bins = [Int](repeating: 0, count: 1 << 16) }
        bins[Self.key(v)] += 1
        count += 1
    }

    public mutating func merge(_ other: QuantileHistogram) {
        guard !other.bins.isEmpty else { return }
        if bins.isEmpty { bins = [Int](repeating: 0, count: 1 << 16) }
        for k in 0..<(1 << 16) { bins[k] += other.bins[k] }
        count += other.count
    }

    /// The q-quantile (0 ≤ q ≤ 1), clamped to [min, max] of the data.
    public func quantile(_ q: Double, min lo: Double, max hi: Double) -> Double {
        guard count > 0 else { return 0 }
        let target = q * Double(count - 1)
        var seen = 0.0
        for k in 0..<bins.count where bins[k] > 0 {
            let c = Double(bins[k])
            if seen + c > target {
                let a = Self.lowerBound(k), b = Self.lowerBound(k + 1)
                let v = a + (b - a) * ((target - seen + 0.5) / c)
                return Swift.min(Swift.max(v, lo), hi)
            }
            seen += c
        }
        return hi
    }

    enum CodingKeys: String, CodingKey { case bins, count }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        count = try c.decode(Int.self, forKey: .count)
        let sparse = try c.decode([Int].self, forKey: .bins) // key, count, key, count, …
        if !sparse.isEmpty {
            bins = [Int](repeating: 0, count: 1 << 16)
            for i in stride(from: 0, to: sparse.count - 1, by: 2) { bins[sparse[i]] = sparse[i + 1] }
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(count, forKey: .count)
        var sparse = [Int]()
        for (k, n) in bins.enumerated() where n > 0 { sparse += [k, n] }
        try c.encode(sparse, forKey: .bins)
    }
}

/// Training-split statistics of a numeric column, mergeable across ranks.
public struct NumericStats: Codable, Equatable {
    public var count = 0
    public var sum = ExactSum()
    public var sumSquares = ExactSum()
    public var min = Double.infinity
    public var max = -Double.infinity
    public var histogram = QuantileHistogram()

    public init() {}

    public mutating func add(_ v: Double) {
        count += 1
        sum.add(v)
        sumSquares.add(v * v)
        min = Swift.min(min, v)
        max = Swift.max(max, v)
        histogram.add(v)
    }

    public mutating func merge(_ o: NumericStats) {
        count += o.count
        sum.merge(o.sum)
        sumSquares.merge(o.sumSquares)
        min = Swift.min(min, o.min)
        max = Swift.max(max, o.max)
        histogram.merge(o.histogram)
    }

    public var mean: Double { count > 0 ? sum.value / Double(count) : 0 }
    /// Population standard deviation, E[x²] − E[x]² from exact sums.
    public var std: Double { count > 0 ? Swift.max(sumSquares.value / Double(count) - mean * mean, 0).squareRoot() : 0 }
}
