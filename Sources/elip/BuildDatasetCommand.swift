import ArgumentParser
import ELIPDistributed
import ELIPShards
import Foundation

struct BuildDatasetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "build-dataset",
        abstract: "Build LMDB shards (manifest.json, rejects.jsonl) from ALBEF annotation JSON and/or WebDataset tar shards.",
        discussion: """
        Inputs: ALBEF annotation files (a JSON list of {"image": path, "caption": str or [str]}; relative \
        paths are resolved against --image-root and must stay inside it) and img2dataset/WebDataset tar \
        shards (NNNNN.jpg + NNNNN.txt members; a directory means its *.tar files, a glob is expanded). \
        Entries naming the same image are merged into one record with all their distinct captions.

        Image formats: JPEG, PNG (every bit depth, grey, palette, alpha), GIF (first frame), still WebP \
        and BMP (uncompressed 1/4/8/24/32-bit) are decoded; alpha is dropped as PIL's convert('RGB') \
        in ALBEF's loader drops it. --only-jpeg rejects everything but JPEG.

        Output: DIR/shard-XXXXX-of-NNNNN/ (LMDB, keys 0.. big-endian UInt64, values = DatasetRecord: \
        every caption, a source id and the JPEG re-encoded with the shorter side at most --image-size, \
        EXIF orientation applied, RGB), DIR/manifest.json and DIR/rejects.jsonl. Item i of the input \
        order goes to shard i % N.

        Bad inputs (missing/empty/truncated/non-image files, decompression bombs, unsupported formats, \
        empty or non-UTF-8 captions, paths escaping the image root, duplicates, malformed JSON) are \
        skipped and listed in rejects.jsonl by reason. An unreadable input file (missing, empty, malformed \
        JSON, a tar damaged near its start) is a lost source: the entries it held (counted, or estimated \
        from a tar's unread bytes) count as rejected, and the build fails unless --allow-lost-sources. \
        The exit status is non-zero when the rejected fraction exceeds --max-reject-fraction, a source \
        was lost, or nothing was built.

        Re-running the same command resumes: finished shards are verified (record count, checksum, \
        inputs, including each image's size and modification time) and kept; unfinished ones are \
        rebuilt. All arguments are checked before anything changes; a re-run whose images mostly do not \
        exist (e.g. a mistyped --image-root) leaves a finished dataset untouched. One build per output \
        folder at a time (DIR/.elip.lock).

        Distributed: `mpirun -np K elip build-dataset ...` - rank r builds the shards s with s % K == r.
        """
    )

    @Option(name: .customLong("annotations"), parsing: .upToNextOption,
            help: ArgumentHelp("ALBEF annotation JSON files.", valueName: "file"))
    var annotations: [String] = []
    @Option(name: .customLong("tar-shards"), parsing: .upToNextOption,
            help: ArgumentHelp("Tar shards: files, directories or glob patterns.", valueName: "glob-or-dir"))
    var tarShards: [String] = []
    @Option(help: ArgumentHelp("Folder that relative image paths are resolved against.", valueName: "dir"))
    var imageRoot: String?
    @Option(help: ArgumentHelp("Output folder.", valueName: "dir"))
    var out: String
    @Option(help: "Number of shards.")
    var shards: Int
    @Option(help: ArgumentHelp("Shorter side of the stored images (never upscaled).", valueName: "px"))
    var imageSize: Int = 384
    @Option(help: "JPEG quality of the stored images.")
    var quality: Int = 95
    @Option(help: "Decode/encode threads per rank (default: cores / ranks on this node).")
    var workers: Int?
    @Option(help: "Annotation format: captions (pre-training: {image, caption}); ve (SNLI-VE ve_train.json: {image: Flickr30K id without .jpg, sentence, label: entailment|neutral|contradiction}; labels 2/1/0, a missing or unknown label is rejected as bad_label); retrieval (coco_train.json / flickr30k_train.json: {image, caption, image_id}, one entry per caption; label = the image_id's index in order of first appearance, a missing image_id is rejected as bad_annotation); vqa (vqa_train.json / vg_qa.json: {question_id, question, answer: [human answers] (dataset vqa) or one string (dataset vg), image, dataset}; one record per image holding all its questions with vqa_dataset.py's answer weights; a question without answers is rejected as bad_label, a repeated question_id as duplicate); nlvr2 (nlvr_train.json: {images: [left, right], sentence, label: True|False}; each image stored once as a record without captions, the pairs as NLVRPairRecords in DIR/pairs/ referencing them; a pair whose image is not stored is rejected as missing_image). ve, retrieval and vqa store each image once, in one record holding all its entries' sentences/captions/questions with their labels/answers; fine-tuning reads every entry as one sample.")
    var format: String = "captions"
    @Flag(help: "Accept absolute image paths in annotation files.")
    var allowAbsolutePaths = false
    @Option(help: "Fail (exit 1) when rejected / (records + rejected) exceeds this.")
    var maxRejectFraction: Double = 0.05
    @Flag(help: "Build even when a whole input source (annotation file or tar shard) cannot be read (default: exit 1).")
    var allowLostSources = false
    @Option(help: "Reject images whose header declares more pixels than this (decompression bombs).")
    var maxPixels: Int = 100_000_000
    @Flag(name: .customLong("only-jpeg"), help: "Decode JPEG inputs only; reject PNG, GIF, WebP and BMP as unsupported (default: all are decoded, as ALBEF's PIL loader would, and stored as JPEG).")
    var onlyJPEG = false
    @Option(help: ArgumentHelp("Records per LMDB write transaction.", visibility: .hidden))
    var batch: Int = 512
    @Flag(help: "No progress output.")
    var quiet = false

    func validate() throws {
        if annotations.isEmpty && tarShards.isEmpty { throw ValidationError("give --annotations and/or --tar-shards") }
        if !annotations.isEmpty && imageRoot == nil { throw ValidationError("--annotations needs --image-root") }
        if shards < 1 { throw ValidationError("--shards must be at least 1") }
        if imageSize < 1 { throw ValidationError("--image-size must be positive") }
        if !(1...100).contains(quality) { throw ValidationError("--quality must be 1...100") }
        if let w = workers, w < 1 { throw ValidationError("--workers must be at least 1") }
        if !(0...1).contains(maxRejectFraction) { throw ValidationError("--max-reject-fraction must be within 0...1") }
        if maxPixels < 1 { throw ValidationError("--max-pixels must be positive") }
        if DatasetPlan.AnnotationFormat(rawValue: format) == nil {
            throw ValidationError("--format must be one of \(DatasetPlan.AnnotationFormat.allCases.map(\.rawValue).joined(separator: ", ")), got '\(format)'")
        }
        if format != "captions" && !tarShards.isEmpty { throw ValidationError("--format \(format) reads --annotations only, not --tar-shards") }
    }

    func run() throws {
        let comm = try Communicator.world()
        var options = DatasetBuildOptions(outputDirectory: out, shardCount: shards)
        options.annotationFiles = annotations
        options.tarInputs = tarShards
        options.imageRoot = imageRoot
        options.policy = ImagePolicy(shorterSide: imageSize, quality: quality, maxPixels: maxPixels, onlyJPEG: onlyJPEG)
        options.workers = workers ?? Self.defaultWorkers()
        options.allowAbsolutePaths = allowAbsolutePaths
        options.format = DatasetPlan.AnnotationFormat(rawValue: format) ?? .captions
        options.maxRejectFraction = maxRejectFraction
        options.allowLostSources = allowLostSources
        options.batchSize = batch
        options.showProgress = !quiet
        let prefix = comm.size > 1 ? "[rank \(comm.rank)] " : ""
        let builder = DatasetBuilder(options: options, group: CommunicatorBuildGroup(comm)) { line in
            FileHandle.standardError.write(Data((prefix + line + "\n").utf8))
        }
        let report: DatasetBuildReport
        do { report = try builder.build() } catch let e as DatasetError {
            throw DatasetCommandError("build-dataset: \(e)")
        }
        if comm.isRoot { print(Self.summary(report, out: out)) }
        let failure = report.failure
        try comm.finalize()
        if let failure {
            if comm.isRoot { FileHandle.standardError.write(Data("build-dataset failed: \(failure)\n".utf8)) }
            throw ExitCode(1)
        }
    }

    static func summary(_ r: DatasetBuildReport, out: String) -> String {
        let m = r.manifest
        var lines: [String] = []
        lines.append(String(format: "built %d records in %d shards (this rank: %d built, %d kept) in %.1f s, %.1f images/s",
                            m.totalRecords, m.shardCount, r.builtShards.count, r.skippedShards.count, r.seconds, r.imagesPerSecond))
        let reasons = m.rejects.byReason.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        lines.append(String(format: "rejected %d (%.2f%% of %d inputs)%@", m.rejects.total, 100 * m.rejects.fraction,
                            m.totalRecords + m.rejects.total, reasons.isEmpty ? "" : ": " + reasons))
        for s in m.sources where s.error != nil { lines.append("failed source \(s.path): \(s.error ?? "")") }
        if let lost = m.rejects.lostEntries, lost > 0 {
            lines.append("lost: \(lost) entries in unreadable parts of sources (counted in the rejects above)")
        }
        let c = m.captionStats
        lines.append(String(format: "captions: %d (%.2f per image), %.1f words per caption", c.captions, c.captionsPerImage, c.wordsPerCaption))
        lines.append("wrote \((out as NSString).appendingPathComponent("manifest.json")) and \((out as NSString).appendingPathComponent("rejects.jsonl"))")
        return lines.joined(separator: "\n")
    }

    /// Cores divided by the ranks sharing this node (OpenMPI / MPICH / Slurm variables).
    static func defaultWorkers() -> Int {
        let env = ProcessInfo.processInfo.environment
        let local = ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"]
            .compactMap { env[$0].flatMap { Int($0) } }.first ?? 1
        return max(1, ProcessInfo.processInfo.activeProcessorCount / max(1, local))
    }
}

/// The build's view of the MPI communicator (ELIPShards does not depend on ELIPDistributed).
final class CommunicatorBuildGroup: DatasetBuildGroup {
    let comm: Communicator
    init(_ comm: Communicator) { self.comm = comm }
    var rank: Int { comm.rank }
    var size: Int { comm.size }
    func barrier() throws { try comm.barrier() }
    func broadcastFromRoot(_ value: String?) throws -> String? {
        // broadcastValue needs a value on root: "" stands for nil.
        let v: String = try comm.broadcastValue(comm.isRoot ? (value ?? "") : nil)
        return v.isEmpty ? nil : v
    }
}

/// A user-facing failure message (ArgumentParser prints "Error: <description>").
struct DatasetCommandError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
