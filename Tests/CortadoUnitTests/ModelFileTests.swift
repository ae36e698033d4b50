import CortadoCompress
import CortadoCore
import CortadoInfer
import CortadoJob
import CortadoModel
import CortadoPipeline
import CortadoTestSupport
import Foundation
import XCTest

final class ModelFileTests: XCTestCase {
    let spec = ModelSpec(inputShape: [64], layers: [.dense(units: 32), .relu, .dense(units: 4)])

    func params() -> [Float] {
        let net = Network<Float>(spec: spec, maxBatch: 1)
        net.initialize(seed: 5)
        for t in net.layout.tensors where t.shape.count == 1 {
            for j in 0..<t.count { net.params.base[t.offset + j] = Float(j) * 0.01 }
        }
        return net.params.array
    }

    func write(_ path: String, _ recipe: String, _ p: [Float]) throws {
        try p.withUnsafeBufferPointer {
            try ModelExport.write(
                path: path, recipe: try Recipe(recipe), model: spec, classes: ["a", "b", "c", "d"], params: $0,
                metadata: ["k": "v"])
        }
    }

    func testRoundTripFP32IsExact() throws {
        let dir = Support.scratch("modelfile")
        let p = params()
        try write(dir + "/m.cmodel", "fp32", p)
        let f = try ModelFile.load(dir + "/m.cmodel")
        XCTAssertEqual(f.header.model, spec)
        XCTAssertEqual(f.header.precision, "fp32")
        XCTAssertEqual(f.header.metadata["k"], "v")
        var restored = [Float]()
        for t in spec.parameterLayout.tensors { restored += f.values(f.tensor(t.name)!, as: Float.self) }
        XCTAssertEqual(restored, p)

        // The runtime computes what the training network computes.
        let net = Network<Float>(spec: spec, maxBatch: 3)
        net.params.load(p)
        let x = (0..<(3 * 64)).map { Float($0 % 7) / 7 - 0.4 }
        let logits = x.withUnsafeBufferPointer {
            Array(UnsafeBufferPointer(start: net.forward($0.baseAddress!, batch: 3), count: 12))
        }
        let m = try InferenceModel(path: dir + "/m.cmodel")
        var probs = [Float](repeating: 0, count: 12)
        m.predict(x, batch: 3, probabilities: &probs)
        for r in 0..<3 {
            let z = logits[(r * 4)..<(r * 4 + 4)]
            let e = z.map { exp($0 - z.max()!) }
            assertClose(
                Array(probs[(r * 4)..<(r * 4 + 4)]), e.map { $0 / e.reduce(0, +) }, rel: 1e-5, abs: 1e-7,
                "probabilities row \(r)")
        }
    }

    func testInt8QuantizationIsPerChannelAndClose() throws {
        let w: [Float] = [0.5, -1.0, 0.25, 0.001, 0.002, -0.003]
        let (q, scales) = w.withUnsafeBufferPointer { quantizePerRow($0, rows: 2, cols: 3) }
        XCTAssertEqual(scales[0], 1.0 / 127, accuracy: 1e-9)
        XCTAssertEqual(scales[1], 0.003 / 127, accuracy: 1e-12) // the small row keeps its own scale
        XCTAssertEqual(q, [64, -127, 32, 42, 85, -127])
        for i in 0..<6 { XCTAssertEqual(Float(q[i]) * scales[i / 3], w[i], accuracy: scales[i / 3] / 2 + 1e-9) }

        let dir = Support.scratch("int8")
        let p = params()
        try write(dir + "/f.cmodel", "fp32", p)
        try write(dir + "/q.cmodel", "int8", p)
        let f = try InferenceModel(path: dir + "/f.cmodel"), qm = try InferenceModel(path: dir + "/q.cmodel")
        XCTAssertEqual(qm.header.precision, "int8")
        let x = (0..<(64 * 50)).map { Float(($0 * 37) % 101) / 101 }
        var pf = [Float](repeating: 0, count: 200), pq = pf
        f.predict(x, batch: 50, probabilities: &pf)
        qm.predict(x, batch: 50, probabilities: &pq)
        let maxDiff = zip(pf, pq).map { abs($0 - $1) }.max()!
        XCTAssertLessThan(maxDiff, 0.02, "int8 probabilities drift from fp32 by \(maxDiff)")
        XCTAssertGreaterThan(maxDiff, 0, "int8 path should not be bit-identical to fp32")
        let fileSize = { (p: String) in (try? FileManager.default.attributesOfItem(atPath: p)[.size] as? Int) ?? 0 }
        XCTAssertLessThan(fileSize(dir + "/q.cmodel"), fileSize(dir + "/f.cmodel"))
    }

    func testCorruptedFilesAreRejectedWithAClearError() throws {
        let dir = Support.scratch("corrupt")
        try write(dir + "/m.cmodel", "int8", params())
        let good = try Data(contentsOf: URL(fileURLWithPath: dir + "/m.cmodel"))
        func expectError(_ data: Data, _ fragment: String, line: UInt = #line) throws {
            try data.write(to: URL(fileURLWithPath: dir + "/bad.cmodel"))
            XCTAssertThrowsError(try InferenceModel(path: dir + "/bad.cmodel"), line: line) {
                let msg = "\($0)"
                XCTAssertTrue(msg.contains(fragment), "'\(msg)' lacks '\(fragment)'", line: line)
                XCTAssertTrue(msg.contains("bad.cmodel"), "'\(msg)' does not name the file", line: line)
            }
        }
        var flipped = good
        flipped[good.count / 2] ^= 0x40
        try expectError(flipped, "checksum mismatch")
        try expectError(good.prefix(good.count - 100), "checksum mismatch")
        try expectError(good.prefix(60), "header length")
        try expectError(good.prefix(10), "too short")
        var magic = good
        magic[0] = UInt8(ascii: "X")
        try expectError(magic, "bad magic")
        var version = good
        version[8] = 9
        try expectError(version, "version 9")
        XCTAssertThrowsError(try InferenceModel(path: dir + "/missing.cmodel")) {
            XCTAssertTrue("\($0)".contains("missing.cmodel"))
        }
    }
}
