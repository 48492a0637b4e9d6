/// Writing JSON strings for the files the project writes by hand (manifests, rejects.jsonl,
/// annotation and tokenizer output). Safetensors headers have their own writer, byte-exact with
/// the reference implementation's.
public enum JSONText {
    /// A JSON string literal for `s`: UTF-8 kept; quotes, backslashes and control characters
    /// escaped, and also U+007F, U+0085, U+2028 and U+2029, so that one record stays on one line
    /// for every line splitter (Python's str.splitlines breaks at U+0085 and U+2028/9).
    public static func quote(_ s: String) -> String {
        var out = "\""
        out.reserveCapacity(s.utf8.count + 2)
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 || u.value == 0x7F || u.value == 0x85 || u.value == 0x2028 || u.value == 0x2029 {
                    out += "\\u" + JSONParser.hex(u.value, digits: 4)
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        out += "\""
        return out
    }
}
