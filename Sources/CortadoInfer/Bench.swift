import CortadoCore
import CortadoData
import Foundation

/// What `cortado-infer --bench` measures: batch-1 latency percentiles (the serving case) and
/// rows/s at growing batch sizes (the offline case), on real rows and a fixed thread count.
public struct BenchResult: Codable {
    public struct Throughput: Codable {
        public var batch: Int
        public var rowsPerSecond: Double
        enum CodingKeys: String, CodingKey { case batch, rowsPerSecond = "rows_per_sec" }
    }
    public var model: String
    public var precision: String
    public var threads: Int
    public var int8Kernel: String
    /// Layers that ran on the sparse kernel.
    public var sparseLayers: [Int]
    public var latencyMs: [String: Double] // p50, p90, p99 at batch 1
    public var throughput: [Throughput]

    enum CodingKeys: String, CodingKey {
        case model, precision, threads, throughput
        case int8Kernel = "int8_kernel", sparseLayers = "sparse_layers", latencyMs = "batch1_latency_ms"
    }
}

public enum InferenceBench {
    /// The rows a benchmark runs on: the first `rows` of an HDF5 file's /features, repeated
    /// when the file has fewer; seeded normal noise when no file is given.
    public static func rows(model: InferenceModel, input: String?, rows: Int) throws -> [Float] {
        let d = model.spec.inputSize
        var x = [Float](repeating: 0, count: rows * d)
        guard let input else {
            var rng = SeededRNG(seed: 1)
            for i in x.indices { x[i] = Float(rng.normal()) }
            return x
        }
        let h5 = try HDF5File.open(input)
        try h5.expectType("features", .float32)
        let shape = try h5.shape(of: "features")
        guard shape.count == 2, shape[1] == d, shape[0] > 0 else {
            throw CortadoError.data("\(input): 'features' has shape \(shape), model \(model.path) expects [rows, \(d)]")
        }
        let have = min(rows, shape[0])
        try x.withUnsafeMutableBufferPointer {
            try h5.readRows("features", start: 0, count: have, dtype: .float32, into: $0.baseAddress!)
        }
        for r in have..<rows { for j in 0..<d { x[r * d + j] = x[(r % have) * d + j] } }
        return x
    }

    /// Batch-1 latency over `calls` single rows (after 50 warm-up calls; percentiles by rank),
    /// then for each batch size the best rows/s of 3 rounds of ≥ `seconds` each.
    public static func run(
        model: InferenceModel, x: [Float], batches: [Int], threads: Int,
        calls: Int = 2000, seconds: Double = 0.2
    ) -> BenchResult {
        let d = model.spec.inputSize
        let rows = x.count / d
        let largest = batches.max() ?? 1
        precondition(rows >= largest, "bench rows \(rows) < largest batch \(largest)")
        var p = [Float](repeating: 0, count: largest * model.classes)
        var times = [Double]()
        times.reserveCapacity(calls)
        var throughput = [BenchResult.Throughput]()
        x.withUnsafeBufferPointer { xb in
            p.withUnsafeMutableBufferPointer { pb in
                let xs = xb.baseAddress!, ps = pb.baseAddress!
                model.predict(xs, batch: largest, probabilities: ps) // sizes the scratch once
                for i in 0..<(calls + 50) {
                    let t0 = monotonicSeconds()
                    model.predict(xs + (i % rows) * d, batch: 1, probabilities: ps)
                    if i >= 50 { times.append(monotonicSeconds() - t0) }
                }
                for b in batches {
                    var best = 0.0
                    for _ in 0..<3 {
                        var done = 0, at = 0
                        let t0 = monotonicSeconds()
                        repeat {
                            if at + b > rows { at = 0 }
                            model.predict(xs + at * d, batch: b, probabilities: ps)
                            at += b; done += b
                        } while monotonicSeconds() - t0 < seconds
                        best = max(best, Double(done) / (monotonicSeconds() - t0))
                    }
                    throughput.append(.init(batch: b, rowsPerSecond: best))
                }
            }
        }
        times.sort()
        func pct(_ q: Double) -> Double { times[min(times.count - 1, Int(q * Double(times.count)))] * 1000 }
        return BenchResult(
            model: model.path, precision: model.header.precision, threads: threads,
            int8Kernel: InferenceModel.int8PathName, sparseLayers: model.sparseLayerIndices,
            latencyMs: ["p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99)], throughput: throughput)
    }

    /// The human-readable form.
    public static func text(_ r: BenchResult) -> String {
        var s =
            "model \(r.model) (\(r.precision)), \(r.threads) thread(s), int8 kernel \(r.int8Kernel)"
            + (r.sparseLayers.isEmpty
                ? "" : ", sparse layers \(r.sparseLayers.map(String.init).joined(separator: ","))") + "\n"
        s += String(
            format: "batch 1 latency: p50 %.4f ms  p90 %.4f ms  p99 %.4f ms\n",
            r.latencyMs["p50"] ?? 0, r.latencyMs["p90"] ?? 0, r.latencyMs["p99"] ?? 0)
        s += "batch      rows/s\n"
        for t in r.throughput { s += String(format: "%5d  %10.0f\n", t.batch, t.rowsPerSecond) }
        return s
    }
}
