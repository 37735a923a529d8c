// Dataset names as TRL scripts take them (`dataset_name`, `dataset_config`, `dataset_train_split`): a local
// file or folder, or a Hugging Face dataset repo id found in the local Hugging Face cache. Nothing is
// downloaded: a name that is neither local nor cached is an error that says how to get the files.
// Not a reader (readers.ts) and not a validator (formats.ts): this only finds the data files of a split.
import { readdir, readFile, stat } from "node:fs/promises";
import { homedir } from "node:os";
import { extname, join, relative, sep } from "node:path";
import { parse as parseYaml } from "yaml";
import { DataError } from "./errors.ts";
import { entryKind, fileFormat, resolveDataFiles, splitFiles, type DataSource } from "./readers.ts";

export interface DatasetLocation {
  config?: string | null;          // dataset_config: a config of the repo (README `configs`, or a sub-folder)
  revision?: string | null;        // a branch/tag under refs/, or a commit hash; default refs/main
  env?: NodeJS.ProcessEnv;         // where HF_HUB_CACHE / HF_HOME are read (default process.env)
  keys?: { name?: string; split?: string };   // the config keys that chose the name / split, for messages
}

export interface ResolvedDataset extends DataSource {
  source: "local" | "hub-cache";
  root: string;                    // the local file or folder, or the cache snapshot folder
  config: string | null;           // the config used (null: none / not applicable)
  split: string;
  revision: string | null;         // the snapshot's commit hash (hub cache only)
}

/** huggingface_hub's cache folder: HF_HUB_CACHE, else HF_HOME/hub, else $XDG_CACHE_HOME or ~/.cache, + huggingface/hub. */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const home = (p: string) => (p === "~" || p.startsWith("~/") ? join(homedir(), p.slice(1)) : p);
  if (env.HF_HUB_CACHE) return home(env.HF_HUB_CACHE);
  if (env.HUGGINGFACE_HUB_CACHE) return home(env.HUGGINGFACE_HUB_CACHE);
  if (env.HF_HOME) return join(home(env.HF_HOME), "hub");
  return join(env.XDG_CACHE_HOME ? home(env.XDG_CACHE_HOME) : join(homedir(), ".cache"), "huggingface", "hub");
}

/** A Hugging Face repo id: NAME or ORG/NAME (letters, digits, "-", "_", "."; no "--" or ".."). */
export function isRepoId(name: string): boolean {
  if (!/^[A-Za-z0-9][\w.-]*(\/[A-Za-z0-9][\w.-]*)?$/.test(name)) return false;
  if (name.includes("--") || name.includes("..") || name.endsWith(".")) return false;
  return !fileFormat(name);   // "data/train.jsonl" is a path
}

export function hubRepoFolder(repoId: string, env?: NodeJS.ProcessEnv): string {
  return join(hubCacheDir(env), `datasets--${repoId.replace("/", "--")}`);
}

async function exists(p: string): Promise<"file" | "dir" | null> {
  try {
    const st = await stat(p);
    return st.isDirectory() ? "dir" : st.isFile() ? "file" : null;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ELOOP") throw new DataError("is a symbolic link loop", { file: p, fix: "Point the link at the real file or folder" });
    return null;
  }
}

function howToGet(repoId: string, nameKey = "dataset_name"): string {
  return `Nothing is downloaded here: on a machine with network run \`huggingface-cli download --repo-type dataset ${repoId}\` ` +
    "(or `hf download " + repoId + " --repo-type dataset`), then copy its cache folder here and point HF_HUB_CACHE (or HF_HOME) at it; " +
    `or pass a local folder or .jsonl/.json/.parquet file as ${nameKey}`;
}

/** The snapshot folder of a cached dataset repo, and its commit hash. */
export async function hubSnapshot(repoId: string, o: { revision?: string | null; env?: NodeJS.ProcessEnv; keys?: { name?: string } } = {}): Promise<{ dir: string; revision: string }> {
  const repo = hubRepoFolder(repoId, o.env);
  const snaps = join(repo, "snapshots");
  let names: string[] = [];
  try {
    const entries = await readdir(snaps, { withFileTypes: true });
    for (const e of entries) if ((await entryKind(e, join(snaps, e.name))) === "dir") names.push(e.name);
  } catch { /* no snapshots folder */ }
  if (names.length === 0) {
    throw new DataError(`"${repoId}" is not a local file or folder, and the Hugging Face cache has no snapshot of dataset ${repoId}`, {
      file: repo, fix: howToGet(repoId, o.keys?.name),
    });
  }
  const readRef = async (ref: string): Promise<string | null> => {
    try { return (await readFile(join(repo, "refs", ref), "utf8")).trim(); } catch { return null; }
  };
  const rev = o.revision ?? null;
  if (rev != null) {
    const hash = names.includes(rev) ? rev : await readRef(rev);
    if (!hash || !names.includes(hash)) {
      throw new DataError(`revision "${rev}" of dataset ${repoId} is not in the cache`, {
        file: repo, fix: `Cached snapshots: ${names.sort().join(", ")}. Download that revision, or leave the revision unset`,
      });
    }
    return { dir: join(snaps, hash), revision: hash };
  }
  const main = await readRef("main");
  if (main && names.includes(main)) return { dir: join(snaps, main), revision: main };
  if (names.length === 1) return { dir: join(snaps, names[0]), revision: names[0] };
  // several snapshots and no usable refs/main: the newest one
  const withTime = await Promise.all(names.map(async (n) => ({ n, t: (await stat(join(snaps, n))).mtimeMs })));
  withTime.sort((a, b) => b.t - a.t || (a.n < b.n ? -1 : 1));
  return { dir: join(snaps, withTime[0].n), revision: withTime[0].n };
}

// ---------------------------------------------------------------------------------------------------------
// Data files of a (config, split) inside a dataset folder: the README's `configs` when it declares them (the
// way `datasets` reads a repo), else the usual layouts (train.jsonl, data/train-00000-of-00001.parquet,
// train_prefs-*.parquet, <config>/train-*.parquet, <config>/<split>/*.parquet, split folders).

interface CardConfig { name: string; isDefault: boolean; splits: Map<string, string[]> }   // split -> patterns

/** The `configs` list of a dataset card's YAML header, or null when there is none. */
async function cardConfigs(dir: string): Promise<CardConfig[] | null> {
  let text: string;
  try { text = await readFile(join(dir, "README.md"), "utf8"); } catch { return null; }
  const m = /^---\r?\n([\s\S]*?)\r?\n---\s*(\r?\n|$)/.exec(text);
  if (!m) return null;
  let meta: unknown;
  try { meta = parseYaml(m[1]); } catch { return null; }   // a broken card: fall back to the file layout
  const list = (meta as { configs?: unknown } | null)?.configs;
  if (!Array.isArray(list) || list.length === 0) return null;
  const out: CardConfig[] = [];
  for (const c of list) {
    if (!c || typeof c !== "object") continue;
    const cc = c as { config_name?: unknown; default?: unknown; data_files?: unknown; data_dir?: unknown };
    const name = typeof cc.config_name === "string" ? cc.config_name : "default";
    const prefix = typeof cc.data_dir === "string" ? cc.data_dir.replace(/\/+$/, "") + "/" : "";
    const splits = new Map<string, string[]>();
    const add = (split: string, p: unknown) => {
      const ps = (Array.isArray(p) ? p : [p]).filter((x): x is string => typeof x === "string").map((x) => prefix + x);
      splits.set(split, [...(splits.get(split) ?? []), ...ps]);
    };
    const df = cc.data_files;
    if (typeof df === "string") add("train", df);
    else if (Array.isArray(df)) {
      for (const d of df) {
        if (typeof d === "string") add("train", d);
        else if (d && typeof d === "object") add(typeof (d as { split?: unknown }).split === "string" ? (d as { split: string }).split : "train", (d as { path?: unknown }).path);
      }
    } else if (df && typeof df === "object") {
      for (const [split, p] of Object.entries(df)) add(split, p);
    } else if (prefix) {
      continue;   // data_dir alone: the layout rules below find the files in that folder
    }
    out.push({ name, isDefault: cc.default === true, splits });
  }
  return out.length ? out : null;
}

/** A glob of the Hub's data_files (`*`, `**`, `?`, `{a,b}`, `[...]`) as a regular expression over "/" paths. */
export function globToRegExp(glob: string): RegExp {
  let re = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === "*") {
      if (glob[i + 1] === "*") {
        i++;
        if (glob[i + 1] === "/") { i++; re += "(?:.*/)?"; } else re += ".*";
      } else re += "[^/]*";
    } else if (c === "?") re += "[^/]";
    else if (c === "{") {
      const end = glob.indexOf("}", i);
      if (end < 0) { re += "\\{"; continue; }
      re += "(?:" + glob.slice(i + 1, end).split(",").map((a) => a.replace(/[.+^$()|[\]\\]/g, "\\$&").replace(/\*/g, "[^/]*")).join("|") + ")";
      i = end;
    } else if (c === "[") {
      const end = glob.indexOf("]", i);
      if (end < 0) { re += "\\["; continue; }
      re += "[" + glob.slice(i + 1, end).replace(/^!/, "^").replace(/\\/g, "\\\\") + "]";
      i = end;
    } else re += c.replace(/[.+^$()|\\]/g, "\\$&");
  }
  return new RegExp(`^${re.replace(/^\.\//, "")}$`);
}

/** Every file under dir (following links), as "/"-separated paths relative to dir; hidden folders skipped. */
async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string, depth: number) => {
    if (depth > 8) return;
    let entries;
    try { entries = await readdir(d, { withFileTypes: true }); } catch { return; }
    for (const e of entries) {
      if (e.name.startsWith(".")) continue;
      const full = join(d, e.name);
      const kind = await entryKind(e, full);
      if (kind === "dir") await walk(full, depth + 1);
      else if (kind === "file") out.push(relative(dir, full).split(sep).join("/"));
    }
  };
  await walk(dir, 0);
  return out.sort();
}

/** split -> files of one card config, matched against the folder's files. */
async function cardSplitFiles(dir: string, cfg: CardConfig): Promise<Map<string, string[]>> {
  const all = await listFiles(dir);
  const out = new Map<string, string[]>();
  for (const [split, patterns] of cfg.splits) {
    const res = patterns.map(globToRegExp);
    out.set(split, all.filter((f) => res.some((r) => r.test(f))).map((f) => join(dir, f)));
  }
  return out;
}

function readable(files: string[] | undefined): string[] {
  return (files ?? []).filter((f) => fileFormat(f));
}

/** Sub-folders of dir (configs, in the Hub's <config>/<split>-*.parquet layout) whose own layout has `split`. */
async function configFoldersWith(dir: string, split: string | null): Promise<Map<string, Map<string, string[]>>> {
  const out = new Map<string, Map<string, string[]>>();
  let entries;
  try { entries = await readdir(dir, { withFileTypes: true }); } catch { return out; }
  for (const e of entries) {
    if (e.name.startsWith(".") || e.name === "data") continue;
    const full = join(dir, e.name);
    if ((await entryKind(e, full)) !== "dir") continue;
    const splits = await splitFiles(full);
    if (split == null ? [...splits.keys()].some((k) => !/^\d+$/.test(k)) : readable(splits.get(split)).length) out.set(e.name, splits);
  }
  return out;
}

function checkFormats(files: string[], split: string, where: string): string[] {
  if (new Set(files.map(fileFormat)).size > 1) {
    throw new DataError(`split "${split}" has files in several formats (${files.join(", ")})`, { file: where, fix: "Keep one copy of the split, in one format" });
  }
  return files;
}

function noSplit(splits: Map<string, string[]>, split: string, where: string, what: string, setting: string): DataError {
  const other = splits.get(split) ?? [];
  if (other.length) {
    const exts = [...new Set(other.map((f) => extname(f) || "(none)"))].join(", ");
    return new DataError(`${what ? `${what}: ` : ""}split "${split}" has only files this tool cannot read (${exts})`, {
      file: where, fix: "Convert them to .parquet or .jsonl (datasets: ds.to_parquet / ds.to_json), or pass a folder that has them",
    });
  }
  const have = [...splits.keys()].filter((k) => readable(splits.get(k)).length).sort();
  return new DataError(`${what ? `${what}: ` : ""}no files for split "${split}"`, {
    file: where, fix: have.length ? `Available splits: ${have.join(", ")}. Set ${setting} to one of them` : "The folder holds no .parquet/.jsonl/.json data files",
  });
}

/** The config a dataset card (README `configs`) chooses, or null when the card declares none. */
function cardChoice(card: CardConfig[] | null, config: string | null, dir: string, what: string): CardConfig | null {
  if (!card) return null;
  if (config != null) return card.find((c) => c.name === config) ?? null;   // undeclared: try a folder of that name
  const cfg = card.find((c) => c.isDefault) ?? card.find((c) => c.name === "default") ?? (card.length === 1 ? card[0] : undefined);
  if (cfg) return cfg;
  throw new DataError(`${what || "the dataset"} has several configs (${card.map((c) => c.name).join(", ")}) and none is the default`, {
    file: dir, fix: "Set dataset_config to one of them",
  });
}

async function configFolder(dir: string, config: string, card: CardConfig[] | null, what: string): Promise<string> {
  const sub = join(dir, config);
  if ((await exists(sub)) === "dir") return sub;
  const names = [...(card?.map((c) => c.name) ?? []), ...(await configFoldersWith(dir, null)).keys()];
  throw new DataError(`${what || "the dataset"} has no config "${config}"`, {
    file: dir, fix: names.length ? `Available configs: ${[...new Set(names)].sort().join(", ")}` : "Leave dataset_config unset: this dataset has no configs",
  });
}

/**
 * The files of `split` (and `config`) inside a dataset folder: the README's `configs` when it declares them
 * (as `datasets` reads a repo); else the folder's own layout (train.jsonl, data/train-00000-of-00001.parquet,
 * train_prefs-*.parquet, train/ split folders); else a config sub-folder holding the split (`config`, or
 * "default", or the only one). `setting` names the key that chose the split, for the error message.
 */
export async function datasetFolderFiles(dir: string, o: { config?: string | null; split: string; what: string; setting?: string }): Promise<{ files: string[]; config: string | null }> {
  const setting = o.setting ?? "dataset_train_split / dataset_test_split";
  const config = o.config ?? null;
  const card = await cardConfigs(dir);
  const chosen = cardChoice(card, config, dir, o.what);
  if (chosen) {
    const splits = chosen.splits.size ? await cardSplitFiles(dir, chosen) : await splitFiles(dir);
    const files = readable(splits.get(o.split));
    if (!files.length) throw noSplit(splits, o.split, dir, `${o.what || "the dataset"} (config "${chosen.name}")`, setting);
    return { files: checkFormats(files, o.split, dir), config: chosen.name };
  }
  if (config != null) {
    const sub = await configFolder(dir, config, card, o.what);
    const splits = await splitFiles(sub);
    const files = readable(splits.get(o.split));
    if (!files.length) throw noSplit(splits, o.split, sub, `${o.what || "the dataset"} (config "${config}")`, setting);
    return { files: checkFormats(files, o.split, sub), config };
  }
  const top = await splitFiles(dir);
  const files = readable(top.get(o.split));
  if (files.length) return { files: checkFormats(files, o.split, dir), config: null };
  const cfgs = await configFoldersWith(dir, o.split);
  if (cfgs.size === 1 || cfgs.has("default")) {
    const name = cfgs.has("default") ? "default" : [...cfgs.keys()][0];
    return { files: checkFormats(readable(cfgs.get(name)!.get(o.split)), o.split, join(dir, name)), config: name };
  }
  if (cfgs.size > 1) {
    throw new DataError(`${o.what || "the dataset"}: several configs have a split "${o.split}" (${[...cfgs.keys()].sort().join(", ")})`, { file: dir, fix: "Set dataset_config to one of them" });
  }
  throw noSplit(top, o.split, dir, o.what, setting);
}

/** The split names of a dataset folder for a config (see datasetFolderFiles). */
export async function datasetFolderSplits(dir: string, o: { config?: string | null; what: string }): Promise<string[]> {
  const config = o.config ?? null;
  const card = await cardConfigs(dir);
  const chosen = cardChoice(card, config, dir, o.what);
  let splits: Map<string, string[]>;
  if (chosen) splits = chosen.splits.size ? await cardSplitFiles(dir, chosen) : await splitFiles(dir);
  else if (config != null) splits = await splitFiles(await configFolder(dir, config, card, o.what));
  else {
    splits = await splitFiles(dir);
    const def = (await configFoldersWith(dir, null)).get("default");
    if (def) for (const [k, v] of def) if (!splits.has(k)) splits.set(k, v);
  }
  return [...splits.entries()].filter(([, f]) => readable(f).length).map(([k]) => k).sort();
}

/**
 * Resolves a TRL `dataset_name` (with `dataset_config` and a split) to its data files:
 * - an existing file: that file (the split does not apply);
 * - an existing folder: the split's files in it (README `configs`, else the usual layouts; `config` picks a
 *   config sub-folder);
 * - otherwise a repo id ORG/NAME (or NAME) found in the Hugging Face cache (HF_HUB_CACHE, HF_HOME/hub or
 *   ~/.cache/huggingface/hub): the snapshot that refs/main names (or `revision`; else the only or newest one).
 * Anything else is a DataError saying how to get the files; nothing is downloaded.
 */
export async function resolveDataset(name: string, o: DatasetLocation & { split?: string | null } = {}): Promise<ResolvedDataset> {
  if (typeof name !== "string" || name.trim() === "") throw new DataError("no dataset given", { file: "(none)", fix: "Set dataset_name (or dataset) to a folder, a data file or a Hugging Face dataset id" });
  const split = o.split ?? "train";
  const local = await exists(name);
  if (local === "file") {
    const files = await resolveDataFiles(name, split);
    return { name, files, source: "local", root: name, config: null, split, revision: null };
  }
  if (local === "dir") {
    const { files, config } = await datasetFolderFiles(name, { config: o.config, split, what: "", setting: o.keys?.split });
    return { name, files, source: "local", root: name, config, split, revision: null };
  }
  if (!isRepoId(name)) return { ...(await resolveLocalOnly(name, split)), config: null };
  const snap = await hubSnapshot(name, o);
  const what = `dataset ${name} (cached snapshot ${snap.revision.slice(0, 12)})`;
  const { files, config } = await datasetFolderFiles(snap.dir, { config: o.config, split, what, setting: o.keys?.split });
  return { name, files, source: "hub-cache", root: snap.dir, config, split, revision: snap.revision };
}

/** A name that can only be a path: the readers' own "no such file or folder" error. */
async function resolveLocalOnly(name: string, split: string): Promise<Omit<ResolvedDataset, "config">> {
  const files = await resolveDataFiles(name, split);   // throws: it does not exist
  return { name, files, source: "local", root: name, split, revision: null };
}

/** The split names a dataset has (for "is there a test split?"); a single file has none. */
export async function datasetSplits(name: string, o: DatasetLocation = {}): Promise<string[]> {
  const local = await exists(name);
  if (local === "file") return [];
  if (local === "dir") return datasetFolderSplits(name, { config: o.config, what: "" });
  if (!isRepoId(name)) await resolveDataFiles(name);   // throws the path error
  const snap = await hubSnapshot(name, o);
  return datasetFolderSplits(snap.dir, { config: o.config, what: `dataset ${name}` });
}
