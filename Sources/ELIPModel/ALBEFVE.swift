import ELIPConfig
import ELIPEncoders
import ELIPNN
import ELIPObjectives
import ELIPPruning
import ELIPTensor
import Foundation
import Safetensors

/// SNLI-VE fine-tuning of ALBEF (SPEC-ALBEF-TASKS §5; models/model_ve.py, VE.py): the image
/// through the ViT, the hypothesis through the text encoder with its fusion layers attending to
/// the image, a 3-way head on the fused [CLS]. With `distill`, a momentum copy (EMA 0.995,
/// updated once per step before its forward) gives soft targets:
/// `loss = (1 - alpha) CE(prediction, label) + alpha * mean_b(-sum_c log_softmax(prediction) softmax(prediction_m))`.
public final class ALBEFVEModel: TrainableModel {
    public static let kind = ModelKind(
        name: "albef-ve", about: "ALBEF SNLI-VE fine-tuning (ViT + BERT fusion, 3-way head, momentum distillation)",
        readConfig: { try ALBEFVEConfig.read($0, location: $1) },
        presets: ["albef-ve-base": { ALBEFVEConfig() }],
        referenceCase: { try ALBEFVEModel.referenceCase($0) }, isReferenceCase: { ALBEFVEModel.isReferenceCase($0) })

    public let config: ALBEFVEConfig
    public var modelConfig: any ModelConfig { config }
    public var pruning: PruneConfig? {
        get { nil }
        set {}  // fine-tuning never prunes
    }
    public let parameters: ParameterArena
    public let momentumParameters: ParameterArena
    public let encoders: ALBEFTaskEncoders, head: ClassificationHead
    let encodersM: ALBEFTaskEncoders?, headM: ClassificationHead?
    public let momentum: MomentumTwin?

    public convenience init(config: ALBEFVEConfig) throws {
        let probe = try ALBEFVEModel(config: config, parameters: .measuring(), momentumParameters: .measuring(withGradients: false))
        try self.init(config: config, parameters: ParameterArena(capacity: probe.parameters.used),
                      momentumParameters: ParameterArena(capacity: max(probe.momentumParameters.used, 1), withGradients: false))
    }

    init(config: ALBEFVEConfig, parameters: ParameterArena, momentumParameters: ParameterArena) throws {
        self.config = config
        self.parameters = parameters
        self.momentumParameters = momentumParameters
        let width = config.bert.hiddenSize, classes = ALBEFVEConfig.classCount
        // model_ve.py's order: visual_encoder, text_encoder, cls_head (then the momentum copies).
        let on = Scope(arena: parameters)
        encoders = try ALBEFTaskEncoders(on, vision: config.vision, imageRes: config.imageRes, bert: config.bert)
        head = try ClassificationHead(on["cls_head"], width: width, classes: classes)
        if config.distill {
            let mo = Scope(arena: momentumParameters)
            encodersM = try ALBEFTaskEncoders(mo, suffix: "_m", vision: config.vision, imageRes: config.imageRes, bert: config.bert)
            headM = try ClassificationHead(mo["cls_head_m"], width: width, classes: classes)
            momentum = try MomentumTwin(online: parameters, momentum: momentumParameters, coefficient: config.momentum)
        } else {
            encodersM = nil
            headM = nil
            momentum = nil
        }
    }

    public var stateLayout: StateDictLayout {
        var l = StateDictLayout()
        l.arenas = [.init(parameters, role: .trainable)]
        if let momentum {
            l.arenas.append(.init(momentumParameters, role: .momentum, whenAbsent: { momentum.copyOnlineToMomentum() }))
        }
        let n = config.bert.maxPositionEmbeddings
        l.constants = (config.distill ? ["text_encoder", "text_encoder_m"] : ["text_encoder"]).map {
            ("\($0).embeddings.position_ids", (0..<n).map(Int64.init), [1, n])
        }
        return l
    }

    /// Random online weights, momentum = online (model_ve.py's copy_params at construction).
    public func initialiseRandomly(seed: UInt64) throws {
        parameters.initialise(seed: seed)
        momentum?.copyOnlineToMomentum()
    }

    /// Loads a pre-training checkpoint as VE.py does (`bert.` dropped, position grids resized
    /// to this resolution; cls_head and cls_head_m keep their initialisation).
    @discardableResult
    public func loadPretrainingCheckpoint(_ file: SafetensorsFile) throws -> ALBEFTaskCheckpoint.Plan {
        try ALBEFTaskCheckpoint.load(.ve, from: file, into: stateLayout)
    }

    public var pretrainedSources: [String] { [] }
    public func importPretrained(_ files: [String: SafetensorsFile], seed: UInt64) throws -> [String] {
        throw CheckpointError(file: "import", message: "SNLI-VE starts from an ALBEF pre-training checkpoint (loadPretrainingCheckpoint), not from DeiT/BERT files")
    }

    /// Logits [B, 3] of `encoders`/`head` on the batch.
    static func classify(_ batch: ImageTextBatch, _ encoders: ALBEFTaskEncoders, _ head: ClassificationHead, dropout: DropoutStream?) throws -> Tensor {
        let states = try encoders.multimodal(batch.text, imageTokens: encoders.images(batch.images), dropout: dropout)
        return try head(ALBEFTaskEncoders.cls(states))
    }

    /// Online logits [B, 3] without gradient (VE.py's evaluate: the prediction is the argmax).
    public func predict(_ batch: ImageTextBatch) throws -> Tensor {
        try Autograd.noGrad { try Self.classify(batch, encoders, head, dropout: nil) }
    }

    public func step(_ batch: ImageTextBatch, context c: inout StepContext) throws -> StepOutput {
        let bs = batch.text.batch
        guard batch.images.shape.first == bs else {
            throw TensorError.shapeMismatch(op: "SNLI-VE batch (images vs sentences)", lhs: batch.images.shape, rhs: [bs, batch.text.length])
        }
        let labels = try ALBEFClassificationStep(task: "SNLI-VE", labelMeaning: "0 (contradiction), 1 (neutral) or 2 (entailment)",
                                                 classCount: ALBEFVEConfig.classCount).labels(of: batch)
        let alpha = ALBEFClassificationStep.alpha(config.alpha, warmUp: config.warmUp, context: c)
        let b = config.bert
        let dropout = c.dropout ? DropoutStream(hidden: b.hiddenDropoutProb, attention: b.attentionProbsDropoutProb, seed: c.generator.next()) : nil
        let prediction = try Self.classify(batch, encoders, head, dropout: dropout)
        var teacher: (() throws -> Tensor)?
        if let momentum, let encodersM, let headM {
            teacher = {
                momentum.update()
                return try Self.classify(batch, encodersM, headM, dropout: nil)
            }
        }
        return try ALBEFClassificationStep.output(prediction: prediction, labels: labels, alpha: alpha, teacher: teacher)
    }

    // MARK: reference case (shared/reference/albef-ve-tiny layout)

    static func isReferenceCase(_ dir: String) -> Bool {
        FileManager.default.fileExists(atPath: (dir as NSString).appendingPathComponent("VE.yaml"))
    }

    /// VE.yaml (+ its bert_config), weights.safetensors, batch.safetensors (image, input_ids,
    /// attention_mask, targets, alpha). The evaluation (`eval.prediction`, `eval.acc`) runs on
    /// the same batch with the weights before the step.
    static func referenceCase(_ dir: String) throws -> ReferenceCase {
        func path(_ f: String) -> String { (dir as NSString).appendingPathComponent(f) }
        let root = try ConfigSection.load(path("VE.yaml"), ignoring: .trainingFile)
        let config = try ALBEFVEConfig.read(root, location: ConfigLocation(searchFolders: [dir]))
        // Training keys: the batch file fixes the batch; the schedule is not part of one step.
        try ALBEFTaskReference.readTrainingKeys(root, task: "ve")
        _ = try root.int("batch_size_train", in: 1...(1 << 20))
        _ = try root.int("batch_size_test", in: 1...(1 << 20))
        try root.finish()
        try config.validate(file: root.file)
        let model = try ALBEFVEModel(config: config)
        try StateDict.load(model.stateLayout, from: SafetensorsFile(path: path("weights.safetensors")))
        let batchFile = try SafetensorsFile(path: path("batch.safetensors"))
        var batch = try ReferenceCase.imageTextBatch(batchFile)
        batch.labels = try batchFile.int64s("targets").map { Int($0) }
        var context = StepContext(seed: 0, dropout: false)
        context.recorded.floats["alpha"] = [try batchFile.floats("alpha").first ?? config.alpha]
        var c = ReferenceCase(model: model, batch: batch, context: context, normFloor: 1e-6) {
            let prediction = try model.predict(batch)
            return ["eval.prediction": prediction, "eval.acc": ALBEFTaskReference.accuracy(prediction, labels: batch.labels!)]
        }
        c.keyBiasGradientFloor = 1e-5
        return c
    }
}
