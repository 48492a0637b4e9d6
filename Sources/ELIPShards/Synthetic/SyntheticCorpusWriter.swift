import ELIPImage
import Foundation

/// Writes the synthetic shapes corpus (SyntheticScenes) to disk in ALBEF's annotation format, so
/// the real data path (build-dataset -> LMDB -> loader) can be exercised end to end:
///
///     DIR/images/000001.jpg     RGB JPEG, quality 95 (number = scene index + 1)
///     DIR/masks/000001.png      8-bit grey: 0 = background, k = object k
///     DIR/train.json            [{"image": "images/000001.jpg", "caption": [all paraphrases]}, ...]
///     DIR/test.json             same, plus "mask" and "objects" (id, shape, colour, size word,
///                               centre and radius in pixels) per image
///     DIR/ve_train.json, ve_test.json   SNLI-VE format (SyntheticEntailment): per image three
///                               {"image": "images/000001" (no ".jpg", as ve_dataset.py), "sentence", "label"}
///     DIR/nlvr2_train.json, nlvr2_test.json   NLVR2 format (SyntheticNLVR): two pairs per scene of
///                               the split, {"images": [left, right], "sentence", "label": "True" | "False"}
///     DIR/retrieval_train.json  retrieval training format (re_train_dataset): one entry per caption of
///                               a training image, {"image", "caption", "image_id": "000001"}; the
///                               held-out retrieval split is test.json itself ({"image", "caption": [...]})
///     DIR/vqa_train.json, vqa_test.json   VQA format (SyntheticQuestions): per image three
///                               {"question_id", "question", "answer": [10 answers], "image", "dataset": "vqa"}
///     DIR/answer_list.json      every answer those questions can have
///
/// Deterministic for (images, size, seed, test fraction): scene i is SyntheticScenes.scene(index: i,
/// seed:, size:), the test images are a seeded random subset of round(images * fraction) indices,
/// and the JSON is written with a fixed layout.
public enum SyntheticCorpusWriter {
    public struct Options: Sendable {
        public var outputDirectory: String
        public var images: Int
        public var size = 256
        public var seed: UInt64 = 0
        public var testFraction = 0.1
        public var quality = 95
        public var workers = 1
        public var showProgress = true
        public var progressInterval = 10.0

        public init(outputDirectory: String, images: Int) {
            self.outputDirectory = outputDirectory
            self.images = images
        }
    }

    public struct Summary: Sendable, Equatable {
        public var train: Int
        public var test: Int
    }

    /// The 0-based scene indices of the test split, ascending.
    public static func testIndices(images: Int, testFraction: Double, seed: UInt64) -> [Int] {
        guard images > 0 else { return [] }
        let k = min(images, max(0, Int((Double(images) * testFraction).rounded())))
        var order = Array(0..<images)
        var g = SplitMix(seed: seed ^ 0x7E57_5EED_0000_0001)
        // Partial Fisher-Yates: the first k positions are a uniform random subset.
        for i in 0..<k {
            let j = i + Int(g.next() % UInt64(images - i))
            order.swapAt(i, j)
        }
        return order.prefix(k).sorted()
    }

    public static func fileStem(_ index: Int) -> String {
        let s = String(index + 1)
        return s.count >= 6 ? s : String(repeating: "0", count: 6 - s.count) + s
    }

    @discardableResult
    public static func write(_ options: Options) throws -> Summary {
        guard options.images >= 1 else { throw DatasetError.invalidArgument("--images must be at least 1") }
        guard options.size >= 16, options.size <= 4096 else { throw DatasetError.invalidArgument("--size must be 16...4096") }
        guard options.testFraction >= 0, options.testFraction <= 1 else {
            throw DatasetError.invalidArgument("--test-fraction must be within 0...1")
        }
        guard (1...100).contains(options.quality) else { throw DatasetError.invalidArgument("quality must be 1...100") }
        let dir = options.outputDirectory
        let fm = FileManager.default
        let imagesDir = (dir as NSString).appendingPathComponent("images")
        let masksDir = (dir as NSString).appendingPathComponent("masks")
        try fm.createDirectory(atPath: imagesDir, withIntermediateDirectories: true)
        try fm.createDirectory(atPath: masksDir, withIntermediateDirectories: true)
        let test = Set(testIndices(images: options.images, testFraction: options.testFraction, seed: options.seed))

        var trainLines: [String] = [], testLines: [String] = []
        var veTrainLines: [String] = [], veTestLines: [String] = []
        var sceneObjects = [[SyntheticScenes.Object]](repeating: [], count: options.images)
        var retrievalTrainLines: [String] = []
        var vqaTrainLines: [String] = [], vqaTestLines: [String] = []
        let meter = ProgressMeter(label: "synth", total: options.images, enabled: options.showProgress,
                                  plainInterval: options.progressInterval)
        let pipeline = OrderedPipeline<Result<SceneLines, DatasetError>>(count: options.images, window: 256)
        try pipeline.run(workers: options.workers, makeWorker: { _ in
            let encoder = try? JPEGEncoder()
            return { i in
                guard let encoder else { return .failure(.io(imagesDir, "cannot create a JPEG encoder")) }
                return Self.writeScene(i, options: options, isTest: test.contains(i), encoder: encoder,
                                       imagesDir: imagesDir, masksDir: masksDir)
            }
        }, consume: { i, result in
            switch result {
            case let .success(lines):
                sceneObjects[i] = lines.objects
                if test.contains(i) {
                    testLines.append(lines.caption)
                    veTestLines += lines.entailment
                    vqaTestLines += lines.questions
                } else {
                    trainLines.append(lines.caption)
                    veTrainLines += lines.entailment
                    retrievalTrainLines += lines.retrieval
                    vqaTrainLines += lines.questions
                }
            case let .failure(e): throw e
            }
            meter.update(i + 1)
        })
        meter.finish(options.images)
        func document(_ lines: [String]) -> [UInt8] {
            Array((lines.isEmpty ? "[]\n" : "[\n" + lines.joined(separator: ",\n") + "\n]\n").utf8)
        }
        try FileOps.writeAtomically(document(trainLines), to: (dir as NSString).appendingPathComponent("train.json"))
        try FileOps.writeAtomically(document(testLines), to: (dir as NSString).appendingPathComponent("test.json"))
        try FileOps.writeAtomically(document(veTrainLines), to: (dir as NSString).appendingPathComponent("ve_train.json"))
        try FileOps.writeAtomically(document(veTestLines), to: (dir as NSString).appendingPathComponent("ve_test.json"))
        for (name, indices) in [("nlvr2_train.json", (0..<options.images).filter { !test.contains($0) }), ("nlvr2_test.json", test.sorted())] {
            let pairs = SyntheticNLVR.pairs(indices: indices, perImage: 2, seed: options.seed ^ (name == "nlvr2_test.json" ? 0x7E57 : 0)) { sceneObjects[$0] }
            let lines = pairs.map { p in
                "{\"images\": [\(JSONText.quote("images/\(fileStem(p.left)).jpg")), \(JSONText.quote("images/\(fileStem(p.right)).jpg"))], "
                    + "\"sentence\": \(JSONText.quote(p.sentence)), \"label\": \(JSONText.quote(SyntheticNLVR.labelNames[p.label]))}"
            }
            try FileOps.writeAtomically(document(lines), to: (dir as NSString).appendingPathComponent(name))
        }
        try FileOps.writeAtomically(document(retrievalTrainLines), to: (dir as NSString).appendingPathComponent("retrieval_train.json"))
        try FileOps.writeAtomically(document(vqaTrainLines), to: (dir as NSString).appendingPathComponent("vqa_train.json"))
        try FileOps.writeAtomically(document(vqaTestLines), to: (dir as NSString).appendingPathComponent("vqa_test.json"))
        try FileOps.writeAtomically(document(SyntheticQuestions.answerList.map(JSONText.quote)),
                                    to: (dir as NSString).appendingPathComponent("answer_list.json"))
        return Summary(train: trainLines.count, test: testLines.count)
    }

    /// A scene's line of train/test.json and its three lines of ve_*.json.
    struct SceneLines: Sendable {
        var caption: String
        var entailment: [String]
        var objects: [SyntheticScenes.Object]
        /// retrieval_train.json's entries: one per caption.
        var retrieval: [String]
        var questions: [String]
    }

    static func writeScene(_ i: Int, options: Options, isTest: Bool, encoder: JPEGEncoder,
                           imagesDir: String, masksDir: String) -> Result<SceneLines, DatasetError> {
        let scene = SyntheticScenes.scene(index: i, seed: options.seed, size: options.size)
        let stem = fileStem(i)
        let imageRel = "images/\(stem).jpg", maskRel = "masks/\(stem).png"
        do {
            let jpeg = try encoder.encode(bytes: scene.pixels, width: scene.size, height: scene.size, format: .rgb,
                                          quality: options.quality)
            try FileOps.writeSynced(jpeg, to: (imagesDir as NSString).appendingPathComponent("\(stem).jpg"), sync: false)
            let png = try PNG.encode(bytes: scene.mask, width: scene.size, height: scene.size, format: .gray)
            try FileOps.writeSynced(png, to: (masksDir as NSString).appendingPathComponent("\(stem).png"), sync: false)
        } catch let e as DatasetError {
            return .failure(e)
        } catch {
            return .failure(.io(imageRel, "\(error)"))
        }
        let captions = "[" + scene.captions.map(JSONText.quote).joined(separator: ", ") + "]"
        var line = "{\"image\": \(JSONText.quote(imageRel)), \"caption\": \(captions)"
        if isTest {
            let objects = scene.objects.enumerated().map { k, o in
                String(format: "{\"id\": %d, \"shape\": %@, \"colour\": %@, \"size\": %@, \"center\": [%.1f, %.1f], \"radius\": %.1f}",
                       k + 1, JSONText.quote(o.shape.rawValue), JSONText.quote(o.colour.name),
                       JSONText.quote(o.isLarge ? "large" : "small"), o.centerX, o.centerY, o.radius)
            }
            line += ", \"mask\": \(JSONText.quote(maskRel)), \"objects\": [" + objects.joined(separator: ", ") + "]"
        }
        let entailment = SyntheticEntailment.statements(for: scene, index: i, seed: options.seed).map {
            "{\"image\": \(JSONText.quote("images/\(stem)")), \"sentence\": \(JSONText.quote($0.sentence)), \"label\": \(JSONText.quote(SyntheticEntailment.labelNames[$0.label]))}"
        }
        let retrieval = scene.captions.map {
            "{\"image\": \(JSONText.quote(imageRel)), \"caption\": \(JSONText.quote($0)), \"image_id\": \(JSONText.quote(stem))}"
        }
        let questions = SyntheticQuestions.questions(for: scene, index: i, seed: options.seed).enumerated().map { k, q in
            let answers = "[" + Array(repeating: JSONText.quote(q.answer), count: SyntheticQuestions.humanAnswers).joined(separator: ", ") + "]"
            return "{\"question_id\": \(i * 10 + k), \"question\": \(JSONText.quote(q.question)), \"answer\": \(answers), "
                + "\"image\": \(JSONText.quote(imageRel)), \"dataset\": \"vqa\"}"
        }
        return .success(SceneLines(caption: line + "}", entailment: entailment, objects: scene.objects, retrieval: retrieval, questions: questions))
    }
}
