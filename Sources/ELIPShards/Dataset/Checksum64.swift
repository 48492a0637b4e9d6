import Foundation

/// The project's 64-bit file checksum ("elip-checksum64"), a streaming Swift port of
/// `elip_checksum64` in Sources/CKernels/checksum.c (ELIPShards does not link CKernels). Same value
/// for the same bytes with seed 0, so shard checksums and checkpoint checksums are comparable
/// with each other. Not cryptographic: it detects corruption and truncation, not tampering.
///
/// Algorithm: four lanes absorb 32-byte blocks (8-byte little-endian words, multiply-xor-rotate),
/// are combined in a fixed order, then the remaining < 32 bytes are absorbed as little-endian
/// words into the combined value, followed by the total length and a final xor-shift.
public struct Checksum64: Sendable {
    public static let algorithm = "elip-checksum64"

    private var lanes: (UInt64, UInt64, UInt64, UInt64)
    private var pending: [UInt8] = []      // < 32 bytes not yet absorbed into the lanes
    private var length: UInt64 = 0

    public init(seed: UInt64 = 0) {
        lanes = (seed ^ 0x243F_6A88_85A3_08D3, seed ^ 0x1319_8A2E_0370_7344,
                 seed ^ 0xA409_3822_299F_31D0, seed ^ 0x082E_FA98_EC4E_6C89)
        pending.reserveCapacity(32)
    }

    @inline(__always)
    static func mix(_ h: UInt64, _ v: UInt64) -> UInt64 {
        var h = h ^ (v &* 0x9E37_79B9_7F4A_7C15)
        h = (h << 31) | (h >> 33)
        return h &* 0xC2B2_AE3D_27D4_EB4F
    }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard !bytes.isEmpty else { return }
        length &+= UInt64(bytes.count)
        var i = 0
        if !pending.isEmpty {
            let take = min(32 - pending.count, bytes.count)
            pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[0..<take]))
            i = take
            if pending.count == 32 {
                pending.withUnsafeBytes { absorbBlock($0, 0) }
                pending.removeAll(keepingCapacity: true)
            }
        }
        while i + 32 <= bytes.count {
            absorbBlock(bytes, i)
            i += 32
        }
        if i < bytes.count { pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[i...])) }
    }

    public mutating func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }

    @inline(__always)
    private mutating func absorbBlock(_ b: UnsafeRawBufferPointer, _ o: Int) {
        lanes.0 = Self.mix(lanes.0, UInt64(littleEndian: b.loadUnaligned(fromByteOffset: o, as: UInt64.self)))
        lanes.1 = Self.mix(lanes.1, UInt64(littleEndian: b.loadUnaligned(fromByteOffset: o + 8, as: UInt64.self)))
        lanes.2 = Self.mix(lanes.2, UInt64(littleEndian: b.loadUnaligned(fromByteOffset: o + 16, as: UInt64.self)))
        lanes.3 = Self.mix(lanes.3, UInt64(littleEndian: b.loadUnaligned(fromByteOffset: o + 24, as: UInt64.self)))
    }

    public func finalize() -> UInt64 {
        var acc = Self.mix(Self.mix(Self.mix(lanes.0, lanes.1), lanes.2), lanes.3)
        var tail: UInt64 = 0
        var shift: UInt64 = 0
        for b in pending {
            tail |= UInt64(b) << shift
            shift += 8
            if shift == 64 { acc = Self.mix(acc, tail); tail = 0; shift = 0 }
        }
        acc = Self.mix(acc, tail)
        acc = Self.mix(acc, length)
        acc ^= acc >> 29
        return acc
    }

    public static func hex(_ v: UInt64) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: max(0, 16 - s.count)) + s
    }

    public static func checksum(_ bytes: [UInt8], seed: UInt64 = 0) -> UInt64 {
        var h = Checksum64(seed: seed)
        h.update(bytes)
        return h.finalize()
    }

    /// Checksum and size of a file, read in chunks (works for files larger than memory).
    public static func file(atPath path: String) throws -> (checksum: UInt64, bytes: Int) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw DatasetError.io(path, "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var h = Checksum64()
        var total = 0
        let chunk = 1 << 22
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let n = read(fd, buffer.baseAddress, chunk)
            if n < 0 {
                if errno == EINTR { continue }
                throw DatasetError.io(path, "read failed: \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            h.update(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            total += n
        }
        return (h.finalize(), total)
    }
}
