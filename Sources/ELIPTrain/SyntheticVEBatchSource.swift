import ELIPImage
import ELIPModel
import ELIPNN
import ELIPShards
import ELIPTensor
import ELIPText
import Foundation

/// SNLI-VE-style batches from the synthetic scenes (`SyntheticEntailment`): `images` scenes x 3
/// statements (one per label), a permutation of those records per epoch; rank r of W takes every
/// W-th batch-sized slice, so W ranks x batch B see the records of one rank with batch W * B.
/// `split` keeps held-out scenes apart from the training ones (another scene stream).
public final class SyntheticVEBatchSource: BatchSource {
    public enum Split: String, Sendable { case train, test }
    public let images: Int, imageSize: Int, batchSize: Int
    public let rank: Int, worldSize: Int
    public let seed: UInt64
    public let split: Split
    let tokenizer: BertTokenizer
    let captionStyle: CaptionStyle

    public init(images: Int, imageSize: Int, batchSize: Int, rank: Int, worldSize: Int, seed: UInt64,
                split: Split = .train, tokenizer: BertTokenizer, captionStyle: CaptionStyle) {
        self.images = images
        self.imageSize = imageSize
        self.batchSize = batchSize
        self.rank = rank
        self.worldSize = worldSize
        self.seed = seed
        self.split = split
        self.tokenizer = tokenizer
        self.captionStyle = captionStyle
    }

    /// Records (scene, statement) of the split.
    public var recordCount: Int { images * 3 }
    public var batchesPerEpoch: Int { max(1, recordCount / (batchSize * worldSize)) }
    public var summary: String { "synthetic entailment (\(split.rawValue)): \(images) scenes x 3 statements of \(imageSize) px, seed \(seed)" }

    /// The scene stream of the split: held-out scenes come from another seed.
    var sceneSeed: UInt64 { split == .train ? seed : seed ^ 0x7E57_5EED_0000_0001 }

    /// Record `r`: scene r / 3, its statement r % 3 (label order).
    public func record(_ r: Int) -> (scene: SyntheticScenes.Scene, statement: SyntheticEntailment.Statement) {
        let scene = SyntheticScenes.scene(index: r / 3, seed: sceneSeed, size: imageSize)
        return (scene, SyntheticEntailment.statements(for: scene, index: r / 3, seed: sceneSeed)[r % 3])
    }

    /// The batch of `records` (images, tokenised sentences, labels).
    public func batch(records: [Int]) throws -> ImageTextBatch {
        var pixels: [Float] = []
        pixels.reserveCapacity(records.count * 3 * imageSize * imageSize)
        var sentences: [String] = [], labels: [Int] = []
        for r in records {
            let (scene, statement) = record(r)
            ImageNormalization.append(pixels: scene.pixels, width: imageSize, height: imageSize, to: &pixels)
            sentences.append(statement.sentence)
            labels.append(statement.label)
        }
        let tokens = try tokenizer.encodeBatch(sentences, style: captionStyle)
        let text = try TextBatch(ids: tokens.inputIds.map(Int.init), mask: tokens.attentionMask.map(Int.init),
                                 batch: tokens.batchSize, length: tokens.length)
        return ImageTextBatch(images: try Tensor(pixels, shape: [records.count, 3, imageSize, imageSize]), text: text, labels: labels)
    }

    public func batch(epoch: Int, index: Int) throws -> ImageTextBatch {
        let order = SyntheticBatchSource.permutation(count: recordCount, seed: seed, epoch: epoch)
        let start = ((index % batchesPerEpoch) * worldSize + rank) * batchSize
        return try batch(records: (0..<batchSize).map { order[(start + $0) % recordCount] })
    }
}
