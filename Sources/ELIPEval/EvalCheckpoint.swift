import ELIPModel
import ELIPTensor
import ELIPTrain
import Foundation
import Safetensors
import TorchCheckpoint

/// The weights and configuration an evaluation or picture uses, found from a `--checkpoint` path:
/// a checkpoint folder (`RUN/checkpoints/step-N`), a run folder (its newest valid checkpoint) or
/// a state dict (`.safetensors`, or a PyTorch `.pth`/`.bin` such as an official release). The configuration is `--config` when given, otherwise
/// the config text recorded in the checkpoint's trainer.json.
public struct EvalCheckpoint {
    /// The state dict file.
    public let weightsPath: String
    /// The checkpoint folder, when the weights come from one.
    public let folder: URL?
    /// Training step of the checkpoint (nil for a bare state dict).
    public let step: Int?
    public let config: any ModelConfig
    /// Where the config came from (a file, or "trainer.json of FOLDER").
    public let configSource: String
    /// `data.vocab` of the config, if it names one.
    public let vocabulary: String?
    /// merges.txt of a byte-level BPE config (METER), nil for WordPiece.
    public var merges: String?

    /// Resolves `path` (see the type's comment). `warn` receives notes such as skipped damaged
    /// checkpoints.
    /// `defaultModel`: the model of a config without `model:` (a task's, e.g. albef-ve for the
    /// official VE.yaml).
    public static func locate(_ path: String, configPath: String?, defaultModel: String = "albef",
                              warn: (String) -> Void = { _ in }) throws -> EvalCheckpoint {
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
        var vocabulary: String?, merges: String?
        if let folder {
            let store = CheckpointStore(runDirectory: folder.deletingLastPathComponent().deletingLastPathComponent())
            state = try store.verifiedState(folder)
        }
        let config: any ModelConfig, source: String
        if let configPath {
            let c = try TrainingConfig.load(configPath, defaultModel: defaultModel)
            config = c.model
            vocabulary = c.vocabulary
            merges = c.merges
            source = configPath
        } else if let state, let folder {
            guard !state.configText.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                throw TrainError.config("\(folder.path)/trainer.json records no config text; pass --config FILE")
            }
            source = "trainer.json of \(folder.path)"
            let c: TrainingConfig
            // The model the run recorded decides (a fine-tuned retrieval model under eval-retrieval).
            do { c = try TrainingConfig.parse(state.configText, source: source, searchFolders: searchFolders(for: folder), defaultModel: state.modelKind ?? defaultModel) } catch {
                throw TrainError.config("\(error); pass --config FILE")
            }
            config = c.model
            vocabulary = c.vocabulary
            merges = c.merges
        } else {
            throw TrainError.config("--checkpoint \(path) is a bare state dict: pass --config FILE (the model configuration it was trained with)")
        }
        var located = EvalCheckpoint(weightsPath: weights, folder: folder, step: state?.step, config: config,
                                     configSource: source, vocabulary: vocabulary)
        located.merges = merges
        return located
    }

    /// Folders where a relative `bert_config` of a recorded config may live: the working
    /// directory, `configs/`, the run folder and its parent.
    static func searchFolders(for checkpointFolder: URL) -> [String] {
        let run = checkpointFolder.deletingLastPathComponent().deletingLastPathComponent()
        return [".", "configs", run.path, run.deletingLastPathComponent().path]
    }

    /// The model as `capability` (a protocol such as `ImageTextRetrievalModel`); a model without
    /// it is an error naming `purpose`.
    public func loadModel<M>(_ capability: M.Type, for purpose: String, imageRes: Int? = nil) throws -> M {
        let model = try loadModel(imageRes: imageRes)
        guard let m = model as? M else {
            throw TrainError.config("\(config.kind) models do not support \(purpose)")
        }
        return m
    }

    /// The model with the checkpoint's weights. With `imageRes` different from the config's, the
    /// position grids are resized bicubically (ALBEF's interpolate_pos_embed) and the returned
    /// model runs at that resolution (pruning turned off when its schedule does not fit there).
    public func loadModel(imageRes: Int? = nil) throws -> any TrainableModel {
        // A run's model.safetensors, or an official .pth/.bin read directly (same names).
        let file = try WeightFile.open(weightsPath).file
        let model = try config.makeModel()
        try StateDict.load(model.stateLayout, from: file)
        guard let res = imageRes, res != config.imageRes else { return model }
        var c = config
        c.imageRes = res
        // Evaluation does not prune; a schedule that does not fit the new patch count is dropped.
        if c.prune != nil, (try? c.validate(file: configSource)) == nil { c.prune = nil }
        do { try c.validate(file: configSource) } catch {
            throw TrainError.config("--image-res \(res): \(error)")
        }
        let resized = try c.makeModel()
        for (entry, tensor) in zip(resized.parameters.entries, resized.parameters.tensors) {
            guard let src = model.parameters.tensor(entry.name) else {
                throw TrainError.checkpoint("\(weightsPath): \(entry.name) missing")
            }
            if src.count != tensor.count && entry.name.hasSuffix("pos_embed") {
                try tensor.assign(PretrainedImport.resizePositionEmbedding(src.toArray(), shape: src.shape, toTokens: entry.shape[1]))
            } else {
                guard src.count == tensor.count else {
                    throw TrainError.checkpoint("\(weightsPath): \(entry.name) has \(src.shape), the model at \(res) px needs \(entry.shape)")
                }
                try tensor.assign(src)
            }
        }
        // Momentum weights follow the online ones, as in a fresh checkpoint (evaluation uses neither).
        for a in resized.stateLayout.arenas where a.role == .momentum { a.whenAbsent?() }
        return resized
    }
}
