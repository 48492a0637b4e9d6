import ELIPImage
import ELIPModel
import ELIPNN
import ELIPShards
import ELIPTensor
import ELIPText
import Foundation

/// NLVR2 training batches from `elip build-dataset --format nlvr2` shards: a permutation of all
/// pairs per epoch from (seed, epoch); rank r of W takes every W-th batch-sized slice, so W ranks
/// x batch B see the pairs of one rank with batch W * B. The batch's images are the B left images
/// then the B right ones (model_nlvr.py's `torch.cat([image0, image1])`); labels 1 True, 0 False.
/// Each image gets the training transform on its own (nlvr_dataset.py transforms the two
/// independently), drawn from the pair's stream (seed, epoch, global pair position): left first,
/// then right. So a batch is a pure function of (seed, data, epoch, index, rank, world size).
public final class NLVRBatchSource: BatchSource {
    public let dataset: NLVRPairDataset
    public let batchSize: Int, rank: Int, worldSize: Int
    public let seed: UInt64
    public let transform: ImageTransform
    let tokenizer: BertTokenizer
    let captionStyle: CaptionStyle
    let decoder: JPEGDecoder

    public init(dataset: NLVRPairDataset, batchSize: Int, rank: Int, worldSize: Int, seed: UInt64, transform: ImageTransform,
                tokenizer: BertTokenizer, captionStyle: CaptionStyle) throws {
        guard dataset.pairs.count >= batchSize * worldSize else {
            throw LoaderError.tooFewRecords(minRecordsPerRank: dataset.pairs.count / max(1, worldSize), batchSize: batchSize, worldSize: worldSize)
        }
        self.dataset = dataset
        self.batchSize = batchSize
        self.rank = rank
        self.worldSize = worldSize
        self.seed = seed
        self.transform = transform
        self.tokenizer = tokenizer
        self.captionStyle = captionStyle
        do { decoder = try JPEGDecoder() } catch { throw LoaderError.invalidArgument("JPEG decoder: \(error)") }
    }

    /// Full global batches per epoch (the rest of an epoch is dropped, as drop_last).
    public var batchesPerEpoch: Int { dataset.pairs.count / (batchSize * worldSize) }
    public var summary: String {
        "NLVR2 pairs: \(dataset.pairs.count) pairs over \(dataset.listing.totalRecords) images in \(dataset.listing.shards.count) shards (manifest \(String(format: "%08x", dataset.listing.digest))), \(transform.imageSize) px, seed \(seed)"
    }

    public func batch(epoch: Int, index: Int) throws -> ImageTextBatch {
        let order = SyntheticBatchSource.permutation(count: dataset.pairs.count, seed: seed, epoch: epoch)
        let start = ((index % batchesPerEpoch) * worldSize + rank) * batchSize
        let size = transform.imageSize, floats = 3 * size * size
        var pixels = [Float](repeating: 0, count: 2 * batchSize * floats)
        var sentences: [String] = [], labels: [Int] = []
        for k in 0..<batchSize {
            let pair = dataset.pairs[order[start + k]]
            var rng = LoaderRandom(seed: seed, stream: .sample, UInt64(epoch), UInt64(start + k))
            for (slot, ref) in [(k, pair.left), (batchSize + k, pair.right)] {
                let image = try transform.apply(try dataset.image(ref, decoder: decoder), rng: &rng)
                guard image.width == size, image.height == size else {
                    throw LoaderError.badRecord(shard: dataset.listing.shards[ref.shard].name, key: Int(ref.key),
                                                reason: "transform produced \(image.width)x\(image.height), not \(size)x\(size)")
                }
                pixels.withUnsafeMutableBufferPointer { PixelNormalization.write(image, to: $0.baseAddress! + slot * floats) }
            }
            sentences.append(pair.sentence)
            labels.append(pair.label)
        }
        let tokens = try tokenizer.encodeBatch(sentences, style: captionStyle)
        let text = try TextBatch(ids: tokens.inputIds.map(Int.init), mask: tokens.attentionMask.map(Int.init),
                                 batch: tokens.batchSize, length: tokens.length)
        return ImageTextBatch(images: try Tensor(pixels, shape: [2 * batchSize, 3, size, size]), text: text, labels: labels)
    }
}
