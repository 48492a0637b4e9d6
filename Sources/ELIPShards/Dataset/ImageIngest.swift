import ELIPImage
import Foundation

/// A reason-tagged failure of one item (never thrown across the build: it becomes a reject).
public struct IngestFailure: Error, Equatable, Sendable {
    public var reason: RejectReason
    public var detail: String
    public init(_ reason: RejectReason, _ detail: String) {
        self.reason = reason
        self.detail = detail
    }
}

/// The stored form of one image.
public struct IngestedImage: Sendable {
    public var jpeg: [UInt8]
    public var width: Int
    public var height: Int
    public var resized: Bool
}

/// Turns arbitrary input bytes into the dataset's JPEG, or a classified failure. Owns a JPEG
/// decoder and encoder: one per thread.
///
/// Order of checks: empty -> container sniffing (JPEG; PNG, GIF (first frame), WebP (still) and BMP
/// unless the policy is JPEG-only; TIFF, HEIF, JPEG 2000 named as unsupported; anything else "not
/// an image") -> header dimensions
/// against the pixel limit BEFORE any pixel buffer exists (decompression bombs, even when the rest
/// of the file is missing) -> decode (EXIF orientation applied, grey/CMYK -> RGB, truncation
/// rejected) -> shorter side resized down to the policy size (never up) -> JPEG re-encode.
public final class ImageIngestor {
    public let policy: ImagePolicy
    private let decoder: JPEGDecoder
    private let encoder: JPEGEncoder

    public init(policy: ImagePolicy) throws {
        self.policy = policy
        decoder = try JPEGDecoder()
        encoder = try JPEGEncoder()
    }

    public func ingest(_ bytes: [UInt8]) -> Result<IngestedImage, IngestFailure> {
        if bytes.isEmpty { return .failure(IngestFailure(.emptyFile, "zero bytes")) }
        let format = sniffImageFormat(bytes)
        var image: RGBImage
        do {
            switch format {
            case .jpeg:
                if let (w, h) = Self.peekJPEGSize(bytes), let f = limitFailure(w, h) { return .failure(f) }
                image = try decoder.decode(bytes, options: JPEGDecodeOptions(maxPixels: policy.maxPixels, applyEXIFOrientation: true))
            case .png:
                if policy.onlyJPEG { return .failure(IngestFailure(.unsupportedFormat, "PNG (only JPEG is accepted with --only-jpeg)")) }
                let h = try PNG.header(bytes)
                if let f = limitFailure(h.width, h.height) { return .failure(f) }
                image = try PNG.decode(bytes, options: PNGDecodeOptions(maxPixels: policy.maxPixels))
            case .other:
                guard let name = Self.otherFormatName(bytes) else {
                    return .failure(IngestFailure(.notAnImage, "unrecognised content (first bytes \(Self.hexPrefix(bytes)))"))
                }
                guard let decodable = Self.decodableOther(name) else { return .failure(IngestFailure(.unsupportedFormat, name)) }
                if policy.onlyJPEG { return .failure(IngestFailure(.unsupportedFormat, "\(name) (only JPEG is accepted with --only-jpeg)")) }
                let (w, h) = try decodable.header(bytes)
                if let f = limitFailure(w, h) { return .failure(f) }
                image = try decodable.decode(bytes, policy.maxPixels)
            }
        } catch let e as ImageError {
            return .failure(Self.classify(e))
        } catch {
            return .failure(IngestFailure(.corruptImage, "\(error)"))
        }
        guard image.width > 0, image.height > 0 else { return .failure(IngestFailure(.corruptImage, "empty image")) }
        var resized = false
        do {
            if min(image.width, image.height) > policy.shorterSide {
                image = try image.shorterSide(to: policy.shorterSide)
                resized = true
            }
        } catch {
            return .failure(IngestFailure(.encodeFailed, "resize failed: \(error)"))
        }
        do {
            let jpeg = try encoder.encode(image, quality: policy.quality, subsampling: .s420)
            return .success(IngestedImage(jpeg: jpeg, width: image.width, height: image.height, resized: resized))
        } catch {
            return .failure(IngestFailure(.encodeFailed, "\(error)"))
        }
    }

    private func limitFailure(_ w: Int, _ h: Int) -> IngestFailure? {
        let (p, overflow) = w.multipliedReportingOverflow(by: h)
        if overflow || p > policy.maxPixels {
            return IngestFailure(.tooManyPixels, "header declares \(w)x\(h) pixels, limit \(policy.maxPixels)")
        }
        return nil
    }

    static func classify(_ e: ImageError) -> IngestFailure {
        switch e {
        case .empty: return IngestFailure(.emptyFile, e.description)
        case .wrongFormat: return IngestFailure(.notAnImage, e.description)
        case .truncated: return IngestFailure(.truncatedImage, e.description)
        case .tooLarge: return IngestFailure(.tooManyPixels, e.description)
        case .unsupported: return IngestFailure(.unsupportedFormat, e.description)
        case .corrupt, .invalidImage: return IngestFailure(.corruptImage, e.description)
        case .encodeFailed, .io: return IngestFailure(.encodeFailed, e.description)
        }
    }

    /// Width and height from the first SOFn marker, walking only the marker segments before it
    /// (bounds-checked); nil if none is found. Unlike a full header scan this succeeds on a file
    /// that stops right after its frame header, so a bomb is classified as a bomb.
    static func peekJPEGSize(_ b: [UInt8]) -> (Int, Int)? {
        var pos = 2
        let n = b.count
        while pos + 4 <= n {
            guard b[pos] == 0xFF else { pos += 1; continue }
            let marker = b[pos + 1]
            if marker == 0xFF { pos += 1; continue }
            if marker == 0xD8 || marker == 0x01 || (0xD0...0xD7).contains(marker) { pos += 2; continue }
            if marker == 0xDA || marker == 0xD9 { return nil }
            let len = Int(b[pos + 2]) << 8 | Int(b[pos + 3])
            guard len >= 2 else { return nil }
            let isSOF = (0xC0...0xCF).contains(marker) && marker != 0xC4 && marker != 0xC8 && marker != 0xCC
            if isSOF {
                guard pos + 9 <= n else { return nil }
                let h = Int(b[pos + 5]) << 8 | Int(b[pos + 6])
                let w = Int(b[pos + 7]) << 8 | Int(b[pos + 8])
                return (w, h)
            }
            pos += 2 + len
        }
        return nil
    }

    /// Header reader and decoder of the formats besides JPEG and PNG that are decoded by default.
    static func decodableOther(_ name: String) -> (header: ([UInt8]) throws -> (Int, Int), decode: ([UInt8], Int) throws -> RGBImage)? {
        switch name {
        case "GIF": return ({ try GIF.header($0) }, { try GIF.decode($0, maxPixels: $1) })
        case "WebP": return ({ let h = try WebP.header($0); return (h.width, h.height) }, { try WebP.decode($0, maxPixels: $1) })
        case "BMP": return ({ try BMP.header($0) }, { try BMP.decode($0, maxPixels: $1) })
        default: return nil
        }
    }

    static func otherFormatName(_ b: [UInt8]) -> String? {
        func starts(_ s: [UInt8], at o: Int = 0) -> Bool { b.count >= o + s.count && Array(b[o..<(o + s.count)]) == s }
        if starts(Array("GIF87a".utf8)) || starts(Array("GIF89a".utf8)) { return "GIF" }
        if starts(Array("RIFF".utf8)) && starts(Array("WEBP".utf8), at: 8) { return "WebP" }
        if starts([0x42, 0x4D]) && b.count >= 18 { return "BMP" }
        if starts([0x49, 0x49, 0x2A, 0x00]) || starts([0x4D, 0x4D, 0x00, 0x2A]) { return "TIFF" }
        if starts(Array("ftyp".utf8), at: 4) {
            let brand = b.count >= 12 ? String(decoding: b[8..<12], as: UTF8.self) : ""
            return "ISO-BMFF image (\(brand); HEIF/AVIF)"
        }
        if starts([0x00, 0x00, 0x00, 0x0C, 0x6A, 0x50]) || starts([0xFF, 0x4F, 0xFF, 0x51]) { return "JPEG 2000" }
        return nil
    }

    static func hexPrefix(_ b: [UInt8]) -> String {
        b.prefix(8).map { String(format: "%02x", $0) }.joined(separator: " ")
    }
}
