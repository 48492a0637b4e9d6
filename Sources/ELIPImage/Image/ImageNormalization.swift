/// CLIP normalisation of ALBEF's image transforms.
public enum ImageNormalization {
    public static let mean: [Float] = [0.48145466, 0.4578275, 0.40821073]
    public static let std: [Float] = [0.26862954, 0.26130258, 0.27577711]

    /// HWC bytes -> normalised CHW floats, appended to `out`.
    public static func append(pixels: [UInt8], width: Int, height: Int, to out: inout [Float]) {
        let plane = width * height
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: 3 * plane))
        for i in 0..<plane {
            for c in 0..<3 {
                out[start + c * plane + i] = (Float(pixels[3 * i + c]) / 255 - mean[c]) / std[c]
            }
        }
    }
}
