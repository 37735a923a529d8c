// The one way preftune writes files and folders. Every write goes to a hidden temporary name in the target's own
// folder, is fsynced, and is renamed over the target; the folder is fsynced after the rename. A rename replaces
// whatever has the target's name (a symbolic link included) and never writes through it, and a reader sees the
// old file or the new one, never half of one. Errors name the path and say why in words (read-only file system,
// a folder where a file belongs, ...). Not a file format and not a policy of what to write.
//
// The protocols, smallest first:
//   writeFileAtomic / writeFileWith   one file: .NAME.tmp-TAG, fsync, rename over NAME, fsync folder; commitFile puts
//       a finished .partial log in place the same way.
//   writeFolderAtomic   a folder (a checkpoint, an adapter, a merged model): .NAME.tmp-TAG filled and fsynced
//       (every file, then the folder), renamed onto NAME. POSIX cannot rename over a non-empty folder, so an
//       existing NAME is first renamed to .NAME.old-TAG and removed once the new one is in place; a crash between
//       those two renames leaves the old one under .NAME.old-TAG, which recoverLeftovers renames back.
//   replaceFilesInFolder   files of a folder that also holds other things (the final model lives in output_dir
//       beside metrics.jsonl and the checkpoints, so output_dir itself cannot be swapped):
//         1. stage   every new file is written into .LABEL.tmp-TAG/, with a manifest (install order and the old
//                    files to delete), and fsynced;                          crash: the old files are untouched
//         2. commit  .LABEL.tmp-TAG is renamed to .LABEL.ready-TAG;         from here a complete new set is on disk
//         3. install each file is hard-linked (copied where links are not supported) from the ready folder to a
//                    temporary name and renamed over its target, one by one, in the caller's order: metadata
//                    first, config next, weights last, so that the old weights stay in use until the rename that
//                    replaces them; then the old files the new set does not have are deleted;
//         4. finish  the ready folder is renamed to .LABEL.del-TAG and removed.
//       A crash during 3 or 4 leaves the ready folder complete; recoverLeftovers (run by the next `preftune train`
//       into that folder) installs it again from the start (each step is idempotent). So at every instant one
//       complete model is on disk: the old one until the commit, the ready folder's from then on. A model saved as
//       one model.safetensors is moreover loadable from the folder itself at every instant: config.json differs
//       between the old and the new model in the stored dtype at most, and the weights switch in one rename. (A
//       model sharded into several files is a mix of old and new shards while step 3 runs; the ready folder holds
//       the whole new one.) Why not write the model into a folder of its own behind a pointer: transformers, PEFT
//       and every preftune command load output_dir itself, and no pointer file is read by them.
//       A hard link keeps the ready folder whole while its files are installed, at no cost in disk space.
//   removeFolder   renamed to .NAME.del-TAG first, then deleted, so a crash never leaves half a checkpoint under
//       its real name.
//   appendRecords (records.ts)   logs that grow line by line: O_APPEND, never through a link, fsync per call.
//
// Test hook: PREFTUNE_FAULT=POINT[#N] kills the process with SIGKILL the Nth time (default 1st) it reaches POINT
// (the names are the faultPoint calls below: "write:NAME:synced", "folder:NAME:renamed", "install:LABEL:FILE", and
// "recover:LABEL:FILE" when recoverLeftovers finishes an interrupted install),
// and PREFTUNE_FAULT=POINT=wait makes an async pausePoint(POINT) wait there (signals are handled) for up to 60 s.
// PREFTUNE_FAULT_TRACE=FILE appends the name of every point reached to FILE.
import {
  closeSync, constants, copyFileSync, existsSync, fsyncSync, linkSync, lstatSync, mkdirSync, openSync, readdirSync,
  readFileSync, renameSync, rmSync, statSync, unlinkSync, writeSync, appendFileSync,
} from "node:fs";
import { randomBytes } from "node:crypto";
import { basename, dirname, join, resolve } from "node:path";

// ---------------------------------------------------------------------------------------------------------
// errors

const WHY: Record<string, string> = {
  EROFS: "read-only file system", EACCES: "permission denied", EPERM: "operation not permitted",
  ENOSPC: "no space left on the device", EDQUOT: "disk quota exceeded", EISDIR: "it is a folder, not a file",
  ENOTDIR: "a part of the path is a file, not a folder", ELOOP: "it is a symbolic link (or a loop of them)",
  ENOENT: "no such file or folder", EEXIST: "something of that name is already there", EMFILE: "too many open files",
  ENAMETOOLONG: "the name is too long", EXDEV: "it is on another file system", ENOTEMPTY: "the folder is not empty",
  EBUSY: "it is in use (a mount point?)", EIO: "input/output error (a failing disk?)",
};

/** An fs error as "PATH: cannot DOING: why in words (CODE)"; keeps `code`. Errors that are not fs errors pass through. */
export function fsError(e: unknown, path: string, doing: string): Error {
  const code = (e as NodeJS.ErrnoException | null)?.code;
  if (!code || !(e instanceof Error) || (e as { durable?: boolean }).durable) return e as Error;
  const err = new Error(`${path}: cannot ${doing}: ${WHY[code] ?? e.message} (${code})`) as NodeJS.ErrnoException & { durable: boolean };
  err.code = code;
  err.durable = true;
  return err;
}

/** Reads a text file; errors name the file and say what it is instead (a folder, missing, a link loop, ...). */
export function readTextFile(file: string, what = "file"): string {
  try {
    return readFileSync(file, "utf8");
  } catch (e) {
    throw fsError(e, file, `read the ${what}`);
  }
}

// ---------------------------------------------------------------------------------------------------------
// fault injection (tests)

const hits = new Map<string, number>();
let faultSpec: { point: string; nth: number; action: "kill" | "wait" } | null | undefined;

function spec() {
  if (faultSpec !== undefined) return faultSpec;
  const v = process.env.PREFTUNE_FAULT;
  const m = v ? /^(.+?)(?:#(\d+))?(?:=(kill|wait))?$/.exec(v) : null;
  faultSpec = m ? { point: m[1], nth: m[2] ? Number(m[2]) : 1, action: (m[3] ?? "kill") as "kill" | "wait" } : null;
  return faultSpec;
}

function reached(point: string): boolean {
  const trace = process.env.PREFTUNE_FAULT_TRACE;
  if (trace) appendFileSync(trace, point + "\n");   // a test's trace file, not project output
  const s = spec();
  if (!s || s.point !== point) return false;
  const n = (hits.get(point) ?? 0) + 1;
  hits.set(point, n);
  return n === s.nth;
}

/** Test hook: with PREFTUNE_FAULT naming this point, the process is killed here (SIGKILL: no cleanup runs). */
export function faultPoint(point: string): void {
  if (reached(point) && spec()!.action === "kill") kill(point);
}

function kill(point: string): void {
  process.stderr.write(`fault injection: SIGKILL at ${point}\n`);
  process.kill(process.pid, "SIGKILL");
}

/** Test hook for async code: PREFTUNE_FAULT=POINT=wait waits here (up to 60 s) with the event loop running. */
export async function pausePoint(point: string, stopped: () => boolean = () => false): Promise<void> {
  if (!reached(point)) return;
  if (spec()!.action === "kill") { kill(point); return; }
  process.stderr.write(`fault injection: waiting at ${point}\n`);
  const t0 = Date.now();
  while (!stopped() && Date.now() - t0 < 60_000) await new Promise((r) => setTimeout(r, 10));
}

// ---------------------------------------------------------------------------------------------------------
// primitives

const tag = () => `${process.pid}-${randomBytes(4).toString("hex")}`;
/** The hidden name NAME's temporaries take in its folder: .NAME.KIND-PID-RANDOM */
const sibling = (target: string, kind: "tmp" | "old" | "del" | "ready") => join(dirname(target), `.${basename(target)}.${kind}-${tag()}`);
/** Names recoverLeftovers owns: .NAME.tmp-PID-HEX, .NAME.old-…, .NAME.del-…, .LABEL.ready-… */
const LEFTOVER_RE = /^\.(.+)\.(tmp|old|del|ready)-\d+-[0-9a-f]{8}$/;

/** fsync a file or a folder (a folder's fsync makes the names in it durable). */
export function fsyncPath(p: string): void {
  let fd: number;
  try { fd = openSync(p, "r"); } catch (e) { throw fsError(e, p, "open for fsync"); }
  try {
    fsyncSync(fd);
  } catch (e) {
    // some file systems do not fsync folders; the data itself was synced
    if (!["EINVAL", "ENOTSUP", "EISDIR", "EBADF"].includes((e as NodeJS.ErrnoException).code ?? "")) throw fsError(e, p, "fsync");
  } finally {
    closeSync(fd);
  }
}

function fsyncTree(dir: string): void {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = lstatSync(p);
    if (st.isDirectory()) fsyncTree(p);
    else if (st.isFile()) fsyncPath(p);
  }
  fsyncPath(dir);
}

function writeAll(fd: number, data: string | Uint8Array): void {
  const b = typeof data === "string" ? Buffer.from(data, "utf8") : data;
  let done = 0;
  while (done < b.length) done += writeSync(fd, b, done, b.length - done);
}

/**
 * Creates the folder (and its missing parents) one level at a time, so that the error names the level that
 * failed and why (Node's recursive mkdir reports ENOENT on a read-only file system).
 */
export function ensureDir(dir: string, what = "folder"): void {
  const abs = resolve(dir);
  const missing: string[] = [];
  for (let p = abs; ; p = dirname(p)) {
    let st;
    try { st = statSync(p); } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== "ENOENT") throw fsError(e, p, `use it for the ${what} ${abs}`);
      missing.push(p);
      if (dirname(p) === p) break;
      continue;
    }
    if (!st.isDirectory()) throw new Error(`${p}: is a file, so the ${what} ${abs} cannot be created there`);
    break;
  }
  for (const p of missing.reverse()) {
    try { mkdirSync(p); } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "EEXIST" && statSync(p).isDirectory()) continue;
      throw fsError(e, p, `create the ${what}${p === abs ? "" : ` (for ${abs})`}`);
    }
  }
  if (missing.length) fsyncPath(dirname(missing[0]));
}

/** A new file inside a staging folder (exclusive create: an existing name, a link included, is an error). */
export function writeNewFile(file: string, data: string | Uint8Array): void {
  let fd: number;
  try { fd = openSync(file, "wx", 0o666); } catch (e) { throw fsError(e, file, "create"); }
  try { writeAll(fd, data); } catch (e) { throw fsError(e, file, "write"); } finally { closeSync(fd); }
}

/** A copy of src as a new file inside a staging folder. */
export function copyNewFile(src: string, dst: string): void {
  try { copyFileSync(src, dst, constants.COPYFILE_EXCL); } catch (e) {
    throw existsSync(dst) || (e as NodeJS.ErrnoException).code === "EEXIST" ? fsError(e, dst, "create") : fsError(e, src, `copy it to ${dst}`);
  }
}

/**
 * Writes `file` through `write(tmpPath)`, which fills a fresh temporary sibling (created empty and exclusively,
 * so no link can sit there); the temporary is fsynced and renamed over `file`, and the folder is fsynced.
 */
export function writeFileWith(file: string, write: (tmpPath: string) => void): void {
  const target = resolve(file);
  const tmp = sibling(target, "tmp");
  const name = basename(target);
  try {
    closeSync(openSync(tmp, "wx", 0o666));
  } catch (e) {
    throw fsError(e, (e as NodeJS.ErrnoException).code === "ENOENT" ? dirname(target) : target, `write ${name}${(e as NodeJS.ErrnoException).code === "ENOENT" ? " into it" : ""}`);
  }
  try {
    write(tmp);
    fsyncPath(tmp);
    faultPoint(`write:${name}:synced`);
    try { renameSync(tmp, target); } catch (e) { throw fsError(e, target, "replace it"); }
  } catch (e) {
    rmSync(tmp, { force: true });
    throw fsError(e, target, "write");
  }
  faultPoint(`write:${name}:renamed`);
  fsyncPath(dirname(target));
}

/** Replaces `file` with `data` atomically (see writeFileWith). */
export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  writeFileWith(file, (tmp) => {
    const fd = openSync(tmp, "w");
    try { writeAll(fd, data); } finally { closeSync(fd); }
  });
}

/**
 * Puts a finished file in place of `file`: `done` (a log appended and fsynced in the same folder, e.g. FILE.partial)
 * is fsynced and renamed over `file`, and the folder is fsynced.
 */
export function commitFile(done: string, file: string): void {
  fsyncPath(done);
  try { renameSync(done, file); } catch (e) { throw fsError(e, file, `put ${basename(done)} in its place`); }
  fsyncPath(dirname(resolve(file)));
}

/** Deletes a file (or a link) if it is there, and fsyncs its folder. */
export function removeFile(file: string): void {
  try { unlinkSync(file); } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
    throw fsError(e, file, "delete");
  }
  fsyncPath(dirname(resolve(file)));
}

/** Deletes a folder (or a link to one) so that a crash never leaves part of it under its name. */
export function removeFolder(dir: string): void {
  const target = resolve(dir);
  if (!lexists(target)) return;
  const del = sibling(target, "del");
  try { renameSync(target, del); } catch (e) { throw fsError(e, target, "delete"); }
  faultPoint(`remove:${basename(target)}:renamed`);
  fsyncPath(dirname(target));
  rmSync(del, { recursive: true, force: true });
}

function sameFile(a: string, b: string): boolean {
  try {
    const x = lstatSync(a), y = lstatSync(b);
    return x.ino === y.ino && x.dev === y.dev;
  } catch {
    return false;
  }
}

function lexists(p: string): boolean {
  try { lstatSync(p); return true; } catch { return false; }
}

/**
 * Fills a folder atomically: `fill` writes into a fresh hidden sibling (writeNewFile / copyNewFile or any writer
 * of new files), which is fsynced (files, then the folder) and renamed onto dir. An existing dir (or a link of
 * that name) is renamed aside first and removed once the new one is in place. On an error dir is left as it was.
 */
export function writeFolderAtomic(dir: string, fill: (tmp: string) => void): void {
  const target = resolve(dir);
  const parent = dirname(target);
  const name = basename(target);
  const tmp = sibling(target, "tmp");
  ensureDir(parent);
  try { mkdirSync(tmp); } catch (e) { throw fsError(e, parent, `write ${name} into it`); }
  let old: string | null = null;
  try {
    fill(tmp);
    fsyncTree(tmp);
    faultPoint(`folder:${name}:filled`);
    if (lexists(target)) {
      old = sibling(target, "old");
      try { renameSync(target, old); } catch (e) { throw fsError(e, target, "replace it"); }
      faultPoint(`folder:${name}:aside`);
    }
    try { renameSync(tmp, target); } catch (e) {
      if (old) renameSync(old, target);
      old = null;
      throw fsError(e, target, "put the new folder in place");
    }
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  faultPoint(`folder:${name}:renamed`);
  fsyncPath(parent);
  if (old) rmSync(old, { recursive: true, force: true });
}

// ---------------------------------------------------------------------------------------------------------
// replacing a set of files inside a folder (the final model in output_dir)

const MANIFEST = ".manifest.json";

interface Manifest { label: string; files: string[]; remove: string[] }

export interface ReplaceOptions {
  /** Names the staged folder: .LABEL.tmp-TAG / .LABEL.ready-TAG. */
  label: string;
  /** Install order of the staged files: lower ranks first, names in order within a rank; the weights belong last. */
  rank?: (name: string) => number;
  /** Files of the folder that belong to the set being replaced (old weights, an old adapter) and are deleted when the new set does not have them. */
  stale?: (name: string) => boolean;
}

/**
 * Replaces a set of files inside `dir` (which also holds other things) so that a complete set, old or new, is on
 * disk at every instant and an interrupted replacement is finished by recoverLeftovers. See the top of this file.
 */
export function replaceFilesInFolder(dir: string, fill: (stage: string) => void, o: ReplaceOptions): void {
  const root = resolve(dir);
  ensureDir(root);
  const stage = join(root, `.${o.label}.tmp-${tag()}`);
  try { mkdirSync(stage); } catch (e) { throw fsError(e, root, `write the ${o.label} into it`); }
  let ready: string;
  try {
    fill(stage);
    const staged = readdirSync(stage).filter((f) => f !== MANIFEST).sort();
    const rank = o.rank ?? (() => 0);
    const files = [...staged].sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
    const remove = o.stale ? readdirSync(root).filter((f) => o.stale!(f) && !staged.includes(f)) : [];
    writeNewFile(join(stage, MANIFEST), JSON.stringify({ label: o.label, files, remove } satisfies Manifest, null, 2) + "\n");
    fsyncTree(stage);
    faultPoint(`install:${o.label}:staged`);
    ready = join(root, `.${o.label}.ready-${basename(stage).slice(`.${o.label}.tmp-`.length)}`);
    try { renameSync(stage, ready); } catch (e) { throw fsError(e, stage, "commit the staged files"); }
  } catch (e) {
    rmSync(stage, { recursive: true, force: true });
    throw e;
  }
  fsyncPath(root);
  faultPoint(`install:${o.label}:ready`);
  installReady(root, ready, "install");
}

/** Steps 3 and 4 of replaceFilesInFolder; safe to repeat after a crash at any point ("recover" names its fault points). */
function installReady(root: string, ready: string, phase: "install" | "recover"): void {
  let m: Manifest;
  try {
    m = JSON.parse(readFileSync(join(ready, MANIFEST), "utf8")) as Manifest;
    if (!Array.isArray(m.files) || !Array.isArray(m.remove)) throw new Error("not a manifest");
  } catch (e) {
    throw new Error(`${ready}: the staged files of an interrupted save have no readable ${MANIFEST} (${(e as Error).message}); move the files you need out of it and delete it`);
  }
  for (const f of m.files) {
    if (f !== basename(f) || f.startsWith(".")) throw new Error(`${join(ready, MANIFEST)}: "${f}" is not a plain file name`);
    const src = join(ready, f), dst = join(root, f);
    if (sameFile(src, dst)) { faultPoint(`${phase}:${m.label}:${f}`); continue; }   // installed before a crash
    const tmp = sibling(dst, "tmp");
    try {
      try { linkSync(src, tmp); } catch (e) {
        if (!["EPERM", "ENOTSUP", "EOPNOTSUPP", "EXDEV", "EMLINK", "ENOSYS"].includes((e as NodeJS.ErrnoException).code ?? "")) throw fsError(e, dst, "write");
        copyFileSync(src, tmp, constants.COPYFILE_EXCL);
        fsyncPath(tmp);
      }
      try { renameSync(tmp, dst); } catch (e) { throw fsError(e, dst, "replace it"); }
    } finally {
      rmSync(tmp, { force: true });   // gone after the rename, unless dst was already the same file (rename then does nothing)
    }
    faultPoint(`${phase}:${m.label}:${f}`);
  }
  for (const f of m.remove) {
    if (f !== basename(f)) continue;
    try { unlinkSync(join(root, f)); } catch (e) { if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw fsError(e, join(root, f), "delete"); }
  }
  fsyncPath(root);
  faultPoint(`${phase}:${m.label}:installed`);
  const del = join(root, basename(ready).replace(/\.ready-/, ".del-"));
  renameSync(ready, del);
  fsyncPath(root);
  rmSync(del, { recursive: true, force: true });
}

/**
 * Puts a folder written by the protocols above back into a consistent state after a crash: finishes an
 * interrupted replaceFilesInFolder, renames a folder left aside by writeFolderAtomic back when the new one never
 * arrived, and deletes temporaries. Touches only names of the form .NAME.(tmp|old|del|ready)-PID-HEX, and must
 * only run while no other process writes into dir (hold its run lock). Returns what it did, one line each.
 */
export function recoverLeftovers(dir: string): string[] {
  const root = resolve(dir);
  let names: string[];
  try { names = readdirSync(root); } catch { return []; }
  const done: string[] = [];
  // interrupted installs first (they are complete by construction), oldest first
  for (const n of names.filter((x) => LEFTOVER_RE.exec(x)?.[2] === "ready").sort()) {
    installReady(root, join(root, n), "recover");
    done.push(`finished the interrupted save of ${LEFTOVER_RE.exec(n)![1]} (from ${n})`);
  }
  for (const n of names) {
    const m = LEFTOVER_RE.exec(n);
    if (!m || m[2] === "ready") continue;
    const p = join(root, n);
    if (!lexists(p)) continue;
    if (m[2] === "old" && !lexists(join(root, m[1]))) {
      renameSync(p, join(root, m[1]));
      done.push(`restored ${m[1]} from ${n} (its replacement was interrupted)`);
      continue;
    }
    rmSync(p, { recursive: true, force: true });
    done.push(`removed ${n}, left by a write that did not finish`);
  }
  if (done.length) fsyncPath(root);
  return done;
}
