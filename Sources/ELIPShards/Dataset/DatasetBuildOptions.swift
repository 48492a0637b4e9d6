import Foundation

/// The process group a build runs in. ELIPShards does not depend on ELIPDistributed: the CLI wraps
/// its MPI communicator in this protocol; `SingleProcessBuildGroup` is the one-process case.
public protocol DatasetBuildGroup: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// Blocks until every rank has called it.
    func barrier() throws
    /// Rank 0's `value` on every rank (a collective: every rank calls it).
    func broadcastFromRoot(_ value: String?) throws -> String?
}

public final class SingleProcessBuildGroup: DatasetBuildGroup {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func barrier() throws {}
    public func broadcastFromRoot(_ value: String?) throws -> String? { value }
}

public struct DatasetBuildOptions: Sendable {
    public var annotationFiles: [String] = []
    /// Tar archives: files, directories (their *.tar) or glob patterns.
    public var tarInputs: [String] = []
    public var imageRoot: String?
    public var outputDirectory: String
    public var shardCount: Int
    public var policy = ImagePolicy()
    /// Decode/resize/encode threads per rank.
    public var workers = 1
    public var allowAbsolutePaths = false
    /// What the annotation files hold (pre-training captions, or a task's records with labels).
    public var format = DatasetPlan.AnnotationFormat.captions
    /// The build fails (non-zero exit) when rejected / (records + rejected) exceeds this.
    public var maxRejectFraction = 0.05
    /// Build even when a whole input source is lost (unreadable, empty, malformed); otherwise
    /// such a build fails (the shards are still written and listed).
    public var allowLostSources = false
    /// Records per LMDB write transaction.
    public var batchSize = 512
    /// Progress output on stderr.
    public var showProgress = true
    /// Plain progress line interval (seconds) when stderr is not a terminal.
    public var progressInterval = 10.0
    /// LMDB map size a shard starts with (nil: about 192 KiB per planned record, at least 64 MiB);
    /// the map doubles whenever a batch does not fit.
    public var initialMapSize: Int?

    public init(outputDirectory: String, shardCount: Int) {
        self.outputDirectory = outputDirectory
        self.shardCount = shardCount
    }
}

/// What a build did (every rank gets the same totals; `built`/`skipped` are this rank's shards).
public struct DatasetBuildReport: Sendable {
    public var manifest: DatasetManifest
    public var builtShards: [Int]
    public var skippedShards: [Int]
    /// Finished shards that were discarded and rebuilt, with the reason.
    public var discardedShards: [Int: String]
    public var seconds: Double
    /// Records / s over the shards this rank built.
    public var imagesPerSecond: Double
    public var maxRejectFraction: Double
    public var allowLostSources = false

    public var totalRecords: Int { manifest.totalRecords }
    public var rejectFraction: Double { manifest.rejects.fraction }
    /// Nil when the build counts as successful; otherwise why not.
    public var failure: String? {
        if manifest.totalRecords == 0 { return "nothing was built (0 records)" }
        let lost = manifest.sources.filter { $0.lost == true }
        if !lost.isEmpty && !allowLostSources {
            let list = lost.map { "\($0.path) (\($0.error ?? "unreadable"))" }.joined(separator: "; ")
            return "\(lost.count) input source(s) lost entirely: \(list). Fix them, or pass --allow-lost-sources to build without them"
        }
        if manifest.rejects.fraction > maxRejectFraction {
            return String(format: "%.2f%% of the inputs were rejected, more than --max-reject-fraction %.2f%%",
                          100 * manifest.rejects.fraction, 100 * maxRejectFraction)
        }
        return nil
    }
}
