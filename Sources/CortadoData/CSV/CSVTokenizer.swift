import CortadoCore
import Foundation

/// A streaming RFC 4180 tokenizer: quoted fields with embedded delimiters, doubled quotes and
/// newlines; `\n` or `\r\n` line ends; blank lines skipped; UTF-8 validated as it goes.
///
/// It reads the file in 4 MiB blocks and yields one record at a time into reusable buffers,
/// so memory does not grow with the file. Errors carry `file:line:column` of the offending byte
/// (or of the quote that never closed). A byte `range` limits it to records that *start* inside
/// the range (ranks of a parallel prepare each take one range; the range must begin at a
/// record start).
public final class CSVTokenizer {
    public let path: String
    public let delimiter: UInt8
    static let quote = UInt8(ascii: "\"")
    static let newline = UInt8(ascii: "\n")
    static let cr = UInt8(ascii: "\r")

    private let fd: Int32
    private var block: UnsafeMutableBufferPointer<UInt8>
    private var blockStart = 0 // file offset of block[0]
    private var pos = 0, end = 0 // next unread byte / valid bytes in block
    private let stopAt: Int // records starting at or after this offset are not ours
    private var line: Int // physical line of the next byte (1-based)
    private var lineStart: Int // file offset where that line starts

    /// The current record: unescaped field bytes back to back in `buf`; field i ends at
    /// `ends[i]`; `quotedFlags[i]` says whether it was quoted. Raw buffers, grown by doubling:
    /// Swift arrays appended per byte cost a uniqueness check each time.
    private var buf = UnsafeMutablePointer<UInt8>.allocate(capacity: 1024)
    private var bufCap = 1024, bufCount = 0
    private var ends = UnsafeMutablePointer<Int>.allocate(capacity: 64)
    private var quotedFlags = UnsafeMutablePointer<Bool>.allocate(capacity: 64)
    private var endsCap = 64
    public private(set) var fieldCount = 0
    /// Line and file offset where the current record starts.
    public private(set) var recordLine = 0
    public private(set) var recordOffset = 0

    /// Whether field i was quoted (a quoted empty field is an empty string, not a missing value).
    @inline(__always) public func isQuoted(_ i: Int) -> Bool { quotedFlags[i] }
    public var quoted: [Bool] { (0..<fieldCount).map { quotedFlags[$0] } }
    /// All field bytes of the record and the end offset of each field.
    @inline(__always) public var recordBytes: UnsafeBufferPointer<UInt8> {
        UnsafeBufferPointer(start: buf, count: bufCount)
    }
    @inline(__always) public func fieldEnd(_ i: Int) -> Int { ends[i] }

    /// Opens `path`; `range` (file offsets) and `firstLine` (the line number at range start)
    /// restrict it to one rank's part of the file.
    public init(path: String, delimiter: UInt8 = UInt8(ascii: ","), range: Range<Int>? = nil, firstLine: Int = 1) throws
    {
        self.path = path
        self.delimiter = delimiter
        fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw CortadoError.io("\(path): cannot open: \(String(cString: strerror(errno)))") }
        block = .allocate(capacity: 4 << 20)
        let start = range?.lowerBound ?? 0
        stopAt = range?.upperBound ?? Int.max
        line = firstLine
        lineStart = start
        if start > 0 { lseek(fd, off_t(start), SEEK_SET) }
        blockStart = start
    }

    deinit {
        close(fd)
        block.deallocate()
        buf.deallocate()
        ends.deallocate()
        quotedFlags.deallocate()
    }

    /// The field as bytes (valid until the next call to `next`).
    @inline(__always)
    public func withField<R>(_ i: Int, _ body: (UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R {
        let lo = i == 0 ? 0 : ends[i - 1]
        return try body(UnsafeBufferPointer(start: buf + lo, count: ends[i] - lo))
    }

    public func string(_ i: Int) -> String {
        withField(i) { String(decoding: $0, as: UTF8.self) }
    }

    /// `file:line` of the current record, for messages.
    public var here: String { "\(path):\(recordLine)" }

    @inline(__always)
    private func fill() throws -> Bool {
        if pos < end { return true }
        blockStart += end
        pos = 0
        end = 0
        let n = read(fd, block.baseAddress, block.count)
        guard n >= 0 else { throw CortadoError.io("\(path): read failed: \(String(cString: strerror(errno)))") }
        end = n
        return n > 0
    }

    @inline(__always) private var offset: Int { blockStart + pos }

    private func fail(_ what: String) -> CortadoError {
        CortadoError.data("\(path):\(line):\(offset - lineStart + 1): \(what)")
    }

    /// Reads the next record; returns false at the end of the file (or of the range).
    public func next() throws -> Bool {
        while true {
            bufCount = 0
            fieldCount = 0
            guard try fill() else { return false }
            recordLine = line
            recordOffset = offset
            if recordOffset >= stopAt { return false }
            try readRecord()
            // Blank lines (a single unquoted empty field) are not records.
            if fieldCount == 1 && ends[0] == 0 && !quotedFlags[0] { continue }
            return true
        }
    }

    @inline(__always) private func reserve(_ extra: Int) {
        if bufCount + extra <= bufCap { return }
        var cap = bufCap * 2
        while cap < bufCount + extra { cap *= 2 }
        let nb = UnsafeMutablePointer<UInt8>.allocate(capacity: cap)
        nb.update(from: buf, count: bufCount)
        buf.deallocate()
        buf = nb
        bufCap = cap
    }

    @inline(__always) private func endField(quoted: Bool) {
        if fieldCount == endsCap {
            let cap = endsCap * 2
            let ne = UnsafeMutablePointer<Int>.allocate(capacity: cap),
                nq = UnsafeMutablePointer<Bool>.allocate(capacity: cap)
            ne.update(from: ends, count: fieldCount)
            nq.update(from: quotedFlags, count: fieldCount)
            ends.deallocate(); quotedFlags.deallocate()
            ends = ne; quotedFlags = nq; endsCap = cap
        }
        ends[fieldCount] = bufCount
        quotedFlags[fieldCount] = quoted
        fieldCount += 1
    }

    /// One record into the field buffers. Unquoted runs of plain ASCII are found with a tight
    /// scan and copied in one go; quotes, line ends and non-ASCII bytes take the careful path.
    /// The helpers are `@inline(__always)` so the loop compiles as one function (it is the hot
    /// loop of `cortado prepare csv`, measured by Benchmarks/prepare-throughput.sh).
    private func readRecord() throws {
        var inQuotes = false, afterQuote = false, fieldQuoted = false, fieldHasBytes = false
        var quoteLine = 0, quoteCol = 0
        var utf8Need = 0
        let delimiter = self.delimiter
        while true {
            guard try fill() else {
                try endOfInput(inQuotes: inQuotes, quoteLine: quoteLine, quoteCol: quoteCol, utf8Need: utf8Need)
                endField(quoted: fieldQuoted)
                return
            }
            if !inQuotes && !afterQuote && utf8Need == 0 && copyPlainRun(fieldHasBytes: &fieldHasBytes) { continue }
            let b = block.baseAddress![pos]
            pos += 1
            // UTF-8 validation, byte by byte (ASCII takes the first test only).
            if b >= 0x80 || utf8Need > 0 { try checkUTF8(b, need: &utf8Need) }
            if inQuotes {
                try quotedByte(b, inQuotes: &inQuotes, afterQuote: &afterQuote)
                continue
            }
            if b == delimiter {
                endField(quoted: fieldQuoted)
                afterQuote = false; fieldQuoted = false; fieldHasBytes = false
            } else if b == Self.newline {
                line += 1
                lineStart = offset
                endField(quoted: fieldQuoted)
                return
            } else if b == Self.cr, try fill(), block[pos] == Self.newline {
                continue // \r\n: the \n ends the record
            } else if afterQuote {
                pos -= 1
                throw fail(
                    "unexpected character '\(Character(Unicode.Scalar(b)))' after a closing quote (a quote inside a quoted field must be doubled)"
                )
            } else if b == Self.quote && !fieldHasBytes {
                inQuotes = true
                fieldQuoted = true
                quoteLine = line
                quoteCol = offset - lineStart
            } else {
                reserve(1); buf[bufCount] = b; bufCount += 1
                fieldHasBytes = true
            }
        }
    }

    /// Fast path: copies the plain bytes from `pos` up to the next special one (delimiter,
    /// quote, line end, non-ASCII) into the field. True if they ran to the end of the block,
    /// which has to be refilled before the special byte can be looked at.
    @inline(__always) private func copyPlainRun(fieldHasBytes: inout Bool) -> Bool {
        let blk = block.baseAddress!
        let delimiter = self.delimiter
        var q = pos
        let e = end
        while q < e {
            let c = blk[q]
            if c == delimiter || c == Self.newline || c == Self.quote || c == Self.cr || c >= 0x80 { break }
            q += 1
        }
        guard q > pos else { return false }
        let run = q - pos
        reserve(run)
        (buf + bufCount).update(from: blk + pos, count: run)
        bufCount += run
        fieldHasBytes = true
        pos = q
        return q == e
    }

    /// Checks byte b (just read) of a UTF-8 sequence; `need`: continuation bytes still expected.
    @inline(__always) private func checkUTF8(_ b: UInt8, need: inout Int) throws {
        if need > 0 {
            guard b & 0xC0 == 0x80 else { pos -= 1; throw fail(String(format: "invalid UTF-8 byte 0x%02x", b)) }
            need -= 1
        } else {
            switch b {
            case 0xC2...0xDF: need = 1
            case 0xE0...0xEF: need = 2
            case 0xF0...0xF4: need = 3
            default: pos -= 1; throw fail(String(format: "invalid UTF-8 byte 0x%02x", b))
            }
        }
    }

    /// Byte b (just read) inside a quoted field: a doubled quote is one quote, a single one
    /// closes the field; anything else, newlines included, is field content.
    @inline(__always) private func quotedByte(_ b: UInt8, inQuotes: inout Bool, afterQuote: inout Bool) throws {
        if b == Self.quote {
            if try fill(), block[pos] == Self.quote {
                reserve(1); buf[bufCount] = Self.quote; bufCount += 1
                pos += 1
            } else {
                inQuotes = false
                afterQuote = true
            }
        } else {
            if b == Self.newline { line += 1; lineStart = offset }
            reserve(1); buf[bufCount] = b; bufCount += 1
        }
    }

    /// The input ended inside a record: an error if a quote or a UTF-8 sequence is still open.
    @inline(__always) private func endOfInput(inQuotes: Bool, quoteLine: Int, quoteCol: Int, utf8Need: Int) throws {
        if inQuotes {
            throw CortadoError.data(
                "\(path):\(quoteLine):\(quoteCol): unterminated quoted field (the quote opened here never closes)"
            )
        }
        if utf8Need > 0 { throw fail("invalid UTF-8: truncated multi-byte sequence at end of file") }
    }
}

/// Where each rank's part of a CSV file starts, so that ranks split one file by bytes and
/// still cut only between records — also when quoted fields contain newlines.
///
/// Each rank scans its equal byte slice for quotes and newlines; an exclusive prefix sum of the
/// quote counts tells it whether its slice starts inside a quoted field (RFC 4180 keeps quotes
/// paired, a doubled quote counting twice). The first newline outside quotes in a slice is a
/// record boundary. Rank r starts at the first boundary at or after its slice start; the line
/// number there comes from the prefix sum of newline counts.
public func csvRankRange(path: String, dataStart: Int, dataStartLine: Int, comm: Collective) throws -> (
    range: Range<Int>, firstLine: Int
) {
    let size = try fileSize(path)
    let total = max(size - dataStart, 0)
    let lo = dataStart + total * comm.rank / comm.size, hi = dataStart + total * (comm.rank + 1) / comm.size
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw CortadoError.io("\(path): cannot open") }
    defer { close(fd) }
    var quotes = 0, newlines = 0
    var candidate = -1, candidateNewlines = 0, candidateQuotes = 0
    try scanBytes(fd: fd, from: lo, to: hi) { at, b in
        if b == CSVTokenizer.quote {
            quotes += 1
        } else if b == CSVTokenizer.newline {
            newlines += 1
            if candidate < 0 { candidate = at + 1; candidateNewlines = newlines; candidateQuotes = quotes }
        }
        return true
    }
    // Quote and newline counts before this slice, and this slice's first candidate.
    func pack(_ v: [Int]) -> [UInt8] { v.flatMap { withUnsafeBytes(of: Int64($0)) { Array($0) } } }
    let all = comm.allgather(pack([quotes, newlines, candidate, candidateNewlines, candidateQuotes])).map { b in
        (0..<5).map { k in b.withUnsafeBytes { Int($0.loadUnaligned(fromByteOffset: 8 * k, as: Int64.self)) } }
    }
    // A candidate is a record boundary only if the quotes before it are even. A slice whose
    // first newline is inside quotes has to look further: such slices are rare (a quoted
    // newline exactly first), so the rank rescans its slice with the known parity.
    var boundaries = [(offset: Int, line: Int)?](repeating: nil, count: comm.size)
    var quotesBefore = 0, newlinesBefore = 0
    for r in 0..<comm.size {
        let v = all[r]
        if v[2] >= 0 && (quotesBefore + v[4]) % 2 == 0 {
            boundaries[r] = (v[2], dataStartLine + newlinesBefore + v[3])
        }
        quotesBefore += v[0]
        newlinesBefore += v[1]
    }
    if comm.rank == 0 { boundaries[0] = (dataStart, dataStartLine) }
    let mineQuotesBefore = all[..<comm.rank].reduce(0) { $0 + $1[0] }
    let mineNewlinesBefore = all[..<comm.rank].reduce(0) { $0 + $1[1] }
    if comm.rank > 0 && boundaries[comm.rank] == nil && candidate >= 0 {
        boundaries[comm.rank] = try firstBoundary(
            fd: fd, from: lo, to: hi, quoteParity: mineQuotesBefore % 2,
            line: dataStartLine + mineNewlinesBefore)
    }
    // Everyone needs everyone's boundary (the end of a range is the next start).
    let packed = comm.allgather(pack([boundaries[comm.rank]?.offset ?? -1, boundaries[comm.rank]?.line ?? -1]))
    let starts = packed.map { b in
        (0..<2).map { k in b.withUnsafeBytes { Int($0.loadUnaligned(fromByteOffset: 8 * k, as: Int64.self)) } }
    }
    func startOf(_ r: Int) -> (Int, Int) {
        for k in r..<comm.size where starts[k][0] >= 0 { return (starts[k][0], starts[k][1]) }
        return (size, -1)
    }
    let (myStart, myLine) = startOf(comm.rank)
    let (nextStart, _) = comm.rank + 1 < comm.size ? startOf(comm.rank + 1) : (size, -1)
    return (myStart..<max(myStart, nextStart), myLine)
}

private func firstBoundary(fd: Int32, from lo: Int, to hi: Int, quoteParity: Int, line: Int) throws -> (
    offset: Int, line: Int
)? {
    var parity = quoteParity, lines = line
    var found: (offset: Int, line: Int)?
    try scanBytes(fd: fd, from: lo, to: hi) { at, b in
        if b == CSVTokenizer.quote {
            parity ^= 1
        } else if b == CSVTokenizer.newline {
            lines += 1
            if parity == 0 { found = (at + 1, lines); return false }
        }
        return true
    }
    return found
}

/// Calls `body(offset, byte)` for the bytes of [lo, hi) of an open file, in 1 MiB reads,
/// until it returns false.
private func scanBytes(fd: Int32, from lo: Int, to hi: Int, _ body: (Int, UInt8) -> Bool) throws {
    lseek(fd, off_t(lo), SEEK_SET)
    var buf = [UInt8](repeating: 0, count: 1 << 20)
    var at = lo
    while at < hi {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, min($0.count, hi - at)) }
        guard n >= 0 else { throw CortadoError.io("read failed: \(String(cString: strerror(errno)))") }
        if n == 0 { return }
        for i in 0..<n where !body(at + i, buf[i]) { return }
        at += n
    }
}

public func fileSize(_ path: String) throws -> Int {
    var st = stat()
    guard stat(path, &st) == 0 else { throw CortadoError.io("\(path): no such file") }
    return Int(st.st_size)
}
