/// ALBEF's question cleaning, `pre_question(question, max_ques_words)` in dataset/utils.py (VQA):
/// Python `lower()`; delete each of , . ' ! ? " ( ) * # : ; ~; '-' and '/' become spaces; trailing
/// spaces stripped (`rstrip(' ')`); words (split on single spaces, empty words kept) past
/// `maxWords` dropped (vqa_dataset.py: 30 for training, 50 for test). Unlike `pre_caption`, whitespace runs are kept and leading spaces stay.
public func preQuestion(_ question: String, maxWords: Int = 30) -> String {
    var text: [Unicode.Scalar] = []
    text.reserveCapacity(question.utf8.count)
    for s in TextUnicode.pythonLowercased(Array(question.unicodeScalars)) {
        switch s {
        case ",", ".", "'", "!", "?", "\"", "(", ")", "*", "#", ":", ";", "~": continue
        case "-", "/": text.append(" ")
        default: text.append(s)
        }
    }
    while text.last == " " { text.removeLast() }
    var words = String(String.UnicodeScalarView(text)).split(separator: " ", omittingEmptySubsequences: false)
    if words.count > maxWords { words = Array(words.prefix(max(maxWords, 0))) }
    return words.joined(separator: " ")
}

/// The answers of one VQA training question and their weights, as vqa_dataset.py makes them: a
/// VQA question's human answers, each distinct answer weighted by its share (1/n per occurrence,
/// in order of first appearance); a Visual Genome question's single answer with weight 0.5.
/// Each answer carries the end-of-sequence text (`eos`, "[SEP]"), which the tokenizer keeps
/// whole as the special token.
public func vqaTrainingAnswers(_ answers: [String], visualGenome: Bool, eos: String = "[SEP]") -> [(answer: String, weight: Float)] {
    if visualGenome { return answers.prefix(1).map { ($0 + eos, 0.5) } }
    // Python floats (double) summed, then torch.Tensor's float32.
    var order: [String] = [], weight: [String: Double] = [:]
    for a in answers {
        if weight[a] == nil { order.append(a) }
        weight[a, default: 0] += 1 / Double(answers.count)
    }
    return order.map { ($0 + eos, Float(weight[$0]!)) }
}
