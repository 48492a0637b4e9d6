import XCTest
import Safetensors

/// Every class of malformed file is rejected with a thrown error naming the file, the tensor
/// where one is involved, and the problem.
final class MalformedFileTests: XCTestCase {
    var directory = ""

    override func setUpWithError() throws { directory = try makeTemporaryDirectory() }
    override func tearDown() { removeTemporaryDirectory(directory) }

    private var counter = 0

    /// Writes `bytes` to a new file and requires that opening it fails with `kind` and a message
    /// containing the file's path and every fragment.
    private func assertRejected(_ bytes: [UInt8], _ kind: SafetensorsError.Kind, _ fragments: [String],
                                file: StaticString = #filePath, line: UInt = #line) {
        counter += 1
        let path = "\(directory)/bad\(counter).safetensors"
        XCTAssertNoThrow(try writeBytes(bytes, to: path), file: file, line: line)
        assertSafetensorsError(kind, containing: [path] + fragments, file: file, line: line) {
            try SafetensorsFile(path: path)
        }
        // The in-memory parser agrees.
        assertSafetensorsError(kind, containing: ["<memory>"] + fragments, file: file, line: line) {
            try SafetensorsFile(bytes: bytes)
        }
    }

    private func assertRejected(header: String, data: [UInt8] = [], _ kind: SafetensorsError.Kind, _ fragments: [String],
                                file: StaticString = #filePath, line: UInt = #line) {
        assertRejected(craftFile(header: header, data: data), kind, fragments, file: file, line: line)
    }

    private let f32Pair = littleEndianBytes([Float(1).bitPattern, Float(2).bitPattern])

    func testTooSmallAndHeaderLength() {
        assertRejected([], .fileTooSmall, ["0 bytes"])
        assertRejected([1, 2, 3, 4, 5, 6, 7], .fileTooSmall, ["7 bytes"])
        assertRejected(craftFile(header: "{}", declaredLength: 100_000_001), .headerTooLarge, ["100000001", "100 MB"])
        assertRejected(craftFile(header: "{}", declaredLength: .max), .headerTooLarge, ["18446744073709551615"])
        assertRejected(craftFile(header: "{}      ", declaredLength: 1000), .headerBeyondFile, ["1000", "beyond the end of the file"])
        assertRejected(craftFile(header: "{}", declaredLength: 3), .headerBeyondFile, ["header length 3"])
    }

    func testMalformedJSON() {
        assertRejected(craftFile(header: ""), .malformedJSON, ["malformed JSON", "unexpected end"])
        assertRejected(header: #"{"a":"#, .malformedJSON, ["malformed JSON", "byte 5", "unexpected end"])
        assertRejected(header: #"{"a":{}} x"#, .malformedJSON, ["'x'", "after the JSON value"])
        assertRejected(header: #"{"a" {}}"#, .malformedJSON, ["expected ':'"])
        assertRejected(header: #"{"a":{},}"#, .malformedJSON, ["expected a string key"])
        assertRejected(header: #"{"a":tru}"#, .malformedJSON, ["invalid literal"])
        assertRejected(header: #"{"a":"unterminated}"#, .malformedJSON, ["unterminated string"])
        assertRejected(header: #"{"\ud800":{}}"#, .malformedJSON, ["lone surrogate"])
        assertRejected(header: #"{"\q":{}}"#, .malformedJSON, ["invalid escape"])
        assertRejected(header: "{\"a\nb\":{}}", .malformedJSON, ["control character"])
        assertRejected(header: #"{"a":{"dtype":"F32","shape":[01],"data_offsets":[0,4]}}"#, .malformedJSON, ["leading zero"])
        assertRejected(header: #"{"a":[1,2}"#, .malformedJSON, ["expected ',' or ']'"])
        assertRejected(header: #"{"a":"x"}"#, .wrongJSONType, ["'a'", "a string"])
        var invalidUTF8 = craftFile(header: #"{"ab":{}}"#)
        invalidUTF8[10] = 0xC3  // a lead byte followed by an ASCII byte
        assertRejected(invalidUTF8, .malformedJSON, ["not valid UTF-8", "0xc3"])
        let deep = #"{"a":"# + String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000) + "}"
        assertRejected(header: deep, .malformedJSON, ["nested deeper than 64"])
    }

    func testWrongJSONTypes() {
        assertRejected(header: "[]", .wrongJSONType, ["must be a JSON object", "an array"])
        assertRejected(header: #"{"a":5}"#, .wrongJSONType, ["'a'", "entry must be an object", "a number"])
        assertRejected(header: #"{"a":{"dtype":32,"shape":[],"data_offsets":[0,4]}}"#, .wrongJSONType, ["'a'", "dtype must be a string"])
        assertRejected(header: #"{"a":{"dtype":"F32","shape":"2","data_offsets":[0,8]}}"#, .wrongJSONType, ["'a'", "shape must be an array"])
        assertRejected(header: #"{"a":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}}"#, .wrongJSONType, ["'a'", "shape", "a string"])
        assertRejected(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":{}}}"#, .wrongJSONType, ["'a'", "data_offsets must be an array"])
        assertRejected(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":["0","8"]}}"#, .wrongJSONType, ["'a'", "data_offsets", "a string"])
        assertRejected(header: #"{"a":{"shape":[2],"data_offsets":[0,8]}}"#, data: f32Pair, .wrongJSONType, ["'a'", "missing field 'dtype'"])
        assertRejected(header: #"{"a":{"dtype":"F32","data_offsets":[0,8]}}"#, data: f32Pair, .wrongJSONType, ["'a'", "missing field 'shape'"])
        assertRejected(header: #"{"a":{"dtype":"F32","shape":[2]}}"#, data: f32Pair, .wrongJSONType, ["'a'", "missing field 'data_offsets'"])
        assertRejected(header: #"{"__metadata__":{"k":1}}"#, .wrongJSONType, ["__metadata__", "'k'", "must be a string"])
        assertRejected(header: #"{"__metadata__":["k"]}"#, .wrongJSONType, ["__metadata__ must be an object"])
    }

    func testUnknownDType() {
        assertRejected(header: #"{"w":{"dtype":"Q4_0","shape":[2],"data_offsets":[0,1]}}"#, data: [0], .unknownDType,
                       ["'w'", "unknown dtype 'Q4_0'", "F32"])
        assertRejected(header: #"{"w":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}}"#, data: f32Pair, .unknownDType, ["'f32'"])
    }

    func testInvalidShapes() {
        assertRejected(header: #"{"w":{"dtype":"F32","shape":[2,-3],"data_offsets":[0,8]}}"#, data: f32Pair, .invalidShape,
                       ["'w'", "negative dimension -3"])
        assertRejected(header: #"{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,8]}}"#, data: f32Pair, .invalidShape,
                       ["'w'", "1.5", "not an integer"])
        assertRejected(header: #"{"w":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,8]}}"#, data: f32Pair,
                       .invalidShape, ["'w'", "99999999999999999999"])
        assertRejected(header: #"{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#, data: f32Pair,
                       .invalidShape, ["'w'", "more elements than fit"])
        assertRejected(header: #"{"w":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]}}"#, data: f32Pair,
                       .invalidShape, ["'w'", "more bytes than fit"])
    }

    func testInvalidOffsets() {
        assertRejected(header: #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}}"#, data: f32Pair, .invalidOffsets,
                       ["'w'", "[begin, end]", "1 elements"])
        assertRejected(header: #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4,8]}}"#, data: f32Pair, .invalidOffsets,
                       ["'w'", "3 elements"])
        assertRejected(header: #"{"w":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}}"#, data: f32Pair, .invalidOffsets,
                       ["'w'", "[8, 4]", "begin > end"])
        assertRejected(header: #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}"#, data: f32Pair, .invalidOffsets,
                       ["'w'", "non-negative"])
    }

    func testSizeMismatchAndOutOfRange() {
        assertRejected(header: #"{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,8]}}"#, data: f32Pair, .sizeMismatch,
                       ["'w'", "span 8 bytes", "F32 [2, 3] needs 24 bytes"])
        assertRejected(header: #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, data: f32Pair, .offsetsOutOfRange,
                       ["'w'", "[4, 12]", "beyond the data buffer (8 bytes)"])
        assertRejected(header: #"{"w":{"dtype":"I64","shape":[],"data_offsets":[0,8]}}"#, data: [1, 2, 3], .offsetsOutOfRange,
                       ["'w'", "3 bytes"])
    }

    func testOverlapAndDuplicates() {
        let twelve = [UInt8](repeating: 0, count: 12)
        assertRejected(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
                       data: twelve, .overlap, ["'b'", "overlap tensor 'a'", "[0, 8]"])
        assertRejected(header: #"{"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}}"#,
                       data: twelve, .overlap, ["overlap"])
        assertRejected(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                       data: f32Pair, .duplicateName, ["'a'", "declared twice"])
        assertRejected(header: #"{"__metadata__":{},"__metadata__":{}}"#, .duplicateName, ["'__metadata__'", "declared twice"])
        assertRejected(header: #"{"__metadata__":{"k":"1","k":"2"}}"#, .duplicateName, ["'k'", "declared twice"])
        assertRejected(header: #"{"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: f32Pair,
                       .duplicateName, ["'a'", "field 'dtype' declared twice"])
    }

    func testHolesAreAllowedAndReported() throws {
        let header = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"z":{"dtype":"F32","shape":[0],"data_offsets":[6,6]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#
        let file = try SafetensorsFile(bytes: craftFile(header: header, data: littleEndianBytes([Float(1).bitPattern, 0, Float(3).bitPattern, 0])))
        XCTAssertEqual(file.names, ["a", "z", "b"], "entries keep header order")
        XCTAssertEqual(file.holes, [4..<8, 12..<16])
        XCTAssertEqual(try file.floats("b"), [3])
        XCTAssertEqual(try file.floats("z"), [])
    }

    func testIOErrors() {
        let missing = directory + "/missing.safetensors"
        assertSafetensorsError(.io, containing: [missing, "cannot open", "No such file"]) { try SafetensorsFile(path: missing) }
        assertSafetensorsError(.io, containing: [directory, "not a regular file"]) { try SafetensorsFile(path: directory) }
    }
}
