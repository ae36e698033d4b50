import CortadoCore
import Foundation

/// A prepared-data folder that appears all at once: files are written into `OUT.partial`, and
/// only when everything (manifest last) is complete is it renamed to `OUT`. A failed or
/// interrupted run leaves no folder that looks valid under the final name.
public struct OutputFolder {
    public let final: String
    public let staging: String
    public let overwrite: Bool

    public init(_ path: String, overwrite: Bool) {
        final = (path as NSString).standardizingPath
        staging = final + ".partial"
        self.overwrite = overwrite
    }

    /// Checks the destination and creates an empty staging folder.
    public func begin() throws {
        let fm = FileManager.default
        if fm.fileExists(atPath: final) && !overwrite {
            let contents = (try? fm.contentsOfDirectory(atPath: final)) ?? []
            if !contents.isEmpty {
                throw CortadoError.usage("\(final) already exists and is not empty: pass --overwrite to replace it")
            }
        }
        try? fm.removeItem(atPath: staging)
        try ensureWritableDirectory(staging)
    }

    /// Path of a file inside the staging folder.
    public func file(_ name: String) -> String { (staging as NSString).appendingPathComponent(name) }

    /// Swaps the staging folder in under the final name.
    public func commit() throws {
        let fm = FileManager.default
        let old = final + ".old-\(getpid())"
        if fm.fileExists(atPath: final) {
            guard rename(final, old) == 0 else { throw CortadoError.io("\(final): cannot move the old folder aside") }
        }
        guard rename(staging, final) == 0 else {
            throw CortadoError.io("\(final): cannot rename \(staging) into place")
        }
        try? fm.removeItem(atPath: old)
    }

    /// Removes the staging folder after a failure.
    public func abandon() { try? FileManager.default.removeItem(atPath: staging) }
}
