import CortadoCore
import CortadoData
import CortadoTestSupport
import Foundation
import XCTest

/// The `cortado-text-1` tokenizer (docs/text.md): golden cases over punctuation, numbers,
/// compatibility forms and non-Latin scripts; the n-gram hash; UTF-8 errors naming
/// file:line:column, in-process and from `cortado prepare text` (exit 2).
final class TextTokenizerTests: XCTestCase {
    let s = TextSettings()

    func testGoldenTokens() {
        let cases: [(String, [String])] = [
            ("Hello, World! It's 3.5 GHz — isn't it?", ["hello", "world", "it's", "3.5", "ghz", "isn't", "it"]),
            ("1,000,000 and 3.14. Then 2-1", ["1,000,000", "and", "3.14", "then", "2", "1"]),
            ("ﬁnance Ｆｕｌｌ① ½", ["finance", "full1", "1", "⁄", "2"]), // NFKC
            ("Αγορά ΚΑΙ Привет, мир", ["αγορά", "και", "привет", "мир"]),
            ("مرحبا بالعالم", ["مرحبا", "بالعالم"]),
            ("東京マラソン2024", ["東", "京", "マ", "ラ", "ソ", "ン", "2024"]),
            ("สวัสดี", ["ส", "วั", "ส", "ดี"]),
            ("price $5 + 3€ 😀!", ["price", "$", "5", "+", "3", "€", "😀"]),
            ("don’t  'quoted' end.", ["don't", "quoted", "end"]),
            ("", [])
        ]
        for (text, want) in cases { XCTAssertEqual(TextTokenizer.tokens(text, s), want, text) }
        var cased = s
        cased.caseFold = false
        XCTAssertEqual(TextTokenizer.tokens("Hello World", cased), ["Hello", "World"])
    }

    func testFNV1aAndEncoderIds() {
        XCTAssertEqual(TextTokenizer.fnv1a(["a"]), 3_826_002_220)
        XCTAssertEqual(TextTokenizer.fnv1a(["hello", "world"]), 3_582_672_807) // FNV-1a("hello world")
        var settings = s
        settings.buckets = 10
        let e = TextEncoder(TextVocabulary(settings: settings, vocabulary: ["the", "cat"]))
        // Words 0, 1 ("sat" unknown); bigrams at 2 + fnv1a % 10: "the cat" → 8, "cat sat" → 9.
        XCTAssertEqual(e.ids("The cat sat"), [0, 1, 10, 11])
        settings.wordNgrams = 1
        XCTAssertEqual(
            TextEncoder(TextVocabulary(settings: settings, vocabulary: ["the", "cat"])).ids("the cat"), [0, 1])
    }

    func testInvalidUTF8NamesLineAndColumn() {
        func error(_ bytes: [UInt8]) -> String {
            do {
                try bytes.withUnsafeBytes { try checkUTF8($0, path: "x.txt") }
                return "no error"
            } catch { return (error as? CortadoError)?.message ?? "\(error)" }
        }
        XCTAssertEqual(error(Array("ok\nfine é\n".utf8)), "no error")
        XCTAssertTrue(error(Array("ab\ncd".utf8) + [0xFF]).hasPrefix("x.txt:2:3: invalid UTF-8 (byte 0xFF)"))
        XCTAssertTrue(error([0x61, 0xC0, 0xAF]).hasPrefix("x.txt:1:2:")) // overlong "/"
        XCTAssertTrue(error(Array("\n\n".utf8) + [0xED, 0xA0, 0x80]).hasPrefix("x.txt:3:1:")) // surrogate
        XCTAssertTrue(error([0x61, 0x62, 0xE2, 0x82]).hasPrefix("x.txt:1:3:")) // truncated
    }

    func testPrepareRejectsInvalidUTF8WithExit2() throws {
        let dir = Support.scratch("text-bad-utf8")
        let bad = dir + "/bad.tsv"
        var bytes = Array("label\ttext\nx\tok\ny\tbad ".utf8)
        bytes += [0xFF] + Array(" here\n".utf8)
        try Data(bytes).write(to: URL(fileURLWithPath: bad))
        let r = try Support.run(
            [Support.product("cortado"), "prepare", "text", bad, "--out", dir + "/out"], timeout: 60)
        XCTAssertEqual(r.status, 2, r.output)
        XCTAssertTrue(r.stderr.contains("bad.tsv:3:7: invalid UTF-8"), r.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out"))
    }
}
