import ELIPDistributed
import ELIPModel
import ELIPNN
import ELIPTensor
import ELIPText
import Foundation

/// Retrieval for models that score pairs only jointly (METER, SPEC-METER §8
/// `compute_irtr_recall`): every image x every caption goes through the full model (the ViT
/// pruned under that caption), and TR/IR R@1/5/10 come from the full score matrix. There is no
/// cheap first ranking to shortlist from, so large sets are evaluated on a subset: the first
/// `maxImages` images and their captions (a deviation from the official full-set protocol, named
/// in the result). Pairs are split across ranks in fixed chunks and the matrix summed, so every
/// world size computes the same scores.
public final class PairRankingEvaluator {
    public struct Options {
        /// Pairs per forward.
        public var batchSize = 32
        /// Evaluate the first N images and their captions (nil: all).
        public var maxImages: Int?
        public init() {}
    }

    public let model: any PairMatchingModel
    public let tokenizer: any CaptionTokenizer
    public let comm: Communicator
    public var progress: ((String) -> Void)?

    public init(model: any PairMatchingModel, tokenizer: any CaptionTokenizer, communicator: Communicator) {
        self.model = model
        self.tokenizer = tokenizer
        comm = communicator
    }

    /// The first `n` images of `data` and the captions that belong to them.
    public static func subset(_ data: RetrievalDataset, images n: Int) -> RetrievalDataset {
        guard n < data.imagePaths.count else { return data }
        let keptTexts = data.txt2img.indices.filter { data.txt2img[$0] < n }
        var newIndex: [Int: Int] = [:]
        for (k, t) in keptTexts.enumerated() { newIndex[t] = k }
        return RetrievalDataset(annotationFile: data.annotationFile, imageNames: Array(data.imageNames.prefix(n)),
                                imagePaths: Array(data.imagePaths.prefix(n)), texts: keptTexts.map { data.texts[$0] },
                                txt2img: keptTexts.map { data.txt2img[$0] }, img2txt: data.img2txt.prefix(n).map { $0.compactMap { newIndex[$0] } })
    }

    public func evaluate(_ full: RetrievalDataset, options: Options = Options()) throws -> RetrievalResult {
        guard options.batchSize >= 1 else { throw RetrievalError("--batch must be at least 1, got \(options.batchSize)") }
        if let n = options.maxImages, n < 1 { throw RetrievalError("--max-images must be at least 1, got \(n)") }
        let data = options.maxImages.map { Self.subset(full, images: $0) } ?? full
        let start = comm.wallTime()
        let nImg = data.imagePaths.count, nTxt = data.texts.count
        guard nImg > 0, nTxt > 0 else { throw RetrievalError("\(data.annotationFile): no images or captions to rank") }
        let tokens = try tokenizer.encodeBatch(data.texts, style: model.modelConfig.captionStyle, cleaned: true)
        let text = try TextBatch(ids: tokens.inputIds.map(Int.init), mask: tokens.attentionMask.map(Int.init),
                                 batch: tokens.batchSize, length: tokens.length)
        let res = model.modelConfig.imageRes, per = 3 * res * res
        var pixels: [Float] = []
        pixels.reserveCapacity(nImg * per)
        for path in data.imagePaths { try EvalImage.load(path, res: res, into: &pixels) }
        progress?("ranking \(nImg) x \(nTxt) pairs through the full model")

        // scores[i * nTxt + t]; chunk c of the pair list belongs to rank c % W.
        var scores = [Float](repeating: 0, count: nImg * nTxt)
        let pairs = nImg * nTxt, chunks = (pairs + options.batchSize - 1) / options.batchSize
        for c in stride(from: comm.rank, to: chunks, by: comm.size) {
            let range = (c * options.batchSize)..<min(pairs, (c + 1) * options.batchSize)
            let imageRows = range.map { $0 / nTxt }, textRows = range.map { $0 % nTxt }
            var batchPixels: [Float] = []
            batchPixels.reserveCapacity(range.count * per)
            for i in imageRows { batchPixels += pixels[(i * per)..<((i + 1) * per)] }
            let s = try model.pairMatchScores(texts: text.rows(textRows), images: Tensor(batchPixels, shape: [range.count, 3, res, res]))
            for (k, p) in range.enumerated() { scores[p] = s[k] }
            // Rank 0 reports its share (the ranks advance together).
            if comm.rank == 0 && (c / comm.size) % 50 == 0 { progress?("pairs: chunk \(c / comm.size + 1) of \((chunks + comm.size - 1) / comm.size) on each rank, \(options.batchSize) pairs each") }
        }
        if comm.size > 1 { try comm.allReduce(&scores, op: .sum) }
        let i2t = RetrievalScores(dense: (0..<nImg).map { Array(scores[($0 * nTxt)..<(($0 + 1) * nTxt)]) })
        let t2i = RetrievalScores(dense: (0..<nTxt).map { t in (0..<nImg).map { scores[$0 * nTxt + t] } })
        let metrics = try RetrievalRecall.metrics(i2t: i2t, t2i: t2i, txt2img: data.txt2img, img2txt: data.img2txt)
        return RetrievalResult(metrics: metrics, kTest: max(nImg, nTxt), kImageToText: nTxt, kTextToImage: nImg,
                               images: nImg, texts: nTxt, imageToText: i2t, textToImage: t2i, seconds: comm.wallTime() - start)
    }
}
