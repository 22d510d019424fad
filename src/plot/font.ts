/**
 * A tiny built-in 5×7 bitmap font (printable ASCII) for labelling rasterized charts, so PNGs need no font
 * files or native libraries. Each glyph is 7 rows of 5 bits, each row one base-32 digit (MSB = left).
 */

export const GLYPH_WIDTH = 5;
export const GLYPH_HEIGHT = 7;
/** Horizontal distance between glyph origins (one pixel of spacing), at scale 1. */
export const GLYPH_ADVANCE = 6;

const FIRST = 32;
const TABLE =
  '00000004444404aa00000aavavaa4fke5u4op248j3cik8lid44800002488842842224804lel40044v4400000c48000v000' +
  '00000cc01248g0ehjlphe4c4444eeh1248vv2421he26aiv22vgu11he68guhhev124888ehhehheehhf12c0cc0cc00cc0c48' +
  '248g84200v0v008421248eh12404eh1dlleehhvhhhuhhuhhuehggghesihhhisvgguggvvggugggehgnhhfhhhvhhhe44444e' +
  '72222ichikokihggggggvhrllhhhhhpljhhehhhhheuhhugggehhhliduhhukihfgge11uv444444hhhhhhehhhhha4hhhllla' +
  'hha4ahhhha4444v1248gve88888e0g84210e22222e4ah0000000000v842000000e1fhfggmphhu00egghe11djhhf00ehvge' +
  '698s8880fhhf1eggmphhh40c444e20622icggikokic44444e00qllhh00mphhh00ehhhe00uhugg00djf1100mpggg00ege1u' +
  '88s889600hhhjd00hhha400hhlla00ha4ah00hhf1e00v248v244844244444448442448008l200';

/** The 7 row bitmaps (5 bits, bit 4 = leftmost pixel) of a character; anything outside ASCII renders as '?'. */
export function glyphRows(ch: string): number[] {
  let code = ch.codePointAt(0) ?? 63;
  if (code < FIRST || code > 126) code = 63;
  const base = (code - FIRST) * GLYPH_HEIGHT;
  const rows: number[] = [];
  for (let r = 0; r < GLYPH_HEIGHT; r++) rows.push(parseInt(TABLE[base + r]!, 32));
  return rows;
}

/** Width in pixels of a string drawn at `scale` (no trailing spacing). */
export function textWidth(text: string, scale = 1): number {
  const n = [...text].length;
  return n === 0 ? 0 : (n * GLYPH_ADVANCE - 1) * scale;
}
