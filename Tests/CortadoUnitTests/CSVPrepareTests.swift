import CortadoCore
import CortadoData
import CortadoTestSupport
import Foundation
import XCTest

/// The CSV pipeline's rules, one by one, on small files written by the tests.
final class CSVPrepareTests: XCTestCase {
    struct Output {
        var manifest: DatasetManifest
        var dir: String
        func matrix(_ split: String) throws -> (x: [[Float]], y: [Int64]) {
            var x = [[Float]](), y = [Int64]()
            for f in manifest.splits[split]!.files {
                let h5 = try HDF5File.open(dir + "/" + f.path)
                let flat = try h5.readFloats("features")
                let d = manifest.featureCount
                x += (0..<f.rows).map { Array(flat[($0 * d)..<($0 * d + d)]) }
                if manifest.task == "classification" { y += try h5.readInt64s("labels") }
            }
            return (x, y)
        }
        func column(_ name: String) -> ColumnInfo { manifest.columns!.first { $0.name == name }! }
    }

    func prepare(
        _ text: String, label: String = "y", schema: String? = nil, name: String = #function,
        _ configure: (inout CSVPreparer) -> Void = { _ in }
    ) throws -> Output {
        let dir = Support.scratch("csv-\(name.filter { $0.isLetter || $0.isNumber })")
        try Data(text.utf8).write(to: URL(fileURLWithPath: dir + "/in.csv"))
        var p = CSVPreparer(inputs: [dir + "/in.csv"], out: dir + "/out", label: label)
        if let schema {
            try Data(schema.utf8).write(to: URL(fileURLWithPath: dir + "/schema.yaml"))
            p.schemaPath = dir + "/schema.yaml"
        }
        p.split = (1, 0, 0)
        configure(&p)
        return Output(manifest: try p.run(), dir: dir + "/out")
    }

    func testMissingValuesImputationAndEncoding() throws {
        let csv = """
            num,cat,drop,const,y
            1,a,5,1,p
            NA,b,5,?,q
            3,a,,2,p
            ?,"c, d",5,3,q
            5,a,5,null,p
            inf,b,5,4,q
            """
        let schema = """
            columns:
              - {name: num, type: numeric, missing: mean, transform: none, non_finite: missing}
              - {name: cat, type: categorical, missing: most_frequent, encoding: onehot, min_count: 2}
              - {name: drop, type: numeric, missing: drop, transform: none}
              - {name: const, type: numeric, missing: constant, constant: -1, transform: minmax}
            """
        let o = try prepare(csv, schema: schema)
        // Row 3 (empty `drop`) is dropped; num's mean is over 1, 5 (NA, ?, inf are missing).
        XCTAssertEqual(o.manifest.cleaning?.dropped, ["missing drop": 1])
        XCTAssertEqual(o.manifest.cleaning?.imputed, ["num": 3, "const": 2])
        XCTAssertEqual(o.column("num").mean, 3)
        XCTAssertEqual(o.column("cat").vocabulary, ["a", "b"], "'c, d' is rare (min_count 2)")
        XCTAssertEqual(o.column("const").min, 1)
        XCTAssertEqual(o.column("const").max, 4)
        let (x, y) = try o.matrix("train")
        // features: num | cat one-hot [unknown, a, b] | drop | const (minmax over 1...4, missing → -1)
        XCTAssertEqual(
            x,
            [
                [1, 0, 1, 0, 5, 0],
                [3, 0, 0, 1, 5, -2.0 / 3],
                [3, 1, 0, 0, 5, 2.0 / 3],
                [5, 0, 1, 0, 5, -2.0 / 3],
                [3, 0, 0, 1, 5, 1]
            ])
        XCTAssertEqual(y, [0, 1, 1, 0, 1])
        XCTAssertEqual(o.manifest.classes, ["p", "q"])
    }

    func testMedianImputationIdsEncodingAndClipping() throws {
        var csv = "v,c,y\n"
        for i in 0..<200 { csv += "\(i == 7 ? "NA" : String(i * i)),k\(i % 50),\(i % 2)\n" }
        let schema = """
            columns:
              - {name: v, type: numeric, missing: median, transform: none, clip: [0.1, 0.9]}
              - {name: c, type: categorical, encoding: ids}
            """
        let o = try prepare(csv, schema: schema)
        let v = o.column("v")
        let values = (0..<200).filter { $0 != 7 }.map { Double($0 * $0) }.sorted()
        XCTAssertEqual(v.median!, values[99], accuracy: values[99] * 0.01, "median within 1 %")
        XCTAssertEqual(v.clipRange![0], values[19], accuracy: values[19] * 0.02)
        XCTAssertEqual(v.clipRange![1], values[178], accuracy: values[178] * 0.02)
        let (x, _) = try o.matrix("train")
        XCTAssertEqual(Double(x[199][0]), v.clipRange![1], accuracy: 1, "large values are clipped")
        XCTAssertEqual(Double(x[7][0]), v.median!, accuracy: 1, "NA becomes the median")
        XCTAssertEqual(o.manifest.featureCount, 1, "ids columns go to /categorical, not the features")
        XCTAssertEqual(o.manifest.categoricalColumns, ["c"])
        let ids = try HDF5File.open(o.dir + "/train-000.h5").readInt64s("categorical")
        XCTAssertEqual(Set(ids).count, 50)
        XCTAssertFalse(ids.contains(0), "every value was seen: no unknown ids")
    }

    func testDuplicatesAreRemovedAndCounted() throws {
        let o = try prepare("a,y\n1,x\n2,y\n1,x\n1,x\n3,x\n2,y\n")
        XCTAssertEqual(o.manifest.cleaning?.duplicates, 3)
        XCTAssertEqual(try o.matrix("train").x.count, 3)
        let kept = try prepare("a,y\n1,x\n2,y\n1,x\n", name: "keep") { $0.dedup = false }
        XCTAssertEqual(try kept.matrix("train").x.count, 3)
    }

    func testStatisticsComeFromTheTrainingSplitOnly() throws {
        var csv = "a,b,y\n"
        var rng = SeededRNG(seed: 9)
        for i in 0..<3000 { csv += String(format: "%.5f,%d,%d\n", rng.normal() * 3 + 10, i, i % 3) }
        let o = try prepare(csv) { $0.split = (0.7, 0.15, 0.15) }
        let train = try o.matrix("train").x, val = try o.matrix("validation").x, test = try o.matrix("test").x
        XCTAssertEqual(train.count + val.count + test.count, 3000)
        XCTAssertEqual(Double(train.count) / 3000, 0.7, accuracy: 0.03)
        for j in 0..<2 {
            let col = train.map { Double($0[j]) }
            let mean = col.reduce(0, +) / Double(col.count)
            let std = (col.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(col.count)).squareRoot()
            XCTAssertEqual(mean, 0, accuracy: 1e-5, "training column \(j) is centred")
            XCTAssertEqual(std, 1, accuracy: 1e-5, "training column \(j) has unit variance")
            let vm = val.map { Double($0[j]) }.reduce(0, +) / Double(val.count)
            XCTAssertNotEqual(vm, 0, accuracy: 1e-4, "validation is transformed with training statistics, not its own")
        }
    }

    func testSplitIsDeterministicBySeed() throws {
        var csv = "a,y\n"
        for i in 0..<500 { csv += "\(i),\(i % 2)\n" }
        let a = try prepare(csv, name: "s1") { $0.split = (0.8, 0.1, 0.1) }
        let b = try prepare(csv, name: "s2") { $0.split = (0.8, 0.1, 0.1) }
        let c = try prepare(csv, name: "s3") {
            $0.split = (0.8, 0.1, 0.1); $0.seed = 7
        }
        XCTAssertEqual(try a.matrix("test").x, try b.matrix("test").x)
        XCTAssertNotEqual(try a.matrix("test").x, try c.matrix("test").x)
    }

    func testLeaveLastOutByUser() throws {
        // user, item, rating, time: each user's latest → test, the one before → validation.
        var tsv = "user\titem\trating\ttime\n"
        for u in 0..<20 {
            for k in 0..<(2 + u % 4) { tsv += "u\(u)\ti\(k * 7 + u)\t\(1 + (u + k) % 5)\t\(1000 - k * 10 + u)\n" }
        }
        let o = try prepare(
            tsv, label: "rating",
            schema:
                "columns:\n  - {name: item, type: categorical, encoding: ids}\n  - {name: user, type: categorical, encoding: ids}\n"
        ) {
            $0.delimiter = UInt8(ascii: "\t")
            $0.leaveLastOut = ("user", "time")
            $0.task = "classification"
        }
        XCTAssertEqual(o.manifest.splits["test"]?.rows, 20, "one latest row per user")
        XCTAssertEqual(
            o.manifest.splits["validation"]?.rows, (0..<20).filter { 2 + $0 % 4 >= 3 }.count,
            "users with 3+ rows give one")
        // The test rows are the k = 0 rows (time 1000 + u): the latest of each user.
        let time = try HDF5File.open(o.dir + "/test.h5").readFloats("features")
        let t = o.column("time")
        let d = o.manifest.featureCount
        let times = (0..<20).map { Double(time[$0 * d + t.offset!]) * t.std! + t.mean! }.sorted()
        for (u, v) in times.enumerated() { XCTAssertEqual(v, Double(1000 + u), accuracy: 1e-3) }
    }

    /// Ties at a user's latest time: file order (default) makes the row nearer the end of the
    /// file the test row; the report counts the tied users; items only held out are counted.
    func testLeaveLastOutTiesFollowFileOrderAndAreReported() throws {
        // u0: items a, b at time 9 (tied; b is later in the file) and c at 5. u1: no tie.
        // u2: e and z tied at 7, e first in the file (e → validation, z → test).
        let tsv = """
            user\titem\trating\ttime
            u0\ta\t1\t9
            u1\ta\t2\t1
            u0\tb\t3\t9
            u0\tc\t4\t5
            u1\tc\t5\t2
            u2\te\t1\t7
            u2\tb\t2\t3
            u2\tz\t3\t7

            """
        let schema = """
            columns:
              - {name: user, type: categorical, encoding: ids}
              - {name: item, type: categorical, encoding: ids}
              - {name: time, type: ignore}

            """
        let o = try prepare(tsv, label: "rating", schema: schema) {
            $0.delimiter = UInt8(ascii: "\t")
            $0.leaveLastOut = ("user", "time")
            $0.task = "regression"
        }
        let r = try XCTUnwrap(o.manifest.cleaning?.leaveLastOut)
        XCTAssertEqual([r.users, r.usersWithTestRow, r.usersTiedAtLatest], [3, 3, 2])
        XCTAssertEqual(r.ties, "file-order")
        // Test rows (ratings): u0 → b (3), u1 → c (5), u2 → z (3).
        let y = try HDF5File.open(o.dir + "/test.h5").readFloats("targets")
        XCTAssertEqual(y.sorted(), [3, 3, 5])
        let unseen = try XCTUnwrap(o.manifest.cleaning?.unseen?["item"])
        // e (u2's validation row) and z (its test row) never occur in training.
        XCTAssertEqual([unseen.values, unseen.validationRows, unseen.testRows], [2, 1, 1])
        XCTAssertEqual(o.manifest.cleaning?.unseen?["user"]?.values, 0)
    }

    // MARK: bad input: one line naming file:line or the column, exit code 2, no output folder

    func expectBad(
        _ text: String, _ fragment: String, label: String = "y", schema: String? = nil, line: UInt = #line,
        _ configure: (inout CSVPreparer) -> Void = { _ in }
    ) {
        let name = "bad\(line)"
        XCTAssertThrowsError(try prepare(text, label: label, schema: schema, name: name, configure), line: line) { e in
            XCTAssertTrue("\(e)".contains(fragment), "'\(e)' lacks '\(fragment)'", line: line)
            XCTAssertFalse("\(e)".contains("\n"), "one line: \(e)", line: line)
            XCTAssertEqual((e as? CortadoError)?.exitCode, 2, line: line)
        }
        let out =
            NSTemporaryDirectory() + "cortado-tests-\(getpid())/csv-\(name.filter { $0.isLetter || $0.isNumber })/out"
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "no output folder after a failure", line: line)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + ".partial"), "no staging folder left", line: line)
    }

    func testBadInputs() throws {
        expectBad("a,y\n1,x\n2,y,3\n", "in.csv:3: 3 fields, the header has 2")
        expectBad("a,y\n1,\"x\n2,y\n", "in.csv:2:3: unterminated quoted field")
        expectBad(
            "a,y\n1,x\n2,y\nzz,x\n", "in.csv:4: column 'a': 'zz' is not a number",
            schema: "columns:\n  - {name: a, type: numeric}\n")
        expectBad("", "in.csv: empty file")
        expectBad("a,y\n", "in.csv: has a header but no data rows")
        expectBad("a,b\n1,2\n", "label column 'y' is not in the header")
        expectBad("a,y\n1,x\n2,\n", "in.csv:3: label column 'y' is missing")
        expectBad("a,y\n1,2.5\n2,inf\n", "in.csv:3: label column 'y' is not finite") { $0.task = "regression" }
        expectBad("a,y\n1,x\n2,x\n", "label column 'y' has a single class")
        expectBad(
            "a,y\n1,x\n", "schema.yaml: column 'nope' is not in the header",
            schema: "columns:\n  - {name: nope, type: numeric}\n")
        expectBad(
            "a,y\n1,x\n", "schema.yaml: columns.0.missing: 'sometimes' is not one of",
            schema: "columns:\n  - {name: a, type: numeric, missing: sometimes}\n")
    }

    func testInvalidUTF8AndMismatchedHeaders() throws {
        let dir = Support.scratch("csv-utf8")
        try (Data("a,y\n1,x\n2,".utf8) + Data([0xC3, 0x28]) + Data("\n".utf8)).write(
            to: URL(fileURLWithPath: dir + "/in.csv"))
        XCTAssertThrowsError(try CSVPreparer(inputs: [dir + "/in.csv"], out: dir + "/out", label: "y").run()) {
            XCTAssertTrue("\($0)".contains("in.csv:3:4: invalid UTF-8 byte 0x28"), "\($0)")
        }
        try Data("a,y\n1,x\n2,y\n".utf8).write(to: URL(fileURLWithPath: dir + "/one.csv"))
        try Data("a,z\n1,x\n".utf8).write(to: URL(fileURLWithPath: dir + "/two.csv"))
        XCTAssertThrowsError(
            try CSVPreparer(inputs: [dir + "/one.csv", dir + "/two.csv"], out: dir + "/out", label: "y").run()
        ) {
            XCTAssertTrue("\($0)".contains("two.csv: header (a,z) differs from"), "\($0)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out"))
    }

    func testSeveralInputsOfOneSchemaAndAnExistingOutputIsKept() throws {
        let dir = Support.scratch("csv-multi")
        try Data("a,y\n1,x\n2,y\n".utf8).write(to: URL(fileURLWithPath: dir + "/one.csv"))
        try Data("a,y\n3,x\n4,y\n".utf8).write(to: URL(fileURLWithPath: dir + "/two.csv"))
        var p = CSVPreparer(inputs: [dir + "/one.csv", dir + "/two.csv"], out: dir + "/out", label: "y")
        p.split = (1, 0, 0)
        XCTAssertEqual(try p.run().splits["train"]?.rows, 4)
        XCTAssertThrowsError(try p.run()) { XCTAssertTrue("\($0)".contains("pass --overwrite"), "\($0)") }
        p.overwrite = true
        XCTAssertEqual(try p.run().cleaning?.rowsRead, 4)
        XCTAssertEqual(try validateDataFolder(manifestPath: dir + "/out/manifest.json"), [])
    }

    /// Random CSVs (quoting, embedded delimiters and newlines, missing tokens, categories)
    /// written → prepared → read back equal the cleaned matrix computed here independently.
    func testPropertyRandomCSVsRoundTrip() throws {
        for trial in 0..<15 {
            var rng = SeededRNG(seed: UInt64(100 + trial))
            let rows = 5 + rng.below(60), numCols = 1 + rng.below(3), catCols = 1 + rng.below(2)
            let missingTokens = ["", "NA", "?", "null"]
            let words = ["red", "green, blue", "say \"x\"", "two\nlines", "é", "z"]
            var header = (0..<numCols).map { "n\($0)" } + (0..<catCols).map { "c\($0)" } + ["id", "y"]
            header.swapAt(0, header.count - 2) // columns in any order
            var nums = [[Double?]](), cats = [[String?]](), labels = [Int]()
            var text = header.joined(separator: ",") + "\n"
            for r in 0..<rows {
                let nv = (0..<numCols).map { _ in rng.below(5) == 0 ? nil : Double(rng.below(2000)) / 8 - 100 }
                let cv = (0..<catCols).map { _ in rng.below(6) == 0 ? nil : words[rng.below(words.count)] }
                let y = rng.below(3)
                nums.append(nv); cats.append(cv); labels.append(y)
                let fields = header.map { h -> String in
                    if h == "id" { return String(r) }
                    if h == "y" { return "L\(y)" }
                    if h.hasPrefix("n") {
                        guard let v = nv[Int(h.dropFirst())!] else {
                            return missingTokens[rng.below(missingTokens.count)]
                        }
                        return rng.below(2) == 0 ? String(v) : "\"\(v)\""
                    }
                    guard let s = cv[Int(h.dropFirst())!] else { return missingTokens[rng.below(2)] }
                    return "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\""
                }
                text += fields.joined(separator: ",") + (r == rows - 1 && rng.below(2) == 0 ? "" : "\n")
            }
            guard Set(labels).count >= 2, (0..<numCols).allSatisfy({ j in nums.contains { $0[j] != nil } }) else {
                continue
            }
            let schema =
                "columns:\n  - {name: id, type: id}\n"
                + (0..<numCols).map { "  - {name: n\($0), type: numeric, missing: mean}\n" }.joined()
                + (0..<catCols).map { "  - {name: c\($0), type: categorical, missing: unknown, encoding: onehot}\n" }
                .joined()
            let o = try prepare(text, schema: schema, name: "prop\(trial)")
            // Reference: mean/std (population) per numeric column, vocabulary by count then value.
            var expected = [[Float]](repeating: [], count: rows)
            for h in header where h != "id" && h != "y" {
                let j = Int(h.dropFirst())!
                if h.hasPrefix("n") {
                    let present = nums.compactMap { $0[j] }
                    let mean = present.reduce(0, +) / Double(present.count)
                    let std = (present.map { $0 * $0 }.reduce(0, +) / Double(present.count) - mean * mean).squareRoot()
                    for r in 0..<rows { expected[r].append(Float(((nums[r][j] ?? mean) - mean) / (std > 0 ? std : 1))) }
                } else {
                    var counts = [String: Int]()
                    for r in 0..<rows { if let s = cats[r][j] { counts[s, default: 0] += 1 } }
                    let vocab = counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map(
                        \.key)
                    for r in 0..<rows {
                        var onehot = [Float](repeating: 0, count: vocab.count + 1)
                        onehot[cats[r][j].flatMap { vocab.firstIndex(of: $0) }.map { $0 + 1 } ?? 0] = 1
                        expected[r] += onehot
                    }
                }
            }
            let (x, y) = try o.matrix("train")
            XCTAssertEqual(x.count, rows, "trial \(trial)")
            for r in 0..<min(rows, x.count) {
                assertClose(x[r], expected[r], rel: 1e-5, abs: 1e-5, "trial \(trial) row \(r)")
            }
            XCTAssertEqual(y, labels.map { Int64($0) }, "trial \(trial)")
        }
    }
}
