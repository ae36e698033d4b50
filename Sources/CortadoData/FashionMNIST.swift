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

    /// Runs the preparation; returns the manifest. Nothing is published under `out` until every
    /// file is complete: shards are written atomically and the manifest last.
    public func run(log: (String) -> Void = { _ in }) throws -> DatasetManifest {
        guard shards >= 1 else { throw CortadoError.usage("--shards must be at least 1, got \(shards)") }
        let files = [
            "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
            "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"
        ].map { (source as NSString).appendingPathComponent($0) }
        let trainX = try IDXArray.read(files[0], expectedRank: 3)
        let trainY = try IDXArray.read(files[1], expectedRank: 1)
        let testX = try IDXArray.read(files[2], expectedRank: 3)
        let testY = try IDXArray.read(files[3], expectedRank: 1)
        for (x, y, px, py) in [(trainX, trainY, files[0], files[1]), (testX, testY, files[2], files[3])] {
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
        let kept = classes ?? Array(0..<10)
        guard !kept.isEmpty, kept.allSatisfy({ (0..<10).contains($0) }), Set(kept).count == kept.count else {
            throw CortadoError.usage("--classes: \(kept) must be distinct class numbers in 0...9")
        }
        let relabel = Dictionary(uniqueKeysWithValues: kept.enumerated().map { (UInt8($1), Int64($0)) })
        let trainPool = (0..<min(trainX.dims[0], limit ?? .max)).filter { relabel[trainY.bytes[$0]] != nil }
        let testPool = (0..<min(testX.dims[0], limit ?? .max)).filter { relabel[testY.bytes[$0]] != nil }
        let nTrainAll = trainPool.count
        guard validationRows >= 0, validationRows < nTrainAll else {
            throw CortadoError.usage("--validation \(validationRows) must be below the \(nTrainAll) training rows")
        }
        let nTrain = nTrainAll - validationRows
        guard nTrain >= shards else {
            throw CortadoError.usage("--shards \(shards) exceeds the \(nTrain) training rows")
        }
        try ensureWritableDirectory(out)
        log("read \(trainX.dims[0]) training and \(testX.dims[0]) test images from \(source)")

        // Deterministic split: one permutation of the training rows from the seed; the first
        // `validationRows` of it are the validation set, the rest (in permuted order) training.
        var order = trainPool
        var rng = SeededRNG(seed: seed, stream: 0x5EED)
        order.withUnsafeMutableBufferPointer { rng.shuffle($0) }
        let valIdx = Array(order[0..<validationRows])
        let trainIdx = Array(order[validationRows...])

        let d = 784
        var stats = (sum: 0.0, sumSq: 0.0)
        func write(
            _ file: String, split: String, index: Int, x: IDXArray, y: IDXArray, rows idx: ArraySlice<Int>,
            trackStats: Bool
        ) throws -> DatasetManifest.ShardFile {
            var feats = [Float](repeating: 0, count: idx.count * d)
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

        var trainFiles = [DatasetManifest.ShardFile]()
        for s in 0..<shards {
            let r = rowRange(total: nTrain, rank: s, size: shards)
            trainFiles.append(
                try write(
                    String(format: "train-%03d.h5", s), split: "train", index: s, x: trainX, y: trainY,
                    rows: trainIdx[r], trackStats: true))
        }
        let valFile = try write(
            "validation.h5", split: "validation", index: 0, x: trainX, y: trainY, rows: valIdx[...], trackStats: false)
        let testFile = try write(
            "test.h5", split: "test", index: 0, x: testX, y: testY, rows: testPool[...], trackStats: false)

        let n = Double(nTrain * d)
        let mean = stats.sum / n
        var manifest = DatasetManifest(
            name: "fashion-mnist", task: "classification", featureShape: [1, 28, 28],
            classes: kept.map { Self.classes[$0] }, splitSeed: seed,
            transforms: ["pixels: uint8 / 255 -> float32 in [0, 1]", "flattened row-major to 784 features"],
            statistics: ["train_pixel_mean": mean, "train_pixel_std": (stats.sumSq / n - mean * mean).squareRoot()],
            splits: [
                "train": .init(rows: nTrain, files: trainFiles),
                "validation": .init(rows: validationRows, files: [valFile]),
                "test": .init(rows: testPool.count, files: [testFile])
            ],
            source: [:], createdBy: "cortado prepare fashion-mnist")
        for f in files { manifest.source[(f as NSString).lastPathComponent] = try SHA256.hex(fileAt: f) }
        if let limit { manifest.transforms.append("limited to the first \(limit) training and test images") }
        if let classes { manifest.transforms.append("classes \(classes) only, relabelled 0..<\(classes.count)") }
        try AtomicFile.write(try stableJSON(manifest), to: (out as NSString).appendingPathComponent("manifest.json"))
        return manifest
    }
}
