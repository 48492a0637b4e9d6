import ELIPConfig
import ELIPEncoders
import ELIPNN
import ELIPPruning
import ELIPTensor
import Foundation
import Safetensors

/// NLVR2's text-assignment (TA) pre-training stage (SPEC-ALBEF-TASKS §4; salesforce/ALBEF
/// models/model_pretrain_nlvr.py, Pretrain_nlvr.py), run on the pre-training corpus before NLVR2
/// fine-tuning: the NLVR2 encoders (ViT, BERT whose fusion layers alternate left/right image with
/// key/value shared per pair) and a 3-way `ta_head` decide whether a caption belongs to the left
/// image (0), the right image (1) or neither (2) of a pair drawn from the batch:
/// without gradient `W = softmax_row(f f^T / 0.07)` over the normalised `vision_proj` of the
/// [CLS] image tokens, diagonal 0; per sample b, with probability 2/3 one image j ~ W[b] and, with
/// probability 1/2 each, (b, j) label 0 or (j, b) label 1; else two distinct images ~ W[b],
/// label 2. `loss = CE(ta_head(fused [CLS]), labels)`. No momentum model. `text_proj` and `temp`
/// exist (the official state dict has them) but the step does not use them. Draws are per rank
/// (W is over the rank's batch, as upstream), so ranks x B is not 1 rank x (ranks x B) here.
public final class ALBEFNLVRTextAssignmentModel: TrainableModel {
    public static let kind = ModelKind(
        name: "albef-nlvr2-ta", about: "ALBEF NLVR2 text-assignment pre-training (NLVR2 encoders, left/right/neither head over pairs drawn from the batch)",
        readConfig: { try ALBEFNLVRTextAssignmentConfig.read($0, location: $1) },
        presets: ["albef-nlvr2-ta-base": { ALBEFNLVRTextAssignmentConfig() }],
        // The shared reference cases have no text-assignment step (SPEC-ALBEF-TASKS §11).
        referenceCase: { dir in throw ModelRegistryError("\(dir): there is no reference case of the NLVR2 text-assignment stage") },
        isReferenceCase: { _ in false })

    public let config: ALBEFNLVRTextAssignmentConfig
    public var modelConfig: any ModelConfig { config }
    public var pruning: PruneConfig? {
        get { nil }
        set {}  // never prunes
    }
    public let parameters: ParameterArena
    public let encoders: ALBEFTaskEncoders
    public let visionProj: Linear, textProj: Linear, temp: Tensor, taHead: Linear

    /// The similarity temperature of the draw weights (the code's constant 0.07, not `temp`).
    static let drawTemperature: Float = 0.07

    public convenience init(config: ALBEFNLVRTextAssignmentConfig) throws {
        let probe = try ALBEFNLVRTextAssignmentModel(config: config, parameters: .measuring())
        try self.init(config: config, parameters: ParameterArena(capacity: probe.parameters.used))
    }

    init(config: ALBEFNLVRTextAssignmentConfig, parameters: ParameterArena) throws {
        self.config = config
        self.parameters = parameters
        // model_pretrain_nlvr.py's order: visual_encoder, text_encoder, vision_proj, text_proj, temp, ta_head.
        let on = Scope(arena: parameters)
        encoders = try ALBEFTaskEncoders(on, vision: config.vision, imageRes: config.imageRes, bert: config.bert, imagePairs: true)
        visionProj = try Linear(on["vision_proj"], in: config.visionWidth, out: config.embedDim, pytorchDefaultInit: true)
        textProj = try Linear(on["text_proj"], in: config.bert.hiddenSize, out: config.embedDim, pytorchDefaultInit: true)
        temp = try on.parameter("temp", [], init: .setByModel)
        taHead = try Linear(on["ta_head"], in: config.bert.hiddenSize, out: ALBEFNLVRTextAssignmentConfig.classCount, pytorchDefaultInit: true)
    }

    public var stateLayout: StateDictLayout {
        var l = StateDictLayout()
        l.arenas = [.init(parameters, role: .trainable)]
        let n = config.bert.maxPositionEmbeddings
        l.constants = [("text_encoder.embeddings.position_ids", (0..<n).map(Int64.init), [1, n])]
        return l
    }

    public func initialiseRandomly(seed: UInt64) throws {
        parameters.initialise(seed: seed)
        try temp.assign([Self.drawTemperature])
    }

    public var pretrainedSources: [String] { [] }
    public func importPretrained(_ files: [String: SafetensorsFile], seed: UInt64) throws -> [String] {
        throw CheckpointError(file: "import", message: "the NLVR2 text-assignment stage starts from an ALBEF pre-training checkpoint (finetune --init), not from DeiT/BERT files")
    }

    /// Pretrain_nlvr.py's loading: `bert.` dropped, fusion layer N written to layers 2(N-F)+F and
    /// 2(N-F)+F+1 (F = 6 officially); online weights only; `ta_head` keeps its initialisation.
    @discardableResult
    public func loadPretrainingCheckpoint(_ file: SafetensorsFile) throws -> ALBEFTaskCheckpoint.Plan {
        try ALBEFTaskCheckpoint.load(.nlvrTextAssignment, from: file, into: stateLayout, scriptFusion: config.fusionLayer)
    }

    /// The pairs of one step: (left row, right row, label) per sample, drawn from `weights`
    /// [B, B] (diagonal 0) with uniforms `uniform(k)`: k = 4b kind, 4b + 1 side, 4b + 2 and 4b + 3
    /// the multinomial draws of row b. Two distinct images: the second draw excludes the first
    /// (torch.multinomial without replacement).
    static func drawPairs(weights: [Float], batch bs: Int, uniform: (Int) -> Float) throws -> [(left: Int, right: Int, label: Int)] {
        func pick(_ row: [Double], _ u: Float) -> Int? {
            let total = row.reduce(0, +)
            guard total > 0, total.isFinite else { return nil }
            var r = Double(u) * total
            for (j, w) in row.enumerated() where w > 0 {
                r -= w
                if r < 0 { return j }
            }
            return row.lastIndex { $0 > 0 }
        }
        return try (0..<bs).map { b in
            var row = (0..<bs).map { Double(weights[b * bs + $0]) }
            row[b] = 0
            func fail() -> TensorError {
                .invalidArgument(op: "NLVR2 text assignment", reason: "sample \(b): no other image to pair with (a batch needs at least 3 images with finite, non-zero similarity weights)")
            }
            if uniform(4 * b) > 1.0 / 3 {
                guard let j = pick(row, uniform(4 * b + 2)) else { throw fail() }
                return uniform(4 * b + 1) > 0.5 ? (b, j, 0) : (j, b, 1)
            }
            guard let first = pick(row, uniform(4 * b + 2)) else { throw fail() }
            row[first] = 0
            guard let second = pick(row, uniform(4 * b + 3)) else { throw fail() }
            return (first, second, 2)
        }
    }

    public func step(_ batch: ImageTextBatch, context c: inout StepContext) throws -> StepOutput {
        let bs = batch.text.batch
        guard batch.images.shape.first == bs else {
            throw TensorError.shapeMismatch(op: "NLVR2 text-assignment batch (one image per caption)", lhs: batch.images.shape, rhs: [bs, batch.text.length])
        }
        guard bs >= 3 else {
            throw TensorError.invalidArgument(op: "NLVR2 text assignment", reason: "batch \(bs): pairs of two other images need at least 3 images per rank")
        }
        let b = config.bert
        let dropout = c.dropout ? DropoutStream(hidden: b.hiddenDropoutProb, attention: b.attentionProbsDropoutProb, seed: c.generator.next()) : nil
        let tokens = try encoders.images(batch.images)
        let weights: [Float] = try Autograd.noGrad {
            let feature = try visionProj(ALBEFTaskEncoders.cls(tokens)).l2Normalized()
            return try feature.matmul(feature, transposeOther: true).scaled(1 / Self.drawTemperature).softmax().toArray()
        }
        let drawSeed = c.generator.next()
        let pairs = try Self.drawPairs(weights: weights, batch: bs) { CounterRandom.uniform(seed: drawSeed, index: $0) }
        let states = try encoders.multimodal(batch.text, left: tokens.gatherRows(pairs.map(\.left)),
                                             right: tokens.gatherRows(pairs.map(\.right)), dropout: dropout)
        let prediction = try taHead(ALBEFTaskEncoders.cls(states))
        let loss = try prediction.crossEntropy(labels: pairs.map(\.label))
        var out = StepOutput(total: loss, losses: ["loss": loss])
        out.tensors = ["prediction": prediction]
        out.scalars = ["share_neither": Double(pairs.filter { $0.label == 2 }.count) / Double(bs)]
        return out
    }
}

extension ALBEFNLVRTextAssignmentModel: PretrainingCheckpointLoadable {}
