import CHDF5
import CortadoCore
import Foundation

/// A thin, throwing wrapper over the HDF5 C API for the few things Cortado stores: 2-D float
/// matrices (chunked, shuffled, deflated), 1-D int64/float/int8 vectors and scalar attributes on
/// the root group. Every failure names the file and the dataset; HDF5's own stderr stack is
/// silenced so users see one line.
public final class HDF5File {
    public let path: String
    private let id: hid_t
    private var closed = false

    private init(path: String, id: hid_t) {
        self.path = path
        self.id = id
    }

    deinit { if !closed { H5Fclose(id) } }

    /// Closes the file now (before its bytes are read back, e.g. to checksum them).
    public func close() throws {
        guard !closed else { return }
        closed = true
        guard H5Fclose(id) >= 0 else { throw CortadoError.io("\(path): close failed") }
    }

    private static let setup: Void = {
        H5open()
        cortado_h5_silence_errors()
    }()

    /// The process-wide HDF5 lock. A thread that uses HDF5 while another may (cortado-train's
    /// loader thread reading shards while rank 0's main thread writes a checkpoint) runs its
    /// calls inside `serialized`: libhdf5 is not guaranteed to be built thread-safe.
    private static let lock = NSLock()

    /// Runs `body` holding the process-wide HDF5 lock.
    public static func serialized<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    /// Returns freed memory to the operating system (HDF5's free lists, then the C heap's free
    /// pages), so transient read buffers do not stay in the resident set after loading.
    public static func releaseFreeMemory() { cortado_release_free_memory() }

    /// Creates (truncates) a file for writing; `userblock` bytes at its start are left to the
    /// caller (HDF5 skips them; h5py and h5dump read such files as usual).
    /// `checksummedMetadata` writes the newest format (superblock v3, v2 object headers), whose
    /// metadata checksums libhdf5 verifies before parsing it.
    public static func create(_ path: String, userblock: Int = 0, checksummedMetadata: Bool = false) throws -> HDF5File
    {
        _ = setup
        let fcpl = H5Pcreate(cortado_h5p_file_create())
        defer { H5Pclose(fcpl) }
        if userblock > 0 { H5Pset_userblock(fcpl, hsize_t(userblock)) }
        let fapl = checksummedMetadata ? cortado_h5_fapl_latest() : cortado_h5p_default()
        defer { if checksummedMetadata { H5Pclose(fapl) } }
        let fid = H5Fcreate(path, cortado_h5f_acc_trunc(), fcpl, fapl)
        guard fid >= 0 else {
            throw CortadoError.io("\(path): cannot create HDF5 file (does the folder exist and is it writable?)")
        }
        return HDF5File(path: path, id: fid)
    }

    /// Opens an existing file read-only.
    public static func open(_ path: String) throws -> HDF5File {
        _ = setup
        // bad input (exit 2), not an I/O fault
        guard FileManager.default.fileExists(atPath: path) else { throw CortadoError.data("\(path): no such file") }
        guard H5Fis_hdf5(path) > 0 else { throw CortadoError.data("\(path): not an HDF5 file") }
        let fid = H5Fopen(path, cortado_h5f_acc_rdonly(), cortado_h5p_default())
        guard fid >= 0 else { throw CortadoError.data("\(path): cannot open HDF5 file (truncated or corrupt?)") }
        return HDF5File(path: path, id: fid)
    }

    /// Opens an in-memory file image read-only; `name` stands for the file in errors.
    public static func open(image: Data, name: String) throws -> HDF5File {
        _ = setup
        let fid = image.withUnsafeBytes { cortado_h5_open_image($0.baseAddress, $0.count) }
        guard fid >= 0 else { throw CortadoError.data("\(name): cannot open HDF5 image (truncated or corrupt?)") }
        return HDF5File(path: name, id: fid)
    }

    /// Opens an existing file for reading and writing (ranks taking turns to fill a shard).
    public static func openForWriting(_ path: String) throws -> HDF5File {
        _ = setup
        let fid = H5Fopen(path, cortado_h5f_acc_rdwr(), cortado_h5p_default())
        guard fid >= 0 else { throw CortadoError.io("\(path): cannot open HDF5 file for writing") }
        return HDF5File(path: path, id: fid)
    }

    /// Flushes HDF5's buffers to the operating system.
    public func flush() throws {
        guard H5Fflush(id, H5F_SCOPE_LOCAL) >= 0 else { throw CortadoError.io("\(path): flush failed") }
    }

    // MARK: datasets

    /// Element types Cortado stores.
    public enum DType: String, Sendable {
        case float32, float64, int64, int32, int8, uint8
        var native: hid_t {
            switch self {
            case .float32: return cortado_h5t_native_float()
            case .float64: return cortado_h5t_native_double()
            case .int64: return cortado_h5t_native_int64()
            case .int32: return cortado_h5t_native_int32()
            case .int8: return cortado_h5t_native_int8()
            case .uint8: return cortado_h5t_native_uint8()
            }
        }
        var size: Int {
            switch self {
            case .float32, .int32: return 4
            case .float64, .int64: return 8
            case .int8, .uint8: return 1
            }
        }
    }

    /// Writes a dataset of `shape` from `data` (row-major). With `chunkRows`, the dataset is
    /// chunked along the first axis with byte-shuffle + deflate(`level`), which is how shards
    /// are stored: readable by h5py/h5dump and partially readable by row range.
    public func write(
        _ name: String, _ data: UnsafeRawPointer, dtype: DType, shape: [Int],
        chunkRows: Int? = nil, deflate level: Int = 4
    ) throws {
        let ds = try makeDataset(name, dtype: dtype, shape: shape, chunkRows: chunkRows, deflate: level)
        defer { H5Dclose(ds) }
        guard H5Dwrite(ds, dtype.native, cortado_h5s_all(), cortado_h5s_all(), cortado_h5p_default(), data) >= 0 else {
            throw CortadoError.io("\(path): writing dataset '\(name)' failed (disk full?)")
        }
    }

    /// Creates an empty dataset of `shape`, chunked by `chunkRows` along the first axis with
    /// shuffle + deflate, to be filled by `writeRows` in pieces (bounded memory).
    public func createDataset(_ name: String, dtype: DType, shape: [Int], chunkRows: Int, deflate level: Int = 4) throws
    {
        H5Dclose(try makeDataset(name, dtype: dtype, shape: shape, chunkRows: chunkRows, deflate: level))
    }

    /// Creates a dataset and returns its open id; chunked (+ shuffle, deflate) when `chunkRows`
    /// is given and no dimension is zero (HDF5 chunks cannot have one), contiguous otherwise.
    private func makeDataset(_ name: String, dtype: DType, shape: [Int], chunkRows: Int?, deflate level: Int) throws
        -> hid_t
    {
        let dims = shape.map { hsize_t($0) }
        let space = H5Screate_simple(Int32(dims.count), dims, nil)
        guard space >= 0 else { throw CortadoError.io("\(path): cannot create dataspace for '\(name)'") }
        defer { H5Sclose(space) }
        let plist = H5Pcreate(cortado_h5p_dataset_create())
        defer { H5Pclose(plist) }
        if let chunkRows, !shape.isEmpty, shape.allSatisfy({ $0 > 0 }) {
            var chunk = dims
            chunk[0] = hsize_t(min(chunkRows, shape[0]))
            H5Pset_chunk(plist, Int32(chunk.count), chunk)
            H5Pset_shuffle(plist)
            H5Pset_deflate(plist, UInt32(level))
        }
        let ds = H5Dcreate2(id, name, dtype.native, space, cortado_h5p_default(), plist, cortado_h5p_default())
        guard ds >= 0 else { throw CortadoError.io("\(path): cannot create dataset '\(name)'") }
        return ds
    }

    /// Writes rows [start, start+count) of an existing dataset from `data`.
    public func writeRows(_ name: String, start: Int, count: Int, dtype: DType, from data: UnsafeRawPointer) throws {
        guard count > 0 else { return }
        try withRows(name, start: start, count: count) { ds, memSpace, fileSpace in
            guard H5Dwrite(ds, dtype.native, memSpace, fileSpace, cortado_h5p_default(), data) >= 0 else {
                throw CortadoError.io("\(path): writing '\(name)' rows \(start)..<\(start + count) failed (disk full?)")
            }
        }
    }

    /// Opens dataset `name`, selects rows [start, start+count) of it (all other axes whole) and
    /// hands the dataset with matching memory and file dataspaces to `body`.
    private func withRows(_ name: String, start: Int, count: Int, _ body: (hid_t, hid_t, hid_t) throws -> Void) throws {
        let ds = try openDataset(name)
        defer { H5Dclose(ds) }
        let fileSpace = H5Dget_space(ds)
        defer { H5Sclose(fileSpace) }
        let rank = Int(H5Sget_simple_extent_ndims(fileSpace))
        var dims = [hsize_t](repeating: 0, count: max(rank, 1))
        H5Sget_simple_extent_dims(fileSpace, &dims, nil)
        guard rank >= 1, start >= 0, count >= 0, start + count <= Int(dims[0]) else {
            throw CortadoError.data(
                "\(path): rows \(start)..<\(start + count) out of range for '\(name)' with \(rank >= 1 ? Int(dims[0]) : 0) rows"
            )
        }
        var offset = [hsize_t](repeating: 0, count: rank)
        offset[0] = hsize_t(start)
        var sel = dims
        sel[0] = hsize_t(count)
        H5Sselect_hyperslab(fileSpace, H5S_SELECT_SET, offset, nil, sel, nil)
        let memSpace = H5Screate_simple(Int32(rank), sel, nil)
        defer { H5Sclose(memSpace) }
        try body(ds, memSpace, fileSpace)
    }

    public func write(_ name: String, _ values: [Float], shape: [Int]? = nil) throws {
        try values.withUnsafeBytes { try write(name, $0.baseAddress!, dtype: .float32, shape: shape ?? [values.count]) }
    }

    public func write(_ name: String, _ values: [Int64]) throws {
        try values.withUnsafeBytes { try write(name, $0.baseAddress!, dtype: .int64, shape: [values.count]) }
    }

    public func hasDataset(_ name: String) -> Bool { H5Lexists(id, name, cortado_h5p_default()) > 0 }

    /// Shape of a dataset; throws naming the dataset if it is missing.
    public func shape(of name: String) throws -> [Int] {
        let ds = try openDataset(name)
        defer { H5Dclose(ds) }
        let space = H5Dget_space(ds)
        defer { H5Sclose(space) }
        let rank = Int(H5Sget_simple_extent_ndims(space))
        var dims = [hsize_t](repeating: 0, count: max(rank, 1))
        H5Sget_simple_extent_dims(space, &dims, nil)
        guard rank >= 0, let out = rank == 0 ? [] : Optional(dims.compactMap { Int(exactly: $0) }),
            out.count == dims.count || rank == 0
        else {
            throw CortadoError.data("\(path): dataset '\(name)' has an unreadable shape (corrupt file?)")
        }
        return out
    }

    /// The element count of `name` before anything is allocated for it: the dimensions'
    /// product must not overflow, must fit in memory, and must agree with the bytes the file
    /// stores for it (exactly when contiguous; within deflate's ~1000:1 ratio when chunked) —
    /// a corrupt header must not turn into a huge allocation (a fuzzer finding).
    public func elementCount(of name: String, elementSize: Int) throws -> Int {
        let dims = try shape(of: name)
        guard let n = checkedProduct(dims), let bytes = checkedProduct([n, elementSize]),
            UInt64(bytes) <= ProcessInfo.processInfo.physicalMemory
        else {
            throw CortadoError.data(
                "\(path): dataset '\(name)' declares shape \(dims), larger than this machine's memory (corrupt file?)")
        }
        let ds = try openDataset(name)
        defer { H5Dclose(ds) }
        let stored = Int(clamping: H5Dget_storage_size(ds))
        let plist = H5Dget_create_plist(ds)
        defer { H5Pclose(plist) }
        let contiguous = H5Pget_layout(plist) == H5D_CONTIGUOUS
        guard contiguous ? stored == bytes : bytes <= 2048 * stored + (1 << 20) else {
            throw CortadoError.data(
                "\(path): dataset '\(name)' declares \(bytes) bytes but the file stores \(stored) for it (truncated or corrupt?)"
            )
        }
        return n
    }

    /// Checks that `name` holds elements of `dtype` (class and size), so a wrong file fails with
    /// its dataset named instead of being silently converted.
    public func expectType(_ name: String, _ dtype: DType) throws {
        let ds = try openDataset(name)
        defer { H5Dclose(ds) }
        let t = H5Dget_type(ds)
        defer { H5Tclose(t) }
        let cls = H5Tget_class(t)
        let size = H5Tget_size(t)
        let wantClass: H5T_class_t = (dtype == .float32 || dtype == .float64) ? H5T_FLOAT : H5T_INTEGER
        guard cls == wantClass, size == dtype.size else {
            throw CortadoError.data(
                "\(path): dataset '\(name)' has element type class \(cls.rawValue) size \(size), expected \(dtype.rawValue)"
            )
        }
    }

    /// Reads rows [start, start+count) of a dataset into `out` (hyperslab read, so a rank reads
    /// only its part of a shard).
    public func readRows(_ name: String, start: Int, count: Int, dtype: DType, into out: UnsafeMutableRawPointer) throws
    {
        try withRows(name, start: start, count: count) { ds, memSpace, fileSpace in
            guard count > 0 else { return }
            guard H5Dread(ds, dtype.native, memSpace, fileSpace, cortado_h5p_default(), out) >= 0 else {
                throw CortadoError.data(
                    "\(path): reading '\(name)' rows \(start)..<\(start + count) failed (corrupt file?)")
            }
        }
    }

    /// Reads a whole dataset as Float (1-D view of any shape).
    public func readFloats(_ name: String) throws -> [Float] {
        try expectType(name, .float32)
        let n = try elementCount(of: name, elementSize: 4)
        var out = [Float](repeating: 0, count: n)
        try out.withUnsafeMutableBytes { try readAll(name, dtype: .float32, into: $0.baseAddress!) }
        return out
    }

    /// Reads a whole dataset as Int64.
    public func readInt64s(_ name: String) throws -> [Int64] {
        try expectType(name, .int64)
        let n = try elementCount(of: name, elementSize: 8)
        var out = [Int64](repeating: 0, count: n)
        try out.withUnsafeMutableBytes { try readAll(name, dtype: .int64, into: $0.baseAddress!) }
        return out
    }

    public func readAll(_ name: String, dtype: DType, into out: UnsafeMutableRawPointer) throws {
        let ds = try openDataset(name)
        defer { H5Dclose(ds) }
        guard H5Dread(ds, dtype.native, cortado_h5s_all(), cortado_h5s_all(), cortado_h5p_default(), out) >= 0 else {
            throw CortadoError.data("\(path): reading '\(name)' failed (corrupt file?)")
        }
    }

    private func openDataset(_ name: String) throws -> hid_t {
        guard hasDataset(name) else { throw CortadoError.data("\(path): missing dataset '\(name)'") }
        let ds = H5Dopen2(id, name, cortado_h5p_default())
        guard ds >= 0 else { throw CortadoError.data("\(path): cannot open dataset '\(name)'") }
        return ds
    }

    // MARK: attributes (on the root group)

    public func setAttribute(_ name: String, _ value: String) throws {
        let bytes = Array(value.utf8)
        let t = H5Tcopy(cortado_h5t_c_s1())
        defer { H5Tclose(t) }
        H5Tset_size(t, max(bytes.count, 1))
        H5Tset_cset(t, H5T_CSET_UTF8)
        H5Tset_strpad(t, H5T_STR_NULLPAD)
        try writeAttribute(name, type: t, bytes.isEmpty ? [0] : bytes)
    }

    public func setAttribute(_ name: String, _ value: Int64) throws {
        try writeAttribute(name, type: cortado_h5t_native_int64(), withUnsafeBytes(of: value) { Array($0) })
    }

    public func setAttribute(_ name: String, _ value: Double) throws {
        try writeAttribute(name, type: cortado_h5t_native_double(), withUnsafeBytes(of: value) { Array($0) })
    }

    private func writeAttribute(_ name: String, type: hid_t, _ bytes: [UInt8]) throws {
        let space = H5Screate(H5S_SCALAR)
        defer { H5Sclose(space) }
        if H5Aexists(id, name) > 0 { H5Adelete(id, name) }
        let a = H5Acreate2(id, name, type, space, cortado_h5p_default(), cortado_h5p_default())
        guard a >= 0 else { throw CortadoError.io("\(path): cannot create attribute '\(name)'") }
        defer { H5Aclose(a) }
        guard bytes.withUnsafeBytes({ H5Awrite(a, type, $0.baseAddress!) }) >= 0 else {
            throw CortadoError.io("\(path): cannot write attribute '\(name)'")
        }
    }

    /// Reads a fixed-length string attribute; throws naming it when missing or of another type.
    public func stringAttribute(_ name: String) throws -> String {
        let a = try openAttribute(name)
        defer { H5Aclose(a) }
        let t = H5Aget_type(a)
        defer { H5Tclose(t) }
        guard H5Tget_class(t) == H5T_STRING, H5Tis_variable_str(t) == 0 else {
            throw CortadoError.data("\(path): attribute '\(name)' is not a fixed-length string")
        }
        let size = H5Tget_size(t)
        var buf = [UInt8](repeating: 0, count: size + 1)
        guard H5Aread(a, t, &buf) >= 0 else { throw CortadoError.data("\(path): cannot read attribute '\(name)'") }
        let end = buf.firstIndex(of: 0) ?? size
        return String(decoding: buf[0..<end], as: UTF8.self)
    }

    /// Whether the root group has attribute `name` (attributes added in later format revisions).
    public func hasAttribute(_ name: String) -> Bool { H5Aexists(id, name) > 0 }

    public func intAttribute(_ name: String) throws -> Int64 {
        try scalarAttribute(name, Int64(0), type: cortado_h5t_native_int64(), what: "an integer")
    }

    public func doubleAttribute(_ name: String) throws -> Double {
        try scalarAttribute(name, 0.0, type: cortado_h5t_native_double(), what: "a number")
    }

    /// Reads a scalar attribute converted by HDF5 to the native `type`.
    private func scalarAttribute<V: BitwiseCopyable>(_ name: String, _ initial: V, type: hid_t, what: String) throws
        -> V
    {
        let a = try openAttribute(name)
        defer { H5Aclose(a) }
        var v = initial
        guard H5Aread(a, type, &v) >= 0 else { throw CortadoError.data("\(path): attribute '\(name)' is not \(what)") }
        return v
    }

    private func openAttribute(_ name: String) throws -> hid_t {
        guard H5Aexists(id, name) > 0 else { throw CortadoError.data("\(path): missing attribute '\(name)'") }
        let a = H5Aopen(id, name, cortado_h5p_default())
        guard a >= 0 else { throw CortadoError.data("\(path): cannot open attribute '\(name)'") }
        return a
    }
}
