import CortadoCore
import Foundation

/// `cortado prepare span`: a labeled feedback span (what `cortado feedback join` wrote) plus a
/// replay sample of the original training data → a data folder for fine-tuning. The span's
/// rows are already in the model's input space (the transforms the champion was trained with),
/// so they are stored as they are; the base data's transforms, statistics and classes carry
/// over unchanged.
///
/// Splits: `train` (the span's training part mixed with the replay sample, shuffled),
/// `validation` (the base validation split plus a part of the span), `test` (the base test
/// split, unchanged: the yardstick the champion was measured on) and `test_span` (held-out
/// span rows: the new traffic). Replay keeps the fine-tuned model from forgetting the old
/// distribution.
public struct SpanPreparer {
    public var spans: [String]
    public var base: String // the base data folder or its manifest.json
    public var out: String
    /// Replay rows per span training row (1: as many old rows as new ones).
    public var replay = 2.0
    public var holdout = 0.3
    public var validation = 0.1
    public var shards = 1
    public var seed: UInt64 = 42
    public var overwrite = false

    public init(spans: [String], base: String, out: String) { self.spans = spans; self.base = base; self.out = out }

    var baseManifestPath: String {
        base.hasSuffix(".json") ? base : (base as NSString).appendingPathComponent("manifest.json")
    }

    /// Rows as the model sees them, with labels.
    struct Rows {
        var x = [Float]()
        var y = [Int64]()
        var count: Int { y.count }
    }

    public func run(log: (String) -> Void = { _ in }) throws -> DatasetManifest {
        guard (0..<1).contains(holdout), (0..<1).contains(validation), holdout + validation < 1 else {
            throw CortadoError.usage("--holdout \(holdout) and --validation \(validation) must be ≥ 0 and sum below 1")
        }
        guard replay >= 0, shards >= 1 else { throw CortadoError.usage("--replay must be ≥ 0 and --shards ≥ 1") }
        let baseManifest = try DatasetManifest.load(baseManifestPath)
        guard baseManifest.columns == nil, baseManifest.text == nil, baseManifest.task == "classification" else {
            throw CortadoError.usage(
                "\(baseManifestPath): prepare span takes feature-vector classification data (images); tabular and text spans go through `cortado prepare csv`/`text` with the base schema"
            )
        }
        var span = Rows()
        for s in spans { try readSpan(s, manifest: baseManifest, into: &span) }
        let d = baseManifest.featureCount
        var order = Array(0..<span.count)
        var rng = SeededRNG(seed: seed, stream: 0x59A4)
        order.withUnsafeMutableBufferPointer { rng.shuffle($0) }
        let nTest = Int((Double(span.count) * holdout).rounded()),
            nVal = Int((Double(span.count) * validation).rounded())
        let spanTest = pick(span, order[0..<nTest], d), spanVal = pick(span, order[nTest..<(nTest + nVal)], d)
        let spanTrain = pick(span, order[(nTest + nVal)...], d)
        guard spanTrain.count >= shards else {
            throw CortadoError.usage(
                "the span has \(span.count) rows: too few to train on after --holdout/--validation")
        }
        let baseTrain = try readSplit("train", baseManifest)
        let nReplay = min(Int((Double(spanTrain.count) * replay).rounded()), baseTrain.count)
        var pool = Array(0..<baseTrain.count)
        pool.withUnsafeMutableBufferPointer { rng.shuffle($0) }
        var train = concat(spanTrain, pick(baseTrain, pool[0..<nReplay], d), d)
        var mix = Array(0..<train.count)
        mix.withUnsafeMutableBufferPointer { rng.shuffle($0) }
        train = pick(train, mix[...], d)
        let val = concat(try readSplit("validation", baseManifest), spanVal, d)
        let test = try readSplit("test", baseManifest)
        log(
            "span: \(span.count) rows → train \(spanTrain.count), validation \(spanVal.count), test_span \(spanTest.count); replay: \(nReplay) of \(baseTrain.count) base training rows"
        )
        return try write(
            splits: ["train": train, "validation": val, "test": test, "test_span": spanTest], base: baseManifest,
            note:
                "train = \(spanTrain.count) span rows + \(nReplay) replayed base rows (replay \(replay)), shuffled; validation = base validation + \(spanVal.count) span rows; test = base test; test_span = \(spanTest.count) held-out span rows (holdout \(holdout), seed \(seed))",
            log: log)
    }

    /// Reads a span CSV: `label` (class names or numbers) and `x0…x{d-1}`; other columns
    /// (request id, version, prediction) are kept for audit only.
    func readSpan(_ path: String, manifest: DatasetManifest, into rows: inout Rows) throws {
        let csv = try CSVTokenizer(path: path)
        guard try csv.next() else { throw CortadoError.data("\(path): empty span") }
        let header = (0..<csv.fieldCount).map { csv.string($0) }
        let d = manifest.featureCount
        guard let labelCol = header.firstIndex(of: "label") else {
            throw CortadoError.data("\(path): no 'label' column (a span from `cortado feedback join` has one)")
        }
        let xCols = try (0..<d).map { j -> Int in
            guard let c = header.firstIndex(of: "x\(j)") else {
                throw CortadoError.data("\(path): no column 'x\(j)': the base data has \(d) features per row")
            }
            return c
        }
        while try csv.next() {
            guard csv.fieldCount == header.count else {
                throw CortadoError.data("\(csv.here): \(csv.fieldCount) fields, the header has \(header.count)")
            }
            let label = csv.string(labelCol)
            guard let y = manifest.classes.firstIndex(of: label) ?? Int(label), manifest.classes.indices.contains(y)
            else {
                throw CortadoError.data("\(csv.here): label: '\(label)' is not a class of \(baseManifestPath)")
            }
            for (j, c) in xCols.enumerated() {
                guard let v = Float(csv.string(c)), v.isFinite else {
                    throw CortadoError.data("\(csv.here): x\(j): '\(csv.string(c))' is not a finite number")
                }
                rows.x.append(v)
            }
            rows.y.append(Int64(y))
        }
    }

    func readSplit(_ name: String, _ m: DatasetManifest) throws -> Rows {
        let r = try SplitReader(manifestPath: baseManifestPath, split: name)
        var x = [Float](repeating: 0, count: r.rows * r.featureCount), y = [Int32](repeating: 0, count: r.rows)
        try x.withUnsafeMutableBufferPointer { xb in
            try y.withUnsafeMutableBufferPointer {
                try r.read(0..<r.rows, features: xb.baseAddress!, labels: $0.baseAddress!)
            }
        }
        return Rows(x: x, y: y.map { Int64($0) })
    }

    func pick(_ r: Rows, _ idx: ArraySlice<Int>, _ d: Int) -> Rows {
        var o = Rows()
        o.x.reserveCapacity(idx.count * d)
        for i in idx {
            o.x += r.x[(i * d)..<(i * d + d)]
            o.y.append(r.y[i])
        }
        return o
    }

    func concat(_ a: Rows, _ b: Rows, _ d: Int) -> Rows { Rows(x: a.x + b.x, y: a.y + b.y) }

    func write(splits: [String: Rows], base: DatasetManifest, note: String, log: (String) -> Void) throws
        -> DatasetManifest
    {
        let d = base.featureCount
        let folder = OutputFolder(out, overwrite: overwrite)
        try folder.begin()
        do {
            var entries = [String: DatasetManifest.Split]()
            for (name, rows) in splits.sorted(by: { $0.key < $1.key }) {
                let parts = name == "train" ? shards : 1
                var files = [DatasetManifest.ShardFile]()
                for s in 0..<parts {
                    let r = rowRange(total: rows.count, rank: s, size: parts)
                    let file = name == "train" ? String(format: "train-%03d.h5", s) : "\(name).h5"
                    files.append(
                        try rows.x[(r.lowerBound * d)..<(r.upperBound * d)].withUnsafeBufferPointer {
                            try ShardFormat.write(
                                dir: folder.staging, file: file, split: name, index: s, features: $0,
                                labels: Array(rows.y[r]), featureCount: d)
                        })
                    log("wrote \(file): \(r.count) rows")
                }
                entries[name] = .init(rows: rows.count, files: files)
            }
            var m = base
            m.name = base.name + "+feedback"
            m.splits = entries
            m.transforms.append(note)
            m.createdBy = "cortado prepare span"
            m.source = ["base manifest.json": try SHA256.hex(fileAt: baseManifestPath)]
            for s in spans { m.source[(s as NSString).lastPathComponent] = try SHA256.hex(fileAt: s) }
            let train = splits["train"]!
            m.profile = train.x.withUnsafeBufferPointer {
                DataProfile.images($0, width: d, labels: train.y, classes: base.classes.count)
            }
            try AtomicFile.write(try stableJSON(m), to: folder.file("manifest.json"))
            try folder.commit()
            return m
        } catch {
            folder.abandon()
            throw error
        }
    }
}
