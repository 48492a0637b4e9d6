import ArgumentParser
import ELIPImage
import ELIPShards
import ELIPText
import Foundation

struct BenchLoaderCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loader",
        abstract: "Shard loader throughput: images/s per thread (read + CRC + JPEG decode + ALBEF augmentation + normalise).",
        discussion: """
        Writes --images synthetic scenes as --source-size px JPEGs (quality 95) into --shards LMDB shards in a \
        temporary folder, reads every record once (warm page cache), then times one epoch of \
        ShardLoader batches (--batch per batch, --size px output, RandomResizedCrop + flip + RandAugment) \
        for each --threads value, after one warm-up batch. Also times the single-thread stages.
        """
    )

    @Option(help: "Records in the synthetic shards.")
    var images: Int = 512
    @Option(help: ArgumentHelp("Side of the stored JPEGs.", valueName: "px"))
    var sourceSize: Int = 384
    @Option(help: ArgumentHelp("Output image side.", valueName: "px"))
    var size: Int = 256
    @Option(help: "Shards to write.")
    var shards: Int = 2
    @Option(help: "Batch size.")
    var batch: Int = 32
    @Option(parsing: .upToNextOption, help: "Loader thread counts to measure.")
    var threads: [Int] = [1, 2]
    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    func validate() throws {
        if images < 1 || shards < 1 || batch < 1 || size < 1 || sourceSize < 1 {
            throw ValidationError("--images, --shards, --batch, --size and --source-size must be positive")
        }
        if images < 2 * batch { throw ValidationError("--images must be at least two batches") }
        if threads.isEmpty || threads.contains(where: { $0 < 1 }) { throw ValidationError("--threads values must be >= 1") }
    }

    /// A tokenizer over the synthetic captions' words (the bench needs no vocabulary file).
    static func tokenizer(for captions: [String]) throws -> BertTokenizer {
        var words = Set<String>()
        for c in captions { for w in preCaption(c).split(separator: " ") { words.insert(String(w)) } }
        return try BertTokenizer(vocabulary: Vocabulary(tokens: ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words.sorted(),
                                                        source: "bench"))
    }

    func run() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("elip-bench-loader-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)

        // 1. Shards.
        var allCaptions: [String] = []
        var entries: [String] = []
        var bytes = 0
        let encoder = try JPEGEncoder()
        for s in 0..<shards {
            let name = String(format: "shard-%05d-of-%05d", s, shards)
            let keys = Array(stride(from: s, to: images, by: shards))
            let env = try LMDBEnvironment(path: (root as NSString).appendingPathComponent(name), readOnly: false,
                                          mapSize: 1 << 30, noSync: true)
            try env.writeWithGrowth { txn in
                for (k, i) in keys.enumerated() {
                    let scene = SyntheticScenes.scene(index: i, seed: 1, size: sourceSize)
                    let img = try RGBImage(width: sourceSize, height: sourceSize, pixels: scene.pixels)
                    let jpeg = try encoder.encode(img, quality: 95)
                    bytes += jpeg.count
                    allCaptions += scene.captions
                    try txn.put(UInt64(k), DatasetRecord(captions: scene.captions, sourceID: "synthetic:\(i)", jpeg: jpeg).encoded())
                }
            }
            try env.sync()
            entries.append("{\"name\": \"\(name)\", \"records\": \(keys.count)}")
        }
        try "{\"shards\": [\(entries.joined(separator: ", "))]}".write(toFile: (root as NSString).appendingPathComponent("manifest.json"),
                                                                        atomically: true, encoding: .utf8)
        let tokenizer = try Self.tokenizer(for: allCaptions)

        // 2. Warm the page cache: read every value once.
        var warm = 0
        for s in 0..<shards {
            let env = try LMDBEnvironment(path: (root as NSString).appendingPathComponent(String(format: "shard-%05d-of-%05d", s, shards)))
            try env.read { txn in try txn.forEach { _, v in warm &+= v.count; return true } }
        }

        // 3. Single-thread stage times (median over the records).
        let stages = try stageTimes(root: root)

        // 4. Loader throughput per thread count.
        if !json {
            print(String(format: "loader: %d records of %d px (mean JPEG %.1f KB, %d shards, warm cache %d MB) -> %d px, batch %d, %d cores",
                         images, sourceSize, Double(bytes) / Double(images) / 1024, shards, warm >> 20, size, batch,
                         ProcessInfo.processInfo.activeProcessorCount))
            print(String(format: "  single-thread stages per image: read+CRC %.2f ms, JPEG decode %.2f ms, crop+resize %.2f ms, flip+RandAugment %.2f ms, normalise %.2f ms",
                         stages.read * 1e3, stages.decode * 1e3, stages.resize * 1e3, stages.augment * 1e3, stages.normalise * 1e3))
        }
        var results: [[String: Any]] = []
        for t in threads {
            var o = ShardLoader.Options.pretrain(imageSize: size)
            o.workerThreads = t
            o.prefetchDepth = 2
            let loader = try ShardLoader(directory: root, rank: 0, worldSize: 1, batchSize: batch, seed: 1,
                                         tokenizer: tokenizer, options: o)
            _ = try loader.batch(epoch: 0, index: 0)        // warm-up (threads started, caches)
            let n = loader.batchesPerEpoch - 1
            let t0 = Date()
            for i in 1...n { _ = try loader.batch(epoch: 0, index: i) }
            let seconds = Date().timeIntervalSince(t0)
            loader.close()
            let rate = Double(n * batch) / seconds
            results.append(["threads": t, "images_per_second": rate, "images_per_second_per_thread": rate / Double(t),
                            "batches": n])
            if !json {
                print(String(format: "  threads %d: %7.1f images/s (%6.1f per thread, %d batches of %d)", t, rate, rate / Double(t), n, batch))
            }
        }
        if json {
            let obj: [String: Any] = [
                "images": images, "source_size": sourceSize, "size": size, "batch": batch, "shards": shards,
                "cores": ProcessInfo.processInfo.activeProcessorCount,
                "stage_seconds": ["read": stages.read, "decode": stages.decode, "resize": stages.resize,
                                  "augment": stages.augment, "normalise": stages.normalise],
                "results": results,
            ]
            let data = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        }
    }

    struct Stages { var read = 0.0, decode = 0.0, resize = 0.0, augment = 0.0, normalise = 0.0 }

    /// Median per-image time of each stage on the calling thread.
    func stageTimes(root: String) throws -> Stages {
        let env = try LMDBEnvironment(path: (root as NSString).appendingPathComponent(String(format: "shard-%05d-of-%05d", 0, shards)))
        let count = try env.count()
        let decoder = try JPEGDecoder()
        let transform = PretrainTransform(imageSize: size)
        var r: [Double] = [], d: [Double] = [], z: [Double] = [], a: [Double] = [], nz: [Double] = []
        let out = UnsafeMutablePointer<Float>.allocate(capacity: 3 * size * size)
        defer { out.deallocate() }
        for k in 0..<min(count, 128) {
            var t = Date()
            let rec = try env.read { txn in try txn.withValue(forKey: LMDBKey.uint64(UInt64(k))) { try DatasetRecord.decode($0) } }
            guard let rec else { continue }
            r.append(Date().timeIntervalSince(t))
            t = Date()
            let img = try decoder.decode(rec.jpeg)
            d.append(Date().timeIntervalSince(t))
            var g = LoaderRandom(seed: 1, stream: .sample, 0, UInt64(k))
            t = Date()
            let box = transform.crop.sampleBox(width: img.width, height: img.height, rng: &g)
            var small = try img.resized(crop: CropBox(x: box.x, y: box.y, width: box.width, height: box.height),
                                        width: size, height: size, filter: .bicubic, order: transform.resampleOrder)
            z.append(Date().timeIntervalSince(t))
            t = Date()
            if g.uniform() < 0.5 { small = ImageOps.flipHorizontal(small) }
            small = RandAugment().apply(small, rng: &g)
            a.append(Date().timeIntervalSince(t))
            t = Date()
            PixelNormalization.write(small, to: out)
            nz.append(Date().timeIntervalSince(t))
        }
        func median(_ v: [Double]) -> Double { v.isEmpty ? 0 : v.sorted()[v.count / 2] }
        // RandAugment applies an op to about half the images: report the mean, not the median.
        let meanAugment = a.isEmpty ? 0 : a.reduce(0, +) / Double(a.count)
        return Stages(read: median(r), decode: median(d), resize: median(z), augment: meanAugment, normalise: median(nz))
    }
}
