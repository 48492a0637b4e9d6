/// Keys that the official configuration files carry but this project ignores on purpose, each with
/// the reason. They are accepted where they appear (the files load unchanged) and listed here and
/// in docs/CONFIG.md, so "ignored" is a decision, never an accident: any key neither read nor
/// listed is an error.
public struct IgnoredKeys: Sendable {
    /// Dotted key path -> why it has no effect here.
    public let reasons: [String: String]

    public init(_ reasons: [String: String]) { self.reasons = reasons }

    public func contains(_ keyPath: String) -> Bool { reasons[keyPath] != nil }

    public static let none = IgnoredKeys([:])

    /// Pre-training / training files (ALBEF and ELIP `configs/Pretrain.yaml` style).
    public static let trainingFile = IgnoredKeys([
        "train_file": "the corpus comes from the LMDB shards of `elip build-dataset` (data.shards); the annotation files are read there",
        "val_file": "fine-tuning: the evaluation split comes from its own shards (`elip build-dataset` of that file, then `elip eval-ve --data` for SNLI-VE)",
        "test_file": "fine-tuning: the test split comes from its own shards (`elip build-dataset` of that file, then `elip eval-ve --data` for SNLI-VE)",
        "image_root": "fine-tuning: images are read once by `elip build-dataset --image-root` and stored in the shards",
        "eval_ema": "NLVR.yaml carries it but NLVR.py never reads it: evaluation uses the online model",
        "vqa_root": "VQA: images are read once by `elip build-dataset --format vqa --image-root` and stored in the shards",
        "vg_root": "VQA: Visual Genome images are read by `elip build-dataset --format vqa --image-root` (one root per build)",
        "answer_list": "VQA: the answer list is given to `elip eval-vqa --answer-list` at evaluation",
        "schedular.decay_rate": "timm's step-decay rate; the cosine schedule ALBEF uses does not read it",
        "schedular.cooldown_epochs": "ALBEF's training loop runs `schedular.epochs` epochs; the cooldown only extends timm's own epoch count",
        "laion_path": "BLIP's optional LAION file list; the corpus comes from the LMDB shards",
        "vit_grad_ckpt": "BLIP's gradient checkpointing of the ViT: a PyTorch memory option, no effect on the numbers",
        "vit_ckpt_layer": "the first ViT layer BLIP checkpoints (see vit_grad_ckpt)",
    ])

    /// HuggingFace BERT config files (`config_bert.json`): metadata that does not change the model
    /// this project builds.
    public static let bertJSON = IgnoredKeys([
        "_name_or_path": "where HuggingFace loaded the file from (metadata)",
        "architectures": "HuggingFace class names (metadata)",
        "model_type": "metadata; the model is always BERT",
        "initializer_range": "random initialisation is fixed by the layer type (N(0, 0.02) truncated at 2 sigma)",
        "pad_token_id": "padding comes from the tokenizer's [PAD] and the attention mask",
        "transformers_version": "metadata",
        "gradient_checkpointing": "a memory option of PyTorch; no effect on the result",
        "use_cache": "a generation option of HuggingFace",
        "classifier_dropout": "no classifier head of HuggingFace's is built",
        "bos_token_id": "special ids come from the tokenizer's vocabulary (roberta-base's config.json)",
        "eos_token_id": "special ids come from the tokenizer's vocabulary (roberta-base's config.json)",
    ])
}
