import CortadoCore
import CortadoData
import CortadoModel
import Foundation

/// `cortado report`: one self-contained HTML file (inline SVG and CSS, no script, nothing
/// fetched) showing a run or a registry version at a glance: loss and metric curves, learning
/// rate, throughput, the step-time split and peak memory per rank, the confusion matrix and
/// per-class accuracy, the compression table, the lineage chain; two side by side with
/// `--compare`. Every curve is an SVG polyline carrying its values in `data-values` (and
/// `data-steps`), so a test can check them against metrics.jsonl.
public enum RunReport {
    /// Curves longer than this are downsampled (min and max of each bucket, in order).
    public static let maxPoints = 400

    /// What a report shows, read from a run folder or a registry version.
    public struct Source {
        public var title: String
        public var path: String
        public var history: [[String: Double]]
        public var samplesPerSecond: Double?
        public var wallSeconds: Double?
        public var worldSize: Int?
        public var stepMsByRank: [String: [Double]]
        public var peakRSSMiB: [Double]
        public var test: [String: Double]
        public var evaluation: ClassifierEvaluation?
        public var evaluationNote: String?
        public var variants: [VariantMetrics]
        public var deployed: String?
        /// Lineage links, newest first: (label, one-line description).
        public var lineage: [(String, String)]
        /// A registry model's loop: versions, champion over time, verdicts.
        public var loop: LoopHistory? = nil
    }

    /// Opens a run folder (has job.json), a version folder (has lineage.json), or a model
    /// folder of a registry (its champion, else its newest version).
    public static func load(_ path: String, log: (String) -> Void = { _ in }) throws -> Source {
        let fm = FileManager.default
        func has(_ f: String) -> Bool { fm.fileExists(atPath: (path as NSString).appendingPathComponent(f)) }
        if has("job.json") { return try fromRun(path, log: log) }
        let url = URL(fileURLWithPath: path).standardizedFileURL
        if has("lineage.json"), let v = Int(url.lastPathComponent) {
            let modelDir = url.deletingLastPathComponent()
            return try fromVersion(
                Registry(root: modelDir.deletingLastPathComponent().path), modelDir.lastPathComponent, v)
        }
        let versions = RegistryIO.versions(in: path)
        if let newest = versions.last {
            let reg = Registry(root: url.deletingLastPathComponent().path), name = url.lastPathComponent
            let v = (try? reg.aliases(name))?[ModelReference.defaultAlias] ?? newest
            return try fromVersion(reg, name, v)
        }
        throw CortadoError.usage(
            "\(path): neither a run folder (job.json), a registry version folder (lineage.json) nor a registry model folder (numbered versions)"
        )
    }

    static func fromRun(_ path: String, log: (String) -> Void) throws -> Source {
        let run = try RunFolder(path)
        let haveData = FileManager.default.fileExists(atPath: run.job.data)
        var variants = [VariantMetrics](), evaluation: ClassifierEvaluation?, note: String?
        for m in run.models {
            do {
                variants.append(
                    try Evaluation.variant(recipe: m.recipe, path: m.path, manifestPath: haveData ? run.job.data : nil))
            } catch let e as CortadoError { log("warning: \(e.message)") }
        }
        if !haveData { note = "the data \(run.job.data) was not found: nothing scored at report time" }
        let reference = run.models.first { $0.recipe == "fp32" } ?? run.models.first
        let isClassifier =
            reference.flatMap { try? ModelFile.load($0.path) }.map { $0.header.recommender == nil } ?? false
        if haveData, isClassifier, let reference {
            evaluation = try Evaluation.classifier(model: reference.path, manifestPath: run.job.data)
        }
        var lineage = [(String, String)]()
        lineage.append(("this run", "\(path): data \(run.job.data)"))
        if let p = run.job.initFrom { lineage.append(("parent (init_from)", describeModel(Lineage.record(model: p)))) }
        if let t = run.job.teacher { lineage.append(("teacher", describeModel(Lineage.record(model: t.model)))) }
        return Source(
            title: "run \(path)", path: path, history: run.epochs,
            samplesPerSecond: run.summaryNumber("samples_per_sec"),
            wallSeconds: run.summaryNumber("wall_sec"), worldSize: run.summaryNumber("world_size").map { Int($0) },
            stepMsByRank: run.summaryLists("step_ms_by_rank"), peakRSSMiB: run.summaryList("peak_rss_mib"),
            test: run.summaryMap("test"), evaluation: evaluation, evaluationNote: note, variants: variants,
            deployed: Evaluation.deployment(variants)?.recipe, lineage: lineage)
    }

    static func describeModel(_ r: Lineage.ModelRecord) -> String {
        (r.ref.map { "\($0) (\(r.path))" } ?? r.path) + (r.sha256.map { ", sha256 \($0.prefix(16))…" } ?? "")
    }

    static func fromVersion(_ reg: Registry, _ name: String, _ v: Int) throws -> Source {
        let m = try reg.metrics(name, v), lin = try reg.lineage(name, v)
        let chain = try reg.chain(name, v).map { link -> (String, String) in
            guard let l = link.lineage else { return (link.label, link.record.map(describeModel) ?? "") }
            return (
                link.label,
                "run \(l.runDir), data \(l.data.manifest) (sha256 \(l.data.sha256?.prefix(16) ?? "?")…), \(l.worldSize.map { "\($0) ranks" } ?? "ranks unknown"), pushed \(l.pushedAt) by \(l.pushedBy), content \(l.contentSHA256.prefix(16))…"
            )
        }
        return Source(
            title: "\(name) version \(v)", path: reg.versionDir(name, v), history: m.history,
            samplesPerSecond: m.samplesPerSecond, wallSeconds: m.wallSeconds, worldSize: lin.worldSize,
            stepMsByRank: m.stepMillisecondsByRank, peakRSSMiB: m.peakRSSMiB, test: m.test, evaluation: m.evaluation,
            evaluationNote: m.notMeasured, variants: m.variants, deployed: m.deployed, lineage: chain,
            loop: try LoopHistory.load(reg, name))
    }

    // MARK: HTML

    static func esc(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
    static func num(_ x: Double, _ f: String = "%.4g") -> String { String(format: f, x) }

    static let css = """
        body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:16px;color:#1b1f24;background:#fff}
        h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:18px 0 6px;border-bottom:1px solid #d0d7de}
        .cols{display:flex;gap:24px;align-items:flex-start}.col{flex:1;min-width:0}
        table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #d0d7de;padding:2px 6px;text-align:right}
        th{background:#f6f8fa}td.l,th.l{text-align:left}.muted{color:#57606a}
        svg{background:#fff;max-width:100%;height:auto}svg text{font-size:10px;fill:#1b1f24}
        .legend span{display:inline-block;margin-right:12px}.sw{display:inline-block;width:10px;height:10px;margin-right:4px}
        """
    static let palette = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#bf8700", "#1b7c83", "#d1242f", "#57606a"]

    /// Renders one source, or two side by side.
    public static func html(_ a: Source, compare b: Source? = nil) -> String {
        var out = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        out += "<title>\(esc("Cortado report: " + a.title + (b.map { " vs " + $0.title } ?? "")))</title>"
        out += "<style>\(css)</style></head><body>\n"
        out += "<h1>\(esc(a.title))\(b.map { " <span class=\"muted\">vs</span> " + esc($0.title) } ?? "")</h1>\n"
        out +=
            "<p class=\"muted\">Generated by cortado \(esc(cortadoVersion)) report; self-contained (no scripts, nothing fetched).</p>\n"
        if let b {
            out += "<div class=\"cols\"><div class=\"col\" id=\"a\">\(body(a, id: "a"))</div>"
            out += "<div class=\"col\" id=\"b\">\(body(b, id: "b"))</div></div>\n"
        } else {
            out += "<div id=\"a\">\(body(a, id: "a"))</div>\n"
        }
        return out + "</body></html>\n"
    }

    /// One run's (or version's) part of the page: summary, curves, per-rank step time and
    /// memory, confusion matrix, compression table, lineage.
    static func body(_ s: Source, id: String) -> String {
        [summary, curves, perRank, classes, compression, lineage].map { $0(s, id) }.joined() + (s.loop?.html ?? "")
    }

    /// The summary table.
    static func summary(_ s: Source, id: String) -> String {
        var o = "<h2>Summary</h2><table>"
        func row(_ k: String, _ v: String) {
            o += "<tr><th class=\"l\">\(esc(k))</th><td class=\"l\">\(esc(v))</td></tr>"
        }
        row("source", s.path)
        row("epochs", String(s.history.count))
        if let st = s.history.last?["step"] { row("steps", String(Int(st))) }
        if let w = s.worldSize { row("ranks", String(w)) }
        if let x = s.samplesPerSecond { row("samples/s", num(x, "%.0f")) }
        if let x = s.wallSeconds { row("wall time", num(x, "%.1f s")) }
        for (k, v) in s.test.sorted(by: { $0.key < $1.key }) { row("test " + k, num(v, "%.4f")) }
        o += "</table>\n"
        return o
    }

    /// Every numeric key of metrics.jsonl except bookkeeping, grouped into charts.
    static func curves(_ s: Source, id: String) -> String {
        var o = ""
        let h = s.history
        let keys = Set(h.flatMap(\.keys))
        let steps = h.map { $0["step"] ?? .nan }, epochs = h.map { $0["epoch"] ?? .nan }
        func series(_ k: String, _ i: Int) -> Series? {
            guard keys.contains(k) else { return nil }
            return Series(name: k, xs: steps, ys: h.map { $0[k] ?? .nan }, color: palette[i % palette.count])
        }
        o += "<h2>Curves</h2>"
        if h.isEmpty { o += "<p>No metrics.jsonl entries (the run recorded no epochs).</p>" }
        var groups: [(String, [String])] = [("loss", ["train_loss", "train_ce", "val_loss"])]
        let vals = keys.filter { $0.hasPrefix("val_") && $0 != "val_loss" }.sorted()
        for v in vals { groups.append((String(v.dropFirst(4)), [v])) }
        groups += [("learning rate", ["lr"]), ("samples/s", ["samples_per_sec", "epoch_samples_per_sec"])]
        groups.append(("seconds per epoch by phase", ["compute_s", "data_s", "allreduce_s", "update_s"]))
        var chartIndex = 0
        for (title, ks) in groups {
            let ss = ks.enumerated().compactMap { series($1, $0) }
            guard !ss.isEmpty, !h.isEmpty else { continue }
            o += lineChart(
                title: title, series: ss, epochs: zip(steps, epochs).map { ($0, $1) }, id: "\(id)-c\(chartIndex)")
            chartIndex += 1
        }
        return o
    }

    /// Step-time split and peak RSS per rank, from summary.json.
    static func perRank(_ s: Source, id: String) -> String {
        var o = ""
        o += "<h2>Step time by rank (ms/step)</h2>"
        let phases = ["compute", "data", "exchange", "update"].filter { s.stepMsByRank[$0] != nil }
        if phases.isEmpty {
            o += "<p>Not recorded (the run has no summary.json).</p>"
        } else {
            o += stackedBars(
                rows: (0..<(s.stepMsByRank[phases[0]]?.count ?? 0)).map { r in
                    ("rank \(r)", phases.map { s.stepMsByRank[$0]?[r] ?? 0 })
                }, parts: phases, unit: "ms", id: "\(id)-steptime")
        }
        o += "<h2>Peak memory by rank (RSS, MiB)</h2>"
        o +=
            s.peakRSSMiB.isEmpty
            ? "<p>Not recorded (the run has no summary.json).</p>"
            : stackedBars(
                rows: s.peakRSSMiB.enumerated().map { ("rank \($0)", [$1]) }, parts: ["peak RSS"], unit: "MiB",
                id: "\(id)-rss")
        return o
    }

    /// Confusion matrix and per-class accuracy, or the ranking metrics.
    static func classes(_ s: Source, id: String) -> String {
        var o = ""
        o += "<h2>Confusion matrix and per-class accuracy (test split)</h2>"
        if let e = s.evaluation {
            o += confusion(e, id: id)
        } else {
            o +=
                "<p>\(esc(s.evaluationNote ?? "Not a classifier, or no classifier model in the run: no confusion matrix."))</p>"
            let rank = s.test.filter { $0.key.contains("hr@") || $0.key.contains("ndcg@") }.sorted { $0.key < $1.key }
            if !rank.isEmpty {
                o +=
                    "<table>"
                    + rank.map { "<tr><th class=\"l\">\(esc($0.key))</th><td>\(num($0.value, "%.4f"))</td></tr>" }
                    .joined() + "</table>"
            }
        }
        return o
    }

    /// The compression table.
    static func compression(_ s: Source, id: String) -> String {
        var o = ""
        o += "<h2>Compression</h2>"
        if s.variants.isEmpty {
            o += "<p>No model files.</p>"
        } else {
            let base = Double(s.variants.first { $0.recipe == "fp32" }?.bytes ?? s.variants[0].bytes)
            o +=
                "<table id=\"\(id)-compression\"><tr><th class=\"l\">variant</th><th>bytes</th><th>× fp32</th><th>accuracy</th><th>RMSE</th><th>batch-1 p50 ms</th><th class=\"l\">deployed</th></tr>"
            for v in s.variants {
                o +=
                    "<tr><td class=\"l\">\(esc(v.recipe))</td><td>\(v.bytes)</td><td>\(num(Double(v.bytes) / base, "%.3f"))</td>"
                o +=
                    "<td>\(v.accuracy.map { num($0, "%.4f") } ?? "-")</td><td>\(v.rmse.map { num($0, "%.4f") } ?? "-")</td>"
                o +=
                    "<td>\(v.latencyMsP50.map { num($0, "%.4f") } ?? "-")</td><td class=\"l\">\(v.recipe == s.deployed ? "yes" : "")</td></tr>"
            }
            o += "</table>"
        }
        return o
    }

    /// The lineage chain.
    static func lineage(_ s: Source, id: String) -> String {
        var o = ""
        o += "<h2>Lineage</h2><ol>"
        for (label, text) in s.lineage { o += "<li><b>\(esc(label))</b>: \(esc(text))</li>" }
        o += "</ol>"
        return o
    }

    struct Series {
        var name: String
        var xs: [Double]
        var ys: [Double]
        var color: String
    }

    /// Indices kept when a series is longer than `maxPoints`: first, last, and each bucket's
    /// minimum and maximum in their order.
    public static func downsample(_ ys: [Double], maxPoints: Int = RunReport.maxPoints) -> [Int] {
        guard ys.count > maxPoints, maxPoints >= 4 else { return Array(ys.indices) }
        let buckets = (maxPoints - 2) / 2
        var keep = [0]
        for b in 0..<buckets {
            let lo = 1 + b * (ys.count - 2) / buckets, hi = 1 + (b + 1) * (ys.count - 2) / buckets
            guard lo < hi else { continue }
            let r = lo..<hi
            let mn = r.min { ys[$0] < ys[$1] }!, mx = r.max { ys[$0] < ys[$1] }!
            keep += mn == mx ? [mn] : [min(mn, mx), max(mn, mx)]
        }
        keep.append(ys.count - 1)
        return keep
    }

    static func lineChart(title: String, series: [Series], epochs: [(Double, Double)], id: String) -> String {
        let W = 560.0, H = 230.0, L = 60.0, R = 12.0, T = 22.0, B = 46.0
        let finite = series.flatMap { s in zip(s.xs, s.ys).filter { $0.0.isFinite && $0.1.isFinite } }
        guard !finite.isEmpty else { return "" }
        var (x0, x1) = (finite.map(\.0).min()!, finite.map(\.0).max()!)
        var (y0, y1) = (finite.map(\.1).min()!, finite.map(\.1).max()!)
        if x1 == x0 { x0 -= 1; x1 += 1 }
        if y1 == y0 { let d = abs(y0) > 0 ? abs(y0) * 0.05 : 1; y0 -= d; y1 += d }
        let pad = (y1 - y0) * 0.05
        y0 -= pad; y1 += pad
        func px(_ x: Double) -> Double { L + (x - x0) / (x1 - x0) * (W - L - R) }
        func py(_ y: Double) -> Double { T + (1 - (y - y0) / (y1 - y0)) * (H - T - B) }
        var o =
            "<figure style=\"margin:6px 0\"><svg id=\"\(id)\" class=\"chart\" viewBox=\"0 0 \(Int(W)) \(Int(H))\" width=\"\(Int(W))\" height=\"\(Int(H))\" role=\"img\" aria-label=\"\(esc(title))\" "
        o +=
            "data-x0=\"\(x0)\" data-x1=\"\(x1)\" data-y0=\"\(y0)\" data-y1=\"\(y1)\" data-plot=\"\(L) \(T) \(W - R) \(H - B)\">"
        o += "<text x=\"\(L)\" y=\"14\" style=\"font-weight:600;font-size:12px\">\(esc(title))</text>"
        o +=
            "<rect x=\"\(L)\" y=\"\(T)\" width=\"\(W - L - R)\" height=\"\(H - T - B)\" fill=\"none\" stroke=\"#d0d7de\"/>"
        for i in 0...4 {
            let y = y0 + (y1 - y0) * Double(i) / 4
            o +=
                "<line x1=\"\(L)\" x2=\"\(W - R)\" y1=\"\(num(py(y), "%.1f"))\" y2=\"\(num(py(y), "%.1f"))\" stroke=\"#eaeef2\"/>"
            o += "<text x=\"\(L - 4)\" y=\"\(num(py(y) + 3, "%.1f"))\" text-anchor=\"end\">\(esc(num(y)))</text>"
        }
        // x ticks: steps, with the epoch under each tick (at most 8 ticks).
        let marks = epochs.filter { $0.0.isFinite }
        let every = max(1, (marks.count + 7) / 8)
        for (i, (st, ep)) in marks.enumerated() where i % every == 0 || i == marks.count - 1 {
            let x = num(px(st), "%.1f")
            o += "<line x1=\"\(x)\" x2=\"\(x)\" y1=\"\(H - B)\" y2=\"\(H - B + 4)\" stroke=\"#57606a\"/>"
            o += "<text x=\"\(x)\" y=\"\(H - B + 14)\" text-anchor=\"middle\">\(Int(st))</text>"
            if ep.isFinite {
                o += "<text x=\"\(x)\" y=\"\(H - B + 26)\" text-anchor=\"middle\" class=\"muted\">ep \(Int(ep))</text>"
            }
        }
        o += "<text x=\"\(W - R)\" y=\"\(H - 4)\" text-anchor=\"end\">step (epoch)</text>"
        for s in series {
            let pts = zip(s.xs, s.ys).enumerated().filter { $0.element.0.isFinite && $0.element.1.isFinite }
            let keep = downsample(pts.map { $0.element.1 })
            let kept = keep.map { pts[$0].element }
            let points = kept.map { "\(num(px($0.0), "%.2f")),\(num(py($0.1), "%.2f"))" }.joined(separator: " ")
            o +=
                "<polyline fill=\"none\" stroke=\"\(s.color)\" stroke-width=\"1.8\" points=\"\(points)\" data-series=\"\(esc(s.name))\" "
            o +=
                "data-steps=\"\(kept.map { String($0.0) }.joined(separator: ","))\" data-values=\"\(kept.map { String($0.1) }.joined(separator: ","))\">"
            o += "<title>\(esc(s.name))</title></polyline>"
            if kept.count == 1 {
                o +=
                    "<circle cx=\"\(num(px(kept[0].0), "%.2f"))\" cy=\"\(num(py(kept[0].1), "%.2f"))\" r=\"3\" fill=\"\(s.color)\"/>"
            }
        }
        o += "</svg><figcaption class=\"legend\">"
        for s in series { o += "<span><i class=\"sw\" style=\"background:\(s.color)\"></i>\(esc(s.name))</span>" }
        return o + "</figcaption></figure>"
    }

    /// Horizontal stacked bars, one per row, with the values printed.
    static func stackedBars(rows: [(String, [Double])], parts: [String], unit: String, id: String) -> String {
        let W = 560.0, L = 70.0, R = 90.0, rowH = 22.0, H = Double(rows.count) * rowH + 30
        let maxTotal = max(rows.map { $0.1.reduce(0, +) }.max() ?? 1, 1e-12)
        var o =
            "<svg id=\"\(id)\" viewBox=\"0 0 \(Int(W)) \(Int(H))\" width=\"\(Int(W))\" height=\"\(Int(H))\" role=\"img\">"
        for (r, (label, values)) in rows.enumerated() {
            let y = Double(r) * rowH + 4
            o += "<text x=\"\(L - 6)\" y=\"\(y + 14)\" text-anchor=\"end\">\(esc(label))</text>"
            var x = L
            for (i, v) in values.enumerated() {
                let w = max(0, v / maxTotal * (W - L - R))
                o +=
                    "<rect x=\"\(num(x, "%.2f"))\" y=\"\(y)\" width=\"\(num(w, "%.2f"))\" height=\"\(rowH - 6)\" fill=\"\(palette[i % palette.count])\" data-part=\"\(esc(parts[i]))\" data-value=\"\(v)\"><title>\(esc(parts[i])): \(num(v)) \(unit)</title></rect>"
                x += w
            }
            o += "<text x=\"\(num(x + 4, "%.1f"))\" y=\"\(y + 14)\">\(num(values.reduce(0, +), "%.3g")) \(unit)</text>"
        }
        o += "</svg>"
        if parts.count > 1 {
            o += "<div class=\"legend\">"
            for (i, p) in parts.enumerated() {
                o += "<span><i class=\"sw\" style=\"background:\(palette[i % palette.count])\"></i>\(esc(p))</span>"
            }
            o += "</div>"
        }
        return o
    }

    static func confusion(_ e: ClassifierEvaluation, id: String) -> String {
        let maxCell = Double(e.confusion.flatMap { $0 }.max() ?? 1)
        var o = "<p>\(e.rows) test rows, accuracy \(num(e.accuracy, "%.4f")). Rows: true class; columns: predicted.</p>"
        o += "<div class=\"cols\"><div><table class=\"confusion\"><tr><th></th>"
        for (j, _) in e.classes.enumerated() { o += "<th>\(j)</th>" }
        o += "</tr>"
        for (i, c) in e.classes.enumerated() {
            o += "<tr><th class=\"l\">\(i) \(esc(c))</th>"
            for j in e.classes.indices {
                let v = e.confusion[i][j], a = maxCell > 0 ? Double(v) / maxCell : 0
                let bg =
                    i == j
                    ? "rgba(26,127,55,\(num(0.12 + 0.6 * a, "%.2f")))"
                    : "rgba(207,34,46,\(num(min(0.8, 4 * a), "%.2f")))"
                o += "<td style=\"background:\(bg)\">\(v)</td>"
            }
            o += "</tr>"
        }
        o += "</table></div><div>"
        o += stackedBars(
            rows: e.classes.indices.map { ("\($0)", [e.perClassAccuracy[$0]]) }, parts: ["accuracy"], unit: "",
            id: "\(id)-per-class")
        return o + "</div></div>"
    }

    /// Writes the report (atomically).
    public static func write(_ path: String, compare: String?, out: String, log: (String) -> Void = { _ in }) throws {
        let a = try load(path, log: log)
        let b = try compare.map { try load($0, log: log) }
        try AtomicFile.write(Data(html(a, compare: b).utf8), to: out)
    }
}
