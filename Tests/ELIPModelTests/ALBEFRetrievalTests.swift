import ELIPConfig
import ELIPEncoders
import ELIPModel
import ELIPNN
import ELIPObjectives
import ELIPTensor
import Foundation
import Safetensors
import XCTest

/// The retrieval task model against the official step (../shared/reference/albef-retrieval-tiny),
/// its checkpoint loading from a pre-training state dict, its id-aware ITC and ITM negatives
/// and its input checks.
final class ALBEFRetrievalTests: XCTestCase {
    func testStepMatchesOfficialImplementation() throws {
        let dir = try SharedData.path("reference/albef-retrieval-tiny")
        XCTAssertEqual(try ModelRegistry.referenceKind(dir).name, "albef-retrieval")
        let output = try ReferenceStep.run(caseDirectory: dir)
        let expected = try SafetensorsFile(path: (dir as NSString).appendingPathComponent("expected.safetensors"))
        let results = try ReferenceStep.compare(output, expected: expected)
        XCTAssertEqual(Set(results.map(\.group)), ["losses", "activations", "evaluation", "evaluation scores", "recall", "gradients",
                                                   ReferenceStep.keyBiasGroup, "momentum (after EMA)", "state"])
        for r in results { XCTAssertTrue(r.passed, "\(r.group): \(r.worstName) error \(r.worstError) > \(r.tolerance)") }
        for n in expected.names { XCTAssertTrue(output.floats[n] != nil || output.ints[n] != nil, n) }
        XCTAssertGreaterThan(expected.names.filter { $0.hasPrefix("grad.") }.count, 400)
        // The official itm_eval's dict, as eval_result.json holds it.
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir).appendingPathComponent("eval_result.json"))) as! [String: Double]
        for (key, value) in json { XCTAssertEqual(output.floats["eval.\(key)"]?.values, [Float(value)], key) }
        XCTAssertEqual(output.ints["idx_queue"]?.values, try expected.int64s("idx_queue"))
    }

    private func tinyRetrieval(imageRes: Int, queueSize: Int = 12, distill: Bool = true) throws -> ALBEFRetrievalConfig {
        let p = try tinyConfig(imageRes: 32, prune: nil)
        var c = ALBEFRetrievalConfig()
        c.imageRes = imageRes
        c.vision = p.vision
        c.bert = p.bert
        c.embedDim = p.embedDim
        c.queueSize = queueSize
        c.distill = distill
        c.kTest = 3
        try c.validate(file: "tiny")
        return c
    }

    private func writePretrainingCheckpoint(pointer: Int) throws -> (ALBEFModel, String) {
        let pretrain = try ALBEFModel(config: tinyConfig(imageRes: 32, prune: nil))
        try pretrain.initialiseRandomly(seed: 3)
        pretrain.momentumParameters.initialise(seed: 9)  // momentum differs from online
        pretrain.queue.pointer = pointer
        try pretrain.temp.assign([0.05])
        var w = SafetensorsWriter()
        try StateDict.add(pretrain.stateLayout, to: &w)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("elip-retrieval-load-\(UUID().uuidString).safetensors").path
        try w.write(to: path)
        return (pretrain, path)
    }

    /// Retrieval.py's loading of an ALBEF pre-training checkpoint: `bert.` dropped, both
    /// position grids resized 4x4 -> 6x6, encoders, projections, itm_head, temp, queues and
    /// pointer loaded, MLM heads ignored, idx_queue left empty (-100).
    func testLoadsAPretrainingCheckpoint() throws {
        let (pretrain, path) = try writePretrainingCheckpoint(pointer: 5)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let model = try ALBEFRetrievalModel(config: tinyRetrieval(imageRes: 48))
        try model.initialiseRandomly(seed: 5)
        let plan = try model.loadPretrainingCheckpoint(SafetensorsFile(path: path))
        XCTAssertEqual(plan.keptAtInit, ["idx_queue"])
        XCTAssertTrue(plan.ignoredSourceKeys.contains("text_encoder.cls.predictions.bias"), "\(plan.ignoredSourceKeys)")
        XCTAssertEqual(model.queue.idQueue, [Int](repeating: -100, count: 12))
        XCTAssertEqual(model.queue.pointer, 5)
        XCTAssertEqual(model.temp.scalar, 0.05)
        XCTAssertEqual(model.queue.imageQueue.toArray(), pretrain.queue.imageQueue.toArray())
        XCTAssertEqual(model.queue.textQueue.toArray(), pretrain.queue.textQueue.toArray())
        for (mine, theirs) in [("text_encoder.encoder.layer.3.crossattention.self.key.weight", "text_encoder.bert.encoder.layer.3.crossattention.self.key.weight"),
                               ("itm_head.weight", "itm_head.weight"), ("vision_proj.bias", "vision_proj.bias")] {
            XCTAssertEqual(model.parameters.tensor(mine)!.toArray(), pretrain.parameters.tensor(theirs)!.toArray(), mine)
        }
        XCTAssertEqual(model.momentumParameters.tensor("text_proj_m.weight")!.toArray(), pretrain.momentumParameters.tensor("text_proj_m.weight")!.toArray())
        XCTAssertEqual(model.momentumParameters.tensor("text_encoder_m.encoder.layer.0.output.dense.weight")!.toArray(),
                       pretrain.momentumParameters.tensor("text_encoder_m.bert.encoder.layer.0.output.dense.weight")!.toArray())
        for name in ["visual_encoder.pos_embed", "visual_encoder_m.pos_embed"] {
            let source = (pretrain.parameters.tensor(name) ?? pretrain.momentumParameters.tensor(name))!
            let resized = try PretrainedImport.resizePositionEmbedding(source.toArray(), shape: source.shape, toTokens: 37)
            XCTAssertEqual((model.parameters.tensor(name) ?? model.momentumParameters.tensor(name))!.toArray(), resized, name)
        }
        // As load_state_dict: the queue sizes of checkpoint and config must agree.
        let other = try ALBEFRetrievalModel(config: tinyRetrieval(imageRes: 32, queueSize: 10))
        XCTAssertThrowsError(try other.loadPretrainingCheckpoint(SafetensorsFile(path: path))) {
            XCTAssertTrue("\($0)".contains("size mismatch for") && "\($0)".contains("_queue"), "\($0)")
        }
    }

    /// idx_queue is saved as int64 [1, Q] and read back; a value that is neither an image id nor
    /// -100 is an error naming the tensor.
    func testIdQueueRoundTripAndBadValues() throws {
        let model = try ALBEFRetrievalModel(config: tinyRetrieval(imageRes: 32))
        try model.initialiseRandomly(seed: 1)
        model.queue.idQueue = Array(0..<12).map { $0 % 3 == 0 ? -100 : $0 * 7 }
        model.queue.pointer = 4
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("elip-idq-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var w = SafetensorsWriter()
        try StateDict.add(model.stateLayout, to: &w)
        let good = dir.appendingPathComponent("good.safetensors").path
        try w.write(to: good)
        let copy = try ALBEFRetrievalModel(config: tinyRetrieval(imageRes: 32))
        try StateDict.load(copy.stateLayout, from: SafetensorsFile(path: good))
        XCTAssertEqual(copy.queue.idQueue, model.queue.idQueue)
        XCTAssertEqual(copy.queue.pointer, 4)
        XCTAssertEqual(try SafetensorsFile(path: good).entry("idx_queue").shape, [1, 12])

        // Only the id queue, so that the file needs nothing else.
        var idQueueOnly = StateDictLayout()
        idQueueOnly.integerBuffers = copy.stateLayout.integerBuffers
        for (values, shape, message) in [([Int64](repeating: -5, count: 12), [1, 12], "value -5 for idx_queue"),
                                         ([Int64](repeating: 1, count: 10), [1, 10], "shape [1, 10], expected [1, 12]")] {
            var bad = SafetensorsWriter()
            try bad.add("idx_queue", int64s: values, shape: shape)
            let path = dir.appendingPathComponent("bad.safetensors").path
            try bad.write(to: path)
            XCTAssertThrowsError(try StateDict.load(idQueueOnly, from: SafetensorsFile(path: path))) {
                XCTAssertTrue("\($0)".contains(message), "\($0)")
            }
        }
        XCTAssertEqual(copy.queue.idQueue, model.queue.idQueue)  // unchanged by the failed loads
    }

    private func batch(_ n: Int, seed: UInt64, ids: [Int]?) throws -> ImageTextBatch {
        var g = SeededGenerator(seed: seed)
        let images = try Tensor((0..<(n * 3 * 32 * 32)).map { _ in g.nextUniform() - 0.5 }, shape: [n, 3, 32, 32])
        var tokens: [Int] = [], mask: [Int] = []
        for b in 0..<n {
            let len = 3 + b % 2
            for j in 0..<4 {
                tokens.append(j == 0 ? 101 : (j < len ? 110 + (b * 5 + j * 3) % 80 : 0))
                mask.append(j < len ? 1 : 0)
            }
        }
        return ImageTextBatch(images: images, text: try TextBatch(ids: tokens, mask: mask, batch: n, length: 4), labels: ids)
    }

    /// Image ids are required; replayed negatives of the caption's own id and a batch of one id
    /// (no negative left to draw) are errors.
    func testInputChecks() throws {
        let model = try ALBEFRetrievalModel(config: tinyRetrieval(imageRes: 32))
        try model.initialiseRandomly(seed: 1)
        var context = StepContext(seed: 0, dropout: false)
        for ids in [nil, [1, 2], [1, 2, -3]] as [[Int]?] {
            XCTAssertThrowsError(try model.step(batch(3, seed: 1, ids: ids), context: &context)) {
                XCTAssertTrue("\($0)".contains("image id"), "\($0)")
            }
        }
        XCTAssertThrowsError(try model.step(batch(3, seed: 1, ids: [4, 4, 4]), context: &context)) {
            XCTAssertTrue("\($0)".contains("shares its id"), "\($0)")
        }
        var replay = StepContext(seed: 0, dropout: false)
        replay.recorded.ints["itm_neg_image_index"] = [2, 2, 0]
        replay.recorded.ints["itm_neg_text_index"] = [1, 2, 0]  // text 1 has image 0's id
        XCTAssertThrowsError(try model.step(batch(3, seed: 1, ids: [8, 8, 9]), context: &replay)) {
            XCTAssertTrue("\($0)".contains("own id 8"), "\($0)")
        }
    }

    /// Without distillation (alpha 0) and with momentum = online, the ITC loss is the soft
    /// cross-entropy against the id-aware positives over [batch; queue], computed here from the
    /// step's features and the queue before the step; drawn ITM negatives never share the row's
    /// id; the enqueue writes the features and ids at the pointer, wrapping.
    func testIdAwareContrastiveLossNegativesAndEnqueue() throws {
        let model = try ALBEFRetrievalModel(config: tinyRetrieval(imageRes: 32, distill: false))
        try model.initialiseRandomly(seed: 2)
        let ids = [10, 11, 10, 12, 13]
        model.queue.idQueue = [-100, 12, 3, -100, 10, 10, 5, -100, -100, 11, 7, -100]
        model.queue.pointer = 9
        let queueBefore = (model.queue.imageQueue.toArray(), model.queue.textQueue.toArray(), model.queue.idQueue!)
        let q = 12, e = 8, n = ids.count
        for seed in 0..<6 as Range<UInt64> {
            model.queue.idQueue = queueBefore.2
            model.queue.pointer = 9
            try model.queue.imageQueue.assign(queueBefore.0)
            try model.queue.textQueue.assign(queueBefore.1)
            var context = StepContext(seed: seed, dropout: false)
            let out = try model.step(batch(n, seed: 4, ids: ids), context: &context)
            XCTAssertEqual(out.scalars["alpha"], 0)
            let img = try XCTUnwrap(out.tensors["image_feat"]).toArray(), txt = try XCTUnwrap(out.tensors["text_feat"]).toArray()
            let candidates = ids + queueBefore.2, t = Double(model.temp.scalar)
            func loss(_ rows: [Float], _ batchCols: [Float], _ queue: [Float]) -> Double {
                var total = 0.0
                for b in 0..<n {
                    let sims: [Double] = (0..<(n + q)).map { j in
                        (0..<e).reduce(0.0) { s, d in
                            s + Double(rows[b * e + d]) * Double(j < n ? batchCols[j * e + d] : queue[d * q + j - n])
                        } / t
                    }
                    let m = sims.max()!, lse = m + log(sims.reduce(0.0) { $0 + exp($1 - m) })
                    let pos = candidates.indices.filter { candidates[$0] == ids[b] }
                    total -= pos.reduce(0.0) { $0 + (sims[$1] - lse) } / Double(pos.count)
                }
                return total / Double(n)
            }
            let expected = (loss(img, txt, queueBefore.1) + loss(txt, img, queueBefore.0)) / 2
            XCTAssertEqual(Double(try XCTUnwrap(out.losses["ita"]).scalar), expected, accuracy: 1e-4 * expected)
            // Enqueue: columns 9, 10, 11, 0, 1 now hold this batch (momentum = online features).
            let iq = model.queue.imageQueue.toArray()
            for (s, col) in [9, 10, 11, 0, 1].enumerated() {
                XCTAssertEqual(model.queue.idQueue![col], ids[s])
                for d in 0..<e { XCTAssertEqual(iq[d * q + col], img[s * e + d], accuracy: 1e-5) }
            }
            XCTAssertEqual(model.queue.pointer, 2)
            XCTAssertEqual(model.queue.idQueue![2], 3)  // untouched
            XCTAssertTrue(try XCTUnwrap(out.losses["itm"]).scalar.isFinite)
        }
        // The drawn negatives exclude every same-id candidate (rows 0 and 2 share id 10).
        let sim = try Tensor([Float](repeating: 0, count: n * n), shape: [n, n])
        let w = try HardNegatives.idAwareWeights(sim, candidateIds: ids, rowOffset: 0).toArray()
        for b in 0..<n {
            for j in 0..<n { XCTAssertEqual(w[b * n + j] == 0, ids[j] == ids[b], "row \(b) column \(j)") }
        }
        for seed in 0..<20 as Range<UInt64> {
            let drawn = HardNegatives.draw(weights: try HardNegatives.idAwareWeights(sim, candidateIds: ids, rowOffset: 0), rowOffset: 0, seed: seed, stream: 1)
            for (b, j) in drawn.enumerated() { XCTAssertNotEqual(ids[j], ids[b]) }
        }
    }

    /// Under several ranks the enqueue takes every rank's momentum features and ids in rank
    /// order; ids beyond float32's exact range (2^24) arrive intact. The exchange here plays
    /// rank 0 of 2 whose peer holds the same batch.
    func testEnqueueGathersEveryRanksFeaturesAndIds() throws {
        final class MirroredPeer: FeatureExchange {
            let rank = 0, worldSize = 2
            func allGather(_ local: [Float]) throws -> [Float] { local + local }
            func allReduceSum(_ values: [Float]) throws -> [Float] { values.map { $0 * 2 } }
        }
        let model = try ALBEFRetrievalModel(config: tinyRetrieval(imageRes: 32))
        try model.initialiseRandomly(seed: 2)
        model.queue.pointer = 10
        let ids = [20_000_001, 20_000_003, 5]
        var context = StepContext(seed: 1, dropout: false)
        context.exchange = MirroredPeer()
        let out = try model.step(batch(3, seed: 6, ids: ids), context: &context)
        XCTAssertEqual(model.queue.pointer, 4)  // 10 + 2 x 3 mod 12
        XCTAssertEqual(model.queue.idQueue, [ids[2], ids[0], ids[1], ids[2], -100, -100, -100, -100, -100, -100, ids[0], ids[1]])
        let img = try XCTUnwrap(out.tensors["image_feat"]).toArray(), iq = model.queue.imageQueue.toArray()
        for (s, col) in [10, 11, 0, 1, 2, 3].enumerated() {
            for d in 0..<8 { XCTAssertEqual(iq[d * 12 + col], img[(s % 3) * 8 + d], accuracy: 1e-4) }
        }
    }

    /// Retrieval.yaml's model keys: values read with their ranges; a vision_width other than
    /// the ViT's, an out-of-range key or a misspelt key is an error naming it.
    func testConfigKeys() throws {
        func read(_ yaml: String) throws -> ALBEFRetrievalConfig {
            let root = try ConfigSection.parse(yaml, source: "Retrieval.yaml")
            let c = try ALBEFRetrievalConfig.read(root, location: ConfigLocation(searchFolders: []))
            try root.finish()
            return c
        }
        let c = try read("{image_res: 64, queue_size: 24, embed_dim: 12, temp: 0.05, k_test: 7, alpha: 0.3, distill: false, warm_up: false, momentum: 0.9, vision_width: 768}")
        XCTAssertEqual([c.imageRes, c.queueSize, c.embedDim, c.kTest], [64, 24, 12, 7])
        XCTAssertEqual([c.temp, c.alpha, c.momentum], [0.05, 0.3, 0.9])
        XCTAssertFalse(c.distill)
        XCTAssertFalse(c.warmUp)
        for (yaml, key) in [("{vision_width: 32}", "vision_width"), ("{queue_size: 0}", "queue_size"), ("{k_test: -1}", "k_test"),
                            ("{temp: 0}", "temp"), ("{quue_size: 8}", "quue_size")] {
            XCTAssertThrowsError(try read(yaml), yaml) { XCTAssertTrue("\($0)".contains(key), "\($0)") }
        }
    }

    /// A damaged copy of the reference case is an error naming the file and the tensor: a
    /// negative image id, a caption of the evaluation split without a valid image, a recorded
    /// ITM negative of the caption's own image.
    func testDamagedReferenceCaseIsAClearError() throws {
        let dir = try SharedData.path("reference/albef-retrieval-tiny")
        let fm = FileManager.default
        let tmp = fm.temporaryDirectory.appendingPathComponent("elip-retrieval-case-\(UUID().uuidString)")
        try fm.createDirectory(at: tmp, withIntermediateDirectories: true)
        defer { try? fm.removeItem(at: tmp) }
        for f in ["Retrieval.yaml", "config_bert.json", "weights.safetensors", "expected.safetensors"] {
            try fm.createSymbolicLink(atPath: tmp.appendingPathComponent(f).path, withDestinationPath: (dir as NSString).appendingPathComponent(f))
        }
        let batch = try SafetensorsFile(path: (dir as NSString).appendingPathComponent("batch.safetensors"))
        let idx = try batch.int64s("idx")
        let sameId = try XCTUnwrap(idx.indices.first { j in idx.indices.contains { $0 != j && idx[$0] == idx[j] } })
        let partner = idx.indices.first { $0 != sameId && idx[$0] == idx[sameId] }!
        var negText = try batch.int64s("itm_neg_text_index")
        negText[sameId] = Int64(partner)
        for (name, values, message) in [("idx", [-1] + idx.dropFirst(), "idx holds -1"),
                                         ("eval.txt2img", [99] + (try batch.int64s("eval.txt2img")).dropFirst(), "eval.txt2img"),
                                         ("itm_neg_text_index", negText, "own id \(idx[sameId])")] {
            var w = SafetensorsWriter()
            for e in batch.entries {
                if e.name == name {
                    try w.add(e.name, int64s: values, shape: e.shape)
                } else if e.dtype.isInteger {
                    try w.add(e.name, int64s: batch.int64s(e.name), shape: e.shape)
                } else {
                    try w.add(e.name, floats: batch.floats(e.name), shape: e.shape)
                }
            }
            try w.write(to: tmp.appendingPathComponent("batch.safetensors").path)
            XCTAssertThrowsError(try ReferenceStep.run(caseDirectory: tmp.path), name) {
                XCTAssertTrue("\($0)".contains(message), "\($0)")
            }
        }
    }

    /// A training step (dropout on, negatives drawn, warm-up alpha) is finite, reaches temp and
    /// every parameter, and repeats bitwise from the same weights, queues and seed.
    func testTrainingStepIsDeterministicAndReachesEveryParameter() throws {
        func run() throws -> ([Float], [Float], [Int]) {
            let model = try ALBEFRetrievalModel(config: tinyRetrieval(imageRes: 32))
            try model.initialiseRandomly(seed: 11)
            var context = StepContext(seed: 5, dropout: true)
            context.progress = TrainingProgress(epoch: 0, iteration: 3, iterationsPerEpoch: 6)
            model.parameters.zeroGradients()
            let out = try model.step(batch(4, seed: 8, ids: [1, 2, 1, 3]), context: &context)
            XCTAssertEqual(try XCTUnwrap(out.scalars["alpha"]), 0.2, accuracy: 1e-7)  // 0.4 x 3/6
            try Autograd.backward(from: out.total)
            let grads = model.parameters.tensors.flatMap { $0.grad?.toArray() ?? [] }
            XCTAssertEqual(grads.count, model.parameters.entries.reduce(0) { $0 + $1.count })
            XCTAssertTrue(grads.allSatisfy(\.isFinite))
            XCTAssertNotEqual(model.temp.grad?.toArray().first ?? 0, 0)
            return ([out.total.scalar] + grads, model.queue.textQueue.toArray(), model.queue.idQueue!)
        }
        let a = try run(), b = try run()
        XCTAssertEqual(a.0, b.0)
        XCTAssertEqual(a.1, b.1)
        XCTAssertEqual(a.2, b.2)
    }
}
