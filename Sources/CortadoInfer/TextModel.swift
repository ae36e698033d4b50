import CortadoCore
import CortadoData
import CortadoModel
import Foundation

/// A loaded text classifier `.cmodel`: raw text goes through the model's own tokenizer and
/// vocabulary (its `text` metadata) into the training code's `TextClassifier<Float>`. int8
/// files are dequantized once at load (int8 cuts the file ≈ 4×, not compute).
public final class TextModel {
    public let path: String
    public let header: ModelFile.Header
    public let spec: TextSpec
    public let vocabulary: TextVocabulary
    public let encoder: TextEncoder
    public let model: TextClassifier<Float>

    public init(path: String, maxBatch: Int = 256) throws {
        let file = try ModelFile.load(path)
        guard let spec = file.header.text else {
            throw CortadoError.model("\(path): not a text classifier (no 'text' section)")
        }
        guard let json = file.header.metadata["text"],
            let v = try? JSONDecoder().decode(TextVocabulary.self, from: Data(json.utf8))
        else {
            throw CortadoError.model("\(path): text classifier without its vocabulary ('text' metadata)")
        }
        do {
            try v.settings.validate()
            try spec.validate(classes: file.header.classes.count)
        } catch let e as CortadoError { throw CortadoError.model("\(path): \(e.message)") }
        guard v.rows == spec.rows else {
            throw CortadoError.model("\(path): vocabulary gives \(v.rows) embedding rows, the model has \(spec.rows)")
        }
        self.path = path
        header = file.header
        self.spec = spec
        vocabulary = v
        encoder = TextEncoder(v)
        model = TextClassifier<Float>(spec: spec, maxBatch: maxBatch, training: false)
        try file.readTensors(spec.parameterLayout, into: model.params.base, path: path)
    }

    public var classes: [String] { header.classes }

    /// Logits (documents, classes) of id lists given as offsets (documents + 1) and ids.
    public func logits(offsets: [Int], ids: [Int32]) -> [Float] {
        let n = offsets.count - 1, k = model.classes
        var out = [Float](repeating: 0, count: n * k)
        var at = 0
        var off = [Int32](repeating: 0, count: model.maxBatch + 1)
        ids.withUnsafeBufferPointer { idp in
            while at < n {
                let b = min(model.maxBatch, n - at)
                for i in 0...b { off[i] = Int32(offsets[at + i] - offsets[at]) }
                let base = idp.baseAddress.map { $0 + offsets[at] } ?? UnsafePointer(bitPattern: 8)!
                let l = model.forward(offsets: off, ids: base, batch: b)
                for j in 0..<(b * k) { out[at * k + j] = l[j] }
                at += b
            }
        }
        return out
    }

    /// Logits of raw documents, tokenized as the model's training data was.
    public func logits(texts: [String]) -> [Float] {
        var offsets = [0], ids = [Int32]()
        for t in texts {
            ids += encoder.ids(t)
            offsets.append(ids.count)
        }
        return logits(offsets: offsets, ids: ids)
    }

    /// Scores a prepared split file (`/offsets`, `/ids`, `/labels` from `cortado prepare text`).
    public func scorePrepared(path file: String) throws -> (rows: Int, accuracy: Double?, logits: [Float]) {
        let h5 = try HDF5File.open(file)
        guard h5.hasDataset("offsets"), h5.hasDataset("ids") else {
            throw CortadoError.data("\(file): no /offsets and /ids (not a text split from `cortado prepare text`)")
        }
        let o = try h5.readInt64s("offsets")
        let total = try h5.elementCount(of: "ids", elementSize: 4)
        var ids = [Int32](repeating: 0, count: max(total, 1))
        try ids.withUnsafeMutableBytes { try h5.readAll("ids", dtype: .int32, into: $0.baseAddress!) }
        ids = Array(ids.prefix(total))
        let offsets = o.map { Int($0) }
        guard offsets.first == 0, offsets.last == total, zip(offsets, offsets.dropFirst()).allSatisfy({ $0 <= $1 })
        else { throw CortadoError.data("\(file): /offsets do not run from 0 to \(total) in order") }
        if let bad = ids.first(where: { $0 < 0 || Int($0) >= spec.rows }) {
            throw CortadoError.data("\(file): id \(bad) is outside the model's \(spec.rows)-row embedding table")
        }
        let l = logits(offsets: offsets, ids: ids)
        let n = offsets.count - 1
        guard h5.hasDataset("labels") else { return (n, nil, l) }
        let labels = try h5.readInt64s("labels")
        return (n, accuracy(l, labels: labels.map(Int.init)), l)
    }

    /// Scores raw documents from `input` (.tsv/.csv with a text column, Orange .tab, or lines,
    /// optionally `__label__X`-prefixed); accuracy when every document has a label the model knows.
    public func scoreRaw(input: String, textColumn: String = "text", labelColumn: String = "label", output: String?)
        throws -> (rows: Int, accuracy: Double?, seconds: Double)
    {
        var source = TextSource()
        source.requireLabels = false
        source.textColumn = textColumn
        source.labelColumn = labelColumn
        let docs = try source.documents(input)
        let t0 = monotonicSeconds()
        let l = logits(texts: docs.map(\.text))
        let seconds = monotonicSeconds() - t0
        let k = model.classes
        if let output {
            var text = "row,prediction,score\n"
            for r in 0..<docs.count {
                let p = argmax(l, row: r, k: k)
                text += "\(r),\(csvField(classes[p])),\(l[r * k + p])\n"
            }
            try AtomicFile.write(Data(text.utf8), to: output)
        }
        let labels = docs.map { d in classes.firstIndex(of: d.label) ?? -1 }
        return (docs.count, labels.allSatisfy { $0 >= 0 } ? accuracy(l, labels: labels) : nil, seconds)
    }

    func argmax(_ l: [Float], row: Int, k: Int) -> Int {
        var best = 0
        for c in 1..<k where l[row * k + c] > l[row * k + best] { best = c }
        return best
    }

    func accuracy(_ l: [Float], labels: [Int]) -> Double {
        let k = model.classes
        let correct = labels.enumerated().reduce(0) { $0 + (argmax(l, row: $1.offset, k: k) == $1.element ? 1 : 0) }
        return Double(correct) / Double(max(labels.count, 1))
    }

    func csvField(_ s: String) -> String {
        s.contains(",") || s.contains("\"") ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
    }
}
