import ELIPNN
import ELIPTensor

/// Shape of METER's cross-modal part (SPEC-METER §5).
public struct METERFusionConfig: Equatable, Sendable {
    /// H: width of both streams in the co-attention layers.
    public var hidden = 768
    public var heads = 12
    /// `num_top_layer`: layer pairs (one text layer and one image layer each).
    public var layers = 6
    /// Width of RoBERTa's output and of the ViT's output (before the transforms).
    public var textWidth = 768
    public var imageWidth = 768
    /// Rows of `token_type_embeddings`: 2 (text, image); NLVR2 adds a third.
    public var tokenTypes = 2
    /// LayerNorm eps of the co-attention layers: METER builds their RobertaConfig with BERT's
    /// default 1e-12 (not RoBERTa's 1e-5).
    public var layerNormEps: Float = 1e-12

    public init() {}

    /// Feed-forward width, 4H (METER's `mlp_ratio`).
    public var intermediate: Int { 4 * hidden }
}

/// METER's fusion (meter_module.py `infer` after the encoders): both streams projected to H plus
/// a modality embedding, then `layers` co-attention pairs that update the streams simultaneously
/// (`x' = text_layer(x, y)`, `y' = image_layer(y, x)`), then two tanh poolers on position 0.
/// Each co-attention layer is METER's `BertCrossLayer`: post-LN self-attention, cross-attention to
/// the other stream, feed-forward — `PostNormTransformerLayer` with cross-attention, under the
/// same HuggingFace names. Text keys carry the −10000 pad mask in both streams' attention; image
/// keys are never masked.
///
/// Names (at the model's root, as in METER's state_dict): `cross_modal_{text,image}_transform`,
/// `token_type_embeddings`, `cross_modal_{text,image}_layers.N.*`,
/// `cross_modal_{text,image}_pooler.dense`.
public final class METERCoAttentionFusion {
    public let config: METERFusionConfig
    public let textTransform: Linear, imageTransform: Linear
    public let tokenTypeEmbeddings: Embedding
    public let textLayers: [PostNormTransformerLayer], imageLayers: [PostNormTransformerLayer]
    public let textPooler: Linear, imagePooler: Linear

    /// What the caller reads: every position of both final streams (MLM reads the text tokens),
    /// or only the pooled features (ITM and the task heads read position 0 of each stream, so the
    /// last layer pair runs for that row only; the results are equal, at less cost).
    public enum Outputs: Sendable { case allTokens, pooledOnly }

    public struct Output {
        /// Final text stream [B, L, H] (the MLM head reads every position); [B, 1, H] (position 0)
        /// with `.pooledOnly`.
        public let text: Tensor
        /// Final image stream [B, T, H]; [B, 1, H] with `.pooledOnly`.
        public let image: Tensor
        /// [tanh(text pooler(text[:, 0])), tanh(image pooler(image[:, 0]))], [B, 2H]: what the ITM
        /// and downstream heads read.
        public let clsFeats: Tensor
    }

    /// `root` is the model's root scope (the names above hang directly under it).
    public init(_ root: Scope, config: METERFusionConfig) throws {
        self.config = config
        let h = config.hidden
        guard config.heads >= 1, h % config.heads == 0 else {
            throw TensorError.invalidArgument(op: "METER fusion", reason: "hidden size \(h) is not a multiple of \(config.heads) heads")
        }
        guard config.layers >= 1 else {
            throw TensorError.invalidArgument(op: "METER fusion", reason: "needs at least one co-attention layer pair, got \(config.layers)")
        }
        textTransform = try Linear(root["cross_modal_text_transform"], in: config.textWidth, out: h)
        imageTransform = try Linear(root["cross_modal_image_transform"], in: config.imageWidth, out: h)
        tokenTypeEmbeddings = try Embedding(root["token_type_embeddings"], count: config.tokenTypes, dim: h)
        func layers(_ name: String) throws -> [PostNormTransformerLayer] {
            try (0..<config.layers).map {
                try PostNormTransformerLayer(root[name][$0], hidden: h, heads: config.heads, intermediate: config.intermediate,
                                             eps: config.layerNormEps, crossAttentionWidth: h)
            }
        }
        textLayers = try layers("cross_modal_text_layers")
        imageLayers = try layers("cross_modal_image_layers")
        textPooler = try Linear(root["cross_modal_text_pooler"]["dense"], in: h, out: h)
        imagePooler = try Linear(root["cross_modal_image_pooler"]["dense"], in: h, out: h)
    }

    public var parameters: [Tensor] {
        textTransform.parameters + imageTransform.parameters + [tokenTypeEmbeddings.weight]
            + textLayers.flatMap(\.parameters) + imageLayers.flatMap(\.parameters)
            + textPooler.parameters + imagePooler.parameters
    }

    /// Fuses RoBERTa's output `text` [B, L, textWidth] (its pad mask in `textMask`) with the ViT's
    /// `image` [B, T, imageWidth]. `imageTokenType` is 1 (NLVR2's second image: 2).
    public func callAsFunction(text: Tensor, textMask: TextBatch, image: Tensor, imageTokenType: Int = 1,
                               outputs: Outputs = .allTokens, dropout: DropoutStream?) throws -> Output {
        let b = text.shape[0], h = config.hidden
        var (x, y, textKeys) = try streamsBeforeLastLayer(text: text, textMask: textMask, image: image, imageTokenType: imageTokenType,
                                                          dropout: dropout)
        let (textLayer, imageLayer) = (textLayers[config.layers - 1], imageLayers[config.layers - 1])
        switch outputs {
        case .pooledOnly:
            let x1 = try textLayer.firstRow(x, mask: textKeys, cross: .context(y, mask: .none), dropout: dropout)
            let y1 = try imageLayer.firstRow(y, mask: .none, cross: .context(x, mask: textKeys), dropout: dropout)
            (x, y) = (x1, y1)
        case .allTokens:
            let x1 = try textLayer(x, mask: textKeys, cross: .context(y, mask: .none), dropout: dropout)
            let y1 = try imageLayer(y, mask: .none, cross: .context(x, mask: textKeys), dropout: dropout)
            (x, y) = (x1, y1)
        }
        func first(_ s: Tensor) throws -> Tensor { try s.slice(axis: 1, start: 0, length: 1).reshaped([b, h]) }
        let pooled = try Tensor.concat([textPooler(first(x)).tanh(), imagePooler(first(y)).tanh()], axis: 1)
        return Output(text: x, image: y, clsFeats: pooled)
    }

    /// Rows `reading[b]` of caption b's final text stream, [total, H] in caption order (what the
    /// MLM head reads: the masked positions). The last text layer runs those rows only and the
    /// last image layer not at all (nothing reads it); without dropout the rows equal those of
    /// `callAsFunction(...).text`.
    public func textRows(text: Tensor, textMask: TextBatch, image: Tensor, imageTokenType: Int = 1, reading: [[Int]],
                         dropout: DropoutStream?) throws -> Tensor {
        let (x, y, _) = try streamsBeforeLastLayer(text: text, textMask: textMask, image: image, imageTokenType: imageTokenType,
                                                   dropout: dropout)
        let b = x.shape[0]
        return try textLayers[config.layers - 1].readRows(
            x, reading: reading, dropout: dropout,
            mask: { entries in .keyPadding(try (entries.count == b ? textMask : textMask.rows(entries)).additiveMask) },
            cross: { entries in .context(entries.count == b ? y : try y.gatherRows(entries), mask: .none) })
    }

    /// Both streams after the transforms and every co-attention pair but the last, and the text
    /// key mask.
    private func streamsBeforeLastLayer(text: Tensor, textMask: TextBatch, image: Tensor, imageTokenType: Int,
                                        dropout: DropoutStream?) throws -> (text: Tensor, image: Tensor, textKeys: AttentionMask) {
        let b = text.shape[0]
        guard text.rank == 3, image.rank == 3, image.shape[0] == b, textMask.batch == b, textMask.length == text.shape[1] else {
            throw TensorError.shapeMismatch(op: "METER fusion (text [B, L, D] vs image [B, T, D] and mask)", lhs: text.shape, rhs: image.shape)
        }
        guard imageTokenType >= 1, imageTokenType < config.tokenTypes else {
            throw TensorError.invalidArgument(op: "METER fusion", reason: "image token type \(imageTokenType) outside [1, \(config.tokenTypes))")
        }
        let types = tokenTypeEmbeddings.weight
        var x = try textTransform(text) + types.slice(axis: 0, start: 0, length: 1)
        var y = try imageTransform(image) + types.slice(axis: 0, start: imageTokenType, length: 1)
        let textKeys = AttentionMask.keyPadding(textMask.additiveMask)
        for (textLayer, imageLayer) in zip(textLayers, imageLayers).dropLast() {
            let x1 = try textLayer(x, mask: textKeys, cross: .context(y, mask: .none), dropout: dropout)
            let y1 = try imageLayer(y, mask: .none, cross: .context(x, mask: textKeys), dropout: dropout)
            (x, y) = (x1, y1)
        }
        return (x, y, textKeys)
    }
}

/// METER's MLM head (`mlm_score`, heads.py `MLMHead`): decoder(LN(GELU(dense(x)))) + bias, with
/// its own decoder matrix `mlm_score.decoder.weight` [V, H] (not tied to the word embeddings, no
/// decoder bias) and `mlm_score.bias` [V]; LN eps 1e-12.
public final class METERMLMHead {
    public let dense: Linear, layerNorm: LayerNorm
    public let decoderWeight: Tensor, bias: Tensor

    /// `scope` is `mlm_score`.
    public init(_ scope: Scope, hidden: Int, vocabSize: Int, eps: Float = 1e-12) throws {
        dense = try Linear(scope["transform"]["dense"], in: hidden, out: hidden)
        layerNorm = try LayerNorm(scope["transform"]["LayerNorm"], dim: hidden, eps: eps)
        decoderWeight = try scope["decoder"].parameter("weight", [vocabSize, hidden], init: defaultWeightInit)
        bias = try scope.parameter("bias", [vocabSize], init: .zeros)
    }

    public var parameters: [Tensor] { dense.parameters + layerNorm.parameters + [decoderWeight, bias] }

    /// Vocabulary logits [..., V] for hidden states [..., H].
    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try layerNorm(dense(x).gelu()).linear(decoderWeight, bias)
    }
}
