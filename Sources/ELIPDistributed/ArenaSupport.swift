import ELIPTensor

// Conveniences for the trainer's ParameterArena (values and gradients are each one contiguous
// buffer, so each operation is a single collective sequence).

extension Communicator {
    /// SPEC §6: before step 1, every rank takes rank `root`'s parameter values (call it for the
    /// momentum model's arena too). Arenas must have the same layout on every rank.
    public func broadcastValues(of arena: ParameterArena, root: Int = 0) throws {
        try broadcast(arena.values, root: root)
    }
}

extension GradientReducer {
    /// Starts reducing `arena`'s gradients. Mark parameters final with
    /// `markReady(from: arena.entries[i].offset)` as backward finishes them (last ones first).
    public func begin(gradientsOf arena: ParameterArena) throws {
        guard arena.hasGradients else { throw DistributedError.invalidArgument("arena has no gradients") }
        try begin(buffer: arena.gradients)
    }
}
