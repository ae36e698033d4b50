/// Evaluation metrics beyond loss and accuracy.

/// Rows whose label is among the `k` highest logits (ties counted in the label's favour only
/// when strictly fewer than k logits exceed it).
/// - logits: (batch, classes); labels: (batch).
@inlinable
public func topKCorrect<T: Real>(
    logits: UnsafePointer<T>, labels: UnsafePointer<Int32>, batch: Int, classes: Int, k: Int
) -> Int {
    var correct = 0
    for r in 0..<batch {
        let z = logits + r * classes
        let target = z[Int(labels[r])]
        var above = 0
        for c in 0..<classes where z[c] > target { above += 1 }
        if above < k { correct += 1 }
    }
    return correct
}

/// Area under the ROC curve: the probability that a random positive scores above a random
/// negative (Mann–Whitney U, ties counted half). NaN when one class is absent.
public func rocAUC(scores: [Float], positives: [Bool]) -> Double {
    precondition(scores.count == positives.count)
    let order = scores.indices.sorted { scores[$0] < scores[$1] }
    var rankSumPositives = 0.0
    var i = 0
    while i < order.count {
        var j = i
        while j + 1 < order.count && scores[order[j + 1]] == scores[order[i]] { j += 1 }
        let averageRank = Double(i + j) / 2 + 1 // 1-based average rank of the tie group
        for t in i...j where positives[order[t]] { rankSumPositives += averageRank }
        i = j + 1
    }
    let p = Double(positives.filter { $0 }.count), n = Double(positives.count) - p
    guard p > 0, n > 0 else { return .nan }
    return (rankSumPositives - p * (p + 1) / 2) / (p * n)
}
