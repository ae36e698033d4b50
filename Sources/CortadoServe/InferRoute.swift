import CortadoCore
import CortadoInfer
import Foundation
import HTTPTypes
import Hummingbird

/// `POST /v2/models/NAME[/versions/V]/infer` without the router: the one path that carries
/// traffic is matched on its bytes and handed to the same middleware and handler the router
/// would call. Hummingbird's trie router resolved the path, built a parameter dictionary and
/// the endpoint's path description on every request. Everything else, and any infer path not
/// in this plain form (odd characters, empty segments, a non-numeric version), goes to the
/// router, so each path answers as it did.
struct InferResponder: HTTPResponder {
    typealias Context = BasicRequestContext
    let router: RouterResponder<BasicRequestContext>
    let middleware: ServeMiddleware
    let state: ServerState

    func respond(to request: Request, context: Context) async throws -> Response {
        guard request.method == .post, let (name, version) = ModelServer.inferTarget(request.uri.path) else {
            return try await router.respond(to: request, context: context)
        }
        let state = self.state
        return try await middleware.handle(request, context: context) { req, _ in
            try await state.infer(req, name: name, version: version)
        }
    }
}

extension HTTPFields {
    /// The first value of the field `name`. (The subscript getter joins every value of the name
    /// into a new string, which cost each infer request more than its four header reads needed.)
    func first(_ name: HTTPField.Name) -> String? {
        for field in self where field.name == name { return field.value }
        return nil
    }
}

extension ModelServer {
    /// The model name and the version's text of `/v2/models/NAME/infer` or
    /// `/v2/models/NAME/versions/DIGITS/infer` with a valid NAME; nil for any other path.
    public static func inferTarget(_ path: String) -> (String, String?)? {
        let u = path.utf8
        let prefix = "/v2/models/".utf8
        guard u.starts(with: prefix) else { return nil }
        let nameStart = u.index(u.startIndex, offsetBy: prefix.count)
        guard let nameEnd = u[nameStart...].firstIndex(of: UInt8(ascii: "/")),
            ModelRepository.validName(u[nameStart..<nameEnd])
        else { return nil }
        let name = String(path[nameStart..<nameEnd])
        let rest = u[nameEnd...]
        if rest.elementsEqual("/infer".utf8) { return (name, nil) }
        let versions = "/versions/".utf8
        guard rest.starts(with: versions) else { return nil }
        let vStart = u.index(nameEnd, offsetBy: versions.count)
        guard let vEnd = u[vStart...].firstIndex(of: UInt8(ascii: "/")), vEnd > vStart,
            u[vStart..<vEnd].allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
            u[vEnd...].elementsEqual("/infer".utf8)
        else { return nil }
        return (name, String(path[vStart..<vEnd]))
    }
}

extension ServerState {
    /// Runs an infer request on the version the path names and answers with its outputs;
    /// errors are `APIError`s (400 naming the field, 404, 413, 503, 504).
    func infer(_ request: Request, name: String, version: String?) async throws -> Response {
        let mv = try resolve(name: name, version: version)
        // The binary tensor data extension: the JSON is the body's first this many bytes.
        let headerLength = try request.headers.first(ModelServer.headerLengthHeader).map { text in
            guard let n = Int(text), n >= 0 else {
                throw APIError(
                    status: .badRequest,
                    message: "Inference-Header-Content-Length: '\(text.prefix(20))' is not a byte count")
            }
            return n
        }
        // One body part (the usual case) comes back as it is, without a copy.
        let body = try await request.body.collect(upTo: config.maxBodyBytes)
        let parsed: InferRequest
        do {
            parsed = try body.withUnsafeReadableBytes { try InferRequest.parse(bytes: $0, headerLength: headerLength) }
        } catch let e as CortadoError {
            throw APIError(status: .badRequest, message: e.message)
        }
        let id = parsed.id ?? randomRequestID()
        let classifier = { if case .classifier = mv.kind { return true } else { return false } }()
        for name in parsed.classCounts.keys where name != "probabilities" || !classifier {
            throw APIError(
                status: .badRequest,
                message:
                    "outputs '\(name.prefix(40))': parameters.classification applies only to a classifier's 'probabilities'"
            )
        }
        let (rows, input, userNames) = try decodeInput(parsed, mv)
        guard rows > 0 else { throw APIError(status: .badRequest, message: "inputs[0].shape: the request has no rows") }
        let (output, waited) = try await run(mv, rows: rows, input: input)
        metrics.queueTime(model: mv.name, version: mv.version, seconds: waited)
        // The per-row texts are made only for the requests the prediction log samples.
        if let log = predictions, log.sample() {
            logPredictions(
                log, id: id, mv: mv, parsed: parsed, input: input, rows: rows, userNames: userNames,
                outputs: rowOutputs(output, mv, rows: rows))
        }
        let (out, jsonLength) = responseBody(output, mv, id: id, rows: rows, request: parsed)
        var headers = HTTPFields()
        headers.reserveCapacity(7) // and Hummingbird's content-length, date, server
        headers.append(
            HTTPField(name: .contentType, value: jsonLength == nil ? "application/json" : "application/octet-stream"))
        headers.append(HTTPField(name: ModelServer.versionHeader, value: String(mv.version)))
        headers.append(HTTPField(name: ModelServer.requestIDHeader, value: id))
        if let jsonLength {
            headers.append(HTTPField(name: ModelServer.headerLengthHeader, value: String(jsonLength)))
        }
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: out))
    }

    /// `{"model_name":…,"model_version":"V","id":…,"outputs":[…]}` with the output tensors the
    /// request asked for (`outputs`; none named: all), written into the buffer the response
    /// sends. An output the request wants as binary (`InferRequest.wantsBinary`) carries
    /// `parameters.binary_data_size` instead of `data` and its bytes follow the JSON, in output
    /// order; `headerLength` is then the JSON's length (`Inference-Header-Content-Length`).
    func responseBody(
        _ output: JobOutput, _ mv: ModelVersion, id: String, rows: Int, request r: InferRequest
    ) -> (body: ByteBuffer, headerLength: Int?) {
        var values = 0
        switch output {
        case .classes(let p, _): values = p.count
        case .topK(_, let scores): values = scores.reduce(0) { $0 + $1.count }
        }
        var b = ByteBufferAllocator().buffer(
            capacity: 256 + id.utf8.count + mv.name.utf8.count + 32 * values + 40 * rows)
        b.writeStaticString("{\"model_name\":")
        b.writeJSONString(mv.name)
        b.writeStaticString(",\"model_version\":\"")
        b.writeDecimal(mv.version)
        b.writeStaticString("\",\"id\":")
        b.writeJSONString(id)
        b.writeStaticString(",\"outputs\":[")
        var first = true, tail: ByteBuffer?
        func wanted(_ name: String) -> Bool { r.outputs.isEmpty || r.outputs.contains(name) }
        /// One output tensor of shape [d0] or [d0, d1]: its values as JSON, or its size here
        /// and its bytes in `tail`.
        func tensor(
            _ name: String, _ datatype: StaticString, _ d0: Int, _ d1: Int?, binarySize: Int,
            json: (inout ByteBuffer) -> Void, binary: (inout ByteBuffer) -> Void
        ) {
            if !first { b.writeInteger(UInt8(ascii: ",")) }
            first = false
            b.writeStaticString("{\"name\":")
            b.writeJSONString(name)
            b.writeStaticString(",\"datatype\":\"")
            b.writeStaticString(datatype)
            b.writeStaticString("\",\"shape\":[")
            b.writeDecimal(d0)
            if let d1 {
                b.writeInteger(UInt8(ascii: ","))
                b.writeDecimal(d1)
            }
            if r.wantsBinary(name) {
                b.writeStaticString("],\"parameters\":{\"binary_data_size\":")
                b.writeDecimal(binarySize)
                b.writeStaticString("}}")
                if tail == nil { tail = ByteBufferAllocator().buffer(capacity: 8 * values + 64 * rows) }
                binary(&tail!) // (in place: a copy out and back would copy the bytes so far)
            } else {
                b.writeStaticString("],\"data\":[")
                json(&b)
                b.writeStaticString("]}")
            }
        }
        func floats(_ name: String, _ d1: Int, _ v: ArraySlice<Float>) {
            tensor(name, "FP32", rows, d1, binarySize: 4 * v.count) {
                $0.writeJSONFloats(v)
            } binary: {
                $0.writeBinaryFloats(v)
            }
        }
        func strings(_ name: String, _ d1: Int?, _ v: [String]) {
            tensor(name, "BYTES", rows, d1, binarySize: BinaryTensor.size(v)) {
                $0.writeJSONStrings(v)
            } binary: {
                $0.writeBinaryStrings(v)
            }
        }
        switch output {
        case .classes(let p, let predicted):
            guard case .classifier(let classes) = mv.kind else { break }
            if wanted("probabilities") {
                if let k = r.classCounts["probabilities"] {
                    let top = min(k, classes.count)
                    strings("probabilities", top, topClasses(p, classes, k: top))
                } else {
                    floats("probabilities", classes.count, p[...])
                }
            }
            if wanted("predicted") {
                tensor("predicted", "INT64", rows, nil, binarySize: 8 * rows) { b in
                    for (i, c) in predicted.enumerated() {
                        if i > 0 { b.writeInteger(UInt8(ascii: ",")) }
                        b.writeDecimal(c)
                    }
                } binary: { b in
                    for c in predicted { b.writeInteger(Int64(c), endianness: .little) }
                }
            }
            if wanted("class") { strings("class", nil, predicted.map { classes[$0] }) }
        case .topK(let items, let scores):
            let k = items.map(\.count).max() ?? 0
            if wanted("items") { strings("items", k, items.flatMap { $0.map { mv.itemName($0) } }) }
            if wanted("scores") { floats("scores", k, scores.flatMap { $0 }[...]) }
        }
        b.writeStaticString("]}")
        guard var t = tail else { return (b, nil) }
        let headerLength = b.readableBytes
        b.writeBuffer(&t)
        return (b, headerLength)
    }

    /// The classification extension's answer: each row's `k` most probable classes, most
    /// probable first (ties: the lower index), as Triton writes them — `"%f:index:label"`.
    func topClasses(_ p: [Float], _ classes: [String], k: Int) -> [String] {
        let n = classes.count
        var out = [String]()
        out.reserveCapacity(p.count / max(n, 1) * k)
        for row in stride(from: 0, to: p.count, by: n) {
            let order = (0..<n).sorted { p[row + $0] > p[row + $1] || (p[row + $0] == p[row + $1] && $0 < $1) }
            for c in order.prefix(k) { out.append(String(format: "%f:%d:", Double(p[row + c]), c) + classes[c]) }
        }
        return out
    }

    /// Each row's outputs as JSON, for the prediction log.
    func rowOutputs(_ output: JobOutput, _ mv: ModelVersion, rows: Int) -> [String] {
        var perRow = [String](repeating: "", count: rows)
        switch output {
        case .classes(let p, let predicted):
            guard case .classifier(let classes) = mv.kind else { break }
            let k = classes.count
            for i in 0..<rows {
                perRow[i] =
                    "{\"predicted\":\(predicted[i]),\"class\":\(str(classes[predicted[i]])),\"probabilities\":[\(floats(p[(i * k)..<(i * k + k)]))]}"
            }
        case .topK(let items, let scores):
            for i in 0..<rows {
                let names = items[i].map { str(mv.itemName($0)) }
                perRow[i] = "{\"items\":[\(names.joined(separator: ","))],\"scores\":[\(floats(scores[i][...]))]}"
            }
        }
        return perRow
    }
}
