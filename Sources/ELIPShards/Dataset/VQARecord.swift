import Foundation

/// One image of a VQA split with all of its questions, as stored in an LMDB shard (the image is
/// stored once however many questions ask about it).
///
/// Layout (little-endian):
///
///     "ELQ1"                      4 bytes magic
///     u32 question count, then per question:
///         i64 question id
///         u32 byte length + UTF-8 question text (as annotated; cleaned by the loader)
///         u32 answer count, then per answer: u32 byte length + UTF-8 answer, f32 weight
///     u32 source-id length + UTF-8 bytes (e.g. "vqa_train.json:1234", the image's first entry)
///     u32 JPEG length + JPEG bytes
///     u32 CRC-32 (IEEE) of every preceding byte
///
/// Answers are the distinct answers of the question with vqa_dataset.py's weights (a VQA
/// question: share of the human answers; a Visual Genome question: its one answer, 0.5), without
/// the end-of-sequence text (the loader appends it). Decoding validates every length against the
/// buffer and the CRC, and never traps.
public struct VQARecord: Equatable, Sendable {
    public struct Answer: Equatable, Sendable {
        public var text: String
        public var weight: Float
        public init(_ text: String, weight: Float) {
            self.text = text
            self.weight = weight
        }
    }

    public struct Question: Equatable, Sendable {
        public var id: Int
        public var text: String
        public var answers: [Answer]
        public init(id: Int, text: String, answers: [Answer]) {
            self.id = id
            self.text = text
            self.answers = answers
        }
    }

    public var questions: [Question]
    public var sourceID: String
    public var jpeg: [UInt8]

    public init(questions: [Question], sourceID: String, jpeg: [UInt8]) {
        self.questions = questions
        self.sourceID = sourceID
        self.jpeg = jpeg
    }

    public static let magic: [UInt8] = Array("ELQ1".utf8)

    /// True when `bytes` starts with this record kind's magic.
    public static func hasMagic(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.count >= 4 && bytes.prefix(4).elementsEqual(magic)
    }

    public func encoded() -> [UInt8] {
        var out = VQARecord.magic
        func u32(_ v: Int) { withUnsafeBytes(of: UInt32(truncatingIfNeeded: v).littleEndian) { out.append(contentsOf: $0) } }
        func string(_ s: String) { let b = Array(s.utf8); u32(b.count); out += b }
        u32(questions.count)
        for q in questions {
            withUnsafeBytes(of: Int64(q.id).littleEndian) { out.append(contentsOf: $0) }
            string(q.text)
            u32(q.answers.count)
            for a in q.answers {
                string(a.text)
                withUnsafeBytes(of: a.weight.bitPattern.littleEndian) { out.append(contentsOf: $0) }
            }
        }
        string(sourceID)
        u32(jpeg.count); out += jpeg
        let crc = CRC32.checksum(out)
        withUnsafeBytes(of: crc.littleEndian) { out.append(contentsOf: $0) }
        return out
    }

    public static func decode(_ bytes: UnsafeRawBufferPointer) throws -> VQARecord {
        typealias E = DatasetRecord.DecodeError
        guard bytes.count >= 8 else { throw E.truncated("header") }
        guard hasMagic(bytes) else { throw E.badMagic }
        let body = bytes.count - 4
        let stored = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: body, as: UInt32.self))
        let computed = CRC32.checksum(UnsafeRawBufferPointer(rebasing: bytes[0..<body]))
        guard stored == computed else { throw E.crcMismatch(stored: stored, computed: computed) }
        var pos = 4
        func u32(_ what: String) throws -> Int {
            guard pos + 4 <= body else { throw E.truncated(what) }
            defer { pos += 4 }
            return Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: pos, as: UInt32.self)))
        }
        func chunk(_ n: Int, _ what: String) throws -> UnsafeRawBufferPointer {
            guard n >= 0, pos + n <= body else { throw E.truncated(what) }
            defer { pos += n }
            return UnsafeRawBufferPointer(rebasing: bytes[pos..<(pos + n)])
        }
        func string(_ what: String) throws -> String {
            let b = try chunk(try u32(what + " length"), what)
            guard let s = String(validating: b, as: UTF8.self) else { throw E.invalidUTF8(what) }
            return s
        }
        let n = try u32("question count")
        // Each question takes at least 16 bytes: a count beyond that is damage, not a reason to allocate.
        guard n <= body / 16 else { throw E.truncated("questions (\(n) announced)") }
        var questions: [Question] = []
        questions.reserveCapacity(n)
        for i in 0..<n {
            let idBytes = try chunk(8, "question \(i) id")
            let id = Int64(littleEndian: idBytes.loadUnaligned(as: Int64.self))
            let text = try string("question \(i)")
            let count = try u32("question \(i) answer count")
            guard count <= body / 8 else { throw E.truncated("question \(i) answers (\(count) announced)") }
            var answers: [Answer] = []
            for j in 0..<count {
                let a = try string("question \(i) answer \(j)")
                let w = try chunk(4, "question \(i) answer \(j) weight")
                answers.append(Answer(a, weight: Float(bitPattern: UInt32(littleEndian: w.loadUnaligned(as: UInt32.self)))))
            }
            questions.append(Question(id: Int(id), text: text, answers: answers))
        }
        let source = try string("source id")
        let jpeg = Array(try chunk(try u32("image length"), "image"))
        guard pos == body else { throw E.truncated("trailing bytes (\(body - pos) unread)") }
        return VQARecord(questions: questions, sourceID: source, jpeg: jpeg)
    }

    public static func decode(_ bytes: [UInt8]) throws -> VQARecord {
        try bytes.withUnsafeBytes { try decode($0) }
    }
}

extension DatasetRecord {
    /// Either record kind a shard may hold, seen as a DatasetRecord (a VQA record: its question
    /// texts as the captions), for tools that need the image, texts and source id only.
    public static func decodeAny(_ bytes: UnsafeRawBufferPointer) throws -> DatasetRecord {
        guard VQARecord.hasMagic(bytes) else { return try decode(bytes) }
        let v = try VQARecord.decode(bytes)
        return DatasetRecord(captions: v.questions.map(\.text), sourceID: v.sourceID, jpeg: v.jpeg)
    }

    public static func decodeAny(_ bytes: [UInt8]) throws -> DatasetRecord {
        try bytes.withUnsafeBytes { try decodeAny($0) }
    }
}
