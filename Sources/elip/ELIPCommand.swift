import Foundation
import ArgumentParser
import ELIPTensor

@main
struct ELIPCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "elip",
        abstract: "ELIP vision-language pre-training (ALBEF with text-guided vision-token pruning) on CPU clusters.",
        discussion: """
        Run distributed jobs under mpirun, e.g. `mpirun -np 4 elip train --config configs/pretrain-albef-4m.yaml`. \
        Every subcommand has its own --help.
        """,
        subcommands: [
            // Keep one subcommand per line: several people add to this list.
            BenchCommand.self,
            CheckStepCommand.self,
            TokenizeCommand.self,
            EmbedTextCommand.self,
            ImportWeightsCommand.self,
            ConvertCheckpointCommand.self,
            ExportCommand.self,
            TrainCommand.self,
            FinetuneCommand.self,
            EvalVECommand.self,
            EvalNLVR2Command.self,
            EvalCommand.self,
            SynthCommand.self,
            BuildDatasetCommand.self,
            InspectDatasetCommand.self,
            DiffWeightsCommand.self,
            EvalRetrievalCommand.self,
            EvalCaptionCommand.self,
            EvalVQACommand.self,
            VisualizeCommand.self,
            PlotCommand.self,
            AnalyzePruningCommand.self,
            AnalyzeTokensCommand.self,
            CaptionCommand.self,
            InfoCommand.self,
        ]
    )

    static func main() {
        // A file-size limit (ulimit -f) would kill the process with SIGXFSZ in the middle of a
        // checkpoint or shard write, without a word; ignored, write() fails with EFBIG and the
        // writer reports which file could not be written.
        signal(SIGXFSZ, SIG_IGN)
        BLASKernels.ensureFullKernels()
        AddressSpace.checkRoomForBLASPool()
        main(nil)
    }
}
