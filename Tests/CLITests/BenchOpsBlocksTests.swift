import Foundation
import XCTest

/// Issue 17 item 5: `elip bench ops` times every backbone's block kinds at base size and splits
/// each into GEMM and the engine's own ops.
final class BenchOpsBlocksTests: XCTestCase {
    /// sgemm FLOPs of a forward pass: 2 x rows x (in x out) per Linear, 2 x B x heads x Tq x Tk x 64
    /// per attention product (scores and the weighted sum). Training = 3x (backward: dX and dW of
    /// each Linear, four products per attention), every input requiring a gradient.
    static func linear(_ rows: Int, _ inFeatures: Int, _ outFeatures: Int) -> Double { 2 * Double(rows * inFeatures * outFeatures) }
    static func attention(_ batch: Int, _ tq: Int, _ tk: Int) -> Double { 2 * 2 * Double(batch * 12 * tq * tk * 64) }

    func testEveryBlockKindIsTimedAndItsGEMMsAreTheBlocksFLOPs() throws {
        let r = try CLI.run(["bench", "ops", "--json", "--steps", "1", "--repeats", "1", "--threads", "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
        // The row-wise kernels are timed one by one (a kernel that stopped vectorising shows there).
        let kernels = try XCTUnwrap(json["kernels_ns_per_element"] as? [String: Double], "\(json.keys)")
        XCTAssertEqual(Set(kernels.keys), ["softmax, in place", "attention softmax backward, in place", "GELU forward",
                                           "GELU backward", "QuickGELU forward", "AdamW update"])
        XCTAssertTrue(kernels.values.allSatisfy { $0.isFinite && $0 > 0 }, "\(kernels)")
        let blocks = try XCTUnwrap(json["blocks"] as? [[String: Any]])
        let names = blocks.compactMap { $0["name"] as? String }
        XCTAssertEqual(names.count, 6)
        for kind in ["ViT-B/16 block", "CLIP ViT-B/16 block, QuickGELU", "BERT fusion layer", "BLIP decoder layer, causal",
                     "METER co-attention, text side", "METER co-attention, image side"] {
            XCTAssertEqual(names.filter { $0.hasPrefix(kind) }.count, 1, "\(kind) in \(names)")
        }
        for b in blocks {
            let step = try XCTUnwrap(b["step_seconds"] as? Double), gemm = try XCTUnwrap(b["gemm_seconds"] as? Double)
            XCTAssertGreaterThan(gemm, 0, "\(b)")
            XCTAssertLessThan(gemm, step, "\(b)")
            XCTAssertEqual(try XCTUnwrap(b["non_gemm_share"] as? Double), (step - gemm) / step, accuracy: 1e-12)
            // The profiled step names where the rest goes; every block kind has an attention.
            let ops = try XCTUnwrap(b["op_seconds"] as? [String: Double], "\(b)")
            XCTAssertGreaterThan(try XCTUnwrap(ops["attentionCore"], "\(ops)"), 0)
            XCTAssertTrue(ops.values.allSatisfy { $0 >= 0 }, "\(ops)")
        }
        // The FLOPs the profiler saw are exactly the blocks' GEMMs (nothing missed, nothing twice).
        func flops(_ prefix: String) throws -> Double {
            let b = try XCTUnwrap(blocks.first { ($0["name"] as? String)?.hasPrefix(prefix) == true })
            return try XCTUnwrap(b["step_gflops"] as? Double) * XCTUnwrap(b["step_seconds"] as? Double)
        }
        let vitRows = 4 * 257
        let vit = Self.linear(vitRows, 768, 3 * 768) + Self.linear(vitRows, 768, 768) + 2 * Self.linear(vitRows, 768, 3072)
            + Self.attention(4, 257, 257)
        XCTAssertEqual(try flops("ViT-B/16 block"), 3 * vit, accuracy: 3 * vit * 1e-9)
        let textRows = 4 * 25, imageRows = 4 * 257
        let fusion = 4 * Self.linear(textRows, 768, 768)                                  // self q, k, v, out
            + 2 * Self.linear(textRows, 768, 768) + 2 * Self.linear(imageRows, 768, 768)  // cross q, out; k, v of the image
            + 2 * Self.linear(textRows, 768, 3072) + Self.attention(4, 25, 25) + Self.attention(4, 25, 257)
        XCTAssertEqual(try flops("BERT fusion layer"), 3 * fusion, accuracy: 3 * fusion * 1e-9)
    }
}
