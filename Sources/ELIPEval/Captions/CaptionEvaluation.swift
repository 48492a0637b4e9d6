import Foundation

/// A caption-evaluation input that the official code would refuse or that cannot be read: one
/// line naming the file and the problem.
public struct CaptionEvaluationError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The scores of one image.
public struct CaptionImageScores: Equatable, Sendable {
    public let imageID: Int
    /// The tokenized candidate and references (what the scores were computed on).
    public let candidate: String
    public let references: [String]
    public let bleuStatistics: BLEUStatistics
    /// Bleu_1...Bleu_4 of this image alone.
    public let bleu: [Double]
    public let cider: Double
}

/// Corpus BLEU-1..4 and CIDEr-D of a results file, with the scores of every image.
public struct CaptionMetrics: Equatable, Sendable {
    /// Corpus Bleu_1...Bleu_4 and CIDEr (pycocoevalcap's `COCOEvalCap.eval`).
    public let bleu: [Double]
    public let cider: Double
    /// One entry per evaluated image, in the order of the annotation file's `images`.
    public let perImage: [CaptionImageScores]

    /// The object `elip eval-caption` writes: `Bleu_1`..`Bleu_4`, `CIDEr` and
    /// `per_image` {"<image_id>": {`Bleu_1`..`Bleu_4`, `CIDEr`}}.
    public func jsonObject() -> [String: Any] {
        var o: [String: Any] = ["CIDEr": cider]
        for (k, b) in bleu.enumerated() { o["Bleu_\(k + 1)"] = b }
        var images: [String: Any] = [:]
        for s in perImage {
            var entry: [String: Any] = ["CIDEr": s.cider]
            for (k, b) in s.bleu.enumerated() { entry["Bleu_\(k + 1)"] = b }
            images[String(s.imageID)] = entry
        }
        o["per_image"] = images
        return o
    }
}

/// COCO caption evaluation as BLIP's `coco_caption_eval` runs it: pycocotools reads the
/// annotation and results files, pycocoevalcap's `COCOEvalCap` tokenizes every caption with
/// PTBTokenizer and scores BLEU-1..4 and CIDEr-D (METEOR, ROUGE-L and SPICE are not computed).
///
/// The evaluated images are the annotation file's `images` (file order; an id listed twice
/// counts once); an image's references are all its annotations. Where the official code stops
/// with an AssertionError (an image without a result, a result for an image that is not in the
/// annotations, two results for one image) this refuses the input instead of scoring it.
public enum CaptionEvaluation {
    /// The reference captions per image id, in the annotation file's image order.
    public struct References {
        public var imageIDs: [Int]
        public var captions: [Int: [String]]
        public init(imageIDs: [Int], captions: [Int: [String]]) {
            self.imageIDs = imageIDs
            self.captions = captions
        }
    }

    /// Reads both files and scores the results against the annotations.
    public static func evaluate(annotationsFile: String, resultsFile: String) throws -> CaptionMetrics {
        let references = try loadReferences(annotationsFile)
        let results = try loadResults(resultsFile)
        return try evaluate(references: references, results: results, resultsFile: resultsFile)
    }

    /// Scores `results` ((image id, caption) in file order) against `references`, after checking
    /// that every image has exactly one result and every result belongs to an image; errors name
    /// `resultsFile`.
    public static func evaluate(references: References, results: [(imageID: Int, caption: String)],
                                resultsFile: String = "results") throws -> CaptionMetrics {
        let known = Set(references.imageIDs)
        // The order of pycocotools' loadRes (results outside the set) and of bleu.py (missing,
        // then duplicates), so the reason given is the one the official code would fail on.
        let unknown = results.map(\.imageID).filter { !known.contains($0) }
        if let first = unknown.first {
            throw CaptionEvaluationError("\(resultsFile): a result for image \(first), which is not in the annotations"
                                         + more(unknown.count - 1, "such result"))
        }
        var candidates: [Int: [String]] = [:]
        for r in results { candidates[r.imageID, default: []].append(r.caption) }
        let missing = references.imageIDs.filter { candidates[$0] == nil }
        if let first = missing.first {
            throw CaptionEvaluationError("\(resultsFile): image \(first) has no result" + more(missing.count - 1, "image without one"))
        }
        let repeated = references.imageIDs.filter { (candidates[$0]?.count ?? 0) > 1 }
        if let first = repeated.first, let count = candidates[first]?.count {
            throw CaptionEvaluationError("\(resultsFile): image \(first) has \(count) results (one per image is allowed)"
                                         + more(repeated.count - 1, "such image"))
        }
        return score(references: references, candidates: candidates.compactMapValues(\.first))
    }

    /// Tokenizes and scores; every image of `references` has a candidate.
    static func score(references: References, candidates: [Int: String]) -> CaptionMetrics {
        let ids = references.imageIDs
        let tokenizedCandidates = ids.map { PTBTokenizer.tokenize(candidates[$0] ?? "") }
        let tokenizedReferences = ids.map { (references.captions[$0] ?? []).map(PTBTokenizer.tokenize) }
        // BLEU and CIDEr both split the tokenized caption on whitespace (Python's str.split()).
        func words(_ s: String) -> [String] { s.split(separator: " ").map(String.init) }
        let candidateWords = tokenizedCandidates.map(words)
        let referenceWords = tokenizedReferences.map { $0.map(words) }

        let statistics = zip(candidateWords, referenceWords).map { BLEUScorer.statistics(candidate: $0, references: $1) }
        let cider = CIDErScorer.scores(zip(candidateWords, referenceWords).map { CIDErScorer.Image(candidate: $0, references: $1) })
        let perImage = ids.indices.map { i in
            CaptionImageScores(imageID: ids[i], candidate: tokenizedCandidates[i], references: tokenizedReferences[i],
                               bleuStatistics: statistics[i], bleu: BLEUScorer.scores(statistics[i]), cider: cider.perImage[i])
        }
        return CaptionMetrics(bleu: BLEUScorer.corpusScores(statistics), cider: cider.corpus, perImage: perImage)
    }

    private static func more(_ count: Int, _ what: String) -> String {
        count > 0 ? " (and \(count) more \(what)\(count == 1 ? "" : "s"))" : ""
    }

    // MARK: reading the files

    /// A COCO captions annotation file: `images` [{`id`}] and `annotations` [{`image_id`, `caption`}].
    /// Annotations of images not listed in `images` are not evaluated (as pycocotools), but an
    /// image without any annotation is refused: the official BLEU fails on it.
    public static func loadReferences(_ path: String) throws -> References {
        let root = try readJSON(path)
        guard let object = root as? [String: Any] else {
            throw CaptionEvaluationError("\(path): expected a JSON object with \"images\" and \"annotations\" (COCO captions format)")
        }
        let images = try list(object, "images", in: path)
        let annotations = try list(object, "annotations", in: path)
        var ids: [Int] = [], seen = Set<Int>()
        for (i, entry) in images.enumerated() {
            let id = try integer(entry, "id", in: path, at: "images[\(i)]")
            if seen.insert(id).inserted { ids.append(id) }
        }
        guard !ids.isEmpty else { throw CaptionEvaluationError("\(path): \"images\" is empty; there is nothing to evaluate") }
        var captions: [Int: [String]] = [:]
        for (i, entry) in annotations.enumerated() {
            let id = try integer(entry, "image_id", in: path, at: "annotations[\(i)]")
            let caption = try string(entry, "caption", in: path, at: "annotations[\(i)]")
            captions[id, default: []].append(caption)
        }
        if let bare = ids.first(where: { captions[$0] == nil }) {
            throw CaptionEvaluationError("\(path): image \(bare) has no reference caption in \"annotations\"")
        }
        return References(imageIDs: ids, captions: captions)
    }

    /// A COCO results file: a list of {`image_id`, `caption`} (other keys are ignored), in file order.
    public static func loadResults(_ path: String) throws -> [(imageID: Int, caption: String)] {
        guard let entries = try readJSON(path) as? [Any] else {
            throw CaptionEvaluationError("\(path): expected a JSON list of {\"image_id\": ..., \"caption\": ...} (COCO results format)")
        }
        return try entries.enumerated().map { i, entry in
            (try integer(entry, "image_id", in: path, at: "entry \(i)"), try string(entry, "caption", in: path, at: "entry \(i)"))
        }
    }

    // The JSON reading is shared with the VQA evaluation (EvalJSON); its errors become this
    // evaluation's one-line errors.
    private static func wrap<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as EvalJSONError { throw CaptionEvaluationError(e.message) }
    }
    private static func readJSON(_ path: String) throws -> Any { try wrap { try EvalJSON.read(path) } }
    private static func list(_ object: [String: Any], _ key: String, in path: String) throws -> [Any] {
        try wrap { try EvalJSON.list(object, key, in: path) }
    }
    private static func integer(_ entry: Any, _ key: String, in path: String, at place: String) throws -> Int {
        try wrap { try EvalJSON.integer(entry, key, in: path, at: place) }
    }
    private static func string(_ entry: Any, _ key: String, in path: String, at place: String) throws -> String {
        try wrap { try EvalJSON.string(entry, key, in: path, at: place) }
    }
}
