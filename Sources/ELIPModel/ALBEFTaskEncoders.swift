import ELIPEncoders
import ELIPNN
import ELIPTensor

/// The encoders of ALBEF's task models (model_ve.py, model_vqa.py, model_retrieval.py): a timm
/// ViT `visual_encoder<suffix>` (never pruned downstream) and a BertModel `text_encoder<suffix>`
/// (no `bert.` level, no MLM head) whose layers from `fusion_layer` on cross-attend to the image
/// tokens. Built from the same ELIPEncoders parts as the pre-training model.
public struct ALBEFTaskEncoders {
    public let visual: VisionTransformer
    public let embeddings: BertEmbeddings
    public let textLayers: BertLayerStack, fusionLayers: BertLayerStack

    /// `suffix` "" for the online model, "_m" for the momentum copy. `imagePairs`: NLVR2's
    /// fusion layers, alternating left/right image with key/value shared per layer pair.
    public init(_ scope: Scope, suffix: String = "", vision: VisionConfig, imageRes: Int, bert: BertConfig, imagePairs: Bool = false) throws {
        let fusion = bert.fusionLayer ?? 6
        visual = try VisionTransformer(scope["visual_encoder" + suffix], config: vision, imageRes: imageRes)
        let text = scope["text_encoder" + suffix]
        embeddings = try BertEmbeddings(text["embeddings"], config: bert)
        textLayers = try BertLayerStack(text["encoder"], config: bert, layers: 0..<fusion, crossAttention: { _ in false })
        fusionLayers = imagePairs
            ? try .alternatingImagePairs(text["encoder"], config: bert, layers: fusion..<bert.numHiddenLayers)
            : try BertLayerStack(text["encoder"], config: bert, layers: fusion..<bert.numHiddenLayers, crossAttention: { _ in true })
    }

    /// Image tokens [B, T, D] of the unpruned ViT.
    public func images(_ images: Tensor) throws -> Tensor { try visual(images).tokens }

    /// `text_encoder(ids, mask, encoder_hidden_states=image tokens)` in mode multi_modal: text
    /// layers, then fusion layers where row b attends to `imageRows[b]` (default: image b).
    public func multimodal(_ text: TextBatch, imageTokens: Tensor, imageRows: [Int]? = nil, dropout: DropoutStream?) throws -> Tensor {
        let states = try textLayers(embeddings(text, dropout: dropout), mask: text, dropout: dropout)
        return try fusionLayers(states, mask: text, images: fusionLayers.crossAttentionContext(imageTokens), imageRows: imageRows, dropout: dropout)
    }

    /// NLVR2's multi_modal pass: fusion layers alternate between the left and the right image
    /// tokens ([B, T, D] each) of each text's pair.
    public func multimodal(_ text: TextBatch, left: Tensor, right: Tensor, dropout: DropoutStream?) throws -> Tensor {
        let states = try textLayers(embeddings(text, dropout: dropout), mask: text, dropout: dropout)
        return try fusionLayers.alternating(states, mask: text, imageTokens: [left, right], dropout: dropout)
    }

    /// The [CLS] rows [B, H] of states [B, L, H].
    public static func cls(_ x: Tensor) throws -> Tensor {
        try x.slice(axis: 1, start: 0, length: 1).reshaped([x.shape[0], x.shape[2]])
    }
}

/// ALBEF's classification head `nn.Sequential(Linear(H, H), ReLU(), Linear(H, classes))`
/// (`cls_head.0`, `cls_head.2`; SNLI-VE, NLVR2), with PyTorch's default Linear initialisation,
/// which the head keeps when fine-tuning starts from a pre-training checkpoint.
public struct ClassificationHead {
    public let hidden: Linear, output: Linear
    public init(_ scope: Scope, width: Int, classes: Int) throws {
        hidden = try Linear(scope["0"], in: width, out: width, pytorchDefaultInit: true)
        output = try Linear(scope["2"], in: width, out: classes, pytorchDefaultInit: true)
    }
    public func callAsFunction(_ x: Tensor) throws -> Tensor { try output(hidden(x).relu()) }
}
