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
    public static func write(dir: String, file: String, split: String, index: Int,
                             features: UnsafeBufferPointer<Float>, labels: [Int64], featureCount: Int) throws -> DatasetManifest.ShardFile {
        precondition(features.count == labels.count * featureCount)
        let path = (dir as NSString).appendingPathComponent(file)
        try AtomicFile.publish(path) { tmp in
            let h5 = try HDF5File.create(tmp)
            try h5.setAttribute("format", name)
            try h5.setAttribute("format_version", version)
            try h5.setAttribute("split", split)
            try h5.setAttribute("shard_index", Int64(index))
            try h5.write("features", features.baseAddress!, dtype: .float32, shape: [labels.count, featureCount], chunkRows: chunkRows)
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

    /// Opens a split and checks every file's presence, format, shapes and dtypes against the
    /// manifest (cheap: headers only) so a bad shard fails before step 0, naming the file.
    public init(manifestPath: String, split: String) throws {
        let m = try DatasetManifest.load(manifestPath)
        let dir = (manifestPath as NSString).deletingLastPathComponent
        let s = try m.split(split, manifestPath: manifestPath)
        self.manifest = m
        self.manifestPath = manifestPath
        self.splitName = split
        self.files = s.files.map { (path: (dir as NSString).appendingPathComponent($0.path), rows: $0.rows, sha256: $0.sha256) }
        guard rows == s.rows else {
            throw CortadoError.data("\(manifestPath): split '\(split)' says \(s.rows) rows but its files add up to \(rows)")
        }
        for f in files { try checkHeader(f.path, rows: f.rows) }
    }

    private func checkHeader(_ path: String, rows: Int) throws {
        let h5 = try HDF5File.open(path)
        let format = try h5.stringAttribute("format")
        guard format == ShardFormat.name else { throw CortadoError.data("\(path): format '\(format)', expected '\(ShardFormat.name)'") }
        let v = try h5.intAttribute("format_version")
        guard v == ShardFormat.version else { throw CortadoError.data("\(path): shard format_version \(v), this build reads \(ShardFormat.version)") }
        try h5.expectType("features", .float32)
        try h5.expectType("labels", .int64)
        let fs = try h5.shape(of: "features"), ls = try h5.shape(of: "labels")
        guard fs == [rows, featureCount] else {
            throw CortadoError.data("\(path): 'features' has shape \(fs), manifest expects [\(rows), \(featureCount)]")
        }
        guard ls == [rows] else { throw CortadoError.data("\(path): 'labels' has shape \(ls), manifest expects [\(rows)]") }
    }

    /// Verifies the SHA-256 of every file overlapping `range` against the manifest.
    public func verifyChecksums(overlapping range: Range<Int>) throws {
        var base = 0
        for f in files {
            defer { base += f.rows }
            guard base < range.upperBound, base + f.rows > range.lowerBound else { continue }
            let got = try SHA256.hex(fileAt: f.path)
            guard got == f.sha256 else {
                throw CortadoError.data("\(f.path): SHA-256 \(got.prefix(12))… does not match manifest \(f.sha256.prefix(12))… (file changed or corrupt; re-run `cortado prepare`)")
            }
        }
    }

    /// Reads rows `range` of the split: features into `features` (range.count × featureCount)
    /// and labels into `labels`; labels are checked against the class count.
    public func read(_ range: Range<Int>, features: UnsafeMutablePointer<Float>, labels: UnsafeMutablePointer<Int32>) throws {
        guard range.lowerBound >= 0, range.upperBound <= rows else {
            throw CortadoError.data("\(manifestPath): rows \(range) out of range for split '\(splitName)' with \(rows) rows")
        }
        var base = 0, written = 0
        for f in files {
            defer { base += f.rows }
            let lo = max(range.lowerBound, base), hi = min(range.upperBound, base + f.rows)
            guard lo < hi else { continue }
            let h5 = try HDF5File.open(f.path)
            try h5.readRows("features", start: lo - base, count: hi - lo, dtype: .float32,
                            into: features + written * featureCount)
            try h5.readRows("labels", start: lo - base, count: hi - lo, dtype: .int32, into: labels + written)
            let classes = Int32(manifest.classes.count)
            for i in written..<(written + hi - lo) where labels[i] < 0 || labels[i] >= classes {
                throw CortadoError.data("\(f.path): label \(labels[i]) at row \(lo - base + i - written) is outside 0..<\(classes)")
            }
            written += hi - lo
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
