import CortadoCore
import CortadoData
import CortadoJob
import CortadoModel
import Foundation

/// `card.md`: a Hugging Face-style model card generated at push from what the registry knows:
/// YAML front matter (model, task, dataset, metrics, base model, license) and the sections
/// intended use, training data, training procedure, evaluation, limitations. Nothing is a
/// placeholder: a section with nothing known says so in one line.
public enum ModelCard {
    static func yamlString(_ s: String) -> String {
        "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }
    static func f4(_ x: Double) -> String { String(format: "%.4f", x) }

    public static func render(
        name: String, version: Int, run: RunFolder, lineage: Lineage, metrics: VersionMetrics,
        manifest: DatasetManifest?, license: String?, intendedUse: String?
    ) -> String {
        let model = try? ModelFile.load(run.models.first { $0.recipe == metrics.deployed }?.path ?? "")
        let card = Sections(
            name: name, version: version, job: run.job, lineage: lineage, metrics: metrics, manifest: manifest,
            model: model, classes: model?.header.classes ?? manifest?.classes ?? [], license: license,
            intendedUse: intendedUse)
        return card.frontMatter() + card.intendedUseSection() + card.trainingData() + card.trainingProcedure()
            + card.evaluation() + card.limitations()
    }

    /// What the card is written from; one function per section.
    struct Sections {
        let name: String, version: Int, job: JobSpec, lineage: Lineage, metrics: VersionMetrics
        let manifest: DatasetManifest?, model: ModelFile?, classes: [String]
        let license: String?, intendedUse: String?

        func f4(_ x: Double) -> String { ModelCard.f4(x) }
        func yamlString(_ s: String) -> String { ModelCard.yamlString(s) }

        /// The YAML front matter and the title.
        func frontMatter() -> String {
            let base = lineage.parent.map { $0.ref ?? $0.path }
            var md = "---\n"
            md += "model: \(yamlString(name))\n"
            md += "version: \(version)\n"
            md += "task: \(metrics.task)\n"
            md += "dataset: \(yamlString(manifest?.name ?? lineage.data.manifest))\n"
            md += "dataset_sha256: \(lineage.data.sha256 ?? "unknown")\n"
            md += "base_model: \(base.map(yamlString) ?? "null")\n"
            if let t = lineage.teacher { md += "teacher_model: \(yamlString(t.ref ?? t.path))\n" }
            md += license.map { "license: \(yamlString($0))\n" } ?? "license: null  # not given at push (--license)\n"
            md += "deployed_variant: \(metrics.deployed)\n"
            md += "metrics:\n"
            var anyMetric = false
            for v in metrics.variants {
                if let a = v.accuracy {
                    md += "  - {name: accuracy, split: test, variant: \(v.recipe), value: \(f4(a))}\n"; anyMetric = true
                }
                if let r = v.rmse {
                    md += "  - {name: rmse, split: test, variant: \(v.recipe), value: \(f4(r))}\n"; anyMetric = true
                }
            }
            for (k, v) in metrics.test.sorted(by: { $0.key < $1.key })
            where k.hasPrefix("fp32_") && !k.contains("popularity") && !k.contains("_model_") {
                md += "  - {name: \(k.dropFirst(5)), split: test, variant: fp32 (trainer), value: \(f4(v))}\n";
                anyMetric = true
            }
            if !anyMetric { md = String(md.dropLast("metrics:\n".count)) + "metrics: []\n" }
            md += "---\n\n"
            md += "# \(name) version \(version)\n\n"
            md +=
                "Pushed \(lineage.pushedAt) by \(lineage.pushedBy) from `\(lineage.runDir)`. "
                + "Deployment file `model.cmodel` = the \(metrics.deployed) variant (\(Evaluation.deploymentRule)).\n\n"

            return md
        }

        /// What the model is for.
        func intendedUseSection() -> String {
            var md = ""
            md += "## Intended use\n\n"
            if job.recommender != nil, model?.header.recommender != nil {
                md +=
                    "Recommends items to users known from the training data (top-K by predicted score), served with `cortado-infer`.\n"
            } else {
                let shape = model?.header.model.inputShape.map(String.init).joined(separator: "×") ?? "?"
                md +=
                    "Classifies rows of \(shape) features into \(classes.count) classes (\(classes.joined(separator: ", "))), "
                md += "as prepared by `cortado prepare` for the data set \(manifest?.name ?? lineage.data.manifest).\n"
            }
            md += "\n"
            md += intendedUse.map { $0 + "\n" } ?? "No use beyond this task was stated at push (`--intended-use`).\n"

            return md
        }

        /// The data set and its splits.
        func trainingData() -> String {
            var md = ""
            md += "\n## Training data\n\n"
            if let manifest {
                md +=
                    "Data set `\(manifest.name)` (`\(lineage.data.manifest)`, manifest SHA-256 `\(lineage.data.sha256 ?? "?")`), \(manifest.task), \(manifest.classes.count) classes, features of shape \(manifest.featureShape).\n\n"
                md += "| split | rows | files |\n|---|---:|---:|\n"
                for s in ["train", "validation", "test"] {
                    if let sp = manifest.splits[s] { md += "| \(s) | \(sp.rows) | \(sp.files.count) |\n" }
                }
                if !manifest.transforms.isEmpty {
                    md += "\nTransforms: \(manifest.transforms.joined(separator: ", ")).\n"
                }
            } else {
                md +=
                    "The data manifest `\(lineage.data.manifest)` was not available at push; only its path is known.\n"
            }

            return md
        }

        /// The architecture table, optimizer, ranks, parents.
        func trainingProcedure() -> String {
            var md = ""
            md += "\n## Training procedure\n\n"
            if let m = model, m.header.recommender == nil {
                let spec = m.header.model, params = spec.parametersPerLayer, shapes = spec.shapes
                md += "| # | layer | output | parameters |\n|---:|---|---|---:|\n"
                md += "| | input | \(spec.inputShape) | 0 |\n"
                for (i, l) in spec.layers.enumerated() {
                    md += "| \(i) | \(l.description) | \(shapes[i]) | \(params[i]) |\n"
                }
                md += "\nTotal parameters: \(params.reduce(0, +)).\n\n"
            } else if let r = model?.header.recommender {
                md += "Recommender: \(r.users) users × \(r.items) items, embedding dimension \(r.dim).\n\n"
            }
            let o = job.optimizer
            md +=
                "- Optimizer: \(o.type), learning rate \(o.learningRate), schedule \(o.schedule), weight decay \(o.weightDecay)\n"
            md +=
                "- Loss: \(job.loss); batch size \(job.batchSize) per rank; \(job.epochs) epoch(s); seed \(job.seed)\n"
            md +=
                "- Ranks: \(lineage.worldSize.map(String.init) ?? "not recorded"); steps: \(lineage.steps.map(String.init) ?? "not recorded"); wall time: \(lineage.wallSeconds.map { String(format: "%.1f s", $0) } ?? "not recorded")\n"
            if let p = lineage.parent {
                md += "- Fine-tuned from \(p.ref.map { "`\($0)`" } ?? "`\(p.path)`") (SHA-256 `\(p.sha256 ?? "?")`)\n"
            }
            if let t = lineage.teacher {
                md += "- Distilled from \(t.ref.map { "`\($0)`" } ?? "`\(t.path)`") (SHA-256 `\(t.sha256 ?? "?")`)\n"
            }
            md += "- Cortado \(lineage.cortadoVersion)"
            md +=
                lineage.gitCommit.map {
                    ", git commit `\($0)`\(lineage.gitDirty == true ? " (with uncommitted changes)" : "")"
                } ?? ", git commit unknown (the run folder is not in a git checkout)"
            md += "\n"

            return md
        }

        /// Test metrics, per-class accuracy or ranking metrics, the compression table.
        func evaluation() -> String {
            var md = ""
            md += "\n## Evaluation\n\n"
            if let note = metrics.notMeasured {
                md += "Not measured at push: \(note). Figures below are the trainer's own.\n\n"
            }
            let trainerTest = metrics.test.filter { !$0.key.contains("popularity") }.sorted { $0.key < $1.key }
            if !trainerTest.isEmpty {
                md +=
                    "Test split, as the trainer reported: "
                    + trainerTest.map { "\($0.key) \(f4($0.value))" }.joined(separator: ", ") + ".\n\n"
            }
            if let e = metrics.evaluation {
                md +=
                    "Per-class accuracy (fp32, \(e.rows) test rows):\n\n| class | accuracy | rows |\n|---|---:|---:|\n"
                for (i, c) in e.classes.enumerated() {
                    md += "| \(c) | \(f4(e.perClassAccuracy[i])) | \(e.confusion[i].reduce(0, +)) |\n"
                }
                md += "\n"
            } else if metrics.task == "recommendation" {
                let rank = metrics.test.filter { $0.key.contains("hr@") || $0.key.contains("ndcg@") }.sorted {
                    $0.key < $1.key
                }
                md +=
                    rank.isEmpty
                    ? "No ranking metrics were recorded.\n\n"
                    : "Ranking: " + rank.map { "\($0.key) \(f4($0.value))" }.joined(separator: ", ") + ".\n\n"
            }
            if metrics.variants.contains(where: { $0.accuracy != nil || $0.rmse != nil }) {
                let fp32Bytes = Double(
                    metrics.variants.first { $0.recipe == "fp32" }?.bytes ?? metrics.variants[0].bytes)
                md += "Compression (measured at push by the inference runtime, 1 thread):\n\n"
                md +=
                    "| variant | bytes | × fp32 | \(metrics.task == "recommendation" ? "RMSE" : "accuracy") | batch-1 p50 ms | deployed |\n|---|---:|---:|---:|---:|---|\n"
                for v in metrics.variants {
                    let q = v.accuracy ?? v.rmse
                    md +=
                        "| \(v.recipe) | \(v.bytes) | \(String(format: "%.3f", Double(v.bytes) / fp32Bytes)) | \(q.map(f4) ?? "-") | \(v.latencyMsP50.map { String(format: "%.4f", $0) } ?? "-") | \(v.recipe == metrics.deployed ? "yes" : "") |\n"
                }
            } else {
                md +=
                    "The variants were not measured at push (sizes only): "
                    + metrics.variants.map { "\($0.recipe) \($0.bytes) bytes" }.joined(separator: ", ") + ".\n"
            }

            return md
        }

        /// What was not evaluated.
        func limitations() -> String {
            var md = ""
            md += "\n## Limitations\n\n"
            md += "- Evaluated only on the test split of `\(manifest?.name ?? lineage.data.manifest)`"
            md += metrics.evaluation.map { " (\($0.rows) rows)" } ?? ""
            md +=
                "; not evaluated on data from another source or distribution, on robustness to corrupted inputs, on calibration of its probabilities, or on fairness across subgroups.\n"
            md +=
                "- Latency was measured on the push machine at batch 1 with one thread; other machines and batch sizes differ (`cortado-infer --bench`).\n"
            if let e = metrics.evaluation,
                let worst = e.perClassAccuracy.indices.min(by: { e.perClassAccuracy[$0] < e.perClassAccuracy[$1] })
            {
                md +=
                    "- Weakest class on the test split: \(e.classes[worst]) (accuracy \(f4(e.perClassAccuracy[worst]))).\n"
            }
            return md
        }
    }
}
