import CortadoCore
import Foundation

/// How far new data has moved from the training split, per feature and for the class mix:
/// PSI binned at the training deciles, KS at the deciles, the mean's shift in training standard
/// deviations; for tabular columns also the missing rate and the share of categories training
/// never saw. JSON for machines, `lines` for people.
public struct DriftReport: Codable, Equatable {
    public static let moderatePSI = 0.1
    public static let majorPSI = 0.25
    /// Unseen categories or a missing-rate change above this share is flagged too.
    public static let majorShare = 0.05

    public struct Feature: Codable, Equatable {
        public var name: String
        public var kind: String // "image", "numeric", "categorical"
        public var rows: Int
        public var psi: Double?
        public var ksAtDeciles: Double?
        public var trainMean: Double?, newMean: Double?
        public var trainStd: Double?, newStd: Double?
        /// (new mean − training mean) / training standard deviation.
        public var meanShiftStd: Double?
        public var trainMissingRate: Double?, newMissingRate: Double?
        public var unseenShare: Double?
        public var unseenExamples: [String]?
        public var severity: String // "stable", "moderate", "major"

        enum CodingKeys: String, CodingKey {
            case name, kind, rows, psi, ksAtDeciles = "ks_at_deciles", trainMean = "train_mean", newMean = "new_mean"
            case trainStd = "train_std", newStd = "new_std", meanShiftStd = "mean_shift_std"
            case trainMissingRate = "train_missing_rate", newMissingRate = "new_missing_rate"
            case unseenShare = "unseen_share", unseenExamples = "unseen_examples", severity
        }
    }

    /// A class mix against the training split's.
    public struct Mix: Codable, Equatable {
        public var rows: Int
        public var psi: Double
        public var trainShares: [Double]
        public var newShares: [Double]
        public var severity: String
        enum CodingKeys: String, CodingKey {
            case rows, psi, trainShares = "train_shares", newShares = "new_shares", severity
        }
    }

    public var format = "cortado-drift"
    public var formatVersion = 1
    public var reference: String // the training manifest
    public var rows: Int
    public var features: [Feature]
    /// The labels that arrived (joined rows) against the training labels.
    public var labels: Mix?
    /// The classes the model predicted (every logged row) against the training labels.
    public var predictions: Mix?
    /// Features (and "labels"/"predictions") whose shift is major.
    public var drifted: [String]

    enum CodingKeys: String, CodingKey {
        case format, formatVersion = "format_version", reference, rows, features, labels, predictions, drifted
    }

    static func severity(psi: Double) -> String {
        psi >= majorPSI ? "major" : psi >= moderatePSI ? "moderate" : "stable"
    }

    /// The report in words, one line per feature or mix.
    public var lines: [String] {
        var out = ["drift against \(reference) (\(rows) rows)"]
        for f in features {
            var parts = [String]()
            if let p = f.psi { parts.append(String(format: "PSI %.3f", p)) }
            if let k = f.ksAtDeciles { parts.append(String(format: "KS %.3f", k)) }
            if let a = f.trainMean, let b = f.newMean {
                parts.append(String(format: "mean %.4g -> %.4g", a, b))
                if let s = f.meanShiftStd { parts.append(String(format: "(%+.2f sd)", s)) }
            }
            if let a = f.trainMissingRate, let b = f.newMissingRate {
                parts.append(String(format: "missing %.1f%% -> %.1f%%", 100 * a, 100 * b))
            }
            if let u = f.unseenShare { parts.append(String(format: "unseen categories %.1f%%", 100 * u)) }
            out.append("\(f.name) (\(f.kind)): \(f.severity): " + parts.joined(separator: ", "))
        }
        for (name, mix) in [("labels", labels), ("predicted classes", predictions)] {
            guard let mix else { continue }
            out.append(
                String(
                    format: "\(name) (\(mix.rows) rows): \(mix.severity): PSI %.3f against the training mix", mix.psi))
        }
        out.append(drifted.isEmpty ? "no major shift" : "major shift in: " + drifted.joined(separator: ", "))
        return out
    }
}

public enum Drift {
    /// PSI of observed counts against expected shares; empty bins count as 0.0001.
    public static func psi(observed: [Int], expected: [Double]) -> Double {
        let total = Double(max(observed.reduce(0, +), 1))
        let floor = 1e-4
        var s = 0.0
        for (o, e) in zip(observed, expected) {
            let a = max(Double(o) / total, floor), b = max(e, floor)
            s += (a - b) * log(a / b)
        }
        return s
    }

    /// One numeric feature against its training summary.
    public static func numeric(
        name: String, kind: String, values: [Double], reference ref: DistributionSummary, missing: Int = 0,
        trainMissingRate: Double? = nil
    ) -> DriftReport.Feature {
        var s = values
        let new = DistributionSummary(sorting: &s)
        let psi = ref.psi(values)
        var f = DriftReport.Feature(
            name: name, kind: kind, rows: values.count + missing, psi: psi, ksAtDeciles: ref.ksAtDeciles(values),
            trainMean: ref.mean, newMean: new.mean, trainStd: ref.std, newStd: new.std,
            meanShiftStd: ref.std > 0 ? (new.mean - ref.mean) / ref.std : nil, severity: DriftReport.severity(psi: psi))
        if let trainMissingRate {
            f.trainMissingRate = trainMissingRate
            f.newMissingRate = Double(missing) / Double(max(values.count + missing, 1))
            if abs(f.newMissingRate! - trainMissingRate) > DriftReport.majorShare { f.severity = "major" }
        }
        return f
    }

    /// A class mix (counts per class) against the training counts.
    public static func mix(_ counts: [Int], training: [Int]) -> DriftReport.Mix {
        let total = Double(max(training.reduce(0, +), 1)), n = counts.reduce(0, +)
        let expected = training.map { Double($0) / total }
        let psi = psi(observed: counts, expected: expected)
        return DriftReport.Mix(
            rows: n, psi: psi, trainShares: expected, newShares: counts.map { Double($0) / Double(max(n, 1)) },
            severity: DriftReport.severity(psi: psi))
    }

    /// Images (rows × width, as the model sees them) against the training profile.
    public static func images(_ x: [Float], width: Int, profile: DataProfile) -> [DriftReport.Feature] {
        let stats = x.withUnsafeBufferPointer { DataProfile.imageStatistics($0, width: width) }
        return zip(DataProfile.imageFeatures, stats).compactMap { name, values in
            profile.features[name].map { numeric(name: name, kind: "image", values: values, reference: $0) }
        }
    }

    /// Tabular rows (raw values by column name; nil or a missing marker is missing) against the
    /// manifest's columns.
    public static func table(_ rows: [[String: String?]], manifest: DatasetManifest) -> [DriftReport.Feature] {
        var out = [DriftReport.Feature]()
        let missingMarkers = Set(manifest.csv?.missingValues ?? [""])
        for c in manifest.columns ?? [] where c.role == "feature" {
            let raw = rows.map { r -> String? in
                guard let v = r[c.name] ?? nil, !missingMarkers.contains(v) else { return nil }
                return v
            }
            let missing = raw.filter { $0 == nil }.count
            let trainRate = c.count.map { Double(c.missing ?? 0) / Double(max($0 + (c.missing ?? 0), 1)) }
            switch c.schema.type {
            case .numeric:
                guard let ref = manifest.profile?.features[c.name] else { continue }
                let values = raw.compactMap { $0.flatMap(Double.init) }
                out.append(
                    numeric(
                        name: c.name, kind: "numeric", values: values, reference: ref,
                        missing: rows.count - values.count, trainMissingRate: trainRate))
            case .categorical, .id:
                out.append(categorical(c, raw: raw, missing: missing, trainMissingRate: trainRate))
            case .ignore: break
            }
        }
        return out
    }

    static func categorical(_ c: ColumnInfo, raw: [String?], missing: Int, trainMissingRate: Double?)
        -> DriftReport.Feature
    {
        let vocab = Set(c.vocabulary ?? [])
        let present = raw.compactMap { $0 }
        let unseen = present.filter { !vocab.contains($0) }
        var f = DriftReport.Feature(
            name: c.name, kind: "categorical", rows: raw.count,
            unseenShare: Double(unseen.count) / Double(max(present.count, 1)),
            unseenExamples: Array(Set(unseen).sorted().prefix(10)), severity: "stable")
        if let counts = c.vocabularyCounts, let vocabulary = c.vocabulary {
            // PSI over the training categories plus one bin for everything unseen.
            let index = Dictionary(uniqueKeysWithValues: vocabulary.enumerated().map { ($1, $0) })
            var observed = [Int](repeating: 0, count: vocabulary.count + 1)
            for v in present { observed[index[v] ?? vocabulary.count] += 1 }
            let total = Double(max(counts.reduce(0, +), 1))
            f.psi = psi(observed: observed, expected: counts.map { Double($0) / total } + [0])
            f.severity = DriftReport.severity(psi: f.psi!)
        }
        if let trainMissingRate {
            f.trainMissingRate = trainMissingRate
            f.newMissingRate = Double(missing) / Double(max(raw.count, 1))
            if abs(f.newMissingRate! - trainMissingRate) > DriftReport.majorShare { f.severity = "major" }
        }
        if f.unseenShare! > DriftReport.majorShare { f.severity = "major" }
        return f
    }
}
