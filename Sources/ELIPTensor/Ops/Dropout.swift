extension Tensor {
    /// Inverted dropout: zero each element with probability `p` and scale the rest by 1/(1-p).
    /// The mask is a function of (`seed`, element index) only. p == 0 returns self.
    public func dropout(_ p: Float, seed: UInt64) throws -> Tensor {
        guard p >= 0, p < 1 else { throw TensorError.invalidArgument(op: "dropout", reason: "probability \(p) outside [0, 1)") }
        if p == 0 { return self }
        let x = self, y = Tensor.empty(shape), scale = 1 / (1 - p)
        Kernels.map(count) { s, n in
            for i in s..<(s + n) { y.data[i] = CounterRandom.uniform(seed: seed, index: i) < p ? 0 : x.data[i] * scale }
        }
        return Autograd.record(y, inputs: [x]) { dy in
            let dx = x.gradPointer()
            Kernels.map(x.count) { s, n in
                for i in s..<(s + n) where CounterRandom.uniform(seed: seed, index: i) >= p { dx[i] += dy[i] * scale }
            }
        }
    }
}
