import { describe, expect, it } from 'vitest';
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

  it('parses Retry-After seconds and dates', () => {
    expect(parseRetryAfter('3')).toBe(3000);
    expect(parseRetryAfter(new Date(10_000).toUTCString(), 4_000)).toBe(6000);
    expect(parseRetryAfter('soon')).toBeUndefined();
  });
});
