import ArgumentParser
import ELIPEval
import ELIPModel
import Foundation
import Safetensors

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a checkpoint's weights for the official PyTorch code (safetensors with the official state_dict names).",
        discussion: """
        --checkpoint is a run folder (its newest valid checkpoint), a checkpoint folder, or a state dict \
        (.safetensors, or a PyTorch .pth/.bin) with --config. The model is built from the config and \
        loaded (names, shapes and finiteness checked), then written with every state_dict entry the \
        official model class has: online and momentum weights, queues, queue_ptr, temp and the \
        position_ids buffers, under the official names (tied weights written under both names, as \
        state_dict() lists them). In PyTorch:

            from safetensors.torch import load_file
            model.load_state_dict(load_file("OUT.safetensors"))       # strict: no missing/unexpected keys

        The metadata says format=pt (what safetensors.torch expects).
        """
    )

    @Option(help: "Run folder, checkpoint folder, or state dict (.safetensors/.pth/.bin; needs --config).")
    var checkpoint: String
    @Option(help: "Config the model was trained with (default: the one recorded in the checkpoint folder).")
    var config: String?
    @Option(help: "Output format; only pytorch-names (safetensors named as the official state_dict) for now.")
    var format: String = "pytorch-names"
    @Option(help: "Output file (.safetensors).")
    var out: String

    func validate() throws {
        guard format == "pytorch-names" else { throw ValidationError("--format \(format): only pytorch-names is supported") }
    }

    func run() throws {
        let ckpt = try EvalCheckpoint.locate(checkpoint, configPath: config) { fputs("warning: \($0)\n", stderr) }
        try OutputGuard.check(out, inputs: OutputGuard.inputs(of: ckpt, config: config, vocab: nil))
        let model = try ckpt.loadModel()
        var writer = SafetensorsWriter(metadata: ["format": "pt", "producer": "elip export", "model": ckpt.config.kind])
        try StateDict.add(model.stateLayout, to: &writer)
        try writer.write(to: out)
        print("wrote \(out): \(writer.count) tensors of the \(ckpt.config.kind) state_dict from \(ckpt.weightsPath)")
    }
}
