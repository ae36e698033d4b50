import ArgumentParser
import CortadoCore
import CortadoModel
import CortadoRegistry
import Foundation

/// `cortado evaluate`: the gate between a candidate and the champion.
struct EvaluateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluate",
        abstract: "Gate a candidate against the champion on the same data; write verdict.json; promote on a pass.",
        discussion: """
            Both models score every test split of --data (overall, per split, per class, per value of \
            the gate's slice_columns). The gate (docs/loop.md) sets floors, a minimum improvement, a \
            regression tolerance per slice, and whether the candidate must load and answer in \
            cortado-infer serve. verdict.json is written on every run (and into REGISTRY/NAME/verdicts/). \
            On a pass, champion moves to the candidate (its history kept); --force --reason promotes a \
            failing candidate, recording why. Exit 0: passed (or forced); 3: the gate failed; 2: bad input.
            """)

    @Option(help: "The candidate: registry://NAME@candidate, registry://NAME/4 or a model file.") var candidate: String
    @Option(help: "The champion: registry://NAME@champion (default: the candidate's model's champion).")
    var champion: String?
    @Option(help: "Data folder (or manifest.json) whose test* splits both are scored on.") var data: String
    @Option(help: "The gate file (YAML).") var gate: String
    @Option(help: "Registry folder for registry:// references (default: $CORTADO_REGISTRY).") var registry: String?
    @Option(name: .out, help: "Where to write verdict.json.") var out = "verdict.json"
    @Flag(help: "Promote even if a check fails (needs --reason).") var force = false
    @Option(help: "Why: recorded in the verdict and the alias history.") var reason: String?
    @Flag(name: .customLong("no-promote"), help: "Write the verdict only; never move an alias.") var noPromote = false
    @Option(name: .customLong("infer-binary"), help: "cortado-infer for the serve check (default: next to cortado).")
    var inferBinary: String?
    @Option(help: "BLAS threads for scoring.") var threads = 1

    func run() throws {
        setBLASThreads(threads)
        let registryRoot = try? ModelReference.root(flag: registry)
        var champ = champion
        if champ == nil, ModelReference.isReference(candidate) {
            champ =
                ModelReference.scheme + (try ModelReference.parse(candidate)).name + "@" + ModelReference.defaultAlias
        }
        guard let champ else { throw CortadoError.usage("--champion: required when the candidate is a file") }
        var e = Evaluator(candidate: candidate, champion: champ, data: data, gatePath: gate, out: out)
        e.registry = registryRoot
        e.force = force
        e.reason = reason
        e.promote = !noPromote
        e.inferBinary = inferBinary
        let v = try e.run(log: { print($0) })
        for line in v.lines { print(line) }
        print("wrote \(out)")
        if !v.passed && !v.forced {
            printError(
                "cortado evaluate: the gate failed: \(v.failedChecks.map(\.name).joined(separator: ", ")) (see \(out))")
            throw ExitCode(3)
        }
    }
}
