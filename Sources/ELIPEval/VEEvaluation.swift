import ELIPDistributed
import ELIPModel
import ELIPNN
import ELIPTensor
import ELIPText
import Foundation

/// An SNLI-VE split as VE.py's evaluation reads it (ve_dataset.py): entries `{"image": id
/// without ".jpg", "sentence", "label"}`, the image `<root>/<id>.jpg`, the sentence through
/// `pre_caption(sentence, 30)`, labels entailment 2, neutral 1, contradiction 0. A bad entry is an
/// error naming it: an evaluation never drops samples.
public struct VEDataset {
    public let annotationFile: String
    public let imagePaths: [String]
    /// Cleaned sentences (the model's caption style).
    public let sentences: [String]
    public let labels: [Int]
    public var count: Int { labels.count }

    public static let labelIDs = ["entailment": 2, "neutral": 1, "contradiction": 0]
    public static let labelNames = ["contradiction", "neutral", "entailment"]

    public static func load(annotation path: String, imageRoot: String, cleaning style: CaptionStyle) throws -> VEDataset {
        guard let data = EvalFile.contents(path) else {
            throw RetrievalError("\(path): cannot read (\(EvalFile.reason(path)))")
        }
        let node: Any
        do { node = try JSONSerialization.jsonObject(with: data) } catch {
            throw RetrievalError("\(path): not valid JSON (\(error.localizedDescription))")
        }
        guard let entries = node as? [Any] else {
            throw RetrievalError("\(path): expected a JSON list of {\"image\", \"sentence\", \"label\"} entries")
        }
        guard !entries.isEmpty else { throw RetrievalError("\(path): the annotation list is empty") }
        let root = try ImageRoot(imageRoot)
        var paths: [String] = [], sentences: [String] = [], labels: [Int] = []
        for (k, e) in entries.enumerated() {
            guard let d = e as? [String: Any], let image = d["image"] as? String, !image.isEmpty else {
                throw RetrievalError("\(path): entry \(k) has no \"image\" string")
            }
            guard let sentence = d["sentence"] as? String else {
                throw RetrievalError("\(path): entry \(k) (\(image)) has no \"sentence\" string")
            }
            guard let name = d["label"] as? String, let label = labelIDs[name] else {
                throw RetrievalError("\(path): entry \(k) (\(image)): label \(d["label"].map { "\($0)" } ?? "missing") is not entailment, neutral or contradiction")
            }
            let cleaned = style.clean(sentence)
            guard !cleaned.isEmpty else { throw RetrievalError("\(path): entry \(k) (\(image)): the sentence has no words after cleaning") }
            paths.append(try root.file(image + ".jpg", what: "\(path): entry \(k)"))
            sentences.append(cleaned)
            labels.append(label)
        }
        return VEDataset(annotationFile: path, imagePaths: paths, sentences: sentences, labels: labels)
    }

    /// The entries rank `rank` of `worldSize` evaluates: a contiguous block, the blocks of all
    /// ranks covering every entry exactly once (no padding with repeated samples).
    public func block(rank: Int, worldSize: Int) -> Range<Int> {
        evaluationBlock(count: count, rank: rank, worldSize: worldSize)
    }
}

public typealias VEResult = ClassificationResult

public final class VEEvaluator {
    let model: ALBEFVEModel
    let tokenizer: BertTokenizer
    let comm: Communicator
    public var progress: (String) -> Void = { _ in }

    public init(model: ALBEFVEModel, tokenizer: BertTokenizer, communicator: Communicator) {
        self.model = model
        self.tokenizer = tokenizer
        comm = communicator
    }

    public func evaluate(_ d: VEDataset, batchSize: Int) throws -> VEResult {
        let res = model.config.imageRes
        return try ClassificationResult.evaluate(labels: d.labels, labelNames: ["contradiction", "neutral", "entailment"], annotationFile: d.annotationFile,
                                                 batchSize: batchSize, communicator: comm,
                                                 progress: { self.progress("eval-ve: \($0)/\($1) samples on rank \(self.comm.rank)") }) { rows in
            var pixels: [Float] = []
            pixels.reserveCapacity(rows.count * 3 * res * res)
            for i in rows { try EvalImage.load(d.imagePaths[i], res: res, into: &pixels) }
            let tokens = try tokenizer.encodeBatch(rows.map { d.sentences[$0] }, style: model.config.captionStyle, cleaned: true)
            let text = try TextBatch(ids: tokens.inputIds.map(Int.init), mask: tokens.attentionMask.map(Int.init),
                                     batch: tokens.batchSize, length: tokens.length)
            let images = try Tensor(pixels, shape: [rows.count, 3, res, res])
            return try model.predict(ImageTextBatch(images: images, text: text)).toArray()
        }
    }
}
