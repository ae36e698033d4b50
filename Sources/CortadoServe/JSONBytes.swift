import Foundation
import NIOCore

/// JSON written straight into a `ByteBuffer`: the hot responses (infer, the access log line)
/// are built in the buffer that goes to the socket, with no intermediate `String`s joined and
/// copied. A one-row infer response built from interpolated strings cost more server CPU than
/// the model (perf, 2026-12-07); the texts are the same as `str`, `floats` and `String(Int)`.
extension ByteBuffer {
    /// A JSON string literal, with `str`'s escapes: runs of plain bytes are copied whole.
    public mutating func writeJSONString(_ s: String) {
        var s = s
        s.withUTF8 { u in
            writeInteger(UInt8(ascii: "\""))
            var start = 0
            for i in 0..<u.count where u[i] < 0x20 || u[i] == UInt8(ascii: "\"") || u[i] == UInt8(ascii: "\\") {
                writeBytes(UnsafeBufferPointer(rebasing: u[start..<i]))
                writeEscaped(u[i])
                start = i + 1
            }
            writeBytes(UnsafeBufferPointer(rebasing: u[start..<u.count]))
            writeInteger(UInt8(ascii: "\""))
        }
    }

    private mutating func writeEscaped(_ c: UInt8) {
        switch c {
        case UInt8(ascii: "\""): writeStaticString("\\\"")
        case UInt8(ascii: "\\"): writeStaticString("\\\\")
        case UInt8(ascii: "\n"): writeStaticString("\\n")
        case UInt8(ascii: "\r"): writeStaticString("\\r")
        case UInt8(ascii: "\t"): writeStaticString("\\t")
        default:
            // Below 0x20: `\u00` and two lowercase hex digits, as `str` writes them.
            let low = c & 0xF
            writeStaticString("\\u00")
            writeInteger(UInt8(ascii: "0") + (c >> 4))
            writeInteger(low < 10 ? UInt8(ascii: "0") + low : UInt8(ascii: "a") + low - 10)
        }
    }

    /// A float as its shortest round-tripping decimal text (`Float.description`, what
    /// `Float(text)` reads back bit for bit); `null` when not finite. The description of a
    /// float fits a small string (at most 15 bytes), so this allocates nothing.
    public mutating func writeJSONFloat(_ x: Float) {
        if x.isFinite { writeString(x.description) } else { writeStaticString("null") }
    }

    /// Floats, comma-separated (no brackets).
    public mutating func writeJSONFloats(_ v: ArraySlice<Float>) {
        var first = true
        for x in v {
            if !first { writeInteger(UInt8(ascii: ",")) }
            first = false
            writeJSONFloat(x)
        }
    }

    /// Strings as JSON string literals, comma-separated (no brackets).
    mutating func writeJSONStrings(_ v: [String]) {
        for (i, s) in v.enumerated() {
            if i > 0 { writeInteger(UInt8(ascii: ",")) }
            writeJSONString(s)
        }
    }

    /// Floats as the binary tensor data extension sends FP32: 4 bytes each, little-endian.
    mutating func writeBinaryFloats(_ v: ArraySlice<Float>) {
        for x in v { writeInteger(x.bitPattern, endianness: .little) }
    }

    /// Strings as the binary tensor data extension sends BYTES: each a 4-byte little-endian
    /// length and its UTF-8 bytes (`BinaryTensor.size` counts them).
    mutating func writeBinaryStrings(_ v: [String]) {
        for s in v {
            writeInteger(UInt32(s.utf8.count), endianness: .little)
            writeString(s)
        }
    }

    /// An integer in decimal, as `String(n)` writes it.
    public mutating func writeDecimal(_ n: Int) {
        if n < 0 { writeInteger(UInt8(ascii: "-")) }
        var m = n.magnitude
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0) // 24 bytes: enough for 20 digits
        var count = 0
        withUnsafeMutableBytes(of: &digits) { d in
            repeat {
                d[23 - count] = UInt8(ascii: "0") + UInt8(m % 10)
                m /= 10
                count += 1
            } while m > 0
            writeBytes(UnsafeRawBufferPointer(rebasing: d[(24 - count)...]))
        }
    }

    /// A fixed-width decimal, zero-padded (`07`, `042`), for timestamps.
    mutating func writePadded(_ n: Int, width: Int) {
        var p = 1
        for _ in 1..<width { p *= 10 }
        var m = n
        while p > 0 {
            writeInteger(UInt8(ascii: "0") + UInt8(m / p % 10))
            m %= p
            p /= 10
        }
    }
}
