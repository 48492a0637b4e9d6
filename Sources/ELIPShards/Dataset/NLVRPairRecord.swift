import Foundation

/// One NLVR2 pair as stored in a dataset's `pairs/` LMDB (value of key = big-endian UInt64 index):
/// the sentence, its label and the two images, which are not copied but referenced: each image is
/// an ELR1 `DatasetRecord` (no captions) stored once in the dataset's shards, however many pairs
/// use it.
///
/// Layout (little-endian):
///
///     "ELP1"                      4 bytes magic
///     u32 sentence length + UTF-8 bytes
///     i32 label (1 "True", 0 "False")
///     left image:  u32 shard index, u64 key, u32 image source-id length + UTF-8 bytes
///     right image: the same
///     u32 source-id length + UTF-8 bytes (e.g. "nlvr_train.json:12")
///     u32 CRC-32 (IEEE) of every preceding byte
///
/// The image source id is the one the image record carries: a reader checks it, so a pair never
/// silently reads another image. Decoding validates every length against the buffer and the CRC,
/// and never traps.
public struct NLVRPairRecord: Equatable, Sendable {
    /// Where an image of the pair is stored.
    public struct ImageReference: Equatable, Sendable {
        public var shard: Int
        public var key: UInt64
        /// The source id of the image record (the image path as written in the annotation).
        public var sourceID: String

        public init(shard: Int, key: UInt64, sourceID: String) {
            self.shard = shard
            self.key = key
            self.sourceID = sourceID
        }
    }

    public var sentence: String
    public var label: Int
    public var left: ImageReference
    public var right: ImageReference
    public var sourceID: String

    public init(sentence: String, label: Int, left: ImageReference, right: ImageReference, sourceID: String) {
        self.sentence = sentence
        self.label = label
        self.left = left
        self.right = right
        self.sourceID = sourceID
    }

    public static let magic: [UInt8] = Array("ELP1".utf8)

    public func encoded() -> [UInt8] {
        var out = Self.magic
        func u32(_ v: Int) { withUnsafeBytes(of: UInt32(truncatingIfNeeded: v).littleEndian) { out.append(contentsOf: $0) } }
        func string(_ s: String) { let b = Array(s.utf8); u32(b.count); out += b }
        func reference(_ r: ImageReference) {
            u32(r.shard)
            withUnsafeBytes(of: r.key.littleEndian) { out.append(contentsOf: $0) }
            string(r.sourceID)
        }
        string(sentence)
        withUnsafeBytes(of: Int32(truncatingIfNeeded: label).littleEndian) { out.append(contentsOf: $0) }
        reference(left)
        reference(right)
        string(sourceID)
        let crc = CRC32.checksum(out)
        withUnsafeBytes(of: crc.littleEndian) { out.append(contentsOf: $0) }
        return out
    }

    /// Parses and verifies a record (errors are `DatasetRecord.DecodeError`).
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws -> NLVRPairRecord {
        typealias E = DatasetRecord.DecodeError
        guard bytes.count >= 8 else { throw E.truncated("header") }
        guard bytes.prefix(4).elementsEqual(magic) else { throw E.badMagic }
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
        func u64(_ what: String) throws -> UInt64 {
            guard pos + 8 <= body else { throw E.truncated(what) }
            defer { pos += 8 }
            return UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: pos, as: UInt64.self))
        }
        func string(_ what: String) throws -> String {
            let n = try u32(what + " length")
            guard n <= body - pos else { throw E.truncated(what) }
            defer { pos += n }
            guard let s = String(validating: UnsafeRawBufferPointer(rebasing: bytes[pos..<(pos + n)]), as: UTF8.self) else {
                throw E.invalidUTF8(what)
            }
            return s
        }
        func reference(_ side: String) throws -> ImageReference {
            let shard = try u32("\(side) image shard")
            let key = try u64("\(side) image key")
            return ImageReference(shard: shard, key: key, sourceID: try string("\(side) image source id"))
        }
        let sentence = try string("sentence")
        let label = Int(Int32(truncatingIfNeeded: try u32("label")))
        let left = try reference("left")
        let right = try reference("right")
        let source = try string("source id")
        guard pos == body else { throw E.truncated("trailing bytes (\(body - pos) unread)") }
        return NLVRPairRecord(sentence: sentence, label: label, left: left, right: right, sourceID: source)
    }

    public static func decode(_ bytes: [UInt8]) throws -> NLVRPairRecord {
        try bytes.withUnsafeBytes { try decode($0) }
    }
}
