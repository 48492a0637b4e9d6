import ArgumentParser
import ELIPModel
import ELIPTrain
import ELIPTensor
import Foundation
import Safetensors

struct ImportWeightsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import-weights",
        abstract: "Build an initial checkpoint from pretrained parts: ALBEF/BLIP from a DeiT/timm ViT and a HuggingFace BERT, METER from OpenAI CLIP and HuggingFace RoBERTa (safetensors).",
        discussion: """
        As ALBEF does: the ViT comes from --vit (timm names: patch_embed.proj.weight, cls_token, pos_embed,
        blocks.N.*, norm.*; the position grid is resized bicubically when the checkpoint's resolution
        differs from image_res), the text encoder and MLM head from --bert (HuggingFace names, with or
        without the 'bert.' prefix, legacy LayerNorm gamma/beta accepted). Cross-attention layers,
        projections and the ITM head start random (--seed); the momentum model is a copy; the queues
        are random unit vectors. The output is an ALBEF state_dict in safetensors.
        METER (model: meter) takes --clip (OpenAI CLIP names visual.*; the last block and visual.proj
        are not used, the position grid is resized bicubically) and --roberta (HuggingFace names, with
        or without 'roberta.'); the co-attention layers, poolers and heads start random.
        """
    )

    @Option(help: "Pretrain.yaml (ALBEF keys; its bert_config names the BERT shape).")
    var config: String
    @Option(help: "DeiT/timm ViT weights (.safetensors; ALBEF, BLIP).")
    var vit: String?
    @Option(help: "HuggingFace BERT weights (.safetensors; ALBEF, BLIP).")
    var bert: String?
    @Option(help: "OpenAI CLIP weights (.safetensors, names visual.*; METER).")
    var clip: String?
    @Option(help: "HuggingFace RoBERTa weights (.safetensors; METER).")
    var roberta: String?
    @Option(help: "Output checkpoint (.safetensors).")
    var out: String
    @Option(help: "Seed for the randomly initialised parts.")
    var seed: UInt64 = 0

    func run() throws {
        let given = ["vit": vit, "bert": bert, "clip": clip, "roberta": roberta].compactMapValues { $0 }
        try OutputGuard.check(out, inputs: [OutputGuard.Input("--config", config)] + given.keys.sorted().map { OutputGuard.Input("--\($0)", given[$0]!) })
        let cfg = try TrainingConfig.load(config).model
        let model = try cfg.makeModel()
        guard Set(model.pretrainedSources) == Set(given.keys) else {
            throw ValidationError("\(cfg.kind) models start from \(model.pretrainedSources.map { "--\($0)" }.joined(separator: " and ")) files")
        }
        let summary = try model.importPretrained(given.mapValues { try SafetensorsFile(path: $0) }, seed: seed)
        do { try StateDict.requireFinite(model.stateLayout, source: "the imported weights") } catch {
            throw ValidationError("\(error) (from \(given.keys.sorted().map { "--\($0) \(given[$0]!)" }.joined(separator: " or "))); nothing written")
        }
        var writer = SafetensorsWriter(metadata: ["format": "\(cfg.kind)-state-dict", "producer": "elip import-weights"])
        try StateDict.add(model.stateLayout, to: &writer)
        try writer.write(to: out)
        summary.forEach { print($0) }
        print("wrote \(out) (\(model.parameters.parameterCount) trainable parameters)")
    }
}
