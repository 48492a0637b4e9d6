import ELIPNN
import ELIPTensor

/// ALBEF's NLVR2 text encoder (models/model_nlvr.py, xbert.py): fusion layers `first, first+1,
/// ...` cross-attend alternately to the first and the second image of a pair
/// (`encoder_hidden_states[(layer - fusion_layer) % 2]`), and within each pair of layers
/// (first + 2j, first + 2j + 1) the cross-attention key and value Linears are one parameter
/// (`share_cross_attention`), named under the even layer first (PyTorch's `named_parameters`
/// order) and also under the odd one.
extension BertLayerStack {
    /// Layers `range` (an even count), every one with cross-attention of width `encoder_width`.
    public static func alternatingImagePairs(_ encoderScope: Scope, config: BertConfig, layers range: Range<Int>) throws -> BertLayerStack {
        guard range.count % 2 == 0 else {
            throw TensorError.invalidArgument(op: "NLVR2 text encoder", reason: "fusion layers \(range) must come in left/right pairs (an even count)")
        }
        let width = config.encoderWidth ?? config.hiddenSize, h = config.hiddenSize, heads = config.numAttentionHeads
        var layers: [PostNormTransformerLayer] = []
        for i in range {
            let scope = encoderScope["layer"][i]
            let selfAttention = try PostNormTransformerLayer.Sublayer(scope["attention"], hidden: h, keyWidth: h, heads: heads, eps: config.layerNormEps)
            let cross: PostNormTransformerLayer.Sublayer
            if (i - range.lowerBound) % 2 == 1, let partner = layers.last?.crossAttention {
                cross = try .init(scope["crossattention"], hidden: h, heads: heads, eps: config.layerNormEps, sharingKeyValueOf: partner)
            } else {
                cross = try .init(scope["crossattention"], hidden: h, keyWidth: width, heads: heads, eps: config.layerNormEps)
            }
            let feedForward = try MLP(fc1: Linear(scope["intermediate"]["dense"], in: h, out: config.intermediateSize),
                                      fc2: Linear(scope["output"]["dense"], in: config.intermediateSize, out: h), activation: .gelu)
            let outputNorm = try LayerNorm(scope["output"]["LayerNorm"], dim: h, eps: config.layerNormEps)
            layers.append(PostNormTransformerLayer(selfAttention: selfAttention, crossAttention: cross, feedForward: feedForward, outputNorm: outputNorm))
        }
        return BertLayerStack(layers: layers, config: config, range: range, causal: false)
    }

    /// Runs the layers on text states [B, L, H] where layer k (counted from the stack's first)
    /// lets row b attend to image b of `imageTokens[k % imageTokens.count]` ([B, T, encoder_width]
    /// each: the pairs' left images, then their right images).
    public func alternating(_ hidden: Tensor, mask: TextBatch, imageTokens: [Tensor], dropout: DropoutStream?) throws -> Tensor {
        let rows = Array(0..<hidden.shape[0])
        guard !imageTokens.isEmpty, imageTokens.allSatisfy({ $0.rank == 3 && $0.shape[0] == rows.count }) else {
            throw TensorError.invalidArgument(op: "NLVR2 cross-attention",
                                              reason: "need one image per text row (\(rows.count)) in each image set, got \(imageTokens.map(\.shape))")
        }
        var x = hidden
        for (k, layer) in layers.enumerated() {
            guard let cross = layer.crossAttention else {
                throw TensorError.invalidArgument(op: "NLVR2 cross-attention", reason: "layer \(range.lowerBound + k) has no cross-attention")
            }
            let kv = try cross.attention.keyValues(imageTokens[k % imageTokens.count])
            x = try layer(x, mask: .keyPadding(mask.additiveMask), cross: .cached(kv, rows: rows), dropout: dropout)
        }
        return x
    }
}
