import CortadoCore
import CortadoData
import CortadoJob
import CortadoModel
import Foundation

/// A model that turns rows of features into logits: the distillation teacher as the trainer
/// sees it. The trainer does not link the inference runtime (a later step); the executable
/// injects one (`CortadoPipeline`'s `InferenceModel` conformance) through `TrainerServices`.
public protocol LogitsProvider: AnyObject {
    /// Features per row.
    var inputSize: Int { get }
    /// Logits per row.
    var classes: Int { get }
    /// The architecture in a few words and its parameter count, for the start-up log.
    var architecture: String { get }
    /// Sizes buffers for batches of up to `batch` rows, so `logits` allocates nothing after it.
    func reserve(batch: Int)
    /// The logits (batch, classes) of `input` (batch, inputSize); valid until the next call.
    func logits(_ input: UnsafePointer<Float>, batch: Int) -> UnsafePointer<Float>
}

/// Builds the teacher's runtime from its loaded file (at `path`).
public typealias TeacherRuntimeFactory = (ModelFile, String) throws -> LogitsProvider

/// A distillation teacher (`teacher:` in the job spec), loaded on every rank before step 0 and
/// run by an injected runtime on that rank's own training rows: once for all of them before
/// step 0 (`TeacherLogits`, the default), or on every batch (`teacher.cache: false`).
final class DistillationTeacher {
    /// The spec's teacher with its file's SHA-256 filled in.
    let spec: JobSpec.Teacher
    let runtime: LogitsProvider
    let precision: String
    /// The teacher's logits for every training row of this rank, once `prepare` has run with
    /// caching on; nil runs the teacher per batch.
    private(set) var cache: TeacherLogits?
    /// A batch of cached logits, (batch, classes), gathered by row index each step.
    private var batchLogits = UnsafeMutableBufferPointer<Float>(start: nil, count: 0)

    init(spec: JobSpec.Teacher, runtime: LogitsProvider, precision: String) {
        self.spec = spec
        self.runtime = runtime
        self.precision = precision
    }

    deinit { batchLogits.deallocate() }

    /// Before step 0: sizes everything the step loop's `logits` touches for batches of `batch`
    /// rows of `train`, and, unless `teacher.cache: false`, runs the teacher on all of them.
    /// `train` is nil when the loader reads the rows in chunks (the spec then has `cache: false`).
    func prepare(train: LocalData?, batch: Int) {
        runtime.reserve(batch: batch)
        guard spec.cache ?? true, let train else { return }
        cache = TeacherLogits(runtime, features: train.features.baseAddress!, rows: train.rows, batch: batch)
        batchLogits = .allocate(capacity: batch * runtime.classes)
    }

    /// The teacher's logits (batch, classes) for this rank's training rows `rows[0..<batch]`,
    /// whose features the caller has gathered into `x` (batch, inputs): copied from the cache,
    /// or computed now. Valid until the next call; allocates nothing after `prepare`.
    func logits(rows: UnsafePointer<Int32>, x: UnsafePointer<Float>, batch: Int) -> UnsafePointer<Float> {
        guard let cache else { return runtime.logits(x, batch: batch) }
        cache.gather(rows, count: batch, into: batchLogits.baseAddress!)
        return UnsafePointer(batchLogits.baseAddress!)
    }

    /// Loads `teacher.model` and checks it against the student's data: a readable, valid
    /// classifier file (not a recommender) taking the data's features and predicting the data's
    /// classes. Errors name the spec field and the file.
    static func load(
        _ teacher: JobSpec.Teacher, manifest: DatasetManifest, data: String,
        runtime makeRuntime: TeacherRuntimeFactory?
    ) throws -> DistillationTeacher {
        let path = teacher.model
        func fail(_ why: String) -> CortadoError { .usage("teacher.model: \(path): \(why)") }
        guard FileManager.default.fileExists(atPath: path) else {
            throw fail("no such model file (give a classifier .cmodel that cortado-train or cortado compress wrote)")
        }
        let file: ModelFile
        do { file = try ModelFile.load(path) } catch let e as CortadoError {
            throw CortadoError(e.kind, "teacher.model: \(e.message)")
        }
        guard file.header.recommender == nil else {
            throw fail("is a recommender model; a teacher must be a classifier (softmax over the data's classes)")
        }
        guard let makeRuntime else {
            throw CortadoError.usage(
                "teacher: this program was built without an inference runtime for teachers (use cortado-train)")
        }
        let runtime: LogitsProvider
        do { runtime = try makeRuntime(file, path) } catch let e as CortadoError {
            throw CortadoError(e.kind, "teacher.model: \(e.message)")
        }
        let inputs = runtime.inputSize
        guard inputs == manifest.featureCount else {
            throw fail(
                "takes \(inputs) inputs (shape \(file.header.model.inputShape)) but the data \(data) has \(manifest.featureCount) features (shape \(manifest.featureShape))"
            )
        }
        guard runtime.classes == manifest.classes.count else {
            throw fail("predicts \(runtime.classes) classes but the data \(data) has \(manifest.classes.count)")
        }
        let names = file.header.classes
        if names.count == manifest.classes.count,
            let i = names.indices.first(where: { names[$0] != manifest.classes[$0] })
        {
            throw fail(
                "class \(i) is '\(names[i])' but the data \(data) calls it '\(manifest.classes[i])' (a teacher trained on other classes?)"
            )
        }
        var resolved = teacher
        resolved.sha256 = SHA256.hex(file.bytes)
        return DistillationTeacher(spec: resolved, runtime: runtime, precision: file.header.precision)
    }

    /// The start-up log line.
    var summary: String {
        let cached =
            cache.map { String(format: "logits of %d rows cached in %.1f s", $0.rows, $0.seconds) }
            ?? "run per batch (teacher.cache: false)"
        return
            "teacher: \(spec.model) (\(precision), \(runtime.architecture), sha256 \(spec.sha256?.prefix(16) ?? "?")…), temperature \(spec.temperature), alpha \(spec.alpha); \(cached)"
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
            throw CortadoError.usage(
                "teacher.model: \(t.model): \(path) was trained without a teacher; adding one on --resume changes the loss mid-run (start a new run, with init_from: the checkpoint)"
            )
        case (_, nil):
            throw CortadoError.usage(
                "teacher: \(path) was distilled from \(beforeModel) (sha256 \(beforeHash?.prefix(16) ?? "?")…); the job has no teacher (resume with the same teacher:)"
            )
        case (_, let t?):
            guard beforeHash == t.sha256 else {
                throw CortadoError.usage(
                    "teacher.model: \(t.model) (sha256 \(t.sha256?.prefix(16) ?? "?")…) is not the teacher \(path) was distilled from: \(beforeModel) (sha256 \(beforeHash?.prefix(16) ?? "?")…)"
                )
            }
        }
    }
}

/// A teacher's logits for every training row a rank owns, (rows, classes) row-major, computed
/// once before step 0. The inputs are not augmented, so a row's teacher logits are the same in
/// every epoch; the step loop copies a batch's rows out by the same local row index it gathers
/// features with, instead of running the teacher again (which cost as much as the student's
/// step, or far more for a CNN teacher).
///
/// Every row is computed in a call of exactly `batch` rows, the per-batch path's batch size
/// (the last chunk is the window of the final `batch` rows, recomputing a few), so a pruned
/// layer takes the same sparse or dense path (`SparseLayer.minBatch`). The cached logits then
/// equal the per-batch ones bit for bit for int8 teachers (activations quantized per row,
/// integer GEMM) and sparse layers; fp32 dense layers run OpenBLAS sgemm, whose rounding
/// depends on a row's position in the batch, so there the two agree to a few float ulps
/// (within 1e-5 of max(1, the row's largest |logit|); measured ≤ 1e-6 on the Fashion-MNIST
/// teachers). Neither is more exact than the other; the cache gives each row one value for
/// the whole run, and a resume recomputes the same values, so resume stays bit-exact.
/// DistillationTests checks both bounds.
public final class TeacherLogits {
    public let rows: Int, classes: Int
    /// (rows, classes), row-major; row r is local training row r.
    public let logits: UnsafeMutableBufferPointer<Float>
    /// Seconds the teacher took to fill the cache.
    public let seconds: Double

    /// Runs `runtime` on `features` (rows, inputs), row-major, in calls of `batch` rows.
    public init(_ runtime: LogitsProvider, features: UnsafePointer<Float>, rows: Int, batch: Int) {
        let start = monotonicSeconds()
        let k = runtime.classes, d = runtime.inputSize, b = max(1, min(batch, rows))
        self.rows = rows
        classes = k
        logits = .allocate(capacity: max(rows * k, 1))
        var r0 = 0
        while r0 < rows {
            let lo = min(r0, rows - b) // the last chunk: the final b rows
            let z = runtime.logits(features + lo * d, batch: b)
            (logits.baseAddress! + lo * k).update(from: z, count: b * k)
            r0 = lo + b
        }
        seconds = monotonicSeconds() - start
    }

    deinit { logits.deallocate() }

    public var bytes: Int { rows * classes * MemoryLayout<Float>.stride }

    /// Copies rows `order[0..<count]` into out (count, classes).
    @inline(__always)
    public func gather(_ order: UnsafePointer<Int32>, count: Int, into out: UnsafeMutablePointer<Float>) {
        for i in 0..<count {
            (out + i * classes).update(from: logits.baseAddress! + Int(order[i]) * classes, count: classes)
        }
    }
}
