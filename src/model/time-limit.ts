/**
 * A time limit on synchronous code we do not control (a tokenizer's pre-tokenizer regex can backtrack
 * for hours on a crafted input). node:vm's `timeout` arms a watchdog thread that terminates whatever
 * JavaScript runs inside the call, a regular expression included, and reports it as
 * ERR_SCRIPT_EXECUTION_TIMEOUT. Unlike a worker thread it needs no second copy of the tokenizer, no
 * copy of the text and no start-up: about 0.1 ms per call, measured, against milliseconds for
 * tokenizing even a short prompt. The function runs in the caller's realm; the context is only a
 * trampoline.
 */
import vm from 'node:vm';
import { systemErrorCode } from '../errors.js';

const trampoline = vm.createContext({ run: undefined as (() => unknown) | undefined });
const callRun = new vm.Script('run()');

/** Thrown when the limit is reached; callers turn it into their own typed error. */
export class TimeLimitExceeded extends Error {
  constructor(readonly limitMs: number) {
    super(`time limit of ${limitMs} ms exceeded`);
  }
}

/** Run `fn` synchronously; throw TimeLimitExceeded when it runs longer than `limitMs`. */
export function withTimeLimit<T>(fn: () => T, limitMs: number): T {
  const previous = trampoline.run;
  trampoline.run = fn;
  try {
    return callRun.runInContext(trampoline, { timeout: Math.max(1, Math.ceil(limitMs)) }) as T;
  } catch (err) {
    if (systemErrorCode(err) === 'ERR_SCRIPT_EXECUTION_TIMEOUT') throw new TimeLimitExceeded(limitMs);
    throw err;
  } finally {
    trampoline.run = previous;
  }
}
