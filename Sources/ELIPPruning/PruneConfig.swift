import ELIPConfig

/// How a pruning stage scores the candidate tokens (SPEC §2).
public enum PruneScoring: String, Codable, Sendable, CaseIterable {
    /// The paper's method: the fused query runs through all of the stage's layers (no gradient)
    /// and the stage's last layer's attention of position 0 scores the tokens.
    case lookAhead = "look_ahead"
    /// Ablation (EViT-style, cheaper): the fused query's attention in the stage's FIRST layer,
    /// on the stage's input tokens; no look-ahead layers run.
    case inline

    /// "look_ahead or inline", for messages.
    public static var choices: String { allCases.map(\.rawValue).joined(separator: " or ") }

    /// The mode called `name`; otherwise an error naming `setting` and the valid modes.
    public init(parsing name: String, setting: String) throws {
        guard let mode = PruneScoring(rawValue: name) else { throw UnknownPruneScoring(setting: setting, name: name) }
        self = mode
    }
}

public struct UnknownPruneScoring: Error, CustomStringConvertible {
    public let setting: String, name: String
    public var description: String { "\(setting) must be \(PruneScoring.choices), not '\(name)'" }
}

/// ELIP pruning schedule (SPEC §2): stage j starts at layer `beginLayer[j]`, spans
/// `numActLayers[j]` layers, and keeps floor(N0 * keepRatio[j]) tokens.
public struct PruneConfig: Codable, Equatable, Sendable {
    public var beginLayer: [Int]
    public var numActLayers: [Int]
    public var keepRatio: [Double]
    /// How tokens are scored (`scoring:` in `img_prune`; default `look_ahead`).
    public var scoring: PruneScoring = .lookAhead
    /// λ, the weight of the image [CLS] in the fused query `(1 - λ) text_cls + λ image_cls`
    /// (`lambda:` in `img_prune`; 0.8 in the official code; 1: image-only guidance, 0: text-only).
    public var lambda: Float = PruneConfig.defaultLambda
    /// Whether the pruned tokens are merged into one fused token (`merge:` in `img_prune`; the
    /// paper's method, default true). `false` is the ablation that drops them: a stage then
    /// leaves `[CLS, kept...]`, K_j + 1 tokens.
    public var merge = true

    public static let defaultLambda: Float = 0.8

    public init(beginLayer: [Int], numActLayers: [Int], keepRatio: [Double], scoring: PruneScoring = .lookAhead,
                lambda: Float = PruneConfig.defaultLambda, merge: Bool = true) {
        self.beginLayer = beginLayer
        self.numActLayers = numActLayers
        self.keepRatio = keepRatio
        self.scoring = scoring
        self.lambda = lambda
        self.merge = merge
    }

    /// "look_ahead", plus the ablations in use ("inline, λ 0.4, no merge"), for summaries.
    public var modeDescription: String {
        var parts = [scoring.rawValue]
        if lambda != PruneConfig.defaultLambda { parts.append("λ \(lambda)") }
        if !merge { parts.append("no merge") }
        return parts.joined(separator: ", ")
    }

    /// Tokens a stage that keeps `kept` patches leaves after [CLS] (the merged token included).
    public func tokensAfterStage(kept: Int) -> Int { kept + (merge ? 1 : 0) }

    /// Paper default for ALBEF and BLIP (ELIP ALBEF/configs/Pretrain.yaml).
    public static let albef = PruneConfig(beginLayer: [2, 4, 10], numActLayers: [2, 6, 2], keepRatio: [0.90, 0.65, 0.40])

    /// Reads `img_prune` of a config: a mapping, or null / false for no pruning. `fallback` is
    /// used when the key is absent. `legacyLambda` names a top-level key that also sets λ (ALBEF's
    /// `prune_lambda`, BLIP's `lambda`, kept for existing configs); giving both is an error.
    public static func read(_ section: ConfigSection, key: String = "img_prune", fallback: PruneConfig?,
                            legacyLambda: String? = nil) throws -> PruneConfig? {
        let legacy = try legacyLambda.flatMap { try section.double($0, in: 0...1) }
        var (c, innerLambda) = try readSchedule(section, key: key, fallback: fallback)
        if let legacy, let legacyLambda {
            if innerLambda { throw section.error(legacyLambda, "λ is given twice, here and as \(key).lambda: keep one") }
            c?.lambda = Float(legacy)
        }
        return c
    }

    /// The schedule, and whether it gave `lambda` itself.
    private static func readSchedule(_ section: ConfigSection, key: String, fallback: PruneConfig?) throws -> (PruneConfig?, Bool) {
        switch section.presence(key) {
        case .absent: return (fallback, false)
        case .null, .off: return (nil, false)  // `img_prune: null` or `img_prune: false`: no pruning
        case .value: break
        }
        guard let s = try section.section(key) else { return (fallback, false) }
        let layers = 0...4096
        guard let begin = try s.ints("begin_layer", in: layers) else { throw s.missing("begin_layer") }
        guard let act = try s.ints("num_act_layers", in: 1...4096) else { throw s.missing("num_act_layers") }
        guard let keep = try s.doubles("keep_ratio", in: 0...1) else { throw s.missing("keep_ratio") }
        var c = PruneConfig(beginLayer: begin, numActLayers: act, keepRatio: keep)
        if let raw = try s.string("scoring") {
            do { c.scoring = try PruneScoring(parsing: raw, setting: "scoring") } catch { throw s.error("scoring", "must be \(PruneScoring.choices), not '\(raw)'") }
        }
        let lambda = try s.double("lambda", in: 0...1)
        if let lambda { c.lambda = Float(lambda) }
        c.merge = try s.bool("merge", default: c.merge)
        guard begin.count == act.count, begin.count == keep.count else {
            throw s.error("begin_layer, num_act_layers and keep_ratio must have the same length")
        }
        for (j, r) in keep.enumerated() where r <= 0 {
            throw s.error("keep_ratio[\(j)]", "must be in (0, 1], got \(r)")
        }
        return (c, lambda != nil)
    }

    /// Kept tokens per stage for `patchCount` original patches (floor, as Python's int()).
    public func keepCounts(patchCount: Int) -> [Int] {
        keepRatio.map { Int(Double(patchCount) * $0) }
    }

    /// Checks the schedule against a ViT of `depth` layers and `patchCount` patches.
    public func validate(depth: Int, patchCount: Int, file: String = "img_prune") throws {
        func fail(_ m: String) -> ConfigError { ConfigError(file: file, key: "img_prune", message: m) }
        guard beginLayer.count == numActLayers.count, beginLayer.count == keepRatio.count else {
            throw fail("begin_layer, num_act_layers and keep_ratio must have the same length")
        }
        guard lambda.isFinite, lambda >= 0, lambda <= 1 else { throw fail("lambda = \(lambda) must be in [0, 1]") }
        var end = 0
        for j in beginLayer.indices {
            guard beginLayer[j] >= end, numActLayers[j] >= 1, beginLayer[j] + numActLayers[j] <= depth else {
                throw fail("stage \(j) (begin \(beginLayer[j]), \(numActLayers[j]) layers) overlaps the previous stage or runs past depth \(depth)")
            }
            end = beginLayer[j] + numActLayers[j]
            guard keepRatio[j] > 0, keepRatio[j] <= 1 else { throw fail("keep_ratio[\(j)] = \(keepRatio[j]) must be in (0, 1]") }
        }
        let keeps = keepCounts(patchCount: patchCount)
        for j in keeps.indices where keeps[j] < 1 || (j > 0 && keeps[j] > keeps[j - 1]) {
            throw fail("keep counts \(keeps) of \(patchCount) patches must be positive and non-increasing")
        }
    }
}
