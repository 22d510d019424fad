/**
 * The WebAssembly module behind vector-math.ts, emitted byte by byte (no toolchain, no dependency):
 * a tiny emitter and the SIMD functions (exp, softmax passes, SwiGLU) it assembles.
 *
 * exp is Cephes' `expf` (range reduction by ln 2 in two parts, degree-6 polynomial, scaling by 2^k
 * through the exponent bits): within 2 ulp of the float32 exp; below −87.3 (and for −∞) the result is
 * exactly 0, so masked entries can be written as −∞.
 */

const LOG2E = 1.44269504088896341;
const C1 = 0.693359375;
const C2 = -2.12194440e-4;
const POLY = [1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1];
const HI = 88.3762626647949;
export const LO = -87.33654475;

// ---- a tiny WebAssembly emitter ----------------------------------------------------------------

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}

function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

const simd = (op: number) => [0xfd, ...uleb(op)];
const get = (i: number) => [0x20, i];
const set = (i: number) => [0x21, i];
const i32c = (v: number) => [0x41, ...sleb(v)];
const f32c = (v: number) => [0x43, ...new Uint8Array(Float32Array.of(v).buffer)];
const v128f = (v: number) => [0xfd, 0x0c, ...new Uint8Array(new Float32Array(4).fill(v).buffer)];
const v128i = (v: number) => [0xfd, 0x0c, ...new Uint8Array(new Int32Array(4).fill(v).buffer)];
const I = {
  add: [0x6a],
  mul: [0x6c],
  shl: [0x74],
  geU: [0x4f],
};
const F = { load: [0x2a, 2, 0], store: [0x38, 2, 0], add: [0x92], max: [0x97], eq: [0x5b] };
const V = {
  load: [...simd(0x00), 4, 0],
  store: [...simd(0x0b), 4, 0],
  splat: simd(0x13),
  lane: (i: number) => [...simd(0x1f), i],
  ge: simd(0x46),
  and: simd(0x4e),
  nearest: simd(0x6a),
  neg: simd(0xe1),
  add: simd(0xe4),
  sub: simd(0xe5),
  mul: simd(0xe6),
  div: simd(0xe7),
  min: simd(0xe8),
  max: simd(0xe9),
  truncSat: simd(0xf8),
  iadd: simd(0xae),
  ishl: simd(0xab),
};
const block = (...body: number[][]) => [0x02, 0x40, ...body.flat(), 0x0b];
const loop = (...body: number[][]) => [0x03, 0x40, ...body.flat(), 0x0b];
const ifElse = (then: number[][], otherwise: number[][]) => [0x04, 0x40, ...then.flat(), 0x05, ...otherwise.flat(), 0x0b];

/** v128 on the stack → exp(v128) on the stack; uses v128 locals x, k, r, y. */
function expOf(x: number, k: number, r: number, y: number): number[] {
  return [
    ...set(x),
    ...get(x), ...v128f(HI), ...V.min, ...v128f(LO), ...V.max, ...set(r), // r = clamp(x)
    ...get(r), ...v128f(LOG2E), ...V.mul, ...V.nearest, ...set(k),
    ...get(r), ...get(k), ...v128f(C1), ...V.mul, ...V.sub, ...get(k), ...v128f(C2), ...V.mul, ...V.sub, ...set(r),
    ...get(r), ...v128f(POLY[0]!), ...V.mul, ...v128f(POLY[1]!), ...V.add,
    ...get(r), ...V.mul, ...v128f(POLY[2]!), ...V.add,
    ...get(r), ...V.mul, ...v128f(POLY[3]!), ...V.add,
    ...get(r), ...V.mul, ...v128f(POLY[4]!), ...V.add,
    ...get(r), ...V.mul, ...v128f(POLY[5]!), ...V.add,
    ...get(r), ...get(r), ...V.mul, ...V.mul, ...get(r), ...V.add, ...v128f(1), ...V.add, ...set(y),
    ...get(k), ...V.truncSat, ...v128i(127), ...V.iadd, ...i32c(23), ...V.ishl, // 2^k
    ...get(y), ...V.mul,
    ...get(x), ...v128f(LO), ...V.ge, ...V.and, // exactly 0 below LO (and for −∞, NaN)
  ];
}

/** Horizontal reduction of a v128 local with a binary f32 op. */
function horizontal(v: number, op: number[]): number[] {
  return [...get(v), ...V.lane(0), ...get(v), ...V.lane(1), ...op, ...get(v), ...V.lane(2), ...op, ...get(v), ...V.lane(3), ...op];
}

interface Fn {
  params: number;
  locals: [count: number, type: number][];
  code: number[];
}

const I32 = 0x7f;
const F32 = 0x7d;
const V128 = 0x7b;

/** exp(p, n): in place over n floats (n a multiple of 4). */
export function fnExp(): Fn {
  const [P, N, END, X, K, R, Y] = [0, 1, 2, 3, 4, 5, 6];
  return {
    params: 2,
    locals: [[1, I32], [4, V128]],
    code: [
      ...get(P), ...get(N), ...i32c(2), ...I.shl, ...I.add, ...set(END),
      ...block(loop(
        [...get(P), ...get(END), ...I.geU, 0x0d, 1],
        [...get(P), ...get(P), ...V.load, ...expOf(X, K, R, Y), ...V.store],
        [...get(P), ...i32c(16), ...I.add, ...set(P), 0x0c, 0],
      )),
    ],
  };
}

const rowOffset = (base: number, row: number, n4: number) => [...get(base), ...get(row), ...get(n4), ...I.mul, ...i32c(2), ...I.shl, ...I.add];
const rowAddr = (base: number, row: number) => [...get(base), ...get(row), ...i32c(2), ...I.shl, ...I.add];
/** `for (; ptr < end; ptr += 16) body` */
const forVectors = (ptr: number, end: number, body: number[], extra: number[] = []) =>
  block(loop([...get(ptr), ...get(end), ...I.geU, 0x0d, 1], body, [...get(ptr), ...i32c(16), ...I.add, ...set(ptr)], extra, [0x0c, 0]));
/** `for (row = 0; row < rows; row++) body` */
const forRows = (row: number, rows: number, body: number[]) =>
  [...i32c(0), ...set(row), ...block(loop([...get(row), ...get(rows), ...I.geU, 0x0d, 1], body, [...get(row), ...i32c(1), ...I.add, ...set(row), 0x0c, 0]))];

/**
 * softmaxRows(S, rows, n4, mOld, mNew, sum): for each row of S (`rows × n4`, −∞ where masked):
 * mNew[r] = max(mOld[r], max S[r]), S[r] = exp(S[r] − mNew[r]), sum[r] = Σ S[r]. A row whose mNew
 * is −∞ becomes 0 with sum 0.
 */
export function fnSoftmaxRows(): Fn {
  const [S, ROWS, N4, MOLD, MNEW, SUM] = [0, 1, 2, 3, 4, 5];
  const [ROW, PTR, END, MX, ACC, X, K, R, Y, MV, E] = [6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
  return {
    params: 6,
    locals: [[3, I32], [1, F32], [7, V128]],
    code: forRows(ROW, ROWS, [
      ...rowOffset(S, ROW, N4), ...set(PTR),
      ...get(PTR), ...get(N4), ...i32c(2), ...I.shl, ...I.add, ...set(END),
      ...v128f(-Infinity), ...set(ACC),
      ...forVectors(PTR, END, [...get(ACC), ...get(PTR), ...V.load, ...V.max, ...set(ACC)]),
      ...horizontal(ACC, F.max), ...rowAddr(MOLD, ROW), ...F.load, ...F.max, ...set(MX),
      ...rowAddr(MNEW, ROW), ...get(MX), ...F.store,
      ...rowOffset(S, ROW, N4), ...set(PTR),
      // if (mx == −∞) zero the row, sum 0; else exponentiate and sum
      ...get(MX), ...f32c(-Infinity), ...F.eq,
      ...ifElse(
        [
          forVectors(PTR, END, [...get(PTR), ...v128f(0), ...V.store]),
          [...rowAddr(SUM, ROW), ...f32c(0), ...F.store],
        ],
        [
          [...get(MX), ...V.splat, ...set(MV), ...v128f(0), ...set(ACC)],
          forVectors(PTR, END, [
            ...get(PTR), ...V.load, ...get(MV), ...V.sub, ...expOf(X, K, R, Y), ...set(E),
            ...get(PTR), ...get(E), ...V.store,
            ...get(ACC), ...get(E), ...V.add, ...set(ACC),
          ]),
          [...rowAddr(SUM, ROW), ...horizontal(ACC, F.add), ...F.store],
        ],
      ),
    ]),
  };
}

/**
 * softmaxBackward(S, dP, rows, n4, lse, d): P = exp(S − lse[r]) into S, dS = P ∘ (dP − d[r]) into dP
 * (masked entries of S are −∞, so P and dS are 0 there).
 */
export function fnSoftmaxBackward(): Fn {
  const [S, DP, ROWS, N4, LSE, DV] = [0, 1, 2, 3, 4, 5];
  const [ROW, PS, PD, END, LV, DVV, X, K, R, Y, E] = [6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
  return {
    params: 6,
    locals: [[4, I32], [7, V128]],
    code: forRows(ROW, ROWS, [
      ...rowOffset(S, ROW, N4), ...set(PS),
      ...rowOffset(DP, ROW, N4), ...set(PD),
      ...get(PS), ...get(N4), ...i32c(2), ...I.shl, ...I.add, ...set(END),
      ...rowAddr(LSE, ROW), ...F.load, ...V.splat, ...set(LV),
      ...rowAddr(DV, ROW), ...F.load, ...V.splat, ...set(DVV),
      ...forVectors(
        PS,
        END,
        [
          ...get(PS), ...V.load, ...get(LV), ...V.sub, ...expOf(X, K, R, Y), ...set(E),
          ...get(PS), ...get(E), ...V.store,
          ...get(PD), ...get(E), ...get(PD), ...V.load, ...get(DVV), ...V.sub, ...V.mul, ...V.store,
        ],
        [...get(PD), ...i32c(16), ...I.add, ...set(PD)],
      ),
    ]),
  };
}

/** scaleRows(S, rows, n4, k): S[r] *= k[r]. */
export function fnScaleRows(): Fn {
  const [S, ROWS, N4, KS] = [0, 1, 2, 3];
  const [ROW, PTR, END, KV] = [4, 5, 6, 7];
  return {
    params: 4,
    locals: [[3, I32], [1, V128]],
    code: forRows(ROW, ROWS, [
      ...rowOffset(S, ROW, N4), ...set(PTR),
      ...get(PTR), ...get(N4), ...i32c(2), ...I.shl, ...I.add, ...set(END),
      ...rowAddr(KS, ROW), ...F.load, ...V.splat, ...set(KV),
      ...forVectors(PTR, END, [...get(PTR), ...get(PTR), ...V.load, ...get(KV), ...V.mul, ...V.store]),
    ]),
  };
}

/** swigluForward(g, u, y, sig, n): sig = σ(g), y = g·sig·u (n a multiple of 4). */
export function fnSwigluForward(): Fn {
  const [G, U, Y, SG, N] = [0, 1, 2, 3, 4];
  const [END, GV, SV, X, K, R, YY] = [5, 6, 7, 8, 9, 10, 11];
  const adv = [G, U, Y, SG].flatMap((p) => [...get(p), ...i32c(16), ...I.add, ...set(p)]);
  return {
    params: 5,
    locals: [[1, I32], [6, V128]],
    code: [
      ...get(G), ...get(N), ...i32c(2), ...I.shl, ...I.add, ...set(END),
      ...block(loop(
        [...get(G), ...get(END), ...I.geU, 0x0d, 1],
        [...get(G), ...V.load, ...set(GV)],
        [...v128f(1), ...v128f(1), ...get(GV), ...V.neg, ...expOf(X, K, R, YY), ...V.add, ...V.div, ...set(SV)],
        [...get(SG), ...get(SV), ...V.store],
        [...get(Y), ...get(GV), ...get(SV), ...V.mul, ...get(U), ...V.load, ...V.mul, ...V.store],
        adv,
        [0x0c, 0],
      )),
    ],
  };
}

/** swigluBackward(dy, g, u, sig, dg, du, n): dg = dy·u·sig·(1 + g(1 − sig)), du = dy·g·sig. */
export function fnSwigluBackward(): Fn {
  const [DY, G, U, SG, DG, DU, N] = [0, 1, 2, 3, 4, 5, 6];
  const [END, DYV, GV, SV, UV] = [7, 8, 9, 10, 11];
  const adv = [DY, G, U, SG, DG, DU].flatMap((p) => [...get(p), ...i32c(16), ...I.add, ...set(p)]);
  return {
    params: 7,
    locals: [[1, I32], [4, V128]],
    code: [
      ...get(G), ...get(N), ...i32c(2), ...I.shl, ...I.add, ...set(END),
      ...block(loop(
        [...get(G), ...get(END), ...I.geU, 0x0d, 1],
        [...get(DY), ...V.load, ...set(DYV), ...get(G), ...V.load, ...set(GV), ...get(SG), ...V.load, ...set(SV), ...get(U), ...V.load, ...set(UV)],
        // dg = dy·u·s·(1 + g·(1 − s))
        [...get(DG), ...get(DYV), ...get(UV), ...V.mul, ...get(SV), ...V.mul, ...v128f(1), ...get(GV), ...v128f(1), ...get(SV), ...V.sub, ...V.mul, ...V.add, ...V.mul, ...V.store],
        // du = dy·g·s
        [...get(DU), ...get(DYV), ...get(GV), ...V.mul, ...get(SV), ...V.mul, ...V.store],
        adv,
        [0x0c, 0],
      )),
    ],
  };
}

/** Build the module from its functions; exports memory and the functions by name. */
export function moduleBytes(fns: { name: string; fn: Fn }[]): Uint8Array {
  const types = fns.map(({ fn }) => [0x60, fn.params, ...new Array<number>(fn.params).fill(I32), 0]);
  const typeSec = [fns.length, ...types.flat()];
  const funcSec = [fns.length, ...fns.map((_, i) => i)];
  const memSec = [1, 0x00, 1];
  const str = (s: string) => [s.length, ...[...s].map((c) => c.charCodeAt(0))];
  const exportSec = [fns.length + 1, ...str('memory'), 0x02, 0, ...fns.flatMap(({ name }, i) => [...str(name), 0x00, i])];
  const bodies = fns.map(({ fn }) => {
    const body = [fn.locals.length, ...fn.locals.flatMap(([c, t]) => [...uleb(c), t]), ...fn.code, 0x0b];
    return [...uleb(body.length), ...body];
  });
  const codeSec = [fns.length, ...bodies.flat()];
  const section = (id: number, body: number[]) => [id, ...uleb(body.length), ...body];
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, typeSec),
    ...section(3, funcSec),
    ...section(5, memSec),
    ...section(7, exportSec),
    ...section(10, codeSec),
  ]);
}
