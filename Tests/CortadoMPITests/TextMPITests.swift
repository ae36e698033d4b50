import CortadoCore
import CortadoData
import CortadoTestSupport
import Foundation
import XCTest

/// Text through the real binaries: `cortado prepare text` gives the same vocabulary, hashing
/// and id lists on 1, 2 and 3 ranks; a model trained with `mpirun -np 2` scores raw text
/// exactly as it scores the prepared ids.
final class TextMPITests: XCTestCase {
    /// A small multilingual corpus whose words recur across documents (so min_count matters).
    func corpus(_ dir: String) throws -> (train: String, test: String) {
        let topics = [
            ("sport", ["match", "goal", "team", "won", "試合", "équipe", "матч"]),
            ("markets", ["stocks", "shares", "fell", "rose", "株価", "marché", "рынок"]),
            ("weather", ["rain", "storm", "sunny", "wind", "天気", "pluie", "дождь"])
        ]
        var rng = SeededRNG(seed: 7)
        func doc(_ words: [String]) -> String {
            (0..<(3 + rng.below(9))).map { _ in
                rng.below(4) == 0
                    ? ["the", "a", "of", "3.5", "1,000", "—", "$"][rng.below(7)] : words[rng.below(words.count)]
            }.joined(separator: rng.below(2) == 0 ? " " : ", ")
        }
        var train = "", test = "label\ttext\n"
        for i in 0..<90 {
            let (label, words) = topics[i % 3]
            train += "__label__\(label) \(doc(words))\n"
        }
        for i in 0..<30 { test += "\(topics[i % 3].0)\t\(doc(topics[i % 3].1))\n" }
        try Data(train.utf8).write(to: URL(fileURLWithPath: dir + "/train.txt"))
        try Data(test.utf8).write(to: URL(fileURLWithPath: dir + "/test.tsv"))
        return (dir + "/train.txt", dir + "/test.tsv")
    }

    func testVocabularyAndHashingIdenticalOn1To3Ranks() throws {
        let dir = Support.scratch("text-mpi-prepare")
        let (train, test) = try corpus(dir)
        func prepare(_ launcher: [String], _ out: String) throws {
            let r = try Support.run(
                launcher + [
                    Support.product("cortado"), "prepare", "text", train, "--test", test, "--out", dir + "/" + out,
                    "--min-count", "2", "--buckets", "1000"
                ], timeout: 120)
            XCTAssertEqual(r.status, 0, r.output)
        }
        try prepare([], "solo")
        try prepare(["mpirun", "-np", "2", "--bind-to", "none"], "np2")
        try prepare(["mpirun", "-np", "3", "--oversubscribe", "--bind-to", "none"], "np3")
        let solo = try preparedContents(dir + "/solo")
        let m = try DatasetManifest.load(dir + "/solo/manifest.json")
        XCTAssertEqual(m.classes, ["markets", "sport", "weather"])
        XCTAssertEqual(m.splits["test"]?.rows, 30)
        XCTAssertEqual((m.splits["train"]?.rows ?? 0) + (m.splits["validation"]?.rows ?? 0), 90)
        let vocab = try XCTUnwrap(m.text?.vocabulary)
        XCTAssertTrue(vocab.contains("рынок") && vocab.contains("試") && vocab.contains("1,000"), "\(vocab)")
        XCTAssertEqual(m.text?.settings.minCount, 2)
        XCTAssertGreaterThan(solo["test.h5/ids"]?.count ?? 0, 100)
        for other in ["np2", "np3"] {
            let c = try preparedContents(dir + "/" + other)
            XCTAssertEqual(c.keys.sorted(), solo.keys.sorted(), other)
            for (k, v) in solo { XCTAssertTrue(c[k] == v, "\(other): \(k) differs") }
        }
    }

    func testTrainedOnTwoRanksRawTextEqualsPreparedIds() throws {
        let dir = Support.scratch("text-mpi-train")
        let (train, test) = try corpus(dir)
        let prep = try Support.run(
            [
                Support.product("cortado"), "prepare", "text", train, "--test", test, "--out", dir + "/data",
                "--buckets", "500"
            ],
            timeout: 120)
        XCTAssertEqual(prep.status, 0, prep.output)
        let r = try Support.mpirun(
            2,
            [
                Support.repoRoot + "/jobs/text-r8.yaml", "--run-dir", dir + "/run", "--json", "--set",
                "data=\(dir)/data/manifest.json", "--set", "threads=1", "--set", "epochs=8", "--set", "batch_size=8",
                "--set", "model.embedding_dim=16", "--set", "model.exchange=sparse"
            ], timeout: 240)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("exchanged sparsely"), r.output)
        let summary = try XCTUnwrap(try Support.lastJSON(r)["test"] as? [String: Double])
        XCTAssertGreaterThan(summary["fp32_accuracy"] ?? 0, 0.8, "3 separable topics: \(summary)")
        XCTAssertEqual(summary["fp32_model_accuracy"] ?? -1, summary["fp32_accuracy"] ?? -2, accuracy: 1e-9)
        for recipe in ["fp32", "int8"] {
            let model = "\(dir)/run/model-\(recipe).cmodel"
            let raw = try Support.run([Support.product("cortado-infer"), model, "--input", test, "--json"])
            let ids = try Support.run([
                Support.product("cortado-infer"), model, "--input", dir + "/data/test.h5", "--json"
            ])
            XCTAssertEqual(raw.status, 0, raw.output)
            XCTAssertEqual(ids.status, 0, ids.output)
            let a = try Support.lastJSON(raw)["accuracy"] as? Double,
                b = try Support.lastJSON(ids)["accuracy"] as? Double
            XCTAssertNotNil(a)
            XCTAssertEqual(a, b, recipe)
            XCTAssertEqual(a, summary["\(recipe)_model_accuracy"], recipe)
        }
    }
}
