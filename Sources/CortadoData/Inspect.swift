import CortadoCore
import Foundation

/// `cortado inspect`: a prepared data folder in words.
public func describeManifest(_ m: DatasetManifest) throws -> String {
    var out = "\(m.name): \(m.task), \(m.featureCount) features \(m.featureShape)"
    out +=
        m.classes.isEmpty
        ? "\n"
        : ", \(m.classes.count) classes: \(m.classes.prefix(12).joined(separator: ", "))\(m.classes.count > 12 ? ", …" : "")\n"
    out += "format \(m.format) v\(m.formatVersion), split seed \(m.splitSeed), created by \(m.createdBy)\n"
    for name in ["train", "validation", "test"] {
        guard let s = m.splits[name] else { continue }
        out += "  \(name): \(s.rows) rows in \(s.files.count) file(s): \(s.files.map(\.path).joined(separator: ", "))\n"
    }
    if let cols = m.columns {
        out += "columns:\n"
        for c in cols {
            var line = "  \(c.name) [\(c.role == "feature" ? c.schema.type.rawValue : c.role)]"
            switch (c.role, c.schema.type) {
            case ("feature", .numeric):
                line += String(
                    format: " mean %.4g std %.4g min %.4g max %.4g median %.4g; missing %d → %@ %.4g; %@",
                    c.mean ?? 0, c.std ?? 0, c.min ?? 0, c.max ?? 0, c.median ?? 0, c.missing ?? 0,
                    c.schema.missing.rawValue, c.imputeNumber ?? 0, c.schema.transform)
                if let r = c.clipRange { line += String(format: "; clipped to [%.4g, %.4g]", r[0], r[1]) }
            case ("feature", .categorical):
                let v = c.vocabulary ?? []
                line +=
                    " \(v.count) values (\(v.prefix(6).joined(separator: ", "))\(v.count > 6 ? ", …" : "")), missing \(c.missing ?? 0) → \(c.schema.missing.rawValue), \(c.schema.encoding)"
            case ("label", _):
                line += c.vocabulary.map { " classes \($0.joined(separator: ", "))" } ?? " regression target"
            default: break
            }
            out += line + "\n"
        }
    }
    if let r = m.cleaning {
        out += "cleaning: \(r.rowsRead) rows read, \(r.duplicates) exact duplicates removed"
        out +=
            r.dropped.isEmpty
            ? ""
            : ", dropped: "
                + r.dropped.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        out +=
            r.imputed.isEmpty
            ? ""
            : "; imputed: "
                + r.imputed.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        out += "\n"
        if let l = r.leaveLastOut { out += l.description + "\n" }
        if let u = r.unseen, let line = describeUnseen(u) { out += line + "\n" }
    }
    out += "transforms:\n" + m.transforms.map { "  \($0)\n" }.joined()
    return out
}

/// `cortado validate`: every file's checksum, format, shapes and dtypes against the manifest;
/// returns the problems found (empty: all good).
public func validateDataFolder(manifestPath: String) throws -> [String] {
    let m = try DatasetManifest.load(manifestPath)
    let dir = (manifestPath as NSString).deletingLastPathComponent
    var problems = [String]()
    for (name, split) in m.splits.sorted(by: { $0.key < $1.key }) {
        var rows = 0
        for f in split.files {
            let path = (dir as NSString).appendingPathComponent(f.path)
            do {
                let sha = try SHA256.hex(fileAt: path)
                if sha != f.sha256 {
                    problems.append(
                        "\(path): SHA-256 \(sha.prefix(12))… differs from the manifest's \(f.sha256.prefix(12))…")
                }
                let h5 = try HDF5File.open(path)
                let fs = try h5.shape(of: "features")
                try h5.expectType("features", .float32)
                if fs != [f.rows, m.featureCount] {
                    problems.append("\(path): features \(fs), manifest says [\(f.rows), \(m.featureCount)]")
                }
                let target = m.task == "regression" ? "targets" : "labels"
                try h5.expectType(target, m.task == "regression" ? .float32 : .int64)
                let ls = try h5.shape(of: target)
                if ls != [f.rows] { problems.append("\(path): \(target) \(ls), manifest says [\(f.rows)]") }
                if m.task != "regression" {
                    let labels = try h5.readInt64s("labels")
                    if let bad = labels.firstIndex(where: { $0 < 0 || $0 >= m.classes.count }) {
                        problems.append("\(path): label \(labels[bad]) at row \(bad) outside 0..<\(m.classes.count)")
                    }
                }
                if let cats = m.categoricalColumns, !cats.isEmpty {
                    let cs = try h5.shape(of: "categorical")
                    if cs != [f.rows, cats.count] {
                        problems.append("\(path): categorical \(cs), manifest says [\(f.rows), \(cats.count)]")
                    }
                }
            } catch let e as CortadoError {
                problems.append(e.message)
            }
            rows += f.rows
        }
        if rows != split.rows {
            problems.append("\(manifestPath): split '\(name)' says \(split.rows) rows, its files hold \(rows)")
        }
    }
    return problems
}
