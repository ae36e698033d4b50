import Foundation
import Metrics
import Prometheus

/// The server's Prometheus metrics (text format at `/metrics`; docs/serving.md lists them).
/// The registry also backs swift-metrics, so metrics that libraries record land there too.
public final class ServeMetrics: @unchecked Sendable {
    public let registry = PrometheusCollectorRegistry()
    /// Seconds: 50 µs … 10 s.
    static let latencyBuckets: [Double] = [
        0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10
    ]
    static let batchBuckets: [Double] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]

    public init(bootstrap: Bool) {
        if bootstrap { MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry)) }
    }

    private func d(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, helpText: help)
    }

    /// The per-request metrics by their labels, made once: the registry's `make…` validates the
    /// name, labels, help text and buckets on every call, which the hot path need not repeat.
    private let cacheLock = NSLock()
    private var requestMetrics = [RequestKey: (Prometheus.Counter, Prometheus.ValueHistogram)]()
    private var queueMetrics = [QueueKey: Prometheus.ValueHistogram]()

    /// The labels as dictionary keys: hashed in place, where a joined `String` key was a heap
    /// allocation per request.
    private struct RequestKey: Hashable {
        var model: String, version: String, status: Int
    }
    private struct QueueKey: Hashable {
        var model: String, version: Int
    }

    /// One finished HTTP request: by model, version (empty when none) and status code.
    public func request(model: String, version: String, status: Int, seconds: Double) {
        let key = RequestKey(model: model, version: version, status: status)
        cacheLock.lock()
        var m = requestMetrics[key]
        cacheLock.unlock()
        if m == nil {
            let made = (
                registry.makeCounter(
                    descriptor: d("cortado_serve_requests_total", "Requests by model, version and status"),
                    labels: [("model", model), ("version", version), ("status", String(status))]),
                registry.makeValueHistogram(
                    descriptor: d("cortado_serve_request_seconds", "Request latency in seconds (receive to response)"),
                    labels: [("model", model), ("version", version)], buckets: Self.latencyBuckets)
            )
            cacheLock.lock()
            requestMetrics[key] = made
            cacheLock.unlock()
            m = made
        }
        m!.0.increment()
        m!.1.record(seconds)
    }

    public func queueTime(model: String, version: Int, seconds: Double) {
        let key = QueueKey(model: model, version: version)
        cacheLock.lock()
        var h = queueMetrics[key]
        cacheLock.unlock()
        if h == nil {
            let made = registry.makeValueHistogram(
                descriptor: d("cortado_serve_queue_seconds", "Seconds a request waited in the batching queue"),
                labels: [("model", model), ("version", String(version))], buckets: Self.latencyBuckets)
            cacheLock.lock()
            queueMetrics[key] = made
            cacheLock.unlock()
            h = made
        }
        h!.record(seconds)
    }

    public func rejected(model: String, version: Int, reason: String) {
        registry.makeCounter(
            descriptor: d("cortado_serve_rejected_total", "Requests turned away before running (queue_full, timeout)"),
            labels: [("model", model), ("version", String(version)), ("reason", reason)]
        ).increment()
    }

    public func loadEvent(model: String, ok: Bool) {
        registry.makeCounter(
            descriptor: d("cortado_serve_model_loads_total", "Model version load events by result"),
            labels: [("model", model), ("result", ok ? "ok" : "failed")]
        ).increment()
    }

    public func predictionLog(written: Int, dropped: Int) {
        registry.makeGauge(
            descriptor: d("cortado_serve_prediction_log_lines", "Prediction log lines written since start")
        )
        .set(Double(written))
        registry.makeGauge(
            descriptor: d("cortado_serve_prediction_log_dropped", "Prediction log lines dropped (writer buffer full)")
        ).set(Double(dropped))
    }

    func observer(model: String, version: Int) -> QueueObserver {
        let labels = [("model", model), ("version", String(version))]
        return Observer(
            depthGauge: registry.makeGauge(
                descriptor: d("cortado_serve_queue_rows", "Rows waiting in the batching queue"), labels: labels),
            batchHistogram: registry.makeValueHistogram(
                descriptor: d("cortado_serve_batch_rows", "Rows per batch run"), labels: labels,
                buckets: Self.batchBuckets))
    }

    struct Observer: QueueObserver, @unchecked Sendable {
        let depthGauge: Prometheus.Gauge
        let batchHistogram: Prometheus.ValueHistogram
        func depth(_ rows: Int) { depthGauge.set(Double(rows)) }
        func batch(rows: Int) { batchHistogram.record(Double(rows)) }
    }

    public func text() -> String { registry.emitToString() }
}
