import CortadoCore
import CortadoTestSupport
import Foundation
import XCTest

/// Versions and hot reload on a real server: a new version never becomes the default by
/// itself; under a steady load a new version is installed and made default and a broken one
/// offered, with zero non-2xx responses, each naming its version; a full queue answers 503 with
/// Retry-After; SIGTERM drains the requests in flight and exits 0.
final class ServeReloadTests: XCTestCase {
    func body(_ id: String) -> String {
        ServeFixtures.body(rows: [Float](repeating: 0.3, count: 784)[...], d: 784, id: id)
    }

    func testSwapUnderLoadAndBrokenVersion() throws {
        let dir = Support.scratch("serve-swap")
        let models = dir + "/models"
        try ServeFixtures.mlp(models + "/m/1/model.cmodel", recipe: "int8", seed: 1)
        try "1\n".write(toFile: models + "/m/default", atomically: true, encoding: .utf8)
        // No default file: the highest version at first load, and it stays after a new one.
        try ServeFixtures.mlp(models + "/h/1/model.cmodel", recipe: "fp32", seed: 1)
        try ServeFixtures.mlp(models + "/h/2/model.cmodel", recipe: "fp32", seed: 2)
        let s = try ServeProcess(
            models: models, args: ["--threads", "1", "--cores", "2", "--max-queue-delay-us", "200"], scratch: dir)
        defer { s.stop() }
        XCTAssertEqual(try s.get("/v2/models/h").json["model_version"] as? String, "2")
        XCTAssertTrue(s.log.contains("highest version at first load"), "the choice is logged")
        try ServeFixtures.mlp(models + "/h/3/model.cmodel", recipe: "fp32", seed: 3)
        XCTAssertEqual(try s.post("/v2/repository/models/h/load", json: [:]).status, 200)
        XCTAssertEqual(
            try s.get("/v2/models/h").json["model_version"] as? String, "2", "a new version is not the default")
        XCTAssertEqual(try s.get("/v2/models/h/versions/3/ready").status, 200, "but it is loaded")

        // Load: 4 clients, back to back, until told to stop.
        final class Tally: @unchecked Sendable {
            let lock = NSLock()
            var statuses = [Int: Int](), versions = [String: Int](), mismatched = 0, transport = 0
            var stop = false
        }
        let tally = Tally()
        let group = DispatchGroup()
        for c in 0..<4 {
            group.enter()
            Thread.detachNewThread {
                var i = 0
                while !tally.lock.withLock({ tally.stop }) {
                    i += 1
                    do {
                        let r = try s.post("/v2/models/m/infer", text: self.body("c\(c)-\(i)"))
                        let v = r.json["model_version"] as? String ?? "none"
                        tally.lock.withLock {
                            tally.statuses[r.status, default: 0] += 1
                            tally.versions[v, default: 0] += 1
                            if r.header("X-Model-Version") != v { tally.mismatched += 1 }
                        }
                    } catch { tally.lock.withLock { tally.transport += 1 } }
                }
                group.leave()
            }
        }
        usleep(300_000)
        // Install version 2: loaded on request, but the default stays 1.
        try ServeFixtures.mlp(models + "/m/2/model.cmodel", recipe: "int8", seed: 2)
        let load = try s.post("/v2/repository/models/m/load", json: [:])
        XCTAssertEqual(load.status, 200, load.text)
        XCTAssertEqual(load.json["default_version"] as? String, "1")
        usleep(300_000)
        // A broken version 3 (one flipped byte: the checksum fails), offered by SIGHUP.
        try FileManager.default.createDirectory(atPath: models + "/m/3", withIntermediateDirectories: true)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: models + "/m/2/model.cmodel"))
        bytes[bytes.count / 2] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: models + "/m/3/model.cmodel"))
        s.signal(SIGHUP)
        var index = [[String: Any]]()
        let deadline = Date().addingTimeInterval(20)
        repeat {
            usleep(100_000)
            let r = try s.post("/v2/repository/index", json: [:])
            index = (try? JSONSerialization.jsonObject(with: r.body)) as? [[String: Any]] ?? []
        } while Date() < deadline && !index.contains { $0["name"] as? String == "m" && $0["version"] as? String == "3" }
        let v3 = index.first { $0["name"] as? String == "m" && $0["version"] as? String == "3" }
        XCTAssertEqual(v3?["state"] as? String, "UNAVAILABLE", "the broken version is reported: \(index)")
        XCTAssertTrue((v3?["reason"] as? String ?? "").lowercased().contains("checksum"), "\(v3 ?? [:])")
        // Make 2 the default by request; then try to make the broken 3 the default.
        let promote = try s.post("/v2/repository/models/m/load", json: ["parameters": ["default_version": 2]])
        XCTAssertEqual(promote.status, 200, promote.text)
        XCTAssertEqual(promote.json["default_version"] as? String, "2")
        XCTAssertEqual(try String(contentsOfFile: models + "/m/default", encoding: .utf8), "2\n")
        let broken = try s.post("/v2/repository/models/m/load", json: ["parameters": ["default_version": 3]])
        XCTAssertEqual(broken.status, 400, broken.text)
        XCTAssertTrue((broken.json["error"] as? String ?? "").contains("version 3 failed to load"), broken.text)
        usleep(300_000)
        tally.lock.withLock { tally.stop = true }
        group.wait()

        XCTAssertEqual(tally.transport, 0)
        XCTAssertEqual(Set(tally.statuses.keys), [200], "zero non-2xx under reload: \(tally.statuses)")
        XCTAssertEqual(tally.mismatched, 0, "header and body name the same version")
        XCTAssertEqual(Set(tally.versions.keys), ["1", "2"], "\(tally.versions)")
        XCTAssertGreaterThan(tally.statuses[200] ?? 0, 20)
        XCTAssertEqual(try s.post("/v2/models/m/infer", text: body("after")).json["model_version"] as? String, "2")
        XCTAssertEqual(
            try s.post("/v2/models/m/versions/1/infer", text: body("v1")).json["model_version"] as? String, "1")
        let metrics = try s.get("/metrics").text
        XCTAssertTrue(metrics.contains("cortado_serve_model_loads_total{model=\"m\",result=\"failed\"}"), metrics)
    }

    /// A queue of one row and a long batching delay: the second concurrent request is turned
    /// away with 503 + Retry-After, and counted.
    func testQueueFullIs503WithRetryAfter() throws {
        let dir = Support.scratch("serve-queue")
        try ServeFixtures.mlp(dir + "/models/m/1/model.cmodel", recipe: "int8", seed: 1)
        let s = try ServeProcess(
            models: dir + "/models",
            args: ["--threads", "1", "--cores", "1", "--queue-rows", "1", "--max-queue-delay-us", "400000"],
            scratch: dir)
        defer { s.stop() }
        final class Box: @unchecked Sendable { let lock = NSLock(); var replies = [ServeProcess.Reply]() }
        let box = Box()
        DispatchQueue.concurrentPerform(iterations: 6) { i in
            if let r = try? s.post("/v2/models/m/infer", text: body("q\(i)")) {
                box.lock.withLock { box.replies.append(r) }
            }
        }
        let full = box.replies.filter { $0.status == 503 }
        XCTAssertEqual(box.replies.count, 6)
        XCTAssertFalse(full.isEmpty, "statuses: \(box.replies.map(\.status))")
        XCTAssertTrue(box.replies.contains { $0.status == 200 })
        XCTAssertEqual(full.first?.header("Retry-After"), "1")
        XCTAssertTrue((full.first?.json["error"] as? String ?? "").contains("queue full"))
        XCTAssertTrue(try s.get("/metrics").text.contains("reason=\"queue_full\""))
    }

    /// SIGTERM while a request waits in the batching queue: it still gets its 200, and the
    /// server exits 0.
    func testSIGTERMDrainsAndExitsZero() throws {
        let dir = Support.scratch("serve-term")
        try ServeFixtures.mlp(dir + "/models/m/1/model.cmodel", recipe: "int8", seed: 1)
        let s = try ServeProcess(
            models: dir + "/models", args: ["--threads", "1", "--cores", "1", "--max-queue-delay-us", "2000000"],
            scratch: dir)
        final class Box: @unchecked Sendable { var status = 0 }
        let box = Box(), done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            box.status = (try? s.post("/v2/models/m/infer", text: self.body("inflight")).status) ?? -1
            done.signal()
        }
        // SIGTERM once the request waits in the queue (its batch waits 2 s to fill).
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline,
            !(try s.get("/metrics").text.contains("cortado_serve_queue_rows{model=\"m\",version=\"1\"} 1"))
        {
            usleep(20_000)
        }
        let code = s.stop(timeout: 30)
        XCTAssertEqual(done.wait(timeout: .now() + 30), .success)
        XCTAssertEqual(box.status, 200, "the request in flight finishes")
        XCTAssertEqual(code, 0, s.log)
    }
}
