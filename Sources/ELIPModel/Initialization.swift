import ELIPTensor

/// Random initialisation as the official code does it for parameters not loaded from a
/// pretrained file: Linear and embedding weights ~ N(0, 0.02) (truncated at 2 sigma for the ViT,
/// as timm's trunc_normal_), biases 0, LayerNorm weight 1 and bias 0, [CLS] and position
/// embeddings ~ trunc N(0, 0.02).
public enum Initialization {
    public static func initialise(_ arena: ParameterArena, seed: UInt64, only names: Set<String>? = nil) throws {
        var g = SeededGenerator(seed: seed)
        for (entry, t) in zip(arena.entries, arena.tensors) where names?.contains(entry.name) ?? true {
            let leaf = entry.name.split(separator: ".").last.map(String.init) ?? entry.name
            let isNorm = entry.name.contains("LayerNorm") || entry.name.contains("norm")
            if leaf == "bias" {
                try t.assign([Float](repeating: 0, count: t.count))
            } else if isNorm && leaf == "weight" {
                try t.assign([Float](repeating: 1, count: t.count))
            } else if leaf == "temp" {
                continue
            } else {
                try t.assign((0..<t.count).map { _ in truncatedNormal(&g) * 0.02 })
            }
        }
    }

    /// N(0, 1) truncated to [-2, 2] by rejection.
    static func truncatedNormal(_ g: inout SeededGenerator) -> Float {
        while true {
            let v = g.nextNormal()
            if abs(v) <= 2 { return v }
        }
    }
}

extension ALBEFModel {
    /// A freshly initialised model: random online weights, momentum = online, random queues.
    public func initialiseRandomly(seed: UInt64) throws {
        try Initialization.initialise(online, seed: seed)
        try temp.assign([config.temp])
        copyParametersToMomentum()
        initialiseQueues(seed: seed &+ 1)
    }
}
