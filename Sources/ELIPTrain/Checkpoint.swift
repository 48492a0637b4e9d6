import CKernels
import ELIPModel
import ELIPTensor
import Foundation
import Safetensors

/// Everything besides tensors that a run needs to continue exactly where it stopped.
public struct TrainerState: Codable, Equatable, Sendable {
    /// Global optimizer steps taken.
    public var step: Int
    /// Epoch of the next batch, and the batch index within it (the sampler position).
    public var epoch: Int
    public var batchInEpoch: Int
    /// State of the generator that seeds each step's randomness (dropout, masks, negatives).
    public var stepGenerator: SeededGenerator
    /// Steps skipped because a loss or gradient was not finite.
    public var skippedSteps: Int
    /// Fingerprint of config + data manifest + code version the run was started with.
    public var fingerprint: String
    /// Config file text the run was started with (for the record).
    public var configText: String
    /// Registry name of the trained model (`model:`, or the task's model of `elip finetune`), so
    /// an evaluator reading `configText`, which may have no `model:` key, builds the right model
    /// (nil in checkpoints written before it was recorded).
    public var modelKind: String? = nil

    public init(step: Int, epoch: Int, batchInEpoch: Int, stepGenerator: SeededGenerator, skippedSteps: Int,
                fingerprint: String, configText: String) {
        self.step = step
        self.epoch = epoch
        self.batchInEpoch = batchInEpoch
        self.stepGenerator = stepGenerator
        self.skippedSteps = skippedSteps
        self.fingerprint = fingerprint
        self.configText = configText
    }
}

/// Checkpoints of a run: `RUN/checkpoints/step-NNNNNNNN/{model,optimizer}.safetensors` and
/// `trainer.json` (state + checksums of the two tensor files).
///
/// Writes are atomic: everything goes to a hidden temporary folder, each file is fsynced, the
/// folder is renamed into place and the parent folder fsynced. A checkpoint whose checksums do
/// not match (torn write, disk damage) is skipped with a warning by `latestValid`.
public struct CheckpointStore {
    public let directory: URL
    /// Checkpoints kept; older ones are deleted after a successful write.
    public let keep: Int
    /// Checkpoint folders pruning never deletes (the one this run resumed from).
    public var protected: Set<String> = []

    public init(runDirectory: URL, keep: Int = 3) {
        directory = runDirectory.appendingPathComponent("checkpoints")
        self.keep = max(1, keep)
    }

    struct Manifest: Codable {
        var state: TrainerState
        var checksums: [String: String]
        var optimizerStep: Int
        var format = 1
    }

    static func name(step: Int) -> String { String(format: "step-%08d", step) }

    /// Writes a checkpoint for `state` and returns its folder.
    @discardableResult
    public func save(model: any TrainableModel, optimizer: AdamW, state: TrainerState, faultInjection: Bool = false) throws -> URL {
        let fm = FileManager.default
        try fm.createDirectory(at: directory, withIntermediateDirectories: true)
        let final = directory.appendingPathComponent(Self.name(step: state.step))
        let tmp = directory.appendingPathComponent(".\(Self.name(step: state.step)).tmp-\(getpid())")
        try? fm.removeItem(at: tmp)
        try fm.createDirectory(at: tmp, withIntermediateDirectories: false)
        do {
            var modelWriter = SafetensorsWriter(metadata: ["format": "\(model.modelConfig.kind)-state-dict", "step": String(state.step)])
            try StateDict.add(model.stateLayout, to: &modelWriter)
            try modelWriter.write(to: tmp.appendingPathComponent("model.safetensors").path, atomic: true)
            if faultInjection {  // tests: die with the checkpoint half-written
                fputs("fault injection: dying while writing \(final.lastPathComponent)\n", stderr)
                kill(getpid(), SIGKILL)
            }
            var optWriter = SafetensorsWriter(metadata: ["step": String(optimizer.step), "format": "adamw-moments-by-name"])
            try Self.addMoments(optimizer, to: &optWriter)
            try optWriter.write(to: tmp.appendingPathComponent("optimizer.safetensors").path, atomic: true)
            var sums: [String: String] = [:]
            for f in ["model.safetensors", "optimizer.safetensors"] {
                sums[f] = try Self.checksum(tmp.appendingPathComponent(f))
            }
            let manifest = Manifest(state: state, checksums: sums, optimizerStep: optimizer.step)
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            try Self.writeSynced(enc.encode(manifest), to: tmp.appendingPathComponent("trainer.json"))
            Self.fsync(path: tmp.path)
            // Replacing a checkpoint of the same step (the resume source, rewritten by a stop
            // before the first step): the old one is renamed away first and deleted only once the
            // new one is in place, so a crash in between never leaves neither.
            let replaced = directory.appendingPathComponent(".\(Self.name(step: state.step)).old-\(getpid())")
            if fm.fileExists(atPath: final.path) {
                try? fm.removeItem(at: replaced)
                try fm.moveItem(at: final, to: replaced)
            }
            try fm.moveItem(at: tmp, to: final)
            Self.fsync(path: directory.path)
            try? fm.removeItem(at: replaced)
        } catch {
            try? fm.removeItem(at: tmp)
            throw TrainError.checkpoint("writing \(final.path) failed: \(error)")
        }
        prune(justWritten: final)
        return final
    }

    /// The step of a checkpoint folder named `step-N` (nil for any other name).
    public static func step(of folder: URL) -> Int? {
        let name = folder.lastPathComponent
        guard name.hasPrefix("step-") else { return nil }
        return Int(name.dropFirst(5))
    }

    /// Renames a checkpoint folder to `PREFIX-step-N` (a free name) so that nothing of this run
    /// lists, overwrites or prunes it, and returns the new location. Used instead of deleting
    /// checkpoints a run cannot use (damaged ones, newer ones the user chose to branch away from).
    @discardableResult
    public func setAside(_ folder: URL, prefix: String) throws -> URL {
        let fm = FileManager.default
        var target = directory.appendingPathComponent("\(prefix)-\(folder.lastPathComponent)")
        var n = 2
        while fm.fileExists(atPath: target.path) {
            target = directory.appendingPathComponent("\(prefix)-\(folder.lastPathComponent)-\(n)")
            n += 1
        }
        do { try fm.moveItem(at: folder, to: target) } catch {
            throw TrainError.checkpoint("cannot set \(folder.path) aside as \(target.lastPathComponent): \(error.localizedDescription)")
        }
        Self.fsync(path: directory.path)
        return target
    }

    /// Checkpoint folders, newest first.
    public func list() -> [URL] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        // By step number, not by name: names of steps beyond 10^8 have more digits.
        return names.compactMap { n in Self.step(of: URL(fileURLWithPath: n)).map { (n, $0) } }
            .sorted { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0 > $1.0 }
            .map { directory.appendingPathComponent($0.0) }
    }

    /// Verifies a checkpoint folder and returns its manifest.
    func verify(_ folder: URL) throws -> Manifest {
        let data: Data
        do { data = try Data(contentsOf: folder.appendingPathComponent("trainer.json")) } catch {
            throw TrainError.checkpoint("\(folder.path): trainer.json unreadable (\(error.localizedDescription))")
        }
        let manifest: Manifest
        do { manifest = try JSONDecoder().decode(Manifest.self, from: data) } catch {
            throw TrainError.checkpoint("\(folder.path)/trainer.json: \(error)")
        }
        for (file, sum) in manifest.checksums.sorted(by: { $0.key < $1.key }) {
            let actual = try Self.checksum(folder.appendingPathComponent(file))
            guard actual == sum else {
                throw TrainError.checkpoint("\(folder.path)/\(file): checksum \(actual) does not match the recorded \(sum)")
            }
        }
        return manifest
    }

    /// The trainer state of a checkpoint folder, after verifying its files.
    public func verifiedState(_ folder: URL) throws -> TrainerState { try verify(folder).state }

    /// The newest checkpoint that verifies; damaged ones are reported through `warn` and skipped.
    public func latestValid(warn: (String) -> Void) -> URL? {
        let scan = scanNewestValid()
        for (_, error) in scan.damagedNewer { warn("skipping damaged checkpoint: \(error)") }
        return scan.valid
    }

    /// The newest checkpoint that verifies, and the damaged ones newer than it (newest first, with
    /// what is wrong with each).
    public func scanNewestValid() -> (valid: URL?, damagedNewer: [(URL, Error)]) {
        var damaged: [(URL, Error)] = []
        for folder in list() {
            do {
                _ = try verify(folder)
                return (folder, damaged)
            } catch {
                damaged.append((folder, error))
            }
        }
        return (nil, damaged)
    }

    /// Loads model, optimizer and trainer state from a checkpoint folder (verified first).
    public func load(_ folder: URL, into model: any TrainableModel, optimizer: AdamW) throws -> TrainerState {
        let manifest = try verify(folder)
        try StateDict.load(model.stateLayout, from: SafetensorsFile(path: folder.appendingPathComponent("model.safetensors").path))
        let opt = try SafetensorsFile(path: folder.appendingPathComponent("optimizer.safetensors").path)
        try Self.loadMoments(opt, into: optimizer, step: manifest.optimizerStep)
        return manifest.state
    }

    /// AdamW's moments as `exp_avg.NAME` and `exp_avg_sq.NAME` per parameter, so a checkpoint
    /// stays valid whatever order a later version lays the parameters out in.
    static func addMoments(_ optimizer: AdamW, to writer: inout SafetensorsWriter) throws {
        // Streamed from the optimizer's buffers while the file is written: no copy of the
        // moments (twice the parameters' size) is ever made.
        #if !_endian(little)
        #error("safetensors stores little-endian floats; this copy-free path assumes the host's order is the same")
        #endif
        for entry in optimizer.arena.entries {
            for (name, second) in [("exp_avg.\(entry.name)", false), ("exp_avg_sq.\(entry.name)", true)] {
                try writer.add(name, dtype: .f32, shape: entry.shape) { emit in
                    let (m, v) = optimizer.moments(of: entry)
                    try (second ? v : m).withUnsafeBytes { try emit($0) }
                }
            }
        }
    }

    /// Restores moments written by `addMoments`, or the earlier single-buffer format (`exp_avg`,
    /// `exp_avg_sq` in arena layout), which is only accepted when its size matches the arena.
    static func loadMoments(_ file: SafetensorsFile, into optimizer: AdamW, step: Int) throws {
        if file.contains("exp_avg") && !file.contains("exp_avg.\(optimizer.arena.entries.first?.name ?? "")") {
            try optimizer.restore(step: step, expAvg: file.floats("exp_avg"), expAvgSq: file.floats("exp_avg_sq"))
            return
        }
        for entry in optimizer.arena.entries {
            let names = ["exp_avg.\(entry.name)", "exp_avg_sq.\(entry.name)"]
            guard let m = file[names[0]], let v = file[names[1]] else {
                throw TrainError.checkpoint("\(file.path): no optimizer moments for \(entry.name)")
            }
            guard m.elementCount == entry.count, v.elementCount == entry.count else {
                throw TrainError.checkpoint("\(file.path): optimizer moments of \(entry.name) have shape \(m.shape), the model's parameter \(entry.shape)")
            }
            optimizer.setMoments(of: entry, expAvg: try file.floats(names[0]), expAvgSq: try file.floats(names[1]))
        }
        optimizer.restoreStep(step)
    }

    /// Deletes all but the newest `keep` checkpoints, and stale temporary folders. Never deletes
    /// the checkpoint just written, the newest one, or a `protected` one (the resume source).
    func prune(justWritten: URL? = nil) {
        let fm = FileManager.default
        let all = list()
        let spared = Set(all.prefix(keep).map(\.lastPathComponent) + [all.first?.lastPathComponent, justWritten?.lastPathComponent].compactMap { $0 })
            .union(protected)
        for old in all where !spared.contains(old.lastPathComponent) { try? fm.removeItem(at: old) }
        let names = (try? fm.contentsOfDirectory(atPath: directory.path)) ?? []
        for n in names where n.hasPrefix(".step-") && !n.hasSuffix("-\(getpid())") {
            try? fm.removeItem(at: directory.appendingPathComponent(n))
        }
    }

    /// Hex checksum of a file's bytes.
    public static func checksum(_ url: URL) throws -> String {
        let data = try Data(contentsOf: url, options: .alwaysMapped)
        let h = data.withUnsafeBytes { elip_checksum64($0.baseAddress, Int64($0.count), 0) }
        return String(format: "%016llx", h)
    }

    /// Writes a small file of the checkpoint (inside its temporary folder, which is renamed into
    /// place as a whole) and fsyncs it; errors name the file.
    static func writeSynced(_ data: Data, to url: URL) throws {
        let fd = open(url.path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw TrainError.checkpoint("cannot create \(url.path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let fail: (String) -> Error = { TrainError.checkpoint("\(url.path): \($0)") }
        try data.withUnsafeBytes { try AtomicFile.writeAll(fd, $0, fail: fail) }
        guard Glibc.fsync(fd) == 0 else { throw fail("fsync failed: \(String(cString: strerror(errno)))") }
    }

    static func fsync(path: String) {
        let fd = open(path, O_RDONLY)
        if fd >= 0 {
            _ = Glibc.fsync(fd)
            close(fd)
        }
    }
}
