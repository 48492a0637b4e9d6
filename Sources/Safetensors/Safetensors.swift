// Safetensors file format: reader and writer (no tensor-engine dependency).
//
// Layout of a file: an 8-byte little-endian u64 N, then N bytes of UTF-8 JSON header
//   {"__metadata__": {"k": "v"}, "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [b, e]}, ...}
// then the data buffer. Offsets are relative to the start of the data buffer (byte 8 + N); tensor
// data is row-major little-endian.
//
// - `SafetensorsFile` memory-maps a file read-only and validates the whole header up front, so a
//   damaged or hostile file is reported as a thrown `SafetensorsError`, never a trap.
// - `SafetensorsWriter` collects tensors and streams them to disk, atomically by default.
//
// Every public type carries the `Safetensors` prefix so that importing this module next to the
// tensor engine (which has its own tensor and dtype vocabulary) never makes a name ambiguous.
