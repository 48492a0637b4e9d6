/// Finite-difference gradient checking for ops and whole layers.
///
/// The scalar checked is L = sum(f(inputs) * R) for a fixed random R, so every output element
/// contributes. Analytic gradients come from `Autograd.backward`; numeric ones from central
/// differences, evaluated in double precision over the float32 outputs.
public enum GradientCheck {
    public struct Failure: Error, CustomStringConvertible {
        public let input: Int
        public let element: Int
        public let analytic: Double
        public let numeric: Double
        public var description: String {
            "gradient mismatch at input \(input) element \(element): analytic \(analytic), numeric \(numeric)"
        }
    }

    /// Largest error seen, relative to `atol + rtol * max(|analytic|, |numeric|)` (<= 1 passes).
    public struct Report {
        public var worstRatio = 0.0
        public var checked = 0
    }

    /// Checks d sum(f * R)/d input for every input that requires gradients, on up to
    /// `maxElements` elements per input (spread evenly). Throws `Failure` on the first mismatch.
    @discardableResult
    public static func check(inputs: [Tensor], eps: Float = 1e-2, atol: Double = 2e-3, rtol: Double = 2e-2,
                             maxElements: Int = 64, seed: UInt64 = 7,
                             _ f: () throws -> Tensor) throws -> Report {
        Autograd.reset()
        for x in inputs { x.zeroGradient() }
        let out = try f()
        var rng = SeededGenerator(seed: seed)
        let r = (0..<out.count).map { _ in rng.nextUniform() * 2 - 1 }
        let weights = try Tensor(r, shape: out.shape)
        let loss = try (out * weights).sum()
        try Autograd.backward(from: loss)

        func value() throws -> Double {
            try Autograd.noGrad {
                let o = try f()
                var s = 0.0
                for i in 0..<o.count { s += Double(o.data[i]) * Double(r[i]) }
                return s
            }
        }

        var report = Report()
        for (k, x) in inputs.enumerated() where x.requiresGrad {
            let g = x.grad?.toArray() ?? [Float](repeating: 0, count: x.count)
            let step = max(1, x.count / maxElements)
            for i in stride(from: 0, to: x.count, by: step) {
                let saved = x.data[i]
                x.data[i] = saved + eps
                let up = try value()
                x.data[i] = saved - eps
                let down = try value()
                x.data[i] = saved
                let numeric = (up - down) / (2 * Double(eps))
                let analytic = Double(g[i])
                let tol = atol + rtol * max(abs(analytic), abs(numeric))
                let ratio = abs(analytic - numeric) / tol
                report.worstRatio = max(report.worstRatio, ratio)
                report.checked += 1
                if !(ratio <= 1) { throw Failure(input: k, element: i, analytic: analytic, numeric: numeric) }
            }
        }
        return report
    }
}
