#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Safetensors

/// Opens weights given as safetensors or as a PyTorch checkpoint (.pth/.pt/.bin: recognised by
/// content, not by name) so every command that reads weights takes both.
public enum WeightFile {
    /// True when the file starts like torch.save output (a zip, or a pickle for the legacy format).
    public static func isTorchCheckpoint(_ path: String) -> Bool {
        #if canImport(Glibc)
        let fd = Glibc.open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        #else
        let fd = Darwin.open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        #endif
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var head = [UInt8](repeating: 0, count: 32)
        let n = read(fd, &head, 32)
        guard n >= 4 else { return false }
        return head.withUnsafeBytes { raw in
            let bytes = UnsafeRawBufferPointer(rebasing: raw[0..<n])
            return StoredZip.looksLikeZip(bytes) || TorchCheckpoint.looksLikeLegacy(bytes)
        }
    }

    /// The weights as a safetensors file: a PyTorch checkpoint is converted in memory (its state
    /// dict chosen as `convert-checkpoint` does, `key` overriding). `note` says what was converted.
    public static func open(_ path: String, key: String? = nil) throws -> (file: SafetensorsFile, note: String?) {
        guard isTorchCheckpoint(path) else {
            guard key == nil else { throw TorchCheckpointError(path, "a state-dict key was given but this is not a PyTorch checkpoint") }
            return (try SafetensorsFile(path: path), nil)
        }
        // The converted tensors are released before the file copies the serialized bytes, so the
        // peak is about twice the weights, not three times.
        var note = ""
        let bytes: [UInt8] = try {
            let checkpoint = try TorchCheckpoint(path: path)
            let converted = try checkpoint.convert(key: key)
            note = "\(path): PyTorch \(checkpoint.format.rawValue) checkpoint, \(converted.tensors.count) tensors from \(converted.stateDictKey.map { "'\($0)'" } ?? "the top level")"
            if !converted.skipped.isEmpty { note += " (not used: \(converted.skipped.joined(separator: ", ")))" }
            return try converted.writer().serialized()
        }()
        return (try SafetensorsFile(bytes: bytes, label: path), note)
    }
}
