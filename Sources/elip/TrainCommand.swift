import ArgumentParser
import ELIPDistributed
import ELIPModel
import ELIPTensor
import ELIPText
import ELIPTrain
import Foundation

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "ELIP pre-training (data-parallel under mpirun/srun, single process otherwise).",
        discussion: """
        Examples:
          elip train --debug                                   # tiny model, synthetic scenes, one process
          mpirun -np 2 elip train --config configs/debug.yaml --out runs/debug
          mpirun -np 8 elip train --config configs/pretrain-albef-4m.yaml --data /data/4m-shards --resume auto

        Rank 0 writes RUN_DIR/metrics.jsonl and RUN_DIR/checkpoints/step-N/. SIGUSR1, SIGTERM or \
        SIGINT make every rank finish its step and checkpoint; then the exit status is 0 for \
        SIGUSR1 (pre-emption), 143 for SIGTERM, 130 for SIGINT (a second SIGINT exits at once). \
        `--resume auto` continues from the newest valid checkpoint. mpirun gives ranks only 1 s \
        after forwarding SIGTERM/SIGINT before SIGKILL: send mpirun SIGUSR1 instead (cluster/launch.sh \
        does so on SIGTERM/SIGINT), or raise the grace with --mca odls_base_sigkill_timeout S. --max-steps counts global steps (a resumed run stops at step N). \
        A run never overwrites or prunes checkpoints it did not write: when --out holds checkpoints \
        newer than where the run starts, or when every checkpoint is damaged, it stops with an \
        error naming them (see --set-aside-newer-checkpoints and --start-fresh-if-damaged). \
        One trainer per run folder: a second one on the same --out is refused (lock file \
        RUN_DIR/.elip.lock names the holder's pid).
        """
    )

    @Option(help: "Config file: `model:` (albef) and its keys (ALBEF's Pretrain.yaml), plus optimizer:/schedular:/train:/data: sections; unknown keys are errors.")
    var config: String?
    @Option(help: "Folder of LMDB shards (manifest.json); default: the config's data section.")
    var data: String?
    @Option(help: "Run folder for checkpoints and metrics.")
    var out: String = "runs/elip"
    @Option(help: "'auto' (newest valid checkpoint of --out) or a checkpoint folder.")
    var resume: String?
    @Option(help: "Stop at this global step.")
    var maxSteps: Int?
    @Option(help: "Seed (overrides train.seed).")
    var seed: UInt64?
    @Option(help: "Batch size per rank (overrides batch_size).")
    var batchSize: Int?
    @Option(help: "Stop with a checkpoint after this many minutes (0: no limit).")
    var timeLimitMinutes: Double = 0
    @Option(help: "Threads per rank for BLAS and the engine.")
    var threads: Int?
    @Option(help: "Initial weights: the model's state_dict (.safetensors from import-weights, or an official ALBEF/BLIP .pth checkpoint read directly).")
    var initWeights: String?
    @Option(help: "WordPiece vocabulary.")
    var vocab: String?
    @Flag(help: "Single-process debug mode: configs/debug.yaml, synthetic data, anomaly checks, determinism self-check.")
    var debug = false
    @Option(help: "Minutes a rank may wait in a collective (for the other ranks) before the watchdog checks they are alive and aborts the job when one is stopped or dead (overrides train.collective_timeout_minutes, default 10; 0: off).")
    var collectiveTimeoutMinutes: Double?
    @Flag(help: "With --resume auto: when every checkpoint of --out is damaged, start from step 0 anyway (they are kept as checkpoints/damaged-step-N). Without it such a run is refused.")
    var startFreshIfDamaged = false
    @Flag(help: "Go on from an older checkpoint (or from step 0) although --out holds newer checkpoints: they are kept as checkpoints/superseded-step-N. Without it such a run is refused, since it would overwrite and prune them.")
    var setAsideNewerCheckpoints = false

    func validate() throws {
        if let maxSteps, maxSteps < 1 {
            throw ValidationError("--max-steps must be at least 1 (the global step to stop at), got \(maxSteps)")
        }
        guard timeLimitMinutes.isFinite, timeLimitMinutes >= 0, timeLimitMinutes <= 1e7 else {
            throw ValidationError("--time-limit-minutes must be a number of minutes in [0, 1e7] (0: no limit), got \(timeLimitMinutes)")
        }
        if let batchSize, !(1...(1 << 20)).contains(batchSize) {
            throw ValidationError("--batch-size must be in [1, 1048576], got \(batchSize)")
        }
        if let c = collectiveTimeoutMinutes, !(c.isFinite && c >= 0 && c <= 100_000) {
            throw ValidationError("--collective-timeout-minutes must be in [0, 100000] (0: no watchdog), got \(c)")
        }
        if startFreshIfDamaged && resume != "auto" {
            throw ValidationError("--start-fresh-if-damaged applies to --resume auto only")
        }
    }

    func run() throws {
        try configureThreads(threads)
        guard let path = config ?? (debug ? "configs/debug.yaml" : nil) else {
            throw ValidationError("--config FILE is required (or --debug for the tiny debug setup)")
        }
        var cfg = try TrainingConfig.load(path)
        if let seed { cfg.seed = seed }
        if let batchSize {
            guard batchSize > 0 else { throw ValidationError("--batch-size must be positive") }
            cfg.batchSize = batchSize
        }
        if let vocab { cfg.vocabulary = vocab }
        if let data { cfg.dataDirectory = data }
        let comm = debug ? Communicator.singleProcess() : try Communicator.world()
        try cfg.checkQueue(ranks: comm.size, file: path)
        try cfg.checkSyntheticCorpus(ranks: comm.size, file: path)
        let tokenizer = try cfg.captionTokenizer()
        try cfg.useVocabulary(of: tokenizer)
        let source: BatchSource
        if let dir = cfg.dataDirectory {
            source = try ShardBatchSource(directory: dir, rank: comm.rank, worldSize: comm.size, seed: cfg.seed,
                                          batchSize: cfg.batchSize, imageSize: cfg.model.imageRes,
                                          tokenizer: tokenizer, captionStyle: cfg.captionStyle,
                                          workerThreads: cfg.loaderThreads, prefetchDepth: cfg.prefetchBatches,
                                          strict: cfg.strictData, augmentation: cfg.augmentation)
        } else {
            let size = cfg.syntheticSize > 0 ? cfg.syntheticSize : cfg.model.imageRes
            guard size == cfg.model.imageRes else {
                throw ValidationError("synthetic image size \(size) differs from image_res \(cfg.model.imageRes)")
            }
            source = SyntheticBatchSource(images: cfg.syntheticImages, imageSize: size, batchSize: cfg.batchSize,
                                          rank: comm.rank, worldSize: comm.size, seed: cfg.seed, tokenizer: tokenizer,
                                          captionStyle: cfg.captionStyle)
        }
        if debug { try determinismSelfCheck(cfg, source: source, communicator: comm) }
        var options = Trainer.Options(runDirectory: URL(fileURLWithPath: out))
        options.resume = resume
        options.maxSteps = maxSteps ?? 0
        options.initialWeights = initWeights
        options.anomalyDetection = debug
        options.timeLimit = timeLimitMinutes * 60
        options.startFreshIfDamaged = startFreshIfDamaged
        options.setAsideNewerCheckpoints = setAsideNewerCheckpoints
        options.collectiveTimeout = collectiveTimeoutMinutes.map { $0 * 60 }
        let trainer = try Trainer(config: cfg, options: options, communicator: comm, source: source)
        if comm.isRoot {
            BLASKernels.noteIfNarrowedByEnvironment()
            print("elip train: \(comm.size) rank(s) x \(Threads.count) thread(s), batch \(cfg.batchSize) per rank, \(source.summary)")
            print("model: \(cfg.model.summary); \(trainer.model.parameters.parameterCount) trainable parameters")
        }
        let reason = try trainer.run()
        if comm.isRoot { print("stopped: \(reason); run folder \(out)") }
        try comm.finalize()
        // SIGTERM/SIGINT: checkpointed, but not finished; 128 + signal as shells report it.
        // SIGUSR1 (pre-emption, asked for by the job script) exits 0.
        if let sig = trainer.stoppedBySignal, sig == SIGTERM || sig == SIGINT { throw ExitCode(128 + sig) }
    }

    /// Debug mode: two steps, twice, from the same seed must give bitwise identical weights.
    func determinismSelfCheck(_ cfg: TrainingConfig, source: BatchSource, communicator: Communicator) throws {
        var results: [[Float]] = []
        for _ in 0..<2 {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("elip-selfcheck-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: dir) }
            var o = Trainer.Options(runDirectory: dir)
            o.maxSteps = 2
            o.progress = false
            let t = try Trainer(config: cfg, options: o, communicator: communicator, source: source)
            try t.run()
            results.append(Array(t.model.parameters.values))
        }
        guard results[0] == results[1] else {
            let differing = zip(results[0], results[1]).filter { $0 != $1 }.count
            throw ValidationError("determinism self-check failed: two identical 2-step runs differ in \(differing) weights")
        }
        print("determinism self-check: two 2-step runs are bitwise identical (\(results[0].count) weights)")
    }
}

extension TrainingConfig {
    /// The config's caption tokenizer: RoBERTa's byte-level BPE when `data.merges` is set (METER),
    /// WordPiece otherwise.
    func captionTokenizer() throws -> any CaptionTokenizer {
        if let merges { return try RobertaTokenizer(vocabularyJSON: vocabulary, merges: merges) }
        do { return try BertTokenizer(vocabularyFile: vocabulary) } catch {
            throw ValidationError("\(error)\nRun `make setup` to fetch the vocabulary, or pass --vocab FILE.")
        }
    }
}
