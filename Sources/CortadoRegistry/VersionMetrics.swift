import Foundation

/// `metrics.json` of a registry version: the run's figures and the measurements taken at push.
public struct VersionMetrics: Codable, Equatable {
    public var format = "cortado-metrics"
    public var formatVersion = 1
    /// "classification", "regression" or "recommendation".
    public var task: String
    /// The run's final metrics (summary.json): validation, and test per variant (fp32_accuracy,
    /// int8_model_accuracy, …).
    public var validation: [String: Double]
    public var test: [String: Double]
    /// Every variant measured at push on the test split (the compression table).
    public var variants: [VariantMetrics]
    public var deployed: String
    /// The fp32 (else deployed) classifier's confusion matrix on the test split; nil for
    /// recommenders or when the data was not available at push.
    public var evaluation: ClassifierEvaluation?
    /// Why there are no measurements, when there are none (the data folder was not found).
    public var notMeasured: String?
    /// Throughput and resources (summary.json).
    public var samplesPerSecond: Double?
    public var wallSeconds: Double?
    public var peakRSSMiB: [Double]
    public var stepMillisecondsByRank: [String: [Double]]
    /// metrics.jsonl, one entry per epoch, so that a version's report draws its curves.
    public var history: [[String: Double]]

    enum CodingKeys: String, CodingKey {
        case format, formatVersion = "format_version", task, validation, test, variants, deployed, evaluation
        case notMeasured = "not_measured", samplesPerSecond = "samples_per_sec", wallSeconds = "wall_sec"
        case peakRSSMiB = "peak_rss_mib", stepMillisecondsByRank = "step_ms_by_rank", history
    }
}
