import ArgumentParser
import ELIPModel
import ELIPNN
import ELIPTensor

/// `bench train-step --task`: the fine-tuning tasks' steps at base size, on synthetic batches
/// shaped as each task's loader gives them (SPEC-ALBEF-TASKS): labels, a second image per
/// sentence, image ids, answers.
extension BenchTrainStepCommand {
    /// The base-size preset of each fine-tuning task.
    static let taskPresets = ["ve": "albef-ve-base", "nlvr2": "albef-nlvr2-base", "retrieval": "albef-retrieval-base", "vqa": "albef-vqa-base"]

    static func preset(forTask task: String) throws -> String {
        guard let p = taskPresets[task] else {
            throw ValidationError("--task '\(task)': expected one of \(taskPresets.keys.sorted().joined(separator: ", "))")
        }
        return p
    }

    /// Adds what the model kind's step needs beyond images and captions.
    static func addTaskInputs(_ input: ImageTextBatch, config: any ModelConfig, seed: UInt64) throws -> ImageTextBatch {
        var g = SeededGenerator(seed: seed ^ 0x7A5C)
        let bs = input.text.batch
        switch config.kind {
        case "albef-ve":
            var b = input
            b.labels = (0..<bs).map { _ in Int(g.next() % 3) }
            return b
        case "albef-nlvr2":
            // Left images, then right ones: a second random image per sentence.
            let res = config.imageRes
            let right = (0..<(bs * 3 * res * res)).map { _ in g.nextNormal() }
            let images = try Tensor(input.images.toArray() + right, shape: [2 * bs, 3, res, res])
            return ImageTextBatch(images: images, text: input.text, labels: (0..<bs).map { $0 % 2 })
        case "albef-retrieval":
            // Image ids: captions 0 and 1 share an image id, as several captions of one image do
            // (not in a batch of 2: ITM needs a negative of another id for every caption).
            var b = input
            b.labels = (0..<bs).map { bs > 2 ? max(0, $0 - 1) : $0 }
            return b
        case "albef-vqa":
            // Two answers per question ([CLS] word [SEP], padded to 5), weights 0.5 each.
            let special = config.specialTokens, vocab = config.vocabularySize
            let firstWord = vocab > 2000 ? 1000 : min(5, vocab - 1)
            var ids: [Int] = [], mask: [Int] = []
            for a in 0..<(2 * bs) {
                let words = 1 + a % 2
                for j in 0..<5 {
                    let real = j < words + 2
                    ids.append(!real ? special.pad : j == 0 ? special.cls : j == words + 1 ? special.sep : firstWord + Int(g.next() % UInt64(max(1, vocab - firstWord))))
                    mask.append(real ? 1 : 0)
                }
            }
            var b = input
            b.answers = AnswerBatch(text: try TextBatch(ids: ids, mask: mask, batch: 2 * bs, length: 5),
                                    weights: [Float](repeating: 0.5, count: 2 * bs), counts: [Int](repeating: 2, count: bs))
            return b
        default:
            return input
        }
    }
}
