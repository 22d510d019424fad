/** Small questions to the file system that fopeify asks in many places. */
import { promises as fs } from 'node:fs';

/**
 * Whether something is at `p`. A symlink is looked through (its target must exist) unless `followLinks`
 * is false, when a link counts as itself, dangling or not.
 */
export async function exists(p: string, followLinks = true): Promise<boolean> {
  try {
    await (followLinks ? fs.stat(p) : fs.lstat(p));
    return true;
  } catch {
    return false;
  }
}

/** The names in a folder; none when it does not exist or cannot be read. */
export async function namesIn(dir: string): Promise<string[]> {
  try {
    return await fs.readdir(dir);
  } catch {
    return [];
  }
}
