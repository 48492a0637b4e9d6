import ELIPImage
import Foundation

/// What `DatasetInspector.inspect` found.
public struct DatasetInspection: Sendable {
    public struct ShardState: Sendable {
        public var name: String
        public var records: Int
        public var bytes: Int
        /// data.mdb size on disk (nil: missing).
        public var bytesOnDisk: Int?
    }

    public var directory: String
    public var manifest: DatasetManifest
    public var shards: [ShardState]
    /// Things that are wrong (non-empty means the dataset fails verification).
    public var problems: [String] = []
    /// Problems beyond `maxListedProblems` are counted here, not listed.
    public var unlistedProblems = 0
    /// Things worth knowing that do not make the dataset wrong (leftover temporaries, ...).
    public var warnings: [String] = []
    /// Set by a verifying inspection.
    public var verified = false
    public var recordsChecked = 0
    public var recomputedCaptionStats: CaptionStats?

    public var problemCount: Int { problems.count + unlistedProblems }
    public var isValid: Bool { problemCount == 0 }
}

/// Reads a built dataset: counts and statistics from the manifest, an optional full verification,
/// and decoded samples for a contact sheet.
public enum DatasetInspector {
    public static let maxListedProblems = 200

    /// Loads the manifest and checks that every shard is present with the recorded size. With
    /// `verify`: also each shard's data.mdb checksum and entry count against the manifest, and every
    /// record (sequential keys 0..<n, record CRC, JPEG decodes, shorter side within the policy,
    /// non-empty captions); caption statistics are recomputed and compared.
    public static func inspect(directory: String, verify: Bool, workers: Int = 1,
                               showProgress: Bool = false) throws -> DatasetInspection {
        let manifest = try DatasetManifest.load(fromDirectory: directory)
        var result = DatasetInspection(directory: directory, manifest: manifest, shards: [])
        func problem(_ s: String) {
            if result.problems.count < maxListedProblems { result.problems.append(s) } else { result.unlistedProblems += 1 }
        }
        let fm = FileManager.default
        var listed = Set<String>()
        for (i, shard) in manifest.shards.enumerated() {
            listed.insert(shard.name)
            let expected = ShardNaming.name(i, of: manifest.shardCount)
            if shard.name != expected { problem("manifest shard \(i) is named \(shard.name), expected \(expected)") }
            let dir = (directory as NSString).appendingPathComponent(shard.name)
            let data = (dir as NSString).appendingPathComponent("data.mdb")
            var onDisk: Int? = nil
            if let attrs = try? fm.attributesOfItem(atPath: data), let size = attrs[.size] as? NSNumber {
                onDisk = size.intValue
                if size.intValue != shard.bytes { problem("\(shard.name): data.mdb is \(size.intValue) bytes, the manifest says \(shard.bytes)") }
                if let env = try? LMDBEnvironment(path: dir, readOnly: true, verifyStructure: true),
                   let p = ShardIntegrity.identityProblem(env, first: shard.firstSourceID, last: shard.lastSourceID,
                                                          records: shard.records) {
                    problem("\(shard.name): \(p)")
                }
                if let summary = try? ShardSummary.load(fromShardDirectory: dir),
                   summary.name != shard.name || summary.records != shard.records || summary.bytes != shard.bytes {
                    problem("\(shard.name): its shard-summary.json describes \(summary.name) with \(summary.records) records (a copy of another shard?)")
                }
            } else {
                problem("\(shard.name): missing (no \(data))")
            }
            result.shards.append(.init(name: shard.name, records: shard.records, bytes: shard.bytes, bytesOnDisk: onDisk))
        }
        let sum = manifest.shards.reduce(0) { $0 + $1.records }
        if sum != manifest.totalRecords { problem("manifest total_records \(manifest.totalRecords) != sum over shards \(sum)") }
        if let names = try? fm.contentsOfDirectory(atPath: directory) {
            for n in names.sorted() {
                guard let p = ShardNaming.parse(n) else { continue }
                if p.temporary {
                    result.warnings.append("leftover temporary directory \(n) (an interrupted build; the next build-dataset removes it)")
                } else if !listed.contains(n) {
                    result.warnings.append("\(n) is not part of this manifest (from a build with a different --shards?)")
                }
            }
        }
        guard verify else { return result }

        result.verified = true
        var stats = CaptionStats()
        let meter = ProgressMeter(label: "verify", total: manifest.totalRecords, unit: "records", enabled: showProgress)
        var checked = 0
        for shard in manifest.shards {
            let dir = (directory as NSString).appendingPathComponent(shard.name)
            let dataPath = (dir as NSString).appendingPathComponent("data.mdb")
            guard FileManager.default.fileExists(atPath: dataPath) else { continue }    // reported above
            do {
                let (c, _) = try Checksum64.file(atPath: dataPath)
                if Checksum64.hex(c) != shard.checksum {
                    problem("\(shard.name): data.mdb checksum \(Checksum64.hex(c)) != manifest \(shard.checksum); "
                            + "record checks skipped for this shard (a damaged LMDB file is not safe to traverse)")
                    continue
                }
            } catch {
                problem("\(shard.name): \(error)")
                continue
            }
            do {
                let env = try LMDBEnvironment(path: dir, readOnly: true, verifyStructure: true)
                let count = try env.count()
                if count != shard.records { problem("\(shard.name): \(count) records, the manifest says \(shard.records)") }
                let shardStats = try verifyRecords(env: env, shard: shard.name, policy: manifest.imagePolicy,
                                                   workers: workers, problem: problem) { n in
                    checked += n
                    meter.update(checked)
                }
                stats.merge(shardStats)
            } catch {
                problem("\(shard.name): cannot read: \(error)")
            }
        }
        meter.finish(checked)
        result.recordsChecked = checked
        result.recomputedCaptionStats = stats
        if stats != manifest.captionStats && result.problemCount == 0 {
            problem("caption statistics recomputed from the records differ from the manifest's")
        }
        return result
    }

    /// Checks every record of one shard; returns its caption statistics.
    static func verifyRecords(env: LMDBEnvironment, shard: String, policy: ImagePolicy, workers: Int,
                              problem: (String) -> Void, progress: (Int) -> Void) throws -> CaptionStats {
        let w = max(1, workers)
        let decoders = try (0..<w).map { _ in try JPEGDecoder() }
        var stats = CaptionStats()
        var expectedKey: UInt64 = 0
        var batch: [(UInt64, [UInt8])] = []
        func check() {
            guard !batch.isEmpty else { return }
            let n = batch.count
            let outcomes = UnsafeMutableBufferPointer<(DatasetRecord?, String?)>.allocate(capacity: n)
            outcomes.initialize(repeating: (nil, nil))
            defer { outcomes.deallocate() }
            let items = batch
            let decodersBox = UncheckedBox(decoders)
            DispatchQueue.concurrentPerform(iterations: w) { t in
                var j = t
                while j < n {
                    let (k, v) = items[j]
                    outcomes[j] = checkRecord(v, key: k, policy: policy, decoder: decodersBox.value[t])
                    j += w
                }
            }
            for j in 0..<n {
                if let r = outcomes[j].0 { stats.add(captions: r.captions) }
                if let p = outcomes[j].1 { problem("\(shard) key \(items[j].0): \(p)") }
            }
            progress(n)
            batch.removeAll(keepingCapacity: true)
        }
        try env.read { txn in
            try txn.forEach { k, v in
                guard let key = LMDBKey.uint64(decoding: k) else {
                    problem("\(shard): a key of \(k.count) bytes (expected 8-byte big-endian integers)")
                    return true
                }
                if key != expectedKey { problem("\(shard): key \(key) where \(expectedKey) was expected (keys must be 0, 1, 2, ...)") }
                expectedKey = key + 1
                batch.append((key, v))
                if batch.count >= 256 { check() }
                return true
            }
        }
        check()
        return stats
    }

    static func checkRecord(_ bytes: [UInt8], key: UInt64, policy: ImagePolicy,
                            decoder: JPEGDecoder) -> (DatasetRecord?, String?) {
        let record: DatasetRecord
        do { record = try DatasetRecord.decodeAny(bytes) } catch { return (nil, "\(error)") }
        if record.captions.isEmpty { return (record, "no captions") }
        if record.captions.contains(where: { $0.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty }) {
            return (record, "an empty caption")
        }
        do {
            let img = try decoder.decode(record.jpeg, options: JPEGDecodeOptions(maxPixels: policy.maxPixels, warningPolicy: .rejectAll))
            if min(img.width, img.height) > policy.shorterSide {
                return (record, "image \(img.width)x\(img.height) has a shorter side above the policy's \(policy.shorterSide)")
            }
        } catch {
            return (record, "JPEG does not decode: \(error)")
        }
        return (record, nil)
    }

    /// `count` records spread evenly over the dataset (in shard order), decoded.
    public static func samples(directory: String, manifest: DatasetManifest, count: Int) throws -> [DatasetRecord] {
        let total = manifest.totalRecords
        guard count > 0, total > 0 else { return [] }
        let k = min(count, total)
        var wanted: [Int: [UInt64]] = [:]
        for j in 0..<k {
            var g = j * total / k
            for (s, shard) in manifest.shards.enumerated() {
                if g < shard.records { wanted[s, default: []].append(UInt64(g)); break }
                g -= shard.records
            }
        }
        var out: [DatasetRecord] = []
        for s in wanted.keys.sorted() {
            let name = manifest.shards[s].name
            // The structure check keeps a truncated or damaged file from being mapped and read.
            let env: LMDBEnvironment
            do { env = try LMDBEnvironment(path: manifest.shardPath(s, in: directory), readOnly: true, verifyStructure: true) } catch {
                throw DatasetError.manifest(name, "cannot read samples: \(error)")
            }
            try env.read { txn in
                for key in wanted[s] ?? [] {
                    let v: [UInt8]?
                    do { v = try txn.get(key) } catch { throw DatasetError.manifest(name, "record \(key): \(error)") }
                    guard let v else { throw DatasetError.manifest(name, "record \(key) is missing") }
                    do { out.append(try DatasetRecord.decodeAny(v)) } catch {
                        throw DatasetError.manifest(name, "record \(key): \(error)")
                    }
                }
            }
        }
        return out
    }

    /// A grid of thumbnails (each image fitted into `thumbnail` x `thumbnail`, centred on grey),
    /// row-major in the order given.
    public static func contactSheet(_ records: [DatasetRecord], thumbnail: Int = 128, gap: Int = 4) throws -> RGBImage {
        guard !records.isEmpty, thumbnail > 0 else { throw DatasetError.invalidArgument("no samples for a contact sheet") }
        let cols = Int(Double(records.count).squareRoot().rounded(.up))
        let rows = (records.count + cols - 1) / cols
        let W = cols * thumbnail + (cols + 1) * gap, H = rows * thumbnail + (rows + 1) * gap
        var canvas = [UInt8](repeating: 40, count: W * H * 3)
        let decoder = try JPEGDecoder()
        for (i, r) in records.enumerated() {
            let img = try decoder.decode(r.jpeg)
            let scale = Double(thumbnail) / Double(max(img.width, img.height))
            let tw = max(1, min(thumbnail, Int((Double(img.width) * scale).rounded())))
            let th = max(1, min(thumbnail, Int((Double(img.height) * scale).rounded())))
            let thumb = (tw == img.width && th == img.height) ? img : try img.resized(width: tw, height: th)
            let x0 = gap + (i % cols) * (thumbnail + gap) + (thumbnail - tw) / 2
            let y0 = gap + (i / cols) * (thumbnail + gap) + (thumbnail - th) / 2
            thumb.withUnsafeBytes { src in
                for y in 0..<th {
                    let d = ((y0 + y) * W + x0) * 3, s = y * tw * 3
                    for x in 0..<(tw * 3) { canvas[d + x] = src[s + x] }
                }
            }
        }
        return try RGBImage(width: W, height: H, pixels: canvas)
    }
}

/// Shares a non-Sendable value with concurrent code that uses disjoint parts of it.
struct UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ v: T) { value = v }
}
