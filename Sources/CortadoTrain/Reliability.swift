import CortadoCore
import CortadoJob
import Foundation
import Synchronization

/// The per-step status slots that travel at the end of the gradient arena, summed by the same
/// collective as the gradients, so every rank sees every other rank's status at the same step
/// and all take the same branch (Horovod's lesson: ranks that take different paths hang).
enum StatusSlot {
    /// Summed loss of the step's examples.
    static let loss = 0
    /// Correct predictions.
    static let correct = 1
    /// Ranks that received SIGTERM / SIGUSR1 / SIGINT since the last step.
    static let stopRequests = 2
    /// Ranks whose step failed (error, non-finite loss or gradient).
    static let failures = 3
    /// Summed hard-label cross-entropy (the loss itself unless distilling), for the log.
    static let hardLoss = 4
    static let count = 5
}

/// Preemption signals: the first SIGTERM, SIGUSR1 or SIGINT sets a flag that the step loop
/// folds into the next exchange (so a signal that reaches one rank stops all of them at the
/// same step boundary, after a checkpoint); a second one exits at once with 128 + signal.
public enum Preemption {
    private static let received = UnsafeMutablePointer<Int32>.allocate(capacity: 2)

    /// Installs the handlers (idempotent; cortado-train calls it first thing in main).
    public static func install() {
        guard !installed else { return }
        installed = true
        received.initialize(repeating: 0, count: 2)
        for sig in [SIGTERM, SIGUSR1, SIGINT] {
            signal(sig) { s in
                // Async-signal-safe only: plain stores, write(2), _exit(2).
                Preemption.received[1] = s
                Preemption.received[0] += 1
                if Preemption.received[0] > 1 {
                    let msg = "cortado-train: second signal, exiting now without a checkpoint\n"
                    _ = msg.withCString { write(2, $0, strlen($0)) }
                    _exit(128 + s)
                }
            }
        }
    }

    nonisolated(unsafe) private static var installed = false
    static var requested: Bool { received[0] > 0 }
    static var signalName: String {
        switch received[1] {
        case SIGTERM: return "SIGTERM";
        case SIGUSR1: return "SIGUSR1";
        case SIGINT: return "SIGINT";
        default: return "a signal"
        }
    }
}

/// A watchdog for a peer that is alive but stuck (it stops calling collectives, so the others
/// wait in MPI forever — Open MPI has no collective timeout). The main thread beats at every
/// phase boundary; a thread checks once a second and, when no beat came for `timeout`
/// seconds, prints one line naming this rank, the step and the phase it is stuck in, and exits
/// non-zero — which makes mpirun (or srun --kill-on-bad-exit) end every rank. It makes no MPI
/// calls, so it is safe next to MPI_THREAD_FUNNELED.
final class Watchdog {
    enum Phase: Int32 {
        case compute = 0, exchange, evaluation, checkpoint, finishing
        var words: String {
            switch self {
            case .compute: return "computing a step (this rank is the stuck one, or its data/BLAS call hangs)"
            case .exchange: return "waiting in the gradient exchange (a peer is stuck or gone)"
            case .evaluation: return "evaluating (a peer is stuck or gone)"
            case .checkpoint: return "writing or waiting for a checkpoint"
            case .finishing: return "finishing (model files, final reductions)"
            }
        }
    }

    /// Last beat (Double bits), step, phase: written by the training thread, read by the
    /// watchdog thread, hence atomics (relaxed: each value stands alone).
    private let lastBeat = Atomic<UInt64>(0), beatStep = Atomic<Int>(0), beatPhase = Atomic<Int32>(0)
    let timeout: Double
    let rankName: String

    /// `timeout` ≤ 0 disables it.
    init(timeout: Double, rankName: String) {
        self.timeout = timeout
        self.rankName = rankName
        lastBeat.store(monotonicSeconds().bitPattern, ordering: .relaxed)
        guard timeout > 0 else { return }
        // A plain pthread: it only reads the beat and, at worst, prints and _exits.
        let context = Unmanaged.passRetained(self).toOpaque()
        var tid = pthread_t()
        let rc = pthread_create(
            &tid, nil,
            { raw in
                let w = Unmanaged<Watchdog>.fromOpaque(raw!).takeUnretainedValue()
                w.watch()
                return nil
            }, context)
        if rc == 0 {
            pthread_detach(tid)
        } else {
            printError("cortado-train: \(rankName): warning: watchdog thread not started (pthread_create \(rc))")
        }
    }

    private func watch() {
        while true {
            usleep(UInt32(min(1, timeout / 4) * 1e6))
            let idle = monotonicSeconds() - Double(bitPattern: lastBeat.load(ordering: .relaxed))
            let phase = Phase(rawValue: beatPhase.load(ordering: .relaxed)) ?? .compute
            // Writing checkpoints and model files (rank 0; the others wait for it) is one long
            // phase with no beats inside: it gets ten times the deadline.
            if idle > timeout * (phase == .checkpoint || phase == .finishing ? 10 : 1) {
                printError(
                    "cortado-train: \(rankName): no progress for \(Int(idle)) s at step \(beatStep.load(ordering: .relaxed)) while \(phase.words); watchdog_seconds is \(Int(timeout)); exiting so the job ends"
                )
                _exit(6)
            }
        }
    }

    /// Records progress; cheap enough for every phase of every step (three stores and a clock read).
    @inline(__always)
    func beat(step: Int, _ phase: Phase) {
        beatStep.store(step, ordering: .relaxed)
        beatPhase.store(phase.rawValue, ordering: .relaxed)
        lastBeat.store(monotonicSeconds().bitPattern, ordering: .relaxed)
    }
}

/// Test hook: `CORTADO_FAULT=KIND@STEP:RANK` makes rank RANK misbehave at step STEP — `throw`
/// (an error on that rank only), `nan` (its loss becomes NaN), `hang` (it stops calling
/// collectives), `kill` (SIGKILL to itself), `signal` (SIGTERM to itself: preemption),
/// `ckptkill` (SIGKILL while writing the checkpoint of step STEP, before its rename).
struct FaultInjection {
    enum Kind: String { case `throw`, nan, hang, kill, signal, ckptkill }
    let kind: Kind, step: Int, rank: Int

    static func fromEnvironment(rank: Int) -> FaultInjection? {
        guard let v = ProcessInfo.processInfo.environment["CORTADO_FAULT"] else { return nil }
        let a = v.split(separator: "@"), b = a.count == 2 ? a[1].split(separator: ":") : []
        guard a.count == 2, b.count == 2, let kind = Kind(rawValue: String(a[0])), let step = Int(b[0]),
            let r = Int(b[1])
        else { return nil }
        return r == rank ? FaultInjection(kind: kind, step: step, rank: r) : nil
    }

    /// Arms the checkpoint hook for `ckptkill`.
    func arm() {
        guard kind == .ckptkill else { return }
        let target = String(format: "step-%08d.h5", step)
        Checkpoint.testHookBeforeRename = { path in if path.hasSuffix(target) { kill(getpid(), SIGKILL) } }
    }

    /// Applies the fault if it is due at `step`; returns an error for `throw`.
    func apply(step: Int, loss: inout Float) -> CortadoError? {
        guard step == self.step else { return nil }
        switch kind {
        case .ckptkill: break
        case .throw: return CortadoError.io("injected I/O error while reading the next batch at step \(step)")
        case .nan: loss = .nan
        case .hang: while true { sleep(1000) }
        case .kill: kill(getpid(), SIGKILL)
        case .signal: kill(getpid(), SIGTERM)
        }
        return nil
    }
}
