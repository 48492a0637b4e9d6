// WebP decoding through libwebp (lossy and lossless, still images). Alpha is dropped, as PIL's
// `convert("RGB")` drops it for an RGBA image (no compositing). Animated WebP is refused as
// unsupported (WebPDecode reads still images only).

import CWebP
import Foundation

public enum WebP {
    /// Width, height and whether it is animated, from the headers (no pixel buffer).
    public static func header(_ bytes: [UInt8]) throws -> (width: Int, height: Int, animated: Bool) {
        var features = WebPBitstreamFeatures()
        let status = bytes.withUnsafeBufferPointer { WebPGetFeatures($0.baseAddress, $0.count, &features) }
        switch status {
        case VP8_STATUS_OK: return (Int(features.width), Int(features.height), features.has_animation != 0)
        case VP8_STATUS_NOT_ENOUGH_DATA: throw ImageError.truncated("WebP ends inside its headers")
        case VP8_STATUS_UNSUPPORTED_FEATURE: throw ImageError.unsupported("WebP uses a feature libwebp does not support")
        default: throw ImageError.corrupt("WebP headers are invalid (libwebp status \(status.rawValue))")
        }
    }

    public static func decode(_ bytes: [UInt8], maxPixels: Int = 100_000_000) throws -> RGBImage {
        let (width, height, animated) = try header(bytes)
        guard !animated else { throw ImageError.unsupported("animated WebP (only still WebP images are decoded)") }
        guard width > 0, height > 0 else { throw ImageError.corrupt("WebP is \(width)x\(height)") }
        guard width * height <= maxPixels else { throw ImageError.tooLarge(width: width, height: height, limit: maxPixels) }
        var w: Int32 = 0, h: Int32 = 0
        guard let rgb = bytes.withUnsafeBufferPointer({ WebPDecodeRGB($0.baseAddress, $0.count, &w, &h) }) else {
            // The headers were fine, so the image data is short or damaged.
            throw ImageError.corrupt("WebP image data could not be decoded (truncated or damaged)")
        }
        defer { WebPFree(rgb) }
        guard Int(w) == width, Int(h) == height else { throw ImageError.corrupt("WebP decoded to \(w)x\(h), headers said \(width)x\(height)") }
        return try RGBImage(width: width, height: height, pixels: Array(UnsafeBufferPointer(start: rgb, count: width * height * 3)))
    }
}
