/// What rides along with the training loop (Caffe's solver callbacks): gradual pruning, early
/// stopping, the metrics log, the watchdog and preemption. The trainer calls every hook at the
/// same points on every rank, in the order of its hook list; all methods default to nothing.
/// A hook holds what it needs from set-up, so the step's calls pass plain values: nothing is
/// allocated per step. A hook that issues a collective must do so on every rank.
protocol TrainingHook: AnyObject {
    /// The run enters `phase` at `step` (computing, exchanging, evaluating, checkpointing,
    /// finishing).
    func enter(_ phase: Watchdog.Phase, step: Int)
    /// After the optimizer update of `step` (every rank holds the same parameters).
    func afterUpdate(step: Int)
    /// After a step, counted (`step` is the next one); `stopRequested`: some rank asked to stop
    /// at this step boundary (the status slot). Throwing ends the run on every rank.
    func afterStep(step: Int, stopRequested: Bool) throws
    /// After an epoch's validation pass: true stops the run after this epoch.
    func afterEpoch(_ report: EpochReport) -> Bool
    /// After every hook's `afterEpoch`: the epoch as it goes into the record.
    func recordEpoch(_ report: EpochReport)
    /// After the step loop, before the final checkpoint (the loader is stopped).
    func finish(_ run: inout RunState)
}

extension TrainingHook {
    func enter(_ phase: Watchdog.Phase, step: Int) {}
    func afterUpdate(step: Int) {}
    func afterStep(step: Int, stopRequested: Bool) throws {}
    func afterEpoch(_ report: EpochReport) -> Bool { false }
    func recordEpoch(_ report: EpochReport) {}
    func finish(_ run: inout RunState) {}
}

extension Array where Element == any TrainingHook {
    /// Tells every hook that the run enters `phase` at `step`.
    func enter(_ phase: Watchdog.Phase, step: Int) {
        for hook in self { hook.enter(phase, step: step) }
    }
}
