import CortadoCore
import CortadoData
import CortadoInfer
import CortadoModel
import Foundation

/// A distillation teacher (`teacher:` in the job spec), loaded on every rank before step 0 and
/// run by the inference runtime on that rank's own batch rows.
final class DistillationTeacher {
    /// The spec's teacher with its file's SHA-256 filled in.
    let spec: JobSpec.Teacher
    let runtime: InferenceModel
    let precision: String

    init(spec: JobSpec.Teacher, runtime: InferenceModel, precision: String) {
        self.spec = spec
        self.runtime = runtime
        self.precision = precision
    }

    /// Loads `teacher.model` and checks it against the student's data: a readable, valid
    /// classifier file (not a recommender) taking the data's features and predicting the data's
    /// classes. Errors name the spec field and the file.
    static func load(_ teacher: JobSpec.Teacher, manifest: DatasetManifest, data: String) throws -> DistillationTeacher {
        let path = teacher.model
        func fail(_ why: String) -> CortadoError { .usage("teacher.model: \(path): \(why)") }
        guard FileManager.default.fileExists(atPath: path) else {
            throw fail("no such model file (give a classifier .cmodel that cortado-train or cortado compress wrote)")
        }
        let file: ModelFile
        do { file = try ModelFile.load(path) } catch let e as CortadoError { throw CortadoError(e.kind, "teacher.model: \(e.message)") }
        guard file.header.recommender == nil else {
            throw fail("is a recommender model; a teacher must be a classifier (softmax over the data's classes)")
        }
        let runtime: InferenceModel
        do { runtime = try InferenceModel(file: file, path: path) } catch let e as CortadoError {
            throw CortadoError(e.kind, "teacher.model: \(e.message)")
        }
        let inputs = runtime.spec.inputSize
        guard inputs == manifest.featureCount else {
            throw fail("takes \(inputs) inputs (shape \(runtime.spec.inputShape)) but the data \(data) has \(manifest.featureCount) features (shape \(manifest.featureShape))")
        }
        guard runtime.classes == manifest.classes.count else {
            throw fail("predicts \(runtime.classes) classes but the data \(data) has \(manifest.classes.count)")
        }
        let names = file.header.classes
        if names.count == manifest.classes.count, let i = names.indices.first(where: { names[$0] != manifest.classes[$0] }) {
            throw fail("class \(i) is '\(names[i])' but the data \(data) calls it '\(manifest.classes[i])' (a teacher trained on other classes?)")
        }
        var resolved = teacher
        resolved.sha256 = SHA256.hex(file.bytes)
        return DistillationTeacher(spec: resolved, runtime: runtime, precision: file.header.precision)
    }

    /// The start-up log line.
    var summary: String {
        let layers = runtime.spec.layers.map(\.description).joined(separator: " ")
        return "teacher: \(spec.model) (\(precision), \(layers), \(runtime.spec.parameterLayout.count) parameters, sha256 \(spec.sha256?.prefix(16) ?? "?")…), temperature \(spec.temperature), alpha \(spec.alpha)"
    }

    /// On resume: the checkpoint's run must have had the same teacher (by content), or none if
    /// the job has none; changing the loss's targets mid-run is refused.
    static func checkResume(checkpoint path: String, jobSpecJSON: String, teacher: JobSpec.Teacher?) throws {
        let object = try? JSONSerialization.jsonObject(with: Data(jobSpecJSON.utf8)) as? [String: Any]
        let before = object?["teacher"] as? [String: Any]
        let beforeModel = before?["model"] as? String ?? "?", beforeHash = before?["sha256"] as? String
        switch (before, teacher) {
        case (nil, nil): return
        case (nil, let t?):
            throw CortadoError.usage("teacher.model: \(t.model): \(path) was trained without a teacher; adding one on --resume changes the loss mid-run (start a new run, with init_from: the checkpoint)")
        case (_, nil):
            throw CortadoError.usage("teacher: \(path) was distilled from \(beforeModel) (sha256 \(beforeHash?.prefix(16) ?? "?")…); the job has no teacher (resume with the same teacher:)")
        case (_, let t?):
            guard beforeHash == t.sha256 else {
                throw CortadoError.usage("teacher.model: \(t.model) (sha256 \(t.sha256?.prefix(16) ?? "?")…) is not the teacher \(path) was distilled from: \(beforeModel) (sha256 \(beforeHash?.prefix(16) ?? "?")…)")
            }
        }
    }
}
