import Foundation

/// One image-caption record as stored in an LMDB shard (value of key = big-endian UInt64 index).
///
/// Layout (little-endian):
///
///     "ELR1"                      4 bytes magic
///     u32 caption count, then per caption: u32 byte length + UTF-8 bytes
///     u32 source-id length + UTF-8 bytes (e.g. "coco.json:1234" or "shard-00003.tar:000042")
///     u32 JPEG length + JPEG bytes (re-encoded RGB, shorter side <= the build's image size)
///     u32 CRC-32 (IEEE) of every preceding byte
///
/// A task record with one class label per caption (SNLI-VE: the sentence's label) is "ELR2":
/// the same layout with `u32 label count (= caption count), then i32 per label` after the
/// captions. Records without labels stay "ELR1", byte for byte as before.
///
/// Decoding validates every length against the buffer and the CRC, and never traps.
public struct DatasetRecord: Equatable, Sendable {
    public var captions: [String]
    public var sourceID: String
    public var jpeg: [UInt8]
    /// One class label per caption, or empty (pre-training records).
    public var labels: [Int]

    public init(captions: [String], sourceID: String, jpeg: [UInt8], labels: [Int] = []) {
        self.captions = captions
        self.sourceID = sourceID
        self.jpeg = jpeg
        self.labels = labels
    }

    public static let magic: [UInt8] = Array("ELR1".utf8)
    public static let labelledMagic: [UInt8] = Array("ELR2".utf8)

    public enum DecodeError: Error, Equatable, CustomStringConvertible {
        case badMagic, truncated(String), crcMismatch(stored: UInt32, computed: UInt32), invalidUTF8(String)
        public var description: String {
            switch self {
            case .badMagic: return "not a dataset record (bad magic)"
            case let .truncated(what): return "record truncated while reading \(what)"
            case let .crcMismatch(s, c): return String(format: "CRC mismatch (stored %08x, computed %08x)", s, c)
            case let .invalidUTF8(what): return "\(what) is not valid UTF-8"
            }
        }
    }

    /// Serialised bytes, CRC included.
    public func encoded() -> [UInt8] {
        var out = labels.isEmpty ? DatasetRecord.magic : DatasetRecord.labelledMagic
        func u32(_ v: Int) { withUnsafeBytes(of: UInt32(truncatingIfNeeded: v).littleEndian) { out.append(contentsOf: $0) } }
        u32(captions.count)
        for c in captions { let b = Array(c.utf8); u32(b.count); out += b }
        if !labels.isEmpty {
            u32(labels.count)
            for l in labels { withUnsafeBytes(of: Int32(truncatingIfNeeded: l).littleEndian) { out.append(contentsOf: $0) } }
        }
        let s = Array(sourceID.utf8)
        u32(s.count); out += s
        u32(jpeg.count); out += jpeg
        let crc = CRC32.checksum(out)
        withUnsafeBytes(of: crc.littleEndian) { out.append(contentsOf: $0) }
        return out
    }

    /// Parses and verifies a record.
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws -> DatasetRecord {
        guard bytes.count >= 8 else { throw DecodeError.truncated("header") }
        let labelled = bytes.prefix(4).elementsEqual(labelledMagic)
        guard labelled || bytes.prefix(4).elementsEqual(magic) else { throw DecodeError.badMagic }
        let body = bytes.count - 4
        let stored = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: body, as: UInt32.self))
        let computed = CRC32.checksum(UnsafeRawBufferPointer(rebasing: bytes[0..<body]))
        guard stored == computed else { throw DecodeError.crcMismatch(stored: stored, computed: computed) }
        var pos = 4
        func u32(_ what: String) throws -> Int {
            guard pos + 4 <= body else { throw DecodeError.truncated(what) }
            defer { pos += 4 }
            return Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: pos, as: UInt32.self)))
        }
        func chunk(_ n: Int, _ what: String) throws -> UnsafeRawBufferPointer {
            guard n >= 0, pos + n <= body else { throw DecodeError.truncated(what) }
            defer { pos += n }
            return UnsafeRawBufferPointer(rebasing: bytes[pos..<(pos + n)])
        }
        func string(_ what: String) throws -> String {
            let b = try chunk(try u32(what + " length"), what)
            guard let s = String(validating: b, as: UTF8.self) else { throw DecodeError.invalidUTF8(what) }
            return s
        }
        let n = try u32("caption count")
        guard n <= body / 4 else { throw DecodeError.truncated("captions") }
        var captions: [String] = []
        for i in 0..<n { captions.append(try string("caption \(i)")) }
        var labels: [Int] = []
        if labelled {
            let count = try u32("label count")
            guard count == n else { throw DecodeError.truncated("labels (\(count) labels for \(n) captions)") }
            let raw = try chunk(4 * count, "labels")
            labels = (0..<count).map { Int(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self))) }
        }
        let source = try string("source id")
        let jpeg = Array(try chunk(try u32("image length"), "image"))
        guard pos == body else { throw DecodeError.truncated("trailing bytes (\(body - pos) unread)") }
        return DatasetRecord(captions: captions, sourceID: source, jpeg: jpeg, labels: labels)
    }

    public static func decode(_ bytes: [UInt8]) throws -> DatasetRecord {
        try bytes.withUnsafeBytes { try decode($0) }
    }
}

/// CRC-32 (IEEE 802.3, reflected, as zlib's crc32).
public enum CRC32 {
    static let table: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    public static func checksum(_ bytes: UnsafeRawBufferPointer, initial: UInt32 = 0) -> UInt32 {
        var c = ~initial
        table.withUnsafeBufferPointer { t in
            for b in bytes { c = t[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        }
        return ~c
    }

    public static func checksum(_ bytes: [UInt8]) -> UInt32 { bytes.withUnsafeBytes { checksum($0) } }
}
