import CortadoCore
import Foundation

/// A one-dimensional distribution in a few numbers: enough to tell later data apart from it.
/// `deciles` are the 10th…90th percentiles (nine cut points); drift statistics bin new values at
/// them, so the reference needs no raw values and fits in the manifest.
public struct DistributionSummary: Codable, Equatable {
    public var count: Int
    public var mean: Double
    public var std: Double
    public var deciles: [Double]

    public init(count: Int, mean: Double, std: Double, deciles: [Double]) {
        self.count = count; self.mean = mean; self.std = std; self.deciles = deciles
    }

    /// Exact summary of `values` (sorted in place).
    public init(sorting values: inout [Double]) {
        values.sort()
        let n = values.count
        count = n
        mean = n > 0 ? values.reduce(0, +) / Double(n) : 0
        let m = mean
        std = n > 0 ? (values.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(n)).squareRoot() : 0
        // Linear interpolation between order statistics (numpy's default "linear" method).
        deciles = (1...9).map { k in
            guard n > 0 else { return 0 }
            let h = Double(n - 1) * Double(k) / 10, lo = Int(h.rounded(.down)), hi = min(lo + 1, n - 1)
            return values[lo] + (h - Double(lo)) * (values[hi] - values[lo])
        }
    }

    /// The reference's bins: the distinct cut points, and each bin's share of the reference.
    /// Ties in the reference (equal deciles) merge bins, their shares adding up.
    var bins: (cuts: [Double], expected: [Double]) {
        let cuts = deciles.reduce(into: [Double]()) { if $0.last != $1 { $0.append($1) } }
        var expected = [Double](), below = 0
        for c in cuts {
            let upTo = deciles.lastIndex(of: c)! + 1 // deciles at or below this cut
            expected.append(Double(upTo - below) / 10)
            below = upTo
        }
        expected.append(Double(10 - below) / 10)
        return (cuts, expected)
    }

    /// Population stability index of `values` against this reference, binned at the deciles
    /// (bins (-inf, d1], (d1, d2], …, (d9, inf)); empty bins count as 0.0001 so PSI stays finite.
    /// Rule of thumb: < 0.1 stable, 0.1–0.25 moderate shift, > 0.25 major shift.
    public func psi(_ values: [Double]) -> Double {
        let (cuts, expected) = bins
        var counts = [Int](repeating: 0, count: expected.count)
        for v in values {
            var b = 0
            while b < cuts.count && v > cuts[b] { b += 1 }
            counts[b] += 1
        }
        return Drift.psi(observed: counts, expected: expected)
    }

    /// Kolmogorov–Smirnov distance evaluated at the reference deciles: max over k of
    /// |F_new(d_k) − k/10|. A lower bound of the full KS statistic, from the summary alone.
    public func ksAtDeciles(_ values: [Double]) -> Double {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        var worst = 0.0
        for (i, d) in deciles.enumerated() {
            // Fraction of new values ≤ d (upper bound by binary search).
            var lo = 0, hi = sorted.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if sorted[mid] <= d { lo = mid + 1 } else { hi = mid }
            }
            worst = max(worst, abs(Double(lo) / Double(sorted.count) - Double(i + 1) / 10))
        }
        return worst
    }
}

/// What the training split looked like, for drift reports: the class mix and a summary per
/// feature (per column for tabular data; per-image brightness and contrast for images).
public struct DataProfile: Codable, Equatable {
    public var rows: Int
    /// Training rows per class, in class order (classification only).
    public var labelCounts: [Int]?
    public var features: [String: DistributionSummary]

    enum CodingKeys: String, CodingKey { case rows, labelCounts = "label_counts", features }

    public init(rows: Int, labelCounts: [Int]?, features: [String: DistributionSummary]) {
        self.rows = rows; self.labelCounts = labelCounts; self.features = features
    }

    /// The image features: each image's mean pixel (brightness) and pixel standard deviation
    /// (contrast). `x` holds `rows` images of `width` pixels.
    public static let imageFeatures = ["image_mean", "image_std"]

    public static func imageStatistics(_ x: UnsafeBufferPointer<Float>, width: Int) -> [[Double]] {
        let rows = width > 0 ? x.count / width : 0
        var means = [Double](repeating: 0, count: rows), stds = means
        for r in 0..<rows {
            var s = 0.0, s2 = 0.0
            for j in 0..<width {
                let v = Double(x[r * width + j])
                s += v; s2 += v * v
            }
            let m = s / Double(width)
            means[r] = m
            stds[r] = max(s2 / Double(width) - m * m, 0).squareRoot()
        }
        return [means, stds]
    }

    /// The profile of images `x` (rows × width, values as the model sees them) with labels.
    public static func images(_ x: UnsafeBufferPointer<Float>, width: Int, labels: [Int64], classes: Int)
        -> DataProfile
    {
        var features = [String: DistributionSummary]()
        for (name, var values) in zip(imageFeatures, imageStatistics(x, width: width)) {
            features[name] = DistributionSummary(sorting: &values)
        }
        var counts = [Int](repeating: 0, count: classes)
        for l in labels where l >= 0 && Int(l) < classes { counts[Int(l)] += 1 }
        return DataProfile(rows: labels.count, labelCounts: counts, features: features)
    }
}
