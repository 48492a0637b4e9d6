import Foundation
import Safetensors

/// A task model that starts from a pre-training checkpoint the way its official script loads one
/// (key renaming, `interpolate_pos_embed`, what keeps its initialisation).
public protocol PretrainingCheckpointLoadable: TrainableModel {
    /// Loads `file` into the model and returns what was copied, resized, kept at init and ignored.
    @discardableResult
    func loadPretrainingCheckpoint(_ file: SafetensorsFile) throws -> ALBEFTaskCheckpoint.Plan
}

extension ALBEFVEModel: PretrainingCheckpointLoadable {}
extension ALBEFNLVRModel: PretrainingCheckpointLoadable {}
extension ALBEFRetrievalModel: PretrainingCheckpointLoadable {}
extension ALBEFVQAModel: PretrainingCheckpointLoadable {}

/// One downstream task of `elip finetune --task NAME`: the registered task model it trains and
/// the official config it ships with. Adding a task: its model in the registry, then its line here.
public struct FineTuneTask: Sendable {
    /// `--task` value.
    public let name: String
    /// Registry name of the task model (`model:` of its config); nil while the task cannot be
    /// fine-tuned end to end yet (its model or its data path is missing).
    public let model: String?
    /// The official config shipped for it.
    public let config: String
    public let about: String
}

public enum FineTuneTasks {
    public static let all: [FineTuneTask] = [
        FineTuneTask(name: "ve", model: ALBEFVEModel.kind.name, config: "configs/VE.yaml", about: "SNLI-VE (image, sentence -> entailment/neutral/contradiction)"),
        FineTuneTask(name: "retrieval", model: ALBEFRetrievalModel.kind.name, config: "configs/Retrieval_coco.yaml", about: "image-text retrieval (COCO, Flickr30K)"),
        FineTuneTask(name: "vqa", model: ALBEFVQAModel.kind.name, config: "configs/VQA.yaml", about: "VQA (answer decoder, rank_answer)"),
        FineTuneTask(name: "nlvr2", model: ALBEFNLVRModel.kind.name, config: "configs/NLVR.yaml", about: "NLVR2 (two images, true/false)"),
        FineTuneTask(name: "nlvr2-ta", model: ALBEFNLVRTextAssignmentModel.kind.name, config: "configs/NLVR_pretrain.yaml",
                     about: "NLVR2's text-assignment stage on the pre-training corpus (its checkpoint is --init of --task nlvr2)"),
    ]

    /// The task called `name` with its model; an error listing the known tasks, or saying what
    /// is not built yet.
    public static func named(_ name: String) throws -> (task: FineTuneTask, model: ModelKind) {
        guard let t = all.first(where: { $0.name == name }) else {
            throw ModelRegistryError("unknown task '\(name)' (known: \(all.map(\.name).joined(separator: ", ")))")
        }
        guard let m = t.model else {
            let ready = all.filter { $0.model != nil }.map(\.name).joined(separator: ", ")
            throw ModelRegistryError("task '\(name)' (\(t.about)): its task data (build-dataset records and the loader's batches) is not built yet, so it cannot be fine-tuned end to end; its model replays the official step in `elip check-step` (fine-tuning is available for: \(ready))")
        }
        return (t, try ModelRegistry.kind(named: m))
    }
}
