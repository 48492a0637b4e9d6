import Foundation

/// Seconds spent in each phase of a step.
public struct PhaseTimes: Codable, Equatable, Sendable {
    public var data = 0.0, forward = 0.0, backward = 0.0, communication = 0.0, optimizer = 0.0
    public var total: Double { data + forward + backward + communication + optimizer }
    public init() {}
}

/// One line of metrics.jsonl. Losses and model values are name -> value maps, so every backbone
/// and task logs its own; a value that is not finite is written as null (and read back as NaN).
public struct MetricsRecord: Equatable, Sendable {
    public var step: Int
    public var epoch: Int
    /// The model's named losses ("ita", "itm", "mlm", ...), averaged over micro-batches.
    public var losses: [String: Double]
    /// The model's named scalars ("alpha", "temp", ...).
    public var values: [String: Double] = [:]
    public var lr: Double
    public var gradNorm: Double
    public var imagesPerSecond: Double
    public var times: PhaseTimes
    /// Vision tokens kept at each pruning stage.
    public var keptTokens: [Int]
    public var residentMB: Double
    public var skipped: Bool
    /// Share of the gradient all-reduce hidden behind backward.
    public var allReduceHiddenShare: Double

    public init(step: Int, epoch: Int, losses: [String: Double], values: [String: Double] = [:], lr: Double, gradNorm: Double,
                imagesPerSecond: Double, times: PhaseTimes, keptTokens: [Int], residentMB: Double, skipped: Bool,
                allReduceHiddenShare: Double) {
        self.step = step
        self.epoch = epoch
        self.losses = losses
        self.values = values
        self.lr = lr
        self.gradNorm = gradNorm
        self.imagesPerSecond = imagesPerSecond
        self.times = times
        self.keptTokens = keptTokens
        self.residentMB = residentMB
        self.skipped = skipped
        self.allReduceHiddenShare = allReduceHiddenShare
    }

    /// Sum of the named losses (what backward started from, for models that add them).
    public var totalLoss: Double { losses.values.reduce(0, +) }

    public static func == (a: MetricsRecord, b: MetricsRecord) -> Bool {
        func same(_ x: [String: Double], _ y: [String: Double]) -> Bool {
            x.keys == y.keys && x.allSatisfy { k, v in let w = y[k]!; return v == w || (v.isNaN && w.isNaN) }
        }
        return a.step == b.step && a.epoch == b.epoch && same(a.losses, b.losses) && same(a.values, b.values) && a.lr == b.lr
            && (a.gradNorm == b.gradNorm || (a.gradNorm.isNaN && b.gradNorm.isNaN)) && a.imagesPerSecond == b.imagesPerSecond
            && a.times == b.times && a.keptTokens == b.keptTokens && a.residentMB == b.residentMB && a.skipped == b.skipped
            && a.allReduceHiddenShare == b.allReduceHiddenShare
    }
}

extension MetricsRecord: Codable {
    enum CodingKeys: String, CodingKey {
        case step, epoch, losses, values, lr, gradNorm = "grad_norm", imagesPerSecond = "images_per_s", times = "seconds"
        case keptTokens = "kept_tokens", residentMB = "rss_mb", skipped, allReduceHiddenShare = "allreduce_hidden_share"
    }

    /// Keys of metrics files written before losses became a map.
    struct LegacyKeys: CodingKey {
        var stringValue: String
        init?(stringValue: String) { self.stringValue = stringValue }
        var intValue: Int? { nil }
        init?(intValue: Int) { nil }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        step = try c.decode(Int.self, forKey: .step)
        epoch = try c.decode(Int.self, forKey: .epoch)
        func finiteOrNaN(_ m: [String: Double?]) -> [String: Double] { m.mapValues { $0 ?? .nan } }
        if let l = try c.decodeIfPresent([String: Double?].self, forKey: .losses) {
            losses = finiteOrNaN(l)
            values = finiteOrNaN(try c.decodeIfPresent([String: Double?].self, forKey: .values) ?? [:])
        } else {
            // Earlier files: loss_mlm, loss_ita, loss_itm, alpha and temp at the top level.
            let legacy = try decoder.container(keyedBy: LegacyKeys.self)
            losses = [:]
            values = [:]
            for key in legacy.allKeys {
                if key.stringValue.hasPrefix("loss_") {
                    losses[String(key.stringValue.dropFirst(5))] = try legacy.decodeIfPresent(Double.self, forKey: key) ?? .nan
                } else if key.stringValue == "alpha" || key.stringValue == "temp" {
                    values[key.stringValue] = try legacy.decode(Double.self, forKey: key)
                }
            }
            guard !losses.isEmpty else {
                throw DecodingError.keyNotFound(CodingKeys.losses, .init(codingPath: c.codingPath, debugDescription: "no losses"))
            }
        }
        lr = try c.decode(Double.self, forKey: .lr)
        gradNorm = try c.decodeIfPresent(Double.self, forKey: .gradNorm) ?? .nan
        imagesPerSecond = try c.decode(Double.self, forKey: .imagesPerSecond)
        times = try c.decode(PhaseTimes.self, forKey: .times)
        keptTokens = try c.decode([Int].self, forKey: .keptTokens)
        residentMB = try c.decode(Double.self, forKey: .residentMB)
        skipped = try c.decode(Bool.self, forKey: .skipped)
        allReduceHiddenShare = try c.decode(Double.self, forKey: .allReduceHiddenShare)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        func finite(_ m: [String: Double]) -> [String: Double?] { m.mapValues { $0.isFinite ? $0 : nil } }
        try c.encode(step, forKey: .step)
        try c.encode(epoch, forKey: .epoch)
        try c.encode(finite(losses), forKey: .losses)
        try c.encode(finite(values), forKey: .values)
        try c.encode(lr, forKey: .lr)
        if gradNorm.isFinite { try c.encode(gradNorm, forKey: .gradNorm) } else { try c.encodeNil(forKey: .gradNorm) }
        try c.encode(imagesPerSecond.isFinite ? imagesPerSecond : 0, forKey: .imagesPerSecond)
        try c.encode(times, forKey: .times)
        try c.encode(keptTokens, forKey: .keptTokens)
        try c.encode(residentMB, forKey: .residentMB)
        try c.encode(skipped, forKey: .skipped)
        try c.encode(allReduceHiddenShare, forKey: .allReduceHiddenShare)
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
        // Losses, values and grad_norm are written as null when not finite (see MetricsRecord);
        // any other number that is not finite becomes a string rather than failing the run.
        encoder.nonConformingFloatEncodingStrategy = MetricsLog.nonFiniteAsStrings
    }

    static let nonFiniteAsStrings = JSONEncoder.NonConformingFloatEncodingStrategy.convertToString(
        positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")

    public func append(_ record: MetricsRecord) throws {
        var data = try encoder.encode(record)
        data.append(0x0A)
        try handle.write(contentsOf: data)
    }

    /// Reads every record of a metrics file (for plots and tests).
    public static func read(_ url: URL) throws -> [MetricsRecord] {
        let text = try String(contentsOf: url, encoding: .utf8)
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try text.split(separator: "\n").map { try decoder.decode(MetricsRecord.self, from: Data($0.utf8)) }
    }
}
