import CortadoCompress
import CortadoCore
import CortadoData
import CortadoInfer
import CortadoJob
import CortadoModel
import CortadoPipeline
import CortadoTestSupport
import CortadoTrain
import Foundation
import XCTest

/// `cortado-train` with `teacher:` under `mpirun -np 2`, each run under a timeout: a student
/// distilled from a small teacher trained here, bit-exact resume, bad teachers failing before
/// step 0 with the field named.
final class DistillationMPITests: XCTestCase {
    var data: String { Support.smallData }

    /// A 784-32-10 teacher, trained once per test process (2 epochs on the small data).
    static let teacherRun: String = {
        let dir = NSTemporaryDirectory() + "cortado-tests-\(getpid())/distill-teacher"
        let r = try? Support.mpirun(
            2,
            [
                Support.repoRoot + "/jobs/fashion-mlp.yaml", "--run-dir", dir, "--set", "data=\(Support.smallData)",
                "--set", "threads=1", "--set", "epochs=2", "--set", "batch_size=32", "--set",
                "optimizer.warmup_steps=0",
                "--set", "model.layers=[{type: dense, units: 32}, {type: relu}, {type: dense, units: 10}]"
            ])
        precondition(r?.status == 0, "training the teacher failed: \(r?.output ?? "no output")")
        return dir
    }()

    /// A 784-16-10 student of `teacher` (a model file) on the distilled job spec, or without
    /// a teacher (nil) on its baseline spec.
    func args(_ runDir: String, teacher: String?, _ extra: [String] = []) -> [String] {
        [
            Support.repoRoot + (teacher == nil ? "/jobs/fashion-mlp-small.yaml" : "/jobs/fashion-mlp-distilled.yaml"),
            "--run-dir", runDir, "--json",
            "--set", "data=\(data)", "--set", "threads=1", "--set", "batch_size=32", "--set",
            "optimizer.warmup_steps=0",
            "--set", "model.layers=[{type: dense, units: 16}, {type: relu}, {type: dense, units: 10}]"
        ]
            + (teacher.map { ["--set", "teacher.model=\($0)"] } ?? []) + extra
    }

    func testTwoRanksDistillAndTheModelNamesTheTeacher() throws {
        let teacher = Self.teacherRun + "/model-fp32.cmodel"
        let dir = Support.scratch("distill-np2")
        let r = try Support.mpirun(
            2,
            args(
                dir + "/run", teacher: teacher,
                ["--set", "epochs=2", "--set", "teacher.temperature=4", "--set", "teacher.alpha=0.5"]))
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(
            r.stdout.contains("teacher: \(teacher) (fp32, dense(32) relu dense(10), 25450 parameters, sha256 "),
            r.stdout)
        XCTAssertTrue(r.stdout.contains("temperature 4.0, alpha 0.5"), r.stdout)
        XCTAssertTrue(r.stdout.contains("train_ce "), r.stdout)
        let s = try Support.lastJSON(r)
        XCTAssertEqual(s["steps"] as? Int, 2 * (1750 / 32))
        XCTAssertGreaterThan((s["validation"] as! [String: Double])["accuracy"]!, 0.65)

        let lines = try String(contentsOfFile: dir + "/run/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        let last = try JSONSerialization.jsonObject(with: Data(lines.last!.utf8)) as! [String: Double]
        XCTAssertGreaterThan(last["train_ce"]!, 0)
        XCTAssertNotEqual(last["train_ce"]!, last["train_loss"]!, "the total includes the soft term")

        let sha = try SHA256.hex(fileAt: teacher)
        for precision in ["fp32", "int8"] {
            let meta = try ModelFile.load(dir + "/run/model-\(precision).cmodel").header.metadata
            let from =
                try JSONSerialization.jsonObject(with: Data(try XCTUnwrap(meta["distilled_from"], precision).utf8))
                as! [String: Any]
            XCTAssertEqual(from["model"] as? String, teacher)
            XCTAssertEqual(from["sha256"] as? String, sha)
            XCTAssertEqual(from["temperature"] as? Double, 4)
            XCTAssertEqual(from["alpha"] as? Double, 0.5)
        }
        let job = try String(contentsOfFile: dir + "/run/job.json", encoding: .utf8)
        XCTAssertTrue(job.contains(sha), "job.json records the teacher's hash: \(job)")
    }

    /// The cached teacher (the default: logits of every training row computed before step 0)
    /// trains the same student as the fp32 teacher run on every batch (`teacher.cache: false`)
    /// up to float rounding (measured: 1.5e-7 after 54 steps; a wrong row would be ~1e-2); the
    /// start-up lines say which ran and the memory line shows the cache.
    func testCachedTeacherTrainsTheSameStudentAsPerBatch() throws {
        let teacher = Self.teacherRun + "/model-fp32.cmodel"
        let dir = Support.scratch("distill-cache-np2")
        var params = [String: [Float]]()
        for (name, extra) in [("cached", []), ("per-batch", ["--set", "teacher.cache=false"])] {
            let r = try Support.mpirun(
                2,
                args(
                    dir + "/" + name, teacher: teacher,
                    [
                        "--set", "epochs=1", "--set", "emit=[fp32]", "--set", "teacher.temperature=2", "--set",
                        "teacher.alpha=0.5"
                    ] + extra))
            XCTAssertEqual(r.status, 0, r.output)
            if name == "cached" {
                XCTAssertTrue(r.stdout.contains("alpha 0.5; logits of 1750 rows cached in "), r.stdout)
                XCTAssertTrue(r.stdout.contains(", teacher logits 0.1 MiB"), r.stdout)
            } else {
                XCTAssertTrue(r.stdout.contains("alpha 0.5; run per batch (teacher.cache: false)"), r.stdout)
                XCTAssertFalse(r.stdout.contains("teacher logits"), r.stdout)
                let job = try String(contentsOfFile: dir + "/per-batch/job.json", encoding: .utf8)
                XCTAssertTrue(job.contains("\"cache\":false"), job)
            }
            let meta = try ModelFile.load(dir + "/\(name)/model-fp32.cmodel").header.metadata
            XCTAssertFalse(
                try XCTUnwrap(meta["distilled_from"]).contains("cache"), "the model records the teacher, not how it ran"
            )
            params[name] = try HDF5File.open(dir + "/\(name)/checkpoints/step-00000054.h5").readFloats("params")
        }
        let a = try XCTUnwrap(params["cached"]), b = try XCTUnwrap(params["per-batch"])
        XCTAssertEqual(a.count, 12_730, "784-16-10")
        let worst = zip(a, b).map { abs($0 - $1) / max(1, abs($0)) }.max() ?? .nan
        print(
            "cached vs per-batch teacher, 54 steps: \(zip(a, b).filter { $0 != $1 }.count) of \(a.count) parameters differ, by up to \(worst)"
        )
        XCTAssertLessThanOrEqual(worst, 1e-4, "cached and per-batch teachers train the same parameters up to rounding")
    }

    /// 2N steps ≡ N + resume + N with an int8 teacher, bit for bit; resuming with another
    /// teacher file (or none) is refused before step 0, naming the field.
    func testResumeWithATeacherIsBitExactAndRefusesAnother() throws {
        let int8 = Self.teacherRun + "/model-int8.cmodel", fp32 = Self.teacherRun + "/model-fp32.cmodel"
        let dir = Support.scratch("distill-resume")
        func run(_ runDir: String, _ teacher: String?, _ extra: [String]) throws -> Support.Result {
            try Support.mpirun(
                2,
                args(
                    dir + "/" + runDir, teacher: teacher,
                    ["--set", "optimizer.schedule=constant", "--set", "emit=[fp32]"] + extra))
        }
        let full = try run("full", int8, ["--set", "epochs=2"])
        XCTAssertEqual(full.status, 0, full.output)
        XCTAssertTrue(full.stdout.contains("teacher: \(int8) (int8,"), full.stdout)
        let first = try run("split", int8, ["--set", "epochs=1"])
        XCTAssertEqual(first.status, 0, first.output)
        let other = try run("split", fp32, ["--set", "epochs=2", "--resume"])
        XCTAssertEqual(other.status, 2, other.output)
        XCTAssertTrue(
            other.stderr.contains("teacher.model: \(fp32) (sha256 ") && other.stderr.contains("is not the teacher"),
            other.stderr)
        XCTAssertFalse(other.stdout.contains("epoch 2/2"), other.stdout)
        let none = try run("split", nil, ["--set", "epochs=2", "--resume"])
        XCTAssertEqual(none.status, 2, none.output)
        XCTAssertTrue(none.stderr.contains("the job has no teacher"), none.stderr)
        let second = try run("split", int8, ["--set", "epochs=2", "--resume"])
        XCTAssertEqual(second.status, 0, second.output)
        XCTAssertTrue(
            second.stdout.contains("resumed from \(dir)/split/checkpoints/step-00000054.h5 at step 54"), second.stdout)
        let a = try HDF5File.open(dir + "/full/checkpoints/step-00000108.h5")
        let b = try HDF5File.open(dir + "/split/checkpoints/step-00000108.h5")
        XCTAssertEqual(try a.readFloats("params"), try b.readFloats("params"))
        XCTAssertEqual(try a.readFloats("optimizer_state"), try b.readFloats("optimizer_state"))
    }

    /// Teachers that cannot work fail on every rank before step 0 with one line naming the
    /// field and the file: missing, wrong class count, wrong input size, a recommender, and a
    /// non-positive temperature.
    func testBadTeachersFailBeforeStepZeroNamingTheField() throws {
        let dir = Support.scratch("distill-bad")
        func write(_ name: String, _ spec: ModelSpec, classes: [String]) throws -> String {
            let path = dir + "/" + name
            let params = [Float](repeating: 0.01, count: spec.parameterLayout.count)
            try params.withUnsafeBufferPointer {
                try ModelExport.write(
                    path: path, recipe: try Recipe("fp32"), model: spec, classes: classes, params: $0, metadata: [:])
            }
            return path
        }
        let fiveClasses = try write(
            "five.cmodel", ModelSpec(inputShape: [784], layers: [.dense(units: 5)]), classes: ["a", "b", "c", "d", "e"])
        let smallInput = try write(
            "small-input.cmodel", ModelSpec(inputShape: [100], layers: [.dense(units: 10)]), classes: [])
        let recommender = dir + "/recsys.cmodel"
        let rs = RecommenderSpec(userColumn: "u", itemColumn: "i", users: 3, items: 4, dim: 2)
        try [Float](repeating: 0.1, count: rs.parameterLayout.count).withUnsafeBufferPointer {
            try ModelExport.write(
                path: recommender, recipe: try Recipe("fp32"), recommender: rs, params: $0, metadata: [:])
        }
        let cases: [(teacher: String, extra: [String], expect: String)] = [
            (dir + "/missing.cmodel", [], "teacher.model: \(dir)/missing.cmodel: no such model file"),
            (fiveClasses, [], "teacher.model: \(fiveClasses): predicts 5 classes but the data \(data) has 10"),
            (smallInput, [], "teacher.model: \(smallInput): takes 100 inputs"),
            (recommender, [], "teacher.model: \(recommender): is a recommender model"),
            (
                Self.teacherRun + "/model-fp32.cmodel", ["--set", "teacher.temperature=0"],
                "teacher.temperature: must be positive, got 0"
            )
        ]
        for (i, c) in cases.enumerated() {
            let r = try Support.mpirun(2, args(dir + "/run\(i)", teacher: c.teacher, c.extra), timeout: 60)
            XCTAssertEqual(r.status, 2, "\(c.expect): \(r.output)")
            XCTAssertTrue(r.stderr.contains(c.expect), "expected '\(c.expect)' in: \(r.stderr)")
            XCTAssertFalse(r.stdout.contains("epoch 1/"), "failed before step 0: \(r.stdout)")
            XCTAssertFalse(
                FileManager.default.fileExists(atPath: dir + "/run\(i)/checkpoints"),
                "no run folder for a failed set-up")
        }
    }
}
