import ArgumentParser
import ELIPEncoders
import ELIPModel
import ELIPNN
import ELIPTensor
import ELIPText
import Foundation
import Safetensors

struct EmbedTextCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embed-text",
        abstract: "Encode sentences (one per line on stdin) with a pretrained BERT; write hidden states.",
        discussion: """
        Tokenizes with standard BERT framing ([CLS] ... [SEP]), pads to the longest sentence, runs the \
        BERT encoder (no fusion layers) and writes input_ids, attention_mask, last_hidden_state \
        [B, L, H] and mean_pooled_normalized [B, H] (mask-weighted mean, L2-normalised) to a \
        safetensors file. Loads HuggingFace checkpoints as they come: names with or without 'bert.', \
        legacy LayerNorm gamma/beta, extra buffers such as position_ids.
        """
    )

    @Option(help: "BERT weights (.safetensors, HuggingFace names).")
    var bertWeights: String
    @Option(help: "BERT config.json.")
    var bertConfig: String
    @Option(help: "WordPiece vocabulary (vocab.txt).")
    var vocab: String = "assets/bert-base-uncased-vocab.txt"
    @Option(help: "Output file (.safetensors).")
    var out: String
    @Option(help: "Truncate sentences to this many tokens (default: the model's max positions).")
    var maxLength: Int?
    @Option(help: "Threads for BLAS and the engine (default: ELIP_THREADS or all cores).")
    var threads: Int?

    func run() throws {
        try configureThreads(threads)
        var lines: [String] = []
        while let line = readLine(strippingNewline: true) { lines.append(line) }
        guard !lines.isEmpty else { throw ValidationError("no sentences on standard input") }
        try OutputGuard.check(out, inputs: [OutputGuard.Input("--bert-weights", bertWeights), OutputGuard.Input("--bert-config", bertConfig),
                                            OutputGuard.Input("--vocab", vocab)])
        let config = try BertConfig.load(bertConfig)
        let tokenizer = try BertTokenizer(vocabularyFile: vocab)
        let batch = try tokenizer.encodeBatch(lines, framing: .bert, maxLength: maxLength ?? config.maxPositionEmbeddings)
        let text = try TextBatch(ids: batch.inputIds.map(Int.init), mask: batch.attentionMask.map(Int.init),
                                 batch: batch.batchSize, length: batch.length)
        let encoder = try BertEncoder(config: config, weights: SafetensorsFile(path: bertWeights))
        let hidden = try encoder.encode(text)
        let pooled = try Autograd.noGrad { try meanPool(hidden, mask: text.mask).l2Normalized() }
        var w = SafetensorsWriter(metadata: ["producer": "elip embed-text"])
        try w.add("input_ids", int64s: batch.inputIds.map(Int64.init), shape: [batch.batchSize, batch.length])
        try w.add("attention_mask", int64s: batch.attentionMask.map(Int64.init), shape: [batch.batchSize, batch.length])
        try w.add("last_hidden_state", floats: hidden.toArray(), shape: hidden.shape)
        try w.add("mean_pooled_normalized", floats: pooled.toArray(), shape: pooled.shape)
        try w.write(to: out)
        print("encoded \(batch.batchSize) sentences (padded length \(batch.length)) -> \(out)")
    }

    /// Mask-weighted mean over tokens: [B, L, H] -> [B, H].
    func meanPool(_ hidden: Tensor, mask: [Int]) throws -> Tensor {
        let b = hidden.shape[0], l = hidden.shape[1]
        let weights: [Float] = (0..<(b * l)).map { i in
            let n = mask[(i / l * l)..<(i / l * l + l)].reduce(0, +)
            return mask[i] == 0 ? 0 : 1 / Float(max(n, 1))
        }
        return try hidden.mergeRows(weights: weights).reshaped([b, hidden.shape[2]])
    }
}
