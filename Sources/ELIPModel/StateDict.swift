import ELIPTensor
import Foundation
import Safetensors

/// Loading and saving parameters by their PyTorch state_dict names.
public enum StateDict {
    /// Names in ALBEF checkpoints that carry no parameter of ours: buffers and the tied decoder.
    static func isIgnorable(_ name: String) -> Bool {
        name.hasSuffix("embeddings.position_ids") || name.hasSuffix("cls.predictions.decoder.weight")
            || name.hasSuffix("cls.predictions.decoder.bias")
    }

    /// Copies every parameter of `arena` from `file` (names given by `rename`, default identity),
    /// checking shapes. Returns the names of the arena that the file lacks (an error unless
    /// `allowMissing`).
    @discardableResult
    public static func load(_ arena: ParameterArena, from file: SafetensorsFile, allowMissing: Bool = false,
                            rename: (String) -> [String] = { [$0] }) throws -> [String] {
        var missing: [String] = []
        for (entry, tensor) in zip(arena.entries, arena.tensors) {
            guard let source = rename(entry.name).first(where: { file.contains($0) }), let e = file[source] else {
                missing.append(entry.name)
                continue
            }
            guard e.elementCount == entry.count, e.shape.filter({ $0 != 1 }) == entry.shape.filter({ $0 != 1 }) else {
                throw CheckpointError(file: file.path, message: "\(source): shape \(e.shape) in the file, \(entry.shape) expected")
            }
            try tensor.withUnsafeMutableBufferPointer { buf in
                try file.copyFloats(source, into: buf.baseAddress!, count: entry.count)
            }
        }
        if !missing.isEmpty && !allowMissing {
            let shown = missing.prefix(8).joined(separator: ", ")
            throw CheckpointError(file: file.path, message: "\(missing.count) parameters missing, e.g. \(shown)")
        }
        return missing
    }

    /// Adds every parameter of `arena` to `writer` under its name.
    public static func add(_ arena: ParameterArena, to writer: inout SafetensorsWriter) throws {
        for (entry, tensor) in zip(arena.entries, arena.tensors) {
            try tensor.withUnsafeBufferPointer { try writer.add(entry.name, floats: Array($0), shape: entry.shape) }
        }
    }

    /// Adds every gradient of `arena` to `writer` as `prefix + name`.
    public static func addGradients(_ arena: ParameterArena, to writer: inout SafetensorsWriter, prefix: String = "grad.") throws {
        for (entry, tensor) in zip(arena.entries, arena.tensors) {
            let g = tensor.grad?.toArray() ?? [Float](repeating: 0, count: entry.count)
            try writer.add(prefix + entry.name, floats: g, shape: entry.shape)
        }
    }
}

/// A checkpoint or weights file that cannot be used, naming the file and the problem.
public struct CheckpointError: Error, CustomStringConvertible {
    public let file: String
    public let message: String
    public init(file: String, message: String) {
        self.file = file
        self.message = message
    }
    public var description: String { "\(file): \(message)" }
}

extension ALBEFModel {
    /// Loads an ALBEF state_dict: online and momentum weights, queues, pointer and temperature.
    /// Without momentum weights in the file (a fresh initial checkpoint), the momentum model is
    /// a copy of the online one; without queues, they stay as they are.
    public func load(from file: SafetensorsFile) throws {
        try StateDict.load(online, from: file)
        let missingMomentum = try StateDict.load(momentum, from: file, allowMissing: true)
        if missingMomentum.count == momentum.entries.count {
            copyParametersToMomentum()
        } else if !missingMomentum.isEmpty {
            throw CheckpointError(file: file.path, message: "momentum weights incomplete: \(missingMomentum.prefix(5).joined(separator: ", ")) missing")
        }
        for (name, queue) in [("image_queue", imageQueue), ("text_queue", textQueue)] where file.contains(name) {
            let e = try file.entry(name)
            guard e.shape == queue.shape else {
                throw CheckpointError(file: file.path, message: "\(name): shape \(e.shape), expected \(queue.shape)")
            }
            try queue.withUnsafeMutableBufferPointer { try file.copyFloats(name, into: $0.baseAddress!, count: queue.count) }
        }
        if file.contains("queue_ptr") {
            guard let p = try file.int64s("queue_ptr").first, p >= 0, Int(p) < config.queueSize else {
                throw CheckpointError(file: file.path, message: "queue_ptr outside [0, \(config.queueSize))")
            }
            queuePointer = Int(p)
        }
    }

    /// Fills the queues with random normal columns normalised along the feature dimension
    /// (ALBEF's initialisation).
    public func initialiseQueues(seed: UInt64) {
        var g = SeededGenerator(seed: seed)
        let e = config.embedDim, q = config.queueSize
        for queue in [imageQueue, textQueue] {
            queue.withUnsafeMutableBufferPointer { p in
                for i in 0..<(e * q) { p[i] = g.nextNormal() }
                for c in 0..<q {
                    var s: Float = 0
                    for d in 0..<e { s += p[d * q + c] * p[d * q + c] }
                    let n = max(s.squareRoot(), 1e-12)
                    for d in 0..<e { p[d * q + c] /= n }
                }
            }
        }
        queuePointer = 0
    }

    /// Adds the full ALBEF state_dict (PyTorch-loadable names, tied decoder written out).
    public func addStateDict(to writer: inout SafetensorsWriter) throws {
        try StateDict.add(online, to: &writer)
        try StateDict.add(momentum, to: &writer)
        try writer.add("image_queue", floats: imageQueue.toArray(), shape: imageQueue.shape)
        try writer.add("text_queue", floats: textQueue.toArray(), shape: textQueue.shape)
        try writer.add("queue_ptr", int64s: [Int64(queuePointer)], shape: [1])
        for (prefix, bert) in [("text_encoder", textEncoder), ("text_encoder_m", textEncoderM)] {
            try writer.add("\(prefix).cls.predictions.decoder.weight", floats: bert.wordEmbeddings.weight.toArray(),
                           shape: bert.wordEmbeddings.weight.shape)
            if let b = bert.mlmBias { try writer.add("\(prefix).cls.predictions.decoder.bias", floats: b.toArray(), shape: b.shape) }
            let l = bert.config.maxPositionEmbeddings
            try writer.add("\(prefix).bert.embeddings.position_ids", int64s: (0..<l).map(Int64.init), shape: [1, l])
        }
    }
}
