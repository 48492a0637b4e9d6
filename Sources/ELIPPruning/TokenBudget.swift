/// How many vision tokens a pruning schedule leaves in each ViT layer, from the schedule alone
/// (issue 18 part 5; the paper quotes ~30% removed for its settings).
public struct TokenBudget: Equatable, Sendable {
    /// Tokens entering each layer ([CLS] and, when merging, the merged token included).
    public let tokensPerLayer: [Int]
    /// Tokens entering each layer of the unpruned ViT: N0 + 1.
    public let unprunedTokens: Int
    /// Kept tokens per stage.
    public let keepCounts: [Int]

    /// Share of the tokens removed, averaged over the layers: 1 - Σ tokens / (depth x (N0 + 1)).
    public var removedShare: Double {
        guard !tokensPerLayer.isEmpty, unprunedTokens > 0 else { return 0 }
        return 1 - Double(tokensPerLayer.reduce(0, +)) / Double(tokensPerLayer.count * unprunedTokens)
    }

    /// The budget of `schedule` (nil: no pruning) on a ViT of `depth` layers and `patchCount`
    /// patches, whose keep counts are taken of `keepBase` patches (N0 for ALBEF; BLIP's
    /// `(image_size // 16)^2`). Errors as `PruneConfig.validate` would (and `keepBase` must give
    /// no more than `patchCount` kept tokens).
    public init(schedule: PruneConfig?, depth: Int, patchCount: Int, keepBase: Int? = nil) throws {
        guard depth >= 1, patchCount >= 1 else {
            throw TokenBudgetError("a ViT needs at least one layer and one patch (got depth \(depth), \(patchCount) patches)")
        }
        unprunedTokens = patchCount + 1
        guard let schedule else {
            tokensPerLayer = [Int](repeating: patchCount + 1, count: depth)
            keepCounts = []
            return
        }
        try schedule.validate(depth: depth, patchCount: keepBase ?? patchCount)
        let keeps = schedule.keepCounts(patchCount: keepBase ?? patchCount)
        keepCounts = keeps
        if let first = keeps.first, first > patchCount {
            throw TokenBudgetError("the schedule keeps \(first) of \(patchCount) patches")
        }
        var stageAt = [Int: Int]()
        for (j, layer) in schedule.beginLayer.enumerated() { stageAt[layer] = j }
        var tokens = patchCount + 1
        tokensPerLayer = (0..<depth).map { layer in
            if let j = stageAt[layer] { tokens = 1 + schedule.tokensAfterStage(kept: keeps[j]) }
            return tokens
        }
    }
}

public struct TokenBudgetError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
