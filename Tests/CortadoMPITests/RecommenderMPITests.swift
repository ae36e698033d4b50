import CortadoCore
import CortadoData
import CortadoModel
import CortadoTestSupport
import Foundation
import XCTest

/// The recommender end to end under mpirun: synthetic MovieLens-shaped ratings → `prepare csv`
/// → `cortado-train` (2 and 3 ranks) → `cortado-infer` top-K.
final class RecommenderMPITests: XCTestCase {
    /// Ratings data prepared once: 943 users × 1 682 items × 100 000 ratings (as MovieLens-100k).
    static let data: String = {
        let dir = NSTemporaryDirectory() + "cortado-tests-\(getpid())/ratings"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let gen = try? Support.run([
            Support.product("cortado"), "prepare", "synthetic-ratings", "--out", dir + "/u.data"
        ])
        precondition(gen?.status == 0, "synthetic-ratings failed: \(gen?.output ?? "")")
        let prep = try? Support.run([
            Support.product("cortado"), "prepare", "csv", dir + "/u.data", "--no-header", "--delimiter", "tab",
            "--label", "c2", "--task", "regression", "--leave-last-out", "c0,c3",
            "--schema", Support.repoRoot + "/jobs/ratings-schema.yaml", "--out", dir + "/prepared"
        ])
        precondition(prep?.status == 0, "prepare csv failed: \(prep?.output ?? "")")
        return dir + "/prepared/manifest.json"
    }()

    func train(_ np: Int, job: String, runDir: String, _ extra: [String]) throws -> (Support.Result, [String: Any]) {
        let r = try Support.mpirun(
            np,
            [
                Support.repoRoot + "/jobs/" + job, "--set", "data=\(Self.data)", "--run-dir", runDir,
                "--set", "threads=1", "--json"
            ] + extra, timeout: 300)
        XCTAssertEqual(r.status, 0, r.output)
        return (r, try Support.lastJSON(r))
    }

    func params(_ runDir: String, step: Int) throws -> [Float] {
        try HDF5File.open(runDir + String(format: "/checkpoints/step-%08d.h5", step)).readFloats("params")
    }

    /// Sparse exchange of embedding gradients (touched rows, allgathered, merged in rank
    /// order) gives the parameters of the dense allreduce, within 1e-6 relative, on 2 and 3
    /// ranks, with Adam (whose moments also decay on rows a step did not touch) and the per-row
    /// L2 (whose gradient lands on the touched rows only, so the sparse path still carries it);
    /// the mse run adds the time-aware user drift (its a_u travels with the user rows, its t_u
    /// is a constant the optimizer must leave exactly as computed) and the per-(user, day) bias
    /// (its rows travel as a third table; its (user, day) index is a constant).
    func testSparseExchangeEqualsDenseAllreduce() throws {
        let dir = Support.scratch("sparse-vs-dense")
        for (np, loss) in [(2, "bce"), (3, "mse")] {
            var result = [String: [Float]]()
            for mode in ["dense", "sparse"] {
                let run = "\(dir)/\(np)-\(mode)"
                let (r, s) = try train(
                    np, job: "recsys-ncf.yaml", runDir: run,
                    [
                        // dim 32 pinned: the layout check below rebuilds it whatever the shipped job's tuning.
                        "--set", "epochs=1", "--set", "init_from=null", "--set", "model.embedding_dim=32", "--set",
                        "model.exchange=\(mode)", "--set",
                        "model.loss=\(loss)", "--set",
                        "emit=[]", "--set", "model.l2=0.01", "--set", "model.l2_bias=0.001"
                    ]
                        + (loss == "mse"
                            ? [
                                "--set", "model.time_bias=user_drift", "--set", "model.time_column=c3", "--set",
                                "model.l2_drift=0.01", "--set", "optimizer.weight_decay=0.01", "--set",
                                "model.user_day_bias=true", "--set", "model.l2_user_day=0.01"
                            ] : []))
                XCTAssertTrue(r.stdout.contains("exchanged \(mode)ly"), r.stdout)
                if loss == "mse" {
                    XCTAssertTrue(r.stdout.contains("time bias: user_drift on column c3"), r.stdout)
                    XCTAssertTrue(r.stdout.contains("user-day bias: "), r.stdout)
                }
                XCTAssertTrue(r.stdout.contains("per-row L2: 0.01"), r.stdout)
                result[mode] = try params(run, step: s["steps"] as! Int)
            }
            let a = result["dense"]!, b = result["sparse"]!
            XCTAssertEqual(a.count, b.count)
            var worst = 0.0
            for i in a.indices {
                worst = max(worst, Double(Swift.abs(a[i] - b[i])) / max(Double(Swift.abs(a[i])), 1e-3))
            }
            XCTAssertLessThanOrEqual(worst, 1e-6, "\(np) ranks, \(loss): sparse and dense differ by \(worst) relative")
            XCTAssertNotEqual(a, [Float](repeating: 0, count: a.count))
            if loss == "mse" { try checkDriftTrainedAndMeanDaysConstant(params: b) }
        }
    }

    /// After training (with Adam's coupled weight decay, which would pull any trained value
    /// toward 0): the user drifts moved from 0, and t_u is still each user's mean training day
    /// minus the training mean day, recomputed here from the prepared shards in Double; the
    /// (user, UTC day) index holds exactly the training pairs in sorted order, their biases
    /// moved from 0 and the unseen row 0 did not.
    func checkDriftTrainedAndMeanDaysConstant(params: [Float]) throws {
        let manifest = try DatasetManifest.load(Self.data)
        var spec = RecommenderSpec(userColumn: "c0", itemColumn: "c1", users: 0, items: 0, dim: 32)
        spec.users = (manifest.columns!.first { $0.name == "c0" }!.vocabulary!.count) + 1
        spec.items = (manifest.columns!.first { $0.name == "c1" }!.vocabulary!.count) + 1
        spec.mlp = [.dense(units: 64), .relu, .dense(units: 1)]
        spec.time = TimeBias(column: "c3")
        var sum = [Double](repeating: 0, count: spec.users), count = sum
        var pairs = Set<[Int]>()
        let dir = (Self.data as NSString).deletingLastPathComponent
        for f in manifest.splits["train"]!.files {
            let h5 = try HDF5File.open(dir + "/" + f.path)
            let ids = try h5.readInt64s("categorical"), t = try h5.readFloats("features")
            for r in 0..<f.rows {
                sum[Int(ids[r * 2])] += Double(t[r]) / 86_400; count[Int(ids[r * 2])] += 1
                pairs.insert([Int(ids[r * 2]), Int((Double(t[r]) / 86_400).rounded(.down))])
            }
        }
        spec.time!.userDays = pairs.count
        let layout = spec.parameterLayout
        XCTAssertEqual(layout.count, params.count, "the NCF job's layout with time terms")
        let drift = layout.tensor("user_drift")!, mean = layout.tensor("user_mean_day")!
        XCTAssertGreaterThan((0..<drift.count).filter { params[drift.offset + $0] != 0 }.count, drift.count / 2)
        let dayBias = layout.tensor("user_day_bias")!, dayUser = layout.tensor("user_day_user")!
        let dayDay = layout.tensor("user_day_day")!
        let sorted = pairs.sorted { $0[0] != $1[0] ? $0[0] < $1[0] : $0[1] < $1[1] }
        for (r, pair) in sorted.enumerated() {
            XCTAssertEqual(
                [Int(params[dayUser.offset + r + 1]), Int(params[dayDay.offset + r + 1])], pair, "user-day row \(r + 1)"
            )
        }
        XCTAssertEqual(params[dayBias.offset], 0, "the unseen (user, day) row")
        XCTAssertGreaterThan(
            (1..<dayBias.count).filter { params[dayBias.offset + $0] != 0 }.count, dayBias.count / 2)
        let origin = sum.reduce(0, +) / count.reduce(0, +)
        for u in 1..<spec.users {
            XCTAssertEqual(
                Double(params[mean.offset + u]), sum[u] / count[u] - origin, accuracy: 2e-3, "t_u of user \(u)")
        }
        XCTAssertEqual(params[mean.offset], 0) // the unknown user has no training rating
    }

    /// The shipped NCF recipe — implicit MF, then NCF starting from its embeddings — beats the
    /// popularity ranker on HR@10 by a clear margin; the written models rank, score and exclude
    /// what each user has rated.
    func testNCFBeatsPopularityAndInferReturnsUnseenTopK() throws {
        let dir = Support.scratch("ncf")
        let (_, mf) = try train(2, job: "recsys-mf-implicit.yaml", runDir: dir + "/mf", ["--set", "epochs=12"])
        let start = (mf["models"] as! [String: String])["fp32"]!
        let (ncf, s) = try train(
            2, job: "recsys-ncf.yaml", runDir: dir + "/run", ["--set", "epochs=12", "--set", "init_from=\(start)"])
        XCTAssertTrue(
            ncf.stdout.contains("initialized 5 tensors from \(start); fresh: mlp.layers.0.weight"), ncf.stdout)
        let test = s["test"] as! [String: Double]
        let hr = test["fp32_hr@10"]!, pop = test["popularity_hr@10"]!
        XCTAssertGreaterThan(hr, 1.3 * pop, "NCF HR@10 \(hr) vs popularity \(pop)")
        XCTAssertGreaterThan(pop, 0.02, "the popularity baseline is a real one")

        let model = (s["models"] as! [String: String])["int8"]!
        let r = try Support.run([
            Support.product("cortado-infer"), model, "--users", "1,7", "--top-k", "10", "--seen", Self.data, "--json"
        ])
        XCTAssertEqual(r.status, 0, r.output)
        // What user 1 rated, in the raw file.
        let raw = try String(
            contentsOfFile: (Self.data as NSString).deletingLastPathComponent + "/../u.data", encoding: .utf8)
        var rated = Set<String>()
        for line in raw.split(separator: "\n") {
            let f = line.split(separator: "\t")
            if f[0] == "1" { rated.insert(String(f[1])) }
        }
        let lines = r.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 2)
        let first = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as! [String: Any]
        let items = first["items"] as! [String]
        XCTAssertEqual(first["user"] as? String, "1")
        XCTAssertEqual(items.count, 10)
        XCTAssertEqual(Set(items).count, 10)
        XCTAssertTrue(rated.isDisjoint(with: items), "recommended already-rated items: \(rated.intersection(items))")
        let scores = first["scores"] as! [Double]
        XCTAssertEqual(scores, scores.sorted(by: >))
    }

    /// Explicit ratings with MSE: RMSE well under the global-mean predictor's, and the int8
    /// file (embedding tables quantized per id) scores within 0.01 RMSE of fp32.
    func testMatrixFactorizationRMSEAndInt8() throws {
        let dir = Support.scratch("mf")
        let (_, s) = try train(2, job: "recsys-mf.yaml", runDir: dir + "/run", [])
        let test = s["test"] as! [String: Double]
        XCTAssertLessThan(test["fp32_rmse"]!, 0.85, "\(test)") // the global mean scores ≈ 1.04 here
        XCTAssertEqual(test["int8_model_rmse"]!, test["fp32_model_rmse"]!, accuracy: 0.01)
        XCTAssertEqual(test["fp32_model_rmse"]!, test["fp32_rmse"]!, accuracy: 1e-4)
        let testFile = (Self.data as NSString).deletingLastPathComponent + "/test.h5"
        let r = try Support.run([
            Support.product("cortado-infer"), (s["models"] as! [String: String])["fp32"]!, "--input", testFile, "--json"
        ])
        XCTAssertEqual(r.status, 0, r.output)
        let obj = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(obj["rmse"] as! Double, test["fp32_rmse"]!, accuracy: 1e-4)
    }
}
