import Foundation

/// The one error type users see: a single line that names the file, field or rank involved.
///
/// Library code throws it for anything a user can cause (bad input, bad config, I/O); the
/// executables print `description` and exit with `exitCode`. Nothing in the libraries calls
/// `exit()` or `fatalError` for a user error.
public struct CortadoError: Error, CustomStringConvertible, Equatable {
    public enum Kind: String, Sendable, CaseIterable {
        case usage // bad command line or job spec
        case data // malformed input file
        case io // the file system said no
        case model // bad model / checkpoint file
        case distributed // ranks disagree, or a peer failed
        case numeric // NaN / Inf where a number was expected
        case preempted // stopped by a signal after writing a checkpoint: requeue and resume
    }
    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }

    /// Exit codes the job scripts can tell apart: 2 bad input (command line, spec, data, model or
    /// checkpoint file), 4 I/O, 6 distributed (ranks disagree, a peer failed or hung),
    /// 7 numeric, 75 preempted (EX_TEMPFAIL: a checkpoint was written, requeue and `--resume`).
    public var exitCode: Int32 {
        switch kind {
        case .usage, .data, .model: return 2
        case .io: return 4
        case .distributed: return 6
        case .numeric: return 7
        case .preempted: return 75
        }
    }

    /// The kind whose exit code is `code` (how a failure's kind travels between ranks).
    public static func kind(forExitCode code: Int32) -> Kind? {
        Kind.allCases.first { CortadoError($0, "").exitCode == code }
    }

    public static func usage(_ m: String) -> CortadoError { .init(.usage, m) }
    public static func data(_ m: String) -> CortadoError { .init(.data, m) }
    public static func io(_ m: String) -> CortadoError { .init(.io, m) }
    public static func model(_ m: String) -> CortadoError { .init(.model, m) }
}

/// Writes one line to standard error (unbuffered, so ranks' messages are not lost on abort).
public func printError(_ line: String) {
    FileHandle.standardError.write((line + "\n").data(using: .utf8) ?? Data())
}

/// A decoding error as one line naming the key path.
public func describe(_ error: Error) -> String {
    switch error {
    case DecodingError.keyNotFound(let key, let ctx):
        return "missing key '\((ctx.codingPath + [key]).map(\.stringValue).joined(separator: "."))'"
    case DecodingError.typeMismatch(let type, let ctx), DecodingError.valueNotFound(let type, let ctx):
        return "'\(ctx.codingPath.map(\.stringValue).joined(separator: "."))' should be \(type)"
    case DecodingError.dataCorrupted(let ctx):
        return "invalid data at '\(ctx.codingPath.map(\.stringValue).joined(separator: "."))': \(ctx.debugDescription)"
    default:
        return "\(error)"
    }
}

/// The product of sizes read from a file (dimensions, counts), or nil when it overflows `Int`
/// or a factor is negative: a corrupt header must become an error, not a trap.
public func checkedProduct<S: Sequence>(_ factors: S) -> Int? where S.Element == Int {
    var p = 1
    for f in factors {
        guard f >= 0 else { return nil }
        let (r, overflow) = p.multipliedReportingOverflow(by: f)
        if overflow { return nil }
        p = r
    }
    return p
}
