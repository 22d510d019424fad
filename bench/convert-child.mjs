// One conversion in a fresh process so its peak RSS is measured alone.
const { convertModel } = await import(new URL('../dist/convert/convert.js', import.meta.url).href);
const [src, out] = process.argv.slice(2);
const t = process.hrtime.bigint();
await convertModel({ model: src, outDir: out });
const seconds = Number(process.hrtime.bigint() - t) / 1e9;
process.stdout.write(JSON.stringify({ seconds, maxRssBytes: process.resourceUsage().maxRSS * 1024 }) + '\n');
