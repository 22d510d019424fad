/**
 * How commands talk to the user: one progress reporter (ora spinner on a TTY, silent under --json or
 * when stderr is not a terminal), results on stdout, errors as one line on stderr.
 */
import ora, { type Ora } from 'ora';

export interface Reporter {
  /** Replace the current progress text. */
  update(text: string): void;
  /** A finished step, kept on screen. */
  done(text: string): void;
  /** An informational line on stderr (not in --json mode). */
  info(text: string): void;
  stop(): void;
}

export function createReporter(options: { json?: boolean; quiet?: boolean } = {}): Reporter {
  const silent = options.json || options.quiet;
  if (silent) {
    return { update() {}, done() {}, info() {}, stop() {} };
  }
  // A pseudo-terminal of zero width (e.g. under `script`) makes ora's line wrapping loop forever: treat it
  // like a log file.
  if (!process.stderr.isTTY || !(process.stderr.columns > 0)) {
    // Non-interactive: print each distinct progress line at most every 2 s so logs stay readable.
    let last = 0;
    return {
      update(text) {
        const now = Date.now();
        if (now - last > 2000) {
          last = now;
          process.stderr.write(text + '\n');
        }
      },
      done(text) {
        process.stderr.write(text + '\n');
      },
      info(text) {
        process.stderr.write(text + '\n');
      },
      stop() {},
    };
  }
  let spinner: Ora | undefined;
  return {
    update(text) {
      if (!spinner) spinner = ora({ text, stream: process.stderr }).start();
      else spinner.text = text;
    },
    done(text) {
      if (spinner) {
        spinner.succeed(text);
        spinner = undefined;
      } else process.stderr.write(`✔ ${text}\n`);
    },
    info(text) {
      if (spinner) spinner.clear();
      process.stderr.write(text + '\n');
      spinner?.render();
    },
    stop() {
      spinner?.stop();
      spinner = undefined;
    },
  };
}

/** "12.3 MB/s, ETA 4s" style rate/ETA text for progress lines. */
export function rateEta(done: number, total: number, startedMs: number, unit: string): string {
  const secs = Math.max((Date.now() - startedMs) / 1000, 1e-3);
  const rate = done / secs;
  const eta = rate > 0 ? (total - done) / rate : Infinity;
  const fmt = (s: number) => (!Number.isFinite(s) ? '?' : s < 90 ? `${s.toFixed(0)}s` : `${(s / 60).toFixed(1)}min`);
  return `${rate.toFixed(rate < 10 ? 2 : 0)} ${unit}/s, ETA ${fmt(eta)}`;
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

/** Fixed-width text table. */
export function formatTable(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(cells[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n');
}
