import CortadoCore
import CortadoData
import Foundation

/// Where cortado-infer's predictions go, by the output's extension: `.csv` (row, predicted,
/// label, one probability column per class), `.jsonl` (one object per row: row, class name,
/// class index, label, probabilities) or `.h5` (`/predicted` int64, `/probabilities`
/// float32 (rows, classes), `/labels` when known, the class names as an attribute — what h5py
/// users load in one line). Everything is written to `NAME.tmp` and renamed when complete, so a
/// failed run leaves no half-written predictions under the real name.
final class PredictionWriter {
    enum Format { case csv, jsonl, hdf5 }

    let path: String
    let format: Format
    let classNames: [String]
    let hasLabels: Bool
    private var handle: FileHandle?
    /// HDF5 keeps the predictions until `finish` (rows × classes floats).
    private var predicted = [Int64](), probabilities = [Float](), labels = [Int64]()

    init(path: String, classNames: [String], hasLabels: Bool) throws {
        let lower = path.lowercased()
        format =
            lower.hasSuffix(".jsonl") || lower.hasSuffix(".ndjson")
            ? .jsonl
            : lower.hasSuffix(".h5") || lower.hasSuffix(".hdf5") ? .hdf5 : .csv
        self.path = path
        self.classNames = classNames
        self.hasLabels = hasLabels
        guard format != .hdf5 else { return }
        guard FileManager.default.createFile(atPath: path + ".tmp", contents: nil),
            let fh = FileHandle(forWritingAtPath: path + ".tmp")
        else {
            throw CortadoError.io("\(path): cannot create")
        }
        handle = fh
        if format == .csv {
            fh.write(
                ("row,predicted," + (hasLabels ? "label," : "")
                    + classNames.map { "p_" + csvField($0) }.joined(separator: ",") + "\n").data(using: .utf8)!)
        }
    }

    /// Rows `first ..< first + n`: arg-max classes, labels (when known) and probabilities (n, k).
    func append(
        first: Int, n: Int, predicted arg: [Int], labels y: UnsafePointer<Int32>, probabilities p: UnsafePointer<Float>
    ) throws {
        let k = classNames.count
        switch format {
        case .hdf5:
            predicted += arg.prefix(n).map(Int64.init)
            probabilities += UnsafeBufferPointer(start: p, count: n * k)
            if hasLabels { labels += (0..<n).map { Int64(y[$0]) } }
        case .csv:
            var lines = ""
            for i in 0..<n {
                lines +=
                    "\(first + i),\(arg[i])," + (hasLabels ? "\(y[i])," : "")
                    + (0..<k).map { String(format: "%.6g", p[i * k + $0]) }.joined(separator: ",") + "\n"
            }
            handle?.write(lines.data(using: .utf8)!)
        case .jsonl:
            var lines = ""
            for i in 0..<n {
                var obj: [String: Any] = [
                    "row": first + i, "class": classNames[arg[i]], "class_index": arg[i],
                    "probabilities": (0..<k).map { Double(p[i * k + $0]) }
                ]
                if hasLabels { obj["label"] = Int(y[i]) }
                lines +=
                    String(
                        decoding: try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]), as: UTF8.self
                    ) + "\n"
            }
            handle?.write(lines.data(using: .utf8)!)
        }
    }

    /// Flushes, closes and renames into place.
    func finish() throws {
        if format == .hdf5 {
            let h5 = try HDF5File.create(path + ".tmp")
            try h5.write("predicted", predicted)
            try h5.write("probabilities", probabilities, shape: [predicted.count, classNames.count])
            if hasLabels { try h5.write("labels", labels) }
            try h5.setAttribute(
                "classes", String(decoding: try JSONSerialization.data(withJSONObject: classNames), as: UTF8.self))
            try h5.close()
        } else if let handle {
            try handle.synchronize()
            try handle.close()
        }
        guard rename(path + ".tmp", path) == 0 else { throw CortadoError.io("\(path): rename failed") }
    }
}

func csvField(_ s: String) -> String {
    s.contains(",") || s.contains("\"") ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
}
