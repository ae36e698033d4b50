import CortadoCompress
import CortadoCore
import CortadoData
import CortadoJob
import CortadoModel
import CortadoPipeline
import CortadoTestSupport
import Foundation
import XCTest

/// cortado-infer's inputs and outputs end to end: HDF5, IDX and the three prediction formats
/// agree row for row; `--bench` reports ordered percentiles and every batch size; bad options
/// fail with one line and leave no output file.
final class InferOutputTests: XCTestCase {
    func model(_ dir: String) throws -> String {
        let spec = ModelSpec(inputShape: [784], layers: [.dense(units: 16), .relu, .dense(units: 10)])
        let net = Network<Float>(spec: spec, maxBatch: 1)
        net.initialize(seed: 3)
        let path = dir + "/m.cmodel"
        try net.params.array.withUnsafeBufferPointer {
            try ModelExport.write(
                path: path, recipe: try Recipe("int8"), model: spec, classes: (0..<10).map { "c\($0)" }, params: $0,
                metadata: [:])
        }
        return path
    }

    /// IDX bytes: magic 0x0000_08_NN, big-endian dims, data.
    func idx(_ dims: [Int], _ bytes: [UInt8]) -> Data {
        var d = Data([0, 0, 8, UInt8(dims.count)])
        for n in dims {
            d.append(contentsOf: [UInt8(n >> 24 & 255), UInt8(n >> 16 & 255), UInt8(n >> 8 & 255), UInt8(n & 255)])
        }
        d.append(contentsOf: bytes)
        return d
    }

    func testFormatsAgreeAcrossInputsAndOutputs() throws {
        let dir = Support.scratch("infer-outputs")
        let m = try model(dir)
        // 37 images as IDX, and the same pixels / 255 as an HDF5 /features file.
        var rng = SeededRNG(seed: 4)
        let n = 37, pixels = (0..<(n * 784)).map { _ in UInt8(rng.below(256)) }, labels = (0..<n).map { UInt8($0 % 10) }
        try idx([n, 28, 28], pixels).write(to: URL(fileURLWithPath: dir + "/images-idx3-ubyte"))
        try idx([n], labels).write(to: URL(fileURLWithPath: dir + "/labels-idx1-ubyte"))
        let h5 = try HDF5File.create(dir + "/x.h5")
        try h5.write("features", pixels.map { Float($0) / 255 }, shape: [n, 784])
        try h5.write("labels", labels.map { Int64($0) })
        try h5.close()

        let infer = Support.product("cortado-infer")
        for out in ["p.csv", "p.jsonl", "p.h5"] {
            let r = try Support.run([infer, m, "--input", dir + "/x.h5", "--out", dir + "/" + out, "--batch", "8"])
            XCTAssertEqual(r.status, 0, r.output)
        }
        let r = try Support.run([
            infer, m, "--input", dir + "/images-idx3-ubyte", "--labels", dir + "/labels-idx1-ubyte",
            "--out", dir + "/idx.h5", "--json"
        ])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertNotNil(try Support.lastJSON(r)["accuracy"], "IDX with labels reports accuracy")

        let out = try HDF5File.open(dir + "/p.h5"), fromIDX = try HDF5File.open(dir + "/idx.h5")
        let predicted = try out.readInt64s("predicted")
        XCTAssertEqual(predicted.count, n)
        XCTAssertEqual(try out.shape(of: "probabilities"), [n, 10])
        let probs = try out.readFloats("probabilities")
        for i in 0..<n { XCTAssertEqual(probs[(i * 10)..<(i * 10 + 10)].reduce(0, +), 1, accuracy: 1e-5) }
        XCTAssertEqual(try out.readInt64s("labels"), labels.map(Int64.init))
        XCTAssertTrue(try out.stringAttribute("classes").contains("\"c9\""))
        XCTAssertEqual(try fromIDX.readInt64s("predicted"), predicted, "IDX input = the same pixels in HDF5")
        XCTAssertEqual(try fromIDX.readFloats("probabilities"), probs)

        let csv = try String(contentsOfFile: dir + "/p.csv", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(csv.count, n + 1)
        XCTAssertEqual(csv.dropFirst().map { Int64($0.split(separator: ",")[1])! }, predicted)
        let lines = try String(contentsOfFile: dir + "/p.jsonl", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, n)
        for (i, line) in lines.enumerated() {
            let o = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            XCTAssertEqual(o["row"] as? Int, i)
            XCTAssertEqual(o["class_index"] as? Int, Int(predicted[i]))
            XCTAssertEqual(o["class"] as? String, "c\(predicted[i])")
            XCTAssertEqual((o["probabilities"] as! [Double]).count, 10)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/p.h5.tmp"))

        // Bad inputs: one line, non-zero exit, nothing written under the output name.
        let bad = try Support.run([
            infer, m, "--input", dir + "/images-idx3-ubyte", "--labels", dir + "/x.h5", "--out", dir + "/bad.csv"
        ])
        XCTAssertEqual(bad.status, 2, bad.output)
        XCTAssertTrue(bad.stderr.contains("x.h5"), bad.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/bad.csv"))
        let short = try Support.run([
            infer, m, "--input", dir + "/images-idx3-ubyte", "--labels", dir + "/short-idx1-ubyte"
        ])
        XCTAssertNotEqual(short.status, 0)
        try idx([n - 1], Array(labels.dropLast())).write(to: URL(fileURLWithPath: dir + "/short-idx1-ubyte"))
        let mismatch = try Support.run([
            infer, m, "--input", dir + "/images-idx3-ubyte", "--labels", dir + "/short-idx1-ubyte"
        ])
        XCTAssertEqual(mismatch.status, 2, mismatch.output)
        XCTAssertTrue(mismatch.stderr.contains("36 labels for 37 images"), mismatch.stderr)
    }

    func testBenchReportsPercentilesAndEveryBatchSize() throws {
        let dir = Support.scratch("infer-bench")
        let m = try model(dir)
        let infer = Support.product("cortado-infer")
        let r = try Support.run([infer, m, "--bench", "--batches", "1,8,64", "--json"])
        XCTAssertEqual(r.status, 0, r.output)
        let j = try Support.lastJSON(r)
        let lat = j["batch1_latency_ms"] as! [String: Double]
        XCTAssertGreaterThan(lat["p50"]!, 0)
        XCTAssertLessThanOrEqual(lat["p50"]!, lat["p90"]!)
        XCTAssertLessThanOrEqual(lat["p90"]!, lat["p99"]!)
        let t = j["throughput"] as! [[String: Any]]
        XCTAssertEqual(t.map { $0["batch"] as! Int }, [1, 8, 64])
        XCTAssertTrue(t.allSatisfy { ($0["rows_per_sec"] as! Double) > 0 })
        XCTAssertEqual(j["precision"] as? String, "int8")
        for bad in ["0", "1,x", ""] {
            let b = try Support.run([infer, m, "--bench", "--batches", bad])
            XCTAssertEqual(b.status, 2, "--batches \(bad): \(b.output)")
        }
    }
}
