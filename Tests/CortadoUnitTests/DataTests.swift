import CortadoCore
import CortadoData
import CortadoTestSupport
import Foundation
import XCTest

final class DataTests: XCTestCase {
    func testSHA256MatchesKnownVectors() throws {
        XCTAssertEqual(SHA256.hex(Data()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256.hex(Data("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        // 1 000 000 'a' crosses many blocks and exercises the buffered path in uneven pieces.
        var h = SHA256()
        let piece = Data(repeating: UInt8(ascii: "a"), count: 999)
        for _ in 0..<1001 { h.update(piece) }
        h.update(Data(repeating: UInt8(ascii: "a"), count: 1_000_000 - 999 * 1001))
        XCTAssertEqual(
            h.finalize().map { String(format: "%02x", $0) }.joined(),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    func testRowRangesPartitionEverything() {
        for (total, size) in [(10, 3), (3500, 3), (7, 7), (5, 2)] {
            let ranges = (0..<size).map { rowRange(total: total, rank: $0, size: size) }
            XCTAssertEqual(ranges.first?.lowerBound, 0)
            XCTAssertEqual(ranges.last?.upperBound, total)
            for (a, b) in zip(ranges, ranges.dropFirst()) { XCTAssertEqual(a.upperBound, b.lowerBound) }
            XCTAssertLessThanOrEqual(ranges.map(\.count).max()! - ranges.map(\.count).min()!, 1)
        }
    }

    /// Writes an IDX file (optionally gzip'd through /bin/gzip) for the parser tests.
    func writeIDX(_ path: String, magic: [UInt8], dims: [Int], payload: Int, gzip: Bool = true) throws {
        var bytes = magic
        for d in dims { bytes += [UInt8(d >> 24 & 255), UInt8(d >> 16 & 255), UInt8(d >> 8 & 255), UInt8(d & 255)] }
        bytes += (0..<payload).map { UInt8($0 % 251) }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        if gzip { _ = try Support.run(["gzip", "-f", path]) }
    }

    func testIDXParsesAndValidates() throws {
        let dir = Support.scratch("idx")
        try writeIDX(dir + "/ok", magic: [0, 0, 8, 3], dims: [2, 3, 4], payload: 24)
        let a = try IDXArray.read(dir + "/ok.gz", expectedRank: 3)
        XCTAssertEqual(a.dims, [2, 3, 4])
        XCTAssertEqual(a.bytes, (0..<24).map { UInt8($0) })

        try writeIDX(dir + "/badmagic", magic: [0, 0, 9, 3], dims: [2, 3, 4], payload: 24)
        XCTAssertThrowsError(try IDXArray.read(dir + "/badmagic.gz", expectedRank: 3)) {
            XCTAssertTrue("\($0)".contains("bad IDX magic"), "\($0)")
            XCTAssertTrue("\($0)".contains("badmagic.gz"), "\($0)")
        }
        try writeIDX(dir + "/short", magic: [0, 0, 8, 3], dims: [2, 3, 4], payload: 23)
        XCTAssertThrowsError(try IDXArray.read(dir + "/short.gz", expectedRank: 3)) {
            XCTAssertTrue("\($0)".contains("24 bytes of data, file has 23"), "\($0)")
        }
        try writeIDX(dir + "/rank", magic: [0, 0, 8, 1], dims: [5], payload: 5)
        XCTAssertThrowsError(try IDXArray.read(dir + "/rank.gz", expectedRank: 3)) {
            XCTAssertTrue("\($0)".contains("1 dimensions, expected 3"), "\($0)")
        }
    }

    /// Shard write → manifest → SplitReader across shard boundaries returns each row's own
    /// values (features encode the global row index).
    func testSplitReaderReadsAcrossShards() throws {
        let dir = Support.scratch("shards")
        let d = 3
        var files = [DatasetManifest.ShardFile]()
        var row = 0
        for (i, rows) in [4, 2, 5].enumerated() {
            let feats = (0..<(rows * d)).map { Float(row * d + $0) }
            let labels = (0..<rows).map { Int64((row + $0) % 2) }
            files.append(
                try feats.withUnsafeBufferPointer {
                    try ShardFormat.write(
                        dir: dir, file: "train-\(i).h5", split: "train", index: i, features: $0, labels: labels,
                        featureCount: d)
                })
            row += rows
        }
        let m = DatasetManifest(
            name: "t", task: "classification", featureShape: [d], classes: ["a", "b"], splitSeed: 1,
            transforms: [], statistics: [:], splits: ["train": .init(rows: 11, files: files)],
            source: [:], createdBy: "test")
        try AtomicFile.write(try stableJSON(m), to: dir + "/manifest.json")
        let reader = try SplitReader(manifestPath: dir + "/manifest.json", split: "train")
        XCTAssertEqual(reader.rows, 11)
        try reader.verifyChecksums(overlapping: 0..<11)
        var x = [Float](repeating: -1, count: 7 * d)
        var y = [Int32](repeating: -1, count: 7)
        try reader.read(3..<10, features: &x, labels: &y)
        XCTAssertEqual(x, (9..<30).map { Float($0) })
        XCTAssertEqual(y, (3..<10).map { Int32($0 % 2) })

        // A changed shard is caught by its checksum, naming the file.
        var bytes = try Data(contentsOf: URL(fileURLWithPath: dir + "/train-1.h5"))
        bytes[bytes.count - 1] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: dir + "/train-1.h5"))
        XCTAssertThrowsError(try reader.verifyChecksums(overlapping: 0..<11)) {
            XCTAssertTrue("\($0)".contains("train-1.h5: SHA-256"), "\($0)")
        }
        // A manifest that disagrees with a shard's shape fails when the split is opened.
        var bad = m
        bad.splits["train"]!.files[0].rows = 5
        bad.splits["train"]!.rows = 12
        try AtomicFile.write(try stableJSON(bad), to: dir + "/manifest.json")
        XCTAssertThrowsError(try SplitReader(manifestPath: dir + "/manifest.json", split: "train")) {
            XCTAssertTrue("\($0)".contains("train-0.h5: 'features' has shape [4, 3], manifest expects [5, 3]"), "\($0)")
        }
    }

    func testManifestVersionIsChecked() throws {
        let dir = Support.scratch("manifest")
        try Data(#"{"format": "cortado-dataset", "format_version": 99}"#.utf8).write(
            to: URL(fileURLWithPath: dir + "/manifest.json"))
        XCTAssertThrowsError(try DatasetManifest.load(dir + "/manifest.json")) {
            XCTAssertTrue("\($0)".contains("missing key") || "\($0)".contains("format_version"), "\($0)")
        }
        XCTAssertThrowsError(try DatasetManifest.load(dir + "/nope.json")) {
            XCTAssertTrue("\($0)".contains("cortado prepare"), "\($0)")
        }
    }
}
