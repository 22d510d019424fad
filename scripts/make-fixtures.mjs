// Write every tiny fixture checkpoint kind (f32 and bf16, single file and sharded) into a folder:
//   npm run fixtures -- /tmp/fopeify-fixtures
// The test suite generates the same checkpoints on the fly with the same code (src/testing/tiny-checkpoint.ts).
import path from 'node:path';
const { writeTinyCheckpoint, TINY_KINDS } = await import('../dist/index.js');

const out = process.argv[2] ?? 'fixtures/generated';
for (const kind of TINY_KINDS) {
  for (const dtype of ['F32', 'BF16']) {
    await writeTinyCheckpoint(path.join(out, `${kind}-${dtype.toLowerCase()}`), { kind, dtype });
  }
  await writeTinyCheckpoint(path.join(out, `${kind}-sharded`), { kind, dtype: 'BF16', maxShardBytes: 32 * 1024 });
}
console.log(`wrote ${TINY_KINDS.length * 3} fixture checkpoints into ${out}`);
