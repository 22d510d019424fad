/**
 * The embedding table's gradient on a device backend: `dE[v] = Σ dy[i]` over the rows i whose token is
 * v, without reading dy back and in a fixed order. tf.unsortedSegmentSum would do it in one op, but on
 * webgpu it adds with float atomics, whose order (and so the last bits) changes from run to run, which
 * would break exact resume. The token ids are known here, so the sum is planned in JS: the k-th
 * occurrence of every distinct token is gathered in pass k (rows in sequence order) and added to a
 * `[distinct, H]` accumulator, which one scatter (distinct indices: no two writes meet) places in
 * `[V, H]`. Passes = the largest count of one token; each moves `distinct × H` floats.
 */
import * as tf from '../backend/tfjs.js';

/** Per pass, the row each distinct token takes (or `rows`: a zero row), and the distinct tokens. */
export function occurrencePasses(ids: Int32Array): { tokens: Int32Array; passes: Int32Array[] } {
  const slot = new Map<number, number>();
  const occurrences: number[][] = [];
  ids.forEach((id, row) => {
    let s = slot.get(id);
    if (s === undefined) {
      s = occurrences.length;
      slot.set(id, s);
      occurrences.push([]);
    }
    occurrences[s]!.push(row);
  });
  const depth = occurrences.reduce((m, o) => Math.max(m, o.length), 0);
  const passes = Array.from({ length: depth }, (_, k) => Int32Array.from(occurrences, (o) => o[k] ?? ids.length));
  return { tokens: Int32Array.from(slot.keys()), passes };
}

/** `[V, H]` gradient of gathering rows `ids` of a `[V, H]` table, from dy `[rows, H]`. */
export function embeddingGradOnDevice(dy: tf.Tensor, ids: Int32Array, V: number): tf.Tensor2D {
  const H = dy.shape[dy.shape.length - 1]!;
  const { tokens, passes } = occurrencePasses(ids);
  return tf.tidy(() => {
    const padded = tf.concat([tf.reshape(dy, [ids.length, H]), tf.zeros([1, H])], 0);
    let acc: tf.Tensor | null = null;
    for (const rows of passes) {
      const part = tf.gather(padded, tf.tensor1d(rows, 'int32'));
      acc = acc ? tf.add(acc, part) : part;
    }
    return tf.scatterND(tf.tensor2d(tokens, [tokens.length, 1], 'int32'), acc!, [V, H]) as tf.Tensor2D;
  });
}
