import CortadoCore
import Foundation

/// `cortado prepare fashion-mnist`: the four IDX gzip files → N training shards, a validation
/// file and a test file (HDF5) plus `manifest.json`.
public struct FashionMNISTPreparer {
    public static let defaultSource = "/usr/share/datasets/fashion-mnist"
    public static let classes = [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"
    ]

    public var source = FashionMNISTPreparer.defaultSource
    public var out: String
    public var shards = 1
    public var validationRows = 5000
    public var seed: UInt64 = 42
    /// Keep only the first `limit` training and test images (quick runs and tests).
    public var limit: Int?
    /// Keep only these classes, relabelled 0..<k in this order (transfer-learning splits).
    public var classes: [Int]?

    public init(out: String) { self.out = out }

    /// The four IDX arrays, in `paths` order: training images and labels, test images and labels.
    struct Sources {
        var paths: [String]
        var trainX: IDXArray, trainY: IDXArray, testX: IDXArray, testY: IDXArray
    }

    /// Sums over the training pixels, for their mean and standard deviation.
    struct PixelSums {
        var sum = 0.0, sumSq = 0.0
        var profile: DataProfile?
    }

    static let pixels = 784 // 28 × 28: one row's features

    /// Runs the preparation; returns the manifest. Nothing is published under `out` until every
    /// file is complete: shards are written atomically and the manifest last.
    public func run(log: (String) -> Void = { _ in }) throws -> DatasetManifest {
        guard shards >= 1 else { throw CortadoError.usage("--shards must be at least 1, got \(shards)") }
        let src = try readSources()
        let kept = try keptClasses()
        let relabel = Dictionary(uniqueKeysWithValues: kept.enumerated().map { (UInt8($1), Int64($0)) })
        let trainPool = (0..<min(src.trainX.dims[0], limit ?? .max)).filter { relabel[src.trainY.bytes[$0]] != nil }
        let testPool = (0..<min(src.testX.dims[0], limit ?? .max)).filter { relabel[src.testY.bytes[$0]] != nil }
        let nTrain = try trainingRows(pool: trainPool.count)
        try ensureWritableDirectory(out)
        log("read \(src.trainX.dims[0]) training and \(src.testX.dims[0]) test images from \(source)")
        let (splits, stats) = try writeSplits(
            src, trainPool: trainPool, testPool: testPool, nTrain: nTrain, relabel: relabel, log: log)
        return try writeManifest(kept: kept, splits: splits, stats: stats, nTrain: nTrain, sources: src.paths)
    }

    /// Reads the four IDX files and checks that images and labels match.
    func readSources() throws -> Sources {
        let paths = [
            "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
            "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"
        ].map { (source as NSString).appendingPathComponent($0) }
        let src = Sources(
            paths: paths, trainX: try IDXArray.read(paths[0], expectedRank: 3),
            trainY: try IDXArray.read(paths[1], expectedRank: 1), testX: try IDXArray.read(paths[2], expectedRank: 3),
            testY: try IDXArray.read(paths[3], expectedRank: 1))
        for (x, y, px, py) in [(src.trainX, src.trainY, paths[0], paths[1]), (src.testX, src.testY, paths[2], paths[3])]
        {
            guard x.dims[0] == y.dims[0] else {
                throw CortadoError.data("\(px) has \(x.dims[0]) images but \(py) has \(y.dims[0]) labels")
            }
            guard x.dims[1] == 28, x.dims[2] == 28 else {
                throw CortadoError.data("\(px): images are \(x.dims[1])x\(x.dims[2]), expected 28x28")
            }
            if let bad = y.bytes.firstIndex(where: { $0 >= 10 }) {
                throw CortadoError.data("\(py): label \(y.bytes[bad]) at index \(bad) is outside 0..<10")
            }
        }
        return src
    }

    /// The classes kept (`--classes`, or all ten), in their new label order.
    func keptClasses() throws -> [Int] {
        let kept = classes ?? Array(0..<10)
        guard !kept.isEmpty, kept.allSatisfy({ (0..<10).contains($0) }), Set(kept).count == kept.count else {
            throw CortadoError.usage("--classes: \(kept) must be distinct class numbers in 0...9")
        }
        return kept
    }

    /// The training rows left once the validation rows are taken out of `pool`.
    func trainingRows(pool nTrainAll: Int) throws -> Int {
        guard validationRows >= 0, validationRows < nTrainAll else {
            throw CortadoError.usage("--validation \(validationRows) must be below the \(nTrainAll) training rows")
        }
        let nTrain = nTrainAll - validationRows
        guard nTrain >= shards else {
            throw CortadoError.usage("--shards \(shards) exceeds the \(nTrain) training rows")
        }
        return nTrain
    }

    /// Writes the training shards, the validation file and the test file; returns the
    /// manifest's splits and the training pixels' sums.
    func writeSplits(
        _ src: Sources, trainPool: [Int], testPool: [Int], nTrain: Int, relabel: [UInt8: Int64],
        log: (String) -> Void
    ) throws -> ([String: DatasetManifest.Split], PixelSums) {
        // Deterministic split: one permutation of the training rows from the seed; the first
        // `validationRows` of it are the validation set, the rest (in permuted order) training.
        var order = trainPool
        var rng = SeededRNG(seed: seed, stream: 0x5EED)
        order.withUnsafeMutableBufferPointer { rng.shuffle($0) }
        let valIdx = Array(order[0..<validationRows])
        let trainIdx = Array(order[validationRows...])

        var stats = PixelSums(), untracked = PixelSums()
        var trainFiles = [DatasetManifest.ShardFile]()
        for s in 0..<shards {
            let r = rowRange(total: nTrain, rank: s, size: shards)
            trainFiles.append(
                try writeShard(
                    String(format: "train-%03d.h5", s), split: "train", index: s, x: src.trainX, y: src.trainY,
                    rows: trainIdx[r], relabel: relabel, trackStats: true, stats: &stats, log: log))
        }
        let valFile = try writeShard(
            "validation.h5", split: "validation", index: 0, x: src.trainX, y: src.trainY, rows: valIdx[...],
            relabel: relabel, trackStats: false, stats: &untracked, log: log)
        let testFile = try writeShard(
            "test.h5", split: "test", index: 0, x: src.testX, y: src.testY, rows: testPool[...], relabel: relabel,
            trackStats: false, stats: &untracked, log: log)
        stats.profile = profile(src, rows: trainIdx, relabel: relabel)
        let splits: [String: DatasetManifest.Split] = [
            "train": .init(rows: nTrain, files: trainFiles),
            "validation": .init(rows: validationRows, files: [valFile]),
            "test": .init(rows: testPool.count, files: [testFile])
        ]
        return (splits, stats)
    }

    /// Writes rows `idx` of (x, y) as one shard file, pixels scaled to [0, 1] and labels
    /// relabelled; with `trackStats`, adds its pixels to `stats`.
    func writeShard(
        _ file: String, split: String, index: Int, x: IDXArray, y: IDXArray, rows idx: ArraySlice<Int>,
        relabel: [UInt8: Int64], trackStats: Bool, stats: inout PixelSums, log: (String) -> Void
    ) throws -> DatasetManifest.ShardFile {
        let d = Self.pixels
        var feats = [Float](repeating: 0, count: idx.count * d) // (rows, 784), row-major
        var labels = [Int64](repeating: 0, count: idx.count)
        for (r, src) in idx.enumerated() {
            labels[r] = relabel[y.bytes[src]] ?? 0
            for j in 0..<d {
                let v = Float(x.bytes[src * d + j]) / 255
                feats[r * d + j] = v
                if trackStats { stats.sum += Double(v); stats.sumSq += Double(v) * Double(v) }
            }
        }
        let entry = try feats.withUnsafeBufferPointer {
            try ShardFormat.write(
                dir: out, file: file, split: split, index: index, features: $0, labels: labels, featureCount: d)
        }
        log("wrote \(file): \(idx.count) rows")
        return entry
    }

    /// The training images' profile (brightness, contrast, class mix) for drift reports.
    func profile(_ src: Sources, rows idx: [Int], relabel: [UInt8: Int64]) -> DataProfile {
        let d = Self.pixels
        var x = [Float](repeating: 0, count: idx.count * d)
        for (r, i) in idx.enumerated() { for j in 0..<d { x[r * d + j] = Float(src.trainX.bytes[i * d + j]) / 255 } }
        let labels = idx.map { relabel[src.trainY.bytes[$0]] ?? 0 }
        return x.withUnsafeBufferPointer { DataProfile.images($0, width: d, labels: labels, classes: relabel.count) }
    }

    /// The manifest, with the sources' checksums, written last.
    func writeManifest(
        kept: [Int], splits: [String: DatasetManifest.Split], stats: PixelSums, nTrain: Int, sources: [String]
    ) throws -> DatasetManifest {
        let n = Double(nTrain * Self.pixels)
        let mean = stats.sum / n
        var manifest = DatasetManifest(
            name: "fashion-mnist", task: "classification", featureShape: [1, 28, 28],
            classes: kept.map { Self.classes[$0] }, splitSeed: seed,
            transforms: ["pixels: uint8 / 255 -> float32 in [0, 1]", "flattened row-major to 784 features"],
            statistics: ["train_pixel_mean": mean, "train_pixel_std": (stats.sumSq / n - mean * mean).squareRoot()],
            splits: splits, source: [:], createdBy: "cortado prepare fashion-mnist")
        manifest.profile = stats.profile
        for f in sources { manifest.source[(f as NSString).lastPathComponent] = try SHA256.hex(fileAt: f) }
        if let limit { manifest.transforms.append("limited to the first \(limit) training and test images") }
        if let classes { manifest.transforms.append("classes \(classes) only, relabelled 0..<\(classes.count)") }
        try AtomicFile.write(try stableJSON(manifest), to: (out as NSString).appendingPathComponent("manifest.json"))
        return manifest
    }
}
