import CortadoCore
import CortadoModel
import Foundation

/// A compression recipe: optional magnitude pruning, then a storage precision — written as
/// `fp32`, `fp16`, `bf16`, `int8`, or `prune0.9+int8` / `prune0.9/layer+fp16` (sparsity 0.9,
/// global by default or per layer). `int8` quantizes activations dynamically (each row its own
/// scale at run time); `int8-static` uses one scale per layer calibrated on training rows from
/// their largest |x| (min/max), `int8-static99.99` from that percentile of |x| (outliers clip). The same strings work in `cortado compress --recipe` and
/// in a job spec's `emit:` list, and name the files (`model-prune0.9+int8.cmodel`).
public struct Recipe: Equatable, CustomStringConvertible {
    public enum Precision: String, CaseIterable { case fp32, fp16, bf16, int8 }
    public typealias Scope = PruningScope

    public var precision: Precision
    /// Fraction of the prunable weights (dense and conv weights, not biases or embeddings)
    /// set to zero, or nil for no pruning.
    public var sparsity: Double?
    public var scope: Scope = .global
    /// int8 only: static activation scales from this percentile of |x| on calibration rows
    /// (100 = min/max), or nil for dynamic per-row scales.
    public var calibrationPercentile: Double?

    public init(
        precision: Precision, sparsity: Double? = nil, scope: Scope = .global, calibrationPercentile: Double? = nil
    ) {
        self.precision = precision
        self.sparsity = sparsity
        self.scope = scope
        self.calibrationPercentile = calibrationPercentile
    }

    public init(_ text: String) throws {
        var precision: Precision?, sparsity: Double?, scope = Scope.global, percentile: Double?
        guard !text.isEmpty else {
            throw CortadoError.usage("recipe: empty (fp32, fp16, bf16, int8, prune<sparsity>[/layer]+<precision>)")
        }
        for part in text.split(separator: "+").map(String.init) {
            if let p = Precision(rawValue: part), precision == nil {
                precision = p
            } else if part.hasPrefix("int8-static"), precision == nil {
                let rest = part.dropFirst("int8-static".count)
                guard rest.isEmpty || (Double(rest).map { $0 > 50 && $0 < 100 } ?? false) else {
                    throw CortadoError.usage(
                        "recipe '\(text)': '\(part)' needs a percentile in (50, 100) after int8-static, e.g. int8-static99.99"
                    )
                }
                precision = .int8
                percentile = rest.isEmpty ? 100 : Double(rest)
            } else if part.hasPrefix("prune"), sparsity == nil {
                let body = part.dropFirst(5).split(separator: "/", maxSplits: 1).map(String.init)
                guard let s = body.first.flatMap(Double.init), s > 0, s < 1 else {
                    throw CortadoError.usage("recipe '\(text)': '\(part)' needs a sparsity in (0, 1), e.g. prune0.9")
                }
                sparsity = s
                if body.count == 2 {
                    guard let sc = Scope(rawValue: body[1]) else {
                        throw CortadoError.usage("recipe '\(text)': scope '\(body[1])' is not global or layer")
                    }
                    scope = sc
                }
            } else {
                throw CortadoError.usage(
                    "recipe '\(text)': '\(part)' is not one of fp32, fp16, bf16, int8, int8-static[<percentile>], prune<sparsity>[/layer]"
                )
            }
        }
        self.init(precision: precision ?? .fp32, sparsity: sparsity, scope: scope, calibrationPercentile: percentile)
    }

    /// The precision as written: `int8-static[<percentile>]` for calibrated int8.
    public var precisionName: String {
        guard let p = calibrationPercentile else { return precision.rawValue }
        return p >= 100 ? "int8-static" : "int8-static" + String(format: "%g", p)
    }

    public var description: String {
        guard let s = sparsity else { return precisionName }
        return "prune\(s)" + (scope == .layer ? "/layer" : "") + "+" + precisionName
    }

    /// The file-name form (no `/`).
    public var fileName: String { "model-" + description.replacingOccurrences(of: "/", with: "-") + ".cmodel" }
}
