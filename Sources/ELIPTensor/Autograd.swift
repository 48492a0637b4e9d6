/// Reverse-mode automatic differentiation over coarse ops.
///
/// Every op that produces a tensor requiring gradients appends a backward closure to the tape.
/// `backward(from:)` runs the closures in reverse order (a valid topological order, since ops are
/// recorded as they execute), each reading its output's gradient and accumulating into its
/// inputs' gradients, then clears the tape so intermediate tensors return to the allocator.
///
/// The tape is process-global: one training graph is built at a time, from one thread. The
/// engine's kernels parallelise inside ops.
public enum Autograd {
    /// One recorded op: its backward, and the parameters whose gradient is complete once it ran
    /// (those it is the first recorded user of — backward runs in reverse, so it is their last).
    struct Entry {
        let backward: () throws -> Void
        let finalizes: [Tensor]
        let op: StaticString
        /// The profiler's section of the forward op (nil when not profiling).
        let section: String?
    }

    nonisolated(unsafe) static var tape: [Entry] = []
    nonisolated(unsafe) static var gradEnabled = true
    nonisolated(unsafe) static var seenParameters = Set<ObjectIdentifier>()

    /// Called during `backward` as soon as a parameter's gradient is final for this graph, in
    /// the order backward completes them. Gradient all-reduce uses it to overlap communication
    /// with the rest of backward. Parameters not used by the graph are never reported. An error it
    /// throws stops backward like an op's.
    nonisolated(unsafe) public static var onParameterGradientFinal: ((Tensor) throws -> Void)?

    /// True when ops record backward closures.
    public static var isRecording: Bool { gradEnabled }

    /// Runs `body` without recording: results do not require gradients (look-ahead passes,
    /// momentum model, evaluation).
    public static func noGrad<R>(_ body: () throws -> R) rethrows -> R {
        let saved = gradEnabled
        gradEnabled = false
        defer { gradEnabled = saved }
        return try body()
    }

    /// Number of recorded backward steps (for tests and diagnostics).
    public static var recordedCount: Int { tape.count }

    /// Drops the recorded graph without running it (e.g. after a skipped step).
    public static func reset() {
        tape.removeAll(keepingCapacity: true)
        seenParameters.removeAll(keepingCapacity: true)
    }

    static func checkFinite(_ t: Tensor, op: StaticString) {
        for i in 0..<t.count where !t.data[i].isFinite {
            firstNonFinite = "\(op) produced \(t.data[i]) at element \(i) of an output shaped \(t.shape)"
            return
        }
    }

    /// Back-propagates from a scalar `loss` (seed 1), or from any tensor with an explicit `seed`
    /// gradient of the same shape, accumulating into every reachable tensor's `grad`. An error
    /// thrown by an op's backward (a collective that failed, say) stops backward, drops the rest of
    /// the graph and is rethrown: the gradients are then incomplete and must not be used.
    public static func backward(from loss: Tensor, seed: Tensor? = nil) throws {
        defer { reset() }
        guard loss.requiresGrad else {
            throw TensorError.noGradient("the loss does not depend on any tensor that requires gradients")
        }
        let g = loss.gradPointer()
        if let seed {
            guard seed.count == loss.count else {
                throw TensorError.shapeMismatch(op: "backward seed", lhs: loss.shape, rhs: seed.shape)
            }
            for i in 0..<loss.count { g[i] += seed.data[i] }
        } else {
            guard loss.count == 1 else {
                throw TensorError.invalidShape(op: "backward", shape: loss.shape, reason: "a non-scalar loss needs a seed gradient")
            }
            g[0] += 1
        }
        let hook = onParameterGradientFinal
        while let entry = tape.popLast() {
            try StepProfiler.timeBackward(entry.op, section: entry.section, entry.backward)
            if let hook { for p in entry.finalizes { try hook(p) } }
        }
    }

    /// Anomaly detection (debug mode): when on, every recorded op's output is scanned and the
    /// first op that produced a NaN or infinity is remembered in `firstNonFinite`.
    nonisolated(unsafe) public static var detectAnomalies = false
    nonisolated(unsafe) public private(set) static var firstNonFinite: String?

    /// Forgets a previously detected anomaly.
    public static func clearAnomaly() { firstNonFinite = nil }

    /// Records `backward` for `output` when any input requires gradients. Returns the output.
    @inline(__always)
    static func record(_ output: Tensor, inputs: [Tensor], op: StaticString = #function,
                       _ backward: @escaping (UnsafeMutablePointer<Float>) throws -> Void) -> Tensor {
        if detectAnomalies && firstNonFinite == nil { checkFinite(output, op: op) }
        StepProfiler.forwardOpDone(op)
        guard gradEnabled, inputs.contains(where: { $0.requiresGrad }) else { return output }
        output.requiresGrad = true
        var finalizes: [Tensor] = []
        for t in inputs where t.isParameter && t.requiresGrad {
            if seenParameters.insert(ObjectIdentifier(t)).inserted { finalizes.append(t) }
        }
        tape.append(Entry(backward: {
            // The output may be unreachable from the loss: then no gradient was allocated.
            if let g = output.existingGrad { try backward(g) }
        }, finalizes: finalizes, op: op, section: StepProfiler.enabled ? StepProfiler.currentPath : nil))
        return output
    }
}

extension Autograd {
    /// Defines a differentiable op outside the engine (e.g. a collective): `output` was computed
    /// from `inputs`; `backward` receives the output's gradient and returns one gradient per
    /// input (nil: none), each with that input's shape, which are accumulated. An error thrown by
    /// `backward`, or a returned gradient of the wrong size, makes `Autograd.backward` throw.
    public static func customOp(output: Tensor, inputs: [Tensor], name: StaticString = #function,
                                backward: @escaping (Tensor) throws -> [Tensor?]) -> Tensor {
        record(output, inputs: inputs, op: name) { dy in
            let g = Tensor(shape: output.shape, storage: Storage(count: output.count, zeroed: false))
            g.data.update(from: dy, count: output.count)
            let grads = try backward(g)
            guard grads.count == inputs.count else {
                throw TensorError.invalidArgument(op: "\(name) backward", reason: "\(grads.count) gradients for \(inputs.count) inputs")
            }
            for (x, gx) in zip(inputs, grads) where x.requiresGrad {
                guard let gx else { continue }
                guard gx.count == x.count else {
                    throw TensorError.shapeMismatch(op: "\(name) backward", lhs: x.shape, rhs: gx.shape)
                }
                let dx = x.gradPointer()
                for i in 0..<x.count { dx[i] += gx.data[i] }
            }
        }
    }
}
