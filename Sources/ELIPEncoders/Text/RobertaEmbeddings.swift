import ELIPNN
import ELIPTensor

/// RoBERTa's embeddings (HF `RobertaEmbeddings`, names as BERT's): word + position + token type
/// 0, LayerNorm, dropout. Unlike BERT, positions come from the ids: real tokens get
/// padding_idx + 1, padding_idx + 2, ... in order and pads get padding_idx (HF
/// `create_position_ids_from_input_ids`: cumsum(id != pad) * (id != pad) + pad), so a pad id
/// inside a sequence (a random MLM replacement) shifts the positions after it, as in the official
/// code. The layers after it are `BertLayerStack` (post-LN, same math; RoBERTa's eps is 1e-5).
public final class RobertaEmbeddings {
    public let config: BertConfig
    public let paddingIndex: Int
    public let wordEmbeddings: Embedding, positionEmbeddings: Embedding
    public let tokenTypeEmbeddings: Embedding
    public let layerNorm: LayerNorm

    /// `config.typeVocabSize` must be at least 1 (roberta-base has 1 row).
    public init(_ scope: Scope, config: BertConfig, paddingIndex: Int = 1) throws {
        guard config.typeVocabSize >= 1 else {
            throw TensorError.invalidArgument(op: "RoBERTa embeddings", reason: "type_vocab_size must be at least 1")
        }
        guard paddingIndex >= 0, paddingIndex < config.vocabSize, paddingIndex < config.maxPositionEmbeddings else {
            throw TensorError.invalidArgument(op: "RoBERTa embeddings", reason: "padding index \(paddingIndex) outside the vocabulary or position table")
        }
        self.config = config
        self.paddingIndex = paddingIndex
        let h = config.hiddenSize
        wordEmbeddings = try Embedding(scope["word_embeddings"], count: config.vocabSize, dim: h)
        positionEmbeddings = try Embedding(scope["position_embeddings"], count: config.maxPositionEmbeddings, dim: h)
        tokenTypeEmbeddings = try Embedding(scope["token_type_embeddings"], count: config.typeVocabSize, dim: h)
        layerNorm = try LayerNorm(scope["LayerNorm"], dim: h, eps: config.layerNormEps)
    }

    public var parameters: [Tensor] {
        [wordEmbeddings.weight, positionEmbeddings.weight, tokenTypeEmbeddings.weight] + layerNorm.parameters
    }

    /// Position ids of a batch computed from its ids (row by row).
    public func positionIds(_ text: TextBatch) -> [Int] {
        var out = [Int](repeating: paddingIndex, count: text.ids.count)
        for r in 0..<text.batch {
            var count = 0
            for k in 0..<text.length where text.ids[r * text.length + k] != paddingIndex {
                count += 1
                out[r * text.length + k] = paddingIndex + count
            }
        }
        return out
    }

    /// [B, L, H] for a batch of ids.
    public func callAsFunction(_ text: TextBatch, dropout: DropoutStream?) throws -> Tensor {
        // The largest position is padding_idx + L (a row without pads).
        guard paddingIndex + text.length < config.maxPositionEmbeddings else {
            throw TensorError.invalidArgument(op: "RoBERTa embeddings",
                reason: "sequence length \(text.length) needs position \(paddingIndex + text.length) but max_position_embeddings is \(config.maxPositionEmbeddings)")
        }
        let h = config.hiddenSize
        let words = try wordEmbeddings(text.ids).reshaped([text.batch, text.length, h])
        let positions = try positionEmbeddings(positionIds(text)).reshaped([text.batch, text.length, h])
        let sum = try words + positions + tokenTypeEmbeddings.weight.slice(axis: 0, start: 0, length: 1)
        let x = try layerNorm(sum)
        return try dropout.map { try $0.hiddenDropout(x) } ?? x
    }
}
