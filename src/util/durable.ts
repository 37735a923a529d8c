// Durable file writes: fsync of files and folders, and write-to-a-temporary-sibling-then-rename, so a crash
// never leaves a file (or a checkpoint) that looks whole but is not. Not a file-format module.
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { basename, dirname, join, resolve } from "node:path";

/** fsync a file or a directory (a directory's fsync makes the names inside it durable). */
export function fsyncPath(p: string): void {
  const fd = openSync(p, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Write text to file (replacing it) and fsync it. Not atomic by itself: write into a temporary name first. */
export function writeFileSynced(file: string, text: string): void {
  const fd = openSync(file, "w");
  try {
    const b = Buffer.from(text, "utf8");
    let done = 0;
    while (done < b.length) done += writeSync(fd, b, done, b.length - done);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes `text` to `file` via a hidden temporary sibling, fsync and a rename, so readers never see half a file. */
export function writeFileAtomic(file: string, text: string): void {
  const tmp = join(dirname(file), `.${basename(file)}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`);
  try {
    writeFileSynced(tmp, text);
    renameSync(tmp, file);
  } finally {
    rmSync(tmp, { force: true });
  }
}

/**
 * Fill a folder atomically: `fill` writes into a hidden temporary sibling, which is fsynced and renamed onto
 * dir. An existing dir is first renamed aside and removed once the new one is in place (POSIX cannot rename
 * over a non-empty directory, so a crash in that instant leaves the old copy as .<name>.old-*). On any error
 * the temporary folder is removed and dir is left as it was.
 */
export function writeFolderAtomic(dir: string, fill: (tmp: string) => void): void {
  const target = resolve(dir);
  const parent = dirname(target);
  const tag = `${process.pid}-${randomBytes(4).toString("hex")}`;
  const tmp = join(parent, `.${basename(target)}.tmp-${tag}`);
  mkdirSync(parent, { recursive: true });
  mkdirSync(tmp);
  try {
    fill(tmp);
    fsyncPath(tmp);
    if (existsSync(target)) {
      const old = join(parent, `.${basename(target)}.old-${tag}`);
      renameSync(target, old);
      try {
        renameSync(tmp, target);
      } catch (e) {
        renameSync(old, target);
        throw e;
      }
      rmSync(old, { recursive: true, force: true });
    } else {
      renameSync(tmp, target);
    }
    fsyncPath(parent);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}
