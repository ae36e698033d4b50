import CortadoCore
import CortadoModel
import CortadoTestSupport
import XCTest

final class MetricsTests: XCTestCase {
    func testROCAUC() {
        // sklearn.metrics.roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
        XCTAssertEqual(rocAUC(scores: [0.1, 0.4, 0.35, 0.8], positives: [false, false, true, true]), 0.75)
        XCTAssertEqual(
            rocAUC(scores: [0.5, 0.5, 0.2, 0.9], positives: [false, true, false, true]), 0.875, "ties count half")
        XCTAssertEqual(rocAUC(scores: [1, 2, 3], positives: [false, false, false]).isNaN, true)
    }

    func testTopK() {
        let logits: [Float] = [
            0.1, 0.9, 0.5, 0.3, // label 2: second highest
            0.8, 0.1, 0.2, 0.7
        ] // label 1: lowest
        XCTAssertEqual(topKCorrect(logits: logits, labels: [2, 1], batch: 2, classes: 4, k: 1), 0)
        XCTAssertEqual(topKCorrect(logits: logits, labels: [2, 1], batch: 2, classes: 4, k: 2), 1)
        XCTAssertEqual(topKCorrect(logits: logits, labels: [2, 1], batch: 2, classes: 4, k: 4), 2)
    }
}
