import CortadoCore
import Foundation

/// Which weights a pruning sparsity is ranked over: all prunable weights together, or each
/// layer's own.
public enum PruningScope: String, CaseIterable, Codable { case global, layer }

/// Magnitude pruning on a parameter arena: the smallest-|w| fraction of the prunable weights
/// becomes zero, ranked over all of them (global: layers that matter less lose more) or within
/// each tensor (layer). Prunable = the weights of dense and conv layers; biases, norms and
/// embedding tables are kept.
///
/// `Pruner` keeps a 0/1 mask arena and a scratch buffer, both allocated once, so gradual
/// pruning (Zhu & Gupta's polynomial schedule, masks recomputed every few steps and re-applied
/// after every optimizer step) allocates nothing in the step loop. Every rank holds the same
/// parameters after each update, so every rank computes the same mask.
public final class Pruner {
    public let layout: ParameterLayout
    public let prunable: [TensorSpec]
    public let scope: PruningScope
    /// 1 where a parameter is kept (everything outside the prunable tensors stays 1).
    public let mask: Arena<Float>
    private let scratch: Arena<Float>
    public private(set) var sparsity = 0.0

    public init(layout: ParameterLayout, scope: PruningScope) {
        self.layout = layout
        self.scope = scope
        prunable = layout.tensors.filter {
            $0.name.hasSuffix(".weight") && $0.shape.count >= 2 && !$0.name.hasPrefix("embedding")
        }
        mask = Arena<Float>(count: layout.count)
        mask.buffer.update(repeating: 1)
        scratch = Arena<Float>(count: max(1, prunable.map(\.count).reduce(0, +)))
    }

    public var prunableCount: Int { prunable.map(\.count).reduce(0, +) }

    /// Recomputes the mask for `sparsity` from the magnitudes in `params`, and applies it.
    public func prune(_ params: UnsafeMutablePointer<Float>, to sparsity: Double) {
        self.sparsity = sparsity
        switch scope {
        case .global:
            var n = 0
            for t in prunable { for i in 0..<t.count { scratch.base[n + i] = abs(params[t.offset + i]) }; n += t.count }
            let threshold = kthSmallest(scratch.base, count: n, k: Int((Double(n) * sparsity).rounded()))
            var ties = threshold.k - threshold.below
            for t in prunable { setMask(t, params: params, threshold: threshold.value, ties: &ties) }
        case .layer:
            for t in prunable {
                for i in 0..<t.count { scratch.base[i] = abs(params[t.offset + i]) }
                let threshold = kthSmallest(
                    scratch.base, count: t.count, k: Int((Double(t.count) * sparsity).rounded()))
                var ties = threshold.k - threshold.below
                setMask(t, params: params, threshold: threshold.value, ties: &ties)
            }
        }
        apply(params)
    }

    /// params ⊙= mask over the prunable tensors (after every optimizer step).
    @inline(__always)
    public func apply(_ params: UnsafeMutablePointer<Float>) {
        for t in prunable { for i in t.offset..<(t.offset + t.count) { params[i] *= mask.base[i] } }
    }

    /// Zeros among the prunable weights of `params`.
    public func zeros(_ params: UnsafePointer<Float>) -> Int {
        prunable.reduce(0) { acc, t in
            acc + (t.offset..<(t.offset + t.count)).reduce(0) { $0 + (params[$1] == 0 ? 1 : 0) }
        }
    }

    /// Polynomial schedule (Zhu & Gupta 2017): 0 before `start`, `final` from `end` on, and
    /// final · (1 − (1 − progress)³) between — fast early, gentle as the network adapts.
    public static func scheduled(step: Int, start: Int, end: Int, final: Double) -> Double {
        if step < start { return 0 }
        if step >= end { return final }
        let p = Double(step - start) / Double(max(end - start, 1))
        return final * (1 - pow(1 - p, 3))
    }

    /// Prunes |w| below the threshold, and values equal to it while `ties` lasts (in arena
    /// order), so exactly the requested count is pruned.
    private func setMask(_ t: TensorSpec, params: UnsafeMutablePointer<Float>, threshold: Float, ties: inout Int) {
        for i in t.offset..<(t.offset + t.count) {
            let a = abs(params[i])
            if a < threshold {
                mask.base[i] = 0
            } else if a == threshold && ties > 0 {
                mask.base[i] = 0; ties -= 1
            } else {
                mask.base[i] = 1
            }
        }
    }

    /// The k-th smallest of `values[0..<count]` (quickselect in place), with how many are
    /// strictly smaller; k = 0 prunes nothing.
    private func kthSmallest(_ values: UnsafeMutablePointer<Float>, count: Int, k: Int) -> (
        value: Float, below: Int, k: Int
    ) {
        guard k > 0, count > 0 else { return (-1, 0, 0) }
        var lo = 0, hi = count - 1, target = min(k, count) - 1
        while lo < hi {
            let pivot = values[(lo + hi) / 2]
            var i = lo, j = hi
            while i <= j {
                while values[i] < pivot { i += 1 }
                while values[j] > pivot { j -= 1 }
                if i <= j { values.swapAt(i, j); i += 1; j -= 1 }
            }
            if target <= j { hi = j } else if target >= i { lo = i } else { break }
        }
        let v = values[target]
        var below = 0
        for i in 0..<count where values[i] < v { below += 1 }
        return (v, below, min(k, count))
    }
}

extension UnsafeMutablePointer where Pointee == Float {
    @inline(__always) func swapAt(_ a: Int, _ b: Int) { let t = self[a]; self[a] = self[b]; self[b] = t }
}
