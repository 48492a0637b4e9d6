/// Why a PyTorch checkpoint could not be read: names the file and, where known, the record, key
/// or pickle byte offset, and what is wrong.
public struct TorchCheckpointError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let message: String

    public init(_ path: String, _ message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { "\(path): \(message)" }
}
