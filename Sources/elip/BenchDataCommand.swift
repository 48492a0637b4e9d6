import ArgumentParser
import ELIPShards
import Foundation

struct BenchDataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Dataset builder throughput: images/s re-encoding synthetic 384-px JPEGs at 256 px, per worker count.",
        discussion: """
        Writes --images synthetic JPEGs (--source-size px, quality 95) to a temporary folder, then runs the \
        builder (one process, 1 shard, --image-size) once per --workers value and reports images/s over \
        read + decode + resize + encode + LMDB write (the scan is excluded). One untimed warm-up build \
        runs first; each worker count is timed --repeats times (best and median reported: on a shared \
        machine the best is the better estimate of what the code can do).
        """
    )

    @Option(help: "Synthetic source images.")
    var images: Int = 400
    @Option(help: ArgumentHelp("Side of the synthetic source JPEGs.", valueName: "px"))
    var sourceSize: Int = 384
    @Option(help: ArgumentHelp("Stored shorter side.", valueName: "px"))
    var imageSize: Int = 256
    @Option(parsing: .upToNextOption, help: "Worker counts to measure.")
    var workers: [Int] = [1, 2]
    @Option(help: "Timed builds per worker count.")
    var repeats: Int = 3
    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    func validate() throws {
        if images < 1 { throw ValidationError("--images must be at least 1") }
        if workers.isEmpty || workers.contains(where: { $0 < 1 }) { throw ValidationError("--workers values must be >= 1") }
        if repeats < 1 { throw ValidationError("--repeats must be at least 1") }
    }

    func run() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("elip-bench-data-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let src = (root as NSString).appendingPathComponent("src")
        var o = SyntheticCorpusWriter.Options(outputDirectory: src, images: images)
        o.size = sourceSize
        o.testFraction = 0
        o.workers = ProcessInfo.processInfo.activeProcessorCount
        o.showProgress = false
        try SyntheticCorpusWriter.write(o)
        var results: [[String: Any]] = []
        if !json { print("builder: \(images) synthetic \(sourceSize)-px JPEGs -> \(imageSize) px, quality 95, 1 shard") }
        func measure(_ w: Int, _ tag: String) throws -> (rate: Double, records: Int) {
            let dst = (root as NSString).appendingPathComponent("out-\(tag)")
            defer { try? FileManager.default.removeItem(atPath: dst) }
            var b = DatasetBuildOptions(outputDirectory: dst, shardCount: 1)
            b.annotationFiles = [(src as NSString).appendingPathComponent("train.json")]
            b.imageRoot = src
            b.policy = ImagePolicy(shorterSide: imageSize)
            b.workers = w
            b.showProgress = false
            let report = try DatasetBuilder(options: b, log: { _ in }).build()
            return (report.imagesPerSecond, report.totalRecords)
        }
        _ = try measure(workers.max() ?? 1, "warmup")
        for w in workers {
            var rates: [Double] = []
            var records = 0
            for r in 0..<repeats {
                let m = try measure(w, "\(w)-\(r)")
                rates.append(m.rate)
                records = m.records
            }
            rates.sort()
            let best = rates.last ?? 0, median = rates[rates.count / 2]
            results.append(["workers": w, "images_per_second_best": best, "images_per_second_median": median,
                            "records": records])
            if !json { print(String(format: "  workers %d: best %7.1f images/s, median %7.1f (%d runs, %d records)", w, best, median, repeats, records)) }
        }
        if json {
            let obj: [String: Any] = ["images": images, "source_size": sourceSize, "image_size": imageSize,
                                      "cores": ProcessInfo.processInfo.activeProcessorCount, "results": results]
            let data = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        }
    }
}
