/// The watchdog's beats: every phase the run enters resets its deadline, so a rank stuck in
/// one (or waiting for a stuck peer) ends the job with a line naming rank, step and phase.
final class WatchdogHook: TrainingHook {
    let watchdog: Watchdog

    init(_ watchdog: Watchdog) { self.watchdog = watchdog }

    func enter(_ phase: Watchdog.Phase, step: Int) { watchdog.beat(step: step, phase) }
}
