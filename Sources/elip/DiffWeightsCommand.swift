import ArgumentParser
import Foundation
import Safetensors

struct DiffWeightsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff-weights",
        abstract: "Compare two safetensors files tensor by tensor (e.g. a resumed run against an uninterrupted one).",
        discussion: """
        For every float tensor present in both files prints nothing unless it differs; then the worst \
        relative difference ||a - b|| / max(||b||, 1e-6). Exits 1 when a tensor is missing from either \
        file, shapes differ, a tensor holds NaN or an infinity (in either file: such values make any \
        difference meaningless), no tensor was compared, or the worst difference exceeds --tolerance \
        (0 = equal values).
        """
    )
    @Argument(help: "First file.") var a: String
    @Argument(help: "Second file.") var b: String
    @Option(help: "Largest allowed relative difference per tensor (0: bitwise).") var tolerance: Double = 0
    @Option(help: "Compare only tensors whose name starts with this prefix.") var prefix: String = ""
    @Option(help: "Skip tensors whose name contains this text (repeatable).") var exclude: [String] = []

    func validate() throws {
        guard tolerance.isFinite, tolerance >= 0 else {
            throw ValidationError("--tolerance must be a finite number >= 0, got \(tolerance)")
        }
    }

    func run() throws {
        let fa = try SafetensorsFile(path: a), fb = try SafetensorsFile(path: b)
        func selected(_ n: String) -> Bool { n.hasPrefix(prefix) && !exclude.contains { n.contains($0) } }
        let na = Set(fa.names.filter(selected)), nb = Set(fb.names.filter(selected))
        var failed = false
        for n in na.symmetricDifference(nb).sorted() { print("only in \(na.contains(n) ? a : b): \(n)"); failed = true }
        var worst = (0.0, ""), identical = 0
        for n in na.intersection(nb).sorted() {
            guard let ea = fa[n], let eb = fb[n] else { continue }
            guard ea.shape == eb.shape else { print("\(n): shape \(ea.shape) vs \(eb.shape)"); failed = true; continue }
            if ea.dtype.isInteger || eb.dtype.isInteger {
                if try fa.int64s(n) != fb.int64s(n) { print("\(n): integer values differ"); failed = true } else { identical += 1 }
                continue
            }
            let x = try fa.floats(n), y = try fb.floats(n)
            let nonFinite = (x.lazy.filter { !$0.isFinite }.count, y.lazy.filter { !$0.isFinite }.count)
            if nonFinite != (0, 0) {
                print("\(n): not finite: \(nonFinite.0) NaN/inf values in \(a), \(nonFinite.1) in \(b)")
                failed = true
                continue
            }
            if x == y { identical += 1; continue }
            var d = 0.0, s = 0.0
            for (p, q) in zip(x, y) { d += Double(p - q) * Double(p - q); s += Double(q) * Double(q) }
            let rel = d.squareRoot() / max(s.squareRoot(), 1e-6)
            if rel > worst.0 || worst.1.isEmpty { worst = (rel, n) }
            if rel > tolerance { print(String(format: "%@: relative difference %.3e", n, rel)); failed = true }
        }
        let compared = na.intersection(nb).count
        print(String(format: "%d tensors compared, %d bitwise identical, worst relative difference %.3e%@", compared, identical,
                     worst.0, worst.1.isEmpty ? "" : " (\(worst.1))"))
        if compared == 0 {
            print("no tensors compared: " + (na.isEmpty && nb.isEmpty ? "no tensor names match --prefix/--exclude" : "the files share no tensor names"))
            failed = true
        }
        if failed { throw ExitCode(1) }
    }
}
