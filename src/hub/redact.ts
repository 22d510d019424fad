/**
 * Tokens never reach a message, a log line or a thrown error. Everything hub/ says to the user goes
 * through `redact`, which removes the tokens it is given and anything that looks like a Hugging Face
 * token or a Bearer header, in case a server or a library echoes one back.
 */

/** A token as it may be shown: its kind, never any of its characters beyond the public `hf_` prefix. */
export function maskToken(token: string | undefined | null): string {
  if (!token) return '(no token)';
  return token.startsWith('hf_') ? 'hf_****' : '****';
}

// Real tokens are `hf_` + 34 letters; 16+ avoids masking ordinary words such as `hf_transfer`.
const HF_TOKEN_LIKE = /\bhf_[A-Za-z0-9_-]{16,}/g;
const BEARER = /(Bearer\s+)[^\s"',;]+/gi;

/** `message` with every given secret and every token-looking string masked. */
export function redact(message: string, ...secrets: (string | undefined | null)[]): string {
  let out = message;
  // Longest first, so a token that contains another secret is masked whole.
  const known = secrets.filter((s): s is string => typeof s === 'string' && s.length >= 4).sort((a, b) => b.length - a.length);
  for (const s of known) out = out.split(s).join(maskToken(s));
  out = out.replace(BEARER, '$1****');
  out = out.replace(HF_TOKEN_LIKE, 'hf_****');
  return out;
}
