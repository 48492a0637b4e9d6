import ELIPNN
import ELIPTensor

/// Dropout settings for one forward pass: a probability per kind and a seed stream. `nil` in a
/// forward means evaluation mode (no dropout).
public final class DropoutStream {
    public let hidden: Float
    public let attention: Float
    private var generator: SeededGenerator

    public init(hidden: Float, attention: Float, seed: UInt64) {
        self.hidden = hidden
        self.attention = attention
        generator = SeededGenerator(seed: seed)
    }

    func nextSeed() -> UInt64 { generator.next() }
}

/// BERT self- or cross-attention with its output projection and post-LN residual
/// (`attention.self.{query,key,value}`, `attention.output.{dense,LayerNorm}`).
public final class BertAttention {
    public let query: Linear, key: Linear, value: Linear
    public let dense: Linear, layerNorm: LayerNorm
    let heads: Int

    init(_ scope: Scope, hidden: Int, keyWidth: Int, heads: Int, eps: Float) throws {
        self.heads = heads
        query = try Linear(scope["self"]["query"], in: hidden, out: hidden)
        key = try Linear(scope["self"]["key"], in: keyWidth, out: hidden)
        value = try Linear(scope["self"]["value"], in: keyWidth, out: hidden)
        dense = try Linear(scope["output"]["dense"], in: hidden, out: hidden)
        layerNorm = try LayerNorm(scope["output"]["LayerNorm"], dim: hidden, eps: eps)
    }

    /// Self-attention with the additive key mask.
    func callAsFunction(_ x: Tensor, keyMask: [Float], dropout: DropoutStream?) throws -> Tensor {
        let attn = try Tensor.attention(query: query(x), key: key(x), value: value(x), heads: heads, keyMask: keyMask,
                                        dropout: dropout.map { ($0.attention, $0.nextSeed()) }).output
        return try outputSublayer(attn, residual: x, dropout: dropout)
    }

    /// Cross-attention of caption b to image `context.rows[b]` (no mask: every image token is real).
    func callAsFunction(_ x: Tensor, context: ImageContext.Layer, rows: [Int], dropout: DropoutStream?) throws -> Tensor {
        let attn = try Tensor.attention(query: query(x), key: context.keys, value: context.values, keyRows: rows,
                                        heads: heads, dropout: dropout.map { ($0.attention, $0.nextSeed()) }).output
        return try outputSublayer(attn, residual: x, dropout: dropout)
    }

    /// LayerNorm(x + dropout(dense(attn))).
    func outputSublayer(_ attn: Tensor, residual x: Tensor, dropout: DropoutStream?) throws -> Tensor {
        var h = try dense(attn)
        if let dropout { h = try h.dropout(dropout.hidden, seed: dropout.nextSeed()) }
        return try layerNorm(h + x)
    }
}

/// One BERT layer; layers at or above `fusion_layer` add cross-attention to image tokens.
public final class BertLayer {
    public let attention: BertAttention
    public let crossAttention: BertAttention?
    public let intermediate: Linear, output: Linear, outputNorm: LayerNorm

    init(_ scope: Scope, config: BertConfig, crossAttention hasCross: Bool) throws {
        let h = config.hiddenSize, eps = config.layerNormEps
        attention = try BertAttention(scope["attention"], hidden: h, keyWidth: h, heads: config.numAttentionHeads, eps: eps)
        crossAttention = hasCross ? try BertAttention(scope["crossattention"], hidden: h, keyWidth: config.encoderWidth ?? h,
                                                      heads: config.numAttentionHeads, eps: eps) : nil
        intermediate = try Linear(scope["intermediate"]["dense"], in: h, out: config.intermediateSize)
        output = try Linear(scope["output"]["dense"], in: config.intermediateSize, out: h)
        outputNorm = try LayerNorm(scope["output"]["LayerNorm"], dim: h, eps: eps)
    }

    func callAsFunction(_ x: Tensor, keyMask: [Float], image: (ImageContext.Layer, rows: [Int])?,
                        dropout: DropoutStream?) throws -> Tensor {
        var h = try attention(x, keyMask: keyMask, dropout: dropout)
        if let crossAttention {
            guard let image else {
                throw TensorError.invalidArgument(op: "BertLayer", reason: "a fusion layer needs image tokens")
            }
            h = try crossAttention(h, context: image.0, rows: image.rows, dropout: dropout)
        }
        var f = try output(intermediate(h).gelu())
        if let dropout { f = try f.dropout(dropout.hidden, seed: dropout.nextSeed()) }
        return try outputNorm(f + h)
    }
}

/// The image tokens' cross-attention keys and values for every fusion layer, computed once per
/// image and shared by every caption that attends to it (ITM positives and negatives, MLM,
/// retrieval re-ranking): the projections of an image are the same whichever caption asks.
public struct ImageContext {
    public struct Layer {
        /// [images, tokens, hidden] each.
        public let keys: Tensor, values: Tensor
    }
    /// Indexed by layer - fusion_layer.
    public let layers: [Layer]
    public let imageCount: Int
}

/// Token ids and attention mask of a padded batch.
public struct TextBatch {
    public let ids: [Int]
    public let mask: [Int]
    public let batch: Int
    public let length: Int

    public init(ids: [Int], mask: [Int], batch: Int, length: Int) throws {
        guard ids.count == batch * length, mask.count == batch * length else {
            throw TensorError.shapeMismatch(op: "TextBatch", lhs: [batch, length], rhs: [ids.count, mask.count])
        }
        self.ids = ids
        self.mask = mask
        self.batch = batch
        self.length = length
    }

    /// BERT's additive key mask: (1 - mask) * -10000.
    public var additiveMask: [Float] { mask.map { $0 == 0 ? -10000 : 0 } }

    /// Rows `indices` of this batch.
    public func rows(_ indices: [Int]) throws -> TextBatch {
        var i: [Int] = [], m: [Int] = []
        for r in indices {
            i += ids[(r * length)..<((r + 1) * length)]
            m += mask[(r * length)..<((r + 1) * length)]
        }
        return try TextBatch(ids: i, mask: m, batch: indices.count, length: length)
    }

    public static func concat(_ a: TextBatch, _ b: TextBatch) throws -> TextBatch {
        guard a.length == b.length else { throw TensorError.shapeMismatch(op: "TextBatch.concat", lhs: [a.length], rhs: [b.length]) }
        return try TextBatch(ids: a.ids + b.ids, mask: a.mask + b.mask, batch: a.batch + b.batch, length: a.length)
    }
}

/// BERT (`bert.*` names) with ALBEF's split into a text encoder (layers below `fusion_layer`)
/// and a fusion encoder (the rest, with cross-attention), plus the MLM head (`cls.predictions.*`)
/// whose decoder is tied to the word embeddings.
public final class BertModel {
    public let config: BertConfig
    public let wordEmbeddings: Embedding, positionEmbeddings: Embedding, tokenTypeEmbeddings: Embedding
    public let embeddingNorm: LayerNorm
    public private(set) var layers: [BertLayer] = []
    /// MLM head: transform dense + GELU + LayerNorm, then the tied decoder plus `bias`.
    public private(set) var mlmDense: Linear?, mlmNorm: LayerNorm?, mlmBias: Tensor?
    private let bertScope: Scope

    public var fusionLayer: Int { config.fusionLayer ?? config.numHiddenLayers }

    /// `bertScope` holds `embeddings.*` and `encoder.layer.N.*`; `headScope` (if any) holds
    /// `predictions.*`. With `textLayersOnly`, only the embeddings and the layers below
    /// fusion_layer are created; `addFusionLayersAndHead` adds the rest later (so a model can
    /// lay its parameters out in the order backward finishes them).
    public init(bert bertScope: Scope, head headScope: Scope?, config: BertConfig, textLayersOnly: Bool = false) throws {
        self.config = config
        self.bertScope = bertScope
        let h = config.hiddenSize
        let e = bertScope["embeddings"]
        wordEmbeddings = try Embedding(e["word_embeddings"], count: config.vocabSize, dim: h)
        positionEmbeddings = try Embedding(e["position_embeddings"], count: config.maxPositionEmbeddings, dim: h)
        tokenTypeEmbeddings = try Embedding(e["token_type_embeddings"], count: config.typeVocabSize, dim: h)
        embeddingNorm = try LayerNorm(e["LayerNorm"], dim: h, eps: config.layerNormEps)
        let fusion = config.fusionLayer ?? config.numHiddenLayers
        try addLayers(0..<fusion)
        if !textLayersOnly { try addFusionLayersAndHead(head: headScope) }
    }

    private func addLayers(_ range: Range<Int>) throws {
        let fusion = config.fusionLayer ?? config.numHiddenLayers
        for i in range {
            layers.append(try BertLayer(bertScope["encoder"]["layer"][i], config: config, crossAttention: i >= fusion))
        }
    }

    /// Creates the MLM head in `predictions` scope (`cls.predictions.*`).
    public func addMLMHead(_ p: Scope) throws {
        guard mlmDense == nil else { throw TensorError.invalidArgument(op: "BertModel", reason: "MLM head already created") }
        let h = config.hiddenSize
        mlmDense = try Linear(p["transform"]["dense"], in: h, out: h)
        mlmNorm = try LayerNorm(p["transform"]["LayerNorm"], dim: h, eps: config.layerNormEps)
        mlmBias = try p.parameter("bias", [config.vocabSize])
    }

    /// Creates the layers from fusion_layer on and the MLM head (when `head` is given).
    public func addFusionLayersAndHead(head headScope: Scope?) throws {
        guard layers.count == fusionLayer else {
            throw TensorError.invalidArgument(op: "BertModel", reason: "fusion layers already created")
        }
        try addLayers(fusionLayer..<config.numHiddenLayers)
        if let headScope { try addMLMHead(headScope["predictions"]) }
    }

    /// word + position + token type (0) embeddings, LayerNorm, dropout: [B, L, H].
    public func embed(_ text: TextBatch, dropout: DropoutStream?) throws -> Tensor {
        guard text.length <= config.maxPositionEmbeddings else {
            throw TensorError.invalidArgument(op: "BERT embeddings", reason: "sequence length \(text.length) exceeds max_position_embeddings \(config.maxPositionEmbeddings)")
        }
        let h = config.hiddenSize
        let words = try wordEmbeddings(text.ids).reshaped([text.batch, text.length, h])
        let positions = try positionEmbeddings.weight.slice(axis: 0, start: 0, length: text.length)
        let types = try tokenTypeEmbeddings.weight.slice(axis: 0, start: 0, length: 1)
        var x = try embeddingNorm(words + positions + types)
        if let dropout { x = try x.dropout(dropout.hidden, seed: dropout.nextSeed()) }
        return x
    }

    /// Cross-attention keys and values of image tokens [N, T, encoder_width] for every fusion layer.
    public func imageContext(_ image: Tensor) throws -> ImageContext {
        guard image.rank == 3 else {
            throw TensorError.invalidShape(op: "BERT image context", shape: image.shape, reason: "needs [images, tokens, width]")
        }
        let fused = try layers[fusionLayer...].map { layer -> ImageContext.Layer in
            guard let cross = layer.crossAttention else {
                throw TensorError.invalidArgument(op: "BERT image context", reason: "layer has no cross-attention")
            }
            return ImageContext.Layer(keys: try cross.key(image), values: try cross.value(image))
        }
        return ImageContext(layers: fused, imageCount: image.shape[0])
    }

    /// Runs layers `range` on hidden states [B, L, H]. Fusion layers need the image context and
    /// which image each caption attends to (`imageRows`, default: caption b -> image b).
    public func encode(_ hidden: Tensor, mask: TextBatch, layers range: Range<Int>, image: ImageContext? = nil,
                       imageRows: [Int]? = nil, dropout: DropoutStream?) throws -> Tensor {
        let keyMask = mask.additiveMask
        let rows = imageRows ?? Array(0..<hidden.shape[0])
        if let image {
            guard rows.count == hidden.shape[0], rows.allSatisfy({ $0 >= 0 && $0 < image.imageCount }) else {
                throw TensorError.invalidArgument(op: "BERT fusion", reason: "need \(hidden.shape[0]) image rows in [0, \(image.imageCount))")
            }
        }
        var x = hidden
        for i in range {
            let cross = image.flatMap { i >= fusionLayer ? ($0.layers[i - fusionLayer], rows: rows) : nil }
            x = try layers[i](x, keyMask: keyMask, image: cross, dropout: dropout)
        }
        return x
    }

    /// Text encoder (ALBEF mode 'text'): embeddings + layers below fusion_layer.
    public func encodeText(_ text: TextBatch, dropout: DropoutStream?) throws -> Tensor {
        try encode(embed(text, dropout: dropout), mask: text, layers: 0..<fusionLayer, dropout: dropout)
    }

    /// Fusion encoder (ALBEF mode 'fusion'): text states through the cross-attention layers,
    /// caption b attending to image tokens b.
    public func fuse(_ textStates: Tensor, mask: TextBatch, image: Tensor, dropout: DropoutStream?) throws -> Tensor {
        try encode(textStates, mask: mask, layers: fusionLayer..<layers.count, image: imageContext(image), dropout: dropout)
    }

    /// Fusion encoder with cached image keys/values: caption b attends to image `imageRows[b]`.
    public func fuse(_ textStates: Tensor, mask: TextBatch, image: ImageContext, imageRows: [Int],
                     dropout: DropoutStream?) throws -> Tensor {
        try encode(textStates, mask: mask, layers: fusionLayer..<layers.count, image: image, imageRows: imageRows, dropout: dropout)
    }

    /// MLM logits [N, vocab] for hidden rows [N, H].
    public func mlmLogits(_ rows: Tensor) throws -> Tensor {
        guard let mlmDense, let mlmNorm, let mlmBias else {
            throw TensorError.invalidArgument(op: "mlmLogits", reason: "this BERT has no MLM head")
        }
        return try mlmNorm(mlmDense(rows).gelu()).linear(wordEmbeddings.weight, mlmBias)
    }
}
