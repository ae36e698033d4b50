import Foundation
import Yams

/// A parsed YAML document as a plain tree, so `--set a.b.c=v` overrides can be applied before
/// the typed reading and every error can name its full key path.
public indirect enum ConfigNode: Equatable {
    case map([(key: String, value: ConfigNode)])
    case list([ConfigNode])
    case scalar(String)

    public static func == (a: ConfigNode, b: ConfigNode) -> Bool {
        switch (a, b) {
        case let (.map(x), .map(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        case let (.list(x), .list(y)): return x == y
        case let (.scalar(x), .scalar(y)): return x == y
        default: return false
        }
    }

    /// Parses YAML text; `origin` (a file name or "--set") goes into error messages.
    public static func parse(_ text: String, origin: String) throws -> ConfigNode {
        try checkNesting(text, origin: origin)
        let node: Node?
        do { node = try Yams.compose(yaml: text) } catch {
            throw CortadoError.usage(
                "\(origin): invalid YAML: \(String(describing: error).split(separator: "\n").first ?? "")")
        }
        guard let node else { return .map([]) }
        return try convert(node, origin: origin)
    }

    /// The YAML parser (and `convert`) recurse once per nesting level, so a file of thousands of
    /// `{` overflows the stack, and so do anchors and aliases that expand into each other (both
    /// found by fuzzing; the second is YAML's "billion laughs"). Job specs nest a few levels and
    /// need no aliases: refuse more than `maxBrackets` `[`/`{`, indentation deeper than
    /// `maxIndent` columns, and any anchor (`&a`) or alias (`*a`), before parsing.
    ///
    /// Brackets are counted everywhere but in comments, quoted strings included: telling a
    /// quote that opens a string from one inside a plain scalar takes YAML's whole grammar (a
    /// third fuzz finding got `{{{…` past a check that tried), while a count can only err on
    /// the safe side. A ` #` always starts a comment outside quotes, and nothing nests inside
    /// quotes, so skipping comments cannot hide real nesting.
    static let maxBrackets = 1024, maxIndent = 256

    static func checkNesting(_ text: String, origin: String) throws {
        var brackets = 0, line = 1, column = 0, indent = true, comment = false
        var previous = UInt8(ascii: "\n")
        for b in text.utf8 {
            defer { previous = b }
            if b == UInt8(ascii: "\n") { line += 1; column = 0; indent = true; comment = false; continue }
            column += 1
            // "- - - x" nests sequences without brackets: dashes count as indentation too.
            if indent && b != UInt8(ascii: " ") && b != UInt8(ascii: "-") { indent = false }
            if indent && column > maxIndent {
                throw CortadoError.usage("\(origin):\(line): indented more than \(maxIndent) columns")
            }
            if comment { continue }
            switch b {
            case UInt8(ascii: "#") where " \t\n".utf8.contains(previous): comment = true
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                brackets += 1
                if brackets > maxBrackets {
                    throw CortadoError.usage(
                        "\(origin):\(line):\(column): more than \(maxBrackets) '[' or '{' (too deeply nested for a job spec)"
                    )
                }
            case UInt8(ascii: "&"), UInt8(ascii: "*"):
                // At the start of a node (not inside a plain scalar like `a*b`).
                if " \t\n[{,:-?".utf8.contains(previous) {
                    throw CortadoError.usage(
                        "\(origin):\(line):\(column): YAML anchors and aliases are not supported in job specs")
                }
            default: break
            }
        }
    }

    private static func convert(_ node: Node, origin: String) throws -> ConfigNode {
        if let m = node.mapping {
            var out = [(key: String, value: ConfigNode)]()
            for (k, v) in m {
                guard let key = k.scalar?.string else {
                    throw CortadoError.usage("\(origin): mapping keys must be plain strings")
                }
                if out.contains(where: { $0.key == key }) {
                    throw CortadoError.usage("\(origin): duplicate key '\(key)'")
                }
                out.append((key, try convert(v, origin: origin)))
            }
            return .map(out)
        }
        if let s = node.sequence { return .list(try s.map { try convert($0, origin: origin) }) }
        if let s = node.scalar { return .scalar(s.string) }
        throw CortadoError.usage("\(origin): unsupported YAML node (aliases and tags are not used in job specs)")
    }

    /// Applies `key.path=value` (value parsed as YAML, so lists work: `layers=[...]`); list
    /// elements are addressed by index (`model.layers.0.units=512`).
    public mutating func set(_ assignment: String) throws {
        guard let eq = assignment.firstIndex(of: "=") else {
            throw CortadoError.usage("--set \(assignment): expected key=value")
        }
        let path = assignment[..<eq].split(separator: ".").map(String.init)
        guard !path.isEmpty else { throw CortadoError.usage("--set \(assignment): empty key") }
        let value = try ConfigNode.parse(
            String(assignment[assignment.index(after: eq)...]), origin: "--set \(path.joined(separator: "."))")
        self = try setting(path[...], to: value, full: path.joined(separator: "."))
    }

    private func setting(_ path: ArraySlice<String>, to value: ConfigNode, full: String) throws -> ConfigNode {
        guard let head = path.first else { return value }
        switch self {
        case .map(var entries):
            if let i = entries.firstIndex(where: { $0.key == head }) {
                entries[i].value = try entries[i].value.setting(path.dropFirst(), to: value, full: full)
            } else {
                entries.append((head, try ConfigNode.map([]).setting(path.dropFirst(), to: value, full: full)))
            }
            return .map(entries)
        case .list(var items):
            guard let i = Int(head), i >= 0, i < items.count else {
                throw CortadoError.usage("--set \(full): '\(head)' is not an index into a list of \(items.count)")
            }
            items[i] = try items[i].setting(path.dropFirst(), to: value, full: full)
            return .list(items)
        case .scalar:
            throw CortadoError.usage("--set \(full): '\(head)' goes inside a plain value")
        }
    }
}

/// Typed, strict reading of a config mapping: each accessor names the full key path in its
/// error, and `finish()` rejects keys nobody asked for (a typo is an error, not a default).
public final class ConfigReader {
    public let path: String
    private let entries: [(key: String, value: ConfigNode)]
    private var used = Set<String>()

    public init(_ node: ConfigNode, path: String) throws {
        guard case .map(let e) = node else {
            throw CortadoError.usage("\(path.isEmpty ? "job spec" : path): expected a mapping")
        }
        self.path = path
        entries = e
    }

    private func key(_ k: String) -> String { path.isEmpty ? k : path + "." + k }

    /// The mapping's keys in file order (for maps whose keys are data, e.g. slice names).
    public var keys: [String] { entries.map(\.key) }

    /// A key's value; YAML's null (`null`, `~`) counts as absent, so `--set init_from=null`
    /// takes a spec's setting back to its default.
    public func node(_ k: String) -> ConfigNode? {
        used.insert(k)
        guard let v = entries.first(where: { $0.key == k })?.value, v != .scalar("null"), v != .scalar("~") else {
            return nil
        }
        return v
    }

    private func scalar(_ k: String, _ type: String) throws -> String? {
        guard let n = node(k) else { return nil }
        guard case .scalar(let s) = n else {
            throw CortadoError.usage("\(key(k)): expected \(type), got a \(n.kindName)")
        }
        return s
    }

    public func string(_ k: String) throws -> String? { try scalar(k, "a string") }

    /// A mode: one of `E`'s raw values; a bad value's error lists them all.
    public func choice<E: RawRepresentable & CaseIterable>(_ k: String, _: E.Type = E.self) throws -> E?
    where E.RawValue == String {
        guard let s = try scalar(k, "a string") else { return nil }
        guard let v = E(rawValue: s) else { throw CortadoError.usage("\(key(k)): \(E.notOneOf(s))") }
        return v
    }

    public func int(_ k: String) throws -> Int? {
        guard let s = try scalar(k, "an integer") else { return nil }
        guard let v = Int(s) else { throw CortadoError.usage("\(key(k)): expected an integer, got '\(s)'") }
        return v
    }

    public func double(_ k: String) throws -> Double? {
        guard let s = try scalar(k, "a number") else { return nil }
        guard let v = Double(s), v.isFinite else {
            throw CortadoError.usage("\(key(k)): expected a number, got '\(s)'")
        }
        return v
    }

    public func bool(_ k: String) throws -> Bool? {
        guard let s = try scalar(k, "true or false") else { return nil }
        switch s.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw CortadoError.usage("\(key(k)): expected true or false, got '\(s)'")
        }
    }

    public func child(_ k: String) throws -> ConfigReader? {
        guard let n = node(k) else { return nil }
        return try ConfigReader(n, path: key(k))
    }

    public func list(_ k: String) throws -> [ConfigNode]? {
        guard let n = node(k) else { return nil }
        guard case .list(let items) = n else {
            throw CortadoError.usage("\(key(k)): expected a list, got a \(n.kindName)")
        }
        return items
    }

    public func required<T>(_ k: String, _ get: (String) throws -> T?) throws -> T {
        guard let v = try get(k) else { throw CortadoError.usage("\(key(k)): required") }
        return v
    }

    /// Throws on the first key that no accessor read.
    public func finish() throws {
        if let extra = entries.first(where: { !used.contains($0.key) }) {
            throw CortadoError.usage("\(key(extra.key)): unknown key (known: \(used.sorted().joined(separator: ", ")))")
        }
    }
}

extension ConfigNode {
    var kindName: String {
        switch self {
        case .map: return "mapping"
        case .list: return "list"
        case .scalar: return "plain value"
        }
    }
}

extension RawRepresentable where Self: CaseIterable, RawValue == String {
    /// "'x' is not one of a, b, c": the error for a mode's bad value.
    public static func notOneOf(_ value: String) -> String {
        "'\(value)' is not one of \(allCases.map(\.rawValue).joined(separator: ", "))"
    }
}
