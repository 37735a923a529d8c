#!/usr/bin/env node
// Runs before the native build at `npm install`: checks that a C++ compiler, make, Python (for node-gyp) and
// OpenBLAS are present, and when one is missing stops with the Debian/Ubuntu and macOS Homebrew packages that
// provide it. oneDNN (bf16 compute) is optional: its absence is a note. Not the build itself (node-gyp is).
// PREFTUNE_INCLUDE_DIRS (':'-separated) replaces the header search path, for testing this script.
import { existsSync } from "node:fs";
import { delimiter, join } from "node:path";

const onPath = (names) => (process.env.PATH ?? "").split(delimiter).filter(Boolean).some((d) => names.some((n) => existsSync(join(d, n))));
const includeDirs = process.env.PREFTUNE_INCLUDE_DIRS !== undefined
  ? process.env.PREFTUNE_INCLUDE_DIRS.split(":").filter(Boolean)
  : ["/usr/include", "/usr/include/x86_64-linux-gnu", "/usr/include/aarch64-linux-gnu", "/usr/include/openblas", "/usr/local/include",
     "/opt/homebrew/opt/openblas/include", "/usr/local/opt/openblas/include"];
const header = (rel) => includeDirs.some((d) => existsSync(join(d, rel)));

// [what, found, Debian/Ubuntu package, Homebrew formula (null: Xcode command line tools)]
const required = [
  ["a C++17 compiler (g++ or clang++)", onPath(["g++", "c++", "clang++"]), "g++", null],
  ["make", onPath(["make", "gmake"]), "make", null],
  ["Python 3 (node-gyp runs on it)", onPath(["python3", "python"]), "python3", "python"],
  ["OpenBLAS with its CBLAS header (cblas.h)", header("cblas.h"), "libopenblas-openmp-dev", "openblas libomp"],
];
const missing = required.filter(([, found]) => !found);
if (!header("oneapi/dnnl/dnnl.hpp")) {
  console.error("preftune: note: oneDNN is not installed, so the native core builds without bf16 compute (bf16: true will train in fp32); add it with `apt-get install libdnnl-dev` (Homebrew: onednn) and reinstall to enable it.");
}
if (missing.length > 0) {
  const apt = missing.map((m) => m[2]).join(" ");
  const brew = missing.map((m) => m[3]).filter(Boolean).join(" ");
  const lines = [
    "preftune: its native core (C++ with OpenBLAS) cannot be built here; missing:",
    ...missing.map(([what]) => `  - ${what}`),
    "Install them, then run the install again:",
    `  Debian/Ubuntu: sudo apt-get install ${apt}`,
    `  macOS:         ${missing.some((m) => m[3] === null) ? "xcode-select --install" : ""}${brew ? `${missing.some((m) => m[3] === null) ? " && " : ""}brew install ${brew}` : ""}`,
  ];
  console.error(lines.join("\n"));
  process.exit(1);
}
