import ELIPDistributed
import ELIPImage
import ELIPModel
import ELIPNN
import ELIPTensor
import ELIPText
import Foundation

/// A retrieval test set in ALBEF's annotation format (`[{"image": path, "caption": [..]}]`, as
/// ALBEF's `re_eval_dataset` reads it): every caption becomes one text (cleaned with pre_caption),
/// `txt2img[t]` is the image of text t and `img2txt[i]` the texts of image i.
public struct RetrievalDataset {
    public let annotationFile: String
    /// Image paths as written in the annotation, and resolved against the image root.
    public let imageNames: [String]
    public let imagePaths: [String]
    public let texts: [String]
    public let txt2img: [Int]
    public let img2txt: [[Int]]

    public init(annotationFile: String, imageNames: [String], imagePaths: [String], texts: [String], txt2img: [Int], img2txt: [[Int]]) {
        self.annotationFile = annotationFile
        self.imageNames = imageNames
        self.imagePaths = imagePaths
        self.texts = texts
        self.txt2img = txt2img
        self.img2txt = img2txt
    }

    /// Reads an annotation file. `caption` may be a list of strings or one string. Image paths
    /// are relative to `imageRoot` and must stay inside it (`ImageRoot`). A caption with no words
    /// (after cleaning) and an image listed twice are errors naming the entries: an empty query
    /// or a duplicated gallery image would make the recall silently wrong.
    public static func load(annotation path: String, imageRoot: String, maxWords: Int = 30,
                            cleaning: CaptionStyle.Cleaning = .albef) throws -> RetrievalDataset {
        let style = CaptionStyle(cleaning: cleaning, framing: .albef, maxLength: 1, padToMaxLength: false, maxWords: maxWords)
        guard let data = EvalFile.contents(path) else {
            throw RetrievalError("\(path): cannot read the annotation file (\(EvalFile.reason(path)))")
        }
        let node: Any
        do { node = try JSONSerialization.jsonObject(with: data) } catch {
            throw RetrievalError("\(path): not valid JSON (\(error.localizedDescription))")
        }
        guard let entries = node as? [Any] else {
            throw RetrievalError("\(path): expected a JSON list of {\"image\": ..., \"caption\": [...]} entries")
        }
        guard !entries.isEmpty else { throw RetrievalError("\(path): the annotation list is empty") }
        let root = try ImageRoot(imageRoot)
        var entryOfImage: [String: Int] = [:]
        var names: [String] = [], paths: [String] = [], texts: [String] = [], txt2img: [Int] = [], img2txt: [[Int]] = []
        for (k, e) in entries.enumerated() {
            guard let d = e as? [String: Any], let image = d["image"] as? String, !image.isEmpty else {
                throw RetrievalError("\(path): entry \(k) has no \"image\" string")
            }
            let captions: [String]
            if let s = d["caption"] as? String {
                captions = [s]
            } else if let list = d["caption"] as? [Any], let strings = list as? [String] {
                captions = strings
            } else {
                throw RetrievalError("\(path): entry \(k) (\(image)) has no \"caption\" string or list of strings")
            }
            guard !captions.isEmpty else { throw RetrievalError("\(path): entry \(k) (\(image)) has an empty caption list") }
            let file = try root.file(image, what: "\(path): entry \(k)")
            if let first = entryOfImage[file] {
                throw RetrievalError("\(path): entry \(k) (\(image)) is the same image as entry \(first) (\(names[first])); list each image once with all its captions")
            }
            entryOfImage[file] = k
            let i = names.count
            names.append(image)
            paths.append(file)
            var own: [Int] = []
            for (j, c) in captions.enumerated() {
                let cleaned = style.clean(c)
                guard !cleaned.isEmpty else {
                    throw RetrievalError("\(path): entry \(k) (\(image)): caption \(j) (\"\(c)\") has no words" + (c.isEmpty ? "" : " after cleaning"))
                }
                own.append(texts.count)
                txt2img.append(i)
                texts.append(cleaned)
            }
            img2txt.append(own)
        }
        return RetrievalDataset(annotationFile: path, imageNames: names, imagePaths: paths, texts: texts,
                                txt2img: txt2img, img2txt: img2txt)
    }
}

/// ALBEF's evaluation image transform: the file as PIL opens it (no EXIF rotation), resized to
/// (res, res) bicubically, no crop; then CLIP normalisation.
public enum EvalImage {
    /// Decodes a JPEG or PNG file.
    public static func read(_ path: String) throws -> RGBImage {
        guard let data = EvalFile.contents(path) else {
            throw RetrievalError("\(path): cannot read the image file (\(EvalFile.reason(path)))")
        }
        do {
            switch sniffImageFormat(data) {
            case .jpeg:
                var options = JPEGDecodeOptions()
                options.applyEXIFOrientation = false  // PIL's Image.open(...).convert('RGB')
                return try JPEG.decode(data, options: options)
            case .png:
                return try PNG.decode(data)
            case .other:
                throw RetrievalError("\(path): neither a JPEG nor a PNG image")
            }
        } catch let e as RetrievalError {
            throw e
        } catch {
            throw RetrievalError("\(path): \(error)")
        }
    }

    /// The image resized to (res, res) with Pillow's bicubic filter.
    public static func transform(_ image: RGBImage, res: Int) throws -> RGBImage {
        if image.width == res && image.height == res { return image }
        return try image.resized(width: res, height: res, filter: .bicubic)
    }

    /// Read, resize, normalise: CHW floats appended to `out`.
    public static func load(_ path: String, res: Int, into out: inout [Float]) throws {
        let img: RGBImage
        do { img = try transform(read(path), res: res) } catch let e as RetrievalError { throw e } catch {
            throw RetrievalError("\(path): \(error)")
        }
        ImageNormalization.append(pixels: img.pixels, width: res, height: res, to: &out)
    }
}

/// What `RetrievalEvaluator.evaluate` returns.
public struct RetrievalResult {
    public let metrics: RetrievalMetrics
    /// Requested k_test and the k actually used per direction (clamped to the candidate count).
    public let kTest: Int
    public let kImageToText: Int, kTextToImage: Int
    public let images: Int, texts: Int
    /// The ITM-rescored top-k of every row (fill -100 elsewhere), after the all-reduce.
    public let imageToText: RetrievalScores
    public let textToImage: RetrievalScores
    public let seconds: Double

    /// The JSON object written by `elip eval-retrieval`: all metrics plus k_test and counts.
    public func jsonObject(extra: [String: Any] = [:]) -> [String: Any] {
        var o: [String: Any] = [:]
        for (k, v) in metrics.entries { o[k] = v }
        o["k_test"] = kTest
        o["k_test_i2t"] = kImageToText
        o["k_test_t2i"] = kTextToImage
        o["images"] = images
        o["texts"] = texts
        o["seconds"] = seconds
        for (k, v) in extra { o[k] = v }
        return o
    }
}

/// ALBEF's retrieval evaluation (Retrieval.py `evaluation` + `itm_eval`, SPEC §4):
///  - texts: pre_caption, `[CLS] tokens` (max_length 30), text encoder (mode 'text'), text_proj
///    of [CLS], L2-normalised;
///  - images: eval transform, the UNPRUNED ViT, vision_proj of [CLS], L2-normalised;
///  - `sims = image_feat @ text_feat^T`; for each image its top k_test texts, re-scored by the
///    ITM positive logit of fusion(text, image); every other entry -100; text->image likewise;
///  - TR@1/5/10, IR@1/5/10 and their means (`RetrievalRecall`).
///
/// Distributed: feature batches are split round-robin over the ranks and broadcast by their
/// owners; the ITM re-ranking rows are split round-robin (rank r takes rows r, r + W, ...) and
/// the rescored top-k lists all-reduced. Batches never depend on the world size (features in
/// fixed batches, similarities in fixed row blocks, each query's candidates in their own ITM
/// batches), so every rank count gives bitwise the result of one process (same thread count).
/// Texts are padded to the longest caption of the set; padding is masked, so this equals
/// ALBEF's padding to 30.
public final class RetrievalEvaluator {
    public struct Options {
        public var kTest = 256
        /// Images / texts / fusion pairs per forward.
        public var batchSize = 32
        /// Caption token limit ([CLS] included); clamped to the model's max positions.
        public var maxTextLength = 30
        public init() {}
    }

    public let model: any ImageTextRetrievalModel
    public let tokenizer: BertTokenizer
    public let comm: Communicator
    /// Progress messages (rank 0 prints them).
    public var progress: ((String) -> Void)?

    public init(model: any ImageTextRetrievalModel, tokenizer: BertTokenizer, communicator: Communicator) {
        self.model = model
        self.tokenizer = tokenizer
        comm = communicator
    }

    /// Encoded set: states and features of every text and image (identical on every rank).
    struct Features {
        let text: TextBatch
        let textStates: Tensor   // [nText, L, H]
        let textFeat: Tensor     // [nText, E]
        let imageEmbeds: Tensor  // [nImage, T, D]
        let imageFeat: Tensor    // [nImage, E]
    }

    public func evaluate(_ data: RetrievalDataset, options: Options = Options()) throws -> RetrievalResult {
        guard options.kTest >= 1 else { throw RetrievalError("--k-test must be at least 1, got \(options.kTest)") }
        guard options.batchSize >= 1 else { throw RetrievalError("--batch must be at least 1, got \(options.batchSize)") }
        let start = comm.wallTime()
        let f = try Autograd.noGrad { try encode(data, options: options) }
        let nImg = data.imagePaths.count, nTxt = data.texts.count
        let kI2T = min(options.kTest, nTxt), kT2I = min(options.kTest, nImg)
        let i2t = try Autograd.noGrad {
            try rescore(queries: nImg, candidates: nTxt, k: kI2T, direction: "image->text", options: options,
                        queryFeat: f.imageFeat, candidateFeat: f.textFeat) { pairs in
                try itmScores(f, images: pairs.map(\.query), texts: pairs.map(\.candidate), similarities: pairs.map(\.similarity))
            }
        }
        let t2i = try Autograd.noGrad {
            try rescore(queries: nTxt, candidates: nImg, k: kT2I, direction: "text->image", options: options,
                        queryFeat: f.textFeat, candidateFeat: f.imageFeat) { pairs in
                try itmScores(f, images: pairs.map(\.candidate), texts: pairs.map(\.query), similarities: pairs.map(\.similarity))
            }
        }
        let metrics = try RetrievalRecall.metrics(i2t: i2t, t2i: t2i, txt2img: data.txt2img, img2txt: data.img2txt)
        return RetrievalResult(metrics: metrics, kTest: options.kTest, kImageToText: kI2T, kTextToImage: kT2I,
                               images: nImg, texts: nTxt, imageToText: i2t, textToImage: t2i,
                               seconds: comm.wallTime() - start)
    }

    // MARK: features

    /// Runs `compute` on the batches [b * size, (b + 1) * size) of `n` items that this rank owns
    /// (b % W == rank), writing each output row block into the matching rows of `outputs`
    /// (preallocated [n, ...]); then every batch is broadcast from its owner. A batch always holds
    /// the same items whatever the world size, so every rank count computes bitwise the same
    /// features as one process.
    func distributedBatches(_ n: Int, size: Int, outputs: [Tensor], compute: (Range<Int>) throws -> [Tensor]) throws {
        let batches = (n + size - 1) / size
        for b in stride(from: comm.rank, to: batches, by: comm.size) {
            let rows = (b * size)..<min(n, (b + 1) * size)
            let results = try compute(rows)
            for (out, r) in zip(outputs, results) {
                let rowSize = out.count / max(n, 1)
                guard r.count == rows.count * rowSize else {
                    throw RetrievalError("internal: batch output of \(r.count) values for \(rows.count) rows of \(rowSize)")
                }
                r.withUnsafeBufferPointer { src in
                    out.withUnsafeMutableBufferPointer { dst in
                        (dst.baseAddress! + rows.lowerBound * rowSize).update(from: src.baseAddress!, count: src.count)
                    }
                }
            }
        }
        guard comm.size > 1 else { return }
        for b in 0..<batches {
            let rows = (b * size)..<min(n, (b + 1) * size)
            for out in outputs {
                let rowSize = out.count / max(n, 1)
                try out.withUnsafeMutableBufferPointer { p in
                    try comm.broadcast(UnsafeMutableBufferPointer(rebasing: p[(rows.lowerBound * rowSize)..<(rows.upperBound * rowSize)]),
                                       root: b % comm.size)
                }
            }
        }
    }

    func encode(_ data: RetrievalDataset, options: Options) throws -> Features {
        let shapes = model.retrievalShapes
        let maxLength = min(options.maxTextLength, shapes.maxTextPositions)
        var style = model.modelConfig.captionStyle
        style.maxLength = maxLength
        style.padToMaxLength = false  // padding is masked: the longest of the set is enough
        let tokens = try tokenizer.encodeBatch(data.texts, style: style, cleaned: true)
        let text = try TextBatch(ids: tokens.inputIds.map(Int.init), mask: tokens.attentionMask.map(Int.init),
                                 batch: tokens.batchSize, length: tokens.length)
        let h = shapes.textWidth, e = shapes.featureWidth, l = text.length
        let nTxt = data.texts.count, nImg = data.imagePaths.count

        let textStates = Tensor.zeros([nTxt, l, h]), textFeat = Tensor.zeros([nTxt, e])
        try distributedBatches(nTxt, size: options.batchSize, outputs: [textStates, textFeat]) { rows in
            let out = try model.encodeTexts(text.rows(Array(rows)))
            return [out.states, out.features]
        }
        progress?("encoded \(nTxt) captions")

        // Images through the unpruned ViT.
        let res = shapes.imageRes, d = shapes.imageWidth, t = shapes.imageTokens
        let imageEmbeds = Tensor.zeros([nImg, t, d]), imageFeat = Tensor.zeros([nImg, e])
        var done = 0
        try distributedBatches(nImg, size: options.batchSize, outputs: [imageEmbeds, imageFeat]) { rows in
            var pixels: [Float] = []
            pixels.reserveCapacity(rows.count * 3 * res * res)
            for i in rows { try EvalImage.load(data.imagePaths[i], res: res, into: &pixels) }
            let out = try model.encodeImages(try Tensor(pixels, shape: [rows.count, 3, res, res]))
            done += rows.count
            if comm.size == 1 { progress?("encoded \(done)/\(nImg) images") }
            return [out.tokens, out.features]
        }
        progress?("encoded \(nImg) images")
        return Features(text: text, textStates: textStates, textFeat: textFeat, imageEmbeds: imageEmbeds, imageFeat: imageFeat)
    }

    // MARK: re-ranking

    /// ITM positive logits of the pairs (image i, text t).
    func itmScores(_ f: Features, images: [Int], texts: [Int], similarities: [Float]) throws -> [Float] {
        let states = try f.textStates.gatherRows(texts)
        let mask = try f.text.rows(texts)
        // Each distinct image's cross-attention keys/values once (image-to-text re-ranking asks
        // for one image with k captions).
        let distinct = Array(Set(images)).sorted()
        let position = Dictionary(uniqueKeysWithValues: distinct.enumerated().map { ($1, $0) })
        return try model.matchScores(texts: mask, textStates: states, images: f.imageEmbeds.gatherRows(distinct),
                                     imageRows: images.compactMap { position[$0] }, similarities: similarities)
    }

    /// For each of this rank's rows (r, r + W, ...): the top-k candidates by feature similarity,
    /// re-scored by `score` in batches of at most `batchSize` pairs of that row; then all rows
    /// all-reduced. Similarities are computed in fixed blocks of 256 rows.
    func rescore(queries n: Int, candidates m: Int, k: Int, direction: String, options: Options,
                 queryFeat: Tensor, candidateFeat: Tensor,
                 score: ([(query: Int, candidate: Int, similarity: Float)]) throws -> [Float]) throws -> RetrievalScores {
        var indices = [Int64](repeating: 0, count: n * k)
        var scores = [Float](repeating: 0, count: n * k)
        let ownedCount = (n - comm.rank + comm.size - 1) / comm.size
        let block = 256
        var finished = 0
        for lo in stride(from: 0, to: n, by: block) {
            let hi = min(n, lo + block)
            let owned = (lo..<hi).filter { $0 % comm.size == comm.rank }
            guard !owned.isEmpty else { continue }
            let sims = try queryFeat.slice(axis: 0, start: lo, length: hi - lo).matmul(candidateFeat, transposeOther: true).toArray()
            for q in owned {
                let top = sims.withUnsafeBufferPointer { p in
                    RetrievalRecall.topK(UnsafeBufferPointer(rebasing: p[((q - lo) * m)..<((q - lo + 1) * m)]), k: k)
                }
                for s in stride(from: 0, to: k, by: options.batchSize) {
                    let chunk = Array(top[s..<min(k, s + options.batchSize)])
                    let rescored = try score(chunk.map { (q, $0, sims[(q - lo) * m + $0]) })
                    for (j, c) in chunk.enumerated() {
                        indices[q * k + s + j] = Int64(c)
                        scores[q * k + s + j] = rescored[j]
                    }
                }
                finished += 1
                if finished % 100 == 0 || finished == ownedCount {
                    progress?("\(direction): \(finished)/\(ownedCount) rows re-ranked" + (comm.size > 1 ? " on rank \(comm.rank)" : ""))
                }
            }
        }
        // Rows of other ranks are zero here: the sum is every rank's rows.
        try comm.allReduce(&indices, op: .sum)
        try comm.allReduce(&scores, op: .sum)
        let rows = (0..<n).map { q in
            RetrievalScores.Row(indices: indices[(q * k)..<((q + 1) * k)].map { Int($0) },
                                scores: Array(scores[(q * k)..<((q + 1) * k)]))
        }
        return RetrievalScores(columns: m, fill: -100, rows: rows)
    }
}
