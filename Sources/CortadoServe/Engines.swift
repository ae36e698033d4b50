import CortadoCore
import CortadoInfer
import CortadoModel
import Foundation

/// A classifier on one inference thread: its own `InferenceModel` (scratch buffers, the int8 /
/// sparse / fp32 paths exactly as `cortado-infer` scores) and input/output buffers sized for
/// the batch.
final class ClassifierEngine: BatchEngine {
    let model: InferenceModel
    private var x = [Float](), p = [Float]() // (rows, inputSize), (rows, classes)

    init(model: InferenceModel, maxBatch: Int) {
        self.model = model
        model.reserve(batch: maxBatch)
        x = [Float](repeating: 0, count: maxBatch * model.spec.inputSize)
        p = [Float](repeating: 0, count: maxBatch * model.classes)
    }

    func run(_ jobs: [BatchJob]) {
        let d = model.inputSize, k = model.classes
        let rows = jobs.reduce(0) { $0 + $1.rows }
        if x.count < rows * d { x = [Float](repeating: 0, count: rows * d) }
        if p.count < rows * k { p = [Float](repeating: 0, count: rows * k) }
        var at = 0
        for j in jobs {
            if case .features(let f) = j.input { x.replaceSubrange((at * d)..<(at * d + f.count), with: f) }
            at += j.rows
        }
        x.withUnsafeBufferPointer { xb in
            p.withUnsafeMutableBufferPointer { pb in
                model.predict(xb.baseAddress!, batch: rows, probabilities: pb.baseAddress!)
            }
        }
        at = 0
        for j in jobs {
            let probs = Array(p[(at * k)..<((at + j.rows) * k)])
            var predicted = [Int](repeating: 0, count: j.rows)
            // Argmax with the first maximum winning, as `score` writes `predicted`.
            for i in 0..<j.rows {
                for c in 1..<k where probs[i * k + c] > probs[i * k + predicted[i]] { predicted[i] = c }
            }
            j.output = .classes(probabilities: probs, predicted: predicted)
            at += j.rows
        }
    }
}

/// A recommender on one inference thread: top-K items per user, leaving out the items each
/// user already interacted with in the training data when the model's data folder is readable.
final class RecommenderEngine: BatchEngine {
    let model: RecommenderModel
    let history: Interactions?

    init(model: RecommenderModel, history: Interactions?) {
        self.model = model
        self.history = history
    }

    func run(_ jobs: [BatchJob]) {
        for j in jobs {
            guard case .users(let users, let k) = j.input else { continue }
            var items = [[Int32]](), scores = [[Float]]()
            for u in users {
                let top = model.topK(user: u, k: k, exclude: history?.items(of: Int(u)) ?? [])
                items.append(top.map(\.item))
                scores.append(top.map(\.score))
            }
            j.output = .topK(items: items, scores: scores)
        }
    }
}
