import Foundation

/// Seconds spent in each phase of a step.
public struct PhaseTimes: Codable, Equatable, Sendable {
    public var data = 0.0, forward = 0.0, backward = 0.0, communication = 0.0, optimizer = 0.0
    public var total: Double { data + forward + backward + communication + optimizer }
}

/// One line of metrics.jsonl.
public struct MetricsRecord: Codable, Equatable, Sendable {
    public var step: Int
    public var epoch: Int
    public var lossMLM: Double, lossITA: Double, lossITM: Double
    public var lr: Double, alpha: Double, temp: Double
    public var gradNorm: Double
    public var imagesPerSecond: Double
    public var times: PhaseTimes
    /// Vision tokens kept at each pruning stage.
    public var keptTokens: [Int]
    public var residentMB: Double
    public var skipped: Bool
    /// Share of the gradient all-reduce hidden behind backward.
    public var allReduceHiddenShare: Double

    enum CodingKeys: String, CodingKey {
        case step, epoch, lossMLM = "loss_mlm", lossITA = "loss_ita", lossITM = "loss_itm", lr, alpha, temp
        case gradNorm = "grad_norm", imagesPerSecond = "images_per_s", times = "seconds", keptTokens = "kept_tokens"
        case residentMB = "rss_mb", skipped, allReduceHiddenShare = "allreduce_hidden_share"
    }
}

/// Appends records to metrics.jsonl (rank 0), flushed per line so a crash loses nothing.
public final class MetricsLog {
    let handle: FileHandle
    let encoder = JSONEncoder()

    public init(url: URL) throws {
        if !FileManager.default.fileExists(atPath: url.path) {
            guard FileManager.default.createFile(atPath: url.path, contents: nil) else {
                throw TrainError.config("cannot create \(url.path)")
            }
        }
        handle = try FileHandle(forWritingTo: url)
        try handle.seekToEnd()
        encoder.outputFormatting = [.sortedKeys]
    }

    public func append(_ record: MetricsRecord) throws {
        var data = try encoder.encode(record)
        data.append(0x0A)
        try handle.write(contentsOf: data)
    }

    /// Reads every record of a metrics file (for plots and tests).
    public static func read(_ url: URL) throws -> [MetricsRecord] {
        let text = try String(contentsOf: url, encoding: .utf8)
        return try text.split(separator: "\n").map { try JSONDecoder().decode(MetricsRecord.self, from: Data($0.utf8)) }
    }
}
