import CortadoCore
import CortadoJob
import CortadoModel

/// Gradual magnitude pruning: the mask is recomputed on the schedule's steps and applied after
/// every other update. The mask and its scratch are allocated here, once. Every rank holds the
/// same parameters after each update, so every rank derives the same mask.
final class PruningHook: TrainingHook {
    let pruner: Pruner
    let start: Int, end: Int, every: Int, final: Double
    let params: UnsafeMutablePointer<Float>
    let log: (String) -> Void

    /// On resume (`step` > 0) the mask is rebuilt from the parameters (the pruned ones are
    /// exactly zero).
    init(_ p: JobSpec.Pruning, task: TrainingTask, totalSteps: Int, step: Int, log: @escaping (String) -> Void) {
        pruner = Pruner(layout: task.layout, scope: p.scope)
        (start, every, final) = (p.startStep, p.everySteps, p.sparsity)
        end = p.endStep > 0 ? p.endStep : max(p.startStep + 1, totalSteps * 2 / 3)
        params = task.params.base
        self.log = log
        if step > start {
            let last = min(start + (step - start) / every * every, end)
            pruner.prune(params, to: Pruner.scheduled(step: last, start: start, end: end, final: final))
        }
    }

    func afterUpdate(step: Int) {
        if step >= start && step <= end && (step - start) % every == 0 {
            pruner.prune(params, to: Pruner.scheduled(step: step, start: start, end: end, final: final))
        } else {
            pruner.apply(params)
        }
    }

    func finish(_ run: inout RunState) {
        let zeros = pruner.zeros(params)
        log(
            String(
                format: "pruning: %d of %d prunable weights are zero (%.1f%%)", zeros, pruner.prunableCount,
                100 * Double(zeros) / Double(max(pruner.prunableCount, 1))))
    }
}
