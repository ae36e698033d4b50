/// Top-K ranking metrics for recommenders, computed by **full ranking**: the held-out item is
/// ranked against every item the user has not interacted with (not against 100 sampled
/// negatives, which inflates hit rates severalfold). Item id 0 (unknown) is never ranked.

/// Each user's interacted items, compressed-row style: the items of user u are
/// `items[start[u]..<start[u+1]]`, sorted. Built once from (user, item) pairs.
public struct Interactions {
    public let start: [Int]
    public let items: [Int32]

    public init(users: Int, pairs: [(user: Int32, item: Int32)]) {
        var counts = [Int](repeating: 0, count: users + 1)
        for p in pairs { counts[Int(p.user) + 1] += 1 }
        for u in 0..<users { counts[u + 1] += counts[u] }
        var fill = counts
        var items = [Int32](repeating: 0, count: pairs.count)
        for p in pairs { items[fill[Int(p.user)]] = p.item; fill[Int(p.user)] += 1 }
        for u in 0..<users { items[counts[u]..<counts[u + 1]].sort() }
        start = counts
        self.items = items
    }

    public func items(of user: Int) -> ArraySlice<Int32> { items[start[user]..<start[user + 1]] }
}

/// The rank (0 = top) of item `target` among items 1..<count of `scores`, skipping the items
/// flagged in `excluded` (the user's other interactions; the target itself is never skipped).
/// Ties count half: a constant scorer ranks the target mid-pack, not first.
@inlinable
public func expectedRank(scores: UnsafePointer<Float>, count: Int, target: Int, excluded: UnsafePointer<UInt8>)
    -> Double
{
    let t = scores[target]
    var above = 0, ties = 0
    for j in 1..<count where j != target && excluded[j] == 0 {
        if scores[j] > t { above += 1 } else if scores[j] == t { ties += 1 }
    }
    return Double(above) + Double(ties) / 2
}

/// Hit-rate and NDCG at K of one held-out item at `rank`: (1, 1/log₂(rank + 2)) within the top K.
@inlinable
public func hitAndNDCG(rank: Double, k: Int) -> (hit: Double, ndcg: Double) {
    rank < Double(k) ? (1, 1 / log2(rank + 2)) : (0, 0)
}

import Foundation
