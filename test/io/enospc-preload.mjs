// Loaded with `node --import` by CLI tests: writes to a path containing $FOPEIFY_TEST_ENOSPC (through
// copyFile or an open handle) write part of the bytes and fail with ENOSPC, as on a disk that fills up
// during finetune's last copies.
import { promises as fs } from 'node:fs';
import path from 'node:path';

const match = process.env.FOPEIFY_TEST_ENOSPC;
const enospc = () => Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
if (match) {
  const matches = (p) => path.basename(String(p)).includes(match);
  const copyFile = fs.copyFile.bind(fs);
  fs.copyFile = async (src, dst, mode) => {
    if (!matches(dst)) return copyFile(src, dst, mode);
    const data = await fs.readFile(src);
    await fs.writeFile(dst, data.subarray(0, data.length >> 1));
    throw enospc();
  };
  const open = fs.open.bind(fs);
  fs.open = async (file, flags, mode) => {
    const handle = await open(file, flags, mode);
    if (!matches(file) || !/[wa+]/.test(String(flags ?? 'r'))) return handle;
    const write = handle.write.bind(handle);
    handle.write = async (data, ...rest) => {
      const length = typeof data === 'string' ? data.length : data.byteLength;
      if (length > 1) await write(typeof data === 'string' ? data.slice(0, length >> 1) : data.subarray(0, length >> 1));
      throw enospc();
    };
    return handle;
  };
}
