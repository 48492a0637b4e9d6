import ArgumentParser
import ELIPImage
import ELIPShards
import Foundation

struct InspectDatasetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect-dataset",
        abstract: "Summarise a built dataset (counts, sizes, captions, sources) and write a contact sheet; --verify checks everything.",
        discussion: """
        Without --verify: the manifest's counts and statistics, and a check that every shard is present \
        with its recorded size. --verify also checks each shard's data.mdb checksum and record count \
        against the manifest and every record (sequential keys, CRC, JPEG decodes, image size within \
        the policy, captions), and recomputes the caption statistics. Exit status 1 lists what is wrong.
        """
    )

    @Argument(help: ArgumentHelp("Dataset folder (with manifest.json).", valueName: "dir"))
    var directory: String
    @Flag(help: "Check every shard and record.")
    var verify = false
    @Option(help: "Number of decoded samples in the contact sheet (0: none).")
    var show: Int = 16
    @Option(help: ArgumentHelp("Contact sheet PNG.", valueName: "file"))
    var out: String = "contact-sheet.png"
    @Option(help: "Threads for --verify (default: all cores).")
    var workers: Int?

    func validate() throws {
        if show < 0 { throw ValidationError("--show must be >= 0") }
        if let w = workers, w < 1 { throw ValidationError("--workers must be at least 1") }
    }

    func run() throws {
        if show > 0 { try OutputGuard.check(out, filesIn: directory, what: "a file of the dataset:") }
        let result: DatasetInspection
        do {
            result = try DatasetInspector.inspect(directory: directory, verify: verify,
                                                  workers: workers ?? ProcessInfo.processInfo.activeProcessorCount,
                                                  showProgress: verify)
        } catch let e as DatasetError {
            throw DatasetCommandError("inspect-dataset: \(e)")
        }
        let m = result.manifest
        var lines: [String] = []
        lines.append("dataset \(directory): \(m.format) v\(m.formatVersion), built \(m.created) by \(m.builder) \(m.builderVersion)")
        let bytes = m.shards.reduce(0) { $0 + $1.bytes }
        lines.append("records: \(m.totalRecords) in \(m.shardCount) shards, \(Self.size(bytes)) "
                     + "(shard records min \(m.shards.map(\.records).min() ?? 0), max \(m.shards.map(\.records).max() ?? 0))")
        if m.shardCount <= 32 {
            for s in result.shards {
                let disk = s.bytesOnDisk == nil ? " (MISSING)" : ""
                lines.append("  \(s.name): \(s.records) records, \(Self.size(s.bytes))\(disk)")
            }
        }
        let p = m.imagePolicy
        lines.append("images: shorter side <= \(p.shorterSide) px (never upscaled), JPEG quality \(p.quality), "
                     + "EXIF orientation \(p.exifOrientationApplied ? "applied" : "not applied"); "
                     + "\(m.imageStats.resized) resized, \(m.imageStats.keptSize) kept at their size, "
                     + String(format: "%.1f KiB per image", m.totalRecords == 0 ? 0 : Double(m.imageStats.jpegBytes) / Double(m.totalRecords) / 1024))
        let c = result.recomputedCaptionStats ?? m.captionStats
        lines.append(String(format: "captions: %d, per image mean %.2f (min %d, max %d); words per caption mean %.1f (min %d, max %d); %d over 30 words",
                            c.captions, c.captionsPerImage, c.minCaptionsPerImage, c.maxCaptionsPerImage,
                            c.wordsPerCaption, c.minWords, c.maxWords, c.over30Words))
        lines.append("sources:")
        for s in m.sources {
            var line = "  \(s.path) [\(s.kind)]: \(s.entries) entries, \(s.records) records, \(s.rejected) rejected"
            if s.mergedEntries > 0 { line += ", \(s.mergedEntries) merged into earlier entries" }
            if let e = s.error { line += " - FAILED: \(e)" }
            lines.append(line)
        }
        let reasons = m.rejects.byReason.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        lines.append(String(format: "rejects: %d (%.2f%%)%@", m.rejects.total, 100 * m.rejects.fraction, reasons.isEmpty ? "" : ": " + reasons))
        for w in result.warnings { lines.append("warning: \(w)") }
        // Paths, captions and messages come from the data: never let them drive the terminal.
        print(lines.map(TerminalText.escaped).joined(separator: "\n"))

        if show > 0 && m.totalRecords > 0 && result.isValid {
            do {
                let samples = try DatasetInspector.samples(directory: directory, manifest: m, count: show)
                let sheet = try DatasetInspector.contactSheet(samples)
                try PNG.write(sheet, toFile: out)
                print("contact sheet: \(out) (\(samples.count) samples, row-major):")
                for (i, r) in samples.enumerated() {
                    print(TerminalText.escaped("  \(i + 1). \(r.sourceID): \(r.captions.first ?? "")"))
                }
            } catch {
                FileHandle.standardError.write(Data(TerminalText.escaped("warning: no contact sheet: \(error)").utf8 + [0x0A]))
            }
        }

        if result.verified {
            if result.isValid {
                print("verify: OK (\(result.recordsChecked) records checked in \(m.shardCount) shards)")
            } else {
                print("verify: FAILED, \(result.problemCount) problem(s):")
                for p in result.problems { print(TerminalText.escaped("  - \(p)")) }
                if result.unlistedProblems > 0 { print("  ... and \(result.unlistedProblems) more") }
                throw ExitCode(1)
            }
        } else if !result.isValid {
            print("problems:")
            for p in result.problems { print(TerminalText.escaped("  - \(p)")) }
            throw ExitCode(1)
        }
    }

    static func size(_ b: Int) -> String {
        let d = Double(b)
        if d >= Double(1 << 30) { return String(format: "%.2f GiB", d / Double(1 << 30)) }
        if d >= Double(1 << 20) { return String(format: "%.1f MiB", d / Double(1 << 20)) }
        return String(format: "%.1f KiB", d / 1024)
    }
}
