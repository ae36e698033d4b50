import CortadoCompress
import CortadoCore
import CortadoData
import CortadoInfer
import CortadoJob
import CortadoModel
import CortadoTestSupport
import Foundation
import XCTest

/// The text classifier: numpy golden values for the embedding bag + dense head
/// (Fixtures/make_golden_text.py), a central-difference gradient check in Double, the model
/// file carrying its vocabulary, and raw-text inference equal to scoring the prepared ids.
final class TextModelTests: XCTestCase {
    struct Golden: Decodable {
        var rows: Int, dim: Int, hidden: Int, classes: Int
        var offsets: [Int32], ids: [Int32], labels: [Int32]
        var tensors: [String: [Double]], bags: [Double], logits: [Double], loss_sum: Double
        var grads: [String: [Double]]
    }

    func runGolden<T: Real>(_ type: T.Type, rel: Double, abs: Double) throws {
        let g = try JSONDecoder().decode(Golden.self, from: try Support.fixture("golden_text.json"))
        let spec = TextSpec(
            rows: g.rows, dim: g.dim, layers: [.dense(units: g.hidden), .relu, .dense(units: g.classes)])
        let clf = TextClassifier<T>(spec: spec, maxBatch: g.labels.count)
        XCTAssertEqual(Set(clf.layout.tensors.map(\.name)), Set(g.tensors.keys))
        for t in clf.layout.tensors {
            for (j, v) in g.tensors[t.name]!.enumerated() { clf.params.base[t.offset + j] = T(v) }
        }
        let n = g.labels.count
        let logits = clf.forward(offsets: g.offsets, ids: g.ids, batch: n)
        assertClose((0..<(n * g.classes)).map { Double(logits[$0]) }, g.logits, rel: rel, abs: abs, "logits")
        var bags = [T](repeating: 0, count: n * g.dim)
        embeddingBagForward(
            out: &bags, table: clf.params.base + clf.embedding, offsets: g.offsets, ids: g.ids, batch: n, dim: g.dim)
        assertClose(bags.map { Double($0) }, g.bags, rel: rel, abs: abs, "bags")
        clf.grads.zero()
        let r = clf.step(offsets: g.offsets, ids: g.ids, labels: g.labels, batch: n, train: true)
        XCTAssertEqual(r.lossSum, g.loss_sum, accuracy: rel * g.loss_sum)
        for t in clf.layout.tensors {
            let got = (0..<t.count).map { Double(clf.grads.base[t.offset + $0]) }
            assertClose(got, g.grads[t.name]!, rel: rel * 10, abs: abs * 10, "d\(t.name)")
        }
    }

    func testBagAndHeadMatchNumpyInDouble() throws { try runGolden(Double.self, rel: 1e-12, abs: 1e-13) }
    func testBagAndHeadMatchNumpyInFloat() throws { try runGolden(Float.self, rel: 1e-5, abs: 1e-6) }

    /// Every parameter's gradient of the mean loss against central differences (relative,
    /// floor 1), including embedding rows no document uses (gradient 0) and an empty document.
    func testEmbeddingBagGradientCheck() {
        let spec = TextSpec(rows: 7, dim: 3, layers: [.dense(units: 4), .tanh, .dense(units: 3)])
        let offsets: [Int32] = [0, 2, 2, 6, 7], ids: [Int32] = [1, 4, 4, 4, 0, 6, 2], labels: [Int32] = [0, 2, 1, 1]
        let clf = TextClassifier<Double>(spec: spec, maxBatch: 4)
        clf.initialize(seed: 5)
        for i in 0..<clf.layout.count { clf.params.base[i] += 0.07 * sin(Double(i)) }
        clf.grads.zero()
        _ = clf.step(offsets: offsets, ids: ids, labels: labels, batch: 4, train: true)
        let analytic = Array(clf.grads.buffer)
        func f() -> Double { clf.step(offsets: offsets, ids: ids, labels: labels, batch: 4, train: false).lossSum / 4 }
        let eps = 1e-6
        for i in 0..<clf.layout.count {
            let saved = clf.params.base[i]
            clf.params.base[i] = saved + eps; let plus = f()
            clf.params.base[i] = saved - eps; let minus = f()
            clf.params.base[i] = saved
            let numeric = (plus - minus) / (2 * eps)
            let name = clf.layout.tensors.last { $0.offset <= i }!.name
            XCTAssertLessThanOrEqual(
                Swift.abs(analytic[i] - numeric), 1e-6 * max(1, Swift.abs(numeric)),
                "d\(name)[\(i)]: analytic \(analytic[i]), numeric \(numeric)")
        }
        // Row 3 and 5 are in no document: exactly zero, so the sparse exchange may skip them.
        for row in [3, 5] { for k in 0..<3 { XCTAssertEqual(analytic[clf.embedding + row * 3 + k], 0) } }
    }

    /// A tiny corpus prepared in-process (train TSV + raw test TSV), and a model written from
    /// an initialized classifier with the vocabulary in its metadata (fp32 and int8).
    func preparedModel(_ dir: String, recipe: String) throws -> (model: TextModel, folder: String, test: String) {
        let train = dir + "/train.tsv", test = dir + "/test.tsv"
        try
            "label\ttext\nsport\tThe match ended 3-1, a great game!\nsport\tGoal! The team won the match.\nmarkets\tStocks fell 2.5% as markets closed.\nmarkets\tThe market rallied; shares rose.\nsport\t東京 マラソン won by the team\nmarkets\tΑγορά: shares and stocks\n"
            .write(toFile: train, atomically: true, encoding: .utf8)
        try
            "label\ttext\nsport\tA great match for the team\nmarkets\tShares fell; the markets closed lower\nsport\t東京 game, unseen words here\nmarkets\t\n"
            .write(toFile: test, atomically: true, encoding: .utf8)
        var p = TextPreparer(trainInputs: [train], out: dir + "/data")
        p.testInputs = [test]
        p.validationFraction = 0
        p.settings.buckets = 101
        p.overwrite = true
        let m = try p.run()
        let vocab = try XCTUnwrap(m.text)
        let spec = TextSpec(rows: vocab.rows, dim: 6, layers: [.dense(units: 2)])
        let clf = TextClassifier<Float>(spec: spec, maxBatch: 8)
        clf.initialize(seed: 3)
        let path = dir + "/model-\(recipe).cmodel"
        try ModelExport.write(
            path: path, recipe: try Recipe(recipe), text: spec, classes: m.classes,
            params: UnsafeBufferPointer(clf.params.buffer),
            metadata: ["text": String(decoding: try stableJSON(vocab, pretty: false), as: UTF8.self)])
        return (try TextModel(path: path), dir + "/data", test)
    }

    func testModelFileRoundTripsTheVocabulary() throws {
        let dir = Support.scratch("text-roundtrip")
        let (model, folder, _) = try preparedModel(dir, recipe: "fp32")
        let manifest = try DatasetManifest.load(folder + "/manifest.json")
        XCTAssertEqual(model.vocabulary, manifest.text)
        XCTAssertEqual(model.vocabulary.settings.buckets, 101)
        XCTAssertTrue(model.vocabulary.vocabulary.contains("東"))
        XCTAssertEqual(model.classes, ["markets", "sport"])
    }

    func testRawTextScoresEqualPreparedIds() throws {
        for recipe in ["fp32", "int8"] {
            let dir = Support.scratch("text-raw-\(recipe)")
            let (model, folder, test) = try preparedModel(dir, recipe: recipe)
            let prepared = try model.scorePrepared(path: folder + "/test.h5")
            var source = TextSource()
            source.requireLabels = false
            let raw = model.logits(texts: try source.documents(test).map(\.text))
            XCTAssertEqual(prepared.rows, 4)
            XCTAssertEqual(raw, prepared.logits, recipe)
        }
    }
}
