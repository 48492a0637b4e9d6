import ELIPImage
import ELIPModel
import ELIPNN
import ELIPShards
import ELIPTensor
import ELIPText
import Foundation

/// VQA batches from the synthetic scenes (`SyntheticQuestions`): `images` scenes x 3 questions,
/// each answered by 10 agreeing humans (so one answer of weight 1), a permutation of those
/// records per epoch; rank r of W takes every W-th batch-sized slice, so W ranks x batch B see the
/// records of one rank with batch W * B (the property 2 ranks x B == 1 rank x 2B rests on).
public final class SyntheticVQABatchSource: BatchSource {
    public let images: Int, imageSize: Int, batchSize: Int
    public let rank: Int, worldSize: Int
    public let seed: UInt64
    let tokenizer: BertTokenizer
    let questionStyle: CaptionStyle, answerStyle: CaptionStyle

    public init(images: Int, imageSize: Int, batchSize: Int, rank: Int, worldSize: Int, seed: UInt64,
                tokenizer: BertTokenizer, questionStyle: CaptionStyle, answerStyle: CaptionStyle) {
        self.images = images
        self.imageSize = imageSize
        self.batchSize = batchSize
        self.rank = rank
        self.worldSize = worldSize
        self.seed = seed
        self.tokenizer = tokenizer
        self.questionStyle = questionStyle
        self.answerStyle = answerStyle
    }

    public var recordCount: Int { images * 3 }
    public var batchesPerEpoch: Int { max(1, recordCount / (batchSize * worldSize)) }
    public var summary: String { "synthetic VQA: \(images) scenes x 3 questions of \(imageSize) px, seed \(seed)" }

    public func batch(records: [Int]) throws -> ImageTextBatch {
        var pixels: [Float] = []
        pixels.reserveCapacity(records.count * 3 * imageSize * imageSize)
        var questions: [String] = [], answers: [[VQARecord.Answer]] = []
        for r in records {
            let scene = SyntheticScenes.scene(index: r / 3, seed: seed, size: imageSize)
            let q = SyntheticQuestions.questions(for: scene, index: r / 3, seed: seed)[r % 3]
            ImageNormalization.append(pixels: scene.pixels, width: imageSize, height: imageSize, to: &pixels)
            questions.append(q.question)
            answers.append([VQARecord.Answer(q.answer, weight: 1)])
        }
        let tokens = try tokenizer.encodeBatch(questions, style: questionStyle)
        let text = try TextBatch(ids: tokens.inputIds.map(Int.init), mask: tokens.attentionMask.map(Int.init),
                                 batch: tokens.batchSize, length: tokens.length)
        var batch = ImageTextBatch(images: try Tensor(pixels, shape: [records.count, 3, imageSize, imageSize]), text: text)
        batch.answers = try ShardBatchSource.answerBatch(answers, tokenizer: tokenizer, style: answerStyle, eos: "[SEP]")
        return batch
    }

    public func batch(epoch: Int, index: Int) throws -> ImageTextBatch {
        let order = SyntheticBatchSource.permutation(count: recordCount, seed: seed, epoch: epoch)
        let start = ((index % batchesPerEpoch) * worldSize + rank) * batchSize
        return try batch(records: (0..<batchSize).map { order[(start + $0) % recordCount] })
    }
}
