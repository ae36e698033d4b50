import CortadoCore
import CortadoData
import CortadoInfer
import CortadoModel
import CortadoTestSupport
import Foundation
import XCTest

/// `cortado-infer serve` over real loopback HTTP: every Open Inference Protocol endpoint and
/// error code, predictions bit-identical to `cortado-infer` batch scoring (int8 and fp32), a
/// model of raw CSV columns, a recommender's top-K, the bearer token, metrics and the
/// prediction log. One server for the class (started once: it is a real process).
final class ServeProtocolTests: XCTestCase {
    nonisolated(unsafe) static var server: ServeProcess?
    nonisolated(unsafe) static var dir = ""
    static let token = "s3cret"

    override class func setUp() {
        dir = Support.scratch("serve-protocol")
        do {
            try ServeFixtures.mlp(dir + "/models/mlp/1/model.cmodel", recipe: "int8", seed: 3)
            try ServeFixtures.mlp(dir + "/models/mlpf/1/model.cmodel", recipe: "fp32", seed: 3)
            try ServeFixtures.tabular(dir + "/models/tab/1/model.cmodel")
            _ = try ServeFixtures.recommender(dir + "/models/rec/1/model.cmodel")
            let s = try ServeProcess(
                models: dir + "/models",
                args: [
                    "--token", token, "--max-body-bytes", "2000000", "--threads", "2", "--cores", "2",
                    "--prediction-log", dir + "/plog", "--prediction-sample", "1"
                ], scratch: dir)
            s.token = token
            server = s
        } catch { print("serve setUp failed: \(error)") }
    }

    override class func tearDown() { server?.stop() }

    var s: ServeProcess {
        get throws {
            guard let s = Self.server else { throw XCTSkip("server did not start (see setUp output)") }
            return s
        }
    }

    func testHealthMetadataAndEveryErrorCode() throws {
        let s = try s
        XCTAssertEqual(try s.get("/v2/health/live", auth: false).status, 200)
        XCTAssertEqual(try s.get("/v2/health/ready", auth: false).status, 200, "health needs no token")
        XCTAssertEqual(try s.get("/v2").json["name"] as? String, "cortado")
        // Metadata: names, datatypes, shapes; the version in the body and the header.
        let m = try s.get("/v2/models/mlp")
        XCTAssertEqual(m.status, 200, m.text)
        XCTAssertEqual(m.json["model_version"] as? String, "1")
        XCTAssertEqual(m.header("X-Model-Version"), "1")
        let inputs = m.json["inputs"] as? [[String: Any]] ?? []
        XCTAssertEqual(inputs.first?["name"] as? String, "input")
        XCTAssertEqual(inputs.first?["datatype"] as? String, "FP32")
        XCTAssertEqual(inputs.first?["shape"] as? [Int], [-1, 784])
        XCTAssertEqual(
            (m.json["outputs"] as? [[String: Any]])?.compactMap { $0["name"] as? String },
            ["probabilities", "predicted", "class"])
        XCTAssertEqual(try s.get("/v2/models/mlp/versions/1").status, 200)
        XCTAssertEqual(try s.get("/v2/models/mlp/ready").status, 200)
        XCTAssertEqual(try s.get("/v2/models/mlp/versions/1/ready").status, 200)
        let tab = try s.get("/v2/models/tab").json["inputs"] as? [[String: Any]] ?? []
        XCTAssertEqual(tab.compactMap { $0["name"] as? String }, ["age", "color"], "raw columns are the inputs")

        func error(
            _ r: ServeProcess.Reply, _ status: Int, _ mentions: String, file: StaticString = #filePath,
            line: UInt = #line
        ) {
            XCTAssertEqual(r.status, status, r.text, file: file, line: line)
            let message = r.json["error"] as? String ?? ""
            XCTAssertTrue(
                message.contains(mentions), "'\(message)' should mention '\(mentions)'", file: file, line: line)
        }
        let row = [Float](repeating: 0.25, count: 784)
        error(try s.get("/v2/models/nope"), 404, "unknown model 'nope'")
        error(try s.get("/v2/models/mlp/versions/7"), 404, "no loaded version 7")
        error(
            try s.post("/v2/models/nope/infer", text: ServeFixtures.body(rows: row[...], d: 784, id: "x")), 404, "nope")
        error(try s.get("/v2/models/..%2F..%2Fetc/ready"), 404, "not a model name")
        // Infer paths outside the plain form go through the router to the same handler.
        let one = ServeFixtures.body(rows: row[...], d: 784, id: "v")
        error(try s.post("/v2/models/mlp/versions/x/infer", text: one), 404, "has no version 'x'")
        error(try s.post("/v2/models/..%2Fmlp/infer", text: one), 404, "not a model name")
        XCTAssertEqual(try s.post("/v2/models/mlp/versions/1/infer", text: one).json["model_version"] as? String, "1")
        error(try s.post("/v2/models/mlp/infer", text: "{\"inputs\": [}"), 400, "bad JSON")
        error(try s.post("/v2/models/mlp/infer", text: "{\"id\": \"x\"}"), 400, "inputs")
        error(try s.post("/v2/models/mlp/infer", text: "{\"id\": 1, \"inputs\": []}"), 400, "id")
        error(
            try s.post(
                "/v2/models/mlp/infer",
                json: [
                    "inputs": [["name": "input", "shape": [1, 783], "datatype": "FP32", "data": Array(row.dropLast())]]
                ]),
            400, "inputs[0].shape")
        error(
            try s.post(
                "/v2/models/mlp/infer",
                json: ["inputs": [["name": "input", "shape": [1, 784], "datatype": "FP99", "data": row]]]),
            400, "inputs[0].datatype")
        error(
            try s.post(
                "/v2/models/mlp/infer",
                json: ["inputs": [["name": "input", "shape": [2, 784], "datatype": "FP32", "data": row]]]),
            400, "inputs[0].data")
        var nan: [Any] = row.map { Double($0) }
        nan[5] = "NaN"
        error(
            try s.post(
                "/v2/models/mlp/infer",
                json: ["inputs": [["name": "input", "shape": [1, 784], "datatype": "FP32", "data": nan]]]),
            400, "inputs[0].data[5]")
        error(
            try s.post(
                "/v2/models/tab/infer",
                json: [
                    "inputs": [
                        ["name": "age", "shape": [1], "datatype": "FP64", "data": [30]],
                        ["name": "colour", "shape": [1], "datatype": "BYTES", "data": ["red"]]
                    ]
                ]), 400, "unknown column 'colour'")
        error(
            try s.post(
                "/v2/models/rec/infer",
                json: ["inputs": [["name": "user", "shape": [1], "datatype": "INT64", "data": [99]]]]),
            400, "user 99")
        let big = ServeFixtures.body(rows: [Float](repeating: 0.123456, count: 784 * 300)[...], d: 784, id: "big")
        XCTAssertGreaterThan(big.utf8.count, 2_000_000)
        XCTAssertEqual(try s.post("/v2/models/mlp/infer", text: big).status, 413)
        error(try s.request("GET", "/v2/models/mlp", auth: false), 401, "bearer token")
        error(
            try s.request("GET", "/v2/models/mlp", headers: ["Authorization": "Bearer wrong"], auth: false), 401,
            "token")
        error(try s.get("/v2/nothing/here"), 404, "no such endpoint")

        let metrics = try s.get("/metrics").text
        for name in [
            "cortado_serve_requests_total", "cortado_serve_request_seconds", "cortado_serve_queue_seconds",
            "cortado_serve_batch_rows", "cortado_serve_queue_rows", "cortado_serve_model_loads_total"
        ] {
            XCTAssertTrue(metrics.contains(name), "metrics lack \(name)")
        }
        XCTAssertTrue(metrics.contains("status=\"404\""), "errors are counted by status")
    }

    /// The served probabilities are the bits `cortado-infer` writes for the same rows in the
    /// same batch, int8 and fp32: all rows in one request = `--batch 23`, a row alone =
    /// `--batch 1`. int8 rows do not depend on their batch at all (per-row scales, exact
    /// integer sums); fp32 rows may differ in the last bits between batch sizes (OpenBLAS picks
    /// its kernel by the matrix shape), which docs/serving.md says.
    /// `cortado-infer` batch scoring of `input` (HDF5 rows or CSV) with a served model.
    func batchScore(
        _ model: String, _ input: String, _ out: String, batch: Int? = nil, line: UInt = #line
    ) throws {
        let r = try Support.run(
            [
                Support.product("cortado-infer"), Self.dir + "/models/\(model)/1/model.cmodel", "--input", input,
                "--out", out
            ]
                + (batch.map { ["--batch", String($0)] } ?? []))
        XCTAssertEqual(r.status, 0, r.output, line: line)
    }

    /// NVIDIA's own client, `tritonclient[http]`, as a Triton user calls a server: its default
    /// binary tensor data both ways, JSON, one output asked for as binary, a pinned version, the
    /// classification extension's top 3, 400s it raises (a wrong shape, shared memory), raw CSV
    /// columns as binary FP64 and BYTES — every answer equal to batch scoring
    /// (cluster/triton-check.py does the calls and the comparisons).
    func testTritonClient() throws {
        let s = try s
        let python = try Support.venvPython(importing: "numpy, h5py, tritonclient.http")
        var rng = SeededRNG(seed: 21)
        let n = 5, d = 784
        let rows = Self.dir + "/triton-rows.h5"
        let h5 = try HDF5File.create(rows)
        try h5.write("features", (0..<(n * d)).map { _ in Float(rng.below(256)) / 255 }, shape: [n, d])
        try h5.close()
        var args = [python, Support.repoRoot + "/cluster/triton-check.py", "127.0.0.1:\(s.port)", Self.token, rows]
        for model in ["mlp", "mlpf"] {
            try batchScore(model, rows, Self.dir + "/triton-\(model).h5")
            args.append("\(model)=\(Self.dir)/triton-\(model).h5")
        }
        let csv = Self.dir + "/triton-rows.csv"
        try "age,color,y\n25,red,yes\n61.5,blue,no\n33,purple,yes\n120,,no\n40,green,yes\n".write(
            toFile: csv, atomically: true, encoding: .utf8)
        try batchScore("tab", csv, Self.dir + "/triton-tab.h5")
        args += ["--csv", "tab=\(csv)=\(Self.dir)/triton-tab.h5"]
        let r = try Support.run(args, timeout: 300)
        XCTAssertEqual(r.status, 0, "triton-check.py: \(r.output)")
        // Every check printed its line: the script cannot pass by checking nothing.
        XCTAssertEqual(r.output.split(separator: "\n").filter { $0.hasPrefix("ok ") }.count, 3 + 2 * 15 + 1, r.output)
    }

    /// The binary tensor data extension by hand: the header's length splits the body, and the
    /// answer's binary tail holds the same bits as the JSON answer.
    func testBinaryTensorBodies() throws {
        let s = try s
        let d = 784
        var rng = SeededRNG(seed: 4)
        let x = (0..<(2 * d)).map { _ in Float(rng.below(256)) / 255 }
        let json = try s.post("/v2/models/mlp/infer", text: ServeFixtures.body(rows: x[...], d: d, id: "j"))
        XCTAssertEqual(json.status, 200, json.text)
        let head = Data(
            "{\"id\":\"b\",\"inputs\":[{\"name\":\"input\",\"shape\":[2,\(d)],\"datatype\":\"FP32\",\"parameters\":{\"binary_data_size\":\(8 * d)}}],\"outputs\":[{\"name\":\"probabilities\",\"parameters\":{\"binary_data\":true}},{\"name\":\"predicted\"}]}"
                .utf8)
        var body = head
        for v in x { withUnsafeBytes(of: v.bitPattern.littleEndian) { body.append(contentsOf: $0) } }
        let reply = try s.request(
            "POST", "/v2/models/mlp/infer", body: body, headers: ["Inference-Header-Content-Length": String(head.count)]
        )
        XCTAssertEqual(reply.status, 200, reply.text)
        XCTAssertEqual(reply.header("Content-Type"), "application/octet-stream")
        let split = Int(reply.header("Inference-Header-Content-Length") ?? "") ?? -1
        XCTAssertEqual(reply.body.count, split + 2 * 10 * 4, "the JSON, then 2 × 10 FP32 probabilities")
        guard split > 0 else { return }
        let meta = try JSONSerialization.jsonObject(with: reply.body.prefix(split)) as? [String: Any] ?? [:]
        XCTAssertEqual(meta["id"] as? String, "b")
        let outs = meta["outputs"] as? [[String: Any]] ?? []
        XCTAssertEqual(outs.map { $0["name"] as? String }, ["probabilities", "predicted"], "only those asked for")
        XCTAssertEqual((outs.first?["parameters"] as? [String: Any])?["binary_data_size"] as? Int, 80)
        let probs = reply.body.dropFirst(split).withUnsafeBytes { raw in
            (0..<20).map {
                Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)))
            }
        }
        XCTAssertEqual(probs.map(\.bitPattern), ServeFixtures.floats(json.json, "probabilities").map(\.bitPattern))
        XCTAssertEqual(
            (outs.last?["data"] as? [Any])?.count, 2, "predicted as JSON beside a binary output")
        // A size that does not add up is a 400 naming the field, as is a header that is no number.
        let short = try s.request(
            "POST", "/v2/models/mlp/infer", body: body.dropLast(4),
            headers: ["Inference-Header-Content-Length": String(head.count)])
        XCTAssertEqual(short.status, 400, short.text)
        XCTAssertTrue(short.text.contains("inputs[0].parameters.binary_data_size"), short.text)
        let bad = try s.request(
            "POST", "/v2/models/mlp/infer", body: body, headers: ["Inference-Header-Content-Length": "x"])
        XCTAssertEqual(bad.status, 400, bad.text)
        XCTAssertTrue(bad.text.contains("Inference-Header-Content-Length"), bad.text)
        // The classification extension classifies probabilities only.
        let notProbabilities = try s.post(
            "/v2/models/mlp/infer",
            json: [
                "inputs": [["name": "input", "shape": [1, d], "datatype": "FP32", "data": Array(x[..<d])]],
                "outputs": [["name": "predicted", "parameters": ["classification": 2]]]
            ])
        XCTAssertEqual(notProbabilities.status, 400, notProbabilities.text)
        XCTAssertTrue(
            notProbabilities.text.contains("outputs 'predicted': parameters.classification"), notProbabilities.text)
    }

    func testPredictionsEqualBatchScoring() throws {
        let s = try s
        var rng = SeededRNG(seed: 9)
        let n = 23, d = 784
        let x = (0..<(n * d)).map { _ in Float(rng.below(256)) / 255 }
        let h5path = Self.dir + "/rows.h5"
        let h5 = try HDF5File.create(h5path)
        try h5.write("features", x, shape: [n, d])
        try h5.close()
        for model in ["mlp", "mlpf"] {
            let out = Self.dir + "/\(model)-pred.h5"
            try batchScore(model, h5path, out, batch: n)
            let expected = try HDF5File.open(out).readFloats("probabilities")
            let predicted = try HDF5File.open(out).readInt64s("predicted")
            let all = try s.post("/v2/models/\(model)/infer", text: ServeFixtures.body(rows: x[...], d: d, id: "all"))
            XCTAssertEqual(all.status, 200, all.text)
            XCTAssertEqual(all.json["id"] as? String, "all")
            XCTAssertEqual(all.json["model_version"] as? String, "1")
            let got = ServeFixtures.floats(all.json, "probabilities")
            XCTAssertEqual(got.map(\.bitPattern), expected.map(\.bitPattern), "\(model): served ≠ cortado-infer")
            XCTAssertEqual(
                ServeFixtures.output(all.json, "predicted").map { ($0 as? NSNumber)?.int64Value ?? -1 }, predicted)
            XCTAssertEqual(ServeFixtures.output(all.json, "class").first as? String, "c\(predicted[0])")
            let single = Self.dir + "/\(model)-pred1.h5"
            try batchScore(model, h5path, single, batch: 1)
            let expected1 = try HDF5File.open(single).readFloats("probabilities")
            if model == "mlp" {
                XCTAssertEqual(expected1.map(\.bitPattern), expected.map(\.bitPattern), "int8: batch-independent")
            }
            for i in [0, 7, n - 1] {
                let one = try s.post(
                    "/v2/models/\(model)/infer",
                    text: ServeFixtures.body(rows: x[(i * d)..<(i * d + d)], d: d, id: "r\(i)"))
                XCTAssertEqual(
                    ServeFixtures.floats(one.json, "probabilities").map(\.bitPattern),
                    expected1[(i * 10)..<(i * 10 + 10)].map(\.bitPattern), "\(model) row \(i) alone")
            }
        }
    }

    /// A model of raw CSV columns takes the columns by name (strings, numbers, missing values)
    /// and answers what `cortado-infer` answers for the same CSV rows.
    func testCSVModelByRawColumns() throws {
        let s = try s
        let ages: [String] = ["25", "61.5", "NA", "120", "40"], colors = ["red", "blue", "purple", "", "green"]
        var csv = "age,color,y\n"
        for i in 0..<ages.count { csv += "\(ages[i]),\(colors[i]),\(i % 2 == 0 ? "yes" : "no")\n" }
        try csv.write(toFile: Self.dir + "/rows.csv", atomically: true, encoding: .utf8)
        let out = Self.dir + "/tab-pred.h5"
        try batchScore("tab", Self.dir + "/rows.csv", out)
        let expected = try HDF5File.open(out).readFloats("probabilities")
        let reply = try s.post(
            "/v2/models/tab/infer",
            json: [
                "id": "tab1",
                "inputs": [
                    ["name": "age", "shape": [5], "datatype": "FP64", "data": [25, 61.5, NSNull(), 120, 40] as [Any]],
                    ["name": "color", "shape": [5, 1], "datatype": "BYTES", "data": colors]
                ]
            ])
        XCTAssertEqual(reply.status, 200, reply.text)
        XCTAssertEqual(ServeFixtures.floats(reply.json, "probabilities").map(\.bitPattern), expected.map(\.bitPattern))
        let classes = ServeFixtures.output(reply.json, "class") as? [String] ?? []
        XCTAssertEqual(classes.count, 5)
        XCTAssertTrue(classes.allSatisfy { $0 == "no" || $0 == "yes" }, "class names from the manifest: \(classes)")
    }

    func testRecommenderTopK() throws {
        let s = try s
        let path = Self.dir + "/models/rec/1/model.cmodel"
        let m = try RecommenderModel(path: path)
        let reply = try s.post(
            "/v2/models/rec/infer",
            json: [
                "inputs": [["name": "user", "shape": [2], "datatype": "INT64", "data": [2, 5]]],
                "parameters": ["top_k": 4]
            ])
        XCTAssertEqual(reply.status, 200, reply.text)
        let items = ServeFixtures.output(reply.json, "items") as? [String] ?? []
        let scores = ServeFixtures.floats(reply.json, "scores")
        var want = [String](), wantScores = [Float]()
        for u: Int32 in [2, 5] {
            let top = m.topK(user: u, k: 4, exclude: [])
            want += top.map { m.itemName($0.item) }
            wantScores += top.map(\.score)
        }
        XCTAssertEqual(items, want)
        XCTAssertEqual(scores.map(\.bitPattern), wantScores.map(\.bitPattern))
        let outs = reply.json["outputs"] as? [[String: Any]] ?? []
        XCTAssertEqual(outs.first?["shape"] as? [Int], [2, 4])
    }

    /// Sampled requests leave one JSON line per row with the request id, model, version, the
    /// input row and the output: what a later join with labels needs.
    func testPredictionLogLines() throws {
        let s = try s
        let id = "plog-\(UUID().uuidString)"
        let reply = try s.post(
            "/v2/models/tab/infer",
            json: [
                "id": id,
                "inputs": [
                    ["name": "age", "shape": [2], "datatype": "FP64", "data": [30, 50]],
                    ["name": "color", "shape": [2], "datatype": "BYTES", "data": ["red", "blue"]]
                ]
            ])
        XCTAssertEqual(reply.status, 200, reply.text)
        var lines = [[String: Any]]()
        let deadline = Date().addingTimeInterval(10)
        while lines.count < 2 && Date() < deadline {
            usleep(100_000)
            let text = (try? String(contentsOfFile: Self.dir + "/plog/predictions.jsonl", encoding: .utf8)) ?? ""
            lines = text.split(separator: "\n").compactMap {
                try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            }.filter { $0["id"] as? String == id }
        }
        XCTAssertEqual(lines.count, 2, "one line per row")
        XCTAssertEqual(lines.map { $0["row"] as? Int }, [0, 1])
        XCTAssertEqual(lines.first?["model"] as? String, "tab")
        XCTAssertEqual(lines.first?["version"] as? Int, 1)
        XCTAssertNotNil(lines.first?["time"] as? String)
        XCTAssertEqual((lines.last?["input"] as? [String: Any])?["color"] as? String, "blue")
        let output = lines.first?["output"] as? [String: Any]
        XCTAssertEqual((output?["probabilities"] as? [Any])?.count, 2)
        XCTAssertEqual(output?["class"] as? String, (ServeFixtures.output(reply.json, "class") as? [String])?.first)
        // The access log: one JSON object per request on standard error, errors included.
        XCTAssertEqual(try s.get("/v2/models/nope-\(id)").status, 404)
        let access = s.log.split(separator: "\n").filter { $0.hasPrefix("{\"time\"") }.compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        let mine = access.first { $0["request_id"] as? String == id }
        XCTAssertNotNil(mine, "no access log line for \(id) in \(access.count) lines")
        XCTAssertEqual(mine?["method"] as? String, "POST")
        XCTAssertEqual(mine?["path"] as? String, "/v2/models/tab/infer")
        XCTAssertEqual(mine?["status"] as? Int, 200)
        XCTAssertEqual(mine?["model"] as? String, "tab")
        XCTAssertEqual(mine?["version"] as? String, "1")
        XCTAssertGreaterThan(mine?["ms"] as? Double ?? 0, 0)
        XCTAssertTrue((mine?["time"] as? String ?? "").hasSuffix("Z"))
        let notFound = access.first { $0["path"] as? String == "/v2/models/nope-\(id)" }
        XCTAssertEqual(notFound?["status"] as? Int, 404)
        XCTAssertEqual(notFound?["model"] as? String, "unknown")
    }
}
