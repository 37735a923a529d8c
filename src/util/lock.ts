// The run lock of an output folder: OUTPUT/.preftune.lock holds the holder's pid, host, start time and command.
// A second run into the same folder is refused with a message naming the holder; a lock whose holder is gone (a
// killed run: same host, the pid is not running or is now another process) is taken over. Created by hard-linking
// a fully written file onto the lock's name, so a reader never sees a half-written lock. Not a general mutex: it
// guards against two preftune runs, not against other programs writing into the folder.
import { closeSync, fsyncSync, linkSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import { join, resolve } from "node:path";
import { fsError, fsyncPath } from "./durable.ts";

export const LOCK_FILE = ".preftune.lock";

interface Holder { pid: number; host: string; started: string; command: string; token: string; procStart?: string | null }

export interface RunLock {
  file: string;
  /** The holder whose stale lock was taken over, described in words, or null. */
  tookOver: string | null;
  release(): void;
}

/** The kernel's start time of a process (Linux /proc), to tell a reused pid from the original process. */
function procStart(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (fields[0] === "Z") return "zombie";
    return fields[19] ?? null;   // field 22 of the line: starttime
  } catch {
    return null;
  }
}

function alive(h: Holder): boolean {
  if (h.host !== hostname()) return true;   // cannot tell: another machine's process
  try {
    process.kill(h.pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  const now = procStart(h.pid);
  if (now === "zombie") return false;
  return !(h.procStart && now && now !== h.procStart);
}

const describe = (h: Holder) => `pid ${h.pid} on ${h.host}, started ${h.started}${h.command ? ` (${h.command})` : ""}`;

function readHolder(file: string): Holder | null {
  try {
    const h = JSON.parse(readFileSync(file, "utf8")) as Holder;
    return Number.isInteger(h.pid) && typeof h.host === "string" ? h : null;
  } catch {
    return null;
  }
}

/** Whether a running process holds the lock of `dir` (a lock left by a killed run does not count). */
export function lockHeld(dir: string): boolean {
  const h = readHolder(join(resolve(dir), LOCK_FILE));
  return h !== null && alive(h);
}

/** Deletes the .preftune.lock.PID.HEX.new/.stale files of processes that died while taking a lock. */
function removeDeadTemporaries(root: string): void {
  for (const n of readdirSync(root)) {
    const m = /^\.preftune\.lock\.(\d+)\.[0-9a-f]{8}\.(new|stale)$/.exec(n);
    if (!m || Number(m[1]) === process.pid) continue;
    if (!alive({ pid: Number(m[1]), host: hostname(), started: "", command: "", token: "" })) try { unlinkSync(join(root, n)); } catch { /* gone */ }
  }
}

/**
 * Takes the lock of `dir` (which must exist) or throws naming the holder. `what` names the folder in messages
 * ("output_dir"). The lock is released by release() and, failing that, when the process exits.
 */
export function acquireRunLock(dir: string, what = "folder"): RunLock {
  const root = resolve(dir);
  const file = join(root, LOCK_FILE);
  const me: Holder = {
    pid: process.pid, host: hostname(), started: new Date().toISOString(),
    command: process.argv.slice(2).join(" ").slice(0, 300), token: randomBytes(8).toString("hex"), procStart: procStart(process.pid),
  };
  let tookOver: string | null = null;
  for (let attempt = 0; attempt < 3; attempt++) {
    const tmp = join(root, `${LOCK_FILE}.${process.pid}.${randomBytes(4).toString("hex")}.new`);
    let fd: number;
    try { fd = openSync(tmp, "wx", 0o644); } catch (e) { throw fsError(e, root, `take the lock of the ${what} (write ${LOCK_FILE} into it)`); }
    try {
      const b = Buffer.from(JSON.stringify(me) + "\n");
      writeSync(fd, b, 0, b.length);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    let linked = false;
    try {
      linkSync(tmp, file);
      linked = true;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== "EEXIST") {
        if (!["EPERM", "ENOTSUP", "EOPNOTSUPP", "ENOSYS"].includes(code ?? "")) { unlinkSync(tmp); throw fsError(e, file, `take the lock of the ${what}`); }
        // no hard links on this file system: an exclusive create is the next best thing (a reader may see it empty
        // for an instant, and an unreadable lock counts as stale)
        try {
          const lfd = openSync(file, "wx", 0o644);
          try { const b = Buffer.from(JSON.stringify(me) + "\n"); writeSync(lfd, b, 0, b.length); fsyncSync(lfd); } finally { closeSync(lfd); }
          linked = true;
        } catch (e2) {
          if ((e2 as NodeJS.ErrnoException).code !== "EEXIST") { unlinkSync(tmp); throw fsError(e2, file, `take the lock of the ${what}`); }
        }
      }
    }
    try { unlinkSync(tmp); } catch { /* already gone */ }
    if (linked) {
      removeDeadTemporaries(root);
      fsyncPath(root);
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        process.off("exit", release);
        if (readHolder(file)?.token === me.token) try { unlinkSync(file); } catch { /* gone */ }
      };
      process.on("exit", release);
      return { file, tookOver, release };
    }
    const holder = readHolder(file);
    if (holder && alive(holder)) {
      const other = holder.host !== hostname();
      throw new Error(
        `${root}: another preftune run is writing into this ${what} (${describe(holder)}; lock file ${file}). ` +
        `Wait for it to finish or stop it, or use another ${what}` +
        (other ? `; if that run on ${holder.host} is gone, delete ${file}` : `; if no such run is going on, delete ${file}`),
      );
    }
    // stale: move it aside, and make sure what was moved is the lock that was judged stale
    const aside = join(root, `${LOCK_FILE}.${process.pid}.${randomBytes(4).toString("hex")}.stale`);
    try { renameSync(file, aside); } catch { continue; }   // someone else moved it first: try again
    const moved = readHolder(aside);
    if (holder && moved && moved.token !== holder.token && alive(moved)) {
      try { linkSync(aside, file); } catch { /* another lock is there now */ }
      unlinkSync(aside);
      throw new Error(`${root}: another preftune run took the lock of this ${what} at the same moment (${describe(moved)}); use another ${what} or wait for it to finish`);
    }
    unlinkSync(aside);
    tookOver = holder ? `${describe(holder)}, which is no longer running` : `an unreadable lock file`;
  }
  throw new Error(`${file}: could not take the lock of the ${what} (it changed hands three times); try again`);
}
