import Foundation

/// Test hook: `CORTADO_STEP_SLEEP_MS=N` makes every rank sleep N ms after each update. A test
/// that needs a run to outlast something external (a real Slurm time limit must fire before the
/// run ends) then sizes the run in steps × N instead of in how fast the machine computes today.
final class PaceHook: TrainingHook {
    let micros: UInt32

    init?(environment: [String: String] = ProcessInfo.processInfo.environment) {
        guard let v = environment["CORTADO_STEP_SLEEP_MS"], let ms = UInt32(v), ms > 0 else { return nil }
        micros = ms * 1000
    }

    func afterUpdate(step: Int) { usleep(micros) }
}
