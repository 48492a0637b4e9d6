import Safetensors
import TorchSaveFixtures

/// A tensor of a safetensors file (F32 or I64) as the torch.save generator's object, contiguous,
/// so tests can turn a checkpoint this project wrote into the `.pth` the official code would have.
func torchSaveTensor(_ file: SafetensorsFile, _ name: String) throws -> TorchSaveGenerator.Object {
    let e = try file.entry(name)
    let bytes = try file.withTensorBytes(name) { Array($0) }
    let storage = TorchSaveGenerator.Storage(e.dtype == .i64 ? "LongStorage" : "FloatStorage", bytes: bytes, elementSize: e.dtype.byteSize)
    var stride: [Int] = [], s = 1
    for d in e.shape.reversed() { stride.insert(s, at: 0); s *= d }
    return .tensor(TorchSaveGenerator.Tensor(storage: storage, offset: 0, size: e.shape, stride: stride))
}
