import Foundation
import XCTest

/// Bad config values reach the user as a clear error and a non-zero exit from the commands that
/// read configs, never a trap (a signal) and never a silent default.
final class ConfigCommandTests: XCTestCase {
    func testBadValuesAndMisspeltKeysAreErrorsNotTraps() throws {
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let cases: [(String, String)] = [
            ("vision: {patch_size: 0}", "vision.patch_size: must be in [1, 4096], got 0"),
            ("vision: {num_heads: 0}", "vision.num_heads: must be in [1, 4096], got 0"),
            ("image_res: .inf", "image_res: must be a finite number, got .inf"),
            ("train: {max_steps: .nan}", "train.max_steps: must be a finite number, got .nan"),
            ("train: {seed: -1}", "train.seed: must be in [0, "),
            ("schedular: {warmup_step_size: 0}", "schedular.warmup_step_size: must be in [1, "),
            ("train: {checkpoint_every: 0}", "train.checkpoint_every: must be in [1, "),
            ("vision: {depth: -3}", "vision.depth: must be in [1, 1024], got -3"),
            ("train: {max_step: 4}", "train.max_step: unknown key, did you mean max_steps?"),
            ("optimizer: {lr: 1e-3, weight_decy: 0.1}", "optimizer.weight_decy: unknown key, did you mean weight_decay?"),
        ]
        for (i, (yaml, needle)) in cases.enumerated() {
            let path = dir.appendingPathComponent("bad\(i).yaml").path
            try yaml.write(toFile: path, atomically: true, encoding: .utf8)
            for command in [["train", "--config", path, "--out", dir.appendingPathComponent("run").path],
                            ["bench", "train-step", "--config", path, "--steps", "1"]] {
                let r = try CLI.run(command)
                XCTAssertEqual(r.status, 1, "\(command[0]) with '\(yaml)': exit \(r.status) (a trap would be a signal)\n\(r.stderr)")
                XCTAssertTrue(r.stderr.contains(path) && r.stderr.contains(needle), "\(command[0]) with '\(yaml)': \(r.stderr)")
            }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("run").path), "nothing written for a bad config")
    }
}
