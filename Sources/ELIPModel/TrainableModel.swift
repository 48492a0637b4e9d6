import ELIPNN
import ELIPObjectives
import ELIPPruning
import ELIPTensor
import Safetensors

/// One training batch: normalised images [B, 3, res, res] and their captions; for
/// classification tasks (SNLI-VE, NLVR2) one class label per caption.
public struct ImageTextBatch {
    public let images: Tensor
    public let text: TextBatch
    public var labels: [Int]?
    /// VQA: each question's answers (ids, weights, counts); nil for other tasks.
    public var answers: AnswerBatch? = nil
    public init(images: Tensor, text: TextBatch, labels: [Int]? = nil) {
        self.images = images
        self.text = text
        self.labels = labels
    }
}

/// Where training is in its schedule (drives ramps such as the distillation weight).
public struct TrainingProgress: Equatable, Sendable {
    public var epoch: Int
    /// Batch index within the epoch.
    public var iteration: Int
    public var iterationsPerEpoch: Int
    public init(epoch: Int = 0, iteration: Int = 0, iterationsPerEpoch: Int = 1) {
        self.epoch = epoch
        self.iteration = iteration
        self.iterationsPerEpoch = iterationsPerEpoch
    }

    /// Far past every warm-up ramp (benchmarks, tests of the steady state).
    public static let steadyState = TrainingProgress(epoch: 1 << 20, iteration: 0, iterationsPerEpoch: 1)
}

/// Values a recorded step fixes instead of drawing them (replaying a reference step): masked
/// ids, chosen negatives, the distillation weight, named as in the reference batch files.
public struct RecordedDraws {
    public var ints: [String: [Int]] = [:]
    public var floats: [String: [Float]] = [:]
    public init() {}
    public func int(_ name: String) -> [Int]? { ints[name] }
    public func float(_ name: String) -> Float? { floats[name]?.first }
}

/// Everything a step needs besides the batch: randomness, the schedule position and the
/// process group.
public struct StepContext {
    /// Dropout on (training) or off (evaluation-mode replay).
    public var dropout: Bool
    /// Seeds the dropout masks.
    public var generator: SeededGenerator
    /// Stream for masking and negative sampling: draws are indexed by the sample's row in the
    /// GLOBAL batch, so with a stream shared by all ranks, W ranks x batch B draw exactly what one
    /// rank with batch W * B draws.
    public var samplingSeed: UInt64
    public var progress = TrainingProgress()
    /// Gathers features across ranks (nil on one process).
    public var exchange: FeatureExchange?
    /// Contrast and draw negatives over every rank's batch (needs `exchange`).
    public var globalNegatives = false
    /// Fixed draws (reference replay); empty in training.
    public var recorded = RecordedDraws()
    /// Also return the tensors a training step does not need whole (a reference replay compares
    /// e.g. METER's MLM logits of every token, where training projects only the masked ones).
    public var inspection = false

    public init(seed: UInt64, dropout: Bool = true, samplingSeed: UInt64? = nil) {
        self.dropout = dropout
        generator = SeededGenerator(seed: seed)
        self.samplingSeed = samplingSeed ?? CounterRandom.mix(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }
}

/// What one step produced.
public struct StepOutput {
    /// What backward starts from (the model's combination of its losses).
    public let total: Tensor
    /// Named losses ("ita", "itm", "mlm", ...).
    public let losses: [String: Tensor]
    /// Per pruning stage, per sample: kept token positions (empty without pruning).
    public var keptIndices: [[[Int]]] = []
    /// Kept positions of steps that run the vision encoder more than once (METER: "mlm", "itm").
    public var keptIndicesByPass: [String: [[[Int]]]] = [:]
    /// Named tensors for inspection and parity checks ("image_embeds", ...).
    public var tensors: [String: Tensor] = [:]
    /// Named scalars worth logging ("alpha", "temp").
    public var scalars: [String: Double] = [:]

    public init(total: Tensor, losses: [String: Tensor]) {
        self.total = total
        self.losses = losses
    }
}

/// Any model built from a `ModelConfig`.
public protocol ConfiguredModel: AnyObject {
    /// The configuration the model was built from.
    var modelConfig: any ModelConfig { get }
}

/// What the trainer trains: a pre-training model (ALBEF now; BLIP and METER next) or a task model
/// (a backbone with a task head). Parameters, the state a checkpoint carries, and one step. The
/// trainer, checkpoints, metrics, bench and reference replay use only this protocol; a new
/// backbone is a new file conforming to it plus a registry line.
public protocol TrainableModel: ConfiguredModel {
    /// Trainable parameters (gradients, optimizer, all-reduce).
    var parameters: ParameterArena { get }
    /// Everything a state dict holds, under the official names.
    var stateLayout: StateDictLayout { get }
    /// The pruning schedule `step` uses (nil: none); settable between steps, e.g. to compare
    /// scoring modes on one model.
    var pruning: PruneConfig? { get set }
    /// Random weights and state (seeded), as a fresh run starts.
    func initialiseRandomly(seed: UInt64) throws
    /// One forward: losses and diagnostics. Updates state the official forward updates (momentum
    /// weights, queues).
    func step(_ batch: ImageTextBatch, context: inout StepContext) throws -> StepOutput
    /// Whether AdamW's weight decay applies to a parameter (the official optimizer's rule).
    func decays(parameter name: String, shape: [Int]) -> Bool
    /// Factor on the scheduled learning rate for a parameter (METER: x5 for cross-modal layers
    /// and heads); 1 by default.
    func learningRateMultiplier(parameter name: String) -> Double
    /// Which AdamW the official code steps with (torch's by default).
    var adamWVariant: AdamWVariant { get }
    /// Roles of the pretrained files `import-weights` takes (e.g. "vit", "bert"), and the import.
    var pretrainedSources: [String] { get }
    func importPretrained(_ files: [String: SafetensorsFile], seed: UInt64) throws -> [String]
}

/// The two AdamW formulations the official codes use.
public enum AdamWVariant: String, Sendable {
    /// torch.optim.AdamW (ALBEF, BLIP): p *= 1 - lr wd, then the Adam step with eps added to the
    /// bias-corrected sqrt(v).
    case torch
    /// transformers.AdamW (METER): the Adam step with eps added to the raw sqrt(v) and the bias
    /// corrections folded into the step size, then p -= lr wd p on the updated p.
    case huggingFace
}

extension TrainableModel {
    public func learningRateMultiplier(parameter name: String) -> Double { 1 }
    public var adamWVariant: AdamWVariant { .torch }

    /// timm's rule, used by ALBEF's create_optimizer: no decay on 1-D tensors and biases.
    public func decays(parameter name: String, shape: [Int]) -> Bool {
        !(shape.count == 1 || name.hasSuffix(".bias"))
    }
}

/// A model that scores image-text pairs for retrieval: unimodal features for the first ranking,
/// a fusion score for re-ranking (ALBEF protocol, SPEC §4).
public protocol ImageTextRetrievalModel: ConfiguredModel {
    /// Sizes the evaluation allocates and feeds.
    var retrievalShapes: RetrievalShapes { get }
    /// Text states [B, L, H] and L2-normalised features [B, E] (no gradient).
    func encodeTexts(_ text: TextBatch) throws -> (states: Tensor, features: Tensor)
    /// Image tokens [B, T, D] of the UNPRUNED vision encoder and normalised features [B, E].
    func encodeImages(_ images: Tensor) throws -> (tokens: Tensor, features: Tensor)
    /// Re-ranking score of caption b (ids and mask `texts`, states from `encodeTexts`) with image
    /// `imageRows[b]` of `images`, whose feature similarity is `similarities[b]` (ALBEF: the ITM
    /// positive logit; BLIP: that logit plus the similarity).
    func matchScores(texts: TextBatch, textStates: Tensor, images: Tensor, imageRows: [Int], similarities: [Float]) throws -> [Float]
}

/// Sizes of a retrieval model's inputs and encodings.
public struct RetrievalShapes: Equatable, Sendable {
    /// Image side in pixels, and the longest caption the text encoder takes.
    public var imageRes: Int, maxTextPositions: Int
    /// Width of text states; tokens and width of (unpruned) image states; feature width.
    public var textWidth: Int, imageTokens: Int, imageWidth: Int, featureWidth: Int
    public init(imageRes: Int, maxTextPositions: Int, textWidth: Int, imageTokens: Int, imageWidth: Int, featureWidth: Int) {
        self.imageRes = imageRes
        self.maxTextPositions = maxTextPositions
        self.textWidth = textWidth
        self.imageTokens = imageTokens
        self.imageWidth = imageWidth
        self.featureWidth = featureWidth
    }
}

/// A model that scores image-text pairs only jointly (METER: no unimodal features, and the ViT
/// is pruned under each pair's caption), so retrieval ranks every pair through the full model.
public protocol PairMatchingModel: ConfiguredModel {
    /// Match score of caption b with image b, for each row b (no gradient).
    func pairMatchScores(texts: TextBatch, images: Tensor) throws -> [Float]
}

/// A model whose vision encoder ELIP prunes under the guidance of the caption.
public protocol TextGuidedPruningModel: ConfiguredModel {
    var prunableVisionEncoder: any PrunableVisionEncoder { get }
    var pruning: PruneConfig? { get }
    /// The pruning `step` would apply to images paired with `text` under `schedule`.
    func pruning(guidedBy text: TextBatch, schedule: PruneConfig) throws -> ELIPPruning
}

/// A model that writes captions (BLIP's decoder).
public protocol CaptionModel: ConfiguredModel {
    /// Token ids of a caption for each image [B, 3, res, res] (normalised): the prompt's ids
    /// (word pieces, no [CLS]/[SEP]) followed by the generated ones, EOS (`eos`, [SEP]) excluded.
    func generateCaptions(_ images: Tensor, promptIds: [Int], eos: Int, options: CaptionDecoding) throws -> [[Int]]
}
