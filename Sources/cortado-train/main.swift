import ArgumentParser
import CortadoCore
import CortadoMPI
import CortadoModel
import CortadoPipeline
import CortadoTrain
import Foundation

/// `cortado-train`: the SPMD trainer, one process per rank under mpirun or srun.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cortado-train",
        abstract: "Train a model from a job spec: one process per rank under mpirun or srun.",
        discussion: """
            Every rank loads its share of the data's shards, computes gradients with OpenBLAS \
            and sums them with one MPI allreduce per step; rank 0 logs, checkpoints and writes \
            the emitted model files (run_dir/model-<recipe>.cmodel). Examples:

              mpirun -np 2 cortado-train jobs/fashion-mlp.yaml
              srun cortado-train jobs/fashion-cnn.yaml --set epochs=5 --resume

            The job spec's keys are documented in docs/training.md.
            """)

    @Argument(help: "Job spec (YAML).")
    var spec: String
    @Option(
        name: .customLong("set"),
        help: ArgumentHelp("Override a job-spec field (repeatable).", valueName: "key.path=value"))
    var overrides: [String] = []
    @Option(help: "Run folder (overrides run_dir).")
    var runDir: String?
    @Flag(help: "Continue from the newest good checkpoint in the run folder.")
    var resume = false
    @Flag(help: "Start over in a run folder that already holds checkpoints (deletes them).")
    var overwrite = false
    @Flag(help: "Print one JSON summary object as rank 0's last stdout line.")
    var json = false
    @Flag(help: "Print what each rank sees (host, bound cores, BLAS threads, shards, transport) and exit.")
    var dryRun = false
    @Option(
        help: "Registry folder for registry:// references in init_from and teacher.model (default: $CORTADO_REGISTRY).")
    var registry: String?
    @Option(help: .hidden)
    var probeGradient: String?
}

/// MPI comes up first so that argument errors can be reported once (by rank 0) and every rank
/// exits through MPI_Finalize with the same code.
func main() -> Int32 {
    // Preemption signals are caught from the first instruction: a SIGUSR1 that a scheduler
    // sends during start-up must become a checkpoint request, not SIGUSR1's default (exit).
    Preemption.install()
    // Before MPI_Init and any BLAS call: may re-execute this process with a better OpenBLAS
    // kernel (docs/blas.md). The trainer's start-up lines report it.
    BLASKernelCheck.run(printWarning: false)
    let comm = Communicator()
    defer { comm.finalize() }
    let cmd: TrainCommand
    do { cmd = try TrainCommand.parse(Array(CommandLine.arguments.dropFirst())) } catch {
        if comm.rank == 0 {
            let msg = TrainCommand.fullMessage(for: error)
            let code = TrainCommand.exitCode(for: error).rawValue
            if code == 0 { print(msg) } else { printError("cortado-train: \(msg)") }
        }
        return TrainCommand.exitCode(for: error).rawValue == 0 ? 0 : 2
    }
    var options = TrainOptions(specPath: cmd.spec)
    options.overrides = cmd.overrides
    options.runDir = cmd.runDir
    options.resume = cmd.resume
    options.overwrite = cmd.overwrite
    options.json = cmd.json
    options.probeGradient = cmd.probeGradient
    options.dryRun = cmd.dryRun
    options.registry = cmd.registry
    do {
        let summary = try Trainer(comm: comm, options: options, services: .standard).run()
        if cmd.json, comm.rank == 0, let summary, let data = try? stableJSON(summary, pretty: false) {
            print(String(decoding: data, as: UTF8.self))
        }
        return 0
    } catch let e as CortadoError {
        if comm.rank == 0 { printError("cortado-train: \(e.message)") }
        return e.exitCode
    } catch {
        if comm.rank == 0 { printError("cortado-train: \(error)") }
        return 1
    }
}

exit(main())
