/** Transposition of row-major matrices, for tensors read from disk straight into another layout. */

/** The typed arrays tensors are read into: raw 16-bit floats (bf16/f16) or float32. */
export type MatrixData = Float32Array | Uint16Array;

/** Transpose a row-major `[rows, cols]` matrix into a new array of the same type (blocked for the cache). */
export function transpose2d<T extends MatrixData>(data: T, rows: number, cols: number): T {
  const out = (data instanceof Float32Array ? new Float32Array(data.length) : new Uint16Array(data.length)) as T;
  transposeRowsInto(data, rows, cols, out, rows, 0);
  return out;
}

/**
 * Rows `first .. first+rows−1` of a `[totalRows, cols]` matrix, given as the row-major `[rows, cols]`
 * `data`, written transposed into `out` (`[cols, totalRows]`): a matrix transposed piece by piece as it is
 * read. Blocked for the cache.
 */
export function transposeRowsInto<T extends MatrixData>(data: T, rows: number, cols: number, out: T, totalRows: number, first: number): void {
  const B = 64;
  for (let r0 = 0; r0 < rows; r0 += B) {
    const r1 = Math.min(rows, r0 + B);
    for (let c0 = 0; c0 < cols; c0 += B) {
      const c1 = Math.min(cols, c0 + B);
      for (let r = r0; r < r1; r++) for (let c = c0; c < c1; c++) out[c * totalRows + first + r] = data[r * cols + c]!;
    }
  }
}
