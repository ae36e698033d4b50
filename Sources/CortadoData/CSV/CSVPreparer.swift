import CortadoCore
import Foundation

/// `cortado prepare csv`: CSV/TSV files → cleaned, encoded, standardized HDF5 shards plus a
/// manifest, in bounded memory, by one process or by N ranks under mpirun (identical output).
///
/// Three streaming passes over the input:
///  1. rows: field counts, exact-duplicate detection (64-bit row hashes, first occurrence in
///     file order wins), per-user last interactions for leave-last-out;
///  2. statistics of the training split only (exact sums, mergeable quantile histograms,
///     category counts), reduced across ranks;
///  3. encode and write; ranks take turns writing their rows at their global offsets.
/// Ranks split each file by bytes at record boundaries (`csvRankRange`). Memory: the row hashes
/// (8–16 bytes per distinct row, none with `dedup: false`), per-column statistics and one
/// 8 192-row write block per split.
public struct CSVPreparer {
    public var inputs: [String]
    public var out: String
    public var label: String
    public var task: String? // classification | regression (inferred if nil)
    public var shards = 1
    public var shardRows: Int?
    public var split = (train: 0.8, validation: 0.1, test: 0.1)
    public var schemaPath: String?
    public var delimiter = UInt8(ascii: ",")
    public var header = true
    public var missingValues = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "?"]
    public var seed: UInt64 = 42
    public var dedup = true
    public var leaveLastOut: (user: String, time: String)?
    /// Which of a user's rows at the same latest time is "the latest" (leave-last-out).
    public var ties = TieRule.fileOrder
    /// Leave-last-out: each user's second-latest row → validation. False keeps it in training
    /// and leaves validation empty: the final fit after tuning, for the epochs the tuned run
    /// chose (`--no-validation`; the second-latest rating is the best evidence of the latest).
    public var holdOutValidation = true
    /// Extra provenance for the manifest (name → SHA-256), its name and who made it: `prepare
    /// movielens` feeds this preparer a file it extracted and records the wheel it came from.
    public var provenance: [String: String] = [:]
    public var datasetName: String?
    public var createdBy = "cortado prepare csv"
    public var overwrite = false
    public var sampleRows = 1000

    public init(inputs: [String], out: String, label: String) {
        self.inputs = inputs
        self.out = out
        self.label = label
    }

    static let splitNames = ["train", "validation", "test"]

    /// How leave-last-out breaks ties between a user's rows with the same time. Real logs have
    /// them (MovieLens-100k: 415 of 943 users have 2+ ratings at their latest second), and
    /// which row becomes the test row changes published numbers, so the rule is explicit and
    /// reported. `fileOrder`: the row nearer the end of the input is the later one — what a
    /// stable sort by time does, the common convention. `random`: a hash of the row's content
    /// seeded by `--seed` (Cortado's rule before the rule was reported).
    public enum TieRule: String, CaseIterable, Codable, Sendable {
        case fileOrder = "file-order", random
        public var explanation: String {
            switch self {
            case .fileOrder: "file order (the row nearer the end of the input counts as later)"
            case .random: "a seeded hash of the row's content"
            }
        }
    }

    /// One input file: its header, where its data starts, this rank's byte range.
    struct Input {
        var path: String
        var dataStart: Int
        var dataLine: Int
        var range: Range<Int> = 0..<0
        var firstLine = 1
    }

    /// The schema step's decisions: every column's schema and role, the label column, the task
    /// and the tokens that mean a missing value.
    struct TableSchema {
        var columns: [ColumnInfo]
        var labelIndex: Int?
        var regression: Bool
        var missing: [String]
    }

    public func run(comm: Collective = Solo(), log: (String) -> Void = { _ in }) throws -> DatasetManifest {
        let t0 = monotonicSeconds()
        let folder = OutputFolder(out, overwrite: overwrite)
        try comm.agree("checking options") { try validateOptions() }
        let (header, headerFiles) = try comm.agree("reading headers") { try readHeaders() }
        let schema = try comm.agree("building the schema") {
            try buildSchema(header: header, first: headerFiles[0])
        }
        if comm.rank == 0 { logSchema(schema, log: log) }
        // Rank 0 creates the staging folder; the others take part in the agreement on it.
        if comm.rank == 0 {
            try comm.agree("creating \(folder.staging)") { try folder.begin() }
        } else {
            try comm.agree("creating output") {}
        }
        do {
            let files = try rankRanges(headerFiles, comm: comm)
            let parser = RowParser(
                columns: schema.columns, labelIndex: schema.labelIndex, regression: schema.regression,
                missingTokens: schema.missing)
            // The inputs' SHA-256 (provenance, in the manifest) is computed by rank 0 on a second
            // thread while the passes run.
            let sourceHashes = SourceHashes(comm.rank == 0 ? inputs : [])
            var marks = [("start", monotonicSeconds())]
            let rows = try rowsPhase(files: files, parser: parser, comm: comm)
            marks.append(("rows", monotonicSeconds()))
            let stats = try statisticsPhase(
                files: files, parser: parser, rows: rows, schema: schema, folder: folder, comm: comm)
            if comm.rank == 0 {
                log(summaryLine(stats))
                if let l = stats.report.leaveLastOut { log(l.description) }
                if let u = stats.report.unseen, let line = describeUnseen(u) { log(line) }
            }
            marks.append(("statistics", monotonicSeconds()))
            let plan = try writePhase(files: files, stats: stats, schema: schema, folder: folder, comm: comm)
            stats.spill.discard()
            marks.append(("write", monotonicSeconds()))
            let manifest = try manifestPhase(
                stats: stats, schema: schema, plan: plan, sourceHashes: sourceHashes, folder: folder, comm: comm)
            marks.append(("checksums+manifest", monotonicSeconds()))
            if comm.rank == 0 { log(timingLine(marks, since: t0, folder: folder)) }
            return manifest
        } catch {
            if comm.rank == 0 { folder.abandon() }
            throw error
        }
    }

    /// Logs the schema as YAML that `--schema` reads back.
    func logSchema(_ schema: TableSchema, log: (String) -> Void) {
        log(
            schemaPath.map { "schema (\($0), with inferred types for the columns it does not list):" }
                ?? "schema (save it, edit it, pass it back with --schema):")
        log("missing_values: [" + schema.missing.map(yamlQuote).joined(separator: ", ") + "]")
        log("columns:")
        let task = schema.regression ? "regression" : "classification"
        for c in schema.columns {
            log(
                "  - "
                    + (c.role == "label"
                        ? "{name: \(yamlQuote(c.name)), type: \(c.schema.type.rawValue)}   # the label: \(task)"
                        : c.schema.yaml))
        }
    }

    /// This rank's byte range of each file and the line it starts at (one process: all of it).
    func rankRanges(_ headerFiles: [Input], comm: Collective) throws -> [Input] {
        var files = headerFiles
        for i in files.indices {
            let r =
                comm.size == 1
                ? (files[i].dataStart..<(try fileSize(files[i].path)), files[i].dataLine)
                : try csvRankRange(
                    path: files[i].path, dataStart: files[i].dataStart, dataStartLine: files[i].dataLine, comm: comm
                )
            files[i].range = r.0
            files[i].firstLine = r.1
        }
        return files
    }

    /// `prepared OUT in 12.3s (rows 1.0s, statistics …)`: the time of each phase since the last mark.
    func timingLine(_ marks: [(String, Double)], since t0: Double, folder: OutputFolder) -> String {
        let passes = zip(marks.dropFirst(), marks).map { String(format: "%@ %.1fs", $0.0, $0.1 - $1.1) }.joined(
            separator: ", ")
        return String(format: "prepared %@ in %.1fs (%@)", folder.final, monotonicSeconds() - t0, passes)
    }

    func validateOptions() throws {
        guard !inputs.isEmpty else { throw CortadoError.usage("no input files") }
        let total = split.train + split.validation + split.test
        guard split.train > 0, split.validation >= 0, split.test >= 0, abs(total - 1) < 1e-9 else {
            throw CortadoError.usage(
                "--split: fractions must be non-negative, train positive, and add up to 1 (got \(total))")
        }
        guard shards >= 1 else { throw CortadoError.usage("--shards must be at least 1") }
        if let r = shardRows, r < 1 { throw CortadoError.usage("--shard-rows must be at least 1") }
        if let t = task, !["classification", "regression"].contains(t) {
            throw CortadoError.usage("--task: '\(t)' is not classification or regression")
        }
    }

    // MARK: header and schema

    func readHeaders() throws -> ([String], [Input]) {
        var header: [String]?
        var firstPath = ""
        var files = [Input]()
        for path in inputs {
            guard FileManager.default.fileExists(atPath: path) else { throw CortadoError.io("\(path): no such file") }
            let t = try CSVTokenizer(path: path, delimiter: delimiter)
            guard try t.next() else { throw CortadoError.data("\(path): empty file") }
            let names =
                self.header
                ? (0..<t.fieldCount).map { t.string($0).trimmingCharacters(in: .whitespaces) }
                : (0..<t.fieldCount).map { "c\($0)" }
            if self.header {
                var seen = Set<String>()
                for n in names {
                    if n.isEmpty { throw CortadoError.data("\(path):1: empty column name in the header") }
                    if !seen.insert(n).inserted {
                        throw CortadoError.data("\(path):1: column '\(n)' appears twice in the header")
                    }
                }
            }
            if let h = header, h != names {
                throw CortadoError.data(
                    "\(path): header (\(names.joined(separator: ","))) differs from \(firstPath) (\(h.joined(separator: ",")))"
                )
            }
            header = names
            firstPath = path
            // Without a header line the data starts at the first record.
            let after = self.header ? (try t.next() ? t.recordOffset : try fileSize(path)) : 0
            files.append(
                Input(path: path, dataStart: after, dataLine: self.header ? (t.recordLine > 1 ? t.recordLine : 2) : 1))
        }
        return (header!, files)
    }

    func buildSchema(header: [String], first: Input) throws -> TableSchema {
        let file = try schemaPath.map(SchemaFile.load)
        let missing = file?.missingValues ?? missingValues
        for c in file?.columns ?? [] where !header.contains(c.name) {
            throw CortadoError.usage(
                "\(schemaPath!): column '\(c.name)' is not in the header of \(first.path) (columns: \(header.joined(separator: ", ")))"
            )
        }
        guard let labelIndex = header.firstIndex(of: label) else {
            throw CortadoError.usage(
                "label column '\(label)' is not in the header of \(first.path) (columns: \(header.joined(separator: ", ")))"
            )
        }
        // Sample the first rows for inference.
        let t = try CSVTokenizer(
            path: first.path, delimiter: delimiter, range: first.dataStart..<Int.max, firstLine: first.dataLine)
        var sample = [[String?]]()
        let tokens = Set(missing)
        while sample.count < sampleRows, try t.next() {
            guard t.fieldCount == header.count else {
                throw CortadoError.data("\(t.here): \(t.fieldCount) fields, the header has \(header.count)")
            }
            sample.append(
                (0..<header.count).map { j in
                    let s = t.string(j).trimmingCharacters(in: .whitespaces)
                    return s.isEmpty || (!t.isQuoted(j) && tokens.contains(s)) ? nil : s
                })
        }
        let inferred = inferSchema(header: header, sample: sample)
        var columns = header.enumerated().map { j, name -> ColumnInfo in
            let schema = file?.columns.first { $0.name == name } ?? inferred[j]
            return ColumnInfo(
                schema: schema, role: schema.type == .numeric || schema.type == .categorical ? "feature" : "ignored")
        }
        // The label: classification for text or few integer values, regression otherwise.
        let labelValues = sample.compactMap { $0[labelIndex] }
        let regression: Bool
        if let task {
            regression = task == "regression"
        } else {
            let numeric = labelValues.allSatisfy { Double($0) != nil }
            let integral = labelValues.allSatisfy { Double($0).map { $0 == $0.rounded() } ?? false }
            regression = numeric && !(integral && Set(labelValues).count <= 20)
        }
        columns[labelIndex].role = "label"
        columns[labelIndex].schema.type = regression ? .numeric : .categorical
        if let lo = leaveLastOut {
            for n in [lo.user, lo.time] where !header.contains(n) {
                throw CortadoError.usage(
                    "--leave-last-out: column '\(n)' is not in the header (columns: \(header.joined(separator: ", ")))")
            }
        }
        return TableSchema(columns: columns, labelIndex: labelIndex, regression: regression, missing: missing)
    }

    // MARK: pass 1

    /// Pass 1's result once ranks have exchanged theirs: which rows are kept (per file, per local
    /// row), each user's last interactions, and the report so far (rows read, duplicates).
    struct KeptRows {
        var keep: [BitFlags]
        var lastOut: [String: LastTwo]
        var report = CleaningReport()
    }

    /// Pass 1 and its exchanges: duplicates across ranks, last interactions, row counts.
    func rowsPhase(files: [Input], parser: RowParser, comm: Collective) throws -> KeptRows {
        let pass1 = try comm.agree("pass 1 (rows)") {
            try rowPass(files: files, parser: parser, shareHashes: comm.size > 1)
        }
        var rows = KeptRows(keep: pass1.keep, lastOut: [:])
        rows.report.rowsRead = pass1.rows
        if dedup {
            rows.report.duplicates =
                try crossRankDuplicates(pass1, keep: &rows.keep, comm: comm) + pass1.localDuplicates
        }
        rows.lastOut = try mergeLastOut(pass1.lastOut, comm: comm)
        try requireDataRows(pass1.rowsPerFile, files: files, comm: comm)
        return rows
    }

    /// Fails if a file has no data rows. One process knows at once; ranks add up their counts
    /// first, since one rank's part of a file may be empty while the file is not.
    func requireDataRows(_ rowsPerFile: [Int], files: [Input], comm: Collective) throws {
        func noRows(_ i: Int) -> CortadoError { .data("\(files[i].path): has a header but no data rows") }
        let rowCounts = try comm.agree("counting rows") { () -> [Int] in
            for (i, n) in rowsPerFile.enumerated() where n == 0 && comm.size == 1 { throw noRows(i) }
            return rowsPerFile
        }
        let totals = comm.allgather(rowCounts.flatMap { withUnsafeBytes(of: Int64($0)) { Array($0) } })
        for i in files.indices {
            let n = totals.reduce(0) { acc, b in
                acc + b.withUnsafeBytes { Int($0.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)) }
            }
            if n == 0 { throw noRows(i) }
        }
    }

    struct RowPass {
        var rows = 0
        var rowsPerFile: [Int] = []
        var keep: [BitFlags] = [] // per file, per local row, in order
        var keptHashes: [[UInt64]] = [] // per file, hashes of kept rows, in order
        var keptIndex: [[Int]] = [] // per file, local row index of each kept hash
        var localDuplicates = 0
        var lastOut: [String: LastTwo] = [:]
    }

    /// The two latest interactions of a user (by time, then the tie rule's key) and how many
    /// it has; how many rows share its latest time.
    public struct LastTwo: Codable, Equatable {
        var count = 0
        var last: [Double] = [] // [time, tie key…] of the latest
        var second: [Double] = [] // [time, tie key…] of the one before
        var latestTime = -Double.infinity
        var atLatest = 0 // rows at latestTime
        mutating func add(_ key: [Double]) {
            count += 1
            noteTime(key[0], rows: 1)
            if last.isEmpty || last.lexicographicallyPrecedes(key) {
                second = last
                last = key
            } else if key != last && (second.isEmpty || second.lexicographicallyPrecedes(key)) {
                second = key
            }
        }
        mutating func noteTime(_ t: Double, rows: Int) {
            if t > latestTime {
                latestTime = t
                atLatest = rows
            } else if t == latestTime {
                atLatest += rows
            }
        }
        mutating func merge(_ o: LastTwo) {
            let c = count + o.count
            let (t, n) = (latestTime, atLatest)
            for k in [o.last, o.second] where !k.isEmpty { add(k) }
            (latestTime, atLatest) = (t, n)
            noteTime(o.latestTime, rows: o.atLatest)
            count = c
        }
    }

    func rowHash(_ t: CSVTokenizer) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325 ^ seed
        let b = t.recordBytes
        var lo = 0
        for f in 0..<t.fieldCount {
            let hi = t.fieldEnd(f)
            for i in lo..<hi { h = (h ^ UInt64(b[i])) &* 0x100_0000_01b3 }
            h = (h ^ 0x1F) &* 0x100_0000_01b3 // field separator, so "a,bc" ≠ "ab,c"
            lo = hi
        }
        return h
    }

    /// `shareHashes`: keep each kept row's hash for the cross-rank duplicate check (not needed
    /// by a single process, which saves 16 bytes a row).
    func rowPass(files: [Input], parser: RowParser, shareHashes: Bool) throws -> RowPass {
        var p = RowPass()
        var seen = HashSet64()
        let userIdx = leaveLastOut.flatMap { lo in parser.columns.firstIndex { $0.name == lo.user } }
        let timeIdx = leaveLastOut.flatMap { lo in parser.columns.firstIndex { $0.name == lo.time } }
        for (fi, f) in files.enumerated() {
            let t = try CSVTokenizer(path: f.path, delimiter: delimiter, range: f.range, firstLine: f.firstLine)
            var n = 0
            p.keep.append(BitFlags()); p.keptHashes.append([]); p.keptIndex.append([])
            while try t.next() {
                guard t.fieldCount == parser.columns.count else {
                    throw CortadoError.data("\(t.here): \(t.fieldCount) fields, the header has \(parser.columns.count)")
                }
                n += 1
                let h = rowHash(t)
                let fresh = !dedup || seen.insert(h)
                p.keep[p.keep.count - 1].append(fresh)
                if !fresh { p.localDuplicates += 1; continue }
                if dedup && shareHashes {
                    p.keptHashes[p.keptHashes.count - 1].append(h); p.keptIndex[p.keptIndex.count - 1].append(n - 1)
                }
                if let u = userIdx, let ti = timeIdx {
                    let ts = t.string(ti).trimmingCharacters(in: .whitespaces)
                    guard let time = Double(ts) else {
                        throw CortadoError.data(
                            "\(t.here): column '\(parser.columns[ti].name)': '\(ts)' is not a number (a timestamp)")
                    }
                    p.lastOut[t.string(u), default: LastTwo()].add(tieKey(time: time, hash: h, file: fi, t))
                }
            }
            p.rowsPerFile.append(n)
            p.rows += n
        }
        return p
    }

    /// Drops rows whose hash appears earlier in the global order — an earlier file (any rank),
    /// or the same file on a lower rank — so the row kept is the 1-process first occurrence.
    func crossRankDuplicates(_ p: RowPass, keep: inout [BitFlags], comm: Collective) throws -> Int {
        guard comm.size > 1 else { return 0 }
        var blob = [UInt8]()
        for hashes in p.keptHashes {
            let sorted = hashes.sorted()
            blob += withUnsafeBytes(of: Int64(sorted.count)) { Array($0) } + sorted.withUnsafeBytes { Array($0) }
        }
        // perRank[r][f]: rank r's kept hashes of file f.
        let perRank: [[[UInt64]]] = comm.allgather(blob).map { b in
            var at = 0
            return p.keptHashes.indices.map { _ in
                let n = b.withUnsafeBytes { Int($0.loadUnaligned(fromByteOffset: at, as: Int64.self)) }
                at += 8
                let hs = (0..<n).map { k in
                    b.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at + 8 * k, as: UInt64.self) }
                }
                at += 8 * n
                return hs
            }
        }
        var earlierFiles = Set<UInt64>()
        var dropped = 0
        for f in p.keptHashes.indices {
            var earlier = earlierFiles
            for r in 0..<comm.rank { earlier.formUnion(perRank[r][f]) }
            for (k, h) in p.keptHashes[f].enumerated() where earlier.contains(h) {
                keep[f][p.keptIndex[f][k]] = false
                dropped += 1
            }
            for r in 0..<comm.size { earlierFiles.formUnion(perRank[r][f]) }
        }
        return dropped
    }

    /// offsets[f][s]: where this rank's rows of file f start in split s — after every row of
    /// earlier files and of lower ranks in file f.
    func globalOffsets(_ perFile: [[Int]], comm: Collective) -> [[Int]] {
        let flat = perFile.flatMap { $0 }
        let all = comm.allgather(flat.flatMap { v in withUnsafeBytes(of: Int64(v)) { Array($0) } }).map { b in
            (0..<flat.count).map { k in
                b.withUnsafeBytes { Int($0.loadUnaligned(fromByteOffset: 8 * k, as: Int64.self)) }
            }
        }
        var offsets = perFile.map { $0.map { _ in 0 } }
        var base = [0, 0, 0]
        for f in perFile.indices {
            for s in 0..<3 {
                offsets[f][s] = base[s] + (0..<comm.rank).reduce(0) { $0 + all[$1][f * 3 + s] }
                base[s] += (0..<comm.size).reduce(0) { $0 + all[$1][f * 3 + s] }
            }
        }
        return offsets
    }

    func mergeLastOut(_ local: [String: LastTwo], comm: Collective) throws -> [String: LastTwo] {
        guard leaveLastOut != nil else { return [:] }
        guard comm.size > 1 else { return local }
        let parts = comm.allgather(try Exchange.encode(local))
        var merged = [String: LastTwo]()
        for part in parts {
            let d = try Exchange.decode([String: LastTwo].self, part)
            for (u, v) in d { merged[u, default: LastTwo()].merge(v) }
        }
        return merged
    }

    /// A row's leave-last-out order key: its time, then the tie rule's key. File order uses
    /// (file, byte offset of the record), which every rank count computes alike.
    @inline(__always)
    func tieKey(time: Double, hash: UInt64, file: Int, _ t: CSVTokenizer) -> [Double] {
        switch ties {
        case .fileOrder: [time, Double(file), Double(t.recordOffset)]
        case .random: [time, Double(hash >> 11)]
        }
    }

    /// The split of a kept row: leave-last-out by user, or a seeded hash of its content.
    func splitOf(_ t: CSVTokenizer, hash: UInt64, file: Int, parser: RowParser, lastOut: [String: LastTwo]) -> Int {
        if let lo = leaveLastOut, let u = parser.columns.firstIndex(where: { $0.name == lo.user }),
            let ti = parser.columns.firstIndex(where: { $0.name == lo.time })
        {
            let info = lastOut[t.string(u)] ?? LastTwo()
            let key = tieKey(
                time: Double(t.string(ti).trimmingCharacters(in: .whitespaces)) ?? 0, hash: hash, file: file, t)
            if info.count >= 2 && key == info.last { return 2 }
            if holdOutValidation && info.count >= 3 && key == info.second { return 1 }
            return 0
        }
        var z = hash &+ 0x9E37_79B9_7F4A_7C15 &* (seed | 1)
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        let u = Double(z >> 11) * 0x1.0p-53
        return u < split.train ? 0 : (u < split.train + split.validation ? 1 : 2)
    }

    // MARK: pass 2

    /// What pass 2 leaves to pass 3 and the manifest.
    struct Statistics {
        var spill: SpillFile // this rank's kept rows, in order
        var provisional: [ProvisionalIds] // per column, this rank's ids of its categories
        var perFile: [[Int]] // this rank's rows per file and split
        var report: CleaningReport // of all ranks
        var columns: [ColumnInfo] // with training statistics and output layout
        var classes: [String] // empty for regression
        var encoder: RowEncoder
        var profile: DataProfile // the training split's, for drift reports
    }

    /// Pass 2 and its exchange: training statistics of all ranks, turned into the final columns.
    func statisticsPhase(
        files: [Input], parser: RowParser, rows: KeptRows, schema: TableSchema, folder: OutputFolder,
        comm: Collective
    ) throws -> Statistics {
        let spill = try comm.agree("opening the spill file") {
            try SpillFile(path: folder.file(".spill-rank-\(comm.rank)"), width: 2 + parser.columns.count)
        }
        var provisional = parser.columns.map { _ in ProvisionalIds() }
        var report = rows.report
        let partial = try comm.agree("pass 2 (statistics)") {
            try statsPass(
                files: files, parser: parser, keep: rows.keep, lastOut: rows.lastOut, report: &report, spill: spill,
                provisional: &provisional)
        }
        let merged = try mergeStats(partial, report: report, comm: comm)
        let columns = try comm.agree("finishing statistics") {
            try finishColumns(
                schema.columns, stats: merged, labelIndex: schema.labelIndex, regression: schema.regression)
        }
        var mergedReport = merged.report
        mergedReport.leaveLastOut = leaveLastOutReport(rows.lastOut)
        mergedReport.unseen = unseenValues(columns, stats: merged)
        return Statistics(
            spill: spill, provisional: provisional, perFile: partial.perFile, report: mergedReport, columns: columns,
            classes: schema.regression ? [] : (columns[schema.labelIndex!].vocabulary ?? []),
            encoder: RowEncoder(columns: columns), profile: profile(columns, stats: merged))
    }

    /// The training split's profile: each numeric feature's summary (deciles from the merged
    /// quantile histogram) and the class mix.
    func profile(_ columns: [ColumnInfo], stats: Partial) -> DataProfile {
        var features = [String: DistributionSummary]()
        for (j, c) in columns.enumerated() where c.role == "feature" && c.schema.type == .numeric {
            let s = stats.numeric[j]
            guard s.count > 0 else { continue }
            features[c.name] = DistributionSummary(
                count: s.count, mean: s.mean, std: s.std,
                deciles: (1...9).map { s.histogram.quantile(Double($0) / 10, min: s.min, max: s.max) })
        }
        let classes = columns.first { $0.role == "label" }?.vocabulary
        return DataProfile(
            rows: stats.rowsWritten["train"] ?? 0, labelCounts: classes.map { $0.map { stats.labels[$0] ?? 0 } },
            features: features)
    }

    /// `rows: 1000 read, 3 duplicates, dropped 2; train 800, …; 12 features`.
    func summaryLine(_ stats: Statistics) -> String {
        let r = stats.report
        let dropped = r.dropped.values.reduce(0, +)
        return
            "rows: \(r.rowsRead) read, \(r.duplicates) duplicates, dropped \(dropped); train \(r.rowsWritten["train"] ?? 0), validation \(r.rowsWritten["validation"] ?? 0), test \(r.rowsWritten["test"] ?? 0); \(stats.encoder.featureCount) features"
    }

    struct Partial: Codable {
        var numeric: [NumericStats] // per column
        var categories: [[String: Int]] // per column
        /// Per column: value → [validation rows, test rows], for every value held out.
        var heldOut: [[String: [Int]]]
        var missing: [Int] // per column
        init(columns: Int) {
            numeric = Array(repeating: NumericStats(), count: columns)
            categories = Array(repeating: [:], count: columns)
            heldOut = Array(repeating: [:], count: columns)
            missing = Array(repeating: 0, count: columns)
        }
        var labels: [String: Int] = [:]
        var rowsWritten: [String: Int] = [:]
        var perFile: [[Int]] = [] // this rank's rows per file and split (not merged)
        var report = CleaningReport()
    }

    /// Visits every kept, non-dropped row of this rank with its split.
    /// Returns the rows dropped, by reason.
    @discardableResult
    func forEachRow(
        files: [Input], parser: RowParser, keep: [BitFlags], lastOut: [String: LastTwo],
        _ body: (Int, ParsedRow, Int) throws -> Void
    ) throws -> [String: Int] {
        var dropped = [String: Int]()
        for (fi, f) in files.enumerated() {
            let t = try CSVTokenizer(path: f.path, delimiter: delimiter, range: f.range, firstLine: f.firstLine)
            var index = 0
            var row = parser.makeRow()
            while try t.next() {
                defer { index += 1 }
                guard keep[fi][index] else { continue }
                try parser.parse(t, into: &row)
                if let reason = row.dropReason {
                    dropped[reason, default: 0] += 1
                    continue
                }
                try body(fi, row, splitOf(t, hash: rowHash(t), file: fi, parser: parser, lastOut: lastOut))
            }
        }
        return dropped
    }

    /// Pass 2: training statistics, row counts per split, and each kept row spilled for the
    /// write pass (record: split, label, then every column — number or provisional id).
    func statsPass(
        files: [Input], parser: RowParser, keep: [BitFlags], lastOut: [String: LastTwo], report: inout CleaningReport,
        spill: SpillFile, provisional: inout [ProvisionalIds]
    ) throws -> Partial {
        var p = Partial(columns: parser.columns.count)
        p.perFile = files.map { _ in [0, 0, 0] }
        var imputed = [String: Int]()
        let kinds = parser.kinds
        let label = parser.labelIndex ?? -1
        report.dropped = try forEachRow(files: files, parser: parser, keep: keep, lastOut: lastOut) { f, row, s in
            p.rowsWritten[Self.splitNames[s], default: 0] += 1
            p.perFile[f][s] += 1
            if let l = row.labelString { p.labels[l, default: 0] += 1 }
            for j in row.missingColumns { imputed[parser.columns[j].name, default: 0] += 1 }
            let rec = try spill.next()
            rec[0] = Double(s)
            rec[1] = row.labelString.map { Double(provisional[label].id($0)) } ?? row.label
            for j in 0..<kinds.count {
                switch kinds[j] {
                case .numeric where j != label:
                    rec[2 + j] = row.numbers[j] ?? .nan
                    if s == 0 { if let v = row.numbers[j] { p.numeric[j].add(v) } else { p.missing[j] += 1 } }
                case .categorical where j != label:
                    if let v = row.strings[j] {
                        let id = provisional[j].id(v)
                        rec[2 + j] = Double(id)
                        if s == 0 {
                            provisional[j].trainCounts[Int(id)] += 1
                        } else {
                            provisional[j].heldOutCounts[2 * Int(id) + s - 1] += 1
                        }
                    } else {
                        rec[2 + j] = -1
                        if s == 0 { p.missing[j] += 1 }
                    }
                default:
                    rec[2 + j] = .nan
                }
            }
        }
        try spill.flush()
        for j in 0..<kinds.count where kinds[j] == .categorical && j != label {
            p.categories[j] = provisional[j].counts
            p.heldOut[j] = provisional[j].heldOut
        }
        report.imputed = imputed
        report.rowsWritten = p.rowsWritten
        p.report = report
        return p
    }

    func mergeStats(_ local: Partial, report: CleaningReport, comm: Collective) throws -> Partial {
        guard comm.size > 1 else { return local }
        let parts = comm.allgather(try Exchange.encode(local))
        var m = Partial(columns: local.numeric.count)
        m.perFile = local.perFile
        for part in parts {
            let p = try Exchange.decode(Partial.self, part)
            for j in p.numeric.indices {
                m.numeric[j].merge(p.numeric[j])
                for (v, c) in p.categories[j] { m.categories[j][v, default: 0] += c }
                for (v, c) in p.heldOut[j] {
                    let sum = m.heldOut[j][v] ?? [0, 0]
                    m.heldOut[j][v] = [sum[0] + c[0], sum[1] + c[1]]
                }
                m.missing[j] += p.missing[j]
            }
            for (l, c) in p.labels { m.labels[l, default: 0] += c }
            for (k, c) in p.rowsWritten { m.rowsWritten[k, default: 0] += c }
            m.report.merge(p.report)
        }
        m.report.rowsWritten = m.rowsWritten
        return m
    }

    /// Turns merged statistics into the numbers the encoder uses, and lays out the output.
    func finishColumns(_ columns: [ColumnInfo], stats: Partial, labelIndex: Int?, regression: Bool) throws
        -> [ColumnInfo]
    {
        var out = columns
        var offset = 0, catIndex = 0
        for (j, var c) in columns.enumerated() {
            defer { out[j] = c }
            if c.role == "label" {
                if !regression {
                    let values = stats.labels.keys
                    let numeric = values.allSatisfy { Double($0) != nil }
                    c.vocabulary = values.sorted { numeric ? Double($0)! < Double($1)! : $0 < $1 }
                    guard (c.vocabulary?.count ?? 0) >= 2 else {
                        throw CortadoError.data(
                            "label column '\(c.name)' has a single class (\(c.vocabulary?.first ?? "none")): nothing to classify"
                        )
                    }
                }
                continue
            }
            guard c.role == "feature" else { continue }
            c.missing = stats.missing[j]
            switch c.schema.type {
            case .numeric:
                let s = stats.numeric[j]
                guard s.count > 0 else {
                    throw CortadoError.data("column '\(c.name)': no numeric values in the training split")
                }
                c.count = s.count
                c.mean = s.mean; c.std = s.std; c.min = s.min; c.max = s.max
                c.median = s.histogram.quantile(0.5, min: s.min, max: s.max)
                if let q = c.schema.clip { c.clipRange = q.map { s.histogram.quantile($0, min: s.min, max: s.max) } }
                switch c.schema.missing {
                case .mean: c.imputeNumber = s.mean
                case .median: c.imputeNumber = c.median
                case .constant: c.imputeNumber = Double(c.schema.constant ?? "0")
                default: break
                }
                c.offset = offset
                c.width = 1
                offset += 1
            case .categorical:
                let counts = stats.categories[j]
                c.count = counts.values.reduce(0, +)
                c.vocabulary = counts.filter { $0.value >= c.schema.minCount }.sorted {
                    $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key
                }.map(\.key)
                c.vocabularyCounts = c.vocabulary?.map { counts[$0] ?? 0 }
                if c.schema.missing == .mostFrequent { c.imputeCategory = c.vocabulary?.first }
                if c.schema.missing == .constant { c.imputeCategory = c.schema.constant }
                if c.schema.encoding == "ids" {
                    c.categoricalIndex = catIndex
                    catIndex += 1
                } else {
                    c.offset = offset
                    c.width = (c.vocabulary?.count ?? 0) + 1
                    offset += c.width!
                }
            default: break
            }
        }
        guard offset > 0 || catIndex > 0 else {
            throw CortadoError.usage("no feature columns: every column is the label, ignored or an id")
        }
        return out
    }

    /// The leave-last-out report from the merged per-user records (the same on every rank).
    func leaveLastOutReport(_ lastOut: [String: LastTwo]) -> LeaveLastOutReport? {
        guard let lo = leaveLastOut else { return nil }
        return LeaveLastOutReport(
            user: lo.user, time: lo.time, ties: ties.rawValue, users: lastOut.count,
            usersWithTestRow: lastOut.values.filter { $0.count >= 2 }.count,
            usersTiedAtLatest: lastOut.values.filter { $0.atLatest >= 2 }.count, validationHeldOut: holdOutValidation)
    }

    /// Values of categorical feature columns that occur in validation or test but never in
    /// training: they encode as the unknown (id 0 / the "other" slot).
    func unseenValues(_ columns: [ColumnInfo], stats: Partial) -> [String: UnseenValues]? {
        var out = [String: UnseenValues]()
        for (j, c) in columns.enumerated() where c.role == "feature" && c.schema.type == .categorical {
            var u = UnseenValues()
            for (v, n) in stats.heldOut[j] where stats.categories[j][v] == nil {
                u.values += 1
                u.validationRows += n[0]
                u.testRows += n[1]
            }
            out[c.name] = u
        }
        return out.isEmpty ? nil : out
    }

    func transformLines(_ columns: [ColumnInfo]) -> [String] {
        columns.filter { $0.role == "feature" }.map { c in
            switch c.schema.type {
            case .numeric:
                return "\(c.name): impute \(c.schema.missing.rawValue)"
                    + (c.schema.clip.map { ", clip to quantiles \($0)" } ?? "") + ", \(c.schema.transform)"
            default:
                return
                    "\(c.name): vocabulary of \(c.vocabulary?.count ?? 0) (min_count \(c.schema.minCount)), missing → \(c.schema.missing.rawValue), \(c.schema.encoding)"
            }
        }
    }

    // MARK: pass 3

    /// Pass 3: rank 0 creates the shard files, then every rank writes its rows of each file at
    /// their global offsets. Returns the shard plan.
    func writePhase(
        files: [Input], stats: Statistics, schema: TableSchema, folder: OutputFolder, comm: Collective
    ) throws -> [String: [Shard]] {
        let plan = try shardPlan(counts: stats.report.rowsWritten)
        let offsets = globalOffsets(stats.perFile, comm: comm)
        try comm.agree("creating output files") {
            if comm.rank == 0 {
                try createFiles(
                    plan: plan, folder: folder, features: stats.encoder.featureCount,
                    categorical: stats.encoder.categoricalCount, regression: schema.regression)
            }
        }
        // Rows go out in file order, and within a file in rank order: the 1-process order.
        for f in files.indices {
            for r in 0..<comm.size {
                try comm.agree("pass 3 (writing \(files[f].path), rank \(r)'s rows)") {
                    if comm.rank == r {
                        let first = stats.perFile[..<f].reduce(0) { $0 + $1.reduce(0, +) }
                        let out = ShardBlocks(
                            plan: plan, offsets: offsets[f], folder: folder, encoder: stats.encoder,
                            regression: schema.regression)
                        try writePass(
                            records: first..<(first + stats.perFile[f].reduce(0, +)), stats: stats,
                            labelIndex: schema.labelIndex, to: out)
                    }
                }
            }
        }
        return plan
    }

    struct Shard { var file: String; var rows: Range<Int> }

    func shardPlan(counts: [String: Int]) throws -> [String: [Shard]] {
        var plan = [String: [Shard]]()
        let train = counts["train"] ?? 0
        guard train > 0 else { throw CortadoError.data("no rows in the training split after cleaning") }
        let n = shardRows.map { max(1, (train + $0 - 1) / $0) } ?? min(shards, train)
        plan["train"] = (0..<n).map {
            Shard(file: String(format: "train-%03d.h5", $0), rows: rowRange(total: train, rank: $0, size: n))
        }
        plan["validation"] = [Shard(file: "validation.h5", rows: 0..<(counts["validation"] ?? 0))]
        plan["test"] = [Shard(file: "test.h5", rows: 0..<(counts["test"] ?? 0))]
        return plan
    }

    func createFiles(plan: [String: [Shard]], folder: OutputFolder, features: Int, categorical: Int, regression: Bool)
        throws
    {
        for (split, shards) in plan {
            for (i, s) in shards.enumerated() {
                let h5 = try HDF5File.create(folder.file(s.file))
                try h5.setAttribute("format", ShardFormat.name)
                try h5.setAttribute("format_version", ShardFormat.version)
                try h5.setAttribute("split", split)
                try h5.setAttribute("shard_index", Int64(i))
                try h5.createDataset(
                    "features", dtype: .float32, shape: [s.rows.count, features], chunkRows: ShardFormat.chunkRows)
                if regression {
                    try h5.createDataset(
                        "targets", dtype: .float32, shape: [s.rows.count], chunkRows: ShardFormat.chunkRows * 16)
                } else {
                    try h5.createDataset(
                        "labels", dtype: .int64, shape: [s.rows.count], chunkRows: ShardFormat.chunkRows * 16)
                }
                if categorical > 0 {
                    try h5.createDataset(
                        "categorical", dtype: .int64, shape: [s.rows.count, categorical],
                        chunkRows: ShardFormat.chunkRows)
                }
            }
        }
    }

    /// Pass 3 for one file: reads this rank's spilled records of it, maps provisional ids to
    /// final ones and hands each row to `out`, which encodes and writes it.
    func writePass(records: Range<Int>, stats: Statistics, labelIndex: Int?, to out: ShardBlocks) throws {
        let encoder = stats.encoder
        let classId = Dictionary(uniqueKeysWithValues: stats.classes.enumerated().map { ($1, $0) })
        // Provisional (rank-local) ids → final vocabulary ids, per column; label → class index.
        let remap: [[Int32]] = stats.provisional.enumerated().map { j, p in
            p.values.map { Int32(encoder.ids[j][$0] ?? 0) }
        }
        let labelRemap: [Int64] =
            labelIndex.map { stats.provisional[$0].values.map { Int64(classId[$0] ?? 0) } } ?? []
        let n = encoder.columns.count
        var numbers = [Double](repeating: .nan, count: n)
        var ids = [Int32](repeating: -1, count: n)
        let isCategorical = encoder.columns.map { $0.schema.type == .categorical && $0.role == "feature" }
        try stats.spill.read(from: records.lowerBound, count: records.count) { rec in
            for j in 0..<n {
                let v = rec[2 + j]
                if isCategorical[j] { ids[j] = v < 0 ? -1 : remap[j][Int(v)] } else { numbers[j] = v }
            }
            let target = out.regression ? Float(rec[1]) : 0
            let label = out.regression ? 0 : labelRemap[Int(rec[1])]
            try out.append(split: Int(rec[0]), numbers: numbers, ids: ids, target: target, label: label)
        }
        try out.finish()
    }

    // MARK: manifest

    /// Every rank returns the manifest; rank 0 also lists the shards with their checksums,
    /// writes it last and publishes the folder.
    func manifestPhase(
        stats: Statistics, schema: TableSchema, plan: [String: [Shard]], sourceHashes: SourceHashes,
        folder: OutputFolder, comm: Collective
    ) throws -> DatasetManifest {
        try comm.agree("writing the manifest") { () -> DatasetManifest in
            var m = describe(stats: stats, schema: schema)
            guard comm.rank == 0 else { return m }
            for (name, shards) in plan {
                var entries = [DatasetManifest.ShardFile]()
                for s in shards {
                    entries.append(
                        .init(path: s.file, rows: s.rows.count, sha256: try SHA256.hex(fileAt: folder.file(s.file)))
                    )
                }
                m.splits[name] = .init(rows: shards.reduce(0) { $0 + $1.rows.count }, files: entries)
            }
            for (f, h) in try sourceHashes.wait() { m.source[(f as NSString).lastPathComponent] = h }
            m.source.merge(provenance) { $1 }
            try AtomicFile.write(try stableJSON(m), to: folder.file("manifest.json"))
            try folder.commit()
            return m
        }
    }

    /// The manifest without its files: task, columns, transforms, dialect, cleaning report.
    func describe(stats: Statistics, schema: TableSchema) -> DatasetManifest {
        var m = DatasetManifest(
            name: datasetName ?? ((inputs[0] as NSString).lastPathComponent as NSString).deletingPathExtension,
            task: schema.regression ? "regression" : "classification", featureShape: [stats.encoder.featureCount],
            classes: stats.classes,
            splitSeed: seed, transforms: transformLines(stats.columns), statistics: [:], splits: [:],
            source: [:],
            createdBy: createdBy)
        m.columns = stats.columns
        m.csv = CSVDialect(
            delimiter: String(UnicodeScalar(delimiter)), header: self.header, missingValues: schema.missing)
        m.cleaning = stats.report
        m.categoricalColumns = stats.columns.filter { $0.categoricalIndex != nil }.map(\.name)
        m.profile = stats.profile
        return m
    }
}

/// How ranks ship partial results to each other: JSON that round-trips every Double exactly,
/// infinities included (an empty column's min is +inf).
enum Exchange {
    static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let e = JSONEncoder()
        e.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return Array(try e.encode(value))
    }

    static func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8]) throws -> T {
        let d = JSONDecoder()
        d.nonConformingFloatDecodingStrategy = .convertFromString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try d.decode(type, from: Data(bytes))
    }
}

/// SHA-256 of files, computed on a background thread; `wait` returns them (or the error).
final class SourceHashes: @unchecked Sendable {
    private let group = DispatchGroup()
    private var result: Result<[(String, String)], Error> = .success([])

    init(_ paths: [String]) {
        guard !paths.isEmpty else { return }
        group.enter()
        DispatchQueue.global().async {
            self.result = Result { try paths.map { ($0, try SHA256.hex(fileAt: $0)) } }
            self.group.leave()
        }
    }

    func wait() throws -> [(String, String)] {
        group.wait()
        return try result.get()
    }
}
