/**
 * JSON from files fopeify did not write, parsed only when its nesting is bounded. V8's JSON.parse copes
 * with any depth, but everything after it that walks the value recursively (String(), JSON.stringify,
 * messages, config copies) overflows the stack on a million nested brackets; a scan of the text first
 * costs one pass and keeps such a file a clean refusal.
 */

/** Deepest nesting of objects and arrays in `text` (0 for a scalar), or -1 once it passes `limit`. */
export function jsonDepth(text: string, limit = Infinity): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c /* \ */) i++;
      else if (c === 0x22 /* " */) inString = false;
      continue;
    }
    if (c === 0x22) inString = true;
    else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (++depth > deepest) {
        deepest = depth;
        if (deepest > limit) return -1;
      }
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) depth--;
  }
  return deepest;
}

/** Thrown by parseBoundedJson; callers turn it into their own FopeifyError with the file's name. */
export class JsonShapeError extends Error {}

/** JSON.parse, refusing nesting deeper than `maxDepth` before parsing. */
export function parseBoundedJson(text: string, maxDepth: number): unknown {
  if (jsonDepth(text, maxDepth) < 0) throw new JsonShapeError(`nests objects or arrays deeper than ${maxDepth} levels`);
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new JsonShapeError((err as Error).message);
  }
}
