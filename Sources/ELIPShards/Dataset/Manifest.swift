import Foundation

// The on-disk description of a built dataset:
//
//   DIR/manifest.json                       DatasetManifest (written last, by rank 0)
//   DIR/rejects.jsonl                       one RejectRecord per skipped input item
//   DIR/shard-00000-of-00004/data.mdb       LMDB (sub-dir mode), keys = big-endian UInt64 0..<records,
//   DIR/shard-00000-of-00004/lock.mdb         values = DatasetRecord
//   DIR/shard-00000-of-00004/shard-summary.json   ShardSummary (inside the shard: renamed with it)
//
// A shard directory only ever appears under its final name complete (built as
// `shard-...-of-....tmp-<pid>`, fsynced, renamed), and its summary records the record count and
// the elip-checksum64 of data.mdb, which resume and `inspect-dataset --verify` check.

/// Why an input item was skipped. Raw values are the strings written to rejects.jsonl and the
/// manifest.
public enum RejectReason: String, Codable, CaseIterable, Sendable, Comparable {
    case missingFile = "missing_file"
    case unreadable = "unreadable"
    case emptyFile = "empty_file"
    case fileTooLarge = "file_too_large"
    case notAnImage = "not_an_image"
    case unsupportedFormat = "unsupported_format"
    case truncatedImage = "truncated_image"
    case corruptImage = "corrupt_image"
    case tooManyPixels = "too_many_pixels"
    case encodeFailed = "encode_failed"
    case emptyCaption = "empty_caption"
    case captionNotUTF8 = "caption_not_utf8"
    case pathEscapesRoot = "path_escapes_root"
    case absolutePath = "absolute_path"
    case duplicate = "duplicate"
    case badAnnotation = "bad_annotation"
    case missingCaption = "missing_caption"
    case missingImage = "missing_image"
    case truncatedTar = "truncated_tar"
    case badTar = "bad_tar"
    case malformedJSON = "malformed_json"
    case unreadableSource = "unreadable_source"
    /// A task annotation's label is missing or not one of the task's classes.
    case badLabel = "bad_label"

    public static func < (a: RejectReason, b: RejectReason) -> Bool { a.rawValue < b.rawValue }

    /// True for reasons that describe a whole input file rather than one item.
    public var isSourceLevel: Bool {
        switch self {
        case .malformedJSON, .unreadableSource, .badTar, .truncatedTar: return true
        default: return false
        }
    }
}

/// One line of rejects.jsonl.
public struct RejectRecord: Codable, Equatable, Sendable {
    /// The input file (annotation JSON or tar shard) the item came from.
    public var source: String
    /// The item: image path as written in the annotation, or the tar member key; empty for a
    /// whole-file failure.
    public var item: String
    public var reason: RejectReason
    public var detail: String

    public init(source: String, item: String, reason: RejectReason, detail: String) {
        self.source = source
        self.item = item
        self.reason = reason
        self.detail = detail
    }

    /// One JSON line with keys in a fixed order.
    public var jsonLine: String {
        "{\"source\": \(JSONText.quote(source)), \"item\": \(JSONText.quote(item)), \"reason\": \(JSONText.quote(reason.rawValue)), \"detail\": \(JSONText.quote(detail))}"
    }
}

/// How images are stored.
public struct ImagePolicy: Codable, Equatable, Sendable {
    /// Images whose shorter side exceeds this are resized (Pillow-exact bicubic) so that it equals
    /// it; smaller images are kept at their size.
    public var shorterSide: Int
    public var quality: Int
    public var neverUpscale: Bool
    public var exifOrientationApplied: Bool
    public var colour: String
    public var resample: String
    public var chromaSubsampling: String
    /// Header-declared width * height above this is rejected before decoding.
    public var maxPixels: Int
    /// Only JPEG inputs are decoded; PNG, GIF, WebP and BMP are rejected as unsupported.
    public var onlyJPEG: Bool
    /// Input files larger than this are rejected without being read.
    public var maxFileBytes: Int

    public init(shorterSide: Int = 384, quality: Int = 95, maxPixels: Int = 100_000_000, onlyJPEG: Bool = false,
                maxFileBytes: Int = 256 << 20) {
        self.shorterSide = shorterSide
        self.quality = quality
        self.neverUpscale = true
        self.exifOrientationApplied = true
        self.colour = "RGB (grey and CMYK converted)"
        self.resample = "bicubic (Pillow-exact), shorter side"
        self.chromaSubsampling = "4:2:0"
        self.maxPixels = maxPixels
        self.onlyJPEG = onlyJPEG
        self.maxFileBytes = maxFileBytes
    }

    enum CodingKeys: String, CodingKey {
        case shorterSide = "shorter_side", quality, neverUpscale = "never_upscale"
        case exifOrientationApplied = "exif_orientation_applied", colour, resample
        case chromaSubsampling = "chroma_subsampling", maxPixels = "max_pixels", onlyJPEG = "only_jpeg"
        case maxFileBytes = "max_file_bytes"
        case legacyAcceptPNG = "accept_png"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        shorterSide = try c.decode(Int.self, forKey: .shorterSide)
        quality = try c.decode(Int.self, forKey: .quality)
        neverUpscale = try c.decode(Bool.self, forKey: .neverUpscale)
        exifOrientationApplied = try c.decode(Bool.self, forKey: .exifOrientationApplied)
        colour = try c.decode(String.self, forKey: .colour)
        resample = try c.decode(String.self, forKey: .resample)
        chromaSubsampling = try c.decode(String.self, forKey: .chromaSubsampling)
        maxPixels = try c.decode(Int.self, forKey: .maxPixels)
        maxFileBytes = try c.decode(Int.self, forKey: .maxFileBytes)
        // Manifests written before issue 16 say accept_png (false: only JPEG was decoded).
        if let only = try c.decodeIfPresent(Bool.self, forKey: .onlyJPEG) {
            onlyJPEG = only
        } else {
            onlyJPEG = !(try c.decode(Bool.self, forKey: .legacyAcceptPNG))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(shorterSide, forKey: .shorterSide)
        try c.encode(quality, forKey: .quality)
        try c.encode(neverUpscale, forKey: .neverUpscale)
        try c.encode(exifOrientationApplied, forKey: .exifOrientationApplied)
        try c.encode(colour, forKey: .colour)
        try c.encode(resample, forKey: .resample)
        try c.encode(chromaSubsampling, forKey: .chromaSubsampling)
        try c.encode(maxPixels, forKey: .maxPixels)
        try c.encode(onlyJPEG, forKey: .onlyJPEG)
        try c.encode(maxFileBytes, forKey: .maxFileBytes)
    }
}

/// Caption statistics, mergeable across shards. Words = whitespace-separated tokens of the stored
/// (raw) caption; `over30Words` counts captions that ALBEF's pre_caption would truncate.
public struct CaptionStats: Codable, Equatable, Sendable {
    public var images = 0
    public var captions = 0
    public var minCaptionsPerImage = 0
    public var maxCaptionsPerImage = 0
    public var words = 0
    public var minWords = 0
    public var maxWords = 0
    public var over30Words = 0

    public init() {}

    public var captionsPerImage: Double { images == 0 ? 0 : Double(captions) / Double(images) }
    public var wordsPerCaption: Double { captions == 0 ? 0 : Double(words) / Double(captions) }

    public static func wordCount(_ s: String) -> Int {
        s.split(whereSeparator: { $0.isWhitespace }).count
    }

    public mutating func add(captions cs: [String]) {
        let n = cs.count
        minCaptionsPerImage = images == 0 ? n : min(minCaptionsPerImage, n)
        maxCaptionsPerImage = images == 0 ? n : max(maxCaptionsPerImage, n)
        images += 1
        for c in cs {
            let w = Self.wordCount(c)
            minWords = captions == 0 ? w : min(minWords, w)
            maxWords = captions == 0 ? w : max(maxWords, w)
            captions += 1
            words += w
            if w > 30 { over30Words += 1 }
        }
    }

    public mutating func merge(_ o: CaptionStats) {
        guard o.images > 0 else { return }
        if images == 0 { self = o; return }
        minCaptionsPerImage = min(minCaptionsPerImage, o.minCaptionsPerImage)
        maxCaptionsPerImage = max(maxCaptionsPerImage, o.maxCaptionsPerImage)
        if o.captions > 0 {
            minWords = captions == 0 ? o.minWords : min(minWords, o.minWords)
            maxWords = captions == 0 ? o.maxWords : max(maxWords, o.maxWords)
        }
        images += o.images
        captions += o.captions
        words += o.words
        over30Words += o.over30Words
    }

    enum CodingKeys: String, CodingKey {
        case images, captions, minCaptionsPerImage = "min_captions_per_image", maxCaptionsPerImage = "max_captions_per_image"
        case words, minWords = "min_words", maxWords = "max_words", over30Words = "over_30_words"
    }
}

/// Stored-image statistics, mergeable.
public struct ImageStats: Codable, Equatable, Sendable {
    public var resized = 0
    public var keptSize = 0
    public var jpegBytes = 0
    public var minShorterSide = 0
    public var maxLongerSide = 0

    public init() {}

    public mutating func add(width: Int, height: Int, bytes: Int, resized r: Bool) {
        let first = resized + keptSize == 0
        if r { resized += 1 } else { keptSize += 1 }
        jpegBytes += bytes
        minShorterSide = first ? min(width, height) : min(minShorterSide, min(width, height))
        maxLongerSide = max(maxLongerSide, max(width, height))
    }

    public mutating func merge(_ o: ImageStats) {
        guard o.resized + o.keptSize > 0 else { return }
        if resized + keptSize == 0 { self = o; return }
        resized += o.resized
        keptSize += o.keptSize
        jpegBytes += o.jpegBytes
        minShorterSide = min(minShorterSide, o.minShorterSide)
        maxLongerSide = max(maxLongerSide, o.maxLongerSide)
    }

    enum CodingKeys: String, CodingKey {
        case resized, keptSize = "kept_size", jpegBytes = "jpeg_bytes", minShorterSide = "min_shorter_side"
        case maxLongerSide = "max_longer_side"
    }
}

/// Written into each finished shard directory (`shard-summary.json`).
public struct ShardSummary: Codable, Equatable, Sendable {
    public static let fileName = "shard-summary.json"

    public var shard: Int
    public var shardCount: Int
    public var name: String
    /// Records stored (keys 0..<records).
    public var records: Int
    /// Items planned for this shard (records + decode-time rejects).
    public var planned: Int
    /// Size and elip-checksum64 of data.mdb.
    public var bytes: Int
    public var checksum: String
    public var checksumAlgorithm: String
    /// Source ids of the first and last record: the shard's identity, which the loader checks
    /// cheaply at every start (nil in summaries of older builds or of empty shards).
    public var firstSourceID: String?
    public var lastSourceID: String?
    /// Hash of the build parameters and this shard's planned items: a resumed build only keeps
    /// the shard when it matches.
    public var fingerprint: String
    public var builderVersion: String
    public var captionStats: CaptionStats
    public var imageStats: ImageStats
    /// Records per source path.
    public var sourceRecords: [String: Int]
    /// Items of this shard rejected while reading/decoding them.
    public var rejects: [RejectRecord]
    public var buildSeconds: Double
    /// Task shards: captions of each record in key order (`CaptionCounts`); nil for pre-training.
    public var captionCounts: String? = nil

    enum CodingKeys: String, CodingKey {
        case captionCounts = "caption_counts"
        case shard, shardCount = "shard_count", name, records, planned, bytes, checksum
        case checksumAlgorithm = "checksum_algorithm", fingerprint, builderVersion = "builder_version"
        case firstSourceID = "first_source_id", lastSourceID = "last_source_id"
        case captionStats = "caption_stats", imageStats = "image_stats", sourceRecords = "source_records"
        case rejects, buildSeconds = "build_seconds"
    }

    public static func load(fromShardDirectory dir: String) throws -> ShardSummary {
        let path = (dir as NSString).appendingPathComponent(fileName)
        let data: Data
        do { data = Data(try FileOps.readFile(path, maxBytes: 1 << 30)) } catch {
            throw DatasetError.manifest(path, "cannot read the shard summary: \(error)")
        }
        do { return try JSONDecoder().decode(ShardSummary.self, from: data) } catch {
            throw DatasetError.manifest(path, "invalid shard summary: \(error)")
        }
    }
}

/// manifest.json.
public struct DatasetManifest: Codable, Equatable, Sendable {
    public static let fileName = "manifest.json"
    public static let formatName = "elip-lmdb-image-text"
    public static let currentFormatVersion = 1
    public static let builderName = "elip build-dataset"

    public struct Shard: Codable, Equatable, Sendable {
        public var name: String
        public var records: Int
        public var bytes: Int
        public var checksum: String
        public var checksumAlgorithm: String
        /// Source ids of the first and last record: the loader's cheap identity check (a copy of
        /// another shard names other sources), unaffected by damage elsewhere (nil: older build).
        public var firstSourceID: String?
        public var lastSourceID: String?
        /// Task shards: captions of each record in key order (`CaptionCounts`); nil for
        /// pre-training shards and task shards of older builds (one caption per record).
        public var captionCounts: String? = nil

        enum CodingKeys: String, CodingKey {
            case captionCounts = "caption_counts"
            case name, records, bytes, checksum, checksumAlgorithm = "checksum_algorithm"
            case firstSourceID = "first_source_id", lastSourceID = "last_source_id"
        }
    }

    public struct Source: Codable, Equatable, Sendable {
        public var path: String
        /// "annotations" or "tar".
        public var kind: String
        /// Items read from the source (accepted + rejected; merged duplicate entries included).
        public var entries: Int
        public var records: Int
        public var rejected: Int
        /// Entries whose captions were merged into an earlier entry for the same image.
        public var mergedEntries: Int
        /// Set when the whole file (or its tail) could not be read.
        public var error: String?
        /// Entries in the unreadable part (counted, or `lostEntriesEstimated` from the unread bytes).
        public var lostEntries: Int?
        public var lostEntriesEstimated: Bool?
        /// True when nothing of the source could be used.
        public var lost: Bool?

        enum CodingKeys: String, CodingKey {
            case path, kind, entries, records, rejected, mergedEntries = "merged_entries", error
            case lostEntries = "lost_entries", lostEntriesEstimated = "lost_entries_estimated", lost
        }
    }

    public struct Rejects: Codable, Equatable, Sendable {
        /// Rejected items, including the entries lost in unreadable sources.
        public var total: Int
        public var byReason: [String: Int]
        /// Of `total`: entries in unreadable parts of sources (counted or estimated).
        public var lostEntries: Int?
        /// Rejected items / (records + rejected items).
        public var fraction: Double

        enum CodingKeys: String, CodingKey { case total, byReason = "by_reason", lostEntries = "lost_entries", fraction }
    }

    public var format: String
    public var formatVersion: Int
    public var builder: String
    public var builderVersion: String
    public var created: String
    public var recordFormat: String
    public var keyFormat: String
    public var shardCount: Int
    public var totalRecords: Int
    public var shards: [Shard]
    public var sources: [Source]
    public var imagePolicy: ImagePolicy
    public var captionStats: CaptionStats
    public var imageStats: ImageStats
    public var rejects: Rejects
    /// Captions dropped from otherwise valid items (empty / non-UTF-8 members of a caption list).
    public var droppedCaptions: Int
    /// The annotation format of task shards (`ve`, `retrieval`); nil for pre-training shards
    /// and for SNLI-VE shards of older builds (their record_format names the task).
    public var taskFormat: String? = nil

    enum CodingKeys: String, CodingKey {
        case format, formatVersion = "format_version", builder, builderVersion = "builder_version", created
        case recordFormat = "record_format", keyFormat = "key_format", shardCount = "shard_count"
        case totalRecords = "total_records", shards, sources, imagePolicy = "image_policy"
        case captionStats = "caption_stats", imageStats = "image_stats", rejects
        case droppedCaptions = "dropped_captions", taskFormat = "task_format"
    }

    public static func load(fromDirectory dir: String) throws -> DatasetManifest {
        let path = (dir as NSString).appendingPathComponent(fileName)
        let data: Data
        do { data = Data(try FileOps.readFile(path, maxBytes: 1 << 30)) } catch {
            throw DatasetError.manifest(path, "cannot read the manifest: \(error)")
        }
        let m: DatasetManifest
        do { m = try JSONDecoder().decode(DatasetManifest.self, from: data) } catch {
            throw DatasetError.manifest(path, "invalid manifest: \(error)")
        }
        guard m.format == formatName else {
            throw DatasetError.manifest(path, "format is '\(m.format)', expected '\(formatName)'")
        }
        guard m.formatVersion <= currentFormatVersion else {
            throw DatasetError.manifest(path, "format version \(m.formatVersion) is newer than this reader (\(currentFormatVersion))")
        }
        guard m.shards.count == m.shardCount else {
            throw DatasetError.manifest(path, "lists \(m.shards.count) shards but shard_count is \(m.shardCount)")
        }
        return m
    }

    /// Directory of shard `i` inside the dataset directory.
    public func shardPath(_ i: Int, in dir: String) -> String {
        (dir as NSString).appendingPathComponent(shards[i].name)
    }

    public func encodedJSON() throws -> [UInt8] {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return Array(try e.encode(self)) + [0x0A]
    }
}

/// Shard directory names: `shard-00003-of-00016`.
public enum ShardNaming {
    public static func name(_ shard: Int, of count: Int) -> String {
        "shard-\(pad(shard))-of-\(pad(count))"
    }

    static func pad(_ v: Int) -> String {
        let s = String(v)
        return s.count >= 5 ? s : String(repeating: "0", count: 5 - s.count) + s
    }

    /// Parses `shard-XXXXX-of-YYYYY` (optionally followed by `.tmp-...`) into (shard, count, isTemporary).
    public static func parse(_ name: String) -> (shard: Int, count: Int, temporary: Bool)? {
        guard name.hasPrefix("shard-") else { return nil }
        var rest = name.dropFirst(6)
        guard let dash = rest.firstIndex(of: "-"), let shard = Int(rest[rest.startIndex..<dash]) else { return nil }
        rest = rest[dash...]
        guard rest.hasPrefix("-of-") else { return nil }
        rest = rest.dropFirst(4)
        let digits = rest.prefix(while: { $0.isASCII && $0.isNumber })
        guard let count = Int(digits) else { return nil }
        let tail = rest.dropFirst(digits.count)
        if tail.isEmpty { return (shard, count, false) }
        if tail.hasPrefix(".tmp-") { return (shard, count, true) }
        return nil
    }
}

/// Captions per record of a task shard, stored in the manifest as a compact string: "5,5,6,5".
/// Every count is at least 1 (a record without captions is never written).
public enum CaptionCounts {
    public static let maxPerRecord = 1 << 20

    public static func encode(_ counts: [Int]) -> String { counts.map(String.init).joined(separator: ",") }

    /// What is wrong with a stored list.
    public struct Problem: Error, CustomStringConvertible {
        public let description: String
    }

    /// The counts (`records` entries expected), or `Problem` saying what is wrong.
    public static func decode(_ text: String, records: Int) throws -> [Int] {
        if records == 0 {
            guard text.isEmpty else { throw Problem(description: "lists captions for records, but the shard has none") }
            return []
        }
        var counts: [Int] = []
        counts.reserveCapacity(records)
        for (i, part) in text.split(separator: ",", omittingEmptySubsequences: false).enumerated() {
            guard let n = Int(part), (1...maxPerRecord).contains(n) else {
                throw Problem(description: "entry \(i) ('\(part.prefix(20))') is not a caption count in 1...\(maxPerRecord)")
            }
            counts.append(n)
        }
        guard counts.count == records else { throw Problem(description: "lists \(counts.count) records, the shard has \(records)") }
        return counts
    }
}
