import ELIPDistributed
import ELIPModel
import ELIPNN
import ELIPTensor
import ELIPText
import Foundation

/// An NLVR2 split as NLVR.py's evaluation reads it (nlvr_dataset.py): entries `{"images": [left,
/// right] (paths relative to the image root), "sentence", "label": "True" | "False"}`, the
/// sentence through `pre_caption(sentence, 30)`, labels True 1, False 0. A bad entry is an error
/// naming it: an evaluation never drops pairs (nor turns an unknown label into False, as
/// nlvr_dataset.py's `1 if label == 'True' else 0` would).
public struct NLVR2Dataset {
    public let annotationFile: String
    public let leftPaths: [String], rightPaths: [String]
    /// Cleaned sentences (the model's caption style).
    public let sentences: [String]
    public let labels: [Int]
    public var count: Int { labels.count }
    public var imagePaths: [String] { leftPaths + rightPaths }

    public static let labelIDs = ["False": 0, "True": 1]
    public static let labelNames = ["False", "True"]

    public static func load(annotation path: String, imageRoot: String, cleaning style: CaptionStyle) throws -> NLVR2Dataset {
        guard let data = EvalFile.contents(path) else {
            throw RetrievalError("\(path): cannot read (\(EvalFile.reason(path)))")
        }
        let node: Any
        do { node = try JSONSerialization.jsonObject(with: data) } catch {
            throw RetrievalError("\(path): not valid JSON (\(error.localizedDescription))")
        }
        guard let entries = node as? [Any] else {
            throw RetrievalError("\(path): expected a JSON list of {\"images\": [left, right], \"sentence\", \"label\"} entries")
        }
        guard !entries.isEmpty else { throw RetrievalError("\(path): the annotation list is empty") }
        let root = try ImageRoot(imageRoot)
        var lefts: [String] = [], rights: [String] = [], sentences: [String] = [], labels: [Int] = []
        for (k, e) in entries.enumerated() {
            guard let d = e as? [String: Any], let images = d["images"] as? [Any], images.count == 2,
                  let left = images[0] as? String, let right = images[1] as? String, !left.isEmpty, !right.isEmpty else {
                throw RetrievalError("\(path): entry \(k) has no \"images\" list of two path strings (left, right)")
            }
            guard let sentence = d["sentence"] as? String else {
                throw RetrievalError("\(path): entry \(k) (\(left), \(right)) has no \"sentence\" string")
            }
            guard let name = d["label"] as? String, let label = labelIDs[name] else {
                throw RetrievalError("\(path): entry \(k) (\(left), \(right)): label \(d["label"].map { "\($0)" } ?? "missing") is not \"True\" or \"False\"")
            }
            let cleaned = style.clean(sentence)
            guard !cleaned.isEmpty else { throw RetrievalError("\(path): entry \(k): the sentence has no words after cleaning") }
            lefts.append(try root.file(left, what: "\(path): entry \(k)"))
            rights.append(try root.file(right, what: "\(path): entry \(k)"))
            sentences.append(cleaned)
            labels.append(label)
        }
        return NLVR2Dataset(annotationFile: path, leftPaths: lefts, rightPaths: rights, sentences: sentences, labels: labels)
    }

    /// The pairs rank `rank` of `worldSize` evaluates: a contiguous block, the blocks of all ranks
    /// covering every pair exactly once (no padding with repeated samples).
    public func block(rank: Int, worldSize: Int) -> Range<Int> {
        evaluationBlock(count: count, rank: rank, worldSize: worldSize)
    }
}

public typealias NLVR2Result = ClassificationResult

public final class NLVR2Evaluator {
    let model: ALBEFNLVRModel
    let tokenizer: BertTokenizer
    let comm: Communicator
    public var progress: (String) -> Void = { _ in }

    public init(model: ALBEFNLVRModel, tokenizer: BertTokenizer, communicator: Communicator) {
        self.model = model
        self.tokenizer = tokenizer
        comm = communicator
    }

    public func evaluate(_ d: NLVR2Dataset, batchSize: Int) throws -> NLVR2Result {
        let res = model.config.imageRes
        return try ClassificationResult.evaluate(labels: d.labels, labelNames: ["False", "True"], annotationFile: d.annotationFile,
                                                 batchSize: batchSize, communicator: comm,
                                                 progress: { self.progress("eval-nlvr2: \($0)/\($1) pairs on rank \(self.comm.rank)") }) { rows in
            // The left images of the batch, then the right ones (model_nlvr.py's order).
            var pixels: [Float] = []
            pixels.reserveCapacity(2 * rows.count * 3 * res * res)
            for i in rows { try EvalImage.load(d.leftPaths[i], res: res, into: &pixels) }
            for i in rows { try EvalImage.load(d.rightPaths[i], res: res, into: &pixels) }
            let tokens = try tokenizer.encodeBatch(rows.map { d.sentences[$0] }, style: model.config.captionStyle, cleaned: true)
            let text = try TextBatch(ids: tokens.inputIds.map(Int.init), mask: tokens.attentionMask.map(Int.init),
                                     batch: tokens.batchSize, length: tokens.length)
            let images = try Tensor(pixels, shape: [2 * rows.count, 3, res, res])
            return try model.predict(ImageTextBatch(images: images, text: text)).toArray()
        }
    }
}
