/**
 * One error class for everything a user can cause. The CLI prints `message` as one line on stderr and
 * exits with `exitCode`; nothing else in fopeify prints a stack trace.
 */
export type ErrorCode =
  | 'MODEL_NOT_FOUND'
  | 'BAD_CONFIG'
  | 'UNSUPPORTED_ARCHITECTURE'
  | 'PICKLE_ONLY'
  | 'BAD_SAFETENSORS'
  | 'MISSING_SHARD'
  | 'OUTPUT_EXISTS'
  | 'OUTPUT_UNWRITABLE'
  | 'DISK_FULL'
  | 'BAD_ARGUMENT'
  | 'HUB_AUTH'
  | 'HUB_NOT_FOUND'
  | 'HUB_ERROR'
  | 'OFFLINE'
  | 'BACKEND_UNAVAILABLE'
  | 'UNSAFE_PATH'
  | 'INTERRUPTED'
  /** A model produced NaN or ±Inf where a score, a loss or logits were due. */
  | 'NON_FINITE'
  | 'INTERNAL';

const EXIT_CODES: Partial<Record<ErrorCode, number>> = {
  BAD_ARGUMENT: 2,
  MODEL_NOT_FOUND: 3,
  HUB_NOT_FOUND: 3,
  HUB_AUTH: 4,
  OUTPUT_EXISTS: 5,
  OUTPUT_UNWRITABLE: 5,
  DISK_FULL: 5,
  INTERRUPTED: 130,
};

export interface FopeifyErrorOptions {
  cause?: unknown;
  /**
   * The library option(s) the message is about, as the library API spells them (`targetLength`). The
   * message names each in backticks (see `optionName`); the CLI shows the flag there instead.
   */
  option?: string | readonly string[];
}

export class FopeifyError extends Error {
  readonly code: ErrorCode;
  readonly exitCode: number;
  /** The library options the message names (empty when it names none). */
  readonly options: readonly string[];
  constructor(code: ErrorCode, message: string, options?: FopeifyErrorOptions) {
    // One line, always: the CLI prints the message as one line on stderr, and parts of it may come from
    // elsewhere (a JSON parser quoting a snippet with its newlines, a server's error text).
    super(message.replace(/\s*\n\s*/g, ' '), options && 'cause' in options ? { cause: options.cause } : undefined);
    this.name = 'FopeifyError';
    this.code = code;
    this.exitCode = EXIT_CODES[code] ?? 1;
    this.options = options?.option === undefined ? [] : typeof options.option === 'string' ? [options.option] : [...options.option];
  }
}

/** How a message names a library option: `targetLength`, in backticks. */
export function optionName(option: string): string {
  return `\`${option}\``;
}

/** A BAD_ARGUMENT error about library options; the message names them with `optionName`. */
export function badOption(option: string | readonly string[], message: string): FopeifyError {
  return new FopeifyError('BAD_ARGUMENT', message, { option });
}

/** The message with every option it names shown by `show` instead (the CLI shows its flag: `--target-length`). */
export function messageNamingOptions(err: FopeifyError, show: (option: string) => string): string {
  let text = err.message;
  for (const option of err.options) text = text.split(optionName(option)).join(show(option));
  return text;
}

/** Node's system errors carry a `code` string (ENOENT, ENOSPC, ...). */
export function systemErrorCode(err: unknown): string | undefined {
  if (err && typeof err === 'object' && 'code' in err && typeof (err as { code: unknown }).code === 'string') {
    return (err as { code: string }).code;
  }
  return undefined;
}

/** Map an fs error from writing output into a user-facing FopeifyError. */
export function outputError(err: unknown, path: string): FopeifyError {
  if (err instanceof FopeifyError) return err;
  const code = systemErrorCode(err);
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new FopeifyError('DISK_FULL', `no space left on the device while writing ${path}`, { cause: err });
  }
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS' || code === 'ENOTDIR' || code === 'ENOENT') {
    return new FopeifyError('OUTPUT_UNWRITABLE', `cannot write ${path}: ${code}`, { cause: err });
  }
  return new FopeifyError('OUTPUT_UNWRITABLE', `cannot write ${path}: ${(err as Error)?.message ?? String(err)}`, {
    cause: err,
  });
}
