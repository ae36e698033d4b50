import CortadoCore
import CortadoModel
import CortadoTestSupport
import Foundation
import XCTest

/// `registry://` references: parsing, alias lookup, and the errors a user sees.
final class ModelReferenceTests: XCTestCase {
    func testParse() throws {
        XCTAssertEqual(
            try ModelReference.parse("registry://fashion@champion"),
            .init(name: "fashion", selector: .alias("champion")))
        XCTAssertEqual(try ModelReference.parse("registry://fashion/3"), .init(name: "fashion", selector: .version(3)))
        XCTAssertEqual(
            try ModelReference.parse("registry://fashion"), .init(name: "fashion", selector: .alias("champion")))
        XCTAssertEqual(
            try ModelReference.parse("registry://fashion/3/model-fp32.cmodel"),
            .init(name: "fashion", selector: .version(3), file: "model-fp32.cmodel"))
        XCTAssertEqual(try ModelReference.parse("registry://m-1_a.b@cand").description, "registry://m-1_a.b@cand")
        for bad in [
            "registry://", "registry://a/0", "registry://a/x", "registry://../x", "registry://a@",
            "registry://a/2/../../etc"
        ] {
            XCTAssertThrowsError(try ModelReference.parse(bad), bad) { e in
                XCTAssertTrue((e as? CortadoError)?.message.contains("registry://NAME@ALIAS") == true, "\(e)")
            }
        }
        XCTAssertEqual(try ModelReference.path("runs/x/model-fp32.cmodel"), "runs/x/model-fp32.cmodel")
    }

    func testResolveAliasesAndErrors() throws {
        let root = Support.scratch("model-ref")
        let dir = root + "/fashion/2"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try Data("x".utf8).write(to: URL(fileURLWithPath: dir + "/model.cmodel"))
        try Data("{}".utf8).write(to: URL(fileURLWithPath: dir + "/lineage.json"))
        try Data(#"{"champion": 2, "old": 1}"#.utf8).write(to: URL(fileURLWithPath: root + "/fashion/aliases.json"))
        XCTAssertEqual(try ModelReference.path("registry://fashion@champion", registry: root), dir + "/model.cmodel")
        XCTAssertEqual(try ModelReference.path("registry://fashion", registry: root), dir + "/model.cmodel")
        XCTAssertEqual(try ModelReference.path("registry://fashion/2", registry: root), dir + "/model.cmodel")
        func message(_ ref: String) -> String {
            do { _ = try ModelReference.path(ref, registry: root) } catch { return "\(error)" }
            return "no error"
        }
        XCTAssertTrue(message("registry://fashion@candidate").contains("has no alias 'candidate'"))
        XCTAssertTrue(message("registry://fashion/7").contains("has no version 7"))
        XCTAssertTrue(message("registry://fashion@old").contains("has no version 1"))
        XCTAssertTrue(message("registry://nope/1").contains("has no version 1"))
        XCTAssertTrue(message("registry://nope@champion").contains("no model 'nope'"))
        let loc = ModelReference.location(ofFile: dir + "/model.cmodel")
        XCTAssertEqual(loc?.name, "fashion")
        XCTAssertEqual(loc?.version, 2)
        XCTAssertNil(ModelReference.location(ofFile: root + "/fashion/aliases.json"))
    }
}
