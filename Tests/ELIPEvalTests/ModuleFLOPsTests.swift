import ELIPEval
import ELIPImage
import ELIPTensor
import XCTest

/// Issue 18 part 2: a step's GEMM FLOPs by section and module, forward and backward.
final class ModuleFLOPsTests: XCTestCase {
    override func tearDown() { StepProfiler.stop() }

    private func matrix(_ rows: Int, _ cols: Int, seed: UInt64, grad: Bool) throws -> Tensor {
        var g = SeededGenerator(seed: seed)
        let t = try Tensor((0..<(rows * cols)).map { _ in g.nextNormal() }, shape: [rows, cols])
        return grad ? t.requiringGrad() : t
    }

    /// Forward GEMMs count for the innermost section they ran in; backward GEMMs for the section
    /// of the op they differentiate (2 m k n forward, 4 m k n backward when both inputs need
    /// gradients).
    func testProfilerChargesEachSectionItsForwardAndBackwardGEMMs() throws {
        let (m, k, n) = (6, 8, 10)
        let mkn = Double(2 * m * k * n)
        let a = try matrix(m, k, seed: 1, grad: true), w = try matrix(k, n, seed: 2, grad: true)
        let v = try matrix(k, n, seed: 3, grad: false)
        StepProfiler.start()
        let text = try StepProfiler.section("text") { try a.matmul(w) }  // forward mkn, backward 2 mkn
        try StepProfiler.section("vision") {
            _ = try Autograd.noGrad { try StepProfiler.section("look-ahead") { try a.matmul(v) } }  // no backward
        }
        _ = try StepProfiler.section("momentum") { try StepProfiler.section("vision") { try Autograd.noGrad { try a.matmul(v) } } }
        StepProfiler.begin("fusion")
        let fused = try a.matmul(v)  // only a needs a gradient: backward mkn
        StepProfiler.end()
        let loss = try (text.sum() + fused.sum())
        StepProfiler.begin("backward")
        try Autograd.backward(from: loss)
        StepProfiler.end()
        StepProfiler.stop()
        XCTAssertEqual(StepProfiler.sectionFlops["text"], mkn)
        XCTAssertEqual(StepProfiler.sectionFlops["vision/look-ahead"], mkn)
        XCTAssertNil(StepProfiler.sectionFlops["vision"], "nested GEMMs count for the nested section only")
        XCTAssertEqual(StepProfiler.sectionFlops["momentum/vision"], mkn)
        XCTAssertEqual(StepProfiler.sectionFlops["fusion"], mkn)
        XCTAssertEqual(StepProfiler.sectionFlops["backward"], 3 * mkn)
        XCTAssertEqual(StepProfiler.backwardFlops, ["text": 2 * mkn, "fusion": mkn])
        XCTAssertEqual(StepProfiler.sectionFlops.values.reduce(0, +), GEMMProfiler.flops)

        let modules = ModuleFLOPs(sectionFlops: StepProfiler.sectionFlops, backwardFlops: StepProfiler.backwardFlops)
        XCTAssertEqual(modules.forward, ["text": mkn, "vision": 2 * mkn, "fusion": mkn])
        XCTAssertEqual(modules.backward, ["text": 2 * mkn, "fusion": mkn])
        XCTAssertEqual(modules.scoring, mkn)
        XCTAssertEqual(modules.momentum, mkn)
        XCTAssertEqual(modules.forwardShare("vision"), 0.5)
        XCTAssertEqual(modules.trainingShare("text"), 3.0 / 7.0, accuracy: 1e-12)
        XCTAssertEqual(modules.trainingShare("other"), 0)
        XCTAssertEqual(ModuleFLOPs.modules.map(modules.trainingShare).reduce(0, +), 1, accuracy: 1e-12)
    }

    func testSectionToModule() {
        XCTAssertEqual(ModuleFLOPs.module(ofSection: "vision/look-ahead"), "vision")
        XCTAssertEqual(ModuleFLOPs.module(ofSection: "momentum/text"), "text")
        XCTAssertEqual(ModuleFLOPs.module(ofSection: "fusion"), "fusion")
        XCTAssertEqual(ModuleFLOPs.module(ofSection: "itc"), "other")
        XCTAssertEqual(ModuleFLOPs.module(ofSection: ""), "other")
        // The bench's own phases are not forward work.
        let m = ModuleFLOPs(sectionFlops: ["backward": 5, "optimizer": 1, "text": 2], backwardFlops: [:])
        XCTAssertEqual(m.forwardTotal, 2)
        // ALBEF's momentum fusion pass (MLM distillation) is fusion work by the momentum model.
        let teacher = ModuleFLOPs(sectionFlops: ["fusion/teacher": 4, "momentum/vision": 3, "fusion": 1], backwardFlops: [:])
        XCTAssertEqual(teacher.forward["fusion"], 5)
        XCTAssertEqual(teacher.momentum, 7)
        let med = ModuleFLOPs.median([ModuleFLOPs(sectionFlops: ["text": 1], backwardFlops: [:]), ModuleFLOPs(sectionFlops: ["text": 3], backwardFlops: [:]),
                                      ModuleFLOPs(sectionFlops: ["text": 10, "fusion": 2], backwardFlops: [:])])
        XCTAssertEqual(med.forward["text"], 3)
        XCTAssertEqual(med.forward["fusion"], 0)
    }

    /// The bars stack bottom-up in segment order, each as tall as its share.
    func testStackedBarsAreAsTallAsTheirShares() throws {
        let red = RGB(200, 0, 0), blue = RGB(0, 0, 200)
        let chart = StackedBarChart(title: "t", bars: [("a", [0.25, 0.75]), ("b", [1, 0])], segments: [("red", red), ("blue", blue)])
        let image = try chart.render(width: 400, height: 300)
        XCTAssertGreaterThanOrEqual(image.width, 400)
        XCTAssertEqual(image.height, 300)
        // Count red and blue pixels in the first bar's column.
        func column(_ x: Int) -> (red: Int, blue: Int) {
            var r = 0, b = 0
            for y in 0..<image.height {
                if image.pixel(x: x, y: y) == red { r += 1 } else if image.pixel(x: x, y: y) == blue { b += 1 }
            }
            return (r, b)
        }
        let firstBar = (0..<image.width).first { column($0).red > 0 }!
        let c = column(firstBar)
        XCTAssertEqual(Double(c.blue) / Double(c.red), 3, accuracy: 0.1)
        // The second bar is all red, as tall as the first bar's two segments.
        let secondBar = (firstBar + 1..<image.width).first { column($0).red > 0 && column($0).blue == 0 }!
        XCTAssertEqual(column(secondBar).red, c.red + c.blue, accuracy: 2)
    }
}
