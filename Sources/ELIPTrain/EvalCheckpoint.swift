import ELIPModel
import ELIPTensor
import Foundation
import Safetensors
import Yams

/// The weights and configuration an evaluation or picture uses, found from a `--checkpoint` path:
/// a checkpoint folder (`RUN/checkpoints/step-N`), a run folder (its newest valid checkpoint) or
/// an ALBEF state dict (`.safetensors`). The configuration is `--config` when given, otherwise
/// the config text recorded in the checkpoint's trainer.json.
public struct EvalCheckpoint {
    /// The state dict file.
    public let weightsPath: String
    /// The checkpoint folder, when the weights come from one.
    public let folder: URL?
    /// Training step of the checkpoint (nil for a bare state dict).
    public let step: Int?
    public let config: ALBEFConfig
    /// Where the config came from (a file, or "trainer.json of FOLDER").
    public let configSource: String
    /// `data.vocab` of the config, if it names one.
    public let vocabulary: String?

    /// Resolves `path` (see the type's comment). `warn` receives notes such as skipped damaged
    /// checkpoints.
    public static func locate(_ path: String, configPath: String?, warn: (String) -> Void = { _ in }) throws -> EvalCheckpoint {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDir) else {
            throw TrainError.checkpoint("--checkpoint \(path): no such file or folder")
        }
        var folder: URL?
        let weights: String
        if isDir.boolValue {
            let url = URL(fileURLWithPath: path)
            if fm.fileExists(atPath: url.appendingPathComponent("model.safetensors").path) {
                folder = url
            } else if fm.fileExists(atPath: url.appendingPathComponent("checkpoints").path) {
                let store = CheckpointStore(runDirectory: url)
                guard let newest = store.latestValid(warn: warn) else {
                    throw TrainError.checkpoint("--checkpoint \(path): the run folder has no valid checkpoint in \(store.directory.path)")
                }
                folder = newest
            } else {
                throw TrainError.checkpoint("--checkpoint \(path): a folder, but neither a checkpoint (model.safetensors) nor a run folder (checkpoints/)")
            }
            weights = folder!.appendingPathComponent("model.safetensors").path
        } else {
            weights = path
        }

        var state: TrainerState?
        if let folder {
            let store = CheckpointStore(runDirectory: folder.deletingLastPathComponent().deletingLastPathComponent())
            state = try store.verify(folder).state
        }
        let config: ALBEFConfig, source: String
        if let configPath {
            config = try ALBEFConfig.load(configPath)
            source = configPath
        } else if let state, let folder {
            guard !state.configText.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                throw TrainError.config("\(folder.path)/trainer.json records no config text; pass --config FILE")
            }
            source = "trainer.json of \(folder.path)"
            config = try parseConfig(state.configText, source: source, searchFolders: searchFolders(for: folder))
        } else {
            throw TrainError.config("--checkpoint \(path) is a bare state dict: pass --config FILE (the model configuration it was trained with)")
        }
        var vocabulary: String?
        if let data = config.raw["data"] as? [String: Any], let v = data["vocab"] as? String { vocabulary = v }
        return EvalCheckpoint(weightsPath: weights, folder: folder, step: state?.step, config: config,
                              configSource: source, vocabulary: vocabulary)
    }

    /// Folders where a relative `bert_config` of a recorded config may live: the working
    /// directory, `configs/`, the run folder and its parent.
    static func searchFolders(for checkpointFolder: URL) -> [String] {
        let run = checkpointFolder.deletingLastPathComponent().deletingLastPathComponent()
        return [".", "configs", run.path, run.deletingLastPathComponent().path]
    }

    /// A config from its text (as `ALBEFConfig.load` reads a file); a relative `bert_config` is
    /// looked up in `searchFolders`.
    public static func parseConfig(_ text: String, source: String, searchFolders: [String]) throws -> ALBEFConfig {
        let node: Any?
        do { node = try Yams.load(yaml: text) } catch { throw TrainError.config("\(source): " + "YAML syntax error: \(error)") }
        guard let dict = node as? [String: Any] else { throw TrainError.config("\(source): " + "top level must be a mapping") }
        var c = try ALBEFConfig(dictionary: dict, file: source)
        if let bertPath = dict["bert_config"] as? String {
            var candidates = [bertPath]
            if !bertPath.hasPrefix("/") {
                let name = (bertPath as NSString).lastPathComponent
                for d in searchFolders {
                    candidates.append((d as NSString).appendingPathComponent(bertPath))
                    candidates.append((d as NSString).appendingPathComponent(name))
                }
            }
            var seen = Set<String>()
            candidates = candidates.filter { seen.insert($0).inserted }
            guard let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) else {
                throw TrainError.config("\(source): " + "bert_config \(bertPath) not found (tried \(candidates.joined(separator: ", "))); pass --config FILE")
            }
            c.bert = try BertConfig.load(found)
        }
        if c.bert.fusionLayer == nil { c.bert.fusionLayer = 6 }
        if c.bert.encoderWidth == nil { c.bert.encoderWidth = c.vision.embedDim }
        try c.validate(file: source)
        return c
    }

    /// The model with the checkpoint's weights. With `imageRes` different from the config's, the
    /// ViT position grid is resized bicubically (ALBEF's interpolate_pos_embed) and the returned
    /// model runs at that resolution (pruning turned off when its schedule does not fit there).
    public func loadModel(imageRes: Int? = nil) throws -> ALBEFModel {
        let file = try SafetensorsFile(path: weightsPath)
        let model = try ALBEFModel(config: config)
        try model.load(from: file)
        guard let res = imageRes, res != config.imageRes else { return model }
        var c = config
        c.imageRes = res
        guard res > 0, res % c.vision.patchSize == 0 else {
            throw TrainError.config("--image-res \(res) must be a positive multiple of the patch size \(c.vision.patchSize)")
        }
        if let p = c.prune, (try? p.validate(depth: c.vision.depth, patchCount: c.patchCount)) == nil { c.prune = nil }
        try c.validate(file: configSource)
        let resized = try ALBEFModel(config: c)
        for (entry, tensor) in zip(resized.online.entries, resized.online.tensors) {
            guard let src = model.online.tensor(entry.name) else {
                throw TrainError.checkpoint("\(weightsPath): \(entry.name) missing")
            }
            if entry.name == "visual_encoder.pos_embed" && src.count != tensor.count {
                try tensor.assign(PretrainedImport.resizePositionEmbedding(src.toArray(), shape: src.shape, toTokens: entry.shape[1]))
            } else {
                try tensor.assign(src)
            }
        }
        resized.copyParametersToMomentum()
        return resized
    }
}
