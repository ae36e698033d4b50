import CortadoMPI
import Foundation

/// Sums a gradient arena across ranks when most of it is embedding tables a step barely
/// touches: the dense head of the arena goes through one allreduce, and each table's touched
/// rows travel as (id, row) pairs in one allgather, merged on every rank in rank order — so
/// all ranks end with the same sums, bit for bit. Rows nobody touched stay zero, exactly what
/// a dense allreduce would give them.
///
/// Per step a rank sends `extras` values, then per table its count of distinct ids, the ids
/// (bit patterns in Float slots) and their rows. Cost: Σ_ranks touched·(width + 1) floats
/// gathered, against ≈ 2 × table size for a ring allreduce; `denseCost`/`sparseBound` let the
/// trainer choose up front. Everything is allocated at set-up; `exchange` allocates nothing.
final class SparseExchange {
    /// A set of tensors indexed by the same id (an embedding table and its bias column):
    /// `parts` are (offset, width) in the arena; an id's row is the parts' slices side by side.
    struct Table {
        let rows: Int
        let parts: [(offset: Int, width: Int)]
        var width: Int { parts.reduce(0) { $0 + $1.width } }
    }

    let comm: Communicator
    let tables: [Table]
    let denseCount: Int, arenaCount: Int, extras: Int
    /// Per table: the ids of this step's batch (set by the caller before `exchange`).
    var idSources: [(ids: UnsafePointer<Int32>, count: Int)]
    private let marks: [UnsafeMutableBufferPointer<UInt8>]
    private let touched: [UnsafeMutablePointer<Int32>]
    private let send: UnsafeMutablePointer<Float>, recv: UnsafeMutablePointer<Float>
    private let counts: UnsafeMutablePointer<Int32>, displacements: UnsafeMutablePointer<Int32>
    let maxIds: [Int]

    /// - maxIds: per table, the most ids one step can look up (batch rows using that table).
    init(comm: Communicator, tables: [Table], denseCount: Int, arenaCount: Int, extras: Int, maxIds: [Int]) {
        self.comm = comm
        self.tables = tables
        self.denseCount = denseCount
        self.arenaCount = arenaCount
        self.extras = extras
        self.maxIds = maxIds
        let dummy = UnsafePointer<Int32>(bitPattern: 8)!
        idSources = tables.map { _ in (dummy, 0) }
        marks = tables.map { t in
            let b = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: t.rows); b.initialize(repeating: 0); return b
        }
        touched = zip(tables, maxIds).map { _, m in .allocate(capacity: m) }
        let perRank = extras + tables.count + zip(tables, maxIds).reduce(0) { $0 + $1.1 * ($1.0.width + 1) }
        send = .allocate(capacity: perRank)
        recv = .allocate(capacity: perRank * comm.size)
        counts = .allocate(capacity: comm.size)
        displacements = .allocate(capacity: comm.size)
    }

    deinit {
        marks.forEach { $0.deallocate() }
        touched.forEach { $0.deallocate() }
        send.deallocate(); recv.deallocate(); counts.deallocate(); displacements.deallocate()
    }

    /// Floats a dense allreduce of the tables would move per rank (≈ 2× for a ring).
    var denseCost: Int { 2 * tables.reduce(0) { $0 + $1.rows * $1.width } }
    /// The most floats the sparse exchange can receive per rank in one step.
    var sparseBound: Int { comm.size * zip(tables, maxIds).reduce(0) { $0 + $1.1 * ($1.0.width + 1) } }

    /// Sums g[0..<denseCount], the tables and the `extras` slots at g[arenaCount…] across ranks.
    func exchange(_ g: UnsafeMutablePointer<Float>) {
        // Pack: extras, then per table its distinct ids (first-seen order) and their rows,
        // zeroing each packed row so the arena's tables hold only what the merge adds.
        var n = 0
        for e in 0..<extras { send[n] = g[arenaCount + e]; n += 1 }
        let header = n
        n += tables.count
        for (t, table) in tables.enumerated() {
            let (ids, count) = idSources[t]
            let mark = marks[t].baseAddress!
            var k = 0
            for i in 0..<count {
                let id = Int(ids[i])
                if mark[id] == 0 { mark[id] = 1; touched[t][k] = ids[i]; k += 1 }
            }
            send[header + t] = Float(bitPattern: UInt32(k))
            for i in 0..<k { send[n + i] = Float(bitPattern: UInt32(bitPattern: touched[t][i])) }
            n += k
            for i in 0..<k {
                let id = Int(touched[t][i])
                mark[id] = 0
                for p in table.parts {
                    let row = g + p.offset + id * p.width
                    (send + n).update(from: row, count: p.width)
                    row.update(repeating: 0, count: p.width)
                    n += p.width
                }
            }
        }
        if denseCount > 0 { comm.allreduceSum(g, count: denseCount) }
        comm.allgatherv(send, count: n, recv: recv, counts: counts, displacements: displacements)
        for e in 0..<extras { g[arenaCount + e] = 0 }
        // Merge in rank order: the same additions in the same order on every rank.
        for r in 0..<comm.size {
            var q = Int(displacements[r])
            for e in 0..<extras { g[arenaCount + e] += recv[q + e] }
            q += extras
            let hdr = q
            q += tables.count
            for (t, table) in tables.enumerated() {
                let k = Int(recv[hdr + t].bitPattern)
                let idBase = q
                q += k
                for i in 0..<k {
                    let id = Int(Int32(bitPattern: recv[idBase + i].bitPattern))
                    for p in table.parts {
                        let row = g + p.offset + id * p.width
                        for j in 0..<p.width { row[j] += recv[q + j] }
                        q += p.width
                    }
                }
            }
        }
    }
}
