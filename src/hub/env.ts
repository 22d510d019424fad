/**
 * Where the Hub is, who we are on it and where its cache lives, read the way Python's huggingface_hub
 * reads them (so a cache and a login made by Python tools are shared). @huggingface/hub 2.17 reads none of
 * these environment variables itself, so every call gets them passed explicitly.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FopeifyError } from '../errors.js';

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

type Env = Record<string, string | undefined>;

function nonEmpty(v: string | undefined): string | undefined {
  const t = v?.trim();
  return t ? t : undefined;
}

function expandHome(p: string): string {
  return p === '~' || p.startsWith('~/') ? path.join(os.homedir(), p.slice(1)) : p;
}

/** options.endpoint > HF_ENDPOINT > https://huggingface.co, without a trailing slash. */
export function hubEndpoint(option?: string, env: Env = process.env): string {
  const url = nonEmpty(option) ?? nonEmpty(env.HF_ENDPOINT) ?? DEFAULT_ENDPOINT;
  return url.replace(/\/+$/, '');
}

/** $HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface. */
export function hfHome(env: Env = process.env): string {
  const home = nonEmpty(env.HF_HOME);
  if (home) return expandHome(home);
  const xdg = nonEmpty(env.XDG_CACHE_HOME);
  return xdg ? path.join(expandHome(xdg), 'huggingface') : path.join(os.homedir(), '.cache', 'huggingface');
}

/** options.cacheDir > HF_HUB_CACHE > HUGGINGFACE_HUB_CACHE > $HF_HOME/hub > $XDG_CACHE_HOME/huggingface/hub > ~/.cache/huggingface/hub. */
export function hubCacheDir(option?: string, env: Env = process.env): string {
  const dir = nonEmpty(option) ?? nonEmpty(env.HF_HUB_CACHE) ?? nonEmpty(env.HUGGINGFACE_HUB_CACHE);
  return path.resolve(dir ? expandHome(dir) : path.join(hfHome(env), 'hub'));
}

/** options.offline, else HF_HUB_OFFLINE as Python reads it (1/true/yes/on). */
export function isOffline(option?: boolean, env: Env = process.env): boolean {
  if (option !== undefined) return option;
  const v = nonEmpty(env.HF_HUB_OFFLINE)?.toLowerCase();
  return v === '1' || v === 'true' || v === 'yes' || v === 'on';
}

export type TokenSource = 'option' | 'HF_TOKEN' | 'HUGGING_FACE_HUB_TOKEN' | 'token file';

export interface ResolvedToken {
  token?: string;
  /** Where it came from, for messages ("the token from HF_TOKEN was rejected"); never the token itself. */
  source?: TokenSource;
}

/** Path of the token file written by `huggingface-cli login`: HF_TOKEN_PATH, else $HF_HOME/token. */
export function tokenFilePath(env: Env = process.env): string {
  const p = nonEmpty(env.HF_TOKEN_PATH);
  return p ? expandHome(p) : path.join(hfHome(env), 'token');
}

/** options.token > HF_TOKEN > HUGGING_FACE_HUB_TOKEN (legacy) > the token file. Anonymous when none. */
export async function resolveToken(option?: string, env: Env = process.env): Promise<ResolvedToken> {
  const fromOption = nonEmpty(option);
  if (fromOption) return { token: fromOption, source: 'option' };
  const fromEnv = nonEmpty(env.HF_TOKEN);
  if (fromEnv) return { token: fromEnv, source: 'HF_TOKEN' };
  const legacy = nonEmpty(env.HUGGING_FACE_HUB_TOKEN);
  if (legacy) return { token: legacy, source: 'HUGGING_FACE_HUB_TOKEN' };
  try {
    const fromFile = nonEmpty(await fs.readFile(tokenFilePath(env), 'utf8'));
    if (fromFile) return { token: fromFile, source: 'token file' };
  } catch {
    // No token file (or unreadable): anonymous, as Python does.
  }
  return {};
}

export const DEFAULT_HUB_TIMEOUT_MS = 60_000;

/**
 * How long the Hub may keep us waiting (for an answer, or between two chunks of a body): the option,
 * else FOPEIFY_HUB_TIMEOUT in seconds, else 60 s.
 */
export function hubTimeoutMs(option?: number, env: Env = process.env): number {
  if (option !== undefined) {
    if (!(Number.isFinite(option) && option > 0)) throw new FopeifyError('BAD_ARGUMENT', `the Hub timeout must be a positive number of milliseconds, got ${option}`);
    return option;
  }
  const v = nonEmpty(env.FOPEIFY_HUB_TIMEOUT);
  if (v === undefined) return DEFAULT_HUB_TIMEOUT_MS;
  const s = Number(v);
  if (!(Number.isFinite(s) && s > 0)) {
    throw new FopeifyError('BAD_ARGUMENT', `FOPEIFY_HUB_TIMEOUT must be a positive number of seconds, got ${JSON.stringify(v.slice(0, 40))}`);
  }
  return Math.round(s * 1000);
}
