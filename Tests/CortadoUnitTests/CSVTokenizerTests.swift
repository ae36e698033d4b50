import CortadoCore
import CortadoData
import CortadoTestSupport
import Foundation
import XCTest

final class CSVTokenizerTests: XCTestCase {
    func write(_ text: String, _ name: String = "t.csv") throws -> String {
        let path = Support.scratch("tok-\(name)") + "/" + name
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    func records(_ path: String, delimiter: Character = ",") throws -> [[String]] {
        let t = try CSVTokenizer(path: path, delimiter: delimiter.asciiValue!)
        var out = [[String]]()
        while try t.next() { out.append((0..<t.fieldCount).map { t.string($0) }) }
        return out
    }

    func testRFC4180Quoting() throws {
        let p = try write("a,b,c\n\"x, y\",\"say \"\"hi\"\"\",\"two\nlines\"\r\n1,,\"\"\n\n3,4,5")
        XCTAssertEqual(
            try records(p), [["a", "b", "c"], ["x, y", "say \"hi\"", "two\nlines"], ["1", "", ""], ["3", "4", "5"]])
        // Line numbers count physical lines, including those inside quotes.
        let t = try CSVTokenizer(path: p)
        var lines = [Int]()
        while try t.next() { lines.append(t.recordLine) }
        XCTAssertEqual(lines, [1, 2, 4, 6])
    }

    func testQuotedEmptyIsNotMissingAndTabDelimiter() throws {
        let p = try write("u\ti\tr\n1\t\"a\tb\"\t5\n")
        let t = try CSVTokenizer(path: p, delimiter: UInt8(ascii: "\t"))
        XCTAssertTrue(try t.next())
        XCTAssertTrue(try t.next())
        XCTAssertEqual((0..<3).map { t.string($0) }, ["1", "a\tb", "5"])
        XCTAssertEqual(t.quoted, [false, true, false])
    }

    func expectError(_ text: String, _ fragment: String, line: UInt = #line) throws {
        let p = try write(text, "bad.csv")
        XCTAssertThrowsError(try records(p), line: line) {
            XCTAssertTrue("\($0)".contains(fragment), "'\($0)' lacks '\(fragment)'", line: line)
            XCTAssertEqual(($0 as? CortadoError)?.exitCode, 2, line: line)
        }
    }

    func testErrorsNamePositions() throws {
        try expectError("a,b\n1,\"open\n2,3\n", "bad.csv:2:3: unterminated quoted field")
        try expectError("a,b\n1,\"x\"y\n", "bad.csv:2:6: unexpected character 'y' after a closing quote")
    }

    func testInvalidUTF8IsRejectedWithItsPosition() throws {
        let path = Support.scratch("utf8") + "/bad.csv"
        try Data("a,b\n1,caf\u{00E9}\n2,x".utf8 + [0xFF] + Data("y\n".utf8)).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try records(path)) {
            XCTAssertTrue("\($0)".contains("bad.csv:3:4: invalid UTF-8 byte 0xff"), "\($0)")
        }
    }

    func testByteRangesCoverEachRecordOnce() throws {
        // A file whose quoted newlines sit everywhere; every split point must land between records.
        var text = "id,v\n"
        for i in 0..<200 { text += i % 3 == 0 ? "\(i),\"a\nb,\"\"c\"\"\"\n" : "\(i),plain\n" }
        let p = try write(text)
        let whole = try records(p).dropFirst().map { $0[0] }
        XCTAssertEqual(whole.count, 200)
        let headerEnd = "id,v\n".utf8.count
        let size = try fileSize(p)
        // Cut the data at every byte, move each cut to the next record boundary, read both halves.
        for cut in stride(from: headerEnd, to: size, by: 7) {
            let boundary = try nextBoundary(p, from: cut, headerEnd: headerEnd)
            var got = [String]()
            for range in [headerEnd..<boundary, boundary..<size] {
                let t = try CSVTokenizer(path: p, range: range)
                while try t.next() { got.append(t.string(0)) }
            }
            XCTAssertEqual(got, Array(whole), "cut at \(cut)")
        }
    }

    /// The record boundary at or after `from`, by quote parity from the start (what
    /// csvRankRange computes with a prefix sum across ranks).
    func nextBoundary(_ path: String, from: Int, headerEnd: Int) throws -> Int {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        var quotes = 0
        for i in 0..<bytes.count {
            if bytes[i] == UInt8(ascii: "\"") { quotes += 1 }
            if bytes[i] == UInt8(ascii: "\n") && quotes % 2 == 0 && i + 1 >= from && i + 1 >= headerEnd { return i + 1 }
        }
        return bytes.count
    }
}
