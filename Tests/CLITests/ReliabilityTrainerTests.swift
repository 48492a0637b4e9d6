import Foundation
import XCTest

/// Issue 15, the trainer's classes: non-finite losses (3), damaged checkpoints under --resume auto
/// (4), resuming below newer checkpoints (5), the parameter arena under `ulimit -v` (13), two
/// trainers on one run folder (15), SIGXFSZ and bad numeric options (18). Every case runs the
/// built `elip` on a tiny generated config in a temporary folder.
final class ReliabilityTrainerTests: XCTestCase {
    var dir: URL!
    var configPath: String!

    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    /// The synthetic corpus's own vocabulary (in the repository, so no download is needed).
    static let vocab = repo.appendingPathComponent("configs/synthetic-vocab.txt").path

    override func setUpWithError() throws {
        dir = try CLI.temporaryDirectory()
        configPath = dir.appendingPathComponent("tiny.yaml").path
        try tinyConfig(train: "max_steps: 4, checkpoint_every: 2, keep_checkpoints: 5, log_every: 1, seed: 7").write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    func tinyConfig(train: String) -> String {
        """
        bert_config: \(Self.repo.appendingPathComponent("configs/config_bert_tiny.json").path)
        image_res: 32
        vision_width: 64
        embed_dim: 16
        batch_size: 4
        queue_size: 32
        img_prune: {begin_layer: [2, 4, 10], num_act_layers: [2, 6, 2], keep_ratio: [0.75, 0.5, 0.25]}
        vision: {patch_size: 8, embed_dim: 64, depth: 12, num_heads: 4, mlp_ratio: 2}
        optimizer: {opt: adamW, lr: 1e-3, weight_decay: 0.02}
        schedular: {sched: cosine, lr: 1e-3, epochs: 50, min_lr: 1e-4, warmup_lr: 1e-4, warmup_epochs: 1, warmup_step_size: 2}
        train: {\(train)}
        data: {synthetic: {images: 64, size: 32}}

        """
    }

    func train(_ out: String, _ extra: [String] = [], environment: [String: String] = [:]) throws -> ElipRun {
        try CLI.run(["train", "--config", configPath, "--vocab", Self.vocab, "--out", dir.appendingPathComponent(out).path, "--threads", "1"] + extra,
                    environment: environment)
    }

    func checkpoints(_ run: String) -> [String] {
        let d = dir.appendingPathComponent(run).appendingPathComponent("checkpoints").path
        return ((try? FileManager.default.contentsOfDirectory(atPath: d)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
    }

    func checkpoint(_ run: String, _ name: String) -> URL {
        dir.appendingPathComponent(run).appendingPathComponent("checkpoints").appendingPathComponent(name)
    }

    /// Flips one byte in the middle of a checkpoint's model.safetensors (its checksum then fails).
    func damage(_ folder: URL) throws {
        let file = folder.appendingPathComponent("model.safetensors")
        var data = try Data(contentsOf: file)
        data[data.count / 2] ^= 0xFF
        try data.write(to: file)
    }

    // MARK: class 3

    /// A non-finite loss on a logged step (log_every: 1) is logged (null) and the step skipped; the
    /// run goes on. Non-finite losses in a row up to max_nonfinite_in_a_row stop it with an error
    /// naming the limit, after the last skipped step is in metrics.jsonl.
    func testNonFiniteLossIsLoggedSkippedAndAbortsAtTheLimit() throws {
        let once = try train("once", environment: ["ELIP_FAULT_NONFINITE_STEPS": "2"])
        XCTAssertEqual(once.status, 0, once.stderr)
        XCTAssertTrue(once.stderr.contains("step 2: non-finite loss or gradient on some rank; step skipped"), once.stderr)
        let lines = try String(contentsOf: dir.appendingPathComponent("once/metrics.jsonl"), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 4)
        let step2 = try JSONSerialization.jsonObject(with: Data(lines[1].utf8)) as! [String: Any]
        XCTAssertEqual(step2["skipped"] as? Bool, true)
        XCTAssertTrue(step2["grad_norm"] is NSNull, "\(lines[1])")
        XCTAssertTrue((step2["losses"] as! [String: Any]).values.allSatisfy { $0 is NSNull }, "\(lines[1])")
        let step3 = try JSONSerialization.jsonObject(with: Data(lines[2].utf8)) as! [String: Any]
        XCTAssertEqual(step3["skipped"] as? Bool, false)

        try tinyConfig(train: "max_steps: 20, checkpoint_every: 100, log_every: 1, seed: 7, max_nonfinite_in_a_row: 3")
            .write(toFile: configPath, atomically: true, encoding: .utf8)
        let always = try train("always", environment: ["ELIP_FAULT_NONFINITE_STEPS": "2-20"])
        XCTAssertEqual(always.status, 1, always.stderr)
        XCTAssertTrue(always.stderr.contains("training diverged: 3 steps in a row (up to step 4) had a non-finite loss or gradient, the limit train.max_nonfinite_in_a_row is 3"), always.stderr)
        let logged = try String(contentsOf: dir.appendingPathComponent("always/metrics.jsonl"), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(logged.count, 4, "steps 1-4 logged, the last three skipped")
        XCTAssertTrue(logged[3].contains("\"skipped\":true"))
    }

    // MARK: class 4

    /// --resume auto with every checkpoint damaged refuses (naming each) and changes nothing;
    /// --start-fresh-if-damaged starts at step 0 and keeps the damaged ones aside.
    func testResumeAutoRefusesWhenEveryCheckpointIsDamaged() throws {
        XCTAssertEqual(try train("run").status, 0)
        XCTAssertEqual(checkpoints("run"), ["step-00000002", "step-00000004"])
        for name in checkpoints("run") { try damage(checkpoint("run", name)) }
        let before = try checkpoints("run").map { try Data(contentsOf: checkpoint("run", $0).appendingPathComponent("model.safetensors")) }

        let refused = try train("run", ["--resume", "auto", "--max-steps", "6"])
        XCTAssertEqual(refused.status, 1, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("every checkpoint in") && refused.stderr.contains("is damaged"), refused.stderr)
        XCTAssertTrue(refused.stderr.contains("step-00000002: ") && refused.stderr.contains("step-00000004: "), refused.stderr)
        XCTAssertTrue(refused.stderr.contains("--start-fresh-if-damaged"), refused.stderr)
        let after = try checkpoints("run").map { try Data(contentsOf: checkpoint("run", $0).appendingPathComponent("model.safetensors")) }
        XCTAssertEqual(before, after, "the damaged checkpoints are left as they were")

        let fresh = try train("run", ["--resume", "auto", "--max-steps", "2", "--start-fresh-if-damaged"])
        XCTAssertEqual(fresh.status, 0, fresh.stderr)
        XCTAssertEqual(checkpoints("run"), ["damaged-step-00000002", "damaged-step-00000004", "step-00000002"])
        XCTAssertEqual(try Data(contentsOf: checkpoint("run", "damaged-step-00000004").appendingPathComponent("model.safetensors")), before[1])
    }

    /// Damaged checkpoints newer than the newest good one are kept aside, not overwritten or pruned.
    func testResumeAutoKeepsDamagedNewerCheckpoints() throws {
        XCTAssertEqual(try train("run").status, 0)
        try damage(checkpoint("run", "step-00000004"))
        let r = try train("run", ["--resume", "auto", "--max-steps", "6"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("resumed from") && r.stdout.contains("step-00000002 at step 2"), r.stdout)
        XCTAssertTrue(r.stderr.contains("kept as damaged-step-00000004"), r.stderr)
        XCTAssertEqual(checkpoints("run"), ["damaged-step-00000004", "step-00000002", "step-00000004", "step-00000006"])
    }

    // MARK: class 5

    /// Resuming from an older checkpoint (or starting fresh) in a folder holding newer ones is
    /// refused by default; with --set-aside-newer-checkpoints the newer ones are kept as
    /// superseded-*, and pruning never deletes the resume source or the checkpoint just written.
    func testResumingBelowNewerCheckpointsNeverDeletesThem() throws {
        try tinyConfig(train: "max_steps: 8, checkpoint_every: 2, keep_checkpoints: 2, log_every: 1, seed: 7")
            .write(toFile: configPath, atomically: true, encoding: .utf8)
        XCTAssertEqual(try train("run", ["--max-steps", "2"]).status, 0)
        XCTAssertEqual(try train("run", ["--resume", "auto"]).status, 0)
        // keep_checkpoints 2, plus the checkpoint that run resumed from (never pruned by it).
        XCTAssertEqual(checkpoints("run"), ["step-00000002", "step-00000006", "step-00000008"])

        let source = checkpoint("run", "step-00000002").path
        let refused = try train("run", ["--resume", source, "--max-steps", "4"])
        XCTAssertEqual(refused.status, 1, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("holds checkpoints newer than where this run starts") && refused.stderr.contains("step-00000006, step-00000008")
                      && refused.stderr.contains("--set-aside-newer-checkpoints"), refused.stderr)
        XCTAssertEqual(checkpoints("run"), ["step-00000002", "step-00000006", "step-00000008"])

        let fresh = try train("run", ["--max-steps", "2"])
        XCTAssertEqual(fresh.status, 1, fresh.stderr)
        XCTAssertTrue(fresh.stderr.contains("starting from step 0") && fresh.stderr.contains("--resume auto"), fresh.stderr)
        XCTAssertEqual(checkpoints("run"), ["step-00000002", "step-00000006", "step-00000008"])

        let branched = try train("run", ["--resume", source, "--max-steps", "6", "--set-aside-newer-checkpoints"])
        XCTAssertEqual(branched.status, 0, branched.stderr)
        // keep_checkpoints 2 keeps the newest two (step-4, step-6); step-2, the source, is never pruned.
        XCTAssertEqual(checkpoints("run"), ["step-00000002", "step-00000004", "step-00000006", "superseded-step-00000006", "superseded-step-00000008"])
    }

    // MARK: class 13

    /// The parameter arena reserves what the model needs: the tiny model trains under a 1.5 GB
    /// address-space limit (the old fixed 3 x 4 GiB reservation died in fatalError).
    func testTrainsUnderAnAddressSpaceLimit() throws {
        let out = dir.appendingPathComponent("ulimit").path
        let r = try shell("ulimit -v 1500000; exec '\(CLI.executable.path)' train --config '\(configPath!)' --vocab '\(Self.vocab)' --out '\(out)' --threads 1 --max-steps 1")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("stopped: reached step 1"), r.stdout)
    }

    /// Address-space limits far below the model's need end in a clear error, never in an abort
    /// (Swift's allocation failure), a trap, or a hang (OpenBLAS retries a failed buffer
    /// allocation forever, and `exit` then waits for its thread). From tiny to just enough, each
    /// run either trains or exits 1 naming the limit, within the timeout.
    func testTinyAddressSpaceLimitsAreClearErrorsNeverAbortsOrHangs() throws {
        for (i, kib) in [150_000, 300_000, 400_000, 500_000, 650_000].enumerated() {
            let out = dir.appendingPathComponent("ulimit-\(i)").path
            let r = try shell("ulimit -v \(kib); exec timeout -s KILL 120 '\(CLI.executable.path)' train --config '\(configPath!)' --vocab '\(Self.vocab)' --out '\(out)' --threads 1 --max-steps 1")
            XCTAssertTrue(r.status == 0 || r.status == 1, "ulimit -v \(kib): exit \(r.status) (137 = killed by the timeout: a hang; 134 = an abort)\n\(r.stderr.suffix(2000))")
            if r.status == 0 {
                XCTAssertTrue(r.stdout.contains("stopped: reached step 1"), r.stdout)
            } else {
                XCTAssertTrue(r.stderr.contains("address-space limit"), "ulimit -v \(kib): \(r.stderr.suffix(2000))")
                XCTAssertFalse(r.stderr.contains("Fatal error"), r.stderr)
            }
        }
    }

    // MARK: class 15

    /// A second trainer on a run folder in use is refused with the holder's pid; the first one
    /// is unaffected (and stops cleanly on SIGTERM with a checkpoint).
    func testSecondTrainerOnTheSameFolderIsRefused() throws {
        try tinyConfig(train: "max_steps: 100000, checkpoint_every: 100000, log_every: 1, seed: 7")
            .write(toFile: configPath, atomically: true, encoding: .utf8)
        let first = Process()
        first.executableURL = CLI.executable
        first.arguments = ["train", "--config", configPath, "--vocab", Self.vocab, "--out", dir.appendingPathComponent("run").path, "--threads", "1"]
        first.standardOutput = FileHandle.nullDevice
        first.standardError = FileHandle.nullDevice
        try first.run()
        defer { if first.isRunning { kill(first.processIdentifier, SIGKILL) } }
        let metrics = dir.appendingPathComponent("run/metrics.jsonl").path
        let deadline = Date().addingTimeInterval(120)
        while (try? FileManager.default.attributesOfItem(atPath: metrics)[.size] as? Int) ?? 0 == 0 && Date() < deadline {
            usleep(100_000)
        }
        let second = try train("run", ["--resume", "auto"])
        XCTAssertEqual(second.status, 1, second.stderr)
        XCTAssertTrue(second.stderr.contains("is in use by pid \(first.processIdentifier)"), second.stderr)
        XCTAssertTrue(first.isRunning)
        kill(first.processIdentifier, SIGTERM)
        first.waitUntilExit()
        XCTAssertEqual(first.terminationStatus, 143, "SIGTERM: checkpointed, exit 128 + 15")
        XCTAssertEqual(checkpoints("run").count, 1, "the first trainer checkpointed on SIGTERM")
        // Free again once the holder is gone.
        let third = try train("run", ["--resume", "auto", "--max-steps", "\(100_000)", "--time-limit-minutes", "0.001"])
        XCTAssertEqual(third.status, 0, third.stderr)
    }

    // MARK: class 16 (single process; the mpirun cases are in tests-mpi/faults.sh)

    /// SIGINT (Ctrl-C) stops like SIGTERM: the step finishes, a checkpoint is written, and the exit
    /// status says a signal stopped the run (130), unlike SIGUSR1 (pre-emption, 0).
    func testSIGINTCheckpointsAndExitsWith130() throws {
        try tinyConfig(train: "max_steps: 100000, checkpoint_every: 100000, log_every: 1, seed: 7")
            .write(toFile: configPath, atomically: true, encoding: .utf8)
        let p = Process()
        p.executableURL = CLI.executable
        p.arguments = ["train", "--config", configPath, "--vocab", Self.vocab, "--out", dir.appendingPathComponent("int").path, "--threads", "1"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        let metrics = dir.appendingPathComponent("int/metrics.jsonl").path
        let deadline = Date().addingTimeInterval(120)
        while (try? FileManager.default.attributesOfItem(atPath: metrics)[.size] as? Int) ?? 0 == 0 && Date() < deadline {
            usleep(100_000)
        }
        kill(p.processIdentifier, SIGINT)
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationReason, .exit)
        XCTAssertEqual(p.terminationStatus, 130, text)
        XCTAssertTrue(text.contains("stopped: stop signal (SIGINT): checkpointed at step"), text)
        XCTAssertEqual(checkpoints("int").count, 1)
    }

    // MARK: class 18

    /// Bad numeric options are clear errors, never ignored.
    func testBadNumericOptionsAreErrors() throws {
        let cases: [([String], String)] = [
            (["--max-steps=-1"], "--max-steps must be at least 1"),
            (["--max-steps", "0"], "--max-steps must be at least 1"),
            (["--time-limit-minutes", "nan"], "--time-limit-minutes must be a number of minutes"),
            (["--time-limit-minutes=-5"], "--time-limit-minutes must be a number of minutes"),
            (["--time-limit-minutes", "inf"], "--time-limit-minutes must be a number of minutes"),
            (["--threads=-4"], "--threads must be in [1, 4096]"),
            (["--threads", "0"], "--threads must be in [1, 4096]"),
            (["--threads", "99999999999"], "--threads must be in [1, 4096]"),
            (["--batch-size", "0"], "--batch-size must be in [1, "),
            (["--collective-timeout-minutes", "nan"], "--collective-timeout-minutes must be in [0, 100000]"),
            (["--collective-timeout-minutes=-1"], "--collective-timeout-minutes must be in [0, 100000]"),
            (["--start-fresh-if-damaged"], "--start-fresh-if-damaged applies to --resume auto only"),
        ]
        for (args, needle) in cases {
            let r = try train("bad", args)
            XCTAssertNotEqual(r.status, 0, "\(args)")
            XCTAssertTrue(r.stderr.contains(needle), "\(args): \(r.stderr)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("bad").path), "nothing written")
        // --threads of the other commands that take it.
        for command in [["bench", "train-step", "--config", configPath!, "--threads=-1"], ["bench", "ops", "--threads", "0"],
                        ["eval-retrieval", "--checkpoint", dir.path, "--data", dir.path, "--image-root", dir.path, "--threads=-3"]] {
            let r = try CLI.run(command)
            XCTAssertNotEqual(r.status, 0, "\(command)")
            XCTAssertTrue(r.stderr.contains("--threads must be in [1, 4096]"), "\(command): \(r.stderr)")
        }
        // ELIP_THREADS outside the range (it used to trap in Int32() when huge, or be ignored).
        for value in ["-4", "99999999999", "many"] {
            let r = try CLI.run(["info"], environment: ["ELIP_THREADS": value])
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertTrue(r.stderr.contains("warning: ELIP_THREADS=\(value) is not a thread count in [1, 4096]"), r.stderr)
        }
    }

    /// A file-size limit (ulimit -f) makes the checkpoint write fail with a clear error naming the
    /// file, not a silent SIGXFSZ; no half-written checkpoint stays behind.
    func testFileSizeLimitIsAClearCheckpointError() throws {
        let out = dir.appendingPathComponent("fsize").path
        let r = try shell("ulimit -f 2000; exec '\(CLI.executable.path)' train --config '\(configPath!)' --vocab '\(Self.vocab)' --out '\(out)' --threads 1 --max-steps 2")
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("writing \(out)/checkpoints/step-00000002 failed") && r.stderr.contains("File too large"), r.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out + "/checkpoints"), [])
    }

    func shell(_ script: String) throws -> ElipRun {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = ["-c", script]
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationReason, .exit, "ended by a signal: \(p.terminationStatus)")
        return ElipRun(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
    }
}
