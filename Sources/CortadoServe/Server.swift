import CortadoCore
import CortadoInfer
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Synchronization

/// `cortado-infer serve`'s settings (the command's flags).
public struct ServerConfig: Sendable {
    public var models: String
    public var host = "127.0.0.1"
    public var port = 8080
    public var options = ServeOptions()
    /// Required as `Authorization: Bearer TOKEN` on everything but /v2/health/*, when set.
    public var token: String?
    public var maxBodyBytes = 16 << 20
    public var requestTimeout = 30.0
    public var predictionLog: String?
    public var predictionSampleRate = 1.0
    public var predictionLogMaxBytes = 64 << 20
    /// Rescan the repository every this many seconds (0: only on SIGHUP or an admin request).
    public var pollSeconds = 0.0
    public init(models: String) { self.models = models }
}

/// An error with the HTTP status it answers with; the body is `{"error": message}`.
struct APIError: Error {
    var status: HTTPResponse.Status
    var message: String
    var retryAfter: Int?
}

/// The Open Inference Protocol (KServe v2) REST server over Hummingbird: handlers decode the
/// JSON, call a model version's batching queue and encode the answer; middleware does auth,
/// limits, errors as JSON, metrics and the access log.
public enum ModelServer {
    static let versionHeader = HTTPField.Name("X-Model-Version")!
    static let requestIDHeader = HTTPField.Name("X-Request-Id")!
    /// The binary tensor data extension's header: how many bytes of the body are JSON.
    static let headerLengthHeader = HTTPField.Name("Inference-Header-Content-Length")!

    public static func run(_ config: ServerConfig) async throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: config.models, isDirectory: &isDir), isDir.boolValue else {
            throw CortadoError.usage("--models: \(config.models) is not a folder (layout: NAME/VERSION/model.cmodel)")
        }
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        var logger = Logger(label: "cortado-serve")
        logger.logLevel = .info
        let metrics = ServeMetrics(bootstrap: true)
        let repo = ModelRepository(root: config.models, options: config.options, metrics: metrics)
        let log = logger
        repo.reload { log.info("\($0)") }
        let predictions = try config.predictionLog.map {
            try PredictionLog(dir: $0, sampleRate: config.predictionSampleRate, maxBytes: config.predictionLogMaxBytes)
        }
        let state = ServerState(config: config, repo: repo, metrics: metrics, predictions: predictions, logger: logger)

        let router = Router()
        let middleware = ServeMiddleware(state: state)
        router.middlewares.add(middleware)
        state.routes(router)
        let responder = InferResponder(router: router.buildResponder(), middleware: middleware, state: state)

        // SIGHUP: rescan the repository and load what is new, off the event loops.
        signal(SIGHUP, SIG_IGN)
        let hup = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        hup.setEventHandler { repo.reload { log.info("SIGHUP: \($0)") } }
        hup.resume()
        // Polling, as TF Serving's file-system poll: a registry that moves `champion` (or a new
        // `default` file) is picked up without anyone signalling the server. A rescan only lists
        // folders and reads two small files unless something is new; quiet scans log nothing.
        var poll: DispatchSourceTimer?
        if config.pollSeconds > 0 {
            // (A dispatch source released while never resumed crashes libdispatch: make it only when used.)
            let timer = DispatchSource.makeTimerSource(queue: .global())
            timer.schedule(deadline: .now() + config.pollSeconds, repeating: config.pollSeconds)
            timer.setEventHandler { repo.reload { log.info("poll: \($0)") } }
            timer.resume()
            poll = timer
        }
        defer { poll?.cancel() }

        let host = config.host
        let app = Application(
            responder: responder,
            server: .http1OnEventLoop(),
            configuration: .init(address: .hostname(host, port: config.port), serverName: "cortado"),
            onServerRunning: { channel in
                // Tests and scripts read the port from this line (--port 0 picks a free one).
                print("listening on http://\(host):\(channel.localAddress?.port ?? 0)")
                fflush(stdout)
            },
            logger: logger)
        // SIGTERM/SIGINT: stop accepting, finish the requests in flight, then return.
        try await app.runService(gracefulShutdownSignals: [.sigterm, .sigint])
        hup.cancel()
        repo.stopAll()
        predictions?.close()
        logger.info("stopped")
    }
}

/// What the handlers share.
final class ServerState: Sendable {
    let config: ServerConfig
    let repo: ModelRepository
    let metrics: ServeMetrics
    let predictions: PredictionLog?
    let logger: Logger

    init(
        config: ServerConfig, repo: ModelRepository, metrics: ServeMetrics, predictions: PredictionLog?, logger: Logger
    ) {
        self.config = config
        self.repo = repo
        self.metrics = metrics
        self.predictions = predictions
        self.logger = logger
    }

    func routes(_ router: Router<BasicRequestContext>) {
        router.get("/v2") { _, _ in
            json(
                .ok,
                "{\"name\":\"cortado\",\"version\":\(str(cortadoVersion)),\"extensions\":[\"model_repository\",\"binary_tensor_data\",\"classification\"]}"
            )
        }
        router.get("/v2/health/live") { _, _ in json(.ok, "{\"live\":true}") }
        router.get("/v2/health/ready") { _, _ in
            let all = self.repo.snapshot
            let ready = !all.isEmpty && all.values.allSatisfy { $0.defaultVersion != nil }
            return json(ready ? .ok : .serviceUnavailable, "{\"ready\":\(ready)}")
        }
        router.get("/metrics") { _, _ in
            if let p = self.predictions {
                let c = p.counts; self.metrics.predictionLog(written: c.written, dropped: c.dropped)
            }
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4"
            return Response(
                status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: self.metrics.text())))
        }
        for prefix in ["/v2/models/:name", "/v2/models/:name/versions/:version"] {
            router.get(RouterPath(prefix)) { _, ctx in try self.metadata(self.resolve(ctx)) }
            router.get(RouterPath(prefix + "/ready")) { _, ctx in
                let v = try self.resolve(ctx)
                return versioned(.ok, "{\"name\":\(str(v.name)),\"model_version\":\"\(v.version)\",\"ready\":true}", v)
            }
            // (POST …/infer usually takes `InferResponder`'s shortcut; the route is its fallback.)
            router.post(RouterPath(prefix + "/infer")) { req, ctx in
                try await self.infer(req, name: modelName(ctx), version: ctx.parameters.get("version"))
            }
        }
        router.post("/v2/repository/index") { _, _ in self.index() }
        router.post("/v2/repository/models/:name/load") { req, ctx in try await self.load(req, ctx) }
        router.post("/v2/repository/models/:name/unload") { _, ctx in
            let name = try modelName(ctx)
            guard self.repo.entry(name) != nil else {
                throw APIError(status: .notFound, message: "unknown model '\(name)'")
            }
            self.repo.unload(name)
            self.logger.info("\(name): unloaded by request")
            return json(.ok, "{\"name\":\(str(name)),\"unloaded\":true}")
        }
    }

    /// The version a path names: `/versions/V`, or the model's default.
    func resolve(_ ctx: BasicRequestContext) throws -> ModelVersion {
        try resolve(name: modelName(ctx), version: ctx.parameters.get("version"))
    }

    /// The version `name` (a valid model name) and `version` (the path's text, if any) name.
    func resolve(name: String, version: String?) throws -> ModelVersion {
        guard let entry = repo.entry(name) else {
            throw APIError(status: .notFound, message: "unknown model '\(name)'")
        }
        if let text = version {
            guard let v = Int(text), v > 0 else {
                throw APIError(status: .notFound, message: "model '\(name)' has no version '\(text.prefix(20))'")
            }
            guard let mv = entry.versions[v] else {
                let why = entry.failures[v].map { ": it failed to load: \($0)" } ?? ""
                throw APIError(
                    status: .notFound,
                    message:
                        "model '\(name)' has no loaded version \(v)\(why) (loaded: \(entry.versions.keys.sorted().map(String.init).joined(separator: ", ")))"
                )
            }
            return mv
        }
        guard let d = entry.defaultVersion, let mv = entry.versions[d] else {
            throw APIError(status: .notFound, message: "model '\(name)' has no version that loaded")
        }
        return mv
    }

    func metadata(_ v: ModelVersion) -> Response {
        var inputs = [String](), outputs = [String](), params = ["\"precision\":\(str(v.precision))"]
        let entry = repo.entry(v.name)
        switch v.kind {
        case .classifier(let classes):
            let d = v.decoder!
            if d.columns.isEmpty {
                let shape = ([-1] + d.inputShape).map(String.init).joined(separator: ",")
                inputs.append("{\"name\":\"input\",\"datatype\":\"FP32\",\"shape\":[\(shape)]}")
            } else {
                for c in d.columns {
                    inputs.append(
                        "{\"name\":\(str(c.name)),\"datatype\":\"\(c.type == "numeric" ? "FP64" : "BYTES")\",\"shape\":[-1]}"
                    )
                }
            }
            outputs = [
                "{\"name\":\"probabilities\",\"datatype\":\"FP32\",\"shape\":[-1,\(classes.count)]}",
                "{\"name\":\"predicted\",\"datatype\":\"INT64\",\"shape\":[-1]}",
                "{\"name\":\"class\",\"datatype\":\"BYTES\",\"shape\":[-1]}"
            ]
            params.append("\"classes\":[\(classes.map(str).joined(separator: ","))]")
        case .recommender:
            inputs.append("{\"name\":\"user\",\"datatype\":\"BYTES\",\"shape\":[-1]}")
            outputs = [
                "{\"name\":\"items\",\"datatype\":\"BYTES\",\"shape\":[-1,-1]}",
                "{\"name\":\"scores\",\"datatype\":\"FP32\",\"shape\":[-1,-1]}"
            ]
            params.append("\"top_k\":10")
        }
        if let d = entry?.defaultVersion { params.append("\"default_version\":\"\(d)\"") }
        let versions = (entry?.versions.keys.sorted() ?? [v.version]).map { "\"\($0)\"" }.joined(separator: ",")
        let body =
            "{\"name\":\(str(v.name)),\"model_version\":\"\(v.version)\",\"versions\":[\(versions)],\"platform\":\"cortado\","
            + "\"inputs\":[\(inputs.joined(separator: ","))],\"outputs\":[\(outputs.joined(separator: ","))],"
            + "\"parameters\":{\(params.joined(separator: ","))}}"
        return versioned(.ok, body, v)
    }

    func index() -> Response {
        var items = [String]()
        for (name, e) in repo.snapshot.sorted(by: { $0.key < $1.key }) {
            for v in Set(e.versions.keys).union(e.failures.keys).sorted() {
                let ok = e.versions[v] != nil
                var s = "{\"name\":\(str(name)),\"version\":\"\(v)\",\"state\":\"\(ok ? "READY" : "UNAVAILABLE")\""
                if let why = e.failures[v], !ok { s += ",\"reason\":\(str(why))" }
                if v == e.defaultVersion { s += ",\"default\":true" }
                items.append(s + "}")
            }
        }
        return json(.ok, "[\(items.joined(separator: ","))]")
    }

    /// KServe's repository extension: rescan this model's folder (load new versions); with
    /// `{"parameters": {"default_version": N}}`, make N the default first (written to
    /// `NAME/default`). A version that fails is reported; the model keeps serving.
    func load(_ request: Request, _ ctx: BasicRequestContext) async throws -> Response {
        let name = try modelName(ctx)
        var req = request
        let body = try await req.collectBody(upTo: 1 << 16)
        var makeDefault: Int?
        if body.readableBytes > 0 {
            let obj = try? JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any]
            guard let obj else { throw APIError(status: .badRequest, message: "bad JSON: the body must be an object") }
            if let p = obj["parameters"] as? [String: Any], let d = p["default_version"] {
                guard let v = (d as? NSNumber)?.intValue ?? (d as? String).flatMap({ Int($0) }), v > 0 else {
                    throw APIError(
                        status: .badRequest, message: "parameters.default_version: '\(d)' is not a version number")
                }
                makeDefault = v
            }
        }
        guard FileManager.default.fileExists(atPath: repo.root + "/" + name) else {
            throw APIError(status: .notFound, message: "unknown model '\(name)': no folder \(repo.root)/\(name)")
        }
        let repo = self.repo, logger = self.logger, wanted = makeDefault
        let events: [LoadEvent] = try await withCheckedThrowingContinuation { c in
            DispatchQueue.global().async {
                do {
                    let log: (String) -> Void = { logger.info("load request: \($0)") }
                    if let v = wanted {
                        guard
                            repo.entry(name)?.versions[v] != nil
                                || FileManager.default.fileExists(atPath: "\(repo.root)/\(name)/\(v)/model.cmodel")
                        else {
                            throw APIError(
                                status: .notFound, message: "model '\(name)' has no version \(v) in the repository")
                        }
                        // Load first: a version that fails never becomes the default.
                        let first = repo.reload(only: name, log: log)
                        guard repo.entry(name)?.versions[v] != nil else {
                            let why = repo.entry(name)?.failures[v] ?? "not loaded"
                            throw APIError(
                                status: .badRequest, message: "model '\(name)' version \(v) failed to load: \(why)")
                        }
                        c.resume(returning: first + (try repo.setDefault(name, version: v, log: log)))
                    } else {
                        c.resume(returning: repo.reload(only: name, log: log))
                    }
                } catch { c.resume(throwing: error) }
            }
        }
        let entry = repo.entry(name)
        let failed = events.filter { !$0.ok }
        let reply =
            "{\"name\":\(str(name)),\"default_version\":\(entry?.defaultVersion.map { "\"\($0)\"" } ?? "null"),"
            + "\"loaded\":[\((entry?.versions.keys.sorted() ?? []).map { "\"\($0)\"" }.joined(separator: ","))],"
            + "\"events\":[\(events.map { "{\"ok\":\($0.ok),\"message\":\(str($0.message))}" }.joined(separator: ","))]}"
        // Loading failed for what was asked: the old versions keep serving; say so with a 4xx.
        return json(failed.isEmpty ? .ok : .badRequest, reply)
    }

    /// The request's rows as the version's engine takes them (features, or user ids with K);
    /// the user names as sent, for the prediction log. Errors are 400s naming the field.
    func decodeInput(_ parsed: InferRequest, _ mv: ModelVersion) throws -> (Int, JobInput, [String]) {
        switch mv.kind {
        case .classifier:
            do {
                let f = try mv.decoder!.features(parsed)
                return (f.rows, .features(f.x), [])
            } catch let e as CortadoError { throw APIError(status: .badRequest, message: e.message) }
        case .recommender(_, _, _, let items):
            return try recommenderInput(parsed, mv, items: items)
        }
    }

    /// A recommender's request: one input `user` of shape [rows], `parameters.top_k`.
    func recommenderInput(_ parsed: InferRequest, _ mv: ModelVersion, items: Int) throws -> (Int, JobInput, [String]) {
        var userNames = [String]()
        guard parsed.inputs.count == 1 else {
            throw APIError(
                status: .badRequest, message: "inputs: a recommender takes one input 'user' of shape [rows]")
        }
        let t = parsed.inputs[0]
        guard t.shape.count == 1 || (t.shape.count == 2 && t.shape[1] == 1) else {
            throw APIError(status: .badRequest, message: "inputs[0].shape: \(t.shape); users are [rows]")
        }
        var ids = [Int32]()
        for i in 0..<t.data.count {
            guard let u = mv.userID(t.data[i]) else {
                throw APIError(
                    status: .badRequest,
                    message: "inputs[0].data[\(i)]: user \(t.data[i]) is not one the model knows")
            }
            ids.append(u)
            userNames.append({ if case .string(let s) = t.data[i] { return s } else { return String(u) } }())
        }
        let k = parsed.parameters["top_k"] ?? 10
        guard k >= 1, k <= Double(items - 1), k == k.rounded() else {
            throw APIError(status: .badRequest, message: "parameters.top_k: \(k) is not in 1...\(items - 1)")
        }
        return (ids.count, .users(ids, k: Int(k)), userNames)
    }

    /// Queues the rows on the version's batching queue under the request time limit; the
    /// output and the seconds the job waited. A full or stopped queue is a 503, a timeout 504.
    func run(_ mv: ModelVersion, rows: Int, input: JobInput) async throws -> (JobOutput, Double) {
        // A lone row of a small model: score it here, without the two thread hand-offs.
        if let out = mv.queue.runInline(rows: rows, input: input) { return (out, 0) }
        do {
            // The time limit covers the wait in the queue and the batch (the body is bounded
            // by size): past it the job is dropped from the queue and the client gets 504.
            let queue = mv.queue, limit = config.requestTimeout
            return try await withThrowingTaskGroup(of: (JobOutput, Double).self) { g in
                g.addTask { try await queue.submit(rows: rows, input: input) }
                g.addTask {
                    try await Task.sleep(nanoseconds: UInt64(limit * 1e9))
                    throw APIError(status: .gatewayTimeout, message: "request took longer than \(limit) s")
                }
                defer { g.cancelAll() }
                return try await g.next()!
            }
        } catch QueueError.full(let q, let limit) {
            metrics.rejected(model: mv.name, version: mv.version, reason: "queue_full")
            throw APIError(
                status: .serviceUnavailable,
                message:
                    "model '\(mv.name)' version \(mv.version): queue full (\(q) rows queued, limit \(limit)); retry later",
                retryAfter: 1)
        } catch QueueError.stopped {
            throw APIError(
                status: .serviceUnavailable, message: "model '\(mv.name)' version \(mv.version) was unloaded; retry",
                retryAfter: 1)
        } catch QueueError.cancelled {
            metrics.rejected(model: mv.name, version: mv.version, reason: "timeout")
            throw APIError(status: .gatewayTimeout, message: "request timed out in the queue")
        }
    }

    /// One line per row: the id, time, model, version, the row as sent (raw columns by name,
    /// or the feature vector, or the user) and its outputs.
    func logPredictions(
        _ log: PredictionLog, id: String, mv: ModelVersion, parsed: InferRequest, input: JobInput, rows: Int,
        userNames: [String], outputs: [String]
    ) {
        let time = ISO8601DateFormatter.string(
            from: Date(), timeZone: TimeZone(identifier: "UTC")!,
            formatOptions: [.withInternetDateTime, .withFractionalSeconds])
        var lines = [String]()
        for i in 0..<rows {
            let row: String
            switch input {
            case .users: row = "{\"user\":\(str(userNames[i]))}"
            case .features(let x):
                if parsed.inputs.count == 1, parsed.inputs[0].name == "input" || mv.decoder?.columns.isEmpty == true {
                    let d = x.count / rows
                    row = "{\(str(parsed.inputs[0].name)):[\(floats(x[(i * d)..<(i * d + d)]))]}"
                } else {
                    row =
                        "{" + parsed.inputs.map { "\(str($0.name)):\(scalar($0.data[i]))" }.joined(separator: ",") + "}"
                }
            }
            lines.append(
                "{\"id\":\(str(id)),\"row\":\(i),\"time\":\"\(time)\",\"model\":\(str(mv.name)),\"version\":\(mv.version),\"input\":\(row),\"output\":\(outputs[i])}"
            )
        }
        log.offer(lines)
    }
}

func modelName(_ ctx: BasicRequestContext) throws -> String {
    let name = ctx.parameters.get("name") ?? ""
    guard ModelRepository.validName(name) else {
        throw APIError(status: .notFound, message: "'\(name.prefix(60))' is not a model name (letters, digits, . _ -)")
    }
    return name
}

/// Cross-cutting concerns around every handler: the bearer token, errors as
/// `{"error": …}` JSON with their status, metrics and the one-line access log.
struct ServeMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let state: ServerState

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let t0 = monotonicSeconds()
        let path = request.uri.path
        var response: Response
        do {
            if let token = state.config.token, !path.hasPrefix("/v2/health/") {
                let got = request.headers.first(.authorization) ?? ""
                guard constantTimeEqual(got, "Bearer " + token) else {
                    throw APIError(
                        status: .unauthorized, message: "missing or wrong bearer token (Authorization: Bearer …)")
                }
            }
            response = try await next(request, context)
        } catch let e as APIError {
            response = errorResponse(e)
        } catch let e as HTTPResponseError {
            let msg: String
            switch e.status {
            case .contentTooLarge: msg = "request body larger than \(state.config.maxBodyBytes) bytes"
            case .notFound: msg = "no such endpoint: \(request.method) \(path)"
            case .methodNotAllowed: msg = "\(request.method) is not allowed on \(path)"
            default: msg = e.status.reasonPhrase
            }
            response = errorResponse(APIError(status: e.status, message: msg))
        } catch {
            response = errorResponse(APIError(status: .internalServerError, message: "\(error)"))
        }
        let secs = monotonicSeconds() - t0
        var model = "", version = ""
        if path.utf8.starts(with: "/v2/models/".utf8) {
            // (On the bytes: `String`'s character view would break graphemes on every request.)
            let u = path.utf8.dropFirst(11)
            let name = u.prefix { $0 != UInt8(ascii: "/") }
            model =
                ModelRepository.validName(name) && state.repo.entry(String(Substring(name))) != nil
                ? String(Substring(name)) : "unknown"
            version = response.headers.first(ModelServer.versionHeader) ?? ""
        }
        state.metrics.request(model: model, version: version, status: Int(response.status.code), seconds: secs)
        accessLog(
            method: request.method.rawValue, path: path, status: Int(response.status.code), seconds: secs,
            model: model, version: version, requestID: response.headers.first(ModelServer.requestIDHeader) ?? "")
        return response
    }

    func errorResponse(_ e: APIError) -> Response {
        var r = json(e.status, "{\"error\":\(str(e.message))}")
        if let s = e.retryAfter { r.headers[.retryAfter] = String(s) }
        if e.status == .unauthorized { r.headers[.wwwAuthenticate] = "Bearer" }
        return r
    }
}

/// The access log: one JSON object per request on standard error, written with one `write`
/// (whole lines even when requests finish together), e.g.
/// `{"time":"2026-12-04T20:19:35.123Z","method":"POST","path":"/v2/models/m/infer","status":200,"ms":0.412,"model":"m","version":"2","request_id":"r1"}`.
func accessLog(
    method: String, path: String, status: Int, seconds: Double, model: String, version: String,
    requestID: String
) {
    let line = accessLogLine(
        method: method, path: path, status: status, seconds: seconds, model: model, version: version,
        requestID: requestID)
    line.withUnsafeReadableBytes { b in
        guard let base = b.baseAddress else { return }
        var done = 0
        while done < b.count {
            let w = write(STDERR_FILENO, base + done, b.count - done)
            guard w > 0 else { return } // a closed stderr loses the log, never the request
            done += w
        }
    }
}

/// The access log's line, built in one buffer (no intermediate strings): the path and the
/// request id cut to 200 characters.
public func accessLogLine(
    method: String, path: String, status: Int, seconds: Double, model: String, version: String,
    requestID: String
) -> ByteBuffer {
    // `prefix(200)` counts characters; a text of at most 200 bytes has at most 200 of them.
    let path = path.utf8.count <= 200 ? path : String(path.prefix(200))
    let requestID = requestID.utf8.count <= 200 ? requestID : String(requestID.prefix(200))
    var b = ByteBufferAllocator().buffer(capacity: 192 + path.utf8.count + requestID.utf8.count + model.utf8.count)
    b.writeStaticString("{\"time\":\"")
    b.writeUTCTimestamp()
    b.writeStaticString("\",\"method\":")
    b.writeJSONString(method)
    b.writeStaticString(",\"path\":")
    b.writeJSONString(path)
    b.writeStaticString(",\"status\":")
    b.writeDecimal(status)
    b.writeStaticString(",\"ms\":")
    b.writeMilliseconds(seconds)
    b.writeStaticString(",\"model\":")
    b.writeJSONString(model)
    b.writeStaticString(",\"version\":")
    b.writeJSONString(version)
    b.writeStaticString(",\"request_id\":")
    b.writeJSONString(requestID)
    b.writeStaticString("}\n")
    return b
}

extension ByteBuffer {
    /// Seconds as milliseconds with 3 decimals ("0.412").
    mutating func writeMilliseconds(_ seconds: Double) {
        let us = Int((seconds * 1e6).rounded())
        writeDecimal(us / 1000)
        writeInteger(UInt8(ascii: "."))
        writePadded(us % 1000, width: 3)
    }

    /// Now, UTC, to the millisecond: `2026-12-04T20:19:35.123Z`.
    mutating func writeUTCTimestamp() {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = ts.tv_sec, tm = tm()
        gmtime_r(&t, &tm)
        writeDecimal(Int(tm.tm_year) + 1900)
        writeInteger(UInt8(ascii: "-"))
        writePadded(Int(tm.tm_mon) + 1, width: 2)
        writeInteger(UInt8(ascii: "-"))
        writePadded(Int(tm.tm_mday), width: 2)
        writeInteger(UInt8(ascii: "T"))
        writePadded(Int(tm.tm_hour), width: 2)
        writeInteger(UInt8(ascii: ":"))
        writePadded(Int(tm.tm_min), width: 2)
        writeInteger(UInt8(ascii: ":"))
        writePadded(Int(tm.tm_sec), width: 2)
        writeInteger(UInt8(ascii: "."))
        writePadded(Int(ts.tv_nsec / 1_000_000), width: 3)
        writeInteger(UInt8(ascii: "Z"))
    }
}

/// A version-4 UUID as text, for requests that bring no id. Foundation's `UUID()` opened and
/// closed /dev/urandom on every call here, and the system generator still made two `getrandom`
/// calls per request (strace); so the process draws one random key and each id mixes it with a
/// counter through SplitMix64's finalizer (a bijection: ids in one process differ; across
/// processes they are as unlikely to meet as random ones).
public func randomRequestID() -> String {
    let c = requestIDCounter.add(1, ordering: .relaxed).oldValue
    let hi = splitMix(requestIDKey.0 &+ c) & 0xFFFF_FFFF_FFFF_0FFF | 0x4000
    let lo = splitMix(requestIDKey.1 &+ c) & 0x3FFF_FFFF_FFFF_FFFF | 0x8000_0000_0000_0000
    return String(unsafeUninitializedCapacity: 36) { out in
        var n = 0
        for (i, shift) in stride(from: 124, through: 0, by: -4).enumerated() {
            if i == 8 || i == 12 || i == 16 || i == 20 {
                out[n] = UInt8(ascii: "-")
                n += 1
            }
            let word = shift >= 64 ? hi >> UInt64(shift - 64) : lo >> UInt64(shift)
            let d = UInt8(truncatingIfNeeded: word & 0xF)
            out[n] = d < 10 ? UInt8(ascii: "0") + d : UInt8(ascii: "A") + d - 10
            n += 1
        }
        return n
    }
}

private let requestIDKey: (UInt64, UInt64) = {
    var g = SystemRandomNumberGenerator()
    return (g.next(), g.next())
}()
private let requestIDCounter = Atomic<UInt64>(0)

private func splitMix(_ x: UInt64) -> UInt64 {
    var z = x &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

func constantTimeEqual(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8), y = Array(b.utf8)
    guard x.count == y.count else { return false }
    var d: UInt8 = 0
    for i in 0..<x.count { d |= x[i] ^ y[i] }
    return d == 0
}

func json(_ status: HTTPResponse.Status, _ body: String) -> Response {
    var headers = HTTPFields()
    headers[.contentType] = "application/json"
    return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: body)))
}

/// A response for a model version: its number in the `X-Model-Version` header too.
func versioned(_ status: HTTPResponse.Status, _ body: String, _ v: ModelVersion) -> Response {
    var r = json(status, body)
    r.headers[ModelServer.versionHeader] = String(v.version)
    return r
}

/// A JSON string literal.
func str(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if u.value < 0x20 { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
        }
    }
    return out + "\""
}

/// Floats as their shortest round-tripping decimal text (what `Float(text)` reads back
/// bit for bit), comma-separated.
func floats(_ v: ArraySlice<Float>) -> String {
    v.map { $0.isFinite ? $0.description : "null" }.joined(separator: ",")
}

func scalar(_ s: JSONScalar) -> String {
    switch s {
    case .number(let x): return x.isFinite ? "\(x)" : "null"
    case .string(let t): return str(t)
    case .bool(let b): return "\(b)"
    case .null: return "null"
    }
}
