import CortadoCore
import Foundation

/// `cortado prepare text`: labeled documents → a data folder of id lists (docs/text.md).
///
/// The training inputs are split into train and validation (`validationFraction`, seeded);
/// the test split comes from `testInputs`, or is held out of the training inputs too
/// (`testFraction`) when there are none. The vocabulary (words seen `minCount` times or more)
/// comes from the train split only.
///
/// Under mpirun every rank reads the inputs and tokenizes its contiguous share of each split;
/// the word counts are merged (allgather, in rank order) into the same vocabulary on every
/// rank, and rank 0 writes the id lists gathered in rank order — so the folder is the same
/// bytes on any number of ranks.
public struct TextPreparer {
    public var trainInputs: [String]
    public var testInputs: [String] = []
    public var out: String
    public var settings = TextSettings()
    public var source = TextSource()
    public var validationFraction = 0.1
    public var testFraction = 0.1
    public var seed: UInt64 = 42
    public var overwrite = false
    public var name = "text"

    public init(trainInputs: [String], out: String) {
        self.trainInputs = trainInputs
        self.out = out
    }

    public func run(comm: Collective = Solo(), log: (String) -> Void = { _ in }) throws -> DatasetManifest {
        let t0 = monotonicSeconds()
        try comm.agree("checking options") {
            try settings.validate()
            guard !trainInputs.isEmpty else { throw CortadoError.usage("give at least one input file") }
            guard validationFraction >= 0, testFraction >= 0, validationFraction + testFraction < 1 else {
                throw CortadoError.usage("--validation/--test-fraction: fractions in [0, 1) whose sum is below 1")
            }
        }
        let (splits, classes) = try comm.agree("reading documents") { try readSplits() }
        // Tokenize this rank's share of every split; count training words.
        var tokens = [String: [[String]]]()
        var counts = [String: Int]()
        for (name, docs) in splits {
            let mine = rowRange(total: docs.count, rank: comm.rank, size: comm.size)
            tokens[name] = docs[mine].map { TextTokenizer.tokens($0.text, settings) }
            if name == "train" { for d in tokens[name]! { for t in d { counts[t, default: 0] += 1 } } }
        }
        let vocabulary = mergeVocabulary(counts, comm: comm)
        let vocab = TextVocabulary(settings: settings, vocabulary: vocabulary)
        let encoder = TextEncoder(vocab)
        let folder = OutputFolder(out, overwrite: overwrite)
        try comm.agree("creating \(folder.staging)") { if comm.rank == 0 { try folder.begin() } }
        var manifestSplits = [String: DatasetManifest.Split]()
        var stats = [String: Double]()
        do {
            for name in ["train", "validation", "test"] {
                let docs = splits[name]!
                let mine = tokens[name]!.map { encoder.ids(tokens: $0) }
                // (count, lengths…, ids…) per rank, gathered in rank order.
                var blob = [Int32(mine.count)] + mine.map { Int32($0.count) }
                for d in mine { blob += d }
                let all = comm.allgather(blob.withUnsafeBytes { Array($0) })
                var offsets = [Int64(0)], ids = [Int32]()
                for part in all {
                    let v = part.withUnsafeBytes { Array($0.bindMemory(to: Int32.self)) }
                    let n = Int(v[0])
                    ids += v[(1 + n)...]
                    for i in 0..<n { offsets.append(offsets.last! + Int64(v[1 + i])) }
                }
                let labels = docs.map { Int64(classes.firstIndex(of: $0.label)!) }
                let known = (tokens[name] ?? []).reduce(0) { $0 + $1.count }
                let inVocab = (tokens[name] ?? []).reduce(0) { a, d in a + d.filter { encoder.index[$0] != nil }.count }
                var sums = [Double(known), Double(inVocab)]
                comm.allreduceSum(&sums)
                stats["\(name)_tokens"] = sums[0]
                stats["\(name)_oov_rate"] = sums[0] > 0 ? 1 - sums[1] / sums[0] : 0
                stats["\(name)_ids"] = Double(ids.count)
                let file = try comm.agree("writing \(name).h5") { () -> DatasetManifest.ShardFile? in
                    guard comm.rank == 0 else { return nil }
                    return try TextShard.write(
                        dir: folder.staging, file: "\(name).h5", split: name, offsets: offsets, ids: ids, labels: labels
                    )
                }
                if let file { manifestSplits[name] = .init(rows: docs.count, files: [file]) }
            }
            stats["vocabulary"] = Double(vocabulary.count)
            stats["embedding_rows"] = Double(vocab.rows)
            var m = DatasetManifest(
                name: name, task: "classification", featureShape: [1], classes: classes, splitSeed: seed,
                transforms: [
                    "text \(settings.tokenizer): \(settings.normalization), \(settings.caseFold ? "case folded" : "cased"), min_count \(settings.minCount), word n-grams ≤ \(settings.wordNgrams) hashed (\(settings.hash)) into \(settings.buckets) buckets"
                ],
                statistics: stats, splits: manifestSplits, source: [:], createdBy: "cortado \(cortadoVersion)")
            m.text = vocab
            try comm.agree("writing the manifest") {
                guard comm.rank == 0 else { return }
                for f in trainInputs + testInputs where FileManager.default.fileExists(atPath: f) {
                    m.source[(f as NSString).lastPathComponent] = try SHA256.hex(fileAt: f)
                }
                try AtomicFile.write(try stableJSON(m), to: folder.file("manifest.json"))
                try folder.commit()
            }
            log(
                String(
                    format:
                        "prepared %@: %d train, %d validation, %d test documents, %d classes, vocabulary %d (+%d buckets) in %.1fs → %@/manifest.json",
                    name, splits["train"]!.count, splits["validation"]!.count, splits["test"]!.count, classes.count,
                    vocabulary.count, settings.wordNgrams > 1 ? settings.buckets : 0, monotonicSeconds() - t0, out))
            return m
        } catch {
            if comm.rank == 0 { folder.abandon() }
            throw error
        }
    }

    /// The documents of each split, and the classes (sorted training labels).
    func readSplits() throws -> (splits: [String: [LabeledDocument]], classes: [String]) {
        var train = [(doc: LabeledDocument, path: String)]()
        for f in trainInputs { train += try source.documents(f).map { ($0, f) } }
        var test = [(doc: LabeledDocument, path: String)]()
        for f in testInputs { test += try source.documents(f).map { ($0, f) } }
        // A seeded permutation picks the held-out documents; each split keeps input order.
        var order = Array(0..<train.count)
        var rng = SeededRNG(seed: seed, stream: 0x7E47)
        order.withUnsafeMutableBufferPointer { rng.shuffle($0) }
        let nVal = Int((Double(train.count) * validationFraction).rounded())
        let nTest = testInputs.isEmpty ? Int((Double(train.count) * testFraction).rounded()) : 0
        var role = [UInt8](repeating: 0, count: train.count)
        for i in order.prefix(nVal) { role[i] = 1 }
        for i in order.dropFirst(nVal).prefix(nTest) { role[i] = 2 }
        var splits = ["train": [LabeledDocument](), "validation": [], "test": []]
        for (i, d) in train.enumerated() { splits[["train", "validation", "test"][Int(role[i])]]!.append(d.doc) }
        splits["test"]! += test.map(\.doc)
        guard !splits["train"]!.isEmpty else { throw CortadoError.data("\(trainInputs[0]): no training documents") }
        let classes = Set(splits["train"]!.map(\.label)).sorted()
        for (d, path) in train + test where !classes.contains(d.label) {
            throw CortadoError.data(
                "\(path):\(d.line): label '\(d.label)' does not occur in the training split (classes: \(classes.prefix(10).joined(separator: ", "))…)"
            )
        }
        return (splits, classes)
    }

    /// The vocabulary from every rank's training word counts: words counted `minCount` times
    /// or more, most frequent first, ties by their UTF-8 bytes.
    func mergeVocabulary(_ counts: [String: Int], comm: Collective) -> [String] {
        var text = [UInt8]()
        for (w, c) in counts { text += Array(w.utf8) + [0] + Array(String(c).utf8) + [0] }
        var total = [String: Int]()
        for part in comm.allgather(text) {
            let fields = part.split(separator: 0, omittingEmptySubsequences: false)
            var i = 0
            while i + 1 < fields.count {
                total[String(decoding: fields[i], as: UTF8.self), default: 0] +=
                    Int(String(decoding: fields[i + 1], as: UTF8.self)) ?? 0
                i += 2
            }
        }
        return total.filter { $0.value >= settings.minCount }.sorted {
            $0.value != $1.value
                ? $0.value > $1.value : Array($0.key.utf8).lexicographicallyPrecedes(Array($1.key.utf8))
        }.map(\.key)
    }
}

/// A text shard: a `cortado-shard` file (so split readers and tools take it) whose `/features`
/// (rows, 1) holds each document's id count and `/labels` its class, plus the id lists:
/// `/offsets` int64 (rows + 1), document r's ids being `/ids` int32 [offsets[r] ..< offsets[r + 1]].
public enum TextShard {
    public static func write(
        dir: String, file: String, split: String, offsets: [Int64], ids: [Int32], labels: [Int64]
    ) throws -> DatasetManifest.ShardFile {
        let path = (dir as NSString).appendingPathComponent(file)
        let rows = labels.count
        precondition(offsets.count == rows + 1 && Int(offsets.last!) == ids.count)
        try AtomicFile.publish(path) { tmp in
            let h5 = try HDF5File.create(tmp)
            try h5.setAttribute("format", ShardFormat.name)
            try h5.setAttribute("format_version", ShardFormat.version)
            try h5.setAttribute("split", split)
            try h5.setAttribute("shard_index", Int64(0))
            try h5.setAttribute("content", "text")
            let lengths = (0..<rows).map { Float(offsets[$0 + 1] - offsets[$0]) }
            try h5.write("features", lengths, shape: [rows, 1])
            try h5.write("labels", labels)
            try h5.write("offsets", offsets)
            // One element at least: HDF5 cannot chunk an empty dataset.
            let stored = ids.isEmpty ? [Int32(0)] : ids
            try stored.withUnsafeBytes {
                try h5.write("ids", $0.baseAddress!, dtype: .int32, shape: [ids.count], chunkRows: 1 << 16)
            }
            try h5.flush()
        }
        return .init(path: file, rows: rows, sha256: try SHA256.hex(fileAt: path))
    }

    /// Documents `range` of a split (over its files): offsets relative to the first document
    /// (range.count + 1) and the ids, each checked against `rows` (the embedding table).
    public static func read(_ reader: SplitReader, range: Range<Int>, rows: Int) throws -> (
        offsets: [Int], ids: [Int32]
    ) {
        var offsets = [0], ids = [Int32]()
        var base = 0
        for f in reader.files {
            defer { base += f.rows }
            let lo = max(range.lowerBound, base), hi = min(range.upperBound, base + f.rows)
            guard lo < hi else { continue }
            let h5 = try HDF5File.open(f.path)
            guard h5.hasDataset("offsets"), h5.hasDataset("ids") else {
                throw CortadoError.data(
                    "\(f.path): no /offsets and /ids (prepare text data with `cortado prepare text`)")
            }
            let o = try h5.readInt64s("offsets")
            guard o.count == f.rows + 1 else {
                throw CortadoError.data("\(f.path): /offsets has \(o.count) entries, expected \(f.rows + 1)")
            }
            let total = try h5.elementCount(of: "ids", elementSize: 4)
            var all = [Int32](repeating: 0, count: max(total, 1))
            try all.withUnsafeMutableBytes { try h5.readAll("ids", dtype: .int32, into: $0.baseAddress!) }
            for r in (lo - base)..<(hi - base) {
                let a = Int(o[r]), b = Int(o[r + 1])
                guard a >= 0, a <= b, b <= total else {
                    throw CortadoError.data("\(f.path): /offsets[\(r)...\(r + 1)] = \(a)...\(b) outside 0...\(total)")
                }
                for j in a..<b {
                    guard all[j] >= 0, Int(all[j]) < rows else {
                        throw CortadoError.data(
                            "\(f.path): id \(all[j]) of document \(r) is outside the \(rows)-row embedding table")
                    }
                    ids.append(all[j])
                }
                offsets.append(ids.count)
            }
        }
        return (offsets, ids)
    }
}
