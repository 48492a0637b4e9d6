import ELIPImage
import ELIPModel
import ELIPNN
import ELIPShards
import ELIPTensor
import ELIPText
@testable import ELIPEval
import ELIPTrain
import Foundation
import XCTest

final class VisualizationTests: XCTestCase {
    /// Three stages on 8 patches. Stage 2's position 5 and stage 3's positions 2 and 3 are merged
    /// tokens, not original patches.
    func testKeptPositionsMapBackToOriginalPatches() throws {
        let kept = [[0, 2, 3, 5, 7], [1, 2, 5], [0, 2]]
        let r = try PruningTrace.survivingPatches(keptIndices: kept, patchCount: 8)
        XCTAssertEqual(r.patches, [[0, 2, 3, 5, 7], [2, 3], [2]])
        XCTAssertEqual(r.mergedKept, [false, true, true])
        // Without the merged token at stage 2: positions 0..4 are patches 0, 2, 3, 5, 7.
        let r2 = try PruningTrace.survivingPatches(keptIndices: [[1, 4, 6], [0, 1], [1]], patchCount: 8)
        XCTAssertEqual(r2.patches, [[1, 4, 6], [1, 4], [4]])
        XCTAssertEqual(r2.mergedKept, [false, false, false])
        // Stage 2 sees 4 tokens (3 kept + merged): position 3 is the merged token, 4 is out of range.
        XCTAssertThrowsError(try PruningTrace.survivingPatches(keptIndices: [[1, 4, 6], [4]], patchCount: 8)) {
            XCTAssertTrue("\($0)".contains("stage 2") && "\($0)".contains("position 4"), "\($0)")
        }
        XCTAssertThrowsError(try PruningTrace.survivingPatches(keptIndices: [[3, 1]], patchCount: 8))
    }

    /// The trace of the tiny model: keep counts, survivors nested, and the first selection is the
    /// top-K of the scores shown in the heat map.
    func testTraceOfATinyModel() throws {
        let dir = try EvalFixture.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (_, model) = try EvalFixture.makeRun(in: dir, seed: 9)
        let scene = SyntheticScenes.scene(index: 3, seed: 2, size: 32)
        var px: [Float] = []
        ImageNormalization.append(pixels: scene.pixels, width: 32, height: 32, to: &px)
        let text = try TextBatch(ids: [101, 1037, 2417, 4418], mask: [1, 1, 1, 1], batch: 1, length: 4)
        let trace = try PruningTrace.trace(model: model, image: try Tensor(px, shape: [1, 3, 32, 32]), text: text)
        XCTAssertEqual(trace.grid, 4)
        XCTAssertEqual(trace.keptCounts, [12, 8])
        XCTAssertEqual(trace.beginLayers, [1, 2])
        XCTAssertEqual(trace.firstStageScores.count, 16)
        XCTAssertEqual(trace.survivingPatches[0], RetrievalRecall.topK(trace.firstStageScores, k: 12).sorted())
        XCTAssertTrue(Set(trace.survivingPatches[1]).isSubset(of: Set(trace.survivingPatches[0])))
        XCTAssertEqual(trace.survivingPatches[1].count, 8 - (trace.mergedTokenKept[1] ? 1 : 0))
        XCTAssertFalse(trace.mergedTokenKept[0])
        // Scores are attention probabilities over the 16 patches (plus [CLS], averaged over heads).
        XCTAssertTrue(trace.firstStageScores.allSatisfy { $0 > 0 && $0 < 1 })
        XCTAssertLessThan(trace.firstStageScores.reduce(0, +), 1)
    }

    /// The scoring override of the trace and the overlap the analysis reports: comparing a mode
    /// with itself gives full overlap; inline scoring selects the top-K of its own scores.
    func testScoringOverrideAndOverlap() throws {
        let dir = try EvalFixture.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (_, model) = try EvalFixture.makeRun(in: dir, seed: 9)
        XCTAssertEqual(model.config.prune?.scoring, .lookAhead)
        let scene = SyntheticScenes.scene(index: 3, seed: 2, size: 32)
        var px: [Float] = []
        ImageNormalization.append(pixels: scene.pixels, width: 32, height: 32, to: &px)
        let text = try TextBatch(ids: [101, 1037, 2417, 4418], mask: [1, 1, 1, 1], batch: 1, length: 4)
        let image = try Tensor(px, shape: [1, 3, 32, 32])
        let inline = try PruningTrace.trace(model: model, image: image, text: text, scoring: .inline)
        XCTAssertEqual(inline.survivingPatches[0], RetrievalRecall.topK(inline.firstStageScores, k: 12).sorted())
        let sample = (image: try RGBImage(width: 32, height: 32, pixels: scene.pixels), caption: "a red circle",
                      mask: try RGBImage(width: 32, height: 32, fill: .black))
        let tokenizer = try BertTokenizer(vocabulary: Vocabulary(tokens: ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "circle"]))
        let same = try PruningAnalysis.run(model: model, tokenizer: tokenizer, samples: [sample], compareScoring: .lookAhead)
        XCTAssertEqual(same.survivingOverlapWithOtherScoring, [1, 1])
        let other = try PruningAnalysis.run(model: model, tokenizer: tokenizer, samples: [sample], compareScoring: .inline)
        XCTAssertEqual(other.otherScoring, "inline")
        XCTAssertEqual(other.survivingOverlapWithOtherScoring?.count, 2)
        XCTAssertTrue(other.survivingOverlapWithOtherScoring!.allSatisfy { $0 >= 0 && $0 <= 1 })
    }

    func handMadeTrace() -> PruningTrace {
        PruningTrace(grid: 4, survivingPatches: [Array(0..<12), [0, 1, 2, 5, 6, 9, 10]], mergedTokenKept: [false, true],
                     keptCounts: [12, 8], firstStageScores: (0..<16).map { Float($0) }, beginLayers: [1, 2])
    }

    /// The picture decodes back from PNG with the layout's size; a kept patch is brighter than a
    /// dimmed one; the heat map is bright where the score is high.
    func testPictureThroughPNG() throws {
        let image = try RGBImage(width: 32, height: 32, fill: RGB(200, 180, 160))
        let trace = handMadeTrace()
        let picture = try PruningPicture.render(image: image, trace: trace, title: "a test")
        let layout = PruningPicture.layout(imageRes: 32, stages: 2, title: "a test")
        XCTAssertEqual(layout.panelSize, 256)
        XCTAssertEqual(layout.panels.count, 4)
        let decoded = try PNG.decode(PNG.encode(picture))
        XCTAssertEqual(decoded.width, layout.width)
        XCTAssertEqual(decoded.height, layout.height)
        XCTAssertEqual(decoded, picture)
        func luminance(_ c: RGB?) -> Double {
            guard let c else { return -1 }
            return 0.299 * Double(c.r) + 0.587 * Double(c.g) + 0.114 * Double(c.b)
        }
        // Stage 2 panel: patch 0 (top-left) kept, patch 15 (bottom-right) merged at stage 1.
        let p = layout.panels[2], cell = layout.panelSize / 4
        let kept = decoded.pixel(x: p.x + cell / 2, y: p.y + cell / 2)
        let dimmed = decoded.pixel(x: p.x + 3 * cell + cell / 2, y: p.y + 3 * cell + cell / 2)
        XCTAssertEqual(kept, RGB(200, 180, 160))
        XCTAssertGreaterThan(luminance(kept), 2 * luminance(dimmed))
        // Patch 3 (top-right) survived stage 1 but not stage 2.
        XCTAssertEqual(decoded.pixel(x: layout.panels[1].x + 3 * cell + 4, y: p.y + 4), RGB(200, 180, 160))
        XCTAssertLessThan(luminance(decoded.pixel(x: p.x + 3 * cell + 4, y: p.y + 4)), luminance(kept) / 2)
        // Stage 1 keeps patches 0..<12: the border above the merged bottom row is outlined.
        XCTAssertEqual(decoded.pixel(x: layout.panels[1].x + cell / 2, y: layout.panels[1].y + 3 * cell - 1), PruningPicture.outline)
        // Heat map: the score grows with the patch index.
        let h = layout.panels[3]
        XCTAssertGreaterThan(luminance(decoded.pixel(x: h.x + 3 * cell + 4, y: h.y + 3 * cell + 4)),
                             luminance(decoded.pixel(x: h.x + 4, y: h.y + 4)) + 50)
        // Title text is drawn in ink at the top-left margin.
        let titleInk = (layout.titleY..<(layout.titleY + 16)).flatMap { y in (16..<40).compactMap { decoded.pixel(x: $0, y: y) } }
        XCTAssertTrue(titleInk.contains(PruningPicture.ink))
    }

    /// Borders between kept and merged patches are drawn on the kept side only.
    func testOutlineOfKeptPatches() throws {
        var img = try RGBImage(width: 16, height: 16)
        PruningPicture.outlineKept([0, 1], grid: 2, in: &img, x: 0, y: 0, panelSize: 16, width: 2)
        let o = PruningPicture.outline
        XCTAssertEqual(img.pixel(x: 3, y: 7), o)     // bottom edge of patch 0 (patch 2 merged)
        XCTAssertEqual(img.pixel(x: 12, y: 6), o)    // bottom edge of patch 1 (patch 3 merged)
        XCTAssertEqual(img.pixel(x: 7, y: 3), .black)  // patches 0 and 1 are both kept: no border
        XCTAssertEqual(img.pixel(x: 3, y: 8), .black)  // merged side stays untouched
        XCTAssertEqual(img.pixel(x: 0, y: 0), .black)  // no border along the panel's edge
    }

    func testLabelsAndPanelScale() {
        let labels = PruningPicture.labels(handMadeTrace())
        XCTAssertEqual(labels.count, 4)
        XCTAssertEqual(labels[1][0], "stage 1: 12/16")
        XCTAssertEqual(labels[2][0], "stage 2: 7/16")
        XCTAssertTrue(labels[2][1].contains("merged"))
        XCTAssertEqual(PruningPicture.panelScale(imageRes: 256), 1)
        XCTAssertEqual(PruningPicture.panelScale(imageRes: 32), 8)
        XCTAssertEqual(PruningPicture.panelScale(imageRes: 384), 1)
        // The longest label fits under a 256-pixel panel at text scale 2.
        XCTAssertLessThanOrEqual(BitmapFont.width(of: "stage 3: 102/256", scale: 2), 256)
    }

    func testRenderRejectsInconsistentInput() throws {
        let wide = try RGBImage(width: 32, height: 16)
        XCTAssertThrowsError(try PruningPicture.render(image: wide, trace: handMadeTrace(), title: "x"))
        let bad = PruningTrace(grid: 4, survivingPatches: [[0]], mergedTokenKept: [false], keptCounts: [1],
                               firstStageScores: [1, 2], beginLayers: [1])
        XCTAssertThrowsError(try PruningPicture.render(image: try RGBImage(width: 32, height: 32), trace: bad, title: "x"))
    }

    // MARK: training curves

    func record(_ step: Int, loss: Double, skipped: Bool = false) -> MetricsRecord {
        MetricsRecord(step: step, epoch: 0, losses: ["mlm": loss, "ita": loss / 2, "itm": 0.7], values: ["alpha": 0.4, "temp": 0.07],
                      lr: 1e-4 * Double(step), gradNorm: 1, imagesPerSecond: 10 + Double(step), times: PhaseTimes(), keptTokens: [230, 166, 102],
                      residentMB: 100, skipped: skipped, allReduceHiddenShare: 0)
    }

    func testMetricsReadingToleratesDamageAndResumes() throws {
        let dir = try EvalFixture.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("metrics.jsonl")
        let enc = JSONEncoder()
        var text = ""
        for r in [record(1, loss: 9), record(2, loss: 8), record(3, loss: 7), record(2, loss: 6)] {
            text += String(decoding: try enc.encode(r), as: UTF8.self) + "\n"
        }
        text += "{\"step\": 4, \"loss_ml"  // torn last line
        try text.write(to: url, atomically: true, encoding: .utf8)
        let (records, warnings) = try TrainingPlot.readMetrics(url)
        XCTAssertEqual(records.map(\.step), [1, 2, 3])
        XCTAssertEqual(records[1].losses["mlm"], 6)  // the later line of a repeated step wins
        XCTAssertEqual(warnings.count, 1)
        XCTAssertTrue(warnings[0].contains("metrics.jsonl:5"), warnings[0])
        XCTAssertThrowsError(try TrainingPlot.readMetrics(dir.appendingPathComponent("none.jsonl")))
    }

    func testTrainingPlotDrawsEveryCurve() throws {
        let records = (1...50).map { record($0, loss: 10 - Double($0) / 10, skipped: $0 == 20) }
        let charts = TrainingPlot.charts(records)
        XCTAssertEqual(charts.map(\.title), ["loss", "learning rate", "throughput (images/s, all ranks)"])
        XCTAssertEqual(charts[0].series.map(\.name), ["total", "ita", "itm", "mlm"], "one curve per loss name")
        XCTAssertTrue(charts[0].series[1].ys[19].isNaN)  // skipped step left out
        let image = try TrainingPlot.render(records, title: "run test")
        let decoded = try PNG.decode(PNG.encode(image))
        XCTAssertEqual(decoded.width, 1000)
        let colours = Set(stride(from: 0, to: decoded.pixels.count, by: 3).map {
            RGB(decoded.pixels[$0], decoded.pixels[$0 + 1], decoded.pixels[$0 + 2])
        })
        let c = TrainingPlot.colors
        for colour in Array(TrainingPlot.lossPalette.prefix(3)) + [c.total, c.lr, c.speed] {
            XCTAssertTrue(colours.contains(colour), "\(colour) not drawn")
        }
    }

    /// metrics.jsonl: losses and model values are name -> value maps; a non-finite value is
    /// written as null (the line stays valid JSON) and read back as NaN; files written before
    /// the maps (loss_mlm, ..., alpha, temp at the top level) still read.
    func testMetricsRecordsAreGenericAndSurviveNonFiniteValues() throws {
        var r = record(3, loss: .nan)
        r.gradNorm = .infinity
        let data = try JSONEncoder().encode(r)
        let json = String(decoding: data, as: UTF8.self)
        XCTAssertTrue(json.contains("\"mlm\":null"), json)
        XCTAssertTrue(json.contains("\"grad_norm\":null"), json)
        let back = try JSONDecoder().decode(MetricsRecord.self, from: data)
        XCTAssertTrue(back.losses["mlm"]!.isNaN && back.gradNorm.isNaN)
        XCTAssertEqual(back.losses["itm"], 0.7)
        XCTAssertEqual(back.values["temp"], 0.07)
        let legacy = #"{"step": 7, "epoch": 0, "loss_mlm": 5, "loss_ita": 2, "loss_itm": 0.6, "lr": 0.001, "alpha": 0.4, "temp": 0.07, "grad_norm": 1, "images_per_s": 3, "seconds": {"data": 0, "forward": 1, "backward": 1, "communication": 0, "optimizer": 0}, "kept_tokens": [12], "rss_mb": 10, "skipped": false, "allreduce_hidden_share": 0}"#
        let old = try JSONDecoder().decode(MetricsRecord.self, from: Data(legacy.utf8))
        XCTAssertEqual(old.losses, ["mlm": 5, "ita": 2, "itm": 0.6])
        XCTAssertEqual(old.values, ["alpha": 0.4, "temp": 0.07])
    }
}
