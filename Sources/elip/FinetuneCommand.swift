import ArgumentParser
import ELIPDistributed
import ELIPModel
import ELIPTensor
import ELIPText
import ELIPTrain
import Foundation
import TorchCheckpoint

struct FinetuneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "finetune",
        abstract: "Downstream fine-tuning of a pre-trained checkpoint (data-parallel under mpirun like train).",
        discussion: """
        Examples:
          mpirun -np 4 elip finetune --task ve --config configs/VE.yaml --init runs/albef/checkpoints/step-N/model.safetensors --data shards/ve_train --out runs/ve
          elip finetune --task ve --config configs/VE.yaml --init ALBEF_4M.pth --data shards/ve_train --out runs/ve --resume auto
          mpirun -np 8 elip finetune --task nlvr2-ta --config configs/NLVR_pretrain.yaml --init ALBEF_4M.pth --data shards/pretrain --out runs/nlvr2-ta
          mpirun -np 4 elip finetune --task nlvr2 --config configs/NLVR.yaml --init runs/nlvr2-ta --data shards/nlvr_train --out runs/nlvr2
          mpirun -np 4 elip finetune --task retrieval --config configs/Retrieval_flickr.yaml --init ALBEF_4M.pth --data shards/flickr_train --out runs/flickr
          mpirun -np 4 elip finetune --task vqa --config configs/VQA.yaml --init ALBEF_4M.pth --data shards/vqa_train --out runs/vqa --resume auto

        The task picks the task model (tasks: \(FineTuneTasks.all.map { "\($0.name) (\($0.model ?? "not built yet"))" }.joined(separator: ", "))). \
        The config is the official task config (configs/VE.yaml, ...); it needs no `model:` key \
        (if it has one it must name the task's model). --init is loaded the way the official \
        script loads a checkpoint (VE.py: `bert.` dropped, position tables resized with \
        interpolate_pos_embed to image_res, the head left at its initialisation; Retrieval.py: \
        the same, plus projections, itm_head, temp and the queues with their pointer, idx_queue \
        left at -100, so the queue sizes of checkpoint and config must agree); what was \
        copied, resized, kept at init (missing_keys) and not used (unexpected_keys) is printed. \
        Training itself is `elip train`'s: checkpoints in RUN/checkpoints/step-N, exact resume \
        with --resume auto (the checkpoint's weights replace --init), metrics.jsonl, SIGUSR1/ \
        SIGTERM/SIGINT checkpoint and stop, --time-limit-minutes. \
        Data: shards of `elip build-dataset --format <task>` (one record per image; every caption or \
        sentence is one sample per epoch, with its label: ve the class, retrieval the image index). \
        Without --data and without data.shards, the config's data: {synthetic: {images, size}} \
        selects the task's synthetic split (ve: SyntheticEntailment statements about the scenes; \
        nlvr2-ta: the synthetic pre-training scenes). nlvr2 trains from `build-dataset --format \
        nlvr2` shards (`elip synth` writes nlvr2_train.json); its --init is a text-assignment \
        checkpoint (`--task nlvr2-ta`, loaded as NLVR.py: the momentum model keeps its \
        initialisation) or a pre-training one (Pretrain_nlvr.py's map, as if that stage ran no \
        step). nlvr2-ta reads a pre-training corpus (build-dataset without --format) and \
        configs/NLVR_pretrain.yaml. \
        retrieval: every caption of the scenes, the scene as image id). \
        Retrieval under mpirun: as Retrieval.py under DDP, ITC and the ITM negatives use each \
        rank's batch (and the queue), the enqueue gathers every rank's features and ids. \
        vqa: SyntheticQuestions about them). \
        VQA: shards from `elip build-dataset --format vqa` (one record per image with all its \
        questions; each question is one sample per epoch, as in vqa_dataset.py); --init loads as VQA.py (text layers >= 6 also \
        become the answer decoder's layers 0.., embeddings and MLM head the decoder's); answer \
        held-out questions with `elip eval-vqa --checkpoint RUN --data ... --answer-list ...`.
        """
    )

    @Option(help: "Task: \(FineTuneTasks.all.map(\.name).joined(separator: ", ")).")
    var task: String
    @Option(help: "Task config (official keys: configs/VE.yaml, ...), plus optional train:/data: sections.")
    var config: String
    @Option(name: .customLong("init"), help: "Pre-training checkpoint to start from: a run folder (its newest valid checkpoint), a checkpoint folder, a .safetensors state dict or an official .pth/.bin.")
    var initFrom: String?
    @Flag(help: "Start from random weights instead of --init (the baseline that shows what pre-training brings).")
    var randomInit = false
    @Option(help: "Folder of the task's LMDB shards (elip build-dataset); default: the config's data section.")
    var data: String?
    @Option(help: "Run folder for checkpoints and metrics.")
    var out: String = "runs/finetune"
    @Option(help: "'auto' (newest valid checkpoint of --out) or a checkpoint folder.")
    var resume: String?
    @Option(help: "Stop at this global step.")
    var maxSteps: Int?
    @Option(help: "Seed (overrides train.seed).")
    var seed: UInt64?
    @Option(help: "Batch size per rank (overrides batch_size_train).")
    var batchSize: Int?
    @Option(help: "Stop with a checkpoint after this many minutes (0: no limit).")
    var timeLimitMinutes: Double = 0
    @Option(help: "Threads per rank for BLAS and the engine.")
    var threads: Int?
    @Option(help: "WordPiece vocabulary.")
    var vocab: String?
    @Option(help: "Minutes a rank may wait in a collective before the watchdog checks the other ranks (default train.collective_timeout_minutes; 0: off).")
    var collectiveTimeoutMinutes: Double?
    @Flag(help: "With --resume auto: when every checkpoint of --out is damaged, start from step 0 anyway.")
    var startFreshIfDamaged = false
    @Flag(help: "Go on from an older checkpoint (or step 0) although --out holds newer ones (kept as superseded-step-N).")
    var setAsideNewerCheckpoints = false

    func validate() throws {
        if (initFrom == nil) == !randomInit {
            throw ValidationError(randomInit ? "--init and --random-init exclude each other" : "--init CHECKPOINT is required (or --random-init for the random-weights baseline)")
        }
        if let maxSteps, maxSteps < 1 { throw ValidationError("--max-steps must be at least 1, got \(maxSteps)") }
        guard timeLimitMinutes.isFinite, timeLimitMinutes >= 0, timeLimitMinutes <= 1e7 else {
            throw ValidationError("--time-limit-minutes must be in [0, 1e7] (0: no limit), got \(timeLimitMinutes)")
        }
        if let batchSize, !(1...(1 << 20)).contains(batchSize) {
            throw ValidationError("--batch-size must be in [1, 1048576], got \(batchSize)")
        }
        if let c = collectiveTimeoutMinutes, !(c.isFinite && c >= 0 && c <= 100_000) {
            throw ValidationError("--collective-timeout-minutes must be in [0, 100000], got \(c)")
        }
        if startFreshIfDamaged && resume != "auto" {
            throw ValidationError("--start-fresh-if-damaged applies to --resume auto only")
        }
    }

    func run() throws {
        try configureThreads(threads)
        let (task, kind) = try FineTuneTasks.named(self.task)
        var cfg = try TrainingConfig.load(config, defaultModel: kind.name)
        guard cfg.model.kind == kind.name else {
            throw ValidationError("\(config): model: \(cfg.model.kind), but --task \(task.name) fine-tunes \(kind.name) (drop the model: key or use that model's task)")
        }
        if let seed { cfg.seed = seed }
        if let batchSize { cfg.batchSize = batchSize }
        if let vocab { cfg.vocabulary = vocab }
        if let data { cfg.dataDirectory = data }
        let comm = try Communicator.world()
        let tokenizer: BertTokenizer
        do { tokenizer = try BertTokenizer(vocabularyFile: cfg.vocabulary) } catch {
            throw ValidationError("\(error)\nRun `make setup` to fetch the vocabulary, or pass --vocab FILE.")
        }
        try cfg.useVocabulary(of: tokenizer)
        let source = try FineTuneData.trainingSource(task: task, config: cfg, file: config, rank: comm.rank, worldSize: comm.size, tokenizer: tokenizer)
        var options = Trainer.Options(runDirectory: URL(fileURLWithPath: out))
        options.resume = resume
        options.maxSteps = maxSteps ?? 0
        options.timeLimit = timeLimitMinutes * 60
        options.startFreshIfDamaged = startFreshIfDamaged
        options.setAsideNewerCheckpoints = setAsideNewerCheckpoints
        options.collectiveTimeout = collectiveTimeoutMinutes.map { $0 * 60 }
        if let initFrom {
            options.loadInitialWeights = { model in try Self.loadPretraining(initFrom, into: model, task: task) }
        }
        let trainer = try Trainer(config: cfg, options: options, communicator: comm, source: source)
        if comm.isRoot {
            BLASKernels.noteIfNarrowedByEnvironment()
            print("elip finetune --task \(task.name): \(comm.size) rank(s) x \(Threads.count) thread(s), batch \(cfg.batchSize) per rank, \(source.summary)")
            print("model: \(cfg.model.summary); \(trainer.model.parameters.parameterCount) trainable parameters; start: \(initFrom ?? "random weights (--random-init)")")
        }
        let reason = try trainer.run()
        if comm.isRoot { print("stopped: \(reason); run folder \(out)") }
        try comm.finalize()
        if let sig = trainer.stoppedBySignal, sig == SIGTERM || sig == SIGINT { throw ExitCode(128 + sig) }
    }

    /// `--init` as a file, a checkpoint folder (its model.safetensors) or a run folder (its
    /// newest valid checkpoint's).
    static func weightsFile(_ path: String) throws -> String {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue else { return path }
        let url = URL(fileURLWithPath: path)
        if FileManager.default.fileExists(atPath: url.appendingPathComponent("model.safetensors").path) {
            return url.appendingPathComponent("model.safetensors").path
        }
        guard FileManager.default.fileExists(atPath: url.appendingPathComponent("checkpoints").path),
              let newest = CheckpointStore(runDirectory: url).latestValid(warn: { print("init: warning: \($0)") }) else {
            throw ValidationError("--init \(path): a folder, but neither a checkpoint (model.safetensors) nor a run folder with a valid checkpoint")
        }
        return newest.appendingPathComponent("model.safetensors").path
    }

    /// The official script's loading of a pre-training checkpoint, with PyTorch's
    /// missing/unexpected listing (rank 0; the trainer broadcasts the result).
    static func loadPretraining(_ path: String, into model: any TrainableModel, task: FineTuneTask) throws {
        guard let loadable = model as? any PretrainingCheckpointLoadable else {
            throw ValidationError("task \(task.name): its model \(model.modelConfig.kind) cannot load a pre-training checkpoint")
        }
        let (file, note) = try WeightFile.open(try weightsFile(path))
        if let note { print("init: \(note)") }
        let plan = try loadable.loadPretrainingCheckpoint(file)
        func list(_ keys: [String]) -> String { keys.isEmpty ? "none" : keys.joined(separator: ", ") }
        print("init: \(path): \(plan.copied.count) tensors copied, \(plan.resized.count) resized by interpolate_pos_embed (\(list(plan.resized.keys.sorted())))")
        print("init: kept at initialisation (missing_keys, \(plan.keptAtInit.count)): \(list(plan.keptAtInit))")
        print("init: not used (unexpected_keys, \(plan.unexpected.count)): \(list(plan.unexpected))")
    }
}
