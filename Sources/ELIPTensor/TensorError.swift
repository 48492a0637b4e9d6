/// Errors from tensor operations. Shape problems are thrown, never trapped, and name both shapes.
public enum TensorError: Error, CustomStringConvertible, Equatable {
    case shapeMismatch(op: String, lhs: [Int], rhs: [Int])
    case invalidShape(op: String, shape: [Int], reason: String)
    case invalidArgument(op: String, reason: String)
    case noGradient(String)

    public var description: String {
        switch self {
        case let .shapeMismatch(op, lhs, rhs): return "\(op): shape mismatch \(lhs) vs \(rhs)"
        case let .invalidShape(op, shape, reason): return "\(op): invalid shape \(shape): \(reason)"
        case let .invalidArgument(op, reason): return "\(op): \(reason)"
        case let .noGradient(why): return "backward: \(why)"
        }
    }
}
