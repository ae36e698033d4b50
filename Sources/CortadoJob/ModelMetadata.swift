import CortadoCore
import CortadoData
import Foundation

/// The metadata a model file carries about its training: written by the trainer at the end
/// of a run and by `cortado compress` from a checkpoint, so both record the same keys.
public enum ModelMetadata {
    /// What a model file records about its training; models trained on CSV data also carry
    /// the manifest's column transforms, so cortado-infer can read raw rows. `specJSON` is the
    /// spec as stored (a checkpoint's, verbatim, for `cortado compress`); `data` the manifest's path.
    public static func make(
        spec: JobSpec, specJSON: String, manifest: DatasetManifest, data: String, step: Int,
        worldSize: Int
    ) throws -> [String: String] {
        var meta = [
            "job_spec": specJSON, "step": String(step), "world_size": String(worldSize),
            "data": data, "cortado_version": cortadoVersion
        ]
        if let t = spec.teacher {
            // The teacher by path and content (SHA-256), with the loss's temperature and alpha
            // (not whether it was cached: the same soft targets, up to float rounding).
            var t = t
            t.cache = nil
            meta["distilled_from"] = String(decoding: try stableJSON(t, pretty: false), as: UTF8.self)
        }
        meta["preprocessing"] = try Preprocessing.metadata(of: manifest)
        return meta
    }
}
