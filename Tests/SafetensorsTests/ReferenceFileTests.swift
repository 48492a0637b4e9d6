import XCTest
import Safetensors

/// Reads the files produced by the Python reference (PyTorch + safetensors) in ../shared.
final class ReferenceFileTests: XCTestCase {
    func testALBEFTinyWeights() throws {
        let path = try sharedDirectory() + "/reference/albef-tiny/weights.safetensors"
        let file = try SafetensorsFile(path: path)
        XCTAssertEqual(file.entries.count, 844)
        XCTAssertEqual(file.metadata, ["format": "albef-state-dict"])
        XCTAssertEqual(file.holes, [])

        let pos = try file.entry("visual_encoder.pos_embed")
        XCTAssertEqual(pos.dtype, .f32)
        XCTAssertEqual(pos.shape, [1, 17, 64])
        let posValues = try file.floats("visual_encoder.pos_embed")
        XCTAssertEqual(posValues.count, 17 * 64)
        XCTAssertEqual(posValues[0], 0.03898725, accuracy: 1e-7)

        let temp = try file.entry("temp")
        XCTAssertEqual(temp.shape, [], "temp is a scalar")
        XCTAssertEqual(temp.elementCount, 1)
        XCTAssertEqual(try file.floats("temp")[0], 0.07, accuracy: 1e-7)

        XCTAssertEqual(file["queue_ptr"]?.dtype, .i64)
        XCTAssertEqual(try file.int64s("queue_ptr"), [0])
        XCTAssertEqual(try file.int64s("text_encoder.bert.embeddings.position_ids"), (0..<64).map { Int64($0) })
        XCTAssertEqual(file["image_queue"]?.shape, [32, 16])
        // The tied decoder weight is stored under both names.
        XCTAssertEqual(try file.floats("text_encoder.cls.predictions.decoder.weight"),
                       try file.floats("text_encoder.bert.embeddings.word_embeddings.weight"))
        XCTAssertTrue(file.names.contains("text_encoder.bert.encoder.layer.6.crossattention.self.query.weight"))

        // Zero-copy access into a caller-owned arena.
        let n = pos.elementCount
        let arena = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer { arena.deallocate() }
        try file.copyFloats("visual_encoder.pos_embed", into: arena, count: n)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: arena, count: n)), posValues)
        let firstBytes = try file.withTensorBytes("visual_encoder.pos_embed") { Array($0.prefix(4)) }
        XCTAssertEqual(firstBytes, withUnsafeBytes(of: posValues[0].bitPattern.littleEndian) { Array($0) })
    }

    func testALBEFTinyBatch() throws {
        let file = try SafetensorsFile(path: try sharedDirectory() + "/reference/albef-tiny/batch.safetensors")
        XCTAssertEqual(Set(file.names), ["image", "input_ids", "attention_mask", "mlm_input_ids", "mlm_labels",
                                         "itm_neg_image_index", "itm_neg_text_index", "alpha"])
        XCTAssertEqual(file.metadata, [:])
        let ids = try file.entry("input_ids")
        XCTAssertEqual(ids.dtype, .i64)
        XCTAssertEqual(ids.shape, [4, 13])
        let values = try file.int64s("input_ids")
        XCTAssertEqual(Array(values.prefix(9)), [101, 1996, 4937, 2003, 5777, 2006, 1996, 9019, 2153])
        XCTAssertEqual(stride(from: 0, to: 52, by: 13).map { values[$0] }, [101, 101, 101, 101], "ALBEF framing starts with [CLS]")
        XCTAssertEqual(file["image"]?.shape, [4, 3, 64, 64])
        XCTAssertEqual(try file.floats("image")[0], 0.89269257, accuracy: 1e-7)
        XCTAssertEqual(file["alpha"]?.shape, [])
        XCTAssertEqual(try file.floats("alpha"), [0.4])
    }

    func testMiniLMModel() throws {
        let file = try SafetensorsFile(path: try sharedDirectory() + "/data/minilm/model.safetensors")
        XCTAssertEqual(file.entries.count, 104)
        XCTAssertEqual(file.metadata, ["format": "pt"])
        XCTAssertEqual(file["embeddings.word_embeddings.weight"]?.shape, [30522, 384])
        XCTAssertEqual(file["encoder.layer.0.attention.self.query.weight"]?.shape, [384, 384])
        XCTAssertEqual(try file.int64s("embeddings.position_ids"), (0..<512).map { Int64($0) })
        let words = try file.floats("embeddings.word_embeddings.weight")
        XCTAssertEqual(words.count, 30522 * 384)
        XCTAssertEqual(words[101 * 384], -0.0176194, accuracy: 1e-7)
    }

    /// Re-serializing each reference file with our writer (zero-copy from the mapping) reproduces
    /// it byte for byte: same ordering, JSON spelling and padding as the Python library.
    func testWriterReproducesReferenceFilesByteForByte() throws {
        let shared = try sharedDirectory()
        for relative in ["reference/albef-tiny/weights.safetensors", "reference/albef-tiny/batch.safetensors",
                         "data/minilm/model.safetensors"] {
            let path = "\(shared)/\(relative)"
            let file = try SafetensorsFile(path: path)
            var w = SafetensorsWriter(metadata: file.metadata)
            for e in file.entries {
                // The mapping outlives `serialized`, so handing out its bytes is safe here.
                try file.withTensorBytes(e.name) { try w.add(e.name, dtype: e.dtype, shape: e.shape, rawBytes: $0) }
            }
            let ours = try w.serialized()
            let original = try readBytes(path)
            XCTAssertEqual(ours.count, original.count, relative)
            XCTAssertTrue(ours == original, "\(relative): our serialization differs from the reference file")
        }
    }
}
