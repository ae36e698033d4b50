import CortadoCompress
import CortadoCore
import CortadoInfer
import CortadoJob
import CortadoModel
import Foundation
import XCTest

/// A recommender with time terms (`TimeBias`) through the model file and the inference
/// runtime: written as format v3 (and plain ones still as v2), t_u kept in fp32 by a 16-bit
/// recipe, and top-K scoring (no time: dev = 0) equal to the same model without its time terms.
final class RecommenderTimeFileTests: XCTestCase {
    func write(_ spec: RecommenderSpec, _ params: [Float], recipe: String, _ path: String) throws {
        try params.withUnsafeBufferPointer {
            try ModelExport.write(path: path, recipe: try Recipe(recipe), recommender: spec, params: $0, metadata: [:])
        }
    }

    func version(_ path: String) throws -> UInt32 {
        let d = try Data(contentsOf: URL(fileURLWithPath: path))
        return d.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self)) }
    }

    func testTimeTermsRoundTripAndTopKIgnoresThem() throws {
        let dir = NSTemporaryDirectory() + "cortado-timefile-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var plain = RecommenderSpec(userColumn: "u", itemColumn: "i", users: 6, items: 13, dim: 4)
        plain.initStd = 0.5
        var timed = plain
        timed.time = TimeBias(column: "t", beta: 0.4)
        timed.time?.origin = 10_225.675
        let rec = Recommender<Float>(spec: timed, maxBatch: 16)
        rec.initialize(seed: 5, globalMean: 3.5)
        let p = rec.params.base
        p[rec.globalDrift] = -0.05
        for u in 0..<timed.users {
            p[rec.userDrift + u] = 0.1 * Float(u) - 0.2
            p[rec.userMeanDay + u] = 100.123_456 + 1.001 * Float(u) // 16-bit floats would round these by days
        }
        // The same parameters without the time tensors.
        var static_ = [Float]()
        for t in rec.layout.tensors where !["global_drift", "user_drift", "user_mean_day"].contains(t.name) {
            static_ += Array(rec.params.buffer[t.offset..<(t.offset + t.count)])
        }
        XCTAssertEqual(static_.count, plain.parameterLayout.count)
        try write(timed, rec.params.array, recipe: "fp32", dir + "/timed.cmodel")
        try write(timed, rec.params.array, recipe: "fp16", dir + "/timed16.cmodel")
        try write(plain, static_, recipe: "fp32", dir + "/plain.cmodel")
        XCTAssertEqual(try version(dir + "/timed.cmodel"), ModelFile.timeTermsVersion)
        XCTAssertEqual(try version(dir + "/plain.cmodel"), ModelFile.version)

        let a = try RecommenderModel(path: dir + "/timed.cmodel"), b = try RecommenderModel(path: dir + "/plain.cmodel")
        let half = try RecommenderModel(path: dir + "/timed16.cmodel")
        XCTAssertEqual(a.spec.time, timed.time)
        let m = half.model
        for u in 0..<timed.users {
            XCTAssertEqual(m.params.base[m.userMeanDay + u], p[rec.userMeanDay + u], "t_u of user \(u) in fp16 file")
        }
        for u: Int32 in 1..<6 {
            XCTAssertEqual(
                a.topK(user: u, k: 5, exclude: []).map(\.item), b.topK(user: u, k: 5, exclude: []).map(\.item))
            XCTAssertEqual(Array(a.scoreAllItems(user: u)), Array(b.scoreAllItems(user: u)))
        }
        // With a time, the score moves by (a + a_u)·dev_u(t): user 2, a + a_u = −0.05, 9 days either side of t_u.
        let users: [Int32] = [2, 2], items: [Int32] = [3, 3]
        let days: [Float] = [p[rec.userMeanDay + 2] + 9, p[rec.userMeanDay + 2] - 9]
        let s = Array(
            UnsafeBufferPointer(start: a.model.forward(users: users, items: items, days: days, batch: 2), count: 2))
        let s0 = a.scoreAllItems(user: 2)[3]
        let dev = Float(pow(9.0, 0.4)), drift = -0.05 + 0.1 * 2 - 0.2 as Float
        XCTAssertEqual(s[0] - s0, drift * dev, accuracy: 1e-4)
        XCTAssertEqual(s[1] - s0, -drift * dev, accuracy: 1e-4)
    }
}
