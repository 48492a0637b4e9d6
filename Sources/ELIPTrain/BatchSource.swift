import ELIPImage
import ELIPModel
import ELIPNN
import ELIPShards
import ELIPTensor
import ELIPText
import Foundation

/// Where a rank's training batches come from. Random access by (epoch, index) makes resuming
/// exact: the trainer stores its position, not the loader's internals.
public protocol BatchSource: AnyObject {
    /// Batches per epoch for this rank (the same on every rank).
    var batchesPerEpoch: Int { get }
    /// Batch `index` of `epoch` for this rank.
    func batch(epoch: Int, index: Int) throws -> ImageTextBatch
    /// A short description (for logs and the fingerprint).
    var summary: String { get }
    /// Running data-quality counts of this rank (e.g. "data_bad_records"), logged with the metrics.
    var dataCounters: [String: Double] { get }
}

extension BatchSource {
    public var dataCounters: [String: Double] { [:] }
}

/// Synthetic scenes rendered on the fly (debug mode, tests): a permutation of the corpus per
/// epoch from (seed, epoch); rank r of W takes every W-th batch-sized slice.
public final class SyntheticBatchSource: BatchSource {
    public let images: Int
    public let imageSize: Int
    public let batchSize: Int
    public let rank: Int, worldSize: Int
    public let seed: UInt64
    let tokenizer: any CaptionTokenizer
    let captionStyle: CaptionStyle

    public init(images: Int, imageSize: Int, batchSize: Int, rank: Int, worldSize: Int, seed: UInt64,
                tokenizer: any CaptionTokenizer, captionStyle: CaptionStyle = .albef()) {
        self.images = images
        self.imageSize = imageSize
        self.batchSize = batchSize
        self.rank = rank
        self.worldSize = worldSize
        self.seed = seed
        self.tokenizer = tokenizer
        self.captionStyle = captionStyle
    }

    public var batchesPerEpoch: Int { max(1, images / (batchSize * worldSize)) }
    public var summary: String { "synthetic scenes: \(images) images of \(imageSize) px, seed \(seed)" }

    /// The corpus order of `epoch` (Fisher-Yates from a seeded generator).
    func permutation(epoch: Int) -> [Int] { Self.permutation(count: images, seed: seed, epoch: epoch) }

    static func permutation(count: Int, seed: UInt64, epoch: Int) -> [Int] {
        var g = SeededGenerator(seed: seed &+ UInt64(epoch) &* 0x51_7CC1_B727_220A)
        var p = Array(0..<count)
        if p.count > 1 {
            for i in stride(from: p.count - 1, to: 0, by: -1) { p.swapAt(i, Int(g.next() % UInt64(i + 1))) }
        }
        return p
    }

    public func batch(epoch: Int, index: Int) throws -> ImageTextBatch {
        let order = permutation(epoch: epoch)
        let start = ((index % batchesPerEpoch) * worldSize + rank) * batchSize
        var pixels: [Float] = []
        pixels.reserveCapacity(batchSize * 3 * imageSize * imageSize)
        var captions: [String] = []
        // The caption choice is keyed by the sample's position in the epoch, not by rank, so
        // W ranks x batch B see exactly the samples of one rank with batch W * B.
        let captionSeed = CounterRandom.mix(seed ^ UInt64(epoch) &* 0x2545_F491_4F6C_DD1D)
        for k in 0..<batchSize {
            let position = (start + k) % images
            let scene = SyntheticScenes.scene(index: order[position], seed: seed, size: imageSize)
            ImageNormalization.append(pixels: scene.pixels, width: imageSize, height: imageSize, to: &pixels)
            let choice = Int(CounterRandom.uniform(seed: captionSeed, index: position) * Float(scene.captions.count))
            captions.append(scene.captions[min(choice, scene.captions.count - 1)])
        }
        let tokens = try tokenizer.encodeBatch(captions, style: captionStyle, cleaned: false)
        let text = try TextBatch(ids: tokens.inputIds.map(Int.init), mask: tokens.attentionMask.map(Int.init),
                                 batch: tokens.batchSize, length: tokens.length)
        return ImageTextBatch(images: try Tensor(pixels, shape: [batchSize, 3, imageSize, imageSize]), text: text)
    }
}
