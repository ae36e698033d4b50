import CortadoCore
import Foundation

/// A model named by a registry reference instead of a path: `registry://NAME@ALIAS`,
/// `registry://NAME/VERSION` or `registry://NAME` (its `champion`). The registry is a plain
/// folder (`cortado registry`, docs/registry.md): `ROOT/NAME/VERSION/model.cmodel`, with
/// `ROOT/NAME/aliases.json` mapping alias → version. The root comes from a command's
/// `--registry` flag, else the `CORTADO_REGISTRY` environment variable.
///
/// Pure path logic plus one read of `aliases.json`, so every loader (the trainer's
/// `init_from` and `teacher.model`, cortado-infer, compress, ONNX export) resolves the same way
/// without linking the registry itself. Resolution happens once, where the path is opened;
/// a version folder never changes after it is published, so the path stays valid.
public struct ModelReference: Equatable, CustomStringConvertible {
    public static let scheme = "registry://"
    public static let environmentKey = "CORTADO_REGISTRY"
    public static let defaultAlias = "champion"
    /// The deployment variant's file name in a version folder.
    public static let deployedFile = "model.cmodel"

    public enum Selector: Equatable {
        case alias(String)
        case version(Int)
    }

    public var name: String
    public var selector: Selector
    /// A file inside the version folder other than the deployment variant, e.g.
    /// `registry://NAME/3/model-fp32.cmodel`.
    public var file: String?

    public init(name: String, selector: Selector, file: String? = nil) {
        self.name = name; self.selector = selector; self.file = file
    }

    public var description: String {
        let s: String
        switch selector {
        case .alias(let a): s = "@" + a
        case .version(let v): s = "/\(v)"
        }
        return Self.scheme + name + s + (file.map { "/" + $0 } ?? "")
    }

    /// Whether `text` is meant as a registry reference (then `parse` must succeed).
    public static func isReference(_ text: String) -> Bool { text.hasPrefix(scheme) }

    /// Model and alias names: letters, digits, `-`, `_`, `.` (not leading), at most 100.
    public static func isValidName(_ s: String) -> Bool {
        guard let first = s.unicodeScalars.first, s.count <= 100, first != ".", first != "-" else { return false }
        return s.unicodeScalars.allSatisfy {
            ($0.isASCII && (CharacterSet.alphanumerics.contains($0))) || $0 == "-" || $0 == "_" || $0 == "."
        }
    }

    /// Parses `registry://NAME[@ALIAS|/VERSION][/FILE]`; errors say what a reference looks like.
    public static func parse(_ text: String) throws -> ModelReference {
        func fail(_ why: String) -> CortadoError {
            .usage(
                "\(text): \(why) (a registry reference is registry://NAME@ALIAS, registry://NAME/VERSION or registry://NAME)"
            )
        }
        guard text.hasPrefix(scheme) else { throw fail("does not start with \(scheme)") }
        var parts = text.dropFirst(scheme.count).split(separator: "/", omittingEmptySubsequences: false).map(
            String.init)
        guard let head = parts.first, !head.isEmpty else { throw fail("no model name") }
        parts.removeFirst()
        var ref: ModelReference
        if let at = head.firstIndex(of: "@") {
            let name = String(head[..<at]), alias = String(head[head.index(after: at)...])
            guard isValidName(name) else { throw fail("'\(name)' is not a model name") }
            guard isValidName(alias) else { throw fail("'\(alias)' is not an alias name") }
            ref = ModelReference(name: name, selector: .alias(alias))
        } else {
            guard isValidName(head) else { throw fail("'\(head)' is not a model name") }
            ref = ModelReference(name: head, selector: .alias(defaultAlias))
            if let v = parts.first {
                guard let n = Int(v), n >= 1 else { throw fail("'\(v)' is not a version number (1, 2, …)") }
                ref.selector = .version(n)
                parts.removeFirst()
            }
        }
        if let f = parts.first {
            guard parts.count == 1, isValidName(f), f.hasSuffix(".cmodel") else {
                throw fail("'\(parts.joined(separator: "/"))' is not a model file of the version folder")
            }
            ref.file = f
        }
        return ref
    }

    /// The registry root: `flag` if given, else `CORTADO_REGISTRY`.
    public static func root(flag: String?) throws -> String {
        if let flag, !flag.isEmpty { return flag }
        if let env = ProcessInfo.processInfo.environment[environmentKey], !env.isEmpty { return env }
        throw CortadoError.usage(
            "registry references need a registry folder: pass --registry DIR or set \(environmentKey)")
    }

    /// The aliases of model `name`: alias → version (`ROOT/NAME/aliases.json`; none yet: empty).
    public static func aliases(root: String, name: String) throws -> [String: Int] {
        let path = ((root as NSString).appendingPathComponent(name) as NSString).appendingPathComponent(
            "aliases.json")
        guard FileManager.default.fileExists(atPath: path) else { return [:] }
        guard let data = FileManager.default.contents(atPath: path),
            let map = try? JSONDecoder().decode([String: Int].self, from: data)
        else {
            throw CortadoError.model("\(path): not a JSON object of alias → version (written by cortado registry)")
        }
        return map
    }

    /// The version this reference names (an alias looked up now).
    public func version(root: String) throws -> Int {
        switch selector {
        case .version(let v): return v
        case .alias(let a):
            let modelDir = (root as NSString).appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: modelDir) else {
                throw CortadoError.usage("\(self): no model '\(name)' in the registry \(root)")
            }
            guard let v = try Self.aliases(root: root, name: name)[a] else {
                throw CortadoError.usage(
                    "\(self): model '\(name)' has no alias '\(a)' (set one with cortado registry alias set \(name) \(a) VERSION)"
                )
            }
            return v
        }
    }

    /// The model file this reference names under `root`, checked to exist.
    public func resolve(root: String) throws -> (path: String, version: Int) {
        let v = try version(root: root)
        let dir = ((root as NSString).appendingPathComponent(name) as NSString).appendingPathComponent(String(v))
        let path = (dir as NSString).appendingPathComponent(file ?? Self.deployedFile)
        guard FileManager.default.fileExists(atPath: path) else {
            throw CortadoError.usage(
                FileManager.default.fileExists(atPath: dir)
                    ? "\(self): \(path) does not exist" : "\(self): model '\(name)' has no version \(v) in \(root)")
        }
        return (path, v)
    }

    /// `text` as a file path: a registry reference resolved (root from `registry`, else
    /// `CORTADO_REGISTRY`), anything else returned unchanged.
    /// `preferring`: a file of the version folder to use when the reference names none and the
    /// folder has it (fine-tuning starts from `model-fp32.cmodel`, whatever variant is deployed).
    public static func path(_ text: String, registry: String? = nil, preferring: String? = nil) throws -> String {
        guard isReference(text) else { return text }
        var ref = try parse(text)
        let root = try root(flag: registry)
        if ref.file == nil, let preferring {
            let deployed = try ref.resolve(root: root).path
            let candidate = ((deployed as NSString).deletingLastPathComponent as NSString).appendingPathComponent(
                preferring)
            if FileManager.default.fileExists(atPath: candidate) { ref.file = preferring }
        }
        return try ref.resolve(root: root).path
    }

    /// Where a model file sits in a registry, if it does: `ROOT/NAME/VERSION/FILE` with the
    /// version folder's `lineage.json` beside it. How lineage finds a parent given by path.
    public static func location(ofFile path: String) -> (root: String, name: String, version: Int, file: String)? {
        let url = URL(fileURLWithPath: path).standardizedFileURL
        let dir = url.deletingLastPathComponent()
        guard let v = Int(dir.lastPathComponent), v >= 1,
            FileManager.default.fileExists(atPath: dir.appendingPathComponent("lineage.json").path)
        else { return nil }
        let nameDir = dir.deletingLastPathComponent()
        return (nameDir.deletingLastPathComponent().path, nameDir.lastPathComponent, v, url.lastPathComponent)
    }
}
