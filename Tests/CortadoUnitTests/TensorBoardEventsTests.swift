import CortadoTrain
import Foundation
import XCTest

/// The hand-written TensorBoard encoding: CRC32C against its published check values and the
/// TFRecord framing. (TensorBoard's own reader checks whole files: TensorBoardMPITests.)
final class TensorBoardEventsTests: XCTestCase {
    func testCRC32CCheckValues() {
        // RFC 3720 B.4 and the common "123456789" check value of CRC-32C.
        XCTAssertEqual(TensorBoardWriter.crc32c(Data("123456789".utf8)), 0xe306_9283)
        XCTAssertEqual(TensorBoardWriter.crc32c(Data(repeating: 0, count: 32)), 0x8a91_36aa)
        XCTAssertEqual(TensorBoardWriter.crc32c(Data(repeating: 0xff, count: 32)), 0x62a8_ab43)
        XCTAssertEqual(TensorBoardWriter.crc32c(Data((0..<32).map { UInt8($0) })), 0x46dd_794e)
    }

    func testRecordFraming() {
        let payload = Data("hello".utf8)
        let r = TensorBoardWriter.record(payload)
        XCTAssertEqual(r.count, 8 + 4 + 5 + 4)
        XCTAssertEqual(Array(r[0..<8]), [5, 0, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(Data(r[12..<17]), payload)
        let c = TensorBoardWriter.crc32c(payload)
        let masked = ((c >> 15) | (c << 17)) &+ 0xa282_ead8
        XCTAssertEqual(Array(r[17..<21]), withUnsafeBytes(of: masked.littleEndian) { Array($0) })
    }
}
