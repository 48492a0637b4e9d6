import ELIPDistributed
import ELIPImage
import ELIPModel
import ELIPNN
import ELIPShards
import ELIPTensor
import ELIPText
@testable import ELIPEval
import ELIPTrain
import Foundation
import XCTest

/// A tiny ALBEF run folder and synthetic test images on disk, for the evaluation and picture tests.
enum EvalFixture {
    static let bertJSON = """
    {"hidden_size": 16, "num_attention_heads": 2, "num_hidden_layers": 4, "intermediate_size": 32,
     "vocab_size": 30522, "max_position_embeddings": 32, "fusion_layer": 2, "encoder_width": 16}
    """
    static let yaml = """
    bert_config: bert_tiny.json
    image_res: 32
    vision_width: 16
    embed_dim: 8
    queue_size: 12
    img_prune: {begin_layer: [1, 2], num_act_layers: [1, 2], keep_ratio: [0.75, 0.5]}
    vision: {patch_size: 8, embed_dim: 16, depth: 4, num_heads: 2, mlp_ratio: 2}
    """

    /// The WordPiece vocabulary (assets/ from `make setup`, or ../shared/data); skips when absent.
    static func vocabulary() throws -> String {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        for p in [repo.appendingPathComponent("assets/bert-base-uncased-vocab.txt").path,
                  repo.deletingLastPathComponent().appendingPathComponent("shared/data/bert-base-uncased-vocab.txt").path]
        where FileManager.default.fileExists(atPath: p) { return p }
        throw XCTSkip("needs the bert-base-uncased vocabulary: assets/bert-base-uncased-vocab.txt (`make setup`) or ../shared/data/")
    }

    static func temporaryDirectory() throws -> URL {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("elip-eval-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }

    /// Writes bert_tiny.json into `dir` and checkpoints of a randomly initialised model (steps
    /// `steps`) into `dir/run`, recording the YAML config in trainer.json.
    @discardableResult
    static func makeRun(in dir: URL, seed: UInt64 = 5, steps: [Int] = [3]) throws -> (run: URL, model: ALBEFModel) {
        try bertJSON.write(to: dir.appendingPathComponent("bert_tiny.json"), atomically: true, encoding: .utf8)
        let config = try TrainingConfig.parse(yaml, source: "fixture", searchFolders: [dir.path]).model
        let model = try XCTUnwrap(try config.makeModel() as? ALBEFModel)
        try model.initialiseRandomly(seed: seed)
        let run = dir.appendingPathComponent("run")
        let store = CheckpointStore(runDirectory: run, keep: 5)
        for s in steps {
            let state = TrainerState(step: s, epoch: 0, batchInEpoch: s, stepGenerator: SeededGenerator(seed: 1), skippedSteps: 0,
                                     fingerprint: "fixture", configText: yaml)
            try store.save(model: model, optimizer: AdamW(arena: model.parameters), state: state)
        }
        return (run, model)
    }

    /// `count` synthetic scenes as JPEG files under `dir/images` and an annotation file
    /// `dir/test.json` with two captions per image (the last entry's caption is a plain string).
    static func writeScenes(in dir: URL, count: Int, size: Int = 32) throws -> URL {
        let images = dir.appendingPathComponent("images")
        try FileManager.default.createDirectory(at: images, withIntermediateDirectories: true)
        var entries: [[String: Any]] = []
        for i in 0..<count {
            let scene = SyntheticScenes.scene(index: i, seed: 11, size: size)
            let name = String(format: "images/%03d.jpg", i)
            let jpeg = try JPEG.encode(RGBImage(width: size, height: size, pixels: scene.pixels), quality: 95)
            try Data(jpeg).write(to: dir.appendingPathComponent(name))
            let caption: Any = i == count - 1 ? scene.captions[0] : Array(scene.captions.prefix(2))
            entries.append(["image": name, "caption": caption])
        }
        let url = dir.appendingPathComponent("test.json")
        try JSONSerialization.data(withJSONObject: entries).write(to: url)
        return url
    }
}

final class RetrievalEvaluationTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws { dir = try EvalFixture.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func testAnnotationsFollowALBEFsEvalDataset() throws {
        let ann = try EvalFixture.writeScenes(in: dir, count: 3)
        let data = try RetrievalDataset.load(annotation: ann.path, imageRoot: dir.path)
        XCTAssertEqual(data.imagePaths.count, 3)
        XCTAssertEqual(data.texts.count, 5)
        XCTAssertEqual(data.txt2img, [0, 0, 1, 1, 2])
        XCTAssertEqual(data.img2txt, [[0, 1], [2, 3], [4]])
        XCTAssertEqual(data.imagePaths[1], dir.appendingPathComponent("images/001.jpg").path)
        XCTAssertTrue(data.texts.allSatisfy { $0 == preCaption($0) && !$0.isEmpty })
    }

    func testBadAnnotationsNameTheFileAndEntry() throws {
        let f = dir.appendingPathComponent("a.json")
        func check(_ json: String, _ expected: String, line: UInt = #line) throws {
            try json.write(to: f, atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try RetrievalDataset.load(annotation: f.path, imageRoot: dir.path), line: line) {
                XCTAssertTrue("\($0)".contains(f.path) && "\($0)".contains(expected), "\($0)", line: line)
            }
        }
        try check("{\"image\": 1}", "expected a JSON list")
        try check("[", "not valid JSON")
        try check("[]", "empty")
        try check("[{\"image\": \"a.jpg\", \"caption\": [\"x\"]}, {\"caption\": [\"y\"]}]", "entry 1 has no \"image\"")
        try check("[{\"image\": \"a.jpg\", \"caption\": 3}]", "entry 0 (a.jpg) has no \"caption\"")
        try check("[{\"image\": \"a.jpg\", \"caption\": []}]", "empty caption list")
        XCTAssertThrowsError(try RetrievalDataset.load(annotation: dir.appendingPathComponent("none.json").path, imageRoot: ".")) {
            XCTAssertTrue("\($0)".contains("none.json"), "\($0)")
        }
    }

    /// The whole protocol on a tiny random model: counts, k clamping, metrics in [0, 100], the
    /// rescored entries are the ITM logits of the pairs and the candidates the most similar ones.
    func testEndToEndOnATinyRandomModel() throws {
        let vocab = try EvalFixture.vocabulary()
        let (run, saved) = try EvalFixture.makeRun(in: dir, steps: [2, 3])
        let ann = try EvalFixture.writeScenes(in: dir, count: 5)
        let ckpt = try EvalCheckpoint.locate(run.path, configPath: nil)
        XCTAssertEqual(ckpt.step, 3)
        XCTAssertEqual(ckpt.folder?.lastPathComponent, "step-00000003")
        let model = try XCTUnwrap(try ckpt.loadModel() as? ALBEFModel)
        XCTAssertTrue(Array(model.parameters.values) == Array(saved.parameters.values))
        let data = try RetrievalDataset.load(annotation: ann.path, imageRoot: dir.path)
        let evaluator = RetrievalEvaluator(model: model, tokenizer: try BertTokenizer(vocabularyFile: vocab),
                                           communicator: .singleProcess())
        var options = RetrievalEvaluator.Options()
        options.kTest = 4
        options.batchSize = 3
        let r = try evaluator.evaluate(data, options: options)
        XCTAssertEqual([r.images, r.texts, r.kTest, r.kImageToText, r.kTextToImage], [5, 9, 4, 4, 4])
        for (k, v) in r.metrics.entries { XCTAssertTrue(v >= 0 && v <= 100, "\(k) = \(v)") }
        XCTAssertEqual(r.imageToText.rows.count, 5)
        XCTAssertEqual(r.textToImage.rows.count, 9)
        for row in r.imageToText.rows + r.textToImage.rows {
            XCTAssertEqual(row.indices.count, 4)
            XCTAssertEqual(Set(row.indices).count, 4)
        }
        XCTAssertEqual(r.metrics, try RetrievalRecall.metrics(i2t: r.imageToText, t2i: r.textToImage,
                                                                 txt2img: data.txt2img, img2txt: data.img2txt))

        // Independent check of image 1's row, one caption at a time (no padding).
        let tokenizer = try BertTokenizer(vocabularyFile: vocab)
        let (imageEmbeds, imageFeat) = try Autograd.noGrad { () throws -> (Tensor, [Float]) in
            var px: [Float] = []
            try EvalImage.load(data.imagePaths[1], res: 32, into: &px)
            let e = try model.visualEncoder(try Tensor(px, shape: [1, 3, 32, 32])).tokens
            let cls = try e.slice(axis: 1, start: 0, length: 1).reshaped([1, e.shape[2]])
            return (e, try model.visionProj(cls).l2Normalized().toArray())
        }
        var sims: [Float] = [], itm: [Float] = []
        for t in data.texts {
            let ids = try tokenizer.encode(t, framing: .albef, maxLength: 30).map(Int.init)
            let text = try TextBatch(ids: ids, mask: [Int](repeating: 1, count: ids.count), batch: 1, length: ids.count)
            try Autograd.noGrad {
                // Written out layer by layer (not through the retrieval protocol it checks).
                let states = try model.textLayers(model.textEmbeddings(text, dropout: nil), mask: text, dropout: nil)
                let feat = try model.textProj(states.slice(axis: 1, start: 0, length: 1).reshaped([1, states.shape[2]])).l2Normalized().toArray()
                sims.append(zip(feat, imageFeat).map(*).reduce(0, +))
                let fused = try model.fusionLayers(states, mask: text, images: model.fusionLayers.crossAttentionContext(imageEmbeds), dropout: nil)
                itm.append(try model.itmHead(fused.slice(axis: 1, start: 0, length: 1).reshaped([1, fused.shape[2]])).toArray()[1])
            }
        }
        let row = r.imageToText.rows[1]
        for (t, s) in zip(row.indices, row.scores) { XCTAssertEqual(s, itm[t], accuracy: 1e-4, "ITM score of text \(t)") }
        let worstChosen = row.indices.map { sims[$0] }.min()!
        for t in 0..<9 where !row.indices.contains(t) { XCTAssertLessThanOrEqual(sims[t], worstChosen + 1e-5) }

        // k_test above the candidate counts: every entry rescored, k clamped.
        options.kTest = 50
        let full = try evaluator.evaluate(data, options: options)
        XCTAssertEqual([full.kImageToText, full.kTextToImage], [9, 5])
        XCTAssertTrue(full.imageToText.rows.allSatisfy { Set($0.indices) == Set(0..<9) })
        let json = full.jsonObject(extra: ["world_size": 1])
        for key in ["txt_r1", "txt_r5", "txt_r10", "txt_r_mean", "img_r1", "img_r5", "img_r10", "img_r_mean", "r_mean",
                    "k_test", "images", "texts", "world_size"] {
            XCTAssertNotNil(json[key], key)
        }
        XCTAssertEqual(json["k_test"] as? Int, 50)
    }

    /// --image-res: the position grid is resized (ALBEF's interpolate_pos_embed), [CLS] kept.
    func testImageResolutionChangeResizesPositionEmbeddings() throws {
        let (run, saved) = try EvalFixture.makeRun(in: dir)
        let ckpt = try EvalCheckpoint.locate(run.path, configPath: nil)
        let model = try XCTUnwrap(try ckpt.loadModel(imageRes: 48) as? ALBEFModel)
        XCTAssertEqual(model.config.imageRes, 48)
        XCTAssertEqual(model.visualEncoder.posEmbed.shape, [1, 37, 16])
        XCTAssertEqual(Array(model.visualEncoder.posEmbed.toArray()[0..<16]), Array(saved.visualEncoder.posEmbed.toArray()[0..<16]))
        XCTAssertEqual(model.textProj.weight.toArray(), saved.textProj.weight.toArray())
        XCTAssertThrowsError(try ckpt.loadModel(imageRes: 30)) { XCTAssertTrue("\($0)".contains("--image-res 30"), "\($0)") }
    }

    func testCheckpointPathsAndConfigErrors() throws {
        let (run, _) = try EvalFixture.makeRun(in: dir, steps: [1, 4])
        XCTAssertEqual(try EvalCheckpoint.locate(run.path, configPath: nil).step, 4)
        let folder = run.appendingPathComponent("checkpoints/step-00000001")
        XCTAssertEqual(try EvalCheckpoint.locate(folder.path, configPath: nil).step, 1)
        let weights = folder.appendingPathComponent("model.safetensors").path
        XCTAssertThrowsError(try EvalCheckpoint.locate(weights, configPath: nil)) {
            XCTAssertTrue("\($0)".contains("--config"), "\($0)")
        }
        let configFile = dir.appendingPathComponent("tiny.yaml")
        try EvalFixture.yaml.write(to: configFile, atomically: true, encoding: .utf8)
        let bare = try EvalCheckpoint.locate(weights, configPath: configFile.path)
        XCTAssertNil(bare.step)
        XCTAssertEqual(bare.config.imageRes, 32)
        XCTAssertThrowsError(try EvalCheckpoint.locate(dir.appendingPathComponent("nothing").path, configPath: nil)) {
            XCTAssertTrue("\($0)".contains("nothing") && "\($0)".contains("no such"), "\($0)")
        }
        XCTAssertThrowsError(try EvalCheckpoint.locate(dir.path, configPath: nil)) {
            XCTAssertTrue("\($0)".contains("neither a checkpoint"), "\($0)")
        }
        // The recorded config names a bert_config that cannot be found.
        let elsewhere = try EvalFixture.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: elsewhere) }
        try FileManager.default.moveItem(at: run, to: elsewhere.appendingPathComponent("run"))
        XCTAssertThrowsError(try EvalCheckpoint.locate(elsewhere.appendingPathComponent("run").path, configPath: nil)) {
            XCTAssertTrue("\($0)".contains("bert_tiny.json not found") && "\($0)".contains("--config"), "\($0)")
        }
        // A damaged newest checkpoint is skipped with a warning.
        let moved = elsewhere.appendingPathComponent("run")
        try EvalFixture.bertJSON.write(to: elsewhere.appendingPathComponent("bert_tiny.json"), atomically: true, encoding: .utf8)
        let newest = moved.appendingPathComponent("checkpoints/step-00000004/model.safetensors")
        var bytes = try Data(contentsOf: newest)
        bytes[bytes.count - 5] ^= 0xFF
        try bytes.write(to: newest)
        var warnings: [String] = []
        XCTAssertEqual(try EvalCheckpoint.locate(moved.path, configPath: nil) { warnings.append($0) }.step, 1)
        XCTAssertEqual(warnings.count, 1)
    }

    func testMissingImageIsNamed() throws {
        let vocab = try EvalFixture.vocabulary()
        let (run, _) = try EvalFixture.makeRun(in: dir)
        let ann = try EvalFixture.writeScenes(in: dir, count: 2)
        try FileManager.default.removeItem(at: dir.appendingPathComponent("images/001.jpg"))
        let model = try EvalCheckpoint.locate(run.path, configPath: nil).loadModel((any ImageTextRetrievalModel).self, for: "retrieval")
        let evaluator = RetrievalEvaluator(model: model, tokenizer: try BertTokenizer(vocabularyFile: vocab), communicator: .singleProcess())
        XCTAssertThrowsError(try evaluator.evaluate(RetrievalDataset.load(annotation: ann.path, imageRoot: dir.path))) {
            XCTAssertTrue("\($0)".contains("images/001.jpg"), "\($0)")
        }
    }
}
