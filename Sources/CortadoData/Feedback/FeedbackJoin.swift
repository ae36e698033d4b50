import CortadoCore
import Foundation

/// `cortado feedback join`: the server's prediction log + labels that arrive later → a labeled
/// span in the raw format the model was trained on, and a drift report against the training
/// manifest. Rows are joined on (request id, row); what cannot be joined is counted, never
/// silently dropped.
public struct FeedbackJoin {
    public var predictionLogs: [String]
    public var labels: String
    public var manifestPath: String
    public var out: String
    /// Only log lines of this model (a log may hold several).
    public var model: String?
    /// A label that arrives more than this many seconds after its prediction is late: counted
    /// and left out (it may describe a different world than the one the model saw).
    public var maxLabelDelay: Double?

    public init(predictionLogs: [String], labels: String, manifestPath: String, out: String) {
        self.predictionLogs = predictionLogs; self.labels = labels; self.manifestPath = manifestPath; self.out = out
    }

    /// What the join did, in numbers.
    public struct Counts: Codable, Equatable {
        public var logLines = 0
        public var unreadableLines = 0
        public var otherModelLines = 0
        public var duplicatePredictions = 0
        public var predictions = 0 // distinct (id, row)
        public var labelRows = 0
        public var duplicateLabels = 0
        public var conflictingLabels = 0
        public var labelsWithoutPrediction = 0
        public var lateLabels = 0
        public var joined = 0
        public var unlabeled = 0
        public var versions: [String: Int] = [:] // model version → joined rows
        /// The served model's accuracy on the joined rows: its prediction against the label.
        public var servedAccuracy: Double?

        enum CodingKeys: String, CodingKey {
            case logLines = "log_lines", unreadableLines = "unreadable_lines", otherModelLines = "other_model_lines"
            case duplicatePredictions = "duplicate_predictions", predictions, labelRows = "label_rows"
            case duplicateLabels = "duplicate_labels", conflictingLabels = "conflicting_labels"
            case labelsWithoutPrediction = "labels_without_prediction", lateLabels = "late_labels", joined, unlabeled
            case versions, servedAccuracy = "served_accuracy"
        }

        public var line: String {
            "joined \(joined) of \(predictions) predicted rows (\(unlabeled) unlabeled); labels: \(labelRows) rows, \(duplicateLabels) duplicate, \(conflictingLabels) conflicting (dropped), \(lateLabels) late (dropped), \(labelsWithoutPrediction) without a prediction; log: \(logLines) lines, \(duplicatePredictions) duplicate, \(otherModelLines) other models, \(unreadableLines) unreadable"
                + (servedAccuracy.map { String(format: "; served accuracy on the joined rows %.4f", $0) } ?? "")
        }
    }

    struct Key: Hashable { var id: String; var row: Int }

    /// One logged prediction: its raw input (a feature vector or named columns) and output.
    struct Prediction {
        var time: Date?
        var version: Int
        var vector: [Float]?
        var columns: [String: String?]?
        var predicted: Int?
    }

    struct Label { var value: String; var line: Int; var time: Date? }

    public struct Result {
        public var counts: Counts
        public var drift: DriftReport
    }

    public func run() throws -> Result {
        let manifest = try DatasetManifest.load(manifestPath)
        guard manifest.task == "classification", !manifest.classes.isEmpty else {
            throw CortadoError.usage("\(manifestPath): feedback join needs a classification data set")
        }
        var counts = Counts()
        let (predictions, order) = try readLogs(manifest: manifest, counts: &counts)
        let labels = try readLabels(classes: manifest.classes, counts: &counts)
        var joined = [(Key, Prediction, Int)]()
        for key in order {
            let p = predictions[key]!
            guard let l = labels[key] else { continue }
            if let delay = maxLabelDelay, let t = l.time, let pt = p.time, t.timeIntervalSince(pt) > delay {
                counts.lateLabels += 1
                continue
            }
            joined.append((key, p, try classIndex(l.value, classes: manifest.classes, at: "\(self.labels):\(l.line)")))
            counts.versions[String(p.version), default: 0] += 1
        }
        counts.labelsWithoutPrediction = labels.keys.filter { predictions[$0] == nil }.count
        counts.joined = joined.count
        let agreed = joined.filter { $0.1.predicted == $0.2 }.count
        counts.servedAccuracy = joined.isEmpty ? nil : Double(agreed) / Double(joined.count)
        counts.unlabeled = counts.predictions - joined.count - counts.lateLabels
        guard !joined.isEmpty else {
            throw CortadoError.data("\(self.labels): no label matches a logged prediction (\(counts.line))")
        }
        try writeSpan(joined, manifest: manifest)
        let drift = report(Array(predictions.values), joined: joined, manifest: manifest)
        return Result(counts: counts, drift: drift)
    }

    // MARK: reading

    func readLogs(manifest: DatasetManifest, counts: inout Counts) throws -> ([Key: Prediction], [Key]) {
        var predictions = [Key: Prediction](), order = [Key]()
        let iso = ISO8601DateFormatter()
        iso.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        for path in predictionLogs {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw CortadoError.usage("\(path): no such prediction log")
            }
            for line in data.split(separator: UInt8(ascii: "\n")) where !line.isEmpty {
                counts.logLines += 1
                // A torn last line (a server killed mid-write) is counted, not fatal.
                guard let obj = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any],
                    let id = obj["id"] as? String, let row = obj["row"] as? Int, let version = obj["version"] as? Int,
                    let input = obj["input"] as? [String: Any]
                else {
                    counts.unreadableLines += 1
                    continue
                }
                if let model, obj["model"] as? String != model {
                    counts.otherModelLines += 1
                    continue
                }
                let key = Key(id: id, row: row)
                if predictions[key] != nil {
                    counts.duplicatePredictions += 1
                    continue
                }
                var p = Prediction(
                    time: (obj["time"] as? String).flatMap { iso.date(from: $0) }, version: version,
                    predicted: (obj["output"] as? [String: Any])?["predicted"] as? Int)
                if input.count == 1, let v = input.values.first as? [NSNumber] {
                    guard v.count == manifest.featureCount else {
                        throw CortadoError.data(
                            "\(path): request \(id) row \(row) has \(v.count) features; \(manifestPath) has \(manifest.featureCount)"
                        )
                    }
                    p.vector = v.map { $0.floatValue }
                } else {
                    p.columns = input.mapValues { v -> String? in
                        if v is NSNull { return nil }
                        if let s = v as? String { return s }
                        return "\(v)"
                    }
                }
                predictions[key] = p
                order.append(key)
            }
        }
        counts.predictions = order.count
        return (predictions, order)
    }

    /// LABELS.csv: a header with `id` and `label`, optionally `row` (default 0) and `time`
    /// (ISO 8601, when the label arrived). Labels are class names or class numbers.
    func readLabels(classes: [String], counts: inout Counts) throws -> [Key: Label] {
        let csv = try CSVTokenizer(path: labels)
        guard try csv.next() else {
            throw CortadoError.data("\(labels): empty (expected a header: id,label[,row][,time])")
        }
        let header = (0..<csv.fieldCount).map { csv.string($0).trimmingCharacters(in: .whitespaces) }
        guard let idCol = header.firstIndex(of: "id"), let labelCol = header.firstIndex(of: "label") else {
            throw CortadoError.data("\(labels): header \(header) needs the columns 'id' and 'label'")
        }
        let rowCol = header.firstIndex(of: "row"), timeCol = header.firstIndex(of: "time")
        let iso = ISO8601DateFormatter()
        var out = [Key: Label](), conflicting = Set<Key>()
        while try csv.next() {
            guard csv.fieldCount == header.count else {
                throw CortadoError.data("\(csv.here): \(csv.fieldCount) fields, the header has \(header.count)")
            }
            counts.labelRows += 1
            var row = 0
            if let rowCol {
                guard let r = Int(csv.string(rowCol)), r >= 0 else {
                    throw CortadoError.data("\(csv.here): row '\(csv.string(rowCol))' is not a row number")
                }
                row = r
            }
            var time: Date?
            if let timeCol {
                guard let t = iso.date(from: csv.string(timeCol)) else {
                    throw CortadoError.data(
                        "\(csv.here): time '\(csv.string(timeCol))' is not ISO 8601 (2026-12-04T10:00:00Z)")
                }
                time = t
            }
            let value = csv.string(labelCol)
            _ = try classIndex(value, classes: classes, at: csv.here)
            let key = Key(id: csv.string(idCol), row: row)
            if let seen = out[key] {
                counts.duplicateLabels += 1
                if seen.value != value { conflicting.insert(key) }
                continue
            }
            out[key] = Label(value: value, line: csv.recordLine, time: time)
        }
        // Two different labels for one row: neither can be trusted.
        for key in conflicting { out[key] = nil }
        counts.conflictingLabels = conflicting.count
        return out
    }

    func classIndex(_ value: String, classes: [String], at place: String) throws -> Int {
        if let i = classes.firstIndex(of: value) { return i }
        if let i = Int(value), classes.indices.contains(i) { return i }
        throw CortadoError.data(
            "\(place): label '\(value)' is neither a class name nor a class number 0..<\(classes.count)")
    }

    // MARK: writing

    /// The span: `request_id,row,model_version,predicted,LABEL,` then the inputs — `x0…` for a
    /// feature vector, the raw columns by name for tabular models. Labels are class names.
    func writeSpan(_ rows: [(Key, Prediction, Int)], manifest: DatasetManifest) throws {
        let labelName = manifest.labelColumn?.name ?? "label"
        let inputNames: [String]
        if rows[0].1.vector != nil {
            inputNames = (0..<manifest.featureCount).map { "x\($0)" }
        } else {
            inputNames = (manifest.columns ?? []).filter { $0.role != "label" }.map(\.name)
        }
        var text =
            (["request_id", "row", "model_version", "predicted", labelName] + inputNames).map(Self.quote)
            .joined(separator: ",") + "\n"
        for (key, p, label) in rows {
            var fields = [
                key.id, String(key.row), String(p.version), p.predicted.map { manifest.classes[safe: $0] ?? "" } ?? "",
                manifest.classes[label]
            ]
            if let v = p.vector {
                fields += v.map { "\($0)" }
            } else {
                fields += inputNames.map { (p.columns?[$0] ?? nil) ?? "" }
            }
            text += fields.map(Self.quote).joined(separator: ",") + "\n"
        }
        try AtomicFile.write(Data(text.utf8), to: out)
    }

    static func quote(_ s: String) -> String {
        guard s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return s }
        return "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// Drift of every logged row's inputs and predicted classes, and of the labels that joined.
    func report(_ all: [Prediction], joined: [(Key, Prediction, Int)], manifest: DatasetManifest) -> DriftReport {
        var features = [DriftReport.Feature]()
        if let profile = manifest.profile {
            let vectors = all.compactMap(\.vector)
            if !vectors.isEmpty {
                features = Drift.images(vectors.flatMap { $0 }, width: manifest.featureCount, profile: profile)
            }
        }
        let tables = all.compactMap(\.columns)
        if !tables.isEmpty { features += Drift.table(tables, manifest: manifest) }
        var labels: DriftReport.Mix?, predicted: DriftReport.Mix?
        if let train = manifest.profile?.labelCounts {
            var l = [Int](repeating: 0, count: train.count), p = l
            for (_, _, y) in joined where y < l.count { l[y] += 1 }
            for x in all { if let c = x.predicted, c >= 0, c < p.count { p[c] += 1 } }
            labels = Drift.mix(l, training: train)
            predicted = Drift.mix(p, training: train)
        }
        var drifted = features.filter { $0.severity == "major" }.map(\.name)
        if labels?.severity == "major" { drifted.append("labels") }
        if predicted?.severity == "major" { drifted.append("predictions") }
        return DriftReport(
            reference: manifestPath, rows: all.count, features: features, labels: labels, predictions: predicted,
            drifted: drifted)
    }
}

extension Array {
    subscript(safe i: Int) -> Element? { indices.contains(i) ? self[i] : nil }
}
