import CortadoCore
import CortadoData
import CortadoModel
import Foundation

/// A training checkpoint (HDF5, version 2): datasets `params` and `optimizer_state` (flat arenas in
/// `layout` order; the state is SGD's velocity, or Adam's first then second moments); attributes `format`, `format_version`, `step`, `steps_per_epoch`,
/// `world_size`, `data_partitions` (absent in older files: the world size), `job_spec` (canonical JSON), `layout` (JSON), `cortado_version`, and
/// `payload_sha256` over both arenas' bytes so a torn or corrupted file is caught on resume.
///
/// Version 2 puts a SHA-256 of the whole HDF5 file in a 512-byte user block at its start
/// (`CORTADO-CHECKPOINT-SHA256 <hex>`), checked before libhdf5 parses a byte: libhdf5 1.10
/// has memory-safety bugs on malformed files (fuzzing hit a use-after-free inside H5Aexists),
/// so a damaged checkpoint must never reach it. HDF5 tools skip the user block.
///
/// Files are `RUN_DIR/checkpoints/step-NNNNNNNN.h5`, written atomically by rank 0; `latest`
/// (a text file naming the newest) is written last, after the file it names is complete.
public struct Checkpoint {
    public static let format = "cortado-checkpoint"
    public static let version: Int64 = 2
    static let userblock = 512
    static let stampMagic = "CORTADO-CHECKPOINT-SHA256 "

    public var step: Int
    public var stepsPerEpoch: Int
    public var worldSize: Int
    /// The data partitions that fixed the run's sample order (see `JobSpec.dataPartitions`).
    public var dataPartitions: Int
    public var jobSpecJSON: String
    public var layout: ParameterLayout
    public var params: [Float]
    public var optimizerState: [Float]

    public static func folder(runDir: String) -> String { (runDir as NSString).appendingPathComponent("checkpoints") }

    /// Writes the checkpoint for `step` from the live arenas, updates `latest`, and deletes all
    /// but the newest `keep`. Returns the file's path.
    @discardableResult
    public static func write(
        runDir: String, step: Int, stepsPerEpoch: Int, worldSize: Int, dataPartitions: Int, jobSpecJSON: String,
        layout: ParameterLayout, params: UnsafeBufferPointer<Float>, optimizerState: UnsafeBufferPointer<Float>,
        keep: Int
    ) throws -> String {
        let dir = folder(runDir: runDir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let name = String(format: "step-%08d.h5", step)
        let path = (dir as NSString).appendingPathComponent(name)
        try writeFile(
            path, step: step, stepsPerEpoch: stepsPerEpoch, worldSize: worldSize, dataPartitions: dataPartitions,
            jobSpecJSON: jobSpecJSON,
            layout: layout, params: params, optimizerState: optimizerState)
        try AtomicFile.write(Data((name + "\n").utf8), to: (dir as NSString).appendingPathComponent("latest"))
        let all = try checkpointFiles(runDir: runDir)
        for old in all.dropLast(keep) { unlink(old) }
        return path
    }

    /// Writes one checkpoint file atomically (tmp, fsync, rename, fsync the folder).
    public static func writeFile(
        _ path: String, step: Int, stepsPerEpoch: Int, worldSize: Int, dataPartitions: Int, jobSpecJSON: String,
        layout: ParameterLayout, params: UnsafeBufferPointer<Float>, optimizerState: UnsafeBufferPointer<Float>
    ) throws {
        try AtomicFile.publish(path) { tmp in
            let h5 = try HDF5File.create(tmp, userblock: userblock, checksummedMetadata: true)
            try h5.setAttribute("format", format)
            try h5.setAttribute("format_version", version)
            try h5.setAttribute("step", Int64(step))
            try h5.setAttribute("steps_per_epoch", Int64(stepsPerEpoch))
            try h5.setAttribute("world_size", Int64(worldSize))
            try h5.setAttribute("data_partitions", Int64(dataPartitions))
            try h5.setAttribute("job_spec", jobSpecJSON)
            try h5.setAttribute("layout", String(decoding: try stableJSON(layout, pretty: false), as: UTF8.self))
            try h5.setAttribute("cortado_version", cortadoVersion)
            try h5.setAttribute("payload_sha256", payloadHash(params, optimizerState))
            try h5.write("params", params.baseAddress!, dtype: .float32, shape: [params.count])
            try h5.write("optimizer_state", optimizerState.baseAddress!, dtype: .float32, shape: [optimizerState.count])
            try h5.close()
            try stamp(tmp)
            testHookBeforeRename?(path)
        }
    }

    /// Test hook (fault injection): runs when a checkpoint's temporary file is written but not
    /// yet renamed into place — where a kill must leave the previous checkpoint in charge.
    nonisolated(unsafe) public static var testHookBeforeRename: ((String) -> Void)?

    /// Checkpoint files in the run, oldest first.
    public static func checkpointFiles(runDir: String) throws -> [String] {
        let dir = folder(runDir: runDir)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return names.filter { $0.hasPrefix("step-") && $0.hasSuffix(".h5") }.sorted().map {
            (dir as NSString).appendingPathComponent($0)
        }
    }

    /// Writes the SHA-256 of everything after the user block into the user block. Public for
    /// tests that edit a checkpoint on purpose and must get past the file checksum.
    public static func stamp(_ path: String) throws {
        guard let f = FileHandle(forUpdatingAtPath: path) else {
            throw CortadoError.io("\(path): cannot open to stamp the checksum")
        }
        defer { try? f.close() }
        let block = stampBlock(hex: try fileDigest(f)) // reads to the end: then seek back
        try f.seek(toOffset: 0)
        try f.write(contentsOf: block)
    }

    /// `bytes` (a whole checkpoint file) with its user block replaced by the checksum of the
    /// rest: what `stamp` does to a file, in memory (the fuzz harness mutates files past the gate).
    public static func stamped(_ bytes: Data) -> Data {
        guard bytes.count >= userblock else { return bytes }
        return stampBlock(hex: SHA256.hex(bytes.dropFirst(userblock))) + bytes.dropFirst(userblock)
    }

    /// The user block: magic, hex digest, newline, zero padding to `userblock` bytes.
    static func stampBlock(hex: String) -> Data {
        var block = Data((stampMagic + hex + "\n").utf8)
        block.append(Data(count: userblock - block.count))
        return block
    }

    /// SHA-256 (hex) of the file's bytes after the user block, read in 1 MiB pieces.
    static func fileDigest(_ f: FileHandle) throws -> String {
        var h = SHA256()
        try f.seek(toOffset: UInt64(userblock))
        while let chunk = try f.read(upToCount: 1 << 20), !chunk.isEmpty { h.update(chunk) }
        return h.hexDigest()
    }

    /// The checksum in the user block, or an error naming the file. Also requires the HDF5
    /// superblock right after it to be version 2 or later (checksummed metadata): the outer
    /// checksum stops accidents, libhdf5's metadata checksums stop a file crafted to pass it.
    static func stampedDigest(_ head: Data, path: String) throws -> String {
        let signature: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]
        guard head.count >= userblock + 9, head.dropFirst(userblock).prefix(8).elementsEqual(signature),
            head[head.startIndex + userblock + 8] >= 2
        else {
            throw CortadoError.model(
                "\(path): not a cortado checkpoint (no HDF5 superblock v2+ after the checksum block)")
        }
        let n = stampMagic.utf8.count + 64
        guard head.count >= userblock, head.prefix(stampMagic.utf8.count).elementsEqual(stampMagic.utf8),
            let hex = String(
                data: head.subdata(in: head.startIndex + stampMagic.utf8.count..<head.startIndex + n), encoding: .ascii),
            hex.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) })
        else {
            throw CortadoError.model(
                "\(path): not a cortado checkpoint (no checksum block; version 1 checkpoints are not read by this build)"
            )
        }
        return hex
    }

    /// Reads and verifies one checkpoint file: the whole-file checksum first, then the contents.
    public static func read(_ path: String) throws -> Checkpoint {
        guard let f = FileHandle(forReadingAtPath: path) else {
            throw CortadoError.data("\(path): no such file or not readable")
        }
        defer { try? f.close() }
        let want = try stampedDigest(try f.read(upToCount: userblock + 9) ?? Data(), path: path)
        guard try fileDigest(f) == want else {
            throw CortadoError.model("\(path): checksum mismatch (torn or corrupted checkpoint)")
        }
        return try read(HDF5File.open(path), path: path)
    }

    /// Reads and verifies a checkpoint held in memory (the fuzz harness's entry point).
    /// `verifyChecksum: false` hands the bytes to libhdf5 unchecked — only for fuzzing what
    /// lies behind the checksum.
    public static func parse(_ bytes: Data, path: String, verifyChecksum: Bool = true) throws -> Checkpoint {
        if verifyChecksum {
            let want = try stampedDigest(bytes.prefix(userblock + 9), path: path)
            guard SHA256.hex(bytes.dropFirst(userblock)) == want else {
                throw CortadoError.model("\(path): checksum mismatch (torn or corrupted checkpoint)")
            }
        }
        return try read(HDF5File.open(image: bytes, name: path), path: path)
    }

    static func read(_ h5: HDF5File, path: String) throws -> Checkpoint {
        let f = try h5.stringAttribute("format")
        guard f == format else { throw CortadoError.model("\(path): format '\(f)', expected '\(format)'") }
        let v = try h5.intAttribute("format_version")
        guard v == version else {
            throw CortadoError.model("\(path): checkpoint format_version \(v), this build reads \(version)")
        }
        let layoutJSON = try h5.stringAttribute("layout")
        guard let layout = try? JSONDecoder().decode(ParameterLayout.self, from: Data(layoutJSON.utf8)), layout.isValid
        else {
            throw CortadoError.model("\(path): attribute 'layout' is not a parameter layout")
        }
        let params = try h5.readFloats("params"), optimizerState = try h5.readFloats("optimizer_state")
        guard params.count == layout.count, optimizerState.count % max(layout.count, 1) == 0 else {
            throw CortadoError.model(
                "\(path): arenas hold \(params.count)/\(optimizerState.count) values, layout says \(layout.count)")
        }
        let want = try h5.stringAttribute("payload_sha256")
        let got = params.withUnsafeBufferPointer { p in optimizerState.withUnsafeBufferPointer { payloadHash(p, $0) } }
        guard want == got else { throw CortadoError.model("\(path): payload checksum mismatch (corrupted checkpoint)") }
        let worldSize = Int(try h5.intAttribute("world_size"))
        let partitions = h5.hasAttribute("data_partitions") ? Int(try h5.intAttribute("data_partitions")) : worldSize
        guard worldSize > 0, partitions > 0 else {
            throw CortadoError.model("\(path): world_size \(worldSize), data_partitions \(partitions) must be positive")
        }
        return Checkpoint(
            step: Int(try h5.intAttribute("step")), stepsPerEpoch: Int(try h5.intAttribute("steps_per_epoch")),
            worldSize: worldSize, dataPartitions: partitions, jobSpecJSON: try h5.stringAttribute("job_spec"),
            layout: layout, params: params, optimizerState: optimizerState)
    }

    /// The newest readable checkpoint: the one `latest` names, else the newest file that
    /// verifies; corrupt ones are skipped with a warning through `warn`.
    public static func newest(runDir: String, warn: (String) -> Void) throws -> (path: String, checkpoint: Checkpoint)?
    {
        var candidates = try checkpointFiles(runDir: runDir).reversed().map { $0 }
        let latestPath = (folder(runDir: runDir) as NSString).appendingPathComponent("latest")
        if let name = try? String(contentsOfFile: latestPath, encoding: .utf8).trimmingCharacters(
            in: .whitespacesAndNewlines)
        {
            let p = (folder(runDir: runDir) as NSString).appendingPathComponent(name)
            candidates.removeAll { $0 == p }
            candidates.insert(p, at: 0)
        }
        for p in candidates {
            do { return (p, try read(p)) } catch let e as CortadoError { warn("skipping checkpoint: \(e.message)") }
        }
        return nil
    }

    static func payloadHash(_ a: UnsafeBufferPointer<Float>, _ b: UnsafeBufferPointer<Float>) -> String {
        var h = SHA256()
        h.update(UnsafeRawBufferPointer(a))
        h.update(UnsafeRawBufferPointer(b))
        return h.hexDigest()
    }
}
