import CSystemZlib
import CortadoCore
import Foundation

/// An IDX array (the MNIST family's format): big-endian magic `0x0000_08_NN` (unsigned bytes,
/// NN dimensions), NN big-endian UInt32 sizes, then the bytes.
public struct IDXArray {
    public let dims: [Int] // e.g. (images, 28, 28) or (labels)
    public let bytes: [UInt8] // row-major, count == dims.product

    /// Reads a gzip-compressed (or plain) IDX file and validates magic, rank and size.
    /// `expectedRank` is 3 for images, 1 for labels.
    public static func read(_ path: String, expectedRank: Int) throws -> IDXArray {
        let raw = try gunzip(path)
        guard raw.count >= 4 else {
            throw CortadoError.data("\(path): too short for an IDX header (\(raw.count) bytes)")
        }
        let magic = raw[0..<4]
        guard magic[0] == 0, magic[1] == 0, magic[2] == 0x08 else {
            throw CortadoError.data(
                "\(path): bad IDX magic \(magic.map { String(format: "%02x", $0) }.joined()), expected 000008\(String(format: "%02x", expectedRank)) (unsigned-byte IDX)"
            )
        }
        let rank = Int(magic[3])
        guard rank == expectedRank else {
            throw CortadoError.data("\(path): IDX has \(rank) dimensions, expected \(expectedRank)")
        }
        let headerSize = 4 + 4 * rank
        guard raw.count >= headerSize else { throw CortadoError.data("\(path): truncated IDX header") }
        var dims = [Int]()
        for d in 0..<rank {
            let o = 4 + 4 * d
            dims.append(Int(raw[o]) << 24 | Int(raw[o + 1]) << 16 | Int(raw[o + 2]) << 8 | Int(raw[o + 3]))
        }
        let actual = raw.count - headerSize
        guard let expected = checkedProduct(dims), actual == expected else {
            throw CortadoError.data(
                "\(path): IDX header says \(dims.map(String.init).joined(separator: "x")) = \(checkedProduct(dims).map(String.init) ?? "too many") bytes of data, file has \(actual)"
            )
        }
        return IDXArray(dims: dims, bytes: Array(raw[headerSize...]))
    }

    /// Decompresses a gzip file with zlib (a plain file passes through unchanged).
    static func gunzip(_ path: String) throws -> [UInt8] {
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw CortadoError.io("\(path): no such file or not readable")
        }
        guard let gz = gzopen(path, "rb") else { throw CortadoError.io("\(path): cannot open") }
        defer { gzclose(gz) }
        var out = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = chunk.withUnsafeMutableBytes { gzread(gz, $0.baseAddress, UInt32($0.count)) }
            if n < 0 { throw CortadoError.data("\(path): gzip data is corrupt") }
            if n == 0 { break }
            out.append(contentsOf: chunk[0..<Int(n)])
        }
        return out
    }
}
