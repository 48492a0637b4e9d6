import ELIPConfig
import ELIPImage
import ELIPModel
import ELIPShards
import ELIPText
import Foundation

/// Where a fine-tuning task's training batches come from: its LMDB shards (`data.shards` /
/// `--data`) or, without shards, its synthetic split (`data: {synthetic: {images, size}}`).
public enum FineTuneData {
    /// The official fine-tuning transform: RandomResizedCrop scale 0.5-1.0 (pre-training 0.2-1.0),
    /// flip 0.5, RandAugment(2, 7); data.crop_scale, data.flip and data.rand_augment override it.
    static func fineTuningAugmentation(_ cfg: TrainingConfig) -> ShardBatchSource.Augmentation {
        var augmentation = cfg.augmentation
        if !cfg.cropScaleGiven { augmentation.cropScale = 0.5...1.0 }
        return augmentation
    }

    /// NLVR2: the pairs of `elip build-dataset --format nlvr2` shards, both images of a pair
    /// transformed independently with the fine-tuning transform (nlvr_dataset.py).
    static func nlvrSource(directory: String, config cfg: TrainingConfig, rank: Int, worldSize: Int,
                           tokenizer: BertTokenizer) throws -> BatchSource {
        let a = fineTuningAugmentation(cfg)
        let transform = ImageTransform.pretrain(PretrainTransform(imageSize: cfg.model.imageRes, scale: a.cropScale, flipProbability: a.flipProbability,
                                                                  randAugment: a.randAugment ? a.randAugmentPreset : nil))
        return try NLVRBatchSource(dataset: try NLVRPairDataset(directory: directory), batchSize: cfg.batchSize, rank: rank,
                                   worldSize: worldSize, seed: cfg.seed, transform: transform, tokenizer: tokenizer,
                                   captionStyle: cfg.captionStyle)
    }

    /// NLVR2's text-assignment stage reads the pre-training corpus as `train` does (its shards with
    /// the pre-training transform, or the synthetic scenes).
    static func textAssignmentSource(config cfg: TrainingConfig, file: String, rank: Int, worldSize: Int,
                                     tokenizer: BertTokenizer) throws -> BatchSource {
        if let dir = cfg.dataDirectory {
            return try ShardBatchSource(directory: dir, rank: rank, worldSize: worldSize, seed: cfg.seed, batchSize: cfg.batchSize,
                                        imageSize: cfg.model.imageRes, tokenizer: tokenizer, captionStyle: cfg.captionStyle,
                                        workerThreads: cfg.loaderThreads, prefetchDepth: cfg.prefetchBatches, strict: cfg.strictData,
                                        augmentation: cfg.augmentation)
        }
        let size = cfg.syntheticSize > 0 ? cfg.syntheticSize : cfg.model.imageRes
        guard size == cfg.model.imageRes else {
            throw ConfigError(file: file, key: "data.synthetic.size", message: "synthetic image size \(size) differs from image_res \(cfg.model.imageRes)")
        }
        return SyntheticBatchSource(images: cfg.syntheticImages, imageSize: size, batchSize: cfg.batchSize, rank: rank,
                                    worldSize: worldSize, seed: cfg.seed, tokenizer: tokenizer, captionStyle: cfg.captionStyle)
    }

    /// Tasks whose training batches can come from `build-dataset --format <task>` shards.
    public static let shardTasks: Set<String> = ["ve", "retrieval", "vqa"]

    public static func trainingSource(task: FineTuneTask, config cfg: TrainingConfig, file: String, rank: Int, worldSize: Int,
                                      tokenizer: BertTokenizer) throws -> BatchSource {
        if let dir = cfg.dataDirectory, task.name == "nlvr2" {
            return try nlvrSource(directory: dir, config: cfg, rank: rank, worldSize: worldSize, tokenizer: tokenizer)
        }
        if task.name == "nlvr2-ta" {
            return try textAssignmentSource(config: cfg, file: file, rank: rank, worldSize: worldSize, tokenizer: tokenizer)
        }
        if let dir = cfg.dataDirectory {
            guard shardTasks.contains(task.name) else {
                throw ConfigError(file: dir, message: "task \(task.name): training from LMDB shards is not supported yet")
            }
            let vqa = cfg.model as? ALBEFVQAConfig
            guard (task.name == "vqa") == (vqa != nil) else {
                throw ConfigError(file: file, message: "task \(task.name) does not train model \(cfg.model.kind)")
            }
            // Shards of another task (or a pre-training corpus) would train on the wrong labels:
            // the manifest says what they were built for.
            let listing: ShardListing
            do { listing = try ShardListing.read(directory: dir) } catch { throw ConfigError(file: dir, message: "\(error)") }
            guard listing.taskFormat == task.name else {
                let built = listing.taskFormat.map { "with --format \($0)" } ?? "without --format (pre-training captions)"
                throw ConfigError(file: dir, message: "these shards were built \(built); task \(task.name) needs `elip build-dataset --format \(task.name)` shards")
            }
            let augmentation = fineTuningAugmentation(cfg)
            // One sample per (image, caption) pair per epoch, as the official task datasets (VQA:
            // per question, each with its answers).
            return try ShardBatchSource(directory: dir, rank: rank, worldSize: worldSize, seed: cfg.seed,
                                        batchSize: cfg.batchSize, imageSize: cfg.model.imageRes, tokenizer: tokenizer,
                                        captionStyle: cfg.captionStyle, workerThreads: cfg.loaderThreads,
                                        prefetchDepth: cfg.prefetchBatches, strict: cfg.strictData, augmentation: augmentation,
                                        samplePerCaption: true, answerStyle: vqa?.answerStyle)
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
        case "nlvr2":
            throw ConfigError(file: file, key: "data", message: "task nlvr2 trains from shards: `elip synth` writes nlvr2_train.json, `elip build-dataset --format nlvr2` makes the shards, then give --data or data.shards")
        case "retrieval":
            let needed = cfg.batchSize * worldSize
            guard cfg.syntheticImages * SyntheticRetrievalBatchSource.captionsPerScene >= needed else {
                throw ConfigError(file: file, key: "data.synthetic.images", message: "\(cfg.syntheticImages) scenes x \(SyntheticRetrievalBatchSource.captionsPerScene) captions are fewer than the \(needed) samples one step takes")
            }
            return SyntheticRetrievalBatchSource(images: cfg.syntheticImages, imageSize: size, batchSize: cfg.batchSize, rank: rank,
                                                 worldSize: worldSize, seed: cfg.seed, tokenizer: tokenizer, captionStyle: cfg.captionStyle)
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
