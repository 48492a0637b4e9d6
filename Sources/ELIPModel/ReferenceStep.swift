import ELIPTensor
import Foundation
import Safetensors

/// Replays one pre-training step on a case directory laid out like
/// shared/reference/albef-tiny (Pretrain.yaml, config_bert.json, weights.safetensors,
/// batch.safetensors, optional expected.safetensors) and compares with the expectation.
public enum ReferenceStep {
    /// A named output: float values or int64 values, with a shape.
    public struct Output {
        public var floats: [String: (shape: [Int], values: [Float])] = [:]
        public var ints: [String: (shape: [Int], values: [Int64])] = [:]
    }

    /// Worst error of one group of outputs against the expectation.
    public struct GroupResult {
        public let group: String
        public let worstName: String
        public let worstError: Double
        public let tolerance: Double
        public let compared: Int
        public var passed: Bool { worstError <= tolerance }
    }

    /// Runs the step (dropout off; the batch's MLM masks and ITM negatives).
    public static func run(caseDirectory dir: String) throws -> Output {
        func path(_ f: String) -> String { (dir as NSString).appendingPathComponent(f) }
        let config = try ALBEFConfig.load(path("Pretrain.yaml"))
        let model = try ALBEFModel(config: config)
        let weights = try SafetensorsFile(path: path("weights.safetensors"))
        try model.load(from: weights)
        let batchFile = try SafetensorsFile(path: path("batch.safetensors"))

        let image = try batchFile.entry("image")
        let images = try Tensor(batchFile.floats("image"), shape: image.shape)
        let idsEntry = try batchFile.entry("input_ids")
        guard idsEntry.shape.count == 2 else {
            throw CheckpointError(file: batchFile.path, message: "input_ids must be [B, L], got \(idsEntry.shape)")
        }
        let (b, l) = (idsEntry.shape[0], idsEntry.shape[1])
        let ints = { (name: String) throws -> [Int] in try batchFile.int64s(name).map { Int($0) } }
        let text = try TextBatch(ids: ints("input_ids"), mask: ints("attention_mask"), batch: b, length: l)
        var randomness = StepRandomness(seed: 0, dropout: false)
        randomness.mlmInputIds = try ints("mlm_input_ids")
        randomness.mlmLabels = try ints("mlm_labels")
        randomness.negativeImageForText = try ints("itm_neg_image_index")
        randomness.negativeTextForImage = try ints("itm_neg_text_index")
        let alpha = try batchFile.floats("alpha").first ?? config.alpha

        model.online.zeroGradients()
        let out = try model.forward(PretrainBatch(images: images, text: text), alpha: alpha, randomness: &randomness)
        try Autograd.backward(from: out.loss)

        var result = Output()
        result.floats["loss_mlm"] = ([], [out.lossMLM.scalar])
        result.floats["loss_ita"] = ([], [out.lossITA.scalar])
        result.floats["loss_itm"] = ([], [out.lossITM.scalar])
        result.floats["image_embeds"] = (out.imageEmbeds.shape, out.imageEmbeds.toArray())
        result.floats["image_embeds_m"] = (out.imageEmbedsMomentum.shape, out.imageEmbedsMomentum.toArray())
        for (j, kept) in out.keptIndices.enumerated() {
            result.ints["kept_index.stage\(j)"] = ([kept.count, kept.first?.count ?? 0], kept.flatMap { $0.map(Int64.init) })
        }
        result.floats["image_queue"] = (model.imageQueue.shape, model.imageQueue.toArray())
        result.floats["text_queue"] = (model.textQueue.shape, model.textQueue.toArray())
        result.ints["queue_ptr"] = ([1], [Int64(model.queuePointer)])
        for (entry, t) in zip(model.momentum.entries, model.momentum.tensors) {
            result.floats["after.\(entry.name)"] = (entry.shape, t.toArray())
        }
        for (entry, t) in zip(model.online.entries, model.online.tensors) {
            result.floats["grad.\(entry.name)"] = (entry.shape, t.grad?.toArray() ?? [Float](repeating: 0, count: entry.count))
        }
        return result
    }

    /// Writes the outputs; with `onlyNames`, just those (e.g. the names of an expected file).
    public static func write(_ output: Output, to path: String, onlyNames: Set<String>? = nil) throws {
        var w = SafetensorsWriter()
        for (name, v) in output.floats where onlyNames?.contains(name) ?? true { try w.add(name, floats: v.values, shape: v.shape) }
        for (name, v) in output.ints where onlyNames?.contains(name) ?? true { try w.add(name, int64s: v.values, shape: v.shape) }
        try w.write(to: path)
    }

    /// Group of an output name, as reported.
    static func group(_ name: String) -> String {
        if name.hasPrefix("loss_") { return "losses" }
        if name.hasPrefix("kept_index") { return "kept_index" }
        if name.hasPrefix("grad.") { return "gradients" }
        if name.hasPrefix("after.") { return "momentum (after EMA)" }
        if name.hasSuffix("_queue") || name == "queue_ptr" { return "queues" }
        return "image_embeds"
    }

    /// Compares with an expected file using the reference README's tolerances: losses 1e-4
    /// relative; tensors 1e-3 in Frobenius norm, |a - b| / max(|b|, 1e-6); indices exact.
    public static func compare(_ output: Output, expected: SafetensorsFile) throws -> [GroupResult] {
        var worst: [String: (String, Double, Int)] = [:]
        func note(_ name: String, _ err: Double) {
            let g = group(name)
            let cur = worst[g] ?? ("", -1, 0)
            worst[g] = err > cur.1 ? (name, err, cur.2 + 1) : (cur.0, cur.1, cur.2 + 1)
        }
        for e in expected.entries {
            if e.dtype.isInteger {
                guard let mine = output.ints[e.name] else { throw CheckpointError(file: expected.path, message: "no output named \(e.name)") }
                let want = try expected.int64s(e.name)
                note(e.name, mine.values == want ? 0 : .infinity)
            } else {
                guard let mine = output.floats[e.name] else { throw CheckpointError(file: expected.path, message: "no output named \(e.name)") }
                let want = try expected.floats(e.name)
                guard want.count == mine.values.count else {
                    note(e.name, .infinity)
                    continue
                }
                var diff = 0.0, norm = 0.0
                for (a, b) in zip(mine.values, want) {
                    diff += Double(a - b) * Double(a - b)
                    norm += Double(b) * Double(b)
                }
                let err = diff.squareRoot() / max(norm.squareRoot(), 1e-6)
                note(e.name, err.isNaN ? .infinity : err)
            }
        }
        return worst.keys.sorted().map { g in
            let (name, err, n) = worst[g]!
            let tol = g == "losses" ? 1e-4 : (g == "kept_index" ? 0 : 1e-3)
            return GroupResult(group: g, worstName: name, worstError: err, tolerance: tol, compared: n)
        }
    }
}
