// JPEG marker parsing (bounds-checked, no libjpeg): the header walk to SOS, Exif orientation, EOI check.

import Foundation

enum JPEGMarkers {
    static func checkMagic(_ raw: UnsafeRawBufferPointer) throws {
        if raw.isEmpty { throw ImageError.empty }
        let fmt = sniffImageFormat(raw)
        guard fmt == .jpeg else { throw ImageError.wrongFormat(expected: "JPEG", detected: fmt) }
    }

    @inline(__always)
    static func be16(_ raw: UnsafeRawBufferPointer, _ i: Int) -> Int {
        Int(raw[i]) << 8 | Int(raw[i + 1])
    }

    /// Walks the marker segments from SOI to SOS. Throws `.truncated` if the data ends first and
    /// `.corrupt` on structural errors.
    static func scan(_ raw: UnsafeRawBufferPointer) throws -> JPEGHeaderInfo {
        let n = raw.count
        var pos = 2                       // after FF D8
        var sof: (marker: UInt8, precision: Int, height: Int, width: Int, comps: Int)? = nil
        var orientation: Int? = nil
        var sawExif = false
        var adobe = false
        while true {
            // Find the next marker. libjpeg skips (and warns about) garbage bytes; so do we.
            while pos < n && raw[pos] != 0xFF { pos += 1 }
            while pos < n && raw[pos] == 0xFF { pos += 1 }
            guard pos < n else { throw ImageError.truncated("data ends before the image scan (SOS)") }
            let marker = raw[pos]
            let markerStart = pos - 1
            pos += 1
            switch marker {
            case 0x00:
                throw ImageError.corrupt("invalid marker FF 00 in header")
            case 0x01, 0xD0...0xD7:
                continue                   // standalone markers, no length
            case 0xD8:
                throw ImageError.corrupt("duplicate SOI marker")
            case 0xD9:
                throw ImageError.corrupt("EOI before any image data")
            default:
                break
            }
            guard pos + 2 <= n else { throw ImageError.truncated("data ends inside a marker length") }
            let len = be16(raw, pos)
            guard len >= 2 else { throw ImageError.corrupt(String(format: "marker 0x%02X has length %d", marker, len)) }
            let payload = pos + 2
            let end = pos + len
            guard end <= n else {
                throw ImageError.truncated(String(format: "marker 0x%02X segment extends past the end of data", marker))
            }
            let plen = end - payload
            switch marker {
            case 0xC0...0xC3, 0xC5...0xC7, 0xC9...0xCB, 0xCD...0xCF:
                if sof == nil {
                    guard plen >= 6 else { throw ImageError.corrupt("SOF segment too short") }
                    let comps = Int(raw[payload + 5])
                    guard plen >= 6 + 3 * comps else { throw ImageError.corrupt("SOF component table too short") }
                    sof = (marker, Int(raw[payload]), be16(raw, payload + 1), be16(raw, payload + 3), comps)
                } else {
                    throw ImageError.corrupt("more than one SOF marker")
                }
            case 0xE1:
                if !sawExif, plen >= 6,
                   raw[payload] == 0x45, raw[payload + 1] == 0x78, raw[payload + 2] == 0x69,
                   raw[payload + 3] == 0x66, raw[payload + 4] == 0, raw[payload + 5] == 0 {
                    sawExif = true
                    orientation = exifOrientation(UnsafeRawBufferPointer(rebasing: raw[(payload + 6)..<end]))
                }
            case 0xEE:
                if plen >= 5, raw[payload] == 0x41, raw[payload + 1] == 0x64, raw[payload + 2] == 0x6F,
                   raw[payload + 3] == 0x62, raw[payload + 4] == 0x65 {
                    adobe = true
                }
            case 0xDA:
                guard let s = sof else { throw ImageError.corrupt("SOS before SOF") }
                return JPEGHeaderInfo(width: s.width, height: s.height, components: s.comps,
                                      precision: s.precision, sofMarker: s.marker,
                                      exifOrientation: orientation, hasAdobeMarker: adobe,
                                      sosOffset: markerStart)
            default:
                break
            }
            pos = end
        }
    }

    /// Parses the TIFF structure of an Exif payload (after "Exif\0\0") for IFD0 tag 0x0112.
    /// Every read is bounds-checked; malformed data yields nil.
    static func exifOrientation(_ t: UnsafeRawBufferPointer) -> Int? {
        let n = t.count
        guard n >= 8 else { return nil }
        let little: Bool
        if t[0] == 0x49 && t[1] == 0x49 { little = true } else if t[0] == 0x4D && t[1] == 0x4D { little = false } else { return nil }
        func u16(_ i: Int) -> Int? {
            guard i >= 0, i + 2 <= n else { return nil }
            return little ? Int(t[i]) | Int(t[i + 1]) << 8 : Int(t[i]) << 8 | Int(t[i + 1])
        }
        func u32(_ i: Int) -> Int? {
            guard i >= 0, i + 4 <= n else { return nil }
            let b0 = Int(t[i]), b1 = Int(t[i + 1]), b2 = Int(t[i + 2]), b3 = Int(t[i + 3])
            return little ? b0 | b1 << 8 | b2 << 16 | b3 << 24 : b0 << 24 | b1 << 16 | b2 << 8 | b3
        }
        guard u16(2) == 42, let ifd = u32(4), let count = u16(ifd) else { return nil }
        for k in 0..<count {
            let e = ifd + 2 + 12 * k
            guard let tag = u16(e), let type = u16(e + 2) else { return nil }
            guard tag == 0x0112 else { continue }
            let value: Int?
            switch type {
            case 3: value = u16(e + 8)        // SHORT, stored left-justified in the value field
            case 4: value = u32(e + 8)        // LONG (non-standard but seen in the wild)
            default: value = nil
            }
            if let v = value, (1...8).contains(v) { return v }
            return nil
        }
        return nil
    }

    /// True if, walking the entropy-coded data and any inter-scan segments from the SOS marker, an
    /// EOI marker is found before the data runs out. (Entropy data cannot contain FF D9: 0xFF bytes
    /// are followed by a stuffed 0x00, a restart marker or a real marker.)
    static func hasEOIAfterScan(_ raw: UnsafeRawBufferPointer, sosOffset: Int) -> Bool {
        let n = raw.count
        var pos = sosOffset
        while pos + 1 < n {
            guard raw[pos] == 0xFF else { pos += 1; continue }
            let m = raw[pos + 1]
            switch m {
            case 0x00, 0xD0...0xD7, 0x01:
                pos += 2
            case 0xFF:
                pos += 1
            case 0xD9:
                return true
            default:
                // A marker segment with a length (SOS, DHT, DQT, DRI, APPn, COM between scans).
                guard pos + 4 <= n else { return false }
                let len = be16(raw, pos + 2)
                guard len >= 2 else { return false }
                pos += 2 + len
            }
        }
        return false
    }
}
