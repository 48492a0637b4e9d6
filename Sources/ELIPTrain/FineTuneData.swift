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
            guard task.name == "ve" || task.name == "vqa" else {
                throw ConfigError(file: dir, message: "task \(task.name): training from LMDB shards is not supported yet")
            }
            let vqa = cfg.model as? ALBEFVQAConfig
            guard (task.name == "vqa") == (vqa != nil) else {
                throw ConfigError(file: file, message: "task \(task.name) does not train model \(cfg.model.kind)")
            }
            // The official fine-tuning transform: RandomResizedCrop scale 0.5-1.0 (pre-training
            // 0.2-1.0), flip 0.5, RandAugment(2, 7); data.crop_scale overrides it.
            var augmentation = cfg.augmentation
            if !cfg.cropScaleGiven { augmentation.cropScale = 0.5...1.0 }
            let source = try ShardBatchSource(directory: dir, rank: rank, worldSize: worldSize, seed: cfg.seed,
                                              batchSize: cfg.batchSize, imageSize: cfg.model.imageRes, tokenizer: tokenizer,
                                              captionStyle: cfg.captionStyle, workerThreads: cfg.loaderThreads,
                                              prefetchDepth: cfg.prefetchBatches, strict: cfg.strictData, augmentation: augmentation,
                                              answerStyle: vqa?.answerStyle)
            // Shards without labels (a pre-training corpus) cannot train a classifier: say so now,
            // not at the first step.
            let first = try source.batch(epoch: 0, index: 0)
            if vqa != nil {
                guard first.answers != nil else {
                    throw ConfigError(file: dir, message: "these shards hold no VQA questions (built without --format vqa?); task vqa needs `elip build-dataset --format vqa` shards")
                }
                return source
            }
            guard first.labels != nil else {
                throw ConfigError(file: dir, message: "these shards hold no labels (built without --format \(task.name)?); task \(task.name) needs `elip build-dataset --format \(task.name)` shards")
            }
            return source
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
        case "vqa":
            guard let vqa = cfg.model as? ALBEFVQAConfig else {
                throw ConfigError(file: file, message: "task vqa does not train model \(cfg.model.kind)")
            }
            let needed = cfg.batchSize * worldSize
            guard cfg.syntheticImages * 3 >= needed else {
                throw ConfigError(file: file, key: "data.synthetic.images", message: "\(cfg.syntheticImages) scenes x 3 questions are fewer than the \(needed) records one step takes")
            }
            return SyntheticVQABatchSource(images: cfg.syntheticImages, imageSize: size, batchSize: cfg.batchSize, rank: rank,
                                           worldSize: worldSize, seed: cfg.seed, tokenizer: tokenizer,
                                           questionStyle: cfg.captionStyle, answerStyle: vqa.answerStyle)
        default:
            throw ConfigError(file: file, key: "data", message: "task \(task.name) has no synthetic split yet")
        }
    }
}
