import ELIPNN
import ELIPTensor
import Foundation
import Safetensors

/// One step recorded by the official code, ready to replay: the model with the case's weights,
/// the batch and a context carrying the recorded draws (dropout off).
public struct ReferenceCase {
    public let model: any TrainableModel
    public let batch: ImageTextBatch
    public let context: StepContext
    /// Floor of the norm in the relative error |a - b| / max(|b|, floor).
    public let normFloor: Double
    /// Evaluation outputs of the case (`eval.*`), computed with the weights before the step.
    public var evaluation: (() throws -> [String: Tensor])?
    /// When set, the gradients of attention key biases (zero in exact arithmetic: softmax
    /// ignores a shift equal for every key, so both sides are rounding noise) are reported as
    /// their own group with this norm floor. The task cases scale query/key weights up, which
    /// makes that noise ~1e-9 on both sides (~1e-8 in the retrieval case): with the 1e-6 floor
    /// even an exact zero would miss 1e-3 (the floor METER's spec sets for the same reason is
    /// 1e-5; each case sets a floor for the same margin over its reference's own noise).
    public var keyBiasGradientFloor: Double?
    /// Groups of particular evaluation outputs (default "evaluation").
    public var evaluationGroups: [String: String] = [:]
    /// Groups compared by the largest absolute difference (e.g. retrieval's queues and scores:
    /// 1e-4 in the reference README).
    public var absoluteTolerance: [String: Double] = [:]
    /// Evaluation outputs that are indices (compared exactly, written as int64), e.g. VQA's
    /// `eval.topk_ids`.
    public var integerEvaluationOutputs: Set<String> = []
    /// Evaluation outputs compared by the largest absolute difference, with their bound (VQA's
    /// `eval.topk_probs`: 1e-4), each in its own group.
    public var absoluteEvaluationTolerance: [String: Double] = [:]
    /// Checks that are not tensors, run after the evaluation (VQA: the answers of
    /// `eval_result.json`), reported with the groups.
    public var extraChecks: (() throws -> [ReferenceStep.GroupResult])?

    public init(model: any TrainableModel, batch: ImageTextBatch, context: StepContext, normFloor: Double,
                evaluation: (() throws -> [String: Tensor])? = nil) {
        self.model = model
        self.batch = batch
        self.context = context
        self.normFloor = normFloor
        self.evaluation = evaluation
    }

    /// `image` [B, 3, H, W], `input_ids` and `attention_mask` [B, L] of a batch file.
    public static func imageTextBatch(_ file: SafetensorsFile) throws -> ImageTextBatch {
        let image = try file.entry("image")
        let images = try Tensor(file.floats("image"), shape: image.shape)
        let ids = try file.entry("input_ids")
        guard ids.shape.count == 2 else {
            throw CheckpointError(file: file.path, message: "input_ids must be [B, L], got \(ids.shape)")
        }
        let text = try TextBatch(ids: file.int64s("input_ids").map { Int($0) }, mask: file.int64s("attention_mask").map { Int($0) },
                                 batch: ids.shape[0], length: ids.shape[1])
        return ImageTextBatch(images: images, text: text)
    }
}

/// Replays a reference case and compares with its expected.safetensors, for any model: losses
/// (`loss_NAME`), the step's named tensors, kept indices (`kept_index.stageJ`), state buffers and
/// counters after the step (queues, pointers), momentum weights after the EMA (`after.NAME`) and
/// the gradient of every trainable parameter (`grad.NAME`).
public enum ReferenceStep {
    /// A named output: float values or int64 values, with a shape, and the group it is reported in.
    public struct Output {
        public var floats: [String: (shape: [Int], values: [Float])] = [:]
        public var ints: [String: (shape: [Int], values: [Int64])] = [:]
        public var groups: [String: String] = [:]
        public var normFloor = 1e-6
        public var lossNames: [String] = []
        /// Groups compared by the largest absolute difference against this bound instead of the
        /// relative Frobenius error (the load case's position tables: 1e-5 absolute).
        public var absoluteTolerance: [String: Double] = [:]
        /// Checks that are not tensors (the load case's key maps), reported with the groups.
        public var extraResults: [GroupResult] = []
        /// Write every output, not only the expected file's names (the load case's file may
        /// hold only the inputs; its outputs are computed from them).
        public var writesEveryOutput = false
        /// Norm floors of particular groups (default `normFloor`).
        public var groupNormFloor: [String: Double] = [:]

        mutating func add(_ name: String, _ t: Tensor, group: String) {
            floats[name] = (t.shape, t.toArray())
            groups[name] = group
        }
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

    /// Loads the case in `dir` (its model found from its files, or `model`) and runs it. A
    /// checkpoint-loading case (`CheckpointLoadCase`) runs the task scripts' loading instead.
    public static func run(caseDirectory dir: String, model: String? = nil) throws -> Output {
        if model == nil && CheckpointLoadCase.isCase(dir) { return try CheckpointLoadCase.run(dir) }
        return try run(ModelRegistry.referenceKind(dir, name: model).referenceCase(dir))
    }

    /// The file of expected outputs in a case folder: `expected.safetensors`, or the load
    /// case's `load.safetensors` (inputs and expected outputs together).
    public static func expectedPath(caseDirectory dir: String) -> String {
        CheckpointLoadCase.isCase(dir) ? CheckpointLoadCase.expectedPath(dir)
            : (dir as NSString).appendingPathComponent("expected.safetensors")
    }

    /// Runs the step, then backward from its total loss.
    public static func run(_ c: ReferenceCase) throws -> Output {
        let model = c.model
        var context = c.context
        let evaluation = try c.evaluation?() ?? [:]
        let extra = try c.extraChecks?() ?? []
        model.parameters.zeroGradients()
        let out = try model.step(c.batch, context: &context)
        try Autograd.backward(from: out.total)

        var r = Output()
        r.normFloor = c.normFloor
        r.lossNames = out.losses.keys.sorted()
        r.extraResults = extra
        for (name, loss) in out.losses { r.add(lossOutputName(name), loss, group: "losses") }
        for (name, t) in evaluation {
            if c.integerEvaluationOutputs.contains(name) {
                r.ints[name] = (t.shape, t.toArray().map { Int64($0) })
                r.groups[name] = "evaluation indices"
            } else if let tolerance = c.absoluteEvaluationTolerance[name] {
                r.add(name, t, group: "absolute: \(name.replacingOccurrences(of: "eval.", with: ""))")
                r.absoluteTolerance[r.groups[name]!] = tolerance
            } else {
                r.add(name, t, group: c.evaluationGroups[name] ?? "evaluation")
            }
        }
        r.absoluteTolerance.merge(c.absoluteTolerance) { _, new in new }
        for (name, t) in out.tensors { r.add(name, t, group: "activations") }
        r.add("loss", out.total, group: "losses")
        func addKept(_ stages: [[[Int]]], prefix: String) {
            for (j, kept) in stages.enumerated() {
                r.ints["\(prefix)stage\(j)"] = ([kept.count, kept.first?.count ?? 0], kept.flatMap { $0.map(Int64.init) })
                r.groups["\(prefix)stage\(j)"] = "kept_index"
            }
        }
        addKept(out.keptIndices, prefix: "kept_index.")
        for (pass, stages) in out.keptIndicesByPass { addKept(stages, prefix: "kept_index.\(pass).") }
        let layout = model.stateLayout
        for (name, t) in layout.buffers { r.add(name, t, group: "state") }
        for counter in layout.counters {
            r.ints[counter.name] = ([1], [Int64(counter.get())])
            r.groups[counter.name] = "state"
        }
        for b in layout.integerBuffers {
            r.ints[b.name] = (b.shape, b.get())
            r.groups[b.name] = "state"
        }
        for a in layout.arenas {
            for (entry, t) in zip(a.arena.entries, a.arena.tensors) {
                switch a.role {
                case .momentum:
                    // A shared tensor is in the state dict (and the case) under each of its names.
                    for name in a.arena.names(of: entry.name) { r.add("after.\(name)", t, group: "momentum (after EMA)") }
                case .trainable:
                    r.floats["grad.\(entry.name)"] = (entry.shape, t.grad?.toArray() ?? [Float](repeating: 0, count: entry.count))
                    if let floor = c.keyBiasGradientFloor, entry.name.hasSuffix(".self.key.bias") {
                        r.groups["grad.\(entry.name)"] = keyBiasGroup
                        r.groupNormFloor[keyBiasGroup] = floor
                    } else {
                        r.groups["grad.\(entry.name)"] = "gradients"
                    }
                }
            }
        }
        return r
    }

    /// The group of the attention key-bias gradients when `keyBiasGradientFloor` is set.
    public static let keyBiasGroup = "key-bias gradients"

    /// The output name of a named loss: `loss_NAME`, or `loss` for the loss named "loss" (the
    /// task cases' single loss).
    public static func lossOutputName(_ name: String) -> String { name == "loss" ? "loss" : "loss_\(name)" }

    /// Writes the outputs; with `onlyNames`, just those (e.g. the names of an expected file).
    public static func write(_ output: Output, to path: String, onlyNames: Set<String>? = nil) throws {
        var w = SafetensorsWriter()
        for (name, v) in output.floats where onlyNames?.contains(name) ?? true { try w.add(name, floats: v.values, shape: v.shape) }
        for (name, v) in output.ints where onlyNames?.contains(name) ?? true { try w.add(name, int64s: v.values, shape: v.shape) }
        try w.write(to: path)
    }

    /// Compares with an expected file using the reference README's tolerances: losses 1e-4
    /// relative; tensors 1e-3 in Frobenius norm, |a - b| / max(|b|, floor); indices exact;
    /// groups in `absoluteTolerance` by the largest absolute difference. Every expected tensor
    /// must have an output of the same name.
    public static func compare(_ output: Output, expected: SafetensorsFile) throws -> [GroupResult] {
        var worst: [String: (String, Double, Int)] = [:]
        func note(_ name: String, _ err: Double) {
            let g = output.groups[name] ?? "activations"
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
                if output.absoluteTolerance[output.groups[e.name] ?? ""] != nil {
                    let err = zip(mine.values, want).reduce(0.0) { max($0, abs(Double($1.0) - Double($1.1))) }
                    note(e.name, err.isNaN ? .infinity : err)
                    continue
                }
                var diff = 0.0, norm = 0.0
                for (a, b) in zip(mine.values, want) {
                    diff += Double(a - b) * Double(a - b)
                    norm += Double(b) * Double(b)
                }
                let floor = output.groupNormFloor[output.groups[e.name] ?? ""] ?? output.normFloor
                let err = diff.squareRoot() / max(norm.squareRoot(), floor)
                note(e.name, err.isNaN ? .infinity : err)
            }
        }
        return worst.keys.sorted().map { g in
            let (name, err, n) = worst[g]!
            let tol = output.absoluteTolerance[g] ?? (g == "losses" ? 1e-4 : (g == "kept_index" ? 0 : 1e-3))
            return GroupResult(group: g, worstName: name, worstError: err, tolerance: tol, compared: n)
        } + output.extraResults
    }
}
