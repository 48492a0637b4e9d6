import Foundation

/// Writing one shard: items read, checked and re-encoded on worker threads, stored in plan order.
extension DatasetBuilder {
    enum Outcome {
        case record(bytes: [UInt8], width: Int, height: Int, jpegBytes: Int, resized: Bool)
        case reject(RejectRecord)
    }

    /// Builds shard `s` into a temporary directory and renames it into place.
    @discardableResult
    func buildShard(_ s: Int, plan: DatasetPlan, meter: ProgressMeter, done: inout Int) throws -> ShardSummary {
        let t0 = Date()
        let name = ShardNaming.name(s, of: options.shardCount)
        let final = shardDirectory(s)
        let tmp = final + ".tmp-\(getpid())"
        if FileManager.default.fileExists(atPath: tmp) { try FileManager.default.removeItem(atPath: tmp) }
        let indices = itemIndices(shard: s, plan: plan)

        var captionStats = CaptionStats()
        var imageStats = ImageStats()
        var sourceRecords: [String: Int] = [:]
        var rejects: [RejectRecord] = []
        var key: UInt64 = 0
        var firstSourceID: String? = nil, lastSourceID: String? = nil
        // Task records: captions per stored record, so the loader can enumerate (record, caption)
        // samples from the manifest alone.
        var captionCounts: [Int] = []
        do {
            let initialMap = options.initialMapSize
                ?? min(1 << 40, max(64 << 20, ((indices.count * (192 << 10) + (1 << 20) - 1) >> 20) << 20))
            let env = try LMDBEnvironment(path: tmp, readOnly: false, mapSize: initialMap, noSync: true)
            var pending: [[UInt8]] = []
            pending.reserveCapacity(options.batchSize)
            func flush() throws {
                guard !pending.isEmpty else { return }
                let first = key
                try env.writeWithGrowth { txn in
                    var k = first
                    for v in pending {
                        try txn.put(k, v, flags: .append)
                        k += 1
                    }
                }
                key += UInt64(pending.count)
                pending.removeAll(keepingCapacity: true)
            }
            let policy = options.policy
            let pipeline = OrderedPipeline<Outcome>(count: indices.count, window: max(64, 2 * options.batchSize))
            try pipeline.run(workers: options.workers, makeWorker: { _ in
                let ingestor: ImageIngestor?
                let ingestorError: String?
                do { ingestor = try ImageIngestor(policy: policy); ingestorError = nil } catch {
                    ingestor = nil
                    ingestorError = "\(error)"
                }
                return { j in
                    let item = plan.items[indices[j]]
                    guard let ingestor else {
                        return .reject(RejectRecord(source: plan.sources[item.source].path, item: item.item,
                                                    reason: .encodeFailed, detail: "codec setup failed: \(ingestorError ?? "")"))
                    }
                    return Self.process(item, plan: plan, policy: policy, ingestor: ingestor)
                }
            }, consume: { j, outcome in
                let item = plan.items[indices[j]]
                switch outcome {
                case let .record(bytes, w, h, jpegBytes, resized):
                    pending.append(bytes)
                    if firstSourceID == nil { firstSourceID = item.sourceID }
                    lastSourceID = item.sourceID
                    captionStats.add(captions: item.captions)
                    captionCounts.append(item.captions.count)
                    imageStats.add(width: w, height: h, bytes: jpegBytes, resized: resized)
                    sourceRecords[plan.sources[item.source].path, default: 0] += 1
                    if pending.count >= options.batchSize { try flush() }
                case let .reject(r):
                    rejects.append(r)
                }
                done += 1
                meter.update(done)
            })
            try flush()
            try env.sync(force: true)
        }
        // The environment is closed here (last reference gone): checksum the finished file.
        let data = (tmp as NSString).appendingPathComponent("data.mdb")
        try FileOps.fsync(path: data)
        let (sum, bytes) = try Checksum64.file(atPath: data)
        let summary = ShardSummary(shard: s, shardCount: options.shardCount, name: name, records: Int(key),
                                   planned: indices.count, bytes: bytes, checksum: Checksum64.hex(sum),
                                   checksumAlgorithm: Checksum64.algorithm,
                                   firstSourceID: firstSourceID, lastSourceID: lastSourceID, fingerprint: fingerprint(shard: s, plan: plan),
                                   builderVersion: Self.builderVersion, captionStats: captionStats, imageStats: imageStats,
                                   sourceRecords: sourceRecords, rejects: rejects,
                                   buildSeconds: Date().timeIntervalSince(t0),
                                   captionCounts: options.format.samplesAreCaptions ? CaptionCounts.encode(captionCounts) : nil)
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try FileOps.writeSynced(Array(try enc.encode(summary)),
                                to: (tmp as NSString).appendingPathComponent(ShardSummary.fileName), exclusive: true)
        try FileOps.fsync(path: tmp, isDirectory: true)
        guard rename(tmp, final) == 0 else {
            throw DatasetError.io(final, "cannot rename \(tmp) into place: \(FileOps.errnoString())")
        }
        try FileOps.fsync(path: out, isDirectory: true)
        return summary
    }

    /// Reads, checks and converts one item (runs on a worker thread).
    static func process(_ item: DatasetPlan.Item, plan: DatasetPlan, policy: ImagePolicy,
                        ingestor: ImageIngestor) -> Outcome {
        let source = plan.sources[item.source].path
        func reject(_ f: IngestFailure) -> Outcome {
            .reject(RejectRecord(source: source, item: item.item, reason: f.reason, detail: f.detail))
        }
        let bytes: [UInt8]
        switch readImageBytes(item.location, plan: plan, maxBytes: policy.maxFileBytes) {
        case let .success(b): bytes = b
        case let .failure(f): return reject(f)
        }
        switch ingestor.ingest(bytes) {
        case let .success(img):
            let bytes = plan.format == .vqa
                ? VQARecord(questions: item.questions, sourceID: item.sourceID, jpeg: img.jpeg).encoded()
                : DatasetRecord(captions: item.captions, sourceID: item.sourceID, jpeg: img.jpeg, labels: item.labels).encoded()
            return .record(bytes: bytes, width: img.width, height: img.height, jpegBytes: img.jpeg.count,
                           resized: img.resized)
        case let .failure(f):
            return reject(f)
        }
    }

    static func readImageBytes(_ location: DatasetPlan.Location, plan: DatasetPlan,
                               maxBytes: Int) -> Result<[UInt8], IngestFailure> {
        switch location {
        case let .tarMember(a, offset, size):
            guard size <= maxBytes else { return .failure(IngestFailure(.fileTooLarge, "\(size) bytes, limit \(maxBytes)")) }
            guard size > 0 else { return .failure(IngestFailure(.emptyFile, "zero-byte member")) }
            do {
                let reader = try TarReader(path: plan.archives[a])
                return .success(try reader.read(offset: offset, count: size))
            } catch {
                return .failure(IngestFailure(.unreadable, "\(error)"))
            }
        case let .file(path, confined):
            guard let real = DatasetPlan.realPath(path) else {
                let e = errno
                if e == ENOENT || e == ENOTDIR { return .failure(IngestFailure(.missingFile, "\(path) does not exist")) }
                return .failure(IngestFailure(.unreadable, "\(path): \(String(cString: strerror(e)))"))
            }
            if confined, let root = plan.imageRootResolved {
                let inside = root == "/" || real == root || real.hasPrefix(root + "/")
                guard inside else {
                    return .failure(IngestFailure(.pathEscapesRoot, "resolves to \(real), outside the image root \(root)"))
                }
            }
            let fd = open(real, O_RDONLY | O_CLOEXEC | O_NONBLOCK)     // a FIFO named *.jpg must not block the open
            guard fd >= 0 else { return .failure(IngestFailure(.unreadable, "\(path): \(FileOps.errnoString())")) }
            defer { close(fd) }
            var st = stat()
            guard fstat(fd, &st) == 0 else { return .failure(IngestFailure(.unreadable, "\(path): \(FileOps.errnoString())")) }
            guard (st.st_mode & S_IFMT) == S_IFREG else {
                return .failure(IngestFailure(.unreadable, "\(path) is not a regular file (a FIFO, device or directory)"))
            }
            let size = Int(st.st_size)
            guard size > 0 else { return .failure(IngestFailure(.emptyFile, "\(path) is empty")) }
            guard size <= maxBytes else { return .failure(IngestFailure(.fileTooLarge, "\(path) is \(size) bytes, limit \(maxBytes)")) }
            var buf = [UInt8](repeating: 0, count: size)
            var got = 0
            var failure: String? = nil
            buf.withUnsafeMutableBytes { raw in
                guard let base = raw.baseAddress else { return }
                while got < size {
                    let n = read(fd, base + got, size - got)
                    if n < 0 {
                        if errno == EINTR { continue }
                        failure = FileOps.errnoString()
                        return
                    }
                    if n == 0 { break }
                    got += n
                }
            }
            if let failure { return .failure(IngestFailure(.unreadable, "\(path): \(failure)")) }
            if got < size { buf.removeLast(size - got) }
            return .success(buf)
        }
    }
}
