/**
 * The gradient of tied input embeddings (the LM head's weight is the embedding table) on backends whose
 * tensors live in this process's memory, without a second dense `[vocab, hidden]` gradient.
 *
 * Left to the tape, a tied table gets two gradients that tfjs adds: the LM head's dense one and the
 * lookup's scatter-add, itself dense (a zero-filled `[vocab, hidden]` array with a few rows written).
 * For a 49k × 576 table that is two 113 MB arrays and a 113 MB add per step (~0.1 s of a 512-token
 * SmolLM2 step) to change a few hundred rows. Here the lookup hangs off a scalar "tap" instead of the
 * table: the tape gives the head's gradient for the table and the lookup's output gradient for the tap,
 * and `addInto` adds the looked-up rows' sums into the head's gradient in place.
 *
 * Same bits as the tape's way: each row's sum is segmentSumInto's (the same rows in the same order,
 * into a compact array instead of a full one), and head + sum is one float32 addition per element as
 * in the Add kernel (JS computes it in double and rounds once, which for a sum of two floats is the
 * correctly rounded float). Rows no token looked up keep the head's value (the tape added +0 there,
 * which only differs for a −0 gradient, and not in any later arithmetic).
 */
import * as tf from '../backend/tfjs.js';
import type { HostPasses } from '../backend/kernels.js';
import { segmentSumInto } from '../backend/segment-sum.js';
import { FopeifyError } from '../errors.js';

/** The tap's name in a step's gradient map (removed before the map leaves the model). */
export const EMBEDDING_TAP = '\u0000tied-embedding-tap';

export class TiedEmbeddingGrad {
  /** Differentiate with respect to this (a scalar the lookup depends on in the tape's eyes). */
  readonly tap = tf.scalar(0);
  private dy: Float32Array | null = null;

  constructor(private readonly host: HostPasses) {}

  /** Rows `ids` of the table, recorded on the tape as a function of the tap (not of the table). */
  lookup(table: tf.Tensor2D, ids: Int32Array): tf.Tensor2D {
    const idsT = tf.tensor1d(ids, 'int32');
    try {
      const op = tf.customGrad(((tap: tf.Scalar) => ({
        value: tf.gather(table, idsT),
        gradFunc: (dy: tf.Tensor) => {
          this.dy = (dy.dataSync() as Float32Array).slice();
          return tf.zerosLike(tap);
        },
      })) as unknown as Parameters<typeof tf.customGrad>[0]);
      return op(this.tap) as tf.Tensor2D;
    } finally {
      idsT.dispose();
    }
  }

  /**
   * The table's full gradient: `headGrad` (the LM head's, `[vocab, hidden]`, consumed) plus the rows of
   * the lookup's output gradient, each summed into its token's row. In place when the backend holds
   * `headGrad`'s buffer for it alone, else in a copy.
   */
  addInto(headGrad: tf.Tensor, ids: Int32Array): tf.Tensor {
    const dy = this.dy;
    this.dy = null;
    if (!dy) throw new FopeifyError('INTERNAL', 'the tied embedding lookup received no gradient');
    const [V, H] = headGrad.shape as [number, number];
    let grad = headGrad;
    let out = headGrad.dataSync() as Float32Array;
    if (!this.host.writableInPlace(headGrad)) {
      out = out.slice();
      grad = tf.tensor2d(out, [V, H]);
      headGrad.dispose();
    }
    const rows = ids.length;
    const slotOf = new Map<number, number>();
    const slots = new Int32Array(rows);
    for (let r = 0; r < rows; r++) {
      const id = ids[r]!;
      let s = slotOf.get(id);
      if (s === undefined) slotOf.set(id, (s = slotOf.size));
      slots[r] = s;
    }
    const sums = new Float32Array(slotOf.size * H);
    segmentSumInto(dy, slots, rows, H, slotOf.size, sums);
    for (const [id, s] of slotOf) {
      if (id < 0 || id >= V) continue; // never: the batch's ids are valid (padding reads id 0)
      const o = id * H;
      const so = s * H;
      for (let j = 0; j < H; j++) out[o + j] = out[o + j]! + sums[so + j]!;
    }
    return grad;
  }

  dispose(): void {
    this.tap.dispose();
    this.dy = null;
  }
}
