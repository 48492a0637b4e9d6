import ArgumentParser
import ELIPData
import Foundation

struct BenchDataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Dataset builder throughput: images/s re-encoding synthetic 384-px JPEGs at 256 px, per worker count.",
        discussion: """
        Writes --images synthetic JPEGs (--source-size px, quality 95) to a temporary folder, then runs the
        builder (one process, 1 shard, --image-size) once per --workers value and reports images/s over
        read + decode + resize + encode + LMDB write (the scan is excluded).
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
    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    func validate() throws {
        if images < 1 { throw ValidationError("--images must be at least 1") }
        if workers.isEmpty || workers.contains(where: { $0 < 1 }) { throw ValidationError("--workers values must be >= 1") }
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
        for w in workers {
            let dst = (root as NSString).appendingPathComponent("out-\(w)")
            var b = DatasetBuildOptions(outputDirectory: dst, shardCount: 1)
            b.annotationFiles = [(src as NSString).appendingPathComponent("train.json")]
            b.imageRoot = src
            b.policy = ImagePolicy(shorterSide: imageSize)
            b.workers = w
            b.showProgress = false
            let report = try DatasetBuilder(options: b, log: { _ in }).build()
            let rate = report.imagesPerSecond
            results.append(["workers": w, "images_per_second": rate, "records": report.totalRecords])
            if !json { print(String(format: "  workers %d: %7.1f images/s (%d records)", w, rate, report.totalRecords)) }
            try? FileManager.default.removeItem(atPath: dst)
        }
        if json {
            let obj: [String: Any] = ["images": images, "source_size": sourceSize, "image_size": imageSize,
                                      "cores": ProcessInfo.processInfo.activeProcessorCount, "results": results]
            let data = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        }
    }
}
