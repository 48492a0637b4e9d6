import ArgumentParser
import ELIPEval
import Foundation

struct EvalCaptionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval-caption",
        abstract: "COCO caption evaluation (pycocoevalcap 1.2): BLEU-1..4 and CIDEr-D of a results file.",
        discussion: """
        Scores generated captions the way BLIP's coco_caption_eval does: every caption is tokenized as pycocoevalcap's PTBTokenizer does (lower case, punctuation dropped, `it's` -> `it 's`), then corpus BLEU-1..4 (option "closest") and CIDEr-D (document frequencies over this set's references) are computed, with per-image values. METEOR, ROUGE-L and SPICE are not computed.

        The evaluated images are the `images` of the annotation file; each must have exactly one result, and every result must be for one of them. Otherwise the official code stops with an AssertionError, and this command exits non-zero with the reason on one line.

        Examples:
          elip eval-caption --annotations coco_val_gt.json --results val_epoch0.json \\
              --out caption-metrics.json
        """
    )

    @Option(help: "COCO captions annotation file: {\"images\": [{\"id\"}], \"annotations\": [{\"image_id\", \"caption\"}]}.")
    var annotations: String
    @Option(help: "COCO results file: [{\"image_id\", \"caption\"}], one caption per image of the annotations.")
    var results: String
    @Option(help: """
        Write the metrics as JSON to this file (overwritten if it exists): Bleu_1..Bleu_4, CIDEr and per_image \
        {"<image_id>": {Bleu_1..Bleu_4, CIDEr}}.
        """)
    var out: String?

    func run() throws {
        try OutputGuard.check(out, inputs: [OutputGuard.Input("--annotations", annotations), OutputGuard.Input("--results", results)])
        // A refused or unreadable input throws CaptionEvaluationError, printed as its one line.
        let metrics = try CaptionEvaluation.evaluate(annotationsFile: annotations, resultsFile: results)
        let scores = metrics.bleu.enumerated().map { String(format: "Bleu_%d %.4f", $0.offset + 1, $0.element) }
        print("eval-caption: \(metrics.perImage.count) images: " + scores.joined(separator: ", ")
              + String(format: ", CIDEr %.4f", metrics.cider))
        if let out {
            let json = try JSONSerialization.data(withJSONObject: metrics.jsonObject(), options: [.prettyPrinted, .sortedKeys])
            do { try json.write(to: URL(fileURLWithPath: out), options: .atomic) } catch {
                throw EvalCommandError("--out \(out): cannot write (\(error.localizedDescription))")
            }
            print("wrote \(out)")
        }
    }
}
