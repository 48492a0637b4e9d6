import ArgumentParser
import ELIPModel
import ELIPTensor
import Foundation
import Safetensors

struct CheckStepCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-step",
        abstract: "Replay one step (or the checkpoint loading) of a reference case of the official code and compare.",
        discussion: """
        CASE_DIR is laid out like shared/reference/<model>-tiny; the model is recognised from its \
        files (ALBEF: Pretrain.yaml, config_bert.json, weights.safetensors, batch.safetensors) or \
        named with --model. The step runs with dropout off and with the batch's recorded draws \
        (MLM masks, ITM negatives, alpha). Outputs: loss_NAME, the model's named tensors (ALBEF: \
        image_embeds, image_embeds_m), kept_index.stageN, state after the step (queues, pointer), \
        after.* momentum weights, grad.* for every trainable parameter. With expected.safetensors in \
        CASE_DIR, prints the worst error per group (relative Frobenius |a - b| / max(|b|, floor), or \
        absolute where the case says) and exits non-zero when a tolerance is exceeded.

        Task cases: albef-ve-* (VE.yaml) replays one SNLI-VE fine-tuning step (loss, prediction, \
        prediction_m, grad.*, after.*) and the evaluation on the batch (eval.prediction, eval.acc); \
        attention key-bias gradients, zero in exact arithmetic, are reported as their own group \
        (norm floor 1e-5). albef-retrieval-* (Retrieval.yaml) replays one retrieval fine-tuning \
        step with the recorded ITM negatives (loss_ita, loss_itm, image_feat, text_feat, \
        itm_logits, queues, idx_queue and queue_ptr after the enqueue, grad.*, after.*; key-bias \
        floor 1e-4) and the evaluation on the case's split (eval.image_embed/text_embed, \
        eval.sims_matrix, eval.score_i2t/t2i from the ITC top k_test re-ranked by ITM, R@1/5/10); \
        queues, sims and scores are compared 1e-4 absolute, R@K exactly. \
        albef-vqa-* (VQA.yaml) replays one VQA step (loss, answer_loss, grad.*, \
        after.*) and rank_answer on the eval.* inputs (eval.prob_first_token, eval.answer_loss, \
        eval.topk_ids compared exactly, eval.topk_probs 1e-4 absolute), and compares the best \
        answers with eval_result.json when the case has one. \
        albef-nlvr-* (NLVR.yaml) replays one NLVR2 step (image = the left images then the right \
        ones; loss, prediction, prediction_m, grad.* with the shared cross-attention key/value \
        once under the even layer, after.*; key-bias floor 1e-5) and the evaluation on the batch \
        (eval.prediction; eval.acc exactly).

        A checkpoint-loading case (albef-load-*: load_args.json and load.safetensors) runs the \
        official task scripts' loading instead: interpolate_pos_embed on every interp.<g0>to<g1>.in \
        and the position tables each task model holds after loading (<script>.visual_encoder[_m].pos_embed), \
        compared with load.safetensors (1e-5 absolute), and the key maps of each keymap.<script>.json \
        re-derived from their key lists.
        """
    )

    @Argument(help: "Reference case directory.")
    var caseDirectory: String

    @Option(help: "The model of the case (default: recognised from its files).")
    var model: String?

    @Option(help: "Write the outputs to this safetensors file.")
    var out: String?

    @Option(help: "Threads for BLAS and the engine (default: ELIP_THREADS or all cores).")
    var threads: Int?

    func run() throws {
        try configureThreads(threads)
        try OutputGuard.check(out, filesIn: caseDirectory, what: "a file of the reference case:")
        let output: ReferenceStep.Output
        do { output = try ReferenceStep.run(caseDirectory: caseDirectory, model: model) } catch let e as ModelRegistryError {
            throw ValidationError(e.description)
        }
        if !output.lossNames.isEmpty {
            print(output.lossNames.map { String(format: "%@ %.6f", ReferenceStep.lossOutputName($0), output.floats[ReferenceStep.lossOutputName($0)]!.values[0]) }.joined(separator: "  "))
        }
        let expectedPath = ReferenceStep.expectedPath(caseDirectory: caseDirectory)
        var expectedNames: Set<String>? = nil
        var failed = false
        if FileManager.default.fileExists(atPath: expectedPath) {
            let expected = try SafetensorsFile(path: expectedPath)
            expectedNames = Set(expected.names)
            let results = try ReferenceStep.compare(output, expected: expected)
            func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
            print("\(pad("group", 22)) compared      worst error  tolerance  worst tensor")
            for r in results {
                let line = pad(r.group, 22) + String(format: " %8d  %16.3e  %9.0e  ", r.compared, r.worstError, r.tolerance)
                print(line + r.worstName + (r.passed ? "" : "   <-- FAIL"))
                failed = failed || !r.passed
            }
        } else {
            print("no \((expectedPath as NSString).lastPathComponent) in \(caseDirectory): nothing to compare")
        }
        if let out {
            try ReferenceStep.write(output, to: out, onlyNames: output.writesEveryOutput ? nil : expectedNames)
            print("wrote \(out)")
        }
        if failed { throw ExitCode(1) }
    }
}
