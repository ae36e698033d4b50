import CortadoCore
import Foundation

/// How raw text becomes ids, recorded in the manifest (`text`) and in every model file trained
/// on it, so inference tokenizes exactly as `cortado prepare text` did. The rules are in
/// docs/text.md; changing them is a new `tokenizer` name.
public struct TextSettings: Codable, Equatable {
    /// The tokenizer's rules by name and version (`TextTokenizer`).
    public var tokenizer = "cortado-text-1"
    /// Unicode normalization before tokenizing: NFKC (compatibility composition).
    public var normalization = "nfkc"
    /// Case folding after normalization (`String.lowercased()`, locale-independent).
    public var caseFold = true
    /// Words seen fewer times in the training split are left out of the vocabulary.
    public var minCount = 1
    /// Longest hashed word n-gram: 1 = words only, 2 = words + bigrams, …
    public var wordNgrams = 2
    /// N-grams hash into this many buckets, after the vocabulary's ids.
    public var buckets = 200_000
    /// The n-gram hash: 32-bit FNV-1a over the UTF-8 of the n-gram's tokens joined by one space.
    public var hash = "fnv1a-32"

    enum CodingKeys: String, CodingKey {
        case tokenizer, normalization, caseFold = "case_fold", minCount = "min_count", wordNgrams = "word_ngrams"
        case buckets, hash
    }

    public init() {}

    public func validate() throws {
        guard tokenizer == "cortado-text-1", normalization == "nfkc", hash == "fnv1a-32" else {
            throw CortadoError.data(
                "text settings: tokenizer \(tokenizer), normalization \(normalization), hash \(hash) — this build knows cortado-text-1, nfkc, fnv1a-32"
            )
        }
        guard minCount >= 1 else { throw CortadoError.usage("--min-count: must be at least 1, got \(minCount)") }
        guard wordNgrams >= 1, wordNgrams <= 5 else {
            throw CortadoError.usage("--word-ngrams: must be in 1...5, got \(wordNgrams)")
        }
        guard buckets >= 0, buckets <= 1 << 26, wordNgrams == 1 || buckets > 0 else {
            throw CortadoError.usage("--buckets: must be in 1...\(1 << 26) when n-grams are hashed, got \(buckets)")
        }
    }
}

/// What a model needs to turn raw text into its ids: the settings and the vocabulary (index =
/// word id). Stored in the manifest and, as JSON, in a text model's `text` metadata.
public struct TextVocabulary: Codable, Equatable {
    public var settings: TextSettings
    public var vocabulary: [String]
    public init(settings: TextSettings, vocabulary: [String]) {
        self.settings = settings
        self.vocabulary = vocabulary
    }
    /// Rows of the embedding table: words, then n-gram buckets.
    public var rows: Int { vocabulary.count + (settings.wordNgrams > 1 ? settings.buckets : 0) }
}

/// The `cortado-text-1` tokenizer: NFKC, case folding, then one pass over Unicode scalars.
///
/// - Letters, marks and digits make words; an apostrophe (' or ’) between two letters stays
///   inside the word ("don't"), as does a '.' or ',' between two digits ("3.5", "1,000").
/// - Scripts written without spaces (Han, Hiragana, Katakana, Thai, Lao, Khmer, Myanmar) give
///   one token per character (with its combining marks): a word segmenter would be a model of
///   its own, and the hashed bigrams then cover two-character words.
/// - Other punctuation and white space separate words and are dropped; symbols (currency,
///   math, emoji: Unicode category S) are tokens of one scalar each.
public enum TextTokenizer {
    public static func normalize(_ text: String, _ s: TextSettings) -> String {
        let n = text.precomposedStringWithCompatibilityMapping
        return s.caseFold ? n.lowercased() : n
    }

    public static func tokens(_ text: String, _ s: TextSettings) -> [String] {
        let scalars = Array(normalize(text, s).unicodeScalars)
        var out = [String]()
        var word = String.UnicodeScalarView()
        func flush() {
            if !word.isEmpty { out.append(String(word)); word = String.UnicodeScalarView() }
        }
        func isWordScalar(_ u: Unicode.Scalar) -> Bool {
            switch u.properties.generalCategory {
            case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter,
                .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .letterNumber, .otherNumber:
                return !isUnspaced(u)
            default: return false
            }
        }
        var afterUnspaced = false
        for (i, u) in scalars.enumerated() {
            // A combining mark after an unspaced-script character stays with it (Thai vowels).
            let category = u.properties.generalCategory
            if afterUnspaced && (category == .nonspacingMark || category == .spacingMark) {
                out[out.count - 1].unicodeScalars.append(u)
                continue
            }
            afterUnspaced = isUnspaced(u)
            if afterUnspaced {
                flush()
                out.append(String(Character(u)))
                continue
            }
            if isWordScalar(u) {
                word.append(u)
                continue
            }
            let prev = i > 0 ? scalars[i - 1] : nil, next = i + 1 < scalars.count ? scalars[i + 1] : nil
            if let prev, let next, !word.isEmpty {
                if (u == "'" || u == "\u{2019}") && prev.properties.isAlphabetic && next.properties.isAlphabetic {
                    word.append("'")
                    continue
                }
                if (u == "." || u == ",") && prev.properties.numericType == .decimal
                    && next.properties.numericType == .decimal
                {
                    word.append(u)
                    continue
                }
            }
            flush()
            switch u.properties.generalCategory {
            case .mathSymbol, .currencySymbol, .modifierSymbol, .otherSymbol: out.append(String(Character(u)))
            default: break
            }
        }
        flush()
        return out
    }

    /// Scripts without spaces between words: one token per character.
    static func isUnspaced(_ u: Unicode.Scalar) -> Bool {
        let v = u.value
        if u.properties.isIdeographic { return true }
        return (0x3040...0x30FF).contains(v) // Hiragana, Katakana
            || (0x31F0...0x31FF).contains(v) // Katakana phonetic extensions
            || (0xFF66...0xFF9D).contains(v) // half-width Katakana (NFKC maps most of them)
            || (0x0E00...0x0EFF).contains(v) // Thai, Lao
            || (0x1000...0x109F).contains(v) // Myanmar
            || (0x1780...0x17FF).contains(v) // Khmer
    }

    /// 32-bit FNV-1a over the UTF-8 bytes of `tokens` joined by one space (0x20).
    public static func fnv1a(_ tokens: ArraySlice<String>) -> UInt32 {
        var h: UInt32 = 2_166_136_261
        var first = true
        for t in tokens {
            if !first { h = (h ^ 0x20) &* 16_777_619 }
            first = false
            for b in t.utf8 { h = (h ^ UInt32(b)) &* 16_777_619 }
        }
        return h
    }
}

/// Turns text into ids: vocabulary words (0..<V, unknown words dropped), then every word
/// n-gram of 2...wordNgrams consecutive tokens (known or not) at V + fnv1a % buckets.
public struct TextEncoder {
    public let vocabulary: TextVocabulary
    let index: [String: Int32]

    public init(_ vocabulary: TextVocabulary) {
        self.vocabulary = vocabulary
        var index = [String: Int32](minimumCapacity: vocabulary.vocabulary.count)
        for (i, w) in vocabulary.vocabulary.enumerated() { index[w] = Int32(i) }
        self.index = index
    }

    public func ids(_ text: String) -> [Int32] { ids(tokens: TextTokenizer.tokens(text, vocabulary.settings)) }

    public func ids(tokens: [String]) -> [Int32] {
        let s = vocabulary.settings, v = vocabulary.vocabulary.count
        var out = [Int32]()
        out.reserveCapacity(tokens.count * s.wordNgrams)
        for t in tokens { if let id = index[t] { out.append(id) } }
        if s.wordNgrams > 1 {
            for n in 2...s.wordNgrams where tokens.count >= n {
                for i in 0...(tokens.count - n) {
                    out.append(Int32(v + Int(TextTokenizer.fnv1a(tokens[i..<(i + n)]) % UInt32(s.buckets))))
                }
            }
        }
        return out
    }
}

/// Checks that `bytes` are UTF-8; the first bad byte is an error naming `path:line:column`
/// (line and byte column from 1).
public func checkUTF8(_ bytes: UnsafeRawBufferPointer, path: String, firstLine: Int = 1) throws {
    var i = 0, line = firstLine, lineStart = 0
    let n = bytes.count
    while i < n {
        let c = bytes[i]
        if c < 0x80 {
            if c == 0x0A { line += 1; lineStart = i + 1 }
            i += 1
            continue
        }
        var need = 0, cp: UInt32 = 0, minimum: UInt32 = 0
        if c & 0xE0 == 0xC0 {
            need = 1; cp = UInt32(c & 0x1F); minimum = 0x80
        } else if c & 0xF0 == 0xE0 {
            need = 2; cp = UInt32(c & 0x0F); minimum = 0x800
        } else if c & 0xF8 == 0xF0 {
            need = 3; cp = UInt32(c & 0x07); minimum = 0x10000
        }
        var ok = need > 0 && i + need < n
        if ok {
            for k in 1...need {
                let d = bytes[i + k]
                if d & 0xC0 != 0x80 { ok = false; break }
                cp = cp << 6 | UInt32(d & 0x3F)
            }
        }
        ok = ok && cp >= minimum && cp <= 0x10FFFF && !(0xD800...0xDFFF).contains(cp)
        guard ok else {
            throw CortadoError.data(
                "\(path):\(line):\(i - lineStart + 1): invalid UTF-8 (byte 0x\(String(c, radix: 16, uppercase: true))); the text must be UTF-8 (convert it, e.g. iconv -f LATIN1 -t UTF-8)"
            )
        }
        i += need + 1
    }
}
