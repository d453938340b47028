// Arrays from Python arrive as {dtype, shape, data} with data a binary buffer
// (a DataView, ArrayBuffer or typed array, depending on the widget manager).
const TYPES = {
  uint8: Uint8Array, int8: Int8Array, uint16: Uint16Array, int16: Int16Array,
  uint32: Uint32Array, int32: Int32Array, float32: Float32Array, float64: Float64Array,
};

export function unpack(packed) {
  if (!packed || !packed.data) return null;
  const Type = TYPES[packed.dtype];
  if (!Type) throw new Error(`unknown dtype ${packed.dtype}`);
  const data = packed.data;
  const buffer = data.buffer !== undefined ? data.buffer : data;
  const offset = data.byteOffset || 0;
  const length = (data.byteLength !== undefined ? data.byteLength : buffer.byteLength) / Type.BYTES_PER_ELEMENT;
  if (offset % Type.BYTES_PER_ELEMENT === 0) return new Type(buffer, offset, length);
  // Unaligned views cannot back a typed array directly: copy.
  return new Type(buffer.slice(offset, offset + length * Type.BYTES_PER_ELEMENT));
}

// Row r of a 2-D packed array as a subarray.
export function row(array, shape, r) {
  const width = shape[1];
  return array.subarray(r * width, (r + 1) * width);
}

// A custom message's buffers back at the places Python's split_buffers took them from.
export function putBuffers(msg, buffers) {
  (msg.buffer_paths || []).forEach((path, k) => {
    let at = msg;
    for (const key of path.slice(0, -1)) at = at[key];
    at[path[path.length - 1]] = buffers[k];
  });
  return msg;
}
