import ELIPNN
import ELIPTensor

/// BERT embeddings (`embeddings.{word,position,token_type}_embeddings`, `embeddings.LayerNorm`):
/// word + position (+ token type 0) -> LayerNorm -> dropout.
public final class BertEmbeddings {
    public let config: BertConfig
    public let wordEmbeddings: Embedding, positionEmbeddings: Embedding
    /// nil when the config has no token types (BLIP).
    public let tokenTypeEmbeddings: Embedding?
    public let layerNorm: LayerNorm

    public init(_ scope: Scope, config: BertConfig) throws {
        self.config = config
        let h = config.hiddenSize
        wordEmbeddings = try Embedding(scope["word_embeddings"], count: config.vocabSize, dim: h)
        positionEmbeddings = try Embedding(scope["position_embeddings"], count: config.maxPositionEmbeddings, dim: h)
        tokenTypeEmbeddings = config.typeVocabSize > 0
            ? try Embedding(scope["token_type_embeddings"], count: config.typeVocabSize, dim: h) : nil
        layerNorm = try LayerNorm(scope["LayerNorm"], dim: h, eps: config.layerNormEps)
    }

    /// Every parameter (word, position, token type, LayerNorm).
    public var parameters: [Tensor] {
        [wordEmbeddings.weight, positionEmbeddings.weight] + (tokenTypeEmbeddings.map { [$0.weight] } ?? []) + layerNorm.parameters
    }

    /// [B, L, H] for a batch of ids.
    public func callAsFunction(_ text: TextBatch, dropout: DropoutStream?) throws -> Tensor {
        guard text.length <= config.maxPositionEmbeddings else {
            throw TensorError.invalidArgument(op: "BERT embeddings", reason: "sequence length \(text.length) exceeds max_position_embeddings \(config.maxPositionEmbeddings)")
        }
        let h = config.hiddenSize
        let words = try wordEmbeddings(text.ids).reshaped([text.batch, text.length, h])
        let positions = try positionEmbeddings.weight.slice(axis: 0, start: 0, length: text.length)
        var sum = try words + positions
        if let tokenTypeEmbeddings { sum = try sum + tokenTypeEmbeddings.weight.slice(axis: 0, start: 0, length: 1) }
        let x = try layerNorm(sum)
        return try dropout.map { try $0.hiddenDropout(x) } ?? x
    }
}

/// Cross-attention keys and values of a set of images for every cross-attending layer of a
/// stack, computed once and shared by every caption that attends to an image (ITM positives and
/// negatives, MLM, retrieval re-ranking): an image's projections are the same whichever caption
/// asks.
public struct CrossAttentionContext {
    /// Indexed like the stack's layers; nil for layers without cross-attention.
    public let layers: [MultiHeadAttention.KeyValues?]
    public let imageCount: Int
}

/// Consecutive BERT layers `encoder.layer.{first..<first + count}` (post-LN), with
/// cross-attention where `crossAttention` says, and a causal self-attention mask when `causal`
/// (a decoder). ALBEF splits its BERT into two stacks (text 0-5, fusion 6-11); BLIP's encoder is
/// one stack with cross-attention everywhere, skipped in text mode.
public final class BertLayerStack {
    public let config: BertConfig
    public let layers: [PostNormTransformerLayer]
    public let range: Range<Int>
    public let causal: Bool

    /// `encoderScope` holds `layer.N.*`.
    public init(_ encoderScope: Scope, config: BertConfig, layers range: Range<Int>, crossAttention: (Int) -> Bool,
                causal: Bool = false) throws {
        self.config = config
        self.range = range
        self.causal = causal
        let width = config.encoderWidth ?? config.hiddenSize
        layers = try range.map { i in
            try PostNormTransformerLayer(encoderScope["layer"][i], hidden: config.hiddenSize, heads: config.numAttentionHeads,
                                         intermediate: config.intermediateSize, eps: config.layerNormEps,
                                         crossAttentionWidth: crossAttention(i) ? width : nil)
        }
    }

    /// A stack made of given layers (numbered `range`).
    public init(layers: [PostNormTransformerLayer], config: BertConfig, range: Range<Int>, causal: Bool) {
        self.config = config
        self.layers = layers
        self.range = range
        self.causal = causal
    }

    /// A causal decoder over the same layer numbers that owns only its self-attention and shares
    /// everything else (cross-attention, feed-forward and their LayerNorms) with this stack, each
    /// shared tensor also named under `decoderScope` (BLIP's `tie_encoder_decoder_weights`, which
    /// skips the `/attention` modules). `encoderScope` is where this stack's layers are named.
    public func causalDecoderSharingAllButSelfAttention(encoderScope: Scope, decoderScope: Scope) throws -> BertLayerStack {
        let decoderLayers = try zip(range, layers).map { i, layer -> PostNormTransformerLayer in
            let own = try PostNormTransformerLayer.Sublayer(decoderScope["layer"][i]["attention"], hidden: config.hiddenSize,
                                                            keyWidth: config.hiddenSize, heads: config.numAttentionHeads,
                                                            eps: config.layerNormEps)
            let shared = (layer.crossAttention?.parameters ?? []) + layer.feedForward.parameters + layer.outputNorm.parameters
            try decoderScope["layer"][i].tie(shared, from: encoderScope["layer"][i])
            return PostNormTransformerLayer(selfAttention: own, crossAttention: layer.crossAttention, feedForward: layer.feedForward,
                                            outputNorm: layer.outputNorm)
        }
        return BertLayerStack(layers: decoderLayers, config: config, range: range, causal: true)
    }

    /// True when some layer cross-attends.
    public var hasCrossAttention: Bool { layers.contains { $0.crossAttention != nil } }

    /// Keys and values of image tokens [N, T, encoder_width] for every cross-attending layer.
    public func crossAttentionContext(_ images: Tensor) throws -> CrossAttentionContext {
        guard images.rank == 3 else {
            throw TensorError.invalidShape(op: "BERT cross-attention context", shape: images.shape, reason: "needs [images, tokens, width]")
        }
        guard hasCrossAttention else {
            throw TensorError.invalidArgument(op: "BERT cross-attention context", reason: "layers \(range) have no cross-attention")
        }
        return CrossAttentionContext(layers: try layers.map { try $0.crossAttention.map { try $0.attention.keyValues(images) } },
                                     imageCount: images.shape[0])
    }

    /// Runs the layers on hidden states [B, L, H]. With `images`, each cross-attending layer lets
    /// caption b attend to image `imageRows[b]` (default: image b); without, cross-attention is
    /// skipped (text mode).
    public func callAsFunction(_ hidden: Tensor, mask: TextBatch, images: CrossAttentionContext? = nil,
                               imageRows: [Int]? = nil, dropout: DropoutStream?) throws -> Tensor {
        let rows = try checkedImageRows(imageRows, entries: hidden.shape[0], images: images)
        let keys = selfMask(mask)
        var x = hidden
        for k in layers.indices { x = try layers[k](x, mask: keys, cross: cross(k, images, rows), dropout: dropout) }
        return x
    }

    /// The output rows a step reads — `reading[b]`: the positions of entry b (ascending or not;
    /// none skips the entry), e.g. [0] for an ITM head or a [CLS] feature, the masked positions
    /// for MLM — as [total, H] in entry order. Only the last layer changes: it runs those rows
    /// alone (keys and values still from every row), in groups of entries reading as many rows,
    /// which skips most of its work. Without dropout equal to gathering them from `self(...)`.
    public func callAsFunction(_ hidden: Tensor, mask: TextBatch, images: CrossAttentionContext? = nil, imageRows: [Int]? = nil,
                               dropout: DropoutStream?, reading: [[Int]]) throws -> Tensor {
        let b = hidden.shape.first ?? 0
        guard !causal else {
            throw TensorError.invalidArgument(op: "BERT layers (rows read)", reason: "a causal stack's early rows see only themselves; run it whole")
        }
        guard hidden.rank == 3, reading.count == b, !layers.isEmpty, reading.contains(where: { !$0.isEmpty }) else {
            throw TensorError.invalidArgument(op: "BERT layers (rows read)",
                                              reason: "rows to read for \(reading.count) entries of \(hidden.shape) through \(layers.count) layers (some entry must read one)")
        }
        let rows = try checkedImageRows(imageRows, entries: b, images: images)
        let last = layers.count - 1
        let keys = selfMask(mask)
        var x = hidden
        for k in 0..<last { x = try layers[k](x, mask: keys, cross: cross(k, images, rows), dropout: dropout) }
        return try layers[last].readRows(x, reading: reading, dropout: dropout,
                                         mask: { entries in try self.selfMask(entries.count == b ? mask : mask.rows(entries)) },
                                         cross: { entries in self.cross(last, images, entries.map { rows[$0] }) })
    }

    private func checkedImageRows(_ imageRows: [Int]?, entries: Int, images: CrossAttentionContext?) throws -> [Int] {
        let rows = imageRows ?? Array(0..<entries)
        if let images {
            guard rows.count == entries, rows.allSatisfy({ $0 >= 0 && $0 < images.imageCount }) else {
                throw TensorError.invalidArgument(op: "BERT cross-attention", reason: "need \(entries) image rows in [0, \(images.imageCount))")
            }
        }
        return rows
    }

    private func selfMask(_ mask: TextBatch) -> AttentionMask {
        causal ? .causal(keyPadding: mask.additiveMask) : .keyPadding(mask.additiveMask)
    }

    private func cross(_ layer: Int, _ images: CrossAttentionContext?, _ rows: [Int]) -> CrossAttentionInput? {
        images.flatMap { ctx in ctx.layers[layer].map { CrossAttentionInput.cached($0, rows: rows) } }
    }
}

/// BERT's MLM head (`cls.predictions.*`): transform dense + GELU + LayerNorm, then a decoder tied
/// to the word embeddings plus its own bias (`predictions.decoder.weight` is declared as another
/// name of the embedding table, `predictions.decoder.bias` of `predictions.bias`).
public final class BertLMHead {
    public let dense: Linear, layerNorm: LayerNorm
    public let decoderWeight: Tensor
    public let bias: Tensor

    /// `scope` holds `transform.*`, `bias` (and the tied `decoder.*` names).
    public init(_ scope: Scope, config: BertConfig, wordEmbeddings: Tensor) throws {
        let h = config.hiddenSize
        dense = try Linear(scope["transform"]["dense"], in: h, out: h)
        layerNorm = try LayerNorm(scope["transform"]["LayerNorm"], dim: h, eps: config.layerNormEps)
        bias = try scope.parameter("bias", [config.vocabSize], init: .zeros)
        decoderWeight = wordEmbeddings
        try scope["decoder"].tie("weight", to: wordEmbeddings)
        try scope["decoder"].tie("bias", to: bias)
    }

    /// Vocabulary logits [N, vocab] for hidden rows [N, H].
    public func callAsFunction(_ rows: Tensor) throws -> Tensor {
        try layerNorm(dense(rows).gelu()).linear(decoderWeight, bias)
    }
}
