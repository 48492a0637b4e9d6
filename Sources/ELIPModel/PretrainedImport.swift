import ELIPEncoders
import ELIPNN
import ELIPTensor
import Foundation
import Safetensors

/// Loading pretrained parts into a model's arena: a timm/DeiT ViT (position grid resized
/// bicubically when the resolution differs) and HuggingFace BERT weights.
public enum PretrainedImport {
    /// Candidate names of a HuggingFace BERT parameter: with and without the `bert.` prefix, and
    /// the legacy `LayerNorm.gamma/beta` spellings.
    public static func huggingFaceBertNames(_ name: String) -> [String] {
        var bases = [name]
        if name.hasSuffix("LayerNorm.weight") { bases.append(String(name.dropLast(6)) + "gamma") }
        if name.hasSuffix("LayerNorm.bias") { bases.append(String(name.dropLast(4)) + "beta") }
        return bases.flatMap { [$0, "bert." + $0] }
    }

    /// Loads a HuggingFace BERT file into `arena` whose names are `prefix + <HF name without bert.>`
    /// (and `headPrefix + predictions.*` for the MLM head). Returns the parameters not found.
    @discardableResult
    public static func loadBert(_ file: SafetensorsFile, into arena: ParameterArena, bertPrefix: String,
                                headPrefix: String? = nil) throws -> [String] {
        var missing: [String] = [], mismatched: [String] = []
        for (entry, tensor) in zip(arena.entries, arena.tensors) {
            let candidates: [String]
            if entry.name.hasPrefix(bertPrefix) {
                candidates = huggingFaceBertNames(String(entry.name.dropFirst(bertPrefix.count)))
            } else if let headPrefix, entry.name.hasPrefix(headPrefix) {
                let rest = String(entry.name.dropFirst(headPrefix.count))
                candidates = ["cls." + rest] + huggingFaceBertNames(rest).map { "cls." + $0 }
            } else {
                continue
            }
            guard let source = candidates.first(where: file.contains), let e = file[source] else {
                missing.append(entry.name)
                continue
            }
            guard e.elementCount == entry.count else {
                mismatched.append("\(source): shape \(e.shape), the model's \(entry.name) is \(entry.shape)")
                continue
            }
            try tensor.withUnsafeMutableBufferPointer { try file.copyFloats(source, into: $0.baseAddress!, count: entry.count) }
        }
        try refuseSizeMismatches(mismatched, file: file)
        return missing
    }

    /// Loads a timm/DeiT ViT file into the parameters named `prefix + <timm name>`, resizing the
    /// position grid when it differs. Returns the parameters not found. `sourcePrefix` is put
    /// before the timm names in the file (e.g. `visual_encoder.` for a whole model's state dict).
    @discardableResult
    public static func loadViT(_ file: SafetensorsFile, into arena: ParameterArena, prefix: String, sourcePrefix: String = "") throws -> [String] {
        var missing: [String] = [], mismatched: [String] = []
        for (entry, tensor) in zip(arena.entries, arena.tensors) where entry.name.hasPrefix(prefix) {
            let source = sourcePrefix + String(entry.name.dropFirst(prefix.count))
            guard let e = file[source] else { missing.append(entry.name); continue }
            if source == sourcePrefix + "pos_embed" && e.elementCount != entry.count {
                guard e.shape.count == 3, e.shape.last == entry.shape.last else {
                    throw CheckpointError(file: file.path, message: "pos_embed: shape \(e.shape), expected [1, tokens, \(entry.shape.last ?? 0)]")
                }
                do {
                    try tensor.assign(resizePositionEmbedding(file.floats(source), shape: e.shape, toTokens: entry.shape[1]))
                } catch let error as CheckpointError {
                    throw CheckpointError(file: file.path, message: "pos_embed: \(error.message)")
                }
                continue
            }
            guard e.elementCount == entry.count else {
                mismatched.append("\(source): shape \(e.shape), the model's \(entry.name) is \(entry.shape)")
                continue
            }
            try tensor.withUnsafeMutableBufferPointer { try file.copyFloats(source, into: $0.baseAddress!, count: entry.count) }
        }
        try refuseSizeMismatches(mismatched, file: file)
        return missing
    }

    /// Every size mismatch of a file in one error. As PyTorch's `load_state_dict` (which raises on
    /// a size mismatch even with strict=False, and the official init code relies on it): a
    /// mis-shaped tensor is never loaded and never silently left at its initialisation.
    static func refuseSizeMismatches(_ mismatched: [String], file: SafetensorsFile) throws {
        guard !mismatched.isEmpty else { return }
        throw CheckpointError(file: file.path, message: "\(mismatched.count) size mismatch(es): \(mismatched.prefix(20).joined(separator: "; "))\(mismatched.count > 20 ? "; ..." : "")")
    }

    /// ALBEF's interpolate_pos_embed: [1, 1 + g*g, D] -> [1, 1 + n*n, D]; the [CLS] entry is kept,
    /// the grid is resized as `torch.nn.functional.interpolate(mode='bicubic', align_corners=False)`
    /// computes it in float32 (A = -0.75; for each output, four taps along x per tap row, then the
    /// four rows combined along y). Equal grids return the input unchanged, as the official code does.
    public static func resizePositionEmbedding(_ values: [Float], shape: [Int], toTokens tokens: Int) throws -> [Float] {
        guard shape.count == 3, shape[0] == 1 else {
            throw CheckpointError(file: "pos_embed", message: "expected [1, T, D], got \(shape)")
        }
        // [CLS] plus at least one patch on both sides (a [CLS]-only table has no grid to resize,
        // and a square root of a negative count would trap).
        guard shape[1] >= 2, tokens >= 2, shape[2] >= 1, values.count == shape[1] * shape[2] else {
            throw CheckpointError(file: "pos_embed", message: "expected [1, 1 + grid*grid, D] with at least one grid position and \(shape.reduce(1, *)) values, got \(shape) with \(values.count) values (resizing to \(tokens) tokens)")
        }
        let d = shape[2], g = Int(Double(shape[1] - 1).squareRoot()), n = Int(Double(tokens - 1).squareRoot())
        guard g * g == shape[1] - 1, n * n == tokens - 1 else {
            throw CheckpointError(file: "pos_embed", message: "position grids must be square: \(shape[1] - 1) -> \(tokens - 1) tokens")
        }
        if g == n { return values }
        let taps = cubicTaps(input: g, output: n)
        var out = Array(values[0..<d])
        out.reserveCapacity(tokens * d)
        for oy in 0..<n {
            let ty = taps[oy]
            for ox in 0..<n {
                let tx = taps[ox]
                for c in 0..<d {
                    func at(_ y: Int, _ x: Int) -> Float { values[d + (y * g + x) * d + c] }
                    var sum: Float = 0
                    for j in 0..<4 {
                        let y = ty.index[j]
                        var row = at(y, tx.index[0]) * tx.weight[0]
                        for k in 1..<4 { row += at(y, tx.index[k]) * tx.weight[k] }
                        if j == 0 { sum = row * ty.weight[0] } else { sum += row * ty.weight[j] }
                    }
                    out.append(sum)
                }
            }
        }
        return out
    }

    /// For each output index: the four source indices (clamped to the border) and weights of
    /// PyTorch's bicubic kernel with align_corners=False, computed in float32 as
    /// `HelperInterpCubic` does (scale = in/out, source = scale * (i + 0.5) - 0.5).
    public static func cubicTaps(input: Int, output: Int) -> [(index: [Int], weight: [Float])] {
        let a: Float = -0.75
        let scale = Float(input) / Float(output)
        func near(_ x: Float) -> Float { ((a + 2) * x - (a + 3)) * x * x + 1 }
        func far(_ x: Float) -> Float { ((a * x - 5 * a) * x + 8 * a) * x - 4 * a }
        return (0..<output).map { o in
            let src = scale * (Float(o) + 0.5) - 0.5
            let x0 = min(Int(src.rounded(.down)), input - 1)
            let t = min(max(src - Float(x0), 0), 1)
            let weight = [far(t + 1), near(t), near(1 - t), far((1 - t) + 1)]
            let index = (0..<4).map { min(max(x0 - 1 + $0, 0), input - 1) }
            return (index, weight)
        }
    }

    /// `cubicTaps` with taps that clamp to the same index merged: (input index, weight) pairs.
    public static func bicubicWeights(input: Int, output: Int) -> [[(Int, Float)]] {
        cubicTaps(input: input, output: output).map { t in
            var taps: [(Int, Float)] = []
            for (i, w) in zip(t.index, t.weight) {
                if let j = taps.firstIndex(where: { $0.0 == i }) { taps[j].1 += w } else { taps.append((i, w)) }
            }
            return taps
        }
    }
}

/// A plain BERT encoder (no cross-attention) loaded from a HuggingFace checkpoint, for sentence
/// embeddings and for checking the text encoder against a real pretrained model.
public final class BertEncoder {
    public let arena: ParameterArena
    public let embeddings: BertEmbeddings
    public let layers: BertLayerStack

    /// Measures the parameters first, so the arena reserves only what they take (`ulimit -v`).
    public convenience init(config: BertConfig, weights: SafetensorsFile) throws {
        let probe = try BertEncoder(config: config, arena: .measuring(withGradients: false))
        try self.init(config: config, arena: ParameterArena(capacity: probe.arena.used, withGradients: false))
        let missing = try PretrainedImport.loadBert(weights, into: arena, bertPrefix: "")
        guard missing.isEmpty else {
            throw CheckpointError(file: weights.path, message: "\(missing.count) BERT parameters missing, e.g. \(missing.prefix(5).joined(separator: ", "))")
        }
        var layout = StateDictLayout()
        layout.arenas = [.init(arena, role: .trainable)]
        try StateDict.requireFinite(layout, source: weights.path)
    }

    private init(config: BertConfig, arena: ParameterArena) throws {
        var c = config
        c.fusionLayer = nil
        self.arena = arena
        let scope = Scope(arena: arena)
        embeddings = try BertEmbeddings(scope["embeddings"], config: c)
        layers = try BertLayerStack(scope["encoder"], config: c, layers: 0..<c.numHiddenLayers, crossAttention: { _ in false })
    }

    /// last_hidden_state [B, L, H].
    public func encode(_ text: TextBatch) throws -> Tensor {
        try Autograd.noGrad { try layers(embeddings(text, dropout: nil), mask: text, dropout: nil) }
    }
}
