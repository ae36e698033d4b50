import Foundation

/// The collectives that distributed code needs, independent of MPI: the trainer and the
/// parallel `cortado prepare` are written against this, and run either under mpirun (the MPI
/// communicator) or as one process (`Solo`). Every call is a collective: all ranks make it, in
/// the same order.
public protocol Collective: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// "rank 1 (node2)": how messages name a rank.
    var name: String { get }
    func allreduceSum(_ values: inout [Double])
    func allreduceMin(_ value: Int) -> Int
    func allreduceMax(_ value: Int) -> Int
    /// Gathers one byte string from every rank, in rank order.
    func allgather(_ bytes: [UInt8]) -> [[UInt8]]
    /// Broadcasts `bytes` from `root` (every rank gets root's bytes).
    func broadcastBytes(_ bytes: [UInt8], root: Int) -> [UInt8]
    func barrier()
}

extension Collective {
    /// Sum of `value` over ranks below this one (exclusive prefix sum), from an allgather.
    public func exclusivePrefixSum(_ value: Int) -> (before: Int, total: Int) {
        let all = allgather(withUnsafeBytes(of: Int64(value)) { Array($0) }).map { b in
            b.withUnsafeBytes { Int($0.loadUnaligned(as: Int64.self)) }
        }
        return (all[..<rank].reduce(0, +), all.reduce(0, +))
    }

    /// Runs `body` on every rank, then agrees on the outcome: if any rank threw, every rank
    /// throws the same error — the lowest failing rank's, prefixed with its name — so all ranks
    /// take the same branch and nobody is left waiting in a later collective.
    public func agree<T>(_ what: String, _ body: () throws -> T) throws -> T {
        var result: T?
        var failure: CortadoError?
        do { result = try body() } catch let e as CortadoError { failure = e } catch {
            failure = CortadoError(.io, "\(error)")
        }
        let firstFailed = allreduceMin(failure == nil ? size : rank)
        if firstFailed == size, let result { return result }
        let prefix = size > 1 ? "\(name): " : ""
        let mine = failure.map { [UInt8($0.exitCode)] + Array("\(prefix)\(what): \($0.message)".utf8) } ?? []
        let got = broadcastBytes(mine, root: firstFailed)
        let kind = CortadoError.kind(forExitCode: Int32(got.first ?? 6)) ?? .distributed
        throw CortadoError(kind, String(decoding: got.dropFirst(), as: UTF8.self))
    }
}

/// One process, no MPI: every collective is the identity.
public final class Solo: Collective {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public var name: String { "rank 0" }
    public func allreduceSum(_ values: inout [Double]) {}
    public func allreduceMin(_ value: Int) -> Int { value }
    public func allreduceMax(_ value: Int) -> Int { value }
    public func allgather(_ bytes: [UInt8]) -> [[UInt8]] { [bytes] }
    public func broadcastBytes(_ bytes: [UInt8], root: Int) -> [UInt8] { bytes }
    public func barrier() {}
}
