// Loaded with `node --import` by CLI tests: copies to a path containing $FOPEIFY_TEST_ENOSPC write half
// the bytes and fail with ENOSPC, as on a disk that fills up during finetune's last copies.
import { promises as fs } from 'node:fs';
import path from 'node:path';

const match = process.env.FOPEIFY_TEST_ENOSPC;
if (match) {
  const copyFile = fs.copyFile.bind(fs);
  fs.copyFile = async (src, dst, mode) => {
    if (!path.basename(String(dst)).includes(match)) return copyFile(src, dst, mode);
    const data = await fs.readFile(src);
    await fs.writeFile(dst, data.subarray(0, data.length >> 1));
    throw Object.assign(new Error('ENOSPC: no space left on device, copyfile'), { code: 'ENOSPC' });
  };
}
