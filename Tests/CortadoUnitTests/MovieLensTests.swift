import CortadoCore
import CortadoData
import CortadoModel
import CortadoTestSupport
import Foundation
import XCTest

/// The real MovieLens-100k, sliced to its first 5 000 ratings and read from the RecBole wheel
/// that cluster/install-deps.sh downloads: the leave-last-out tie report, the items only
/// validation/test hold, and the baselines, against numpy (Fixtures/make_golden_movielens.py);
/// the negative sampler never draws an item the user has seen in training.
final class MovieLensTests: XCTestCase {
    struct Golden: Decodable {
        struct Unseen: Decodable { var values: Int, validation_rows: Int, test_rows: Int }
        var rows: Int, users: Int, users_with_test_row: Int, users_tied_at_latest: Int
        var split_rows: [String: Int]
        var unseen_items: Unseen, unseen_users: Unseen
        var global_mean: Double, test_global_mean_rmse: Double, test_bias_rmse: Double
        var test_popularity_hr_at_10: Double, test_popularity_ndcg_at_10: Double
        enum CodingKeys: String, CodingKey {
            case rows, users, users_with_test_row, users_tied_at_latest, split_rows, unseen_items, unseen_users
            case global_mean, test_global_mean_rmse, test_bias_rmse
            case test_popularity_hr_at_10 = "test_popularity_hr@10", test_popularity_ndcg_at_10 =
                "test_popularity_ndcg@10"
        }
    }

    static let wheel =
        (ProcessInfo.processInfo.environment["CORTADO_CACHE"] ?? "/var/cache/cortado")
        + "/recbole-1.2.1-py3-none-any.whl"

    func golden() throws -> Golden {
        try JSONDecoder().decode(Golden.self, from: try Support.fixture("golden_movielens.json"))
    }

    /// The slice prepared once per process (file-order ties, the default).
    static let prepared: Result<(DatasetManifest, String), Error> = Result {
        guard FileManager.default.fileExists(atPath: wheel) else {
            throw CortadoError.io("\(wheel): missing; run cluster/install-deps.sh (it downloads the RecBole wheel)")
        }
        let dir = Support.scratch("movielens") + "/prepared"
        var p = MovieLensPreparer(source: wheel, out: dir)
        p.limit = 5000
        p.overwrite = true
        return (try p.run(), dir)
    }

    /// (user, item, rating) of a split, as ids.
    func rows(_ split: String) throws -> [(user: Int32, item: Int32, rating: Double)] {
        let (m, dir) = try Self.prepared.get()
        var out = [(user: Int32, item: Int32, rating: Double)]()
        for f in m.splits[split]!.files {
            let h5 = try HDF5File.open(dir + "/" + f.path)
            let ids = try h5.readInt64s("categorical"), r = try h5.readFloats("targets")
            for k in 0..<f.rows { out.append((Int32(ids[2 * k]), Int32(ids[2 * k + 1]), Double(r[k]))) }
        }
        return out
    }

    func testTieReportAndUnseenItemsOfTheRealFile() throws {
        let g = try golden(), (m, dir) = try Self.prepared.get()
        XCTAssertEqual(m.categoricalColumns, ["c0", "c1"])
        for s in ["train", "validation", "test"] { XCTAssertEqual(m.splits[s]?.rows, g.split_rows[s], s) }
        let lo = try XCTUnwrap(m.cleaning?.leaveLastOut)
        XCTAssertEqual(lo.ties, "file-order")
        XCTAssertEqual(lo.users, g.users)
        XCTAssertEqual(lo.usersWithTestRow, g.users_with_test_row)
        XCTAssertEqual(lo.usersTiedAtLatest, g.users_tied_at_latest)
        let items = try XCTUnwrap(m.cleaning?.unseen?["c1"]), users = try XCTUnwrap(m.cleaning?.unseen?["c0"])
        XCTAssertEqual(
            [items.values, items.validationRows, items.testRows],
            [g.unseen_items.values, g.unseen_items.validation_rows, g.unseen_items.test_rows])
        XCTAssertEqual(
            [users.values, users.validationRows, users.testRows],
            [g.unseen_users.values, g.unseen_users.validation_rows, g.unseen_users.test_rows])
        XCTAssertEqual(m.source.keys.sorted(), ["ml-100k.data", "recbole-1.2.1-py3-none-any.whl"])
        XCTAssertEqual(m.createdBy, "cortado prepare movielens")
        // The unknown item (id 0) is what those held-out rows carry.
        XCTAssertEqual(try rows("test").filter { $0.item == 0 }.count, g.unseen_items.test_rows)

        // `cortado inspect` says it in words.
        let r = try Support.run([Support.product("cortado"), "inspect", dir])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.stdout.contains("\(g.users_tied_at_latest) had 2+ rows at their latest time"), r.stdout)
        XCTAssertTrue(r.stdout.contains("tie broken by file order"), r.stdout)
        XCTAssertTrue(
            r.stdout.contains(
                "c1 \(g.unseen_items.values) value(s) in \(g.unseen_items.validation_rows) validation and \(g.unseen_items.test_rows) test rows"
            ), r.stdout)
    }

    /// The other rule reports itself and picks other test rows for tied users.
    func testRandomTieRuleIsReportedAndChangesTiedUsersTestRows() throws {
        let g = try golden()
        let dir = Support.scratch("movielens-random") + "/prepared"
        let r = try Support.run([
            Support.product("cortado"), "prepare", "movielens", "--source", Self.wheel, "--limit", "5000", "--ties",
            "random", "--out", dir, "--overwrite"
        ])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.stdout.contains("\(g.users_tied_at_latest) had 2+ rows at their latest time"), r.stdout)
        XCTAssertTrue(r.stdout.contains("--ties random"), r.stdout)
        XCTAssertFalse(r.stdout.contains("pass it back with --schema"), "no schema advice: \(r.stdout)")
        let m = try DatasetManifest.load(dir + "/manifest.json")
        XCTAssertEqual(m.cleaning?.leaveLastOut?.ties, "random")
        XCTAssertEqual(m.splits["test"]?.rows, g.split_rows["test"])
        // Same number of test rows, but the test file's bytes differ: tied users got other rows.
        let (fileOrder, _) = try Self.prepared.get()
        XCTAssertNotEqual(m.splits["test"]?.files[0].sha256, fileOrder.splits["test"]?.files[0].sha256)

        let bad = try Support.run([
            Support.product("cortado"), "prepare", "movielens", "--source", "/nonexistent.whl", "--out", dir + "-x"
        ])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.output.contains("/nonexistent.whl: no such file"), bad.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "-x"))
    }

    /// `--no-validation` (the final fit after tuning): every user's second-latest rating stays
    /// in training, the test rows are the same, and the manifest and `inspect` say so.
    func testNoValidationKeepsTheSecondLatestRatingInTraining() throws {
        let g = try golden()
        let dir = Support.scratch("movielens-no-validation") + "/prepared"
        let r = try Support.run([
            Support.product("cortado"), "prepare", "movielens", "--source", Self.wheel, "--limit", "5000",
            "--no-validation", "--out", dir, "--overwrite"
        ])
        XCTAssertEqual(r.status, 0, r.output)
        let m = try DatasetManifest.load(dir + "/manifest.json")
        XCTAssertEqual(m.splits["validation"]?.rows, 0)
        XCTAssertEqual(m.splits["train"]?.rows, g.split_rows["train"]! + g.split_rows["validation"]!)
        XCTAssertEqual(m.splits["test"]?.rows, g.split_rows["test"])
        XCTAssertEqual(m.cleaning?.leaveLastOut?.validationHeldOut, false)
        XCTAssertEqual(try Self.prepared.get().0.cleaning?.leaveLastOut?.validationHeldOut, true)
        // The same test rows: ids are renumbered by training frequency, so compare the ratings
        // and times (the features' time column) in file order.
        func ratingsAndTimes(_ dir: String, _ m: DatasetManifest, _ split: String) throws -> [[Float]] {
            let h5 = try HDF5File.open(dir + "/" + m.splits[split]!.files[0].path)
            let t = try h5.readFloats("targets"), f = try h5.readFloats("features")
            let width = f.count / max(t.count, 1)
            return t.indices.map { [t[$0], f[$0 * width + width - 1]] }
        }
        let (base, baseDir) = try Self.prepared.get()
        XCTAssertEqual(try ratingsAndTimes(dir, m, "test"), try ratingsAndTimes(baseDir, base, "test"))
        let inspect = try Support.run([Support.product("cortado"), "inspect", dir])
        XCTAssertTrue(
            inspect.stdout.contains("no validation split: second-latest rows stay in training"), inspect.stdout)

        let bad = try Support.run([
            Support.product("cortado"), "prepare", "csv", dir + "/manifest.json", "--label", "c2", "--no-validation",
            "--out", dir + "-x"
        ])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.output.contains("--no-validation: only with --leave-last-out"), bad.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "-x"))
    }

    /// Global mean, damped user + item biases, and the popularity ranker by full ranking, fitted
    /// on the training split as the trainer does, against numpy.
    func testBaselinesMatchNumpy() throws {
        let g = try golden(), (m, _) = try Self.prepared.get()
        let train = try rows("train"), test = try rows("test"), val = try rows("validation")
        let users = m.columns!.first { $0.name == "c0" }!.vocabulary!.count + 1
        let items = m.columns!.first { $0.name == "c1" }!.vocabulary!.count + 1
        let b = RatingBaselines(
            users: users, items: items, rows: train.count, user: { train[$0].user }, item: { train[$0].item },
            rating: { train[$0].rating })
        XCTAssertEqual(b.mean, g.global_mean, accuracy: 1e-12)
        func rmse(_ f: (Int32, Int32) -> Double) -> Double {
            (test.reduce(0.0) { $0 + pow($1.rating - f($1.user, $1.item), 2) } / Double(test.count)).squareRoot()
        }
        XCTAssertEqual(rmse { _, _ in b.mean }, g.test_global_mean_rmse, accuracy: 1e-9)
        XCTAssertEqual(rmse(b.predict), g.test_bias_rmse, accuracy: 1e-9)

        var popularity = [Float](repeating: 0, count: items)
        for r in train { popularity[Int(r.item)] += 1 }
        let history = Interactions(users: users, pairs: (train + val + test).map { ($0.user, $0.item) })
        var excluded = [UInt8](repeating: 0, count: items)
        var hr = 0.0, ndcg = 0.0
        for r in test where r.item != 0 {
            for j in history.items(of: Int(r.user)) where j != r.item { excluded[Int(j)] = 1 }
            let rank = expectedRank(scores: popularity, count: items, target: Int(r.item), excluded: excluded)
            let m = hitAndNDCG(rank: rank, k: 10)
            hr += m.hit; ndcg += m.ndcg
            for j in history.items(of: Int(r.user)) { excluded[Int(j)] = 0 }
        }
        XCTAssertEqual(hr / Double(test.count), g.test_popularity_hr_at_10, accuracy: 1e-12)
        XCTAssertEqual(ndcg / Double(test.count), g.test_popularity_ndcg_at_10, accuracy: 1e-12)
    }

    /// Every negative drawn for every user of the slice avoids the user's training items; a
    /// user who has seen all but two items gets exactly those two, both of them (the exact
    /// fallback after rejection fails); without exclusion seen items do come up.
    func testNegativesNeverContainASeenItem() throws {
        let (m, _) = try Self.prepared.get()
        let train = try rows("train")
        let users = m.columns!.first { $0.name == "c0" }!.vocabulary!.count + 1
        let items = m.columns!.first { $0.name == "c1" }!.vocabulary!.count + 1
        let seen = Interactions(users: users, pairs: train.map { ($0.user, $0.item) })
        let sampler = NegativeSampler(items: items, seen: seen)
        var rng = SeededRNG(seed: 7)
        var drawn = 0
        for u in 1..<users {
            let mine = Set(seen.items(of: u))
            for _ in 0..<200 {
                let j = sampler.draw(user: Int32(u), rng: &rng)
                XCTAssertTrue(j >= 1 && Int(j) < items, "item \(j) outside 1..<\(items)")
                if mine.contains(j) { return XCTFail("user \(u): drew seen item \(j)") }
                drawn += 1
            }
        }
        XCTAssertGreaterThan(drawn, 50_000)

        let dense = Interactions(users: 2, pairs: [1, 2, 3, 4, 5, 6, 8, 9, 10, 3].map { (Int32(1), Int32($0)) })
        let small = NegativeSampler(items: 12, seen: dense)
        var counts = [Int32: Int]()
        for _ in 0..<2000 { counts[small.draw(user: 1, rng: &rng), default: 0] += 1 }
        XCTAssertEqual(Set(counts.keys), [7, 11])
        XCTAssertEqual(Double(counts[7]!) / 2000, 0.5, accuracy: 0.05)

        let uniform = NegativeSampler(items: 12, seen: nil)
        let seenByUser1 = Set(dense.items(of: 1))
        XCTAssertTrue((0..<200).contains { _ in seenByUser1.contains(uniform.draw(user: 1, rng: &rng)) })
    }
}
