import CortadoCore
import CortadoJob
import CortadoModel

/// Early stopping: keeps the best parameters so far (on every rank: they are identical) and
/// writes them to checkpoints/best.h5; stops when the metric has not improved for `patience`
/// epochs, and restores the best parameters at the end. With `smooth: N` the metric compared
/// is the mean of the last N epochs', and the parameters kept are those at the end of the best
/// window.
final class EarlyStoppingHook: TrainingHook {
    let rule: JobSpec.EarlyStopping
    let task: TrainingTask
    let totalSteps: Int
    /// The best parameters so far, (n).
    let best: Arena<Float>
    /// Writes checkpoints/best.h5 at a step (collective under ZeRO-1).
    let writeBest: (Int) -> Void
    let log: (String) -> Void
    var bestScore = -Double.infinity, badEpochs = 0
    /// The 1-based epoch whose parameters are kept (the end of the best window).
    var bestEpoch = 0
    /// The last `smooth` epochs' scores (the window the decision averages).
    var recent: [Double] = []

    init(
        _ rule: JobSpec.EarlyStopping, task: TrainingTask, totalSteps: Int,
        writeBest: @escaping (Int) -> Void, log: @escaping (String) -> Void
    ) {
        (self.rule, self.task, self.totalSteps, self.writeBest, self.log) = (rule, task, totalSteps, writeBest, log)
        best = Arena<Float>(count: task.layout.count)
    }

    func afterEpoch(_ report: EpochReport) -> Bool {
        // Every rank sees the same reduced metric, so all take the same branch.
        let key = String(rule.metric.dropFirst(4)) // "val_…"
        let value = report.validation[key] ?? .nan
        recent.append(lowerIsBetter(key) ? -value : value)
        if recent.count > max(rule.smooth ?? 1, 1) { recent.removeFirst() }
        // A NaN metric (no rows) never counts as an improvement.
        let score = recent.reduce(0, +) / Double(recent.count)
        if score > bestScore {
            bestScore = score
            badEpochs = 0
            bestEpoch = report.epoch + 1
            _ = best.buffer.update(fromContentsOf: task.params.buffer)
            writeBest(report.step)
        } else {
            badEpochs += 1
            if badEpochs >= rule.patience && report.step < totalSteps {
                let smoothed = rule.smooth.map { $0 > 1 ? " (mean of \($0) epochs)" : "" } ?? ""
                log(
                    "early stopping: \(rule.metric)\(smoothed) has not improved for \(badEpochs) epochs; restoring the best parameters (epoch \(bestEpoch))"
                )
                return true
            }
        }
        return false
    }

    func finish(_ run: inout RunState) {
        guard bestScore > -Double.infinity else { return }
        _ = task.params.buffer.update(fromContentsOf: best.buffer)
        run.lastVal = task.evaluate(.validation)
        run.bestEpoch = bestEpoch
    }
}
