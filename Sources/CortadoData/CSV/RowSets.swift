/// Compact containers for per-row bookkeeping, so that memory per input row stays small.

/// One bit per row (keep or drop), appended in order.
public struct BitFlags {
    private var words: [UInt64] = []
    public private(set) var count = 0

    public init() {}

    public mutating func append(_ value: Bool) {
        if count & 63 == 0 { words.append(0) }
        if value { words[count >> 6] |= 1 << UInt64(count & 63) }
        count += 1
    }

    public subscript(i: Int) -> Bool {
        get { words[i >> 6] & (1 << UInt64(i & 63)) != 0 }
        set {
            if newValue { words[i >> 6] |= 1 << UInt64(i & 63) } else { words[i >> 6] &= ~(1 << UInt64(i & 63)) }
        }
    }
}

/// A set of 64-bit row hashes: open addressing with linear probing, 8 bytes a slot, grown at
/// 7/8 load — about half of what `Set<UInt64>` needs at the same size.
public struct HashSet64 {
    private var slots: [UInt64] = [UInt64](repeating: 0, count: 1024) // 0 = empty
    private var hasZero = false
    public private(set) var count = 0

    public init() {}

    /// Inserts `h`; returns whether it was new.
    @inline(__always)
    public mutating func insert(_ h: UInt64) -> Bool {
        if h == 0 {
            defer { hasZero = true }
            if hasZero { return false }
            count += 1
            return true
        }
        if (count + 1) * 8 > slots.count * 7 { grow() }
        let mask = slots.count - 1
        var i = Int(truncatingIfNeeded: (h ^ (h >> 29)) &* 0xBF58_476D_1CE4_E5B9 >> 1) & mask
        while true {
            let s = slots[i]
            if s == h { return false }
            if s == 0 {
                slots[i] = h
                count += 1
                return true
            }
            i = (i + 1) & mask
        }
    }

    private mutating func grow() {
        let old = slots
        slots = [UInt64](repeating: 0, count: old.count * 2)
        let mask = slots.count - 1
        for h in old where h != 0 {
            var i = Int(truncatingIfNeeded: (h ^ (h >> 29)) &* 0xBF58_476D_1CE4_E5B9 >> 1) & mask
            while slots[i] != 0 { i = (i + 1) & mask }
            slots[i] = h
        }
    }
}
