import CortadoCore
import CortadoData
import CortadoModel
import Foundation

/// A loaded recommender `.cmodel`: scores (user, item) pairs and ranks items for a user with
/// the training code's own `Recommender<Float>`. int8 files store every 2-D tensor (embedding
/// tables per id, tower weights per channel) as int8 with fp32 scales; they are dequantized
/// once at load, so int8 here cuts file size ≈ 4×, not compute.
public final class RecommenderModel {
    public let path: String
    public let header: ModelFile.Header
    public let spec: RecommenderSpec
    public let model: Recommender<Float>
    /// Original id strings of users and items (index = id − 1), from the model's
    /// preprocessing metadata; nil when the model was trained on ids directly.
    public let userNames: [String]?, itemNames: [String]?
    private let allScores: UnsafeMutableBufferPointer<Float>
    private let rowUsers: UnsafeMutablePointer<Int32>, rowItems: UnsafeMutablePointer<Int32>

    public init(path: String, maxBatch: Int = 1024) throws {
        let file = try ModelFile.load(path)
        guard let spec = file.header.recommender else {
            throw CortadoError.model("\(path): not a recommender model (use it with --input)")
        }
        do { try spec.validate() } catch let e as CortadoError {
            throw CortadoError.model("\(path): bad recommender: \(e.message)")
        }
        self.path = path
        header = file.header
        self.spec = spec
        model = Recommender<Float>(spec: spec, maxBatch: maxBatch)
        try file.readTensors(spec.parameterLayout, into: model.params.base, path: path)
        model.indexUserDays()
        var names: (users: [String]?, items: [String]?) = (nil, nil)
        if let text = file.header.metadata["preprocessing"],
            let pre = try? JSONDecoder().decode(Preprocessing.self, from: Data(text.utf8))
        {
            names.users = pre.columns.first { $0.name == spec.userColumn }?.vocabulary
            names.items = pre.columns.first { $0.name == spec.itemColumn }?.vocabulary
        }
        (userNames, itemNames) = names
        allScores = .allocate(capacity: spec.items)
        rowUsers = .allocate(capacity: maxBatch)
        rowItems = .allocate(capacity: maxBatch)
    }

    deinit { allScores.deallocate(); rowUsers.deallocate(); rowItems.deallocate() }

    /// The id of an original user/item string (vocabulary lookup), or of a number when the
    /// model has no vocabulary. nil when unknown.
    public func id(ofUser name: String) -> Int32? { lookup(name, userNames, spec.users) }
    public func id(ofItem name: String) -> Int32? { lookup(name, itemNames, spec.items) }
    public func itemName(_ id: Int32) -> String { itemNames.map { $0[Int(id) - 1] } ?? String(id) }

    private func lookup(_ name: String, _ names: [String]?, _ rows: Int) -> Int32? {
        if let names { return names.firstIndex(of: name).map { Int32($0 + 1) } }
        guard let v = Int32(name), v > 0, Int(v) < rows else { return nil }
        return v
    }

    /// Scores of every item (index = item id; id 0 scored too but never ranked) for `user`.
    public func scoreAllItems(user: Int32) -> UnsafeMutableBufferPointer<Float> {
        var j = 0
        while j < spec.items {
            let n = min(model.maxBatch, spec.items - j)
            for i in 0..<n { rowUsers[i] = user; rowItems[i] = Int32(j + i) }
            let s = model.forward(users: rowUsers, items: rowItems, batch: n)
            (allScores.baseAddress! + j).update(from: s, count: n)
            j += n
        }
        return allScores
    }

    /// The `k` best items for `user` (highest score first), skipping `exclude` (sorted ids).
    public func topK(user: Int32, k: Int, exclude: ArraySlice<Int32>) -> [(item: Int32, score: Float)] {
        let s = scoreAllItems(user: user)
        var skip = Set(exclude)
        skip.insert(0)
        var best = [(item: Int32, score: Float)]()
        for j in 1..<spec.items where !skip.contains(Int32(j)) {
            let v = s[j]
            if best.count < k || v > best[best.count - 1].score {
                let at = best.firstIndex { $0.score < v } ?? best.count
                best.insert((Int32(j), v), at: at)
                if best.count > k { best.removeLast() }
            }
        }
        return best
    }
}

extension RecommenderModel {
    /// Every (user, item) pair in all splits of a prepared data folder — the items to leave
    /// out of a user's recommendations. The folder must be the one the model was trained on
    /// (same vocabularies); its id columns are matched by name.
    public func interactions(manifestPath: String) throws -> Interactions {
        var pairs = [(user: Int32, item: Int32)]()
        let manifest = try DatasetManifest.load(manifestPath)
        let columns = manifest.categoricalColumns ?? []
        guard let uc = columns.firstIndex(of: spec.userColumn), let ic = columns.firstIndex(of: spec.itemColumn) else {
            throw CortadoError.usage(
                "\(manifestPath): has no id columns '\(spec.userColumn)' and '\(spec.itemColumn)' (model \(path))")
        }
        for split in manifest.splits.keys.sorted() {
            pairs += try idPairs(
                SplitReader(manifestPath: manifestPath, split: split), userColumn: uc, itemColumn: ic,
                users: spec.users, items: spec.items)
        }
        return Interactions(users: spec.users, pairs: pairs)
    }
}

/// Scores the (user, item) pairs of an HDF5 file (`/categorical` with the model's id columns in
/// the data's order, as `cortado prepare csv` writes it); RMSE when it has `/targets`. A model
/// with time terms (`TimeBias`) reads each row's Unix time from `/features` (the time column's
/// position from the manifest beside the file, else the one the model was trained with); with a
/// per-(user, day) bias, `unseenUserDays` counts the rows whose pair has no row (scored with 0).
public func scorePairs(model m: RecommenderModel, inputPath: String, csvOutput: String?) throws -> (
    rows: Int, rmse: Double?, unseenUserDays: Int?
) {
    let h5 = try HDF5File.open(inputPath)
    try h5.expectType("categorical", .int64)
    let shape = try h5.shape(of: "categorical")
    guard shape.count == 2, shape[1] >= 2 else {
        throw CortadoError.data("\(inputPath): 'categorical' has shape \(shape), expected [rows, ≥ 2]")
    }
    let manifest = try? DatasetManifest.load(
        ((inputPath as NSString).deletingLastPathComponent as NSString).appendingPathComponent("manifest.json"))
    let manifestColumns = manifest?.categoricalColumns
    let uc = manifestColumns?.firstIndex(of: m.spec.userColumn) ?? 0,
        ic = manifestColumns?.firstIndex(of: m.spec.itemColumn) ?? 1
    let ids = try h5.readInt64s("categorical"), k = shape[1], n = shape[0]
    let targets = h5.hasDataset("targets") ? try h5.readFloats("targets") : nil
    var users = [Int32](), items = [Int32]()
    for r in 0..<n {
        let u = ids[r * k + uc], i = ids[r * k + ic]
        guard u >= 0, u < m.spec.users, i >= 0, i < m.spec.items else {
            throw CortadoError.data(
                "\(inputPath): row \(r) has ids (\(u), \(i)) outside the model's \(m.spec.users)×\(m.spec.items) tables"
            )
        }
        users.append(Int32(u)); items.append(Int32(i))
    }
    let seconds = try m.spec.time.map { try rowSeconds(h5, inputPath, time: $0, manifest: manifest, rows: n) }
    let days = m.spec.time.flatMap { t in seconds.map { $0.map { Float(t.day(seconds: $0)) } } }
    let dayRows =
        m.spec.time?.userDays == nil
        ? nil : seconds.map { zip(users, $0).map { m.model.userDayRow(user: $0, seconds: $1) } }
    let unseen = dayRows.map { $0.reduce(0) { $0 + ($1 == 0 ? 1 : 0) } }
    var scores = [Float](repeating: 0, count: n)
    users.withUnsafeBufferPointer { up in
        items.withUnsafeBufferPointer { ip in
            (days ?? [0]).withUnsafeBufferPointer { dp in
                (dayRows ?? [0]).withUnsafeBufferPointer { rp in
                    var at = 0
                    while at < n {
                        let b = min(m.model.maxBatch, n - at)
                        let s = m.model.forward(
                            users: up.baseAddress! + at, items: ip.baseAddress! + at,
                            days: days == nil ? nil : dp.baseAddress! + at,
                            userDays: dayRows == nil ? nil : rp.baseAddress! + at, batch: b)
                        for j in 0..<b { scores[at + j] = s[j] }
                        at += b
                    }
                }
            }
        }
    }
    if let csvOutput {
        var text = "user,item,score\n"
        for r in 0..<n { text += "\(users[r]),\(items[r]),\(scores[r])\n" }
        try AtomicFile.write(Data(text.utf8), to: csvOutput)
    }
    guard let targets else { return (n, nil, unseen) }
    let sse = (0..<n).reduce(0.0) { $0 + Double((scores[$1] - targets[$1]) * (scores[$1] - targets[$1])) }
    return (n, (sse / Double(max(n, 1))).squareRoot(), unseen)
}

/// (rows) Unix seconds of an HDF5 file's rows for a model with time terms, from its
/// `/features` column (the manifest's position of `time.column` when the file has one beside
/// it, else `time.feature`).
func rowSeconds(_ h5: HDF5File, _ path: String, time: TimeBias, manifest: DatasetManifest?, rows: Int) throws
    -> [Double]
{
    guard h5.hasDataset("features") else {
        throw CortadoError.data(
            "\(path): has no /features with the time column '\(time.column)' the model's time_bias needs")
    }
    let shape = try h5.shape(of: "features")
    let at = manifest?.columns?.first { $0.name == time.column }?.offset ?? time.feature
    guard shape.count == 2, shape[0] == rows, at < shape[1] else {
        throw CortadoError.data(
            "\(path): /features has shape \(shape); the time column '\(time.column)' is feature \(at) of \(rows) rows")
    }
    let f = try h5.readFloats("features"), w = shape[1]
    return (0..<rows).map { Double(f[$0 * w + at]) }
}
