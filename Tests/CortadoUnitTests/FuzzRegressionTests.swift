import CortadoCore
import CortadoData
import CortadoJob
import CortadoModel
import CortadoPipeline
import CortadoTestSupport
import CortadoTrain
import XCTest

/// Inputs the fuzzer found: deeply nested YAML overflowed the parser's stack (also when a
/// stray `"` inside a plain scalar made the old check think the brackets after it were quoted).
final class FuzzRegressionTests: XCTestCase {
    func testDeeplyNestedYAMLIsAnErrorNotACrash() throws {
        let found = String(decoding: try Support.fixture("fuzz-spec-deep-nesting.yaml"), as: UTF8.self)
        XCTAssertThrowsError(try ConfigNode.parse(found, origin: "found.yaml")) {
            XCTAssertTrue("\($0)".contains("more than 1024 '[' or '{'"), "\($0)")
        }
        let quoted = String(decoding: try Support.fixture("fuzz-spec-quote-nesting.yaml"), as: UTF8.self)
        XCTAssertThrowsError(try ConfigNode.parse(quoted, origin: "q.yaml")) {
            XCTAssertTrue("\($0)".contains("q.yaml:"), "\($0)")
        }
        // At the limit the parser still has stack to spare: 1 000 levels parse.
        let deep = "a: " + String(repeating: "[", count: 1000) + "1" + String(repeating: "]", count: 1000) + "\n"
        XCTAssertNoThrow(try ConfigNode.parse(deep, origin: "deep.yaml"))
        let dashes = String(repeating: "- ", count: 5000) + "x\n"
        XCTAssertThrowsError(try ConfigNode.parse(dashes, origin: "dashes.yaml")) {
            XCTAssertTrue("\($0)".contains("indented more than"), "\($0)")
        }
        let brackets = "a: " + String(repeating: "[", count: 100_000) + "\n"
        XCTAssertThrowsError(try ConfigNode.parse(brackets, origin: "b.yaml"))
        // Anchors and aliases ("billion laughs"): the second input the fuzzer found.
        let aliases = String(decoding: try Support.fixture("fuzz-spec-aliases.yaml"), as: UTF8.self)
        XCTAssertThrowsError(try ConfigNode.parse(aliases, origin: "aliases.yaml")) {
            XCTAssertTrue("\($0)".contains("anchors and aliases"), "\($0)")
        }
        XCTAssertThrowsError(try ConfigNode.parse("a: &x [1]\nb: *x\n", origin: "a.yaml"))
        // Ordinary nesting still parses, and * or & inside values.
        XCTAssertNoThrow(
            try ConfigNode.parse("a: {b: [1, {c: [2, 3]}], d: '[[[[['}\n# {{{{ *x &y\ne: a*b&c\n", origin: "ok.yaml"))
    }

    /// A checkpoint whose `params` dataset declares ~2^58 elements: the checksum gate refuses
    /// it, and behind the gate reading it is an error naming the dataset before anything is
    /// allocated (the same check guards data shards).
    func testHugeDeclaredDatasetIsAnErrorNotAnAllocation() throws {
        let found = try Support.fixture("fuzz-checkpoint-huge-shape.h5")
        XCTAssertThrowsError(try Checkpoint.parse(found, path: "huge.h5")) {
            XCTAssertTrue("\($0)".contains("huge.h5: not a cortado checkpoint"), "\($0)")
        }
        let h5 = try HDF5File.open(image: found, name: "huge.h5")
        XCTAssertThrowsError(try h5.readFloats("params")) {
            XCTAssertTrue("\($0)".contains("huge.h5: dataset 'params' declares"), "\($0)")
        }
    }

    /// The fuzzer forged the user-block checksum (it learns the compared digest) and reached a
    /// libhdf5 1.10.8 out-of-bounds read in H5Aexists through an old-format object header: the
    /// reader now requires the checksummed superblock (v2+) before libhdf5 sees the file.
    func testForgedChecksumWithUncheckedHDF5MetadataIsRefused() throws {
        XCTAssertThrowsError(
            try Checkpoint.parse(try Support.fixture("fuzz-checkpoint-forged-checksum.h5"), path: "forged.h5")
        ) {
            XCTAssertTrue("\($0)".contains("forged.h5: not a cortado checkpoint (no HDF5 superblock v2+"), "\($0)")
        }
    }

    /// An IDX header whose dimensions multiply past Int.max is an error, not a trap.
    func testIDXDimensionOverflowIsAnError() throws {
        let path = Support.scratch("idx-overflow") + "/images.idx3-ubyte"
        try Data([0, 0, 8, 3, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2]).write(
            to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try IDXArray.read(path, expectedRank: 3)) {
            XCTAssertTrue("\($0)".contains("images.idx3-ubyte"), "\($0)")
        }
    }
}
