import ELIPConfig
import ELIPModel
import ELIPText
import Foundation

/// Where a fine-tuning task's training batches come from: its LMDB shards (`data.shards` /
/// `--data`) or, without shards, its synthetic split (`data: {synthetic: {images, size}}`).
public enum FineTuneData {
    public static func trainingSource(task: FineTuneTask, config cfg: TrainingConfig, file: String, rank: Int, worldSize: Int,
                                      tokenizer: BertTokenizer) throws -> BatchSource {
        if let dir = cfg.dataDirectory {
            throw ConfigError(file: dir, message: "task \(task.name): training from LMDB shards is not supported yet; use data: {synthetic: ...}")
        }
        let size = cfg.syntheticSize > 0 ? cfg.syntheticSize : cfg.model.imageRes
        guard size == cfg.model.imageRes else {
            throw ConfigError(file: file, key: "data.synthetic.size", message: "synthetic image size \(size) differs from image_res \(cfg.model.imageRes)")
        }
        switch task.name {
        case "ve":
            let needed = cfg.batchSize * worldSize
            guard cfg.syntheticImages * 3 >= needed else {
                throw ConfigError(file: file, key: "data.synthetic.images", message: "\(cfg.syntheticImages) scenes x 3 statements are fewer than the \(needed) records one step takes")
            }
            return SyntheticVEBatchSource(images: cfg.syntheticImages, imageSize: size, batchSize: cfg.batchSize, rank: rank,
                                          worldSize: worldSize, seed: cfg.seed, split: .train, tokenizer: tokenizer,
                                          captionStyle: cfg.captionStyle)
        default:
            throw ConfigError(file: file, key: "data", message: "task \(task.name) has no synthetic split yet")
        }
    }
}
