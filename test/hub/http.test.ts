import { describe, expect, it } from 'vitest';
import { FopeifyError } from '../../src/errors.js';
import { createHubFetch, parseRetryAfter } from '../../src/hub/http.js';

describe('createHubFetch', () => {
  it('sends Authorization to the Hub origin only', async () => {
    const seen: { url: string; auth: string | null }[] = [];
    const base = (async (input: string | URL | Request, init?: RequestInit) => {
      seen.push({ url: String(input), auth: new Headers(init?.headers).get('Authorization') });
      return new Response('[]', { headers: { 'Content-Type': 'application/json' } });
    }) as typeof fetch;
    const { fetch } = createHubFetch(base, { authOrigin: 'https://hub.example' });
    const headers = { Authorization: 'Bearer hf_secret_value_0123456789' };
    await fetch('https://hub.example/api/models/a/b/tree/main', { headers });
    await fetch('https://elsewhere.example/api/models/a/b/tree/main?cursor=2', { headers });
    expect(seen.map((s) => s.auth)).toEqual(['Bearer hf_secret_value_0123456789', null]);
  });

  it('retries 429 after Retry-After, 5xx with growing backoff, and gives the last answer back', async () => {
    const statuses = [429, 503, 502, 200];
    const delays: number[] = [];
    const base = (async () => new Response('{}', { status: statuses.shift(), headers: statuses.length === 3 ? { 'Retry-After': '4' } : {} })) as typeof fetch;
    const { fetch } = createHubFetch(base, { sleep: async (ms) => void delays.push(ms), baseDelayMs: 100 });
    expect((await fetch('https://hub.example/api/whoami-v2')).status).toBe(200);
    expect(delays[0]).toBe(4000);
    expect(delays[1]).toBeGreaterThanOrEqual(100); // 2^1 * 100 * [0.5, 1]
    expect(delays[2]).toBeGreaterThanOrEqual(200);
  });

  it('does not retry a commit after a 5xx (it may have been applied)', async () => {
    let calls = 0;
    const base = (async () => (calls++, new Response('{}', { status: 500 }))) as typeof fetch;
    const { fetch } = createHubFetch(base, { sleep: async () => undefined });
    expect((await fetch('https://hub.example/api/models/a/b/commit/main', { method: 'POST', body: 'x' })).status).toBe(500);
    expect(calls).toBe(1);
  });

  it('an upload that keeps moving is not cut by the timeout; one that stops is, naming what stalled', async () => {
    const body = new Blob([Buffer.alloc(2 << 20, 7)]);
    /** A server that reads the request body piece by piece, `delayMs` apart, stopping after `stopAfter` pieces. */
    const reader = (delayMs: number, stopAfter = Infinity) =>
      (async (_input: string | URL | Request, init?: RequestInit) => {
        const r = (init?.body as ReadableStream<Uint8Array>).getReader();
        let bytes = 0;
        for (let n = 0; ; n++) {
          if (n >= stopAfter) await new Promise((_, reject) => init?.signal?.addEventListener('abort', () => reject(init.signal!.reason)));
          const c = await r.read();
          if (c.done) break;
          bytes += c.value.length;
          await new Promise((res) => setTimeout(res, delayMs));
        }
        expect(new Headers(init?.headers).get('Content-Length')).toBe(String(2 << 20));
        return new Response(JSON.stringify({ bytes }));
      }) as typeof fetch;
    // 32 pieces of 64 KiB, 20 ms apart: ~0.7 s in all, against a 200 ms idle timeout.
    const moving = createHubFetch(reader(20), { timeoutMs: 200, sleep: async () => undefined });
    const res = await moving.fetch('https://upload.example/part?sig=secret', { method: 'PUT', body });
    expect(await res.json()).toEqual({ bytes: 2 << 20 });

    const stalling = createHubFetch(reader(1, 3), { timeoutMs: 200, retries: 1, sleep: async () => undefined });
    const err = await stalling.fetch('https://upload.example/part?sig=secret', { method: 'PUT', body }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FopeifyError);
    expect((err as Error).message).toMatch(/an LFS upload to upload\.example timed out: no progress for 0\.2 s while sending the request body \(2 attempts\)/);
    expect((err as Error).message).not.toContain('secret'); // a presigned URL's query is a capability
  });

  it('parses Retry-After seconds and dates', () => {
    expect(parseRetryAfter('3')).toBe(3000);
    expect(parseRetryAfter(new Date(10_000).toUTCString(), 4_000)).toBe(6000);
    expect(parseRetryAfter('soon')).toBeUndefined();
  });
});
