/**
 * One fetch for every Hub call: @huggingface/hub takes a `fetch` option but never retries, so the wrapper
 * here adds bounded retries (429 honouring Retry-After; 5xx and dropped connections with exponential
 * backoff) and remembers the Hub's `X-Error-Code` header, which the library's HubApiError drops but which
 * tells a missing repository from a missing revision or file. `hubError` turns whatever went wrong into
 * one FopeifyError with the repository named and the token masked.
 *
 * No request waits forever: each attempt has a watchdog that aborts it when the server keeps us waiting
 * `timeoutMs` for an answer, or stops taking a request body or sending an answer body for that long (a
 * body that moves re-arms it, so a long upload is never cut). A stalled attempt is retried like a dropped
 * connection (bounded, with backoff) unless it is a commit, which may have been applied; the last stall
 * is a HUB_ERROR naming the request and what it was waiting for.
 */
import { HubApiError } from '@huggingface/hub';
import { FopeifyError, optionName } from '../errors.js';
import { maskToken, redact } from './redact.js';
import type { TokenSource } from './env.js';

export interface RetryOptions {
  /** Retries after the first attempt (default 5). */
  retries?: number;
  /** First backoff delay (default 1000 ms), doubled each retry, capped at `maxDelayMs` (default 30 000). */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Longest Retry-After honoured (default 120 000 ms); longer waits fail with a clear message instead. */
  maxRetryAfterMs?: number;
  /** Injected sleep (tests record the delays instead of waiting). */
  sleep?: (ms: number) => Promise<void>;
}

export const defaultSleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** What a HubFetch has seen; read by `hubError` to word messages. */
export interface FetchState {
  /** X-Error-Code of the latest non-ok answer per URL. */
  errorCodes: Map<string, string>;
  /** Attempts made by the latest request that failed for good. */
  lastAttempts: number;
  /** Status of the latest answer that was retried (429, 5xx), or a network error code. */
  lastRetried?: string;
}

export interface HubFetch {
  fetch: typeof fetch;
  state: FetchState;
  retry: Required<RetryOptions>;
}

export function retrySettings(o: RetryOptions = {}): Required<RetryOptions> {
  return {
    retries: o.retries ?? 5,
    baseDelayMs: o.baseDelayMs ?? 1000,
    maxDelayMs: o.maxDelayMs ?? 30_000,
    maxRetryAfterMs: o.maxRetryAfterMs ?? 120_000,
    sleep: o.sleep ?? defaultSleep,
  };
}

/** Exponential backoff with jitter (0.5–1×), so many clients hit by one outage do not retry in step. */
export function backoffMs(attempt: number, r: Required<RetryOptions>): number {
  const d = Math.min(r.maxDelayMs, r.baseDelayMs * 2 ** attempt);
  return Math.round(d * (0.5 + Math.random() / 2));
}

/** Retry-After in ms: delta-seconds or an HTTP date. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (/^\d+(\.\d+)?$/.test(v)) return Math.round(Number(v) * 1000);
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}

export const RETRY_STATUSES = new Set([500, 502, 503, 504]);

function urlOf(input: Parameters<typeof fetch>[0]): string {
  return typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
}

/**
 * A commit is not idempotent: after a dropped connection or a 5xx it may have been applied. Like Python's
 * huggingface_hub it is retried only on 429 (which means "not processed"); a failed commit is cheap to
 * rerun because the LFS objects it references are already stored and are not sent again.
 */
function onlyRateLimitRetry(method: string, url: string): boolean {
  return method === 'POST' && /\/api\/[a-z]+s\/.+\/commit\//.test(url);
}

/** Node's fetch wraps socket errors: TypeError('fetch failed', { cause: { code: 'ECONNRESET' } }). */
export function networkErrorCode(err: unknown): string | undefined {
  if (!(err instanceof Error)) return undefined;
  if (err.name === 'TimeoutError') return 'ETIMEDOUT';
  const cause = (err as { cause?: { code?: unknown } }).cause;
  if (cause && typeof cause === 'object' && typeof cause.code === 'string') return cause.code;
  const own = (err as { code?: unknown }).code;
  if (typeof own === 'string' && /^(E[A-Z]+|UND_ERR_\w+)$/.test(own)) return own;
  if (err.name === 'TypeError' && /fetch failed|terminated|other side closed|socket/i.test(err.message)) return 'ECONNRESET';
  if (/terminated|other side closed|ECONNRESET|socket hang up/i.test(err.message)) return 'ECONNRESET';
  return undefined;
}

export interface HubFetchOptions extends RetryOptions {
  /**
   * The Hub's origin: an Authorization header is only ever sent there. The library would send the token
   * to whatever URL a server names (a `Link: rel="next"` page on another host, for one); we drop it.
   */
  authOrigin?: string;
  /**
   * How long a server may keep us waiting (default 60 s): for the answer once the request is sent, and
   * between two chunks of a request or answer body. An upload or answer that keeps moving is never cut.
   */
  timeoutMs?: number;
}

/** Request bodies this large are streamed through a progress watch, so an upload that stalls is noticed. */
const WATCHED_BODY_BYTES = 1 << 20;
const BODY_PIECE = 64 * 1024;

/** A request body that is sent as a watched stream, or undefined to send it as is (small, or not a byte body). */
function watchedBody(body: RequestInit['body']): Blob | undefined {
  if (body instanceof Blob) return body.size > 0 ? body : undefined;
  if (typeof body === 'string') return Buffer.byteLength(body) >= WATCHED_BODY_BYTES ? new Blob([body]) : undefined;
  if (body instanceof ArrayBuffer || ArrayBuffer.isView(body)) {
    return body.byteLength >= WATCHED_BODY_BYTES ? new Blob([body as ArrayBuffer]) : undefined;
  }
  return undefined;
}

/**
 * `blob` as a pull stream: fetch pulls a piece when the socket took the previous one, so `onPiece` marks
 * upload progress; `onEnd` marks the whole body handed over.
 */
function progressStream(blob: Blob, onPiece: () => void, onEnd: () => void): ReadableStream<Uint8Array> {
  const reader = blob.stream().getReader();
  let pending: Uint8Array = new Uint8Array(0);
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        if (pending.length === 0) {
          const r = await reader.read();
          if (r.done) {
            onEnd();
            controller.close();
            return;
          }
          pending = r.value;
        }
        const piece = pending.subarray(0, BODY_PIECE);
        pending = pending.subarray(piece.length);
        onPiece();
        controller.enqueue(piece);
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}

/** What a request is, for messages; never the path or query of a presigned upload URL (a capability). */
export function describeRequest(method: string, url: string): string {
  const u = new URL(url);
  const p = u.pathname;
  if (method === 'POST' && /\/commit\//.test(p)) return `the commit (POST ${p})`;
  if (method === 'POST' && /\/preupload\//.test(p)) return `the preupload request (POST ${p})`;
  if (method === 'POST' && /\/info\/lfs\/objects\/batch$/.test(p)) return `the LFS batch request (POST ${p})`;
  if (method === 'PUT') return `an LFS upload to ${u.host}`;
  if (u.origin === 'null') return `${method} request`;
  return `${method} ${p}`;
}

class StallError extends Error {
  constructor(readonly waitingFor: string) {
    super(`no progress while ${waitingFor}`);
    this.name = 'TimeoutError';
  }
}

export function createHubFetch(base: typeof fetch = globalThis.fetch, options: HubFetchOptions = {}): HubFetch {
  const r = retrySettings(options);
  const timeoutMs = options.timeoutMs ?? 60_000;
  const authOrigin = options.authOrigin ? new URL(options.authOrigin).origin : undefined;
  const state: FetchState = { errorCodes: new Map(), lastAttempts: 1 };
  const wrapped = async (input: Parameters<typeof fetch>[0], initIn?: RequestInit): Promise<Response> => {
    const url = urlOf(input);
    const method = (initIn?.method ?? (typeof input === 'object' && 'method' in input ? input.method : 'GET')).toUpperCase();
    let init = initIn;
    if (authOrigin && init?.headers && new URL(url).origin !== authOrigin) {
      const headers = new Headers(init.headers);
      headers.delete('Authorization');
      init = { ...init, headers };
    }
    const rateLimitOnly = onlyRateLimitRetry(method, url);
    // A stream body cannot be sent twice; strings, Blobs and buffers (all the library uses) can.
    const replayable = !(init?.body instanceof ReadableStream);
    const watched = watchedBody(init?.body);
    /** After a network error or a stall: whether to stop retrying (and rethrow). */
    const giveUp = (code: string | undefined, attempt: number): boolean => {
      const stop = Boolean(initIn?.signal?.aborted) || !code || rateLimitOnly || !replayable || attempt >= r.retries;
      if (code) state.lastRetried = code;
      if (stop) state.lastAttempts = attempt + 1;
      return stop;
    };
    const stalledError = (err: StallError, attempt: number): FopeifyError => {
      const what = describeRequest(method, url);
      const tries = attempt > 0 ? ` (${attempt + 1} attempts)` : '';
      const applied = rateLimitOnly ? '; it may or may not have been applied' : '';
      return new FopeifyError(
        'HUB_ERROR',
        `${what} timed out: no progress for ${timeoutMs / 1000} s while ${err.waitingFor}${tries}${applied} (set FOPEIFY_HUB_TIMEOUT, in seconds, to wait longer)`,
      );
    };

    for (let attempt = 0; ; attempt++) {
      // One watchdog per attempt: re-armed while a body moves, so only a stall aborts.
      const watchdog = new AbortController();
      let timer: NodeJS.Timeout | undefined;
      const arm = (waitingFor: string): void => {
        clearTimeout(timer);
        timer = setTimeout(() => watchdog.abort(new StallError(waitingFor)), timeoutMs);
      };
      const signal = init?.signal ? AbortSignal.any([init.signal, watchdog.signal]) : watchdog.signal;
      let sendInit: RequestInit = { ...init, signal };
      if (watched) {
        const headers = new Headers(init?.headers);
        headers.set('Content-Length', String(watched.size));
        if (watched.type && !headers.has('Content-Type')) headers.set('Content-Type', watched.type);
        const sending = 'sending the request body';
        arm(sending);
        const body = progressStream(watched, () => arm(sending), () => arm('waiting for the answer'));
        sendInit = { ...sendInit, headers, body, duplex: 'half' } as RequestInit;
      } else {
        arm('waiting for the answer');
      }
      /** Our watchdog's verdict, when it fired; else the network error's code. */
      const stallOf = (): StallError | undefined =>
        watchdog.signal.aborted && !initIn?.signal?.aborted && watchdog.signal.reason instanceof StallError ? watchdog.signal.reason : undefined;
      /** A failed attempt: throw when giving up, else wait the backoff before the next attempt. */
      const backOffOrThrow = async (err: unknown): Promise<void> => {
        const stall = stallOf();
        if (giveUp(stall ? 'ETIMEDOUT' : networkErrorCode(err), attempt)) throw stall ? stalledError(stall, attempt) : err;
        clearTimeout(timer);
        await r.sleep(backoffMs(attempt, r));
      };
      try {
        let res: Response;
        try {
          res = await base(input, sendInit);
        } catch (err) {
          await backOffOrThrow(err);
          continue;
        }
        const errorCode = res.headers.get('X-Error-Code');
        if (!res.ok && errorCode) {
          state.errorCodes.set(url, errorCode);
          if (res.url) state.errorCodes.set(res.url, errorCode);
        }
        const retryable = res.status === 429 || (!rateLimitOnly && RETRY_STATUSES.has(res.status));
        if (retryable && replayable && attempt < r.retries) {
          const after = parseRetryAfter(res.headers.get('Retry-After'));
          if (after === undefined || after <= r.maxRetryAfterMs) {
            state.lastRetried = String(res.status);
            clearTimeout(timer);
            await res.body?.cancel().catch(() => undefined);
            await r.sleep(after ?? backoffMs(attempt, r));
            continue;
          }
        }
        // Every answer is read here: they are small (JSON, or empty for uploads; file bodies go through
        // download.ts), so a connection cut or stalled mid-body is retried like one cut before the headers
        // (the library would otherwise fail, or hang, in res.json()).
        const chunks: Uint8Array[] = [];
        try {
          arm('reading the answer');
          if (res.body) {
            for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
              chunks.push(chunk);
              arm('reading the answer');
            }
          }
        } catch (err) {
          await backOffOrThrow(err);
          continue;
        }
        const copy = new Response(res.status === 204 || res.status === 304 || method === 'HEAD' ? null : Buffer.concat(chunks), {
          status: res.status,
          statusText: res.statusText,
          headers: res.headers,
        });
        // Keep the URL: the library reports it in HubApiError, and we key X-Error-Code by it.
        Object.defineProperty(copy, 'url', { value: res.url });
        state.lastAttempts = attempt + 1;
        return copy;
      } finally {
        clearTimeout(timer);
      }
    }
  };
  return { fetch: wrapped as typeof fetch, state, retry: r };
}

export interface ErrorContext {
  repo: string;
  endpoint: string;
  token?: string;
  tokenSource?: TokenSource;
  /** read: download/inspect; write: push. */
  op: 'read' | 'write';
  revision?: string;
  /** The file being fetched, when one is. */
  file?: string;
  state?: FetchState;
}

function tokenHint(ctx: ErrorContext): string {
  if (!ctx.token) return `no token was given (pass ${optionName('token')}, set HF_TOKEN, or run \`huggingface-cli login\`)`;
  const from = ctx.tokenSource === 'option' ? 'the token given' : `the token from ${ctx.tokenSource ?? 'the environment'}`;
  return `${from} (${maskToken(ctx.token)})`;
}

/** The status-specific part of a message, for a Hub answer that was not ok. */
export function statusError(
  status: number,
  errorCode: string | undefined,
  serverMessage: string | undefined,
  ctx: ErrorContext,
): FopeifyError {
  const repo = ctx.repo;
  const where = ctx.endpoint;
  const detail = serverMessage ? ` (the Hub said: ${serverMessage.slice(0, 300)})` : '';
  const attempts = ctx.state && ctx.state.lastAttempts > 1 ? ` after ${ctx.state.lastAttempts} attempts` : '';
  let code: FopeifyError['code'];
  let msg: string;
  if (status === 401 || status === 403) {
    code = 'HUB_AUTH';
    if (errorCode === 'GatedRepo') {
      msg = `${repo} is a gated repository: accept its conditions at ${where}/${repo} with your account, then use a token of that account; ${tokenHint(ctx)} has no access yet`;
    } else if (status === 401 && !ctx.token && errorCode === 'RepoNotFound') {
      // Anonymous: the Hub answers 401 alike for a missing and a private repository; a typo is likelier.
      return new FopeifyError(
        'HUB_NOT_FOUND',
        `repository ${repo} not found on ${where} (if it is private or gated, pass a token: ${optionName('token')}, HF_TOKEN or \`huggingface-cli login\`)`,
        { option: 'token' },
      );
    } else if (status === 401 && !ctx.token) {
      msg = `${repo} needs authentication on ${where} (it is private, gated or does not exist): ${tokenHint(ctx)}`;
    } else if (status === 401) {
      msg = `${tokenHint(ctx)} was rejected by ${where} for ${repo}: it is invalid, expired or revoked; create a new one at ${where}/settings/tokens`;
    } else if (ctx.op === 'write') {
      msg = `${tokenHint(ctx)} may not write to ${repo}: it is read-only or lacks write permission for that namespace; use a token with the "write" role`;
    } else {
      msg = `${tokenHint(ctx)} may not read ${repo} on ${where}: access is forbidden (private or gated repository)`;
    }
  } else if (status === 404) {
    code = 'HUB_NOT_FOUND';
    if (errorCode === 'EntryNotFound' && ctx.file) {
      msg = `file ${ctx.file} not found in ${repo} at revision ${ctx.revision ?? 'main'}`;
    } else if (errorCode === 'RevisionNotFound') {
      msg = `revision ${ctx.revision ?? 'main'} not found in ${repo} on ${where}`;
    } else if (ctx.file && errorCode !== 'RepoNotFound') {
      msg = `file ${ctx.file} not found in ${repo} at revision ${ctx.revision ?? 'main'}`;
    } else {
      msg = `repository ${repo} not found on ${where}${ctx.token ? ' (or your token cannot see it)' : ' (if it is private or gated, pass a token)'}`;
    }
  } else if (status === 409 || status === 412) {
    code = 'HUB_ERROR';
    msg = `conflict on ${repo}: the branch changed meanwhile; run the same command again`;
  } else if (status === 429) {
    code = 'HUB_ERROR';
    msg = `the Hub is rate-limiting requests for ${repo}${attempts}; wait a few minutes and run again`;
  } else if (status >= 500) {
    code = 'HUB_ERROR';
    msg = `${where} answered ${status} for ${repo}${ctx.file ? ` (${ctx.file})` : ''}${attempts}: the Hub is having trouble; try again later`;
  } else {
    code = 'HUB_ERROR';
    msg = `${where} answered ${status} for ${repo}${ctx.file ? ` (${ctx.file})` : ''}`;
  }
  const namesToken = msg.includes(optionName('token')); // the hint to pass a token
  return new FopeifyError(code, redact(msg + (code === 'HUB_ERROR' && status !== 429 ? detail : ''), ctx.token), namesToken ? { option: 'token' } : undefined);
}

/** Any error from a Hub call, as one FopeifyError with the token masked. */
export function hubError(err: unknown, ctx: ErrorContext): FopeifyError {
  if (err instanceof FopeifyError) {
    const clean = redact(err.message, ctx.token);
    return clean === err.message ? err : new FopeifyError(err.code, clean, { option: err.options });
  }
  if (err instanceof HubApiError) {
    const code = ctx.state?.errorCodes.get(err.url);
    const data = err.data as { error?: unknown; message?: unknown } | undefined;
    const serverMessage = typeof data?.error === 'string' ? data.error : typeof data?.message === 'string' ? data.message : undefined;
    return statusError(err.statusCode, code, serverMessage ? redact(serverMessage, ctx.token) : undefined, ctx);
  }
  if (err instanceof TypeError && /must start with 'hf_'/.test(err.message)) {
    return new FopeifyError(
      'HUB_AUTH',
      `${tokenHint(ctx)} is not a Hugging Face access token (they start with "hf_"); create one at ${ctx.endpoint}/settings/tokens`,
    );
  }
  const net = networkErrorCode(err);
  if (net) {
    const attempts = ctx.state && ctx.state.lastAttempts > 1 ? ` after ${ctx.state.lastAttempts} attempts` : '';
    return new FopeifyError(
      'HUB_ERROR',
      redact(
        `could not reach ${ctx.endpoint} for ${ctx.repo}${ctx.file ? ` (${ctx.file})` : ''}: connection failed (${net})${attempts}; check the network, or work offline (${optionName('offline')} / HF_HUB_OFFLINE=1) with a cached model`,
        ctx.token,
      ),
      { option: 'offline' },
    );
  }
  const message = err instanceof Error ? err.message : String(err);
  return new FopeifyError('HUB_ERROR', redact(`Hub request for ${ctx.repo} failed: ${message}`, ctx.token));
}

/** The Hub's JSON error text of a failed answer, if any (consumes the body). */
export async function serverErrorText(res: Response): Promise<string | undefined> {
  try {
    const text = await res.text();
    try {
      const j = JSON.parse(text) as { error?: unknown; message?: unknown };
      if (typeof j.error === 'string') return j.error;
      if (typeof j.message === 'string') return j.message;
    } catch {
      // not JSON
    }
    return text.trim() ? text.trim().slice(0, 300) : undefined;
  } catch {
    return undefined;
  }
}
