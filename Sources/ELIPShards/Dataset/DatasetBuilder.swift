import Foundation

/// Builds LMDB shards from annotation files and tar shards (see DatasetPlan for the input rules
/// and Manifest.swift for the output layout).
///
/// Rank r of K builds shards s with s % K == r: it scans all inputs (cheap) and reads/decodes only
/// its shards' items, with `workers` threads; records are written in plan order, keys 0, 1, ...
/// with MDB_APPEND in transactions of `batchSize` records, the map grown on demand. Each shard is
/// built as `<name>.tmp-<pid>`, synced, given its summary, and renamed into place; a resumed build
/// keeps a finished shard only when its summary's fingerprint (parameters + planned items),
/// record count and data.mdb checksum all match. After a barrier every rank reads all summaries;
/// rank 0 writes rejects.jsonl and manifest.json (atomically, last).
public final class DatasetBuilder {
    public static let builderVersion = "1.0"
    public static let rejectsFileName = "rejects.jsonl"

    public let options: DatasetBuildOptions
    let group: DatasetBuildGroup
    let log: (String) -> Void

    public init(options: DatasetBuildOptions, group: DatasetBuildGroup = SingleProcessBuildGroup(),
                log: @escaping (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }) {
        self.options = options
        self.group = group
        self.log = log
    }

    var out: String { options.outputDirectory }

    public func build() throws -> DatasetBuildReport {
        let start = Date()
        let n = options.shardCount
        guard n >= 1 else { throw DatasetError.invalidArgument("--shards must be at least 1 (got \(n))") }
        guard n <= 99_999 else { throw DatasetError.invalidArgument("--shards must be at most 99999 (got \(n))") }
        guard options.policy.shorterSide >= 1 else { throw DatasetError.invalidArgument("--image-size must be positive") }
        guard (1...100).contains(options.policy.quality) else { throw DatasetError.invalidArgument("--quality must be 1...100") }
        guard options.policy.maxPixels >= 1 else { throw DatasetError.invalidArgument("--max-pixels must be positive") }
        guard options.batchSize >= 1 else { throw DatasetError.invalidArgument("batch size must be positive") }
        guard !options.annotationFiles.isEmpty || !options.tarInputs.isEmpty else {
            throw DatasetError.invalidArgument("no inputs: give --annotations and/or --tar-shards")
        }
        let rank = group.rank, size = group.size

        // One build per output folder: rank 0 holds the folder lock for the whole build and every
        // rank learns whether it got it (so none of them touches a folder in use).
        var lock: FolderLock? = nil
        var lockFailure: String? = nil
        if rank == 0 {
            do { lock = try FolderLock(folder: out, purpose: "build") } catch { lockFailure = "\(error)" }
        }
        if let failure = try group.broadcastFromRoot(lockFailure) { throw DatasetError.invalidArgument(failure) }
        defer { lock?.release() }

        var annotationFiles: [String] = []
        for f in options.annotationFiles where !annotationFiles.contains(where: { Self.sameFile($0, f) }) {
            annotationFiles.append(f)
        }
        // Every argument is checked (the scan throws for an unusable one, e.g. a missing image
        // root) before anything in the output folder changes.
        let scanStart = Date()
        let plan = try DatasetPlan.scan(annotationFiles: annotationFiles, tarInputs: options.tarInputs,
                                        imageRoot: options.imageRoot, allowAbsolutePaths: options.allowAbsolutePaths,
                                        format: options.format)
        let manifestPath = (out as NSString).appendingPathComponent(DatasetManifest.fileName)
        if FileManager.default.fileExists(atPath: manifestPath) {
            // A re-run over a finished dataset whose inputs are mistyped would replace it with a
            // worse one: refuse before anything changes.
            let lost = plan.sources.filter(\.wholeSourceLost)
            if !lost.isEmpty && !options.allowLostSources {
                throw DatasetError.invalidArgument("input source(s) cannot be read: "
                    + lost.map { "\($0.path) (\($0.error ?? "unreadable"))" }.joined(separator: "; ")
                    + "; the finished dataset in \(out) was left untouched (--allow-lost-sources builds without them)")
            }
            if let why = missingImagesProblem(plan) {
                throw DatasetError.invalidArgument("\(why); the finished dataset in \(out) was left untouched")
            }
        }
        if rank == 0 {
            for s in plan.sources where s.error != nil { log("warning: \(s.error ?? "")") }
            log("build-dataset: \(plan.items.count) items planned from \(plan.sources.count) sources, "
                + "\(plan.rejects.count) rejected while scanning"
                + String(format: " (%.1f s)", Date().timeIntervalSince(scanStart))
                + "; \(n) shards, \(size) rank(s) x \(options.workers) worker(s)")
        }

        // The manifest describes a finished build only: remove it before any shard changes.
        if rank == 0 && FileManager.default.fileExists(atPath: manifestPath) {
            try FileManager.default.removeItem(atPath: manifestPath)
        }
        try group.barrier()

        // Shard s holds plan items s, s + n, s + 2n, ...
        let myShards = (0..<n).filter { $0 % size == rank }
        removeStaleTemporaries(myShards)
        var toBuild: [Int] = []
        var skipped: [Int] = []
        var discarded: [Int: String] = [:]
        for s in myShards {
            let final = shardDirectory(s)
            guard FileManager.default.fileExists(atPath: final) else { toBuild.append(s); continue }
            let fp = fingerprint(shard: s, plan: plan)
            if let why = Self.checkFinishedShard(final, expectedFingerprint: fp, shardCount: n) {
                discarded[s] = why
                log("shard \(s): discarding the existing \(ShardNaming.name(s, of: n)) (\(why)); rebuilding")
                try discard(final)
                toBuild.append(s)
            } else {
                skipped.append(s)
            }
        }
        if !skipped.isEmpty {
            log("rank \(rank): \(skipped.count) finished shard(s) verified and kept: \(Self.rangeList(skipped))")
        }

        let planned = toBuild.reduce(0) { $0 + itemIndices(shard: $1, plan: plan).count }
        let meter = ProgressMeter(label: size > 1 ? "build rank \(rank)" : "build", total: planned,
                                  enabled: options.showProgress, plainInterval: options.progressInterval)
        var done = 0
        let buildStart = Date()
        for s in toBuild {
            _ = try buildShard(s, plan: plan, meter: meter, done: &done)
        }
        meter.finish(done)
        let buildSeconds = Date().timeIntervalSince(buildStart)

        try group.barrier()
        // NLVR2: the pair records reference the finished image shards (rank 0 writes them).
        let pairRejects = plan.format == .nlvr2 && rank == 0 ? try writePairs(plan: plan) : []
        let manifest = try assembleManifest(plan: plan, pairRejects: pairRejects)
        if rank == 0 {
            try writeRejects(plan: plan, manifest: manifest, pairRejects: pairRejects)
            try FileOps.writeAtomically(try manifest.encodedJSON(),
                                        to: (out as NSString).appendingPathComponent(DatasetManifest.fileName))
        }
        return DatasetBuildReport(manifest: manifest, builtShards: toBuild, skippedShards: skipped,
                                  discardedShards: discarded, seconds: Date().timeIntervalSince(start),
                                  imagesPerSecond: buildSeconds > 0 ? Double(done) / buildSeconds : 0,
                                  maxRejectFraction: options.maxRejectFraction, allowLostSources: options.allowLostSources)
    }

    // MARK: shards

    func shardDirectory(_ s: Int) -> String {
        (out as NSString).appendingPathComponent(ShardNaming.name(s, of: options.shardCount))
    }

    func itemIndices(shard s: Int, plan: DatasetPlan) -> [Int] {
        Array(stride(from: s, to: plan.items.count, by: options.shardCount))
    }

    /// Removes `<name>.tmp-*` leftovers of this rank's shards (interrupted builds).
    func removeStaleTemporaries(_ shards: [Int]) {
        let mine = Set(shards)
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: out) else { return }
        for name in names {
            guard let p = ShardNaming.parse(name), p.temporary, p.count == options.shardCount, mine.contains(p.shard) else { continue }
            let path = (out as NSString).appendingPathComponent(name)
            log("shard \(p.shard): removing the unfinished \(name)")
            try? FileManager.default.removeItem(atPath: path)
        }
    }

    /// Moves a shard out of its final name (so it never looks complete) and deletes it.
    func discard(_ final: String) throws {
        let aside = final + ".tmp-stale-\(getpid())"
        guard rename(final, aside) == 0 else {
            throw DatasetError.io(final, "cannot move the old shard aside: \(FileOps.errnoString())")
        }
        try FileManager.default.removeItem(atPath: aside)
    }

    /// Nil if the finished shard at `dir` is valid for this build; else the reason it is not.
    static func checkFinishedShard(_ dir: String, expectedFingerprint: String, shardCount: Int) -> String? {
        let summary: ShardSummary
        do { summary = try ShardSummary.load(fromShardDirectory: dir) } catch { return "no readable summary" }
        guard summary.shardCount == shardCount, summary.fingerprint == expectedFingerprint else {
            return "built from different inputs or parameters"
        }
        return verifyShardFiles(dir, records: summary.records, bytes: summary.bytes, checksum: summary.checksum)
    }

    /// Checks data.mdb's size and checksum and the entry count; nil when all match.
    static func verifyShardFiles(_ dir: String, records: Int, bytes: Int, checksum: String) -> String? {
        let data = (dir as NSString).appendingPathComponent("data.mdb")
        guard let (sum, size) = try? Checksum64.file(atPath: data) else { return "data.mdb is unreadable" }
        guard size == bytes else { return "data.mdb is \(size) bytes, expected \(bytes)" }
        guard Checksum64.hex(sum) == checksum else { return "data.mdb checksum \(Checksum64.hex(sum)) != \(checksum)" }
        do {
            let env = try LMDBEnvironment(path: dir, readOnly: true)
            let c = try env.count()
            guard c == records else { return "\(c) records, expected \(records)" }
        } catch {
            return "cannot open: \(error)"
        }
        return nil
    }

    /// Nil unless most images of the plan are missing: a sample of up to 256 file items, evenly
    /// spread, is stat'ed. Used before a re-run replaces a finished dataset, where a mistyped
    /// --image-root would otherwise discard every finished shard and build an empty dataset.
    func missingImagesProblem(_ plan: DatasetPlan) -> String? {
        let files = plan.items.compactMap { item -> String? in
            if case let .file(path, _) = item.location { return path }
            return nil
        }
        guard !files.isEmpty else { return nil }
        let sample = min(256, files.count)
        var missing: [String] = []
        for j in 0..<sample {
            let path = files[j * files.count / sample]
            var st = stat()
            if stat(path, &st) != 0 { missing.append(path) }
        }
        guard Double(missing.count) > max(0.5, options.maxRejectFraction) * Double(sample) else { return nil }
        return "\(missing.count) of \(sample) sampled images do not exist (e.g. \(missing[0])): "
            + "is --image-root \(options.imageRoot ?? "") right?"
    }

    /// A hash of the build parameters that affect the shard's bytes and of its planned items,
    /// including each input file's size and modification time (an image fixed or replaced in
    /// place must make a resumed build rebuild its shard, not keep the stale one).
    func fingerprint(shard s: Int, plan: DatasetPlan) -> String {
        var h = Checksum64(seed: 0x5EED)
        func add(_ str: String) { h.update(Array(str.utf8) + [0]) }
        add("elip-build \(Self.builderVersion) record \(recordKind) batch \(options.batchSize)")
        add("shard \(s) of \(options.shardCount)")
        let p = options.policy
        add("policy \(p.shorterSide) \(p.quality) \(p.maxPixels) only_jpeg=\(p.onlyJPEG) \(p.maxFileBytes)")
        for i in itemIndices(shard: s, plan: plan) {
            let item = plan.items[i]
            add(item.sourceID)
            for c in item.captions { add(c) }
            for q in item.questions {
                add("q \(q.id)")
                for a in q.answers { add("\(a.text) \(a.weight.bitPattern)") }
            }
            switch item.location {
            case let .file(path, confined): add("file \(confined) \(path) \(Self.sizeAndTime(path))")
            case let .tarMember(a, off, size): add("tar \(plan.archives[a]) \(off) \(size) \(Self.sizeAndTime(plan.archives[a]))")
            }
        }
        return Checksum64.hex(h.finalize())
    }

    /// "size mtime" (nanoseconds) of the file a path leads to ("missing" if it cannot be stat'ed):
    /// what make and rsync compare. (Not ctime: copying an image folder elsewhere would then
    /// rebuild every shard.)
    static func sizeAndTime(_ path: String) -> String {
        var st = stat()
        guard stat(path, &st) == 0 else { return "missing" }
        return "\(st.st_size) \(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"
    }

    /// The record kind the build writes (part of every shard's fingerprint).
    var recordKind: String {
        switch options.format {
        case .captions: return "ELR1"
        case .vqa: return "ELQ1 vqa"
        case .nlvr2: return "ELR1 nlvr2 images"
        default: return "ELR2 \(options.format.rawValue) grouped by image"
        }
    }

    var recordFormatDescription: String {
        switch options.format {
        case .captions: return "ELR1 DatasetRecord (captions, source id, JPEG, CRC-32)"
        case .vqa: return "ELQ1 VQARecord (one image: its questions with ids, answers and weights; source id, JPEG, CRC-32)"
        case .nlvr2: return "ELR1 DatasetRecord per image (no captions, source id = image path, JPEG, CRC-32); the NLVR2 pairs are ELP1 NLVRPairRecords in \(Self.pairsDirectoryName)/"
        default: return "ELR2 DatasetRecord (captions, one \(options.format.rawValue) label per caption, source id, JPEG, CRC-32)"
        }
    }

    // MARK: manifest

    func assembleManifest(plan: DatasetPlan, pairRejects: [RejectRecord] = []) throws -> DatasetManifest {
        let n = options.shardCount
        var summaries: [ShardSummary] = []
        for s in 0..<n {
            let dir = shardDirectory(s)
            guard FileManager.default.fileExists(atPath: dir) else {
                throw DatasetError.incomplete("shard \(ShardNaming.name(s, of: n)) is missing after all ranks finished")
            }
            let summary = try ShardSummary.load(fromShardDirectory: dir)
            guard summary.shard == s, summary.shardCount == n else {
                throw DatasetError.manifest(dir, "summary describes shard \(summary.shard) of \(summary.shardCount)")
            }
            summaries.append(summary)
        }
        var caption = CaptionStats(), image = ImageStats()
        var recordsBySource: [String: Int] = [:], decodeRejectsBySource: [String: Int] = [:]
        var byReason: [String: Int] = [:]
        var rejectedItems = 0
        for r in plan.rejects + pairRejects {
            byReason[r.reason.rawValue, default: 0] += 1
            rejectedItems += 1
        }
        for s in summaries {
            caption.merge(s.captionStats)
            image.merge(s.imageStats)
            for (k, v) in s.sourceRecords { recordsBySource[k, default: 0] += v }
            for r in s.rejects {
                byReason[r.reason.rawValue, default: 0] += 1
                decodeRejectsBySource[r.source, default: 0] += 1
                rejectedItems += 1
            }
        }
        let total = summaries.reduce(0) { $0 + $1.records }
        let sources = plan.sources.map { s in
            DatasetManifest.Source(path: s.path, kind: s.kind, entries: s.entries,
                                   records: recordsBySource[s.path] ?? 0,
                                   rejected: s.rejected + (decodeRejectsBySource[s.path] ?? 0),
                                   mergedEntries: s.mergedEntries, error: s.error,
                                   lostEntries: s.lostEntries > 0 ? s.lostEntries : nil,
                                   lostEntriesEstimated: s.lostEntriesEstimated ? true : nil,
                                   lost: s.wholeSourceLost ? true : nil)
        }
        // Entries of unreadable sources count as rejected items: one reject line must not hide a
        // thousand lost samples in the reject fraction.
        let lostItems = plan.sources.reduce(0) { $0 + $1.lostEntries }
        rejectedItems += lostItems
        let denominator = total + rejectedItems
        let fmt = ISO8601DateFormatter()
        return DatasetManifest(
            format: DatasetManifest.formatName, formatVersion: DatasetManifest.currentFormatVersion,
            builder: DatasetManifest.builderName, builderVersion: Self.builderVersion, created: fmt.string(from: Date()),
            recordFormat: recordFormatDescription,
            keyFormat: "uint64 big-endian, 0..<records per shard",
            shardCount: n, totalRecords: total,
            shards: summaries.map { DatasetManifest.Shard(name: $0.name, records: $0.records, bytes: $0.bytes,
                                                          checksum: $0.checksum, checksumAlgorithm: $0.checksumAlgorithm,
                                                          firstSourceID: $0.firstSourceID, lastSourceID: $0.lastSourceID,
                                                          captionCounts: $0.captionCounts) },
            sources: sources, imagePolicy: options.policy, captionStats: caption, imageStats: image,
            rejects: DatasetManifest.Rejects(total: rejectedItems, byReason: byReason, lostEntries: lostItems,
                                             fraction: denominator == 0 ? 0 : Double(rejectedItems) / Double(denominator)),
            droppedCaptions: plan.droppedCaptions, taskFormat: options.format.isTask ? options.format.rawValue : nil)
    }

    func writeRejects(plan: DatasetPlan, manifest: DatasetManifest, pairRejects: [RejectRecord] = []) throws {
        var text = ""
        for r in plan.rejects + pairRejects { text += r.jsonLine + "\n" }
        for s in 0..<options.shardCount {
            let summary = try ShardSummary.load(fromShardDirectory: shardDirectory(s))
            for r in summary.rejects { text += r.jsonLine + "\n" }
        }
        try FileOps.writeAtomically(Array(text.utf8), to: (out as NSString).appendingPathComponent(Self.rejectsFileName))
    }

    // MARK: helpers

    static func sameFile(_ a: String, _ b: String) -> Bool {
        if a == b { return true }
        guard let ra = DatasetPlan.realPath(DatasetPlan.absolute(a)), let rb = DatasetPlan.realPath(DatasetPlan.absolute(b)) else { return false }
        return ra == rb
    }

    /// "0-3, 5, 7-9".
    static func rangeList(_ v: [Int]) -> String {
        var parts: [String] = []
        var i = 0
        let s = v.sorted()
        while i < s.count {
            var j = i
            while j + 1 < s.count && s[j + 1] == s[j] + 1 { j += 1 }
            parts.append(i == j ? "\(s[i])" : "\(s[i])-\(s[j])")
            i = j + 1
        }
        return parts.joined(separator: ", ")
    }
}
