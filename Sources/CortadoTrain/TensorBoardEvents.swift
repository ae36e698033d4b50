import CortadoCore
import Foundation

/// TensorBoard event files (`events.out.tfevents.TIME.HOST`) written by hand: TFRecord framing
/// around `tensorflow.Event` protobuf messages, with only the fields scalars need, so that no
/// protobuf compiler or TensorFlow is involved.
///
/// TFRecord, per record (little-endian):
///
///     length            UInt64
///     masked CRC32C     UInt32   of the 8 length bytes
///     data              length bytes (a serialized Event)
///     masked CRC32C     UInt32   of data
///
/// masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8. The messages (tensorflow/core/util/event.proto,
/// framework/summary.proto):
///
///     Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
///     Summary { repeated Value value = 1; }
///     Value   { string tag = 1; float simple_value = 2; }
public final class TensorBoardWriter {
    public let path: String
    let handle: FileHandle

    /// Creates `dir` and a new event file in it, starting with the file-version record.
    public init(dir: String, hostname: String = ProcessInfo.processInfo.hostName) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let host = hostname.isEmpty ? "localhost" : hostname
        path = (dir as NSString).appendingPathComponent(
            "events.out.tfevents.\(Int(Date().timeIntervalSince1970)).\(host).\(getpid())")
        guard FileManager.default.createFile(atPath: path, contents: nil), let h = FileHandle(forWritingAtPath: path)
        else { throw CortadoError.io("\(path): cannot create TensorBoard event file") }
        handle = h
        var event = Data()
        Self.fieldDouble(1, Date().timeIntervalSince1970, into: &event)
        Self.fieldBytes(3, Data("brain.Event:2".utf8), into: &event)
        try write(event)
    }

    deinit { try? handle.close() }

    /// One Event holding a scalar per entry of `scalars` (tag → value) at `step`; flushed.
    public func add(step: Int, scalars: [(String, Double)], wallTime: Double = Date().timeIntervalSince1970) throws {
        var summary = Data()
        for (tag, value) in scalars {
            var v = Data()
            Self.fieldBytes(1, Data(tag.utf8), into: &v)
            Self.key(2, wire: 5, into: &v)
            withUnsafeBytes(of: Float(value).bitPattern.littleEndian) { v.append(contentsOf: $0) }
            Self.fieldBytes(1, v, into: &summary)
        }
        var event = Data()
        Self.fieldDouble(1, wallTime, into: &event)
        Self.key(2, wire: 0, into: &event)
        Self.varint(UInt64(bitPattern: Int64(step)), into: &event)
        Self.fieldBytes(5, summary, into: &event)
        try write(event)
    }

    func write(_ data: Data) throws {
        try handle.write(contentsOf: Self.record(data))
        try handle.synchronize()
    }

    /// A TFRecord around `data`.
    public static func record(_ data: Data) -> Data {
        var out = Data()
        var length = Data()
        withUnsafeBytes(of: UInt64(data.count).littleEndian) { length.append(contentsOf: $0) }
        out.append(length)
        withUnsafeBytes(of: maskedCRC(length).littleEndian) { out.append(contentsOf: $0) }
        out.append(data)
        withUnsafeBytes(of: maskedCRC(data).littleEndian) { out.append(contentsOf: $0) }
        return out
    }

    // MARK: protobuf encoding (the three wire types used)

    static func varint(_ v: UInt64, into out: inout Data) {
        var v = v
        while v >= 0x80 {
            out.append(UInt8(v & 0x7f) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }
    static func key(_ field: Int, wire: Int, into out: inout Data) { varint(UInt64(field << 3 | wire), into: &out) }
    static func fieldDouble(_ field: Int, _ v: Double, into out: inout Data) {
        key(field, wire: 1, into: &out)
        withUnsafeBytes(of: v.bitPattern.littleEndian) { out.append(contentsOf: $0) }
    }
    static func fieldBytes(_ field: Int, _ bytes: Data, into out: inout Data) {
        key(field, wire: 2, into: &out)
        varint(UInt64(bytes.count), into: &out)
        out.append(bytes)
    }

    // MARK: CRC32C (Castagnoli, reflected polynomial 0x82f63b78)

    static let crcTable: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82f6_3b78 : c >> 1 }
        return c
    }

    public static func crc32c(_ data: Data) -> UInt32 {
        var c: UInt32 = 0xffff_ffff
        for b in data { c = crcTable[Int((c ^ UInt32(b)) & 0xff)] ^ (c >> 8) }
        return c ^ 0xffff_ffff
    }

    public static func maskedCRC(_ data: Data) -> UInt32 {
        let c = crc32c(data)
        return ((c >> 15) | (c << 17)) &+ 0xa282_ead8
    }
}
