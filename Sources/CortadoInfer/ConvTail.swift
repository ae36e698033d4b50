import CortadoModel

/// The ReLU and the max pool right after a layer, which the inference kernels (fp32 direct
/// conv, the int8 epilogues; a dense layer's only the ReLU) compute in their output pass; the
/// network then skips those layers.
struct ConvTail {
    let relu: Bool
    /// The max pool's (size, stride), or nil when none follows (or its window exceeds the map).
    let pool: (size: Int, stride: Int)?
    /// Layers after the conv computed with it: 0, 1 (its ReLU or its max pool) or 2 (both).
    var fused: Int { (relu ? 1 : 0) + (pool == nil ? 0 : 1) }

    init(relu: Bool, pool: (size: Int, stride: Int)?) {
        self.relu = relu
        self.pool = pool
    }

    /// What follows the conv at `index` of `spec` (output map `g`): a ReLU, then a max pool
    /// whose window fits the map.
    init(spec: ModelSpec, index: Int, _ g: ConvShape) {
        let next = spec.layers.dropFirst(index + 1)
        relu = next.first == .relu
        if case let .maxPool(size, stride)? = next.dropFirst(relu ? 1 : 0).first, size <= g.oh, size <= g.ow {
            pool = (size, stride)
        } else {
            pool = nil
        }
    }
}
