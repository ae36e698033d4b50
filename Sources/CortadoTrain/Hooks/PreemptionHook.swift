import CortadoCore
import CortadoMPI

/// Preemption: a signal on any rank reaches every rank through the status slot at the same
/// step boundary; rank 0 writes a checkpoint and every rank leaves with exit 75.
final class PreemptionHook: TrainingHook {
    let comm: Communicator
    let watchdog: Watchdog
    /// Writes a checkpoint at a step (collective under ZeRO-1); rank 0 returns its path.
    let checkpoint: (Int) -> String?

    /// The handlers are installed (`Preemption.install`) before the step loop.
    init(comm: Communicator, watchdog: Watchdog, checkpoint: @escaping (Int) -> String?) {
        (self.comm, self.watchdog, self.checkpoint) = (comm, watchdog, checkpoint)
    }

    func afterStep(step: Int, stopRequested: Bool) throws {
        guard stopRequested else { return }
        // Every rank saw the request at this step boundary. Rank 0 writes the checkpoint; the
        // barrier keeps every rank alive until it is on disk (mpirun kills the rest as soon as
        // one rank exits non-zero).
        watchdog.beat(step: step, .checkpoint)
        let path = checkpoint(step)
        let who = comm.allgather(Preemption.requested ? Preemption.signalName : "").enumerated()
            .filter { !$0.element.isEmpty }.map { "\($0.element) on rank \($0.offset)" } // also the barrier
        throw CortadoError(
            .preempted,
            "preempted (\(who.joined(separator: ", "))) at step \(step): checkpoint \(path ?? "written by rank 0"); exit 75 — run again with --resume"
        )
    }
}
