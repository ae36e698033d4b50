import CortadoCore
import CortadoModel
import Foundation

/// The loop's history for one registry model, for the report: every version (when pushed,
/// from which parent, its test accuracy), which version held `champion` when (from the alias
/// history), and every `cortado evaluate` verdict (from `NAME/verdicts/`).
public struct LoopHistory {
    public struct VersionRow {
        public var version: Int
        public var pushedAt: String
        public var parent: String?
        public var accuracy: Double?
        public var deployed: String?
    }

    /// A span of time one version held the champion alias.
    public struct Reign {
        public var version: Int
        public var from: String
        public var until: String? // nil: still champion
        public var reason: String
    }

    public var name: String
    public var versions: [VersionRow]
    public var reigns: [Reign]
    public var verdicts: [Verdict]

    public static func load(_ reg: Registry, _ name: String) throws -> LoopHistory {
        let versions = reg.versions(name).map { v -> VersionRow in
            let lin = try? reg.lineage(name, v), m = try? reg.metrics(name, v)
            return VersionRow(
                version: v, pushedAt: lin?.pushedAt ?? "?", parent: lin?.parent.map { $0.ref ?? $0.path },
                accuracy: m.flatMap { m in m.variants.first { $0.recipe == m.deployed }?.accuracy },
                deployed: m?.deployed)
        }
        var reigns = [Reign]()
        for e in try reg.history(name) where e.alias == ModelReference.defaultAlias {
            if let last = reigns.indices.last, reigns[last].until == nil { reigns[last].until = e.time }
            reigns.append(Reign(version: e.to, from: e.time, until: nil, reason: e.reason))
        }
        let dir = (reg.modelDir(name) as NSString).appendingPathComponent("verdicts")
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".json") }
        let verdicts = try files.map { f in
            try RegistryIO.readJSON(Verdict.self, (dir as NSString).appendingPathComponent(f), what: "verdict")
        }.sorted { $0.time < $1.time }
        return LoopHistory(name: name, versions: versions, reigns: reigns, verdicts: verdicts)
    }

    typealias H = RunReport

    /// The section: versions, champion reigns, verdicts (one row each, the failed checks named).
    public var html: String {
        var o = "<h2>Loop history: \(H.esc(name))</h2>"
        o += "<table class=\"versions\"><tr><th>version</th><th class=\"l\">pushed</th><th class=\"l\">parent</th>"
        o += "<th>test accuracy (deployed)</th><th class=\"l\">deployed</th><th class=\"l\">champion</th></tr>"
        for v in versions {
            let held = reigns.filter { $0.version == v.version }.map { "\($0.from) → \($0.until ?? "now")" }
            o += "<tr data-version=\"\(v.version)\"><td>\(v.version)</td><td class=\"l\">\(H.esc(v.pushedAt))</td>"
            o += "<td class=\"l\">\(H.esc(v.parent ?? "—"))</td><td>\(v.accuracy.map { H.num($0, "%.4f") } ?? "—")</td>"
            o +=
                "<td class=\"l\">\(H.esc(v.deployed ?? "—"))</td><td class=\"l\">\(H.esc(held.joined(separator: "; ")))</td></tr>"
        }
        o += "</table>"
        o += "<h2>Champion over time</h2><table class=\"reigns\"><tr><th>version</th><th class=\"l\">from</th>"
        o += "<th class=\"l\">until</th><th class=\"l\">why</th></tr>"
        for r in reigns {
            o += "<tr data-champion=\"\(r.version)\"><td>\(r.version)</td><td class=\"l\">\(H.esc(r.from))</td>"
            o += "<td class=\"l\">\(H.esc(r.until ?? "now"))</td><td class=\"l\">\(H.esc(r.reason))</td></tr>"
        }
        o += "</table>"
        return o + verdictTable
    }

    var verdictTable: String {
        var o = "<h2>Verdicts (cortado evaluate)</h2>"
        guard !verdicts.isEmpty else { return o + "<p>No verdicts yet.</p>" }
        let sliceNames =
            ["overall"]
            + Array(Set(verdicts.flatMap { $0.slices.map(\.name) }.filter { $0.hasPrefix("split:") })).sorted()
        o +=
            "<table class=\"verdicts\"><tr><th class=\"l\">time</th><th>candidate</th><th>champion</th><th class=\"l\">result</th>"
        for s in sliceNames { o += "<th>\(H.esc(s))<br>champion → candidate</th>" }
        o += "<th class=\"l\">failed checks</th><th class=\"l\">decision</th></tr>"
        for v in verdicts {
            let result = v.passed ? "PASS" : v.forced ? "FORCED" : "FAIL"
            let color = v.passed ? "#1a7f37" : v.forced ? "#bf8700" : "#cf222e"
            o +=
                "<tr class=\"verdict\" data-candidate=\"\(v.candidate.version.map(String.init) ?? "")\" data-passed=\"\(v.passed)\">"
            o +=
                "<td class=\"l\">\(H.esc(v.time))</td><td>\(v.candidate.version.map(String.init) ?? H.esc(v.candidate.ref))</td>"
            o += "<td>\(v.champion.version.map(String.init) ?? H.esc(v.champion.ref))</td>"
            o += "<td class=\"l\" style=\"color:\(color);font-weight:600\">\(result)</td>"
            for name in sliceNames {
                let s = v.slices.first { $0.name == name }
                o += "<td>\(s.map { "\(H.num($0.champion, "%.3f")) → \(H.num($0.candidate, "%.3f"))" } ?? "—")</td>"
            }
            let failed = v.failedChecks.map {
                "\($0.name)\($0.slice.map { " [\($0)]" } ?? "") \($0.observed.map { H.num($0, "%.3f") } ?? "") vs \($0.threshold.map { H.num($0, "%.3f") } ?? "")"
            }
            o += "<td class=\"l\">\(H.esc(failed.isEmpty ? "—" : failed.joined(separator: "; ")))</td>"
            o += "<td class=\"l\">\(H.esc(v.decision + (v.reason.map { " (\($0))" } ?? "")))</td></tr>"
        }
        return o + "</table>"
    }
}
