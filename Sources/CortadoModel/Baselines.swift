import CortadoCore

/// Training negatives for implicit feedback: items drawn uniformly from the catalogue, or (the
/// default, `exclude_seen`) uniformly from the items the user has no *training* interaction
/// with. On MovieLens-100k a user has rated 106 of 1 682 items on average (up to 737), so a
/// uniform draw labels one of the user's own positives "negative" 6 % of the time on average
/// and 44 % for the heaviest users. Only training interactions are excluded: excluding
/// validation or test items would tell the model what is held out.
public struct NegativeSampler {
    /// Items 1..<items (0 is the unknown id and never drawn).
    public let items: Int
    /// Each user's training items, sorted (nil: draw uniformly, as the NCF paper does).
    public let seen: Interactions?

    public init(items: Int, seen: Interactions?) {
        self.items = items
        self.seen = seen
    }

    /// One negative item for `user`: rejection sampling (a few draws, as users rate a small
    /// part of the catalogue), then an exact walk over the user's items once that has failed
    /// 32 times; uniform over the user's unseen items either way. A user who has seen every
    /// item gets a uniform draw (nothing else is possible).
    @inline(__always)
    public func draw(user: Int32, rng: inout SeededRNG) -> Int32 {
        let pick = Int32(1 + rng.below(items - 1))
        guard let seen else { return pick }
        let mine = seen.items(of: Int(user))
        if mine.isEmpty || !contains(mine, pick) { return pick }
        for _ in 0..<31 {
            let j = Int32(1 + rng.below(items - 1))
            if !contains(mine, j) { return j }
        }
        // Distinct seen items (sorted; an item rated twice appears twice).
        var known = 0
        var previous: Int32 = -1
        for j in mine where j > 0 && j != previous { known += 1; previous = j }
        let free = items - 1 - known
        guard free > 0 else { return pick }
        // The r-th unseen item in 1..<items: step past each seen item at or below the candidate.
        var item = Int32(1 + rng.below(free))
        previous = -1
        for j in mine where j > 0 && j != previous {
            previous = j
            if j <= item { item += 1 } else { break }
        }
        return item
    }

    @inline(__always)
    func contains(_ sorted: ArraySlice<Int32>, _ x: Int32) -> Bool {
        var lo = sorted.startIndex, hi = sorted.endIndex
        while lo < hi {
            let mid = (lo + hi) / 2
            if sorted[mid] < x { lo = mid + 1 } else { hi = mid }
        }
        return lo < sorted.endIndex && sorted[lo] == x
    }
}

/// The rating baselines a model has to beat, fitted on the training split: the global mean,
/// and the damped user + item biases of Koren ("Factor in the neighbors", TKDD 2010, eq. 2):
///
///     b_i = Σ_{u ∈ R(i)} (r_ui − μ) / (λ_i + |R(i)|)           λ_i = 25
///     b_u = Σ_{i ∈ R(u)} (r_ui − μ − b_i) / (λ_u + |R(u)|)      λ_u = 10
///     r̂_ui = μ + b_u + b_i        (an id unseen in training, 0, has bias 0)
///
/// Fitted from sums so that ranks holding parts of the training split get the same numbers:
/// `reduce` adds a vector over ranks (identity for one process); it is called twice, in the
/// same order on every rank.
public struct RatingBaselines {
    public static let itemDamping = 25.0, userDamping = 10.0
    public var mean: Double
    public var userBias: [Double] // (users)
    public var itemBias: [Double] // (items)

    public init(
        users: Int, items: Int, rows: Int, user: (Int) -> Int32, item: (Int) -> Int32, rating: (Int) -> Double,
        reduce: (inout [Double]) -> Void = { _ in }
    ) {
        // [Σ r, n, per item: Σ r, count]
        var a = [Double](repeating: 0, count: 2 + 2 * items)
        for k in 0..<rows {
            let r = rating(k), i = Int(item(k))
            a[0] += r; a[1] += 1
            a[2 + 2 * i] += r; a[3 + 2 * i] += 1
        }
        reduce(&a)
        let mu = a[0] / max(a[1], 1)
        var bi = (0..<items).map { i in (a[2 + 2 * i] - mu * a[3 + 2 * i]) / (Self.itemDamping + a[3 + 2 * i]) }
        bi[0] = 0
        var b = [Double](repeating: 0, count: 2 * users)
        for k in 0..<rows {
            let u = Int(user(k))
            b[2 * u] += rating(k) - mu - bi[Int(item(k))]; b[2 * u + 1] += 1
        }
        reduce(&b)
        var bu = (0..<users).map { u in b[2 * u] / (Self.userDamping + b[2 * u + 1]) }
        bu[0] = 0
        mean = mu; userBias = bu; itemBias = bi
    }

    @inline(__always)
    public func predict(user: Int32, item: Int32) -> Double { mean + userBias[Int(user)] + itemBias[Int(item)] }
}
