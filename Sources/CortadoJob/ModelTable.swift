import CortadoCore
import CortadoData
import CortadoModel
import Foundation

/// `cortado inspect JOB.yaml|MODEL.cmodel`: the architecture as a table — layer, output shape,
/// parameters, forward FLOPs per sample, frozen or not — the numbers to check before a run.
public enum ModelTable {
    /// The table for a job spec (input shape and id-table sizes from its data's manifest) or
    /// a model file.
    public static func describe(path: String) throws -> String {
        if path.hasSuffix(".cmodel") {
            let h = try ModelFile.load(path).header
            if let r = h.recommender { return recommender(r, frozen: []) + "precision: \(h.precision)\n" }
            return feedForward(h.model, frozen: []) + "precision: \(h.precision), classes: \(h.classes.count)\n"
        }
        let job = try JobSpec.load(path: path)
        let manifest = try DatasetManifest.load(job.data)
        if job.family == .recommender {
            return recommender(try job.recommenderSpec(manifest: manifest), frozen: Set(job.freeze))
        }
        let model = job.modelSpec(inputShape: manifest.featureShape)
        try model.validate(classes: manifest.classes.count)
        return feedForward(model, frozen: Set(job.freeze))
    }

    static func table(_ rows: [[String]]) -> String {
        let widths = rows[0].indices.map { c in rows.map { $0[c].count }.max()! }
        return rows.map { r in
            r.enumerated().map { c, v in
                c == 0 || c == 1
                    ? v.padding(toLength: widths[c], withPad: " ", startingAt: 0)
                    : String(repeating: " ", count: widths[c] - v.count) + v
            }
            .joined(separator: "  ")
        }.joined(separator: "\n") + "\n"
    }

    static func feedForward(_ m: ModelSpec, frozen: Set<Int>) -> String {
        var rows = [["#", "layer", "output", "params", "FLOPs/sample", "frozen"]]
        rows.append(["", "input", "\(m.inputShape)", "0", "0", ""])
        let params = m.parametersPerLayer, flops = m.forwardFLOPsPerLayer
        for (i, l) in m.layers.enumerated() {
            rows.append([
                String(i), l.description, "\(m.shapes[i])", String(params[i]), String(Int(flops[i])),
                frozen.contains(i) ? "yes" : ""
            ])
        }
        let trainable = params.enumerated().filter { !frozen.contains($0.offset) }.reduce(0) { $0 + $1.element }
        return table(rows)
            + "total: \(m.parameterLayout.count) parameters (\(trainable) trainable), \(Int(flops.reduce(0, +))) forward FLOPs/sample, \(Int(m.trainingFLOPsPerSample)) training FLOPs/sample (GEMM layers)\n"
    }

    static func recommender(_ r: RecommenderSpec, frozen: Set<Int>) -> String {
        var rows = [["#", "layer", "output", "params", "FLOPs/sample", "frozen"]]
        rows.append(["", "user_embedding (\(r.userColumn))", "[\(r.dim)]", String(r.users * r.dim), "0", ""])
        rows.append(["", "item_embedding (\(r.itemColumn))", "[\(r.dim)]", String(r.items * r.dim), "0", ""])
        rows.append(["", "concatenate", "[\(2 * r.dim)]", "0", "0", ""])
        if r.dot { rows.append(["", "dot(user, item)", "[1]", "0", String(2 * r.dim), ""]) }
        if r.bias { rows.append(["", "biases (global, user, item)", "[1]", String(1 + r.users + r.items), "3", ""]) }
        let t = r.tower
        let params = t.parametersPerLayer, flops = t.forwardFLOPsPerLayer
        for (i, l) in r.mlp.enumerated() {
            rows.append([
                String(i), "mlp: " + l.description, "\(t.shapes[i])", String(params[i]), String(Int(flops[i])),
                frozen.contains(i) ? "yes" : ""
            ])
        }
        return table(rows)
            + "total: \(r.parameterLayout.count) parameters (embedding tables \(r.users * r.dim + r.items * r.dim)), loss \(r.loss), \(Int(r.forwardFLOPs)) forward FLOPs per scored pair\n"
    }
}
