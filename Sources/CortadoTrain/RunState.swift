import CortadoCore
import CortadoData
import CortadoJob
import CortadoModel
import CortadoMPI
import Foundation

/// What set-up learns about the data: the three splits, the model they imply and the teacher.
struct RunData {
    let train: SplitReader, validation: SplitReader, test: SplitReader
    let manifest: DatasetManifest
    let model: ModelSpec
    let teacher: DistillationTeacher?
}

/// This rank's share of the training split: its data partitions are contiguous, so its rows
/// are one range of the split.
struct RankShare {
    /// Partitions per rank, and the batch each contributes (batch_size / perRank).
    let perRank: Int, partBatch: Int
    /// Row ranges of this rank's partitions, in order.
    let parts: [Range<Int>]
    var rows: Range<Int> { parts.first!.lowerBound..<parts.last!.upperBound }

    init(partitions: Int, batch: Int, totalRows: Int, comm: Communicator) {
        perRank = partitions / comm.size
        partBatch = batch / perRank
        let first = comm.rank * perRank
        parts = (0..<perRank).map { rowRange(total: totalRows, rank: first + $0, size: partitions) }
    }
}

/// Step-time split in seconds, rank 0's clocks: compute includes data until the epoch's end.
/// Exchange is every collective that moves the arena (ZeRO-1's parameter allgather too);
/// update is this rank's own optimizer pass.
struct StepSplit {
    var compute = 0.0, data = 0.0, exchange = 0.0, update = 0.0, steps = 0

    static func - (a: StepSplit, b: StepSplit) -> StepSplit {
        StepSplit(
            compute: a.compute - b.compute, data: a.data - b.data, exchange: a.exchange - b.exchange,
            update: a.update - b.update, steps: a.steps - b.steps)
    }
}

/// Throughput bookkeeping over the run's epochs.
struct RunTiming {
    var trainTime = 0.0, trainSamples = 0
    /// Epochs after this run's first: the steady-state rate.
    var laterTime = 0.0, laterSamples = 0, epochsRun = 0
    var split = StepSplit()

    /// Closes an epoch of `seconds` and `samples` (all ranks). `gathered`: batch assembly (or
    /// the wait for the loader), which ran inside the compute window; `overlapped`: MPI calls
    /// made during backward (the overlapped exchange), which count as exchange.
    mutating func endEpoch(seconds dt: Double, samples: Int, gathered: Double, overlapped: Double) {
        trainTime += dt
        trainSamples += samples
        if epochsRun > 0 { laterTime += dt; laterSamples += samples }
        epochsRun += 1
        split.data += gathered
        split.compute -= gathered
        split.exchange += overlapped
        split.compute -= overlapped
    }
}

/// Running sums of one epoch's steps (the losses are per example, averaged over ranks).
struct EpochSums {
    var loss = 0.0, hardLoss = 0.0, steps = 0
}

/// What an epoch hands the hooks after its validation pass.
struct EpochReport {
    /// 0-based epoch, and the step the run is at after it.
    let epoch: Int, step: Int
    /// Mean training loss of the epoch's steps; `trainCE` its hard-label part (distilling).
    let trainLoss: Double, trainCE: Double
    /// Samples per second over the run so far, and the seconds left at that rate.
    let samplesPerSecond: Double, eta: Double
    /// The epoch's own seconds and samples (all ranks), and its step-time split.
    let seconds: Double, samples: Int
    let split: StepSplit
    /// Validation metrics (reduced: the same on every rank).
    let validation: [String: Double]
}

/// What the phases of a run share: the resolved spec, the task and optimizer, the step
/// counters and the time split. Built once in set-up; the step loop only mutates counters.
struct RunState {
    let spec: JobSpec
    let task: TrainingTask
    let opt: Optimizer
    let stateMultiple: Int
    let stepsPerEpoch: Int, totalSteps: Int
    /// Trainable parts of the arena: everything but the frozen layers' tensors (nil: all).
    let trainable: [Range<Int>]?
    /// The part of the arena this rank updates (all of it, or its ZeRO-1 slice), and its
    /// trainable ranges relative to it.
    let slice: Range<Int>
    let sliceTrainable: [Range<Int>]?
    /// The gradient arena: (n) gradients, then `StatusSlot.count` status slots.
    let g: UnsafeMutablePointer<Float>
    let n: Int
    let invSize: Float
    let fault: FaultInjection?
    var step = 0
    var timing = RunTiming()
    var lastCheckpoint: String?
    var lastVal = [String: Double]()
    /// False when the validation split has no rows (a final fit, `--no-validation`): no
    /// validation metrics are computed or printed, rather than zeros.
    var hasValidation = true
    /// The epoch early stopping kept (1-based; nil without early stopping).
    var bestEpoch: Int?
    var skipped = 0

    /// Rows per optimizer step on each rank: `accumulate_steps` micro-batches of `batch_size`.
    var batch: Int { spec.batchSize * spec.accumulateSteps }
    /// Micro-batches per optimizer step (`accumulate_steps`).
    var micro: Int { spec.accumulateSteps }

    init(
        spec: JobSpec, task: TrainingTask, opt: Optimizer, stateMultiple: Int, stepsPerEpoch: Int,
        trainable: [Range<Int>]?, zero: ZeroSharding?, comm: Communicator
    ) {
        (self.spec, self.task, self.opt, self.stateMultiple) = (spec, task, opt, stateMultiple)
        self.stepsPerEpoch = stepsPerEpoch
        totalSteps = spec.epochs * stepsPerEpoch
        self.trainable = trainable
        n = task.layout.count
        slice = zero?.mine ?? 0..<n
        sliceTrainable = zero?.local(trainable) ?? trainable
        g = task.grads.base
        // The accumulated gradient is the sum of `micro` micro-batch means: × 1/micro makes it
        // the mean over the step's rows, folded into the ranks' average.
        invSize = 1 / Float(comm.size * spec.accumulateSteps)
        fault = FaultInjection.fromEnvironment(rank: comm.rank)
    }
}
