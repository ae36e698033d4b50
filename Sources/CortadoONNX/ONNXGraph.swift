import Foundation
import SwiftProtobuf

/// Builds an ONNX graph (`Onnx_GraphProto`, the generated message code in `Generated/`) one
/// node at a time: float32 and int64 initializers, nodes with their attributes, and the graph's
/// typed inputs and outputs. Value names are chosen by the caller, so a graph read in Netron or
/// onnx.checker shows `layers.3.relu`, not `tmp_17`.
struct ONNXGraphBuilder {
    private(set) var graph = Onnx_GraphProto()

    init(name: String, doc: String) {
        graph.name = name
        graph.docString = doc
    }

    var nodeCount: Int { graph.node.count }

    /// A float32 initializer of `dims` (row-major `values`), stored as little-endian raw data.
    @discardableResult
    mutating func initializer(_ name: String, dims: [Int], _ values: [Float]) -> String {
        precondition(dims.reduce(1, *) == values.count, "initializer \(name): \(values.count) values for dims \(dims)")
        var t = Onnx_TensorProto()
        t.name = name
        t.dims = dims.map(Int64.init)
        t.dataType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        t.rawData = values.map { $0.bitPattern.littleEndian }.withUnsafeBytes { Data($0) }
        graph.initializer.append(t)
        return name
    }

    /// A 1-D int64 initializer (shape operands such as Reshape's target shape).
    @discardableResult
    mutating func initializer(_ name: String, int64s values: [Int64]) -> String {
        var t = Onnx_TensorProto()
        t.name = name
        t.dims = [Int64(values.count)]
        t.dataType = Int32(Onnx_TensorProto.DataType.int64.rawValue)
        t.rawData = values.map { $0.littleEndian }.withUnsafeBytes { Data($0) }
        graph.initializer.append(t)
        return name
    }

    /// Appends a node of operator `op` (default domain) reading `inputs` and writing `output`;
    /// returns `output`. The node is named after its output.
    @discardableResult
    mutating func node(_ op: String, _ inputs: [String], _ output: String, _ attributes: [Onnx_AttributeProto] = [])
        -> String
    {
        var n = Onnx_NodeProto()
        n.opType = op
        n.name = output + "/" + op
        n.input = inputs
        n.output = [output]
        n.attribute = attributes
        graph.node.append(n)
        return output
    }

    /// Declares a float32 graph input or output; a nil dimension is the symbolic `batch`.
    static func floatValue(_ name: String, dims: [Int?]) -> Onnx_ValueInfoProto {
        var v = Onnx_ValueInfoProto()
        v.name = name
        var tensor = Onnx_TypeProto.Tensor()
        tensor.elemType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        var shape = Onnx_TensorShapeProto()
        shape.dim = dims.map { d in
            var dim = Onnx_TensorShapeProto.Dimension()
            if let d { dim.dimValue = Int64(d) } else { dim.dimParam = "batch" }
            return dim
        }
        tensor.shape = shape
        v.type.tensorType = tensor
        return v
    }

    mutating func input(_ name: String, dims: [Int?]) { graph.input.append(Self.floatValue(name, dims: dims)) }
    mutating func output(_ name: String, dims: [Int?]) { graph.output.append(Self.floatValue(name, dims: dims)) }
}

/// Node attributes (`Onnx_AttributeProto`) by type.
enum ONNXAttribute {
    static func int(_ name: String, _ value: Int) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name
        a.type = .int
        a.i = Int64(value)
        return a
    }

    static func ints(_ name: String, _ values: [Int]) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name
        a.type = .ints
        a.ints = values.map(Int64.init)
        return a
    }

    static func float(_ name: String, _ value: Float) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name
        a.type = .float
        a.f = value
        return a
    }
}
