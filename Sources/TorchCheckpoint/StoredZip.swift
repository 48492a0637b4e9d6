/// The zip container `torch.save` writes (PyTorchStreamWriter, miniz): every record is *stored*
/// (no compression), its data 64-byte aligned by an "FB" padding extra field, zip64 fields when
/// the file or a record passes 4 GiB. Read through the central directory, which is authoritative;
/// every offset and size is checked against the file, and a record's CRC-32 is verified when it
/// is read, so a truncated or corrupted file is an error, never a wild read.
struct StoredZip {
    struct Entry {
        let name: String
        let dataOffset: Int
        let size: Int
        let crc32: UInt32
    }

    let path: String
    let file: UnsafeRawBufferPointer
    /// In central-directory order.
    let entries: [Entry]
    private let indexByName: [String: Int]

    /// True when the bytes start like a zip (local file header), as `torch.load` checks.
    static func looksLikeZip(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.count >= 4 && bytes[0] == 0x50 && bytes[1] == 0x4B && bytes[2] == 0x03 && bytes[3] == 0x04
    }

    init(_ file: UnsafeRawBufferPointer, path: String) throws {
        self.path = path
        self.file = file
        func fail(_ message: String) -> TorchCheckpointError { TorchCheckpointError(path, "zip: \(message)") }
        let n = file.count
        // End of central directory: 22 bytes plus a comment of at most 65535 bytes, at the end.
        guard n >= 22 else { throw fail("file is \(n) bytes, too short for a zip end record (truncated?)") }
        var eocd = -1
        var i = n - 22
        while i >= max(0, n - 22 - 65535) {
            if Self.u32(file, i) == 0x0605_4B50 && i + 22 + Int(Self.u16(file, i + 20)) == n { eocd = i; break }
            i -= 1
        }
        guard eocd >= 0 else { throw fail("no end-of-central-directory record at the end of the file (truncated or not a zip)") }
        var count = Int(Self.u16(file, eocd + 10))
        var cdSize = Int(Self.u32(file, eocd + 12))
        var cdOffset = Int(Self.u32(file, eocd + 16))
        if count == 0xFFFF || cdSize == 0xFFFF_FFFF || cdOffset == 0xFFFF_FFFF {
            // zip64: a locator (20 bytes) just before the end record points at the zip64 end record.
            let locator = eocd - 20
            guard locator >= 0, Self.u32(file, locator) == 0x0706_4B50 else { throw fail("zip64 sizes but no zip64 locator") }
            let record = try Self.checkedInt(Self.u64(file, locator + 8), fail("zip64 end record offset out of range"))
            guard record >= 0, record <= locator - 56, Self.u32(file, record) == 0x0606_4B50 else {
                throw fail("zip64 end record missing or outside the file")
            }
            count = try Self.checkedInt(Self.u64(file, record + 32), fail("zip64 entry count out of range"))
            cdSize = try Self.checkedInt(Self.u64(file, record + 40), fail("zip64 directory size out of range"))
            cdOffset = try Self.checkedInt(Self.u64(file, record + 48), fail("zip64 directory offset out of range"))
        }
        guard cdOffset <= eocd, cdSize <= eocd - cdOffset else {
            throw fail("central directory (offset \(cdOffset), \(cdSize) bytes) lies outside the file of \(n) bytes (truncated?)")
        }
        var entries: [Entry] = []
        var index: [String: Int] = [:]
        var p = cdOffset
        let cdEnd = cdOffset + cdSize
        for k in 0..<count {
            guard p + 46 <= cdEnd, Self.u32(file, p) == 0x0201_4B50 else {
                throw fail("central directory entry \(k) of \(count) is damaged (at byte \(p))")
            }
            let flags = Self.u16(file, p + 8), method = Self.u16(file, p + 10)
            let crc = Self.u32(file, p + 16)
            var compressed = Int(Self.u32(file, p + 20)), size = Int(Self.u32(file, p + 24))
            let nameLength = Int(Self.u16(file, p + 28)), extraLength = Int(Self.u16(file, p + 30)), commentLength = Int(Self.u16(file, p + 32))
            var localOffset = Int(Self.u32(file, p + 42))
            let nameStart = p + 46, extraStart = nameStart + nameLength, next = extraStart + extraLength + commentLength
            guard next <= cdEnd else { throw fail("central directory entry \(k) runs past the directory") }
            let name = String(decoding: UnsafeRawBufferPointer(rebasing: file[nameStart..<extraStart]), as: UTF8.self)
            // zip64 extra field (id 1): the 64-bit values of the fields that hold 0xFFFFFFFF, in order.
            var e = extraStart
            while e + 4 <= extraStart + extraLength {
                let id = Self.u16(file, e), length = Int(Self.u16(file, e + 2))
                guard e + 4 + length <= extraStart + extraLength else { throw fail("\(name): damaged extra field") }
                if id == 1 {
                    var q = e + 4
                    func next64() throws -> Int {
                        guard q + 8 <= e + 4 + length else { throw fail("\(name): zip64 extra field too short") }
                        defer { q += 8 }
                        return try Self.checkedInt(Self.u64(file, q), fail("\(name): zip64 value out of range"))
                    }
                    if size == 0xFFFF_FFFF { size = try next64() }
                    if compressed == 0xFFFF_FFFF { compressed = try next64() }
                    if localOffset == 0xFFFF_FFFF { localOffset = try next64() }
                }
                e += 4 + length
            }
            guard flags & 1 == 0 else { throw fail("\(name) is encrypted") }
            guard method == 0 else {
                throw fail("\(name) is compressed (method \(method)); torch.save writes stored records only, so this file was re-packed by another tool. Unzip and re-zip it with `zip -0`, or re-save it with torch.save")
            }
            guard compressed == size else { throw fail("\(name): stored record with compressed size \(compressed) != size \(size)") }
            guard localOffset <= cdOffset - 30, Self.u32(file, localOffset) == 0x0403_4B50 else {
                throw fail("\(name): local header at byte \(localOffset) missing or outside the file")
            }
            let dataOffset = localOffset + 30 + Int(Self.u16(file, localOffset + 26)) + Int(Self.u16(file, localOffset + 28))
            guard dataOffset <= cdOffset, size <= cdOffset - dataOffset else {
                throw fail("\(name): \(size) bytes at offset \(dataOffset) run past the end of the data (truncated?)")
            }
            guard index[name] == nil else { throw fail("record \(name) appears twice") }
            index[name] = entries.count
            entries.append(Entry(name: name, dataOffset: dataOffset, size: size, crc32: crc))
            p = next
        }
        self.entries = entries
        indexByName = index
    }

    subscript(name: String) -> Entry? { indexByName[name].map { entries[$0] } }

    /// The record's bytes, after checking its CRC-32.
    func data(_ entry: Entry) throws -> UnsafeRawBufferPointer {
        let bytes = UnsafeRawBufferPointer(rebasing: file[entry.dataOffset..<(entry.dataOffset + entry.size)])
        let crc = CRC32.checksum(bytes)
        guard crc == entry.crc32 else {
            throw TorchCheckpointError(path, "zip: record \(entry.name) is corrupted (CRC-32 \(hex(crc)), the directory says \(hex(entry.crc32)))")
        }
        return bytes
    }

    private func hex(_ v: UInt32) -> String { "0x" + String(v, radix: 16) }

    static func u16(_ b: UnsafeRawBufferPointer, _ i: Int) -> UInt16 { UInt16(b[i]) | UInt16(b[i + 1]) << 8 }
    static func u32(_ b: UnsafeRawBufferPointer, _ i: Int) -> UInt32 { UInt32(u16(b, i)) | UInt32(u16(b, i + 2)) << 16 }
    static func u64(_ b: UnsafeRawBufferPointer, _ i: Int) -> UInt64 { UInt64(u32(b, i)) | UInt64(u32(b, i + 4)) << 32 }
    static func checkedInt(_ v: UInt64, _ error: @autoclosure () -> TorchCheckpointError) throws -> Int {
        guard v <= UInt64(Int.max / 2) else { throw error() }
        return Int(v)
    }
}

/// CRC-32 (IEEE, as zip uses), table driven.
enum CRC32 {
    static let table: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        table.withUnsafeBufferPointer { t in
            for b in bytes { c = t[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        }
        return c ^ 0xFFFF_FFFF
    }
}
