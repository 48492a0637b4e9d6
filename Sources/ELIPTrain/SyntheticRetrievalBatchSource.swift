import ELIPImage
import ELIPModel
import ELIPNN
import ELIPShards
import ELIPTensor
import ELIPText
import Foundation

/// Retrieval training batches from the synthetic scenes, shaped as re_train_dataset: one sample
/// per (scene, caption) pair, labelled with the scene index as image id (captions of one scene
/// are each other's positives). `images` scenes x 4 captions, a permutation of those samples per
/// epoch; rank r of W takes every W-th batch-sized slice, so W ranks x batch B see the samples of
/// one rank with batch W * B.
public final class SyntheticRetrievalBatchSource: BatchSource {
    /// SyntheticScenes writes four paraphrases per scene.
    public static let captionsPerScene = 4
    public let images: Int, imageSize: Int, batchSize: Int
    public let rank: Int, worldSize: Int
    public let seed: UInt64
    let tokenizer: BertTokenizer
    let captionStyle: CaptionStyle

    public init(images: Int, imageSize: Int, batchSize: Int, rank: Int, worldSize: Int, seed: UInt64,
                tokenizer: BertTokenizer, captionStyle: CaptionStyle) {
        self.images = images
        self.imageSize = imageSize
        self.batchSize = batchSize
        self.rank = rank
        self.worldSize = worldSize
        self.seed = seed
        self.tokenizer = tokenizer
        self.captionStyle = captionStyle
    }

    public var sampleCount: Int { images * Self.captionsPerScene }
    public var batchesPerEpoch: Int { max(1, sampleCount / (batchSize * worldSize)) }
    public var summary: String { "synthetic retrieval: \(images) scenes x \(Self.captionsPerScene) captions of \(imageSize) px, seed \(seed)" }

    /// The batch of `samples` (sample s = scene s / 4, its caption s % 4; label = the scene).
    public func batch(samples: [Int]) throws -> ImageTextBatch {
        var pixels: [Float] = []
        pixels.reserveCapacity(samples.count * 3 * imageSize * imageSize)
        var captions: [String] = [], ids: [Int] = []
        for s in samples {
            let index = s / Self.captionsPerScene
            let scene = SyntheticScenes.scene(index: index, seed: seed, size: imageSize)
            ImageNormalization.append(pixels: scene.pixels, width: imageSize, height: imageSize, to: &pixels)
            captions.append(scene.captions[s % Self.captionsPerScene])
            ids.append(index)
        }
        let tokens = try tokenizer.encodeBatch(captions, style: captionStyle)
        let text = try TextBatch(ids: tokens.inputIds.map(Int.init), mask: tokens.attentionMask.map(Int.init),
                                 batch: tokens.batchSize, length: tokens.length)
        return ImageTextBatch(images: try Tensor(pixels, shape: [samples.count, 3, imageSize, imageSize]), text: text, labels: ids)
    }

    public func batch(epoch: Int, index: Int) throws -> ImageTextBatch {
        let order = SyntheticBatchSource.permutation(count: sampleCount, seed: seed, epoch: epoch)
        let start = ((index % batchesPerEpoch) * worldSize + rank) * batchSize
        return try batch(samples: (0..<batchSize).map { order[(start + $0) % sampleCount] })
    }
}
