import CortadoCore
import CortadoJob
import Foundation

/// The epoch line on rank 0's output and one JSON object per epoch in metrics.jsonl.
final class MetricsLogHook: TrainingHook {
    let path: String
    let isRoot: Bool
    let epochs: Int, totalSteps: Int
    /// Distilling, train_loss is the total and train_ce its hard-label part alone (the figure
    /// a run without a teacher reports as train_loss).
    let distilling: Bool
    let logMetrics: [String]
    let opt: Optimizer
    let wallStart: Double
    let log: (String) -> Void
    /// RUN_DIR/tb/events.out.tfevents.* (rank 0, unless `tensorboard: false`): the same
    /// scalars as metrics.jsonl, by step, written once per epoch.
    var tensorBoard: TensorBoardWriter?

    init(run: RunState, isRoot: Bool, wallStart: Double, log: @escaping (String) -> Void) {
        path = (run.spec.runDir as NSString).appendingPathComponent("metrics.jsonl")
        (self.isRoot, self.wallStart, self.log) = (isRoot, wallStart, log)
        (epochs, totalSteps) = (run.spec.epochs, run.totalSteps)
        distilling = run.spec.teacher != nil
        logMetrics = run.task.logMetrics
        opt = run.opt
        if isRoot && run.spec.writesTensorBoard {
            let dir = (run.spec.runDir as NSString).appendingPathComponent("tb")
            do { tensorBoard = try TensorBoardWriter(dir: dir) } catch {
                log("warning: no TensorBoard events: \(describe(error))")
            }
        }
    }

    func afterEpoch(_ report: EpochReport) -> Bool {
        // No validation rows (a final fit): nothing to show.
        let shown = (report.validation.isEmpty ? [] : logMetrics).map {
            String(format: "val_%@ %.4f", $0, report.validation[$0] ?? .nan)
        }.joined(separator: "  ")
        let ce = distilling ? String(format: "  train_ce %.4f", report.trainCE) : ""
        log(
            String(
                format: "epoch %d/%d  step %d  train_loss %.4f%@  %@  %.0f samples/s  ETA %.0fs",
                report.epoch + 1, epochs, report.step, report.trainLoss, ce, shown, report.samplesPerSecond, report.eta)
        )
        return false
    }

    func recordEpoch(_ report: EpochReport) {
        guard isRoot else { return }
        let step = report.step, dt = report.seconds, split = report.split
        var line: [String: Double] = [
            "epoch": Double(report.epoch + 1), "step": Double(step), "train_loss": report.trainLoss,
            "samples_per_sec": report.samplesPerSecond,
            "lr": Double(opt.learningRate(step: max(step - 1, 0), total: totalSteps)),
            "elapsed_sec": monotonicSeconds() - wallStart,
            "epoch_sec": dt, "epoch_samples_per_sec": Double(report.samples) / max(dt, 1e-9),
            "compute_s": split.compute, "data_s": split.data,
            "allreduce_s": split.exchange, "update_s": split.update
        ]
        if distilling { line["train_ce"] = report.trainCE }
        for (k, v) in report.validation { line["val_" + k] = v }
        appendLine(path, line)
        if let tb = tensorBoard {
            do {
                try tb.add(
                    step: step,
                    scalars: line.filter { $0.key != "step" }.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
            } catch {
                log("warning: \(tb.path): \(describe(error)); TensorBoard events stop here")
                tensorBoard = nil
            }
        }
    }
}
