import ArgumentParser
import ELIPModel
import ELIPTrain
import ELIPTensor
import Foundation
import Safetensors
import TorchCheckpoint

struct ImportWeightsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import-weights",
        abstract: "Build an initial checkpoint from pretrained parts: ALBEF/BLIP from a DeiT/timm ViT and a HuggingFace BERT, METER from OpenAI CLIP and HuggingFace RoBERTa (safetensors or PyTorch .pth/.bin).",
        discussion: """
        As ALBEF does: the ViT comes from --vit (timm names: patch_embed.proj.weight, cls_token, pos_embed, \
        blocks.N.*, norm.*; the position grid is resized bicubically when the checkpoint's resolution \
        differs from image_res), the text encoder and MLM head from --bert (HuggingFace names, with or \
        without the 'bert.' prefix, legacy LayerNorm gamma/beta accepted). Cross-attention layers, \
        projections and the ITM head start random (--seed); the momentum model is a copy; the queues \
        are random unit vectors. The output is a state_dict in safetensors. \
        METER (model: meter) takes --clip (OpenAI CLIP names visual.*; the last block and visual.proj \
        are not used, the position grid is resized bicubically) and --roberta (HuggingFace names, with \
        or without 'roberta.'); the co-attention layers, poolers and heads start random.

        Both inputs may be safetensors or PyTorch checkpoints (torch.save .pth/.bin, e.g. timm's \
        deit_base_patch16_224-b5f2ef4d.pth and HuggingFace's pytorch_model.bin), read as \
        convert-checkpoint does (state dict from 'model', 'state_dict' or the top level). Tensors of \
        an input that no parameter takes (a classifier head, BERT's pooler and NSP head) are listed \
        as unexpected_keys; --strict makes them an error. Tensors whose shape differs from the \
        parameter's are all named in one error and nothing is written (PyTorch's load_state_dict \
        raises on a size mismatch even with strict=False); only the ViT position grid is resized.
        """
    )

    @Option(help: "Pretrain.yaml (ALBEF keys; its bert_config names the BERT shape).")
    var config: String
    @Option(help: "DeiT/timm ViT weights (.safetensors, or .pth/.bin from torch.save; ALBEF, BLIP).")
    var vit: String?
    @Option(help: "HuggingFace BERT weights (.safetensors, or pytorch_model.bin; ALBEF, BLIP).")
    var bert: String?
    @Option(help: "OpenAI CLIP weights (.safetensors or .pth/.bin, names visual.*; METER).")
    var clip: String?
    @Option(help: "HuggingFace RoBERTa weights (.safetensors or pytorch_model.bin; METER).")
    var roberta: String?
    @Option(help: "Output checkpoint (.safetensors).")
    var out: String
    @Option(help: "Seed for the randomly initialised parts.")
    var seed: UInt64 = 0
    @Flag(help: "Refuse inputs holding tensors that map to no parameter (unexpected_keys) instead of listing them.")
    var strict = false

    func run() throws {
        let given = ["vit": vit, "bert": bert, "clip": clip, "roberta": roberta].compactMapValues { $0 }
        try OutputGuard.check(out, inputs: [OutputGuard.Input("--config", config)] + given.keys.sorted().map { OutputGuard.Input("--\($0)", given[$0]!) })
        let cfg = try TrainingConfig.load(config).model
        let model = try cfg.makeModel()
        guard Set(model.pretrainedSources) == Set(given.keys) else {
            throw ValidationError("\(cfg.kind) models start from \(model.pretrainedSources.map { "--\($0)" }.joined(separator: " and ")) files")
        }
        var files: [String: SafetensorsFile] = [:]
        for (source, path) in given {
            let (file, note) = try WeightFile.open(path)
            files[source] = file
            if let note { print("read \(note)") }
        }
        // What an input holds that no parameter takes, as load_state_dict(strict=False) reports it.
        let parameterNames = model.stateLayout.arenas.flatMap { a in a.arena.entries.flatMap { a.arena.names(of: $0.name) } }
            + model.stateLayout.constants.map(\.name)
        var unexpected: [String] = []
        for (source, file) in files.sorted(by: { $0.key < $1.key }) {
            let names = file.names.filter { !Self.isTaken($0, from: source, by: parameterNames) }
            if !names.isEmpty {
                unexpected.append("--\(source) \(given[source]!): \(names.count) unexpected_keys: \(names.prefix(10).joined(separator: ", "))\(names.count > 10 ? ", ..." : "")")
            }
        }
        if strict && !unexpected.isEmpty {
            throw ValidationError("--strict: \(unexpected.joined(separator: "; ")); nothing written")
        }
        let summary = try model.importPretrained(files, seed: seed)
        do { try StateDict.requireFinite(model.stateLayout, source: "the imported weights") } catch {
            throw ValidationError("\(error) (from \(given.keys.sorted().map { "--\($0) \(given[$0]!)" }.joined(separator: " or "))); nothing written")
        }
        var writer = SafetensorsWriter(metadata: ["format": "\(cfg.kind)-state-dict", "producer": "elip import-weights"])
        try StateDict.add(model.stateLayout, to: &writer)
        try writer.write(to: out)
        summary.forEach { print($0) }
        unexpected.forEach { print("not used: \($0)") }
        print("wrote \(out) (\(model.parameters.parameterCount) trainable parameters)")
    }

    /// Whether a parameter takes `name` of a --vit (timm names under visual_encoder.) or --bert
    /// (HuggingFace names, `bert.` optional, LayerNorm gamma/beta = weight/bias, `cls.` = the MLM head)
    /// input: some parameter of that part ends with the normalised name at a dot boundary.
    static func isTaken(_ name: String, from source: String, by parameters: [String]) -> Bool {
        if source == "vit" { return parameters.contains("visual_encoder." + name) }
        // METER: OpenAI CLIP's visual.* sit under vit_model. (its text tower, last block and
        // projection are unused); HuggingFace RoBERTa's roberta.* under text_transformer.
        if source == "clip" { return parameters.contains("vit_model." + name) }
        if source == "roberta" {
            return parameters.contains("text_transformer." + (name.hasPrefix("roberta.") ? String(name.dropFirst(8)) : name))
        }
        var n = name.hasPrefix("bert.") ? String(name.dropFirst(5)) : name
        if n.hasSuffix("LayerNorm.gamma") { n = String(n.dropLast(5)) + "weight" }
        if n.hasSuffix("LayerNorm.beta") { n = String(n.dropLast(4)) + "bias" }
        return parameters.contains { $0.hasPrefix("text_") && $0.hasSuffix("." + n) }
    }
}
