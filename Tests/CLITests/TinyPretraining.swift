import Foundation
import XCTest

/// The tiny ALBEF pre-training run the fine-tuning tests start from: 32 px (4 x 4 patches), embed
/// 8, queue 16, no pruning, `steps` steps on the synthetic scenes, in `dir/pretrain`.
enum TinyPretraining {
    /// Writes `bertJSON` as `dir/bert.json` and the config, trains, and returns the run folder.
    static func run(in dir: URL, bertJSON: String, steps: Int, images: Int = 32,
                    file: StaticString = #filePath, line: UInt = #line) throws -> String {
        try bertJSON.write(to: dir.appendingPathComponent("bert.json"), atomically: true, encoding: .utf8)
        let config = dir.appendingPathComponent("pretrain.yaml").path
        try """
        bert_config: bert.json
        image_res: 32
        vision_width: 16
        embed_dim: 8
        batch_size: 4
        queue_size: 16
        img_prune: null
        vision: {patch_size: 8, embed_dim: 16, depth: 2, num_heads: 2, mlp_ratio: 2}
        optimizer: {opt: adamW, lr: 1e-3, weight_decay: 0.02}
        schedular: {sched: cosine, lr: 1e-3, epochs: 5, min_lr: 1e-4, warmup_lr: 1e-4, warmup_epochs: 1, warmup_step_size: 2}
        train: {max_steps: \(steps), checkpoint_every: \(steps), log_every: 1, seed: 1, bucket_mb: 1}
        data: {synthetic: {images: \(images), size: 32}}

        """.write(toFile: config, atomically: true, encoding: .utf8)
        let run = dir.appendingPathComponent("pretrain").path
        let r = try CLI.run(["train", "--config", config, "--vocab", Tiny.vocab, "--out", run, "--threads", "1"])
        XCTAssertEqual(r.status, 0, r.stderr, file: file, line: line)
        return run
    }

    /// The run's last checkpoint's weights.
    static func weights(in dir: URL, bertJSON: String, steps: Int, images: Int = 32) throws -> String {
        let run = try run(in: dir, bertJSON: bertJSON, steps: steps, images: images)
        return String(format: "%@/checkpoints/step-%08d/model.safetensors", run, steps)
    }
}
