import CortadoCore
import Foundation

/// `cortado prepare synthetic-ratings`: interaction data shaped like MovieLens-100k (943 users,
/// 1 682 items, 100 000 ratings of 1–5 stars with timestamps), written as a `u.data`-style TSV
/// (no header; user, item, rating, timestamp; 1-based ids), so the real file goes through the
/// same commands. Offline there is no MovieLens copy; this keeps the shape and gives the data
/// a structure a recommender can find:
///
/// - a planted rank-`rank` preference: rating score = uᵤ·vᵢ + user bias + item bias + noise,
///   mapped to stars by fixed quantiles (≈ MovieLens' 6 / 11 / 27 / 34 / 22 % for 1…5 stars);
/// - which items a user rates: Zipf-like popularity × exp(`affinity` · uᵤ·vᵢ), so users mostly
///   rate what they like, as in MovieLens (with `affinity` 0 the choice would carry no
///   personal signal and no recommender could beat popularity); per-user activity (every user
///   rates at least 20 items, as in MovieLens);
/// - increasing timestamps per user.
public struct SyntheticRatings {
    public var users = 943
    public var items = 1682
    public var ratings = 100_000
    public var rank = 8
    /// How strongly a user's taste steers which items they rate (0: popularity only).
    public var affinity = 4.0
    public var seed: UInt64 = 42

    public init() {}

    /// Writes the TSV atomically and returns the number of lines.
    @discardableResult
    public func write(to path: String) throws -> Int {
        guard users > 0, items > 20, rank > 0, ratings >= users * 20, ratings <= users * items / 2 else {
            throw CortadoError.usage(
                "synthetic-ratings: need users > 0, items > 20, rank > 0 and 20·users ≤ ratings ≤ users·items/2")
        }
        var rng = SeededRNG(seed: seed, stream: 0x5A7)
        let scale = 1 / Double(rank).squareRoot()
        let u = (0..<(users * rank)).map { _ in rng.normal() * scale }
        let v = (0..<(items * rank)).map { _ in rng.normal() * scale }
        let userBias = (0..<users).map { _ in rng.normal() * 0.3 }
        // Popular items are also liked a little more, as in real catalogues.
        let itemRankOrder = (0..<items).shuffled(using: &rng)
        var popularity = [Double](repeating: 0, count: items)
        for (r, i) in itemRankOrder.enumerated() { popularity[i] = 1 / pow(Double(r + 1), 0.8) }
        let itemBias = (0..<items).map {
            0.4 * log(popularity[$0] * Double(items)) / log(Double(items)) + rng.normal() * 0.2
        }
        // Ratings per user: 20 each plus the rest by a skewed activity weight.
        let activity = (0..<users).map { _ in exp(rng.normal()) }
        let activityTotal = activity.reduce(0, +)
        var counts = activity.map { 20 + Int(Double(ratings - 20 * users) * $0 / activityTotal) }
        // Cap the most active at half the catalogue, then hand out what is left round-robin.
        for i in counts.indices { counts[i] = min(counts[i], items / 2) }
        var short = ratings - counts.reduce(0, +)
        var k = 0
        while short > 0 {
            if counts[k % users] < items / 2 { counts[k % users] += 1; short -= 1 }
            k += 1
        }
        let stars = [0.06, 0.17, 0.44, 0.78] // cumulative quantiles of the score → 1…5 stars
        var lines = [(user: Int, item: Int, score: Double, time: Int)]()
        lines.reserveCapacity(ratings)
        var cumulative = [Double](repeating: 0, count: items)
        for user in 0..<users {
            // This user's choice distribution: popularity × taste.
            var total = 0.0
            for i in 0..<items {
                var dot = 0.0
                for f in 0..<rank { dot += u[user * rank + f] * v[i * rank + f] }
                total += popularity[i] * exp(affinity * dot)
                cumulative[i] = total
            }
            var seen = Set<Int>()
            var time = 874_724_710 + rng.below(20_000_000)
            while seen.count < counts[user] {
                let x = rng.uniform() * total
                var lo = 0, hi = items - 1
                while lo < hi { let mid = (lo + hi) / 2; if cumulative[mid] < x { lo = mid + 1 } else { hi = mid } }
                guard seen.insert(lo).inserted else { continue }
                var dot = 0.0
                for f in 0..<rank { dot += u[user * rank + f] * v[lo * rank + f] }
                time += 1 + rng.below(86_400)
                lines.append((user, lo, dot + userBias[user] + itemBias[lo] + rng.normal() * 0.25, time))
            }
        }
        let sortedScores = lines.map(\.score).sorted()
        let cuts = stars.map { sortedScores[Int($0 * Double(sortedScores.count - 1))] }
        var text = ""
        text.reserveCapacity(lines.count * 24)
        for l in lines {
            let rating = 1 + cuts.filter { l.score > $0 }.count
            text += "\(l.user + 1)\t\(l.item + 1)\t\(rating)\t\(l.time)\n"
        }
        try AtomicFile.write(Data(text.utf8), to: path)
        return lines.count
    }
}
