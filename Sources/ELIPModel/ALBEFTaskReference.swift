import ELIPConfig
import ELIPObjectives
import ELIPTensor

/// What the ALBEF task models' reference cases and steps share (VE.py, NLVR.py, Retrieval.py,
/// VQA.py), so each model file keeps only what differs.
enum ALBEFTaskReference {
    /// The training keys of a task config (`task`, `optimizer:`, `schedular:`) that one replayed
    /// step does not use: read and range-checked so `finish()` accepts them, never ignored
    /// silently. The batch-size keys differ per task and stay with the caller.
    static func readTrainingKeys(_ root: ConfigSection, task: String) throws {
        _ = try root.choice("task", [task])
        if let o = try root.section("optimizer") {
            _ = try o.choice("opt", ["adamW"])
            _ = try o.double("lr", in: 0...1)
            _ = try o.double("weight_decay", in: 0...1)
        }
        if let s = try root.section("schedular") {
            _ = try s.choice("sched", ["cosine"])
            for key in ["lr", "min_lr", "warmup_lr", "decay_rate"] { _ = try s.double(key, in: 0...1) }
            for key in ["epochs", "warmup_epochs", "cooldown_epochs"] { _ = try s.int(key, in: 0...(1 << 20)) }
        }
    }

    /// Share of rows whose arg-max class equals the label (`eval.acc` of VE.py and NLVR.py).
    static func accuracy(_ prediction: Tensor, labels: [Int]) -> Tensor {
        let logits = prediction.toArray(), classes = prediction.shape.last ?? 1
        let correct = labels.indices.filter { b in
            let row = logits[(b * classes)..<((b + 1) * classes)]
            return row.firstIndex(of: row.max()!)! - b * classes == labels[b]
        }.count
        return Tensor(scalar: Float(correct) / Float(max(labels.count, 1)))
    }
}

/// The classification step of VE.py and NLVR.py: labels checked against the class count, α from
/// the replay or the first-epoch ramp, plain cross-entropy without a momentum model, else the
/// momentum model updated, run without gradient, and its softmax distilled.
struct ALBEFClassificationStep {
    let task: String
    /// What each class index means, for the error on a bad label (e.g. "0 (False) or 1 (True)").
    let labelMeaning: String
    let classCount: Int

    func labels(of batch: ImageTextBatch) throws -> [Int] {
        let bs = batch.text.batch
        guard let labels = batch.labels, labels.count == bs else {
            throw TensorError.invalidArgument(op: "\(task) step", reason: "needs one label per sentence (\(bs)), got \(batch.labels?.count ?? 0)")
        }
        if let bad = labels.first(where: { !(0..<classCount).contains($0) }) {
            throw TensorError.invalidArgument(op: "\(task) step", reason: "label \(bad) is not \(labelMeaning)")
        }
        return labels
    }

    static func alpha(_ alpha: Float, warmUp: Bool, context c: StepContext) -> Float {
        c.recorded.float("alpha") ?? (warmUp
            ? distillationWeight(alpha, rampEpochs: 1, epoch: c.progress.epoch, iteration: c.progress.iteration,
                                 iterationsPerEpoch: c.progress.iterationsPerEpoch)
            : alpha)
    }

    /// The loss and outputs from the online `prediction`; `teacher` runs the momentum model (nil
    /// when the task has none).
    static func output(prediction: Tensor, labels: [Int], alpha: Float, teacher: (() throws -> Tensor)?) throws -> StepOutput {
        guard let teacher else {
            let loss = try prediction.crossEntropy(labels: labels)
            var out = StepOutput(total: loss, losses: ["loss": loss])
            out.tensors = ["prediction": prediction]
            return out
        }
        let predictionM = try Autograd.noGrad { try teacher() }
        // The distilled cross-entropy of ALBEF's MLM is the same formula over [B, classes].
        let loss = try MaskedLanguageModeling.distilledLoss(logits: prediction, labels: labels, teacherProbabilities: predictionM.softmax(), alpha: alpha)
        var out = StepOutput(total: loss, losses: ["loss": loss])
        out.tensors = ["prediction": prediction, "prediction_m": predictionM]
        out.scalars = ["alpha": Double(alpha)]
        return out
    }
}
