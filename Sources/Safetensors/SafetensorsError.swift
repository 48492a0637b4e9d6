import Foundation

/// Everything that can go wrong reading or writing a safetensors file.
///
/// `description` always names the file, the tensor when one is involved, and the problem, e.g.
/// `weights.safetensors: tensor 'vision_proj.weight': data_offsets [0, 12] span 12 bytes but
/// F32 [2, 3] needs 24 bytes`.
public struct SafetensorsError: Error, CustomStringConvertible, LocalizedError, Sendable {
    /// Broad class of the problem, for programmatic handling; the message has the details.
    public enum Kind: Sendable, Hashable {
        /// open/read/write/fsync/rename failed, or the file is not a regular file.
        case io
        /// The file is shorter than the 8-byte header length.
        case fileTooSmall
        /// The header length exceeds the 100 MB limit (as in the reference implementation).
        case headerTooLarge
        /// The header length points past the end of the file.
        case headerBeyondFile
        /// The header is not valid UTF-8 or not valid JSON.
        case malformedJSON
        /// Valid JSON of the wrong shape: a value has the wrong type, or a key is missing.
        case wrongJSONType
        case unknownDType
        /// A negative dimension, or a shape whose size overflows.
        case invalidShape
        /// `data_offsets` is not `[begin, end]` with `0 <= begin <= end`.
        case invalidOffsets
        /// `end - begin` differs from `product(shape) * dtype size`.
        case sizeMismatch
        /// The tensor's bytes extend past the end of the data buffer.
        case offsetsOutOfRange
        /// Two tensors share bytes.
        case overlap
        case duplicateName
        case tensorNotFound
        /// The requested conversion does not apply to the tensor's dtype.
        case wrongDType
        /// A caller-provided element count or byte count does not match the tensor.
        case countMismatch
        /// A value does not fit the requested type (e.g. U64 above Int64.max, 300 into U8).
        case valueOutOfRange
        /// A caller-supplied data producer threw, or the writer was given an invalid tensor.
        case invalidTensor
    }

    public let kind: Kind
    /// File the error is about (or a label for in-memory buffers).
    public let path: String
    /// Tensor the error is about, if any.
    public let tensor: String?
    /// What is wrong, in words.
    public let detail: String

    public init(_ kind: Kind, path: String, tensor: String? = nil, _ detail: String) {
        self.kind = kind
        self.path = path
        self.tensor = tensor
        self.detail = detail
    }

    public var description: String {
        if let tensor { return "\(path): tensor '\(tensor)': \(detail)" }
        return "\(path): \(detail)"
    }

    public var errorDescription: String? { description }
}
