// Durable file writes: fsync of files and folders, and write-to-a-temporary-sibling-then-rename, so a crash
// never leaves a file (or a checkpoint) that looks whole but is not. Not a file-format module.
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { basename, dirname, join } from "node:path";

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
