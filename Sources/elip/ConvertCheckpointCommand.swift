import ArgumentParser
import Foundation
import TorchCheckpoint

struct ConvertCheckpointCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert-checkpoint",
        abstract: "Convert a PyTorch checkpoint (.pth/.pt/.bin from torch.save) to safetensors, without PyTorch.",
        discussion: """
        Reads torch.save's zip format (PyTorch >= 1.6) and its legacy format with a restricted \
        unpickler: only dicts, lists, tuples, scalars, collections.OrderedDict, tensors \
        (torch._utils._rebuild_tensor_v2/_rebuild_parameter) and torch.*Storage types are accepted; \
        any other global (os.system, builtins.eval, a model class) is refused by name and nothing is \
        executed. The state dict is taken from the 'model' entry, else 'state_dict', else the top \
        level (--key chooses). Views (storage offsets, transposes) are written contiguous; tensors \
        sharing a storage (tied weights) each get their own copy; float16/bfloat16/float64 become \
        float32, integer and bool tensors keep their type. Other entries without tensors (epoch, \
        config) go into __metadata__ as JSON text; entries holding tensors outside the state dict \
        (optimizer state) are listed and not written.
        """
    )

    @Argument(help: "PyTorch checkpoint (torch.save output: .pth, .pt, .bin, .ckpt).")
    var input: String
    @Argument(help: "Output .safetensors file.")
    var output: String
    @Option(help: "Entry holding the state dict (a top-level key, or a dotted path such as checkpoint.model).")
    var key: String?

    func run() throws {
        try OutputGuard.check(output, option: "OUT", inputs: [OutputGuard.Input("IN", input)])
        let checkpoint = try TorchCheckpoint(path: input)
        let converted = try checkpoint.convert(key: key)
        let source = (input as NSString).lastPathComponent
        let writer = try converted.writer(extraMetadata: ["elip.converted_from": source, "elip.state_dict_key": converted.stateDictKey ?? "<top level>"])
        try writer.write(to: output)
        let narrowed = converted.tensors.filter { $0.sourceDType != .float32 && $0.sourceDType.isFloatingPoint }.count
        print("read \(checkpoint.format.rawValue) checkpoint \(input): state dict from \(converted.stateDictKey.map { "'\($0)'" } ?? "the top level")")
        print("wrote \(output): \(converted.tensors.count) tensors (\(narrowed) converted to float32), \(converted.metadata.count) metadata entries")
        if !converted.skipped.isEmpty {
            print("not written (hold tensors outside the state dict): \(converted.skipped.joined(separator: ", "))")
        }
    }
}
