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

    /// The per-(user, day) bias through the file (format v4) and every recipe: the index columns
    /// come back exact, the runtime rebuilds the index, and a timed row scores as the training
    /// model scores it (unseen pairs with 0).
    func testUserDayBiasRoundTripsWithItsIndex() throws {
        let dir = NSTemporaryDirectory() + "cortado-userday-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var spec = RecommenderSpec(userColumn: "u", itemColumn: "i", users: 6, items: 13, dim: 4)
        spec.initStd = 0.5
        spec.time = TimeBias(column: "t", beta: 0.4)
        spec.time?.origin = 10_225.675
        spec.time?.userDays = 3
        let rec = Recommender<Float>(spec: spec, maxBatch: 16)
        rec.initialize(seed: 5, globalMean: 3.5)
        let p = rec.params.base
        for u in 0..<spec.users { p[rec.userMeanDay + u] = 1.5 * Float(u) - 2 }
        // Pairs (user 1, day 10 210), (user 1, day 10 231), (user 5, day 10 240): day numbers
        // that 16-bit floats would round.
        for (r, (u, d)) in [(1, 10_210), (1, 10_231), (5, 10_240)].enumerated() {
            p[rec.userDayUser + r + 1] = Float(u); p[rec.userDayDay + r + 1] = Float(d)
            p[rec.userDayBias + r + 1] = 0.2 * Float(r) - 0.3
        }
        rec.indexUserDays()
        let day = TimeBias.secondsPerDay
        let users: [Int32] = [1, 1, 5, 5, 2], items: [Int32] = [3, 4, 5, 6, 7]
        let seconds = [10_210.3 * day, 10_231.9 * day, 10_240.01 * day, 10_241.5 * day, 10_210.3 * day]
        let modelDays = seconds.map { Float(spec.time!.day(seconds: $0)) }
        let trainRows = zip(users, seconds).map { rec.userDayRow(user: $0, seconds: $1) }
        XCTAssertEqual(trainRows, [1, 2, 3, 0, 0])
        let want = Array(
            UnsafeBufferPointer(
                start: rec.forward(users: users, items: items, days: modelDays, userDays: trainRows, batch: 5), count: 5
            ))
        for recipe in ["fp32", "fp16", "int8"] {
            let path = dir + "/m-\(recipe).cmodel"
            try write(spec, rec.params.array, recipe: recipe, path)
            XCTAssertEqual(try version(path), ModelFile.userDayVersion)
            let m = try RecommenderModel(path: path)
            XCTAssertEqual(m.spec.time, spec.time)
            for r in 1...3 {
                XCTAssertEqual(m.model.params.base[m.model.userDayUser + r], p[rec.userDayUser + r], recipe)
                XCTAssertEqual(m.model.params.base[m.model.userDayDay + r], p[rec.userDayDay + r], recipe)
            }
            let rows = zip(users, seconds).map { m.model.userDayRow(user: $0, seconds: $1) }
            XCTAssertEqual(rows, trainRows, recipe)
            let got = Array(
                UnsafeBufferPointer(
                    start: m.model.forward(users: users, items: items, days: modelDays, userDays: rows, batch: 5),
                    count: 5))
            if recipe == "fp32" { XCTAssertEqual(got, want) }
            for r in 0..<5 { XCTAssertEqual(got[r], want[r], accuracy: 0.05, "\(recipe) row \(r)") }
        }
    }
}
