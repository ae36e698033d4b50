import CortadoJob
import CortadoModel
import CortadoTestSupport
import CortadoTrain
import XCTest

/// conv2d (stride 2, padding 1) forward and backward against numpy; Fixtures/make_golden_conv.py.
final class ConvGoldenTests: XCTestCase {
    struct Golden: Decodable {
        var shape: [Int], x: [Double], w: [Double], b: [Double], out: [Double], g: [Double], dw: [Double], db: [Double],
            dx: [Double]
    }

    func testConv2dMatchesNumpy() throws {
        let gd = try JSONDecoder().decode(Golden.self, from: try Support.fixture("golden_conv.json"))
        let (n, c, h, w, f, k, s, p) = (
            gd.shape[0], gd.shape[1], gd.shape[2], gd.shape[3], gd.shape[4], gd.shape[5], gd.shape[6], gd.shape[7]
        )
        let g = ConvShape(c: c, h: h, w: w, f: f, k: k, s: s, p: p)
        var out = [Double](repeating: 0, count: n * g.outCount)
        var cols = [Double](repeating: 0, count: n * g.patch * g.positions)
        conv2dForward(out: &out, cols: &cols, input: gd.x, weight: gd.w, bias: gd.b, batch: n, g)
        assertClose(out, gd.out, rel: 1e-12, abs: 1e-12, "conv output")
        var dw = [Double](repeating: 0, count: gd.w.count), db = [Double](repeating: 0, count: f)
        var dx = [Double](repeating: 0, count: gd.x.count), dCols = [Double](repeating: 0, count: g.patch * g.positions)
        conv2dBackward(
            dInput: &dx, dWeight: &dw, dBias: &db, dCols: &dCols, dOut: gd.g, cols: cols, weight: gd.w, batch: n, g)
        assertClose(dw, gd.dw, rel: 1e-12, abs: 1e-12, "dWeight")
        assertClose(db, gd.db, rel: 1e-12, abs: 1e-12, "dBias")
        assertClose(dx, gd.dx, rel: 1e-12, abs: 1e-12, "dInput")
    }
}
