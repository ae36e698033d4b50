import CortadoCore
import Foundation

/// The shard file layout, version 1: `/features` float32 (rows, features) and `/labels` int64
/// (rows), both chunked by `chunkRows` with shuffle + deflate; root attributes `format`,
/// `format_version`, `split`, `shard_index`.
public enum ShardFormat {
    public static let name = "cortado-shard"
    public static let version: Int64 = 1
    public static let chunkRows = 1024

    /// Writes one shard atomically and returns its manifest entry (relative path, rows, SHA-256).
    public static func write(
        dir: String, file: String, split: String, index: Int,
        features: UnsafeBufferPointer<Float>, labels: [Int64], featureCount: Int
    ) throws -> DatasetManifest.ShardFile {
        precondition(features.count == labels.count * featureCount)
        let path = (dir as NSString).appendingPathComponent(file)
        try AtomicFile.publish(path) { tmp in
            let h5 = try HDF5File.create(tmp)
            try h5.setAttribute("format", name)
            try h5.setAttribute("format_version", version)
            try h5.setAttribute("split", split)
            try h5.setAttribute("shard_index", Int64(index))
            try h5.write(
                "features", features.baseAddress!, dtype: .float32, shape: [labels.count, featureCount],
                chunkRows: chunkRows)
            try labels.withUnsafeBytes {
                try h5.write("labels", $0.baseAddress!, dtype: .int64, shape: [labels.count], chunkRows: chunkRows * 16)
            }
            try h5.flush()
        }
        return .init(path: file, rows: labels.count, sha256: try SHA256.hex(fileAt: path))
    }
}

/// One split (train / validation / test) of a prepared data folder, seen as a single row range
/// over its shard files. A rank reads any sub-range with hyperslab reads, touching only the
/// shards (and chunks) that overlap it, so 4 shards on 3 ranks need no rank to read everything.
public struct SplitReader {
    public let manifest: DatasetManifest
    public let manifestPath: String
    public let splitName: String
    public let files: [(path: String, rows: Int, sha256: String)]
    public var rows: Int { files.reduce(0) { $0 + $1.rows } }
    public var featureCount: Int { manifest.featureCount }
    /// Regression data stores float `/targets` instead of integer `/labels`.
    public var isRegression: Bool { manifest.task == "regression" }
    /// Width of `/categorical` (id columns for embeddings), 0 when there is none.
    public var idColumns: Int { manifest.categoricalColumns?.count ?? 0 }

    /// Opens a split and checks every file's presence, format, shapes and dtypes against the
    /// manifest (cheap: headers only) so a bad shard fails before step 0, naming the file.
    public init(manifestPath: String, split: String) throws {
        let m = try DatasetManifest.load(manifestPath)
        let dir = (manifestPath as NSString).deletingLastPathComponent
        let s = try m.split(split, manifestPath: manifestPath)
        self.manifest = m
        self.manifestPath = manifestPath
        self.splitName = split
        self.files = s.files.map {
            (path: (dir as NSString).appendingPathComponent($0.path), rows: $0.rows, sha256: $0.sha256)
        }
        guard rows == s.rows else {
            throw CortadoError.data(
                "\(manifestPath): split '\(split)' says \(s.rows) rows but its files add up to \(rows)")
        }
        for f in files { try checkHeader(f.path, rows: f.rows) }
    }

    private func checkHeader(_ path: String, rows: Int) throws {
        let h5 = try HDF5File.open(path)
        let format = try h5.stringAttribute("format")
        guard format == ShardFormat.name else {
            throw CortadoError.data("\(path): format '\(format)', expected '\(ShardFormat.name)'")
        }
        let v = try h5.intAttribute("format_version")
        guard v == ShardFormat.version else {
            throw CortadoError.data("\(path): shard format_version \(v), this build reads \(ShardFormat.version)")
        }
        try h5.expectType("features", .float32)
        let fs = try h5.shape(of: "features")
        guard fs == [rows, featureCount] else {
            throw CortadoError.data("\(path): 'features' has shape \(fs), manifest expects [\(rows), \(featureCount)]")
        }
        let target = isRegression ? "targets" : "labels"
        try h5.expectType(target, isRegression ? .float32 : .int64)
        let ls = try h5.shape(of: target)
        guard ls == [rows] else {
            throw CortadoError.data("\(path): '\(target)' has shape \(ls), manifest expects [\(rows)]")
        }
        if idColumns > 0 {
            try h5.expectType("categorical", .int64)
            let cs = try h5.shape(of: "categorical")
            guard cs == [rows, idColumns] else {
                throw CortadoError.data(
                    "\(path): 'categorical' has shape \(cs), manifest expects [\(rows), \(idColumns)]")
            }
        }
    }

    /// Where a read of rows from `row` should stop: at the containing shard's next HDF5 chunk
    /// boundary (a read across one decompresses both chunks for a few rows), its end, or `limit`.
    public func pieceEnd(from row: Int, limit: Int) -> Int {
        var base = 0
        for f in files {
            if row < base + f.rows {
                return min(
                    limit, base + f.rows, base + ((row - base) / ShardFormat.chunkRows + 1) * ShardFormat.chunkRows)
            }
            base += f.rows
        }
        return limit
    }

    /// Verifies the SHA-256 of every file overlapping `range` against the manifest.
    public func verifyChecksums(overlapping range: Range<Int>) throws {
        var base = 0
        for f in files {
            defer { base += f.rows }
            guard base < range.upperBound, base + f.rows > range.lowerBound else { continue }
            let got = try SHA256.hex(fileAt: f.path)
            guard got == f.sha256 else {
                throw CortadoError.data(
                    "\(f.path): SHA-256 \(got.prefix(12))… does not match manifest \(f.sha256.prefix(12))… (file changed or corrupt; re-run `cortado prepare`)"
                )
            }
        }
    }

    /// Reads rows `range` of the split: features into `features` (range.count × featureCount),
    /// and what the data has of: integer labels (checked against the class count), float
    /// targets (regression; checked finite), ids (range.count × idColumns; checked against
    /// each id column's vocabulary).
    public func read(
        _ range: Range<Int>, features: UnsafeMutablePointer<Float>, labels: UnsafeMutablePointer<Int32>?,
        targets: UnsafeMutablePointer<Float>? = nil, ids: UnsafeMutablePointer<Int32>? = nil
    ) throws {
        guard range.lowerBound >= 0, range.upperBound <= rows else {
            throw CortadoError.data(
                "\(manifestPath): rows \(range) out of range for split '\(splitName)' with \(rows) rows")
        }
        let idLimits = (manifest.categoricalColumns ?? []).map { name in
            Int32((manifest.columns?.first { $0.name == name }?.vocabulary?.count ?? Int(Int32.max - 1)) + 1)
        }
        var base = 0, written = 0
        for f in files {
            defer { base += f.rows }
            let lo = max(range.lowerBound, base), hi = min(range.upperBound, base + f.rows)
            guard lo < hi else { continue }
            let h5 = try HDF5File.open(f.path)
            let n = hi - lo, row0 = lo - base
            try h5.readRows("features", start: row0, count: n, dtype: .float32, into: features + written * featureCount)
            let f0 = features + written * featureCount
            for i in 0..<(n * featureCount) where !f0[i].isFinite {
                throw CortadoError.data(
                    "\(f.path): feature \(i % featureCount) of row \(row0 + i / featureCount) is \(f0[i]) (features must be finite; re-run `cortado prepare`)"
                )
            }
            if let labels {
                try h5.readRows("labels", start: row0, count: n, dtype: .int32, into: labels + written)
                let classes = Int32(manifest.classes.count)
                for i in written..<(written + n) where labels[i] < 0 || labels[i] >= classes {
                    throw CortadoError.data(
                        "\(f.path): label \(labels[i]) at row \(row0 + i - written) is outside 0..<\(classes)")
                }
            }
            if let targets {
                try h5.readRows("targets", start: row0, count: n, dtype: .float32, into: targets + written)
                for i in written..<(written + n) where !targets[i].isFinite {
                    throw CortadoError.data(
                        "\(f.path): target \(targets[i]) at row \(row0 + i - written) is not finite")
                }
            }
            if let ids {
                let k = idColumns
                try h5.readRows("categorical", start: row0, count: n, dtype: .int32, into: ids + written * k)
                for i in (written * k)..<((written + n) * k) where ids[i] < 0 || ids[i] >= idLimits[i % k] {
                    throw CortadoError.data(
                        "\(f.path): categorical[\(row0 + i / k - written), \(i % k)] id \(ids[i]) is outside 0..<\(idLimits[i % k]) (column '\(manifest.categoricalColumns![i % k])')"
                    )
                }
            }
            written += n
        }
    }
}

/// Rows `[lo, hi)` that rank `rank` of `size` owns out of `total`: contiguous, sizes differ by
/// at most one. Every rank computes every other rank's range the same way.
public func rowRange(total: Int, rank: Int, size: Int) -> Range<Int> {
    let base = total / size, extra = total % size
    let lo = rank * base + min(rank, extra)
    return lo..<(lo + base + (rank < extra ? 1 : 0))
}

/// The (user, item) id pairs of every row of a split, read from `/categorical` alone (no
/// features), each checked against the tables' sizes — the recommender's interaction history
/// for training-time ranking and for cortado-infer's "not seen yet" filter. `column`s index
/// the split's id columns.
public func idPairs(_ reader: SplitReader, userColumn: Int, itemColumn: Int, users: Int, items: Int) throws -> [(
    user: Int32, item: Int32
)] {
    var pairs = [(user: Int32, item: Int32)]()
    let k = reader.idColumns
    for f in reader.files {
        let ids = try HDF5File.open(f.path).readInt64s("categorical")
        guard k > max(userColumn, itemColumn), ids.count == f.rows * k else {
            throw CortadoError.data(
                "\(f.path): 'categorical' holds \(ids.count) ids, expected \(f.rows) rows × \(k) columns")
        }
        for row in 0..<f.rows {
            let u = ids[row * k + userColumn], i = ids[row * k + itemColumn]
            guard u >= 0, u < users, i >= 0, i < items else {
                throw CortadoError.data(
                    "\(f.path): row \(row) has ids (\(u), \(i)) outside the model's \(users)×\(items) tables (another data folder?)"
                )
            }
            pairs.append((Int32(u), Int32(i)))
        }
    }
    return pairs
}
