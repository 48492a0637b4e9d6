// GIF decoding (first frame) through giflib's record-level API: only the records up to the first
// image are read, so an animation of many frames costs no more than its first one. giflib reports
// errors by return code (no longjmp), so it is called directly from Swift.
//
// Colours as PIL's `Image.open(p).convert("RGB")` gives them for the first frame (ALBEF's loader):
// the frame's palette indices (local colour table, else the global one) looked up as RGB; canvas
// pixels outside the frame take the transparency index when the frame's graphic control extension
// declares one, else index 0 (Pillow's GifImagePlugin.load_prepare fills the canvas that way);
// transparency itself is dropped (convert("RGB") of a "P" image ignores it), not composited.
// Indices beyond the colour table read as black (Pillow pads the palette with zeros).

import CGIF
import Foundation

public enum GIF {
    /// Canvas (logical screen) width and height from the 13-byte header, without decoding.
    public static func header(_ bytes: [UInt8]) throws -> (width: Int, height: Int) {
        guard bytes.count >= 6, bytes[0..<6].elementsEqual(Array("GIF87a".utf8)) || bytes[0..<6].elementsEqual(Array("GIF89a".utf8)) else {
            throw ImageError.wrongFormat(expected: "GIF", detected: sniffImageFormat(bytes))
        }
        guard bytes.count >= 10 else { throw ImageError.truncated("GIF ends inside its header (\(bytes.count) bytes)") }
        return (Int(bytes[6]) | Int(bytes[7]) << 8, Int(bytes[8]) | Int(bytes[9]) << 8)
    }

    private final class Source {
        let bytes: [UInt8]
        var position = 0
        init(_ bytes: [UInt8]) { self.bytes = bytes }
    }

    /// Decodes the first frame to 8-bit RGB on the canvas size.
    public static func decode(_ bytes: [UInt8], maxPixels: Int = 100_000_000) throws -> RGBImage {
        let (width, height) = try header(bytes)
        guard width > 0, height > 0 else { throw ImageError.corrupt("GIF canvas is \(width)x\(height)") }
        guard width * height <= maxPixels else { throw ImageError.tooLarge(width: width, height: height, limit: maxPixels) }
        let source = Source(bytes)
        let read: InputFunc = { gif, destination, count in
            guard let gif, let destination, count >= 0, let user = gif.pointee.UserData else { return 0 }
            let s = Unmanaged<Source>.fromOpaque(user).takeUnretainedValue()
            let n = min(Int(count), s.bytes.count - s.position)
            s.bytes.withUnsafeBufferPointer { destination.update(from: $0.baseAddress! + s.position, count: n) }
            s.position += n
            return Int32(n)
        }
        var error: Int32 = 0
        guard let gif = withExtendedLifetime(source, { DGifOpen(Unmanaged.passUnretained(source).toOpaque(), read, &error) }) else {
            throw failure(error, "opening")
        }
        defer { var e: Int32 = 0; DGifCloseFile(gif, &e) }
        return try withExtendedLifetime(source) { try firstFrame(gif, width: width, height: height) }
    }

    private static func failure(_ code: Int32, _ stage: String) -> ImageError {
        let text = GifErrorString(code).map { String(cString: $0) } ?? "error \(code)"
        // D_GIF_ERR_READ_FAILED (102) and D_GIF_ERR_EOF_TOO_SOON (113): the data ended.
        if code == 102 || code == 113 { return .truncated("GIF ends while \(stage): \(text)") }
        return .corrupt("GIF \(stage): \(text)")
    }

    private static func firstFrame(_ gif: UnsafeMutablePointer<GifFileType>, width: Int, height: Int) throws -> RGBImage {
        var transparent: Int? = nil
        while true {
            var type = UNDEFINED_RECORD_TYPE
            guard DGifGetRecordType(gif, &type) == GIF_OK else { throw failure(gif.pointee.Error, "reading a record") }
            switch type {
            case EXTENSION_RECORD_TYPE:
                var code: Int32 = 0
                var block: UnsafeMutablePointer<GifByteType>? = nil
                guard DGifGetExtension(gif, &code, &block) == GIF_OK else { throw failure(gif.pointee.Error, "reading an extension") }
                // Graphic control extension: [length 4, flags, delay lo, delay hi, transparent index].
                if code == GRAPHICS_EXT_FUNC_CODE, let b = block, b[0] >= 4, b[1] & 1 != 0 { transparent = Int(b[4]) }
                while block != nil {
                    guard DGifGetExtensionNext(gif, &block) == GIF_OK else { throw failure(gif.pointee.Error, "reading an extension") }
                }
            case IMAGE_DESC_RECORD_TYPE:
                guard DGifGetImageDesc(gif) == GIF_OK else { throw failure(gif.pointee.Error, "reading the image descriptor") }
                return try frame(gif, width: width, height: height, transparent: transparent)
            case TERMINATE_RECORD_TYPE:
                throw ImageError.corrupt("GIF has no image")
            default:
                throw ImageError.corrupt("GIF record of unknown type \(type.rawValue)")
            }
        }
    }

    private static func frame(_ gif: UnsafeMutablePointer<GifFileType>, width: Int, height: Int, transparent: Int?) throws -> RGBImage {
        let desc = gif.pointee.Image
        let left = Int(desc.Left), top = Int(desc.Top), fw = Int(desc.Width), fh = Int(desc.Height)
        guard fw > 0, fh > 0, fw <= 65535, fh <= 65535 else { throw ImageError.corrupt("GIF frame is \(fw)x\(fh)") }
        guard let map = desc.ColorMap ?? gif.pointee.SColorMap, let colors = map.pointee.Colors else {
            throw ImageError.corrupt("GIF has neither a local nor a global colour table")
        }
        let colorCount = Int(map.pointee.ColorCount)
        var indices = [UInt8](repeating: UInt8(truncatingIfNeeded: transparent ?? 0), count: width * height)
        var line = [GifPixelType](repeating: 0, count: fw)
        // Interlaced frames store rows in four passes: every 8th from 0, every 8th from 4, every 4th from 2, every 2nd from 1.
        let rows: [Int] = desc.Interlace
            ? [(0, 8), (4, 8), (2, 4), (1, 2)].flatMap { start, step in Array(stride(from: start, to: fh, by: step)) }
            : Array(0..<fh)
        for y in rows {
            guard DGifGetLine(gif, &line, Int32(fw)) == GIF_OK else { throw failure(gif.pointee.Error, "reading row \(y) of the frame") }
            let cy = top + y
            guard cy < height else { continue }  // a frame larger than the canvas is clipped to it
            for x in 0..<fw where left + x < width { indices[cy * width + left + x] = line[x] }
        }
        var pixels = [UInt8](repeating: 0, count: width * height * 3)
        for (i, index) in indices.enumerated() where Int(index) < colorCount {
            let c = colors[Int(index)]
            pixels[3 * i] = c.Red
            pixels[3 * i + 1] = c.Green
            pixels[3 * i + 2] = c.Blue
        }
        return try RGBImage(width: width, height: height, pixels: pixels)
    }
}
