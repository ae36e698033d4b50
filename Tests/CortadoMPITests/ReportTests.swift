import CortadoCore
import CortadoRegistry
import CortadoTestSupport
import Foundation
import XCTest

/// `cortado report` rendered by a real headless browser (Debian's chromium): a screenshot is
/// taken, the page logs nothing to the console, and the SVG curves carry the run's values
/// (checked against metrics.jsonl, through the plotted coordinates too).
final class ReportTests: XCTestCase {
    static let run: String = {
        let dir = NSTemporaryDirectory() + "cortado-tests-\(getpid())/report-run"
        let r = try? Support.mpirun(2, Support.smallMLP(dir, ["--set", "epochs=3", "--set", "emit=[fp32, int8]"]))
        precondition(r?.status == 0, "training the report test run failed: \(r?.output ?? "no output")")
        return dir
    }()

    func testReportRendersInHeadlessChromiumWithTheRunsValues() throws {
        let dir = Support.scratch("report")
        let out = dir + "/report.html"
        let r = try Support.run([Support.product("cortado"), "report", Self.run, "--out", out])
        XCTAssertEqual(r.status, 0, r.output)
        let html = try String(contentsOfFile: out, encoding: .utf8)
        // Self-contained: no scripts, nothing fetched.
        for bad in ["<script", "src=", "href=", "url(", "@import", "<link"] {
            XCTAssertFalse(html.contains(bad), "report contains \(bad)")
        }
        for s in [
            "Step time by rank", "rank 1", "Peak memory by rank", "Confusion matrix", "Ankle boot", "Compression",
            "int8", "Lineage"
        ] {
            XCTAssertTrue(html.contains(s), "report lacks \(s)")
        }

        let png = dir + "/report.png"
        let shot = try Support.chromium(["--screenshot=" + png, "--window-size=1280,3000", "file://" + out])
        XCTAssertEqual(shot.status, 0, shot.output)
        let pngBytes = try Data(contentsOf: URL(fileURLWithPath: png))
        XCTAssertGreaterThan(pngBytes.count, 10_000)
        XCTAssertEqual(Array(pngBytes.prefix(4)), [0x89, 0x50, 0x4e, 0x47])
        let dom = try Support.chromium(["--enable-logging=stderr", "--v=0", "--dump-dom", "file://" + out])
        XCTAssertEqual(dom.status, 0, dom.output)
        let console = dom.stderr.split(separator: "\n").filter { $0.contains(":CONSOLE") || $0.contains("Uncaught") }
        XCTAssertEqual(console, [], "console messages")
        try checkCurves(dom.stdout, against: Self.run + "/metrics.jsonl")
    }

    /// Every polyline of the rendered DOM: its values are metrics.jsonl's, and its points lie
    /// where those values map on the chart's axes.
    func checkCurves(_ dom: String, against metricsPath: String) throws {
        let epochs = try RunFolder.metrics(metricsPath)
        XCTAssertEqual(epochs.count, 3)
        let svg = try NSRegularExpression(
            pattern: #"<svg[^>]*data-y0="([^"]+)" data-y1="([^"]+)" data-plot="([^"]+)"[^>]*>(.*?)</svg>"#,
            options: [.dotMatchesLineSeparators])
        let line = try NSRegularExpression(
            pattern: #"<polyline[^>]*points="([^"]*)" data-series="([^"]+)" data-steps="([^"]*)" data-values="([^"]*)""#
        )
        var seen = Set<String>()
        let ns = dom as NSString
        for m in svg.matches(in: dom, range: NSRange(location: 0, length: ns.length)) {
            let y0 = Double(ns.substring(with: m.range(at: 1)))!, y1 = Double(ns.substring(with: m.range(at: 2)))!
            let plot = ns.substring(with: m.range(at: 3)).split(separator: " ").map { Double($0)! }
            let inner = ns.substring(with: m.range(at: 4)) as NSString
            for p in line.matches(in: inner as String, range: NSRange(location: 0, length: inner.length)) {
                let key = inner.substring(with: p.range(at: 2))
                let steps = inner.substring(with: p.range(at: 3)).split(separator: ",").map { Double($0)! }
                let values = inner.substring(with: p.range(at: 4)).split(separator: ",").map { Double($0)! }
                XCTAssertEqual(steps, epochs.map { $0["step"]! }, key)
                XCTAssertEqual(values, epochs.map { $0[key]! }, key)
                let ys = inner.substring(with: p.range(at: 1)).split(separator: " ").map {
                    Double($0.split(separator: ",")[1])!
                }
                for (y, v) in zip(ys, values) {
                    let expected = plot[1] + (1 - (v - y0) / (y1 - y0)) * (plot[3] - plot[1])
                    XCTAssertEqual(y, expected, accuracy: 0.01, "\(key) plotted at the wrong height")
                }
                seen.insert(key)
            }
        }
        for key in ["train_loss", "val_loss", "val_accuracy", "lr", "samples_per_sec"] {
            XCTAssertTrue(seen.contains(key), "no curve for \(key) (curves: \(seen.sorted()))")
        }
    }

    func testRegistryVersionReportComparesWithTheRun() throws {
        let dir = Support.scratch("report-compare")
        let push = try Support.run([
            Support.product("cortado"), "registry", "push", Self.run, "--name", "rep", "--registry", dir + "/reg"
        ])
        XCTAssertEqual(push.status, 0, push.output)
        let out = dir + "/compare.html"
        let r = try Support.run([
            Support.product("cortado"), "report", dir + "/reg/rep", "--compare", Self.run, "--out", out
        ])
        XCTAssertEqual(r.status, 0, r.output)
        let html = try String(contentsOfFile: out, encoding: .utf8)
        XCTAssertTrue(html.contains("rep version 1"), "the version's title")
        XCTAssertTrue(html.contains("<div class=\"col\" id=\"b\">"), "side by side")
        XCTAssertTrue(html.contains("registry://rep/1"), "the lineage chain")
        let dom = try Support.chromium(["--dump-dom", "file://" + out])
        XCTAssertEqual(dom.status, 0, dom.output)
        // Both columns draw the same run's curves from the same values.
        XCTAssertEqual(dom.stdout.components(separatedBy: "data-series=\"train_loss\"").count - 1, 2)
        let bad = try Support.run([Support.product("cortado"), "report", dir, "--out", dir + "/x.html"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("neither a run folder"), bad.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/x.html"))
    }
}
