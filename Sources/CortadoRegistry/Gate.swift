import CortadoCore
import CortadoData
import CortadoInfer
import CortadoModel
import Foundation

/// What a candidate must show before it replaces the champion (`gate.yaml`, docs/loop.md):
/// absolute floors per slice, a minimum improvement on one slice, no slice worse than the
/// champion beyond a tolerance, and that it loads and answers in `cortado-infer serve`.
public struct Gate: Equatable {
    public var floors: [(slice: String, min: Double)] = []
    public var improvementSlice: String?
    public var minAbsoluteImprovement: Double?
    public var minRelativeImprovement: Double?
    public var regressionTolerance: Double?
    public var regressionMinRows = 100
    public var sliceColumns: [String] = []
    public var serve = true

    public static func == (a: Gate, b: Gate) -> Bool {
        a.floors.map(\.slice) == b.floors.map(\.slice) && a.floors.map(\.min) == b.floors.map(\.min)
            && a.improvementSlice == b.improvementSlice && a.minAbsoluteImprovement == b.minAbsoluteImprovement
            && a.minRelativeImprovement == b.minRelativeImprovement && a.regressionTolerance == b.regressionTolerance
            && a.regressionMinRows == b.regressionMinRows && a.sliceColumns == b.sliceColumns && a.serve == b.serve
    }

    public init() {}

    /// Reads and checks a gate file; every key is known or an error names it.
    public static func load(_ path: String) throws -> Gate {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw CortadoError.usage("\(path): no such gate file")
        }
        let r = try ConfigReader(try ConfigNode.parse(text, origin: path), path: "")
        var g = Gate()
        if let metric = try r.string("metric"), metric != "accuracy" {
            throw CortadoError.usage("\(path): metric: '\(metric)' (this build gates classifiers on accuracy)")
        }
        if let floors = try r.child("floors") {
            for slice in floors.keys {
                guard let v = try floors.double(slice), (0...1).contains(v) else {
                    throw CortadoError.usage("\(path): floors.\(slice): expected an accuracy in 0...1")
                }
                g.floors.append((slice, v))
            }
            try floors.finish()
        }
        if let imp = try r.child("improvement") {
            g.improvementSlice = try imp.required("slice", imp.string)
            g.minAbsoluteImprovement = try imp.double("absolute")
            g.minRelativeImprovement = try imp.double("relative")
            guard g.minAbsoluteImprovement != nil || g.minRelativeImprovement != nil else {
                throw CortadoError.usage("\(path): improvement: give 'absolute' or 'relative' (or both)")
            }
            try imp.finish()
        }
        if let reg = try r.child("regression") {
            g.regressionTolerance = try reg.required("tolerance", reg.double)
            g.regressionMinRows = try reg.int("min_rows") ?? g.regressionMinRows
            try reg.finish()
        }
        g.sliceColumns = try (r.list("slice_columns") ?? []).map { node in
            guard case .scalar(let s) = node else { throw CortadoError.usage("\(path): slice_columns: names only") }
            return s
        }
        g.serve = try r.bool("serve") ?? true
        try r.finish()
        return g
    }
}

/// One slice's accuracy for both models.
public struct SliceResult: Codable, Equatable {
    public var name: String
    public var rows: Int
    public var champion: Double
    public var candidate: Double
    public var delta: Double { candidate - champion }

    enum CodingKeys: String, CodingKey { case name, rows, champion, candidate, delta }

    public init(name: String, rows: Int, champion: Double, candidate: Double) {
        self.name = name; self.rows = rows; self.champion = champion; self.candidate = candidate
    }

    public init(from d: Decoder) throws {
        let c = try d.container(keyedBy: CodingKeys.self)
        self.init(
            name: try c.decode(String.self, forKey: .name), rows: try c.decode(Int.self, forKey: .rows),
            champion: try c.decode(Double.self, forKey: .champion),
            candidate: try c.decode(Double.self, forKey: .candidate))
    }

    public func encode(to e: Encoder) throws {
        var c = e.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name); try c.encode(rows, forKey: .rows)
        try c.encode(champion, forKey: .champion); try c.encode(candidate, forKey: .candidate)
        try c.encode(delta, forKey: .delta)
    }
}

/// Slices of the test data: `overall` (every split named test*), `split:NAME` per test split,
/// `class:NAME` per true class, and `COLUMN:VALUE` per value of a categorical column the gate
/// names. Both models score the same rows.
public enum Slicing {
    public static func score(
        candidate: InferenceModel, candidatePath: String, champion: InferenceModel, championPath: String,
        manifestPath: String, columns: [String]
    ) throws -> [SliceResult] {
        let manifest = try DatasetManifest.load(manifestPath)
        let splits = manifest.splits.keys.filter { $0.hasPrefix("test") }.sorted()
        guard !splits.isEmpty else { throw CortadoError.data("\(manifestPath): no test split to evaluate on") }
        let idColumns = manifest.categoricalColumns ?? []
        for c in columns where !idColumns.contains(c) {
            throw CortadoError.usage(
                "slice_columns: '\(c)' is not a categorical id column of \(manifestPath) (have: \(idColumns.joined(separator: ", ")))"
            )
        }
        // slice name → (rows, champion correct, candidate correct), in first-seen order.
        var tally = [String: (Int, Int, Int)](), order = [String]()
        func add(_ name: String, _ a: Bool, _ b: Bool) {
            if tally[name] == nil { order.append(name); tally[name] = (0, 0, 0) }
            tally[name]!.0 += 1
            tally[name]!.1 += a ? 1 : 0
            tally[name]!.2 += b ? 1 : 0
        }
        for s in splits {
            let reader = try SplitReader(manifestPath: manifestPath, split: s)
            let a = try Evaluation.predictions(champion, path: championPath, split: reader)
            let b = try Evaluation.predictions(candidate, path: candidatePath, split: reader)
            for r in 0..<reader.rows {
                let y = Int(a.labels[r]), okA = a.predicted[r] == y, okB = b.predicted[r] == y
                add("overall", okA, okB)
                add("split:\(s)", okA, okB)
                add("class:\(manifest.classes[safe: y] ?? String(y))", okA, okB)
                for c in columns {
                    let j = idColumns.firstIndex(of: c)!, id = Int(a.ids[r * idColumns.count + j])
                    let vocab = manifest.columns?.first { $0.name == c }?.vocabulary ?? []
                    add("\(c):\(id == 0 ? "(unknown)" : vocab[safe: id - 1] ?? String(id))", okA, okB)
                }
            }
        }
        return order.map { name in
            let (n, a, b) = tally[name]!
            return SliceResult(name: name, rows: n, champion: Double(a) / Double(n), candidate: Double(b) / Double(n))
        }
    }
}

extension Array {
    subscript(safe i: Int) -> Element? { indices.contains(i) ? self[i] : nil }
}
