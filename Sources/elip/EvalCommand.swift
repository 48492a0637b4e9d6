import ArgumentParser
import Foundation

/// `elip eval --task T ARGS...`: one entry point for the per-task evaluators. Each task names the
/// command that evaluates it; the arguments after the task are that command's own.
struct EvalCommand: ParsableCommand {
    /// Task -> its evaluator command (nil: not written yet). Adding an evaluator: one line here.
    static let evaluators: [(task: String, command: ParsableCommand.Type?)] = [
        ("retrieval", EvalRetrievalCommand.self),
        ("ve", EvalVECommand.self),
        ("vqa", EvalVQACommand.self),
        ("nlvr2", EvalNLVR2Command.self),
    ]

    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Evaluate a downstream task: dispatches to the task's evaluator (\(evaluators.map { "\($0.task): \($0.command.map { $0.configuration.commandName ?? "?" } ?? "not yet")" }.joined(separator: ", "))).",
        discussion: """
        --task comes first; every argument after it goes to T's evaluator unchanged; `elip eval --task T --help` \
        shows its options.

        Examples:
          elip eval --task retrieval --checkpoint runs/retrieval --data flickr30k_test.json --image-root /data/flickr30k --k-test 128
          mpirun -np 4 elip eval --task ve --checkpoint runs/ve --data ve_test.json --image-root /data/flickr30k-images
          elip eval --task vqa --questions Q.json --annotations A.json --results R.json --out M.json
        """
    )

    @Option(help: "Task: \(evaluators.map(\.task).joined(separator: ", ")).")
    var task: String
    @Argument(parsing: .captureForPassthrough, help: "The evaluator's own arguments.")
    var arguments: [String] = []

    /// The evaluator of `task`, or a message saying why there is none.
    static func evaluator(for task: String) -> Result<ParsableCommand.Type, ValidationError> {
        guard let entry = evaluators.first(where: { $0.task == task }) else {
            return .failure(ValidationError("unknown task '\(task)' (known: \(evaluators.map(\.task).joined(separator: ", ")))"))
        }
        guard let command = entry.command else {
            let ready = evaluators.compactMap { $0.command == nil ? nil : $0.task }.joined(separator: ", ")
            return .failure(ValidationError("task '\(task)': its evaluator is not written yet (elip eval covers: \(ready))"))
        }
        return .success(command)
    }

    func validate() throws {
        if case let .failure(e) = Self.evaluator(for: task) { throw e }
    }

    func run() throws {
        let command = try Self.evaluator(for: task).get()
        var parsed: ParsableCommand
        // Parse errors and --help are the evaluator's: reported (and exited) as it reports them.
        do { parsed = try command.parseAsRoot(arguments) } catch { command.exit(withError: error) }
        try parsed.run()
    }
}
