// node-wasi.mjs - runs a wasi_snapshot_preview1 command under Node's built-in node:wasi
// (uvwasi), the reference the Outpost WASI tests compare the host against.
//
//   node node-wasi.mjs [--dir HOST::GUEST]... [--ro-dir HOST::GUEST]... [--env K=V]...
//                      [--argv0 NAME] [--] FILE.wasm [ARGS...]
//
// --dir HOST::GUEST     preopen host directory HOST as guest path GUEST (read-write).
// --ro-dir HOST::GUEST  the same, read-only. node:wasi has no read-only preopens, so this
//                       runner emulates one: calls that would create, write, truncate, rename,
//                       link, unlink or re-time anything under it fail with EROFS (see
//                       READ_ONLY below). Plain node:wasi would let them through.
// --env K=V             a guest environment variable (the guest sees only these).
// --argv0 NAME          the guest's argv[0] (default: FILE's base name).
//
// stdin, stdout and stderr are the process's own (fds 0, 1, 2). The process exits with
// the guest's exit code: main's return value or exit()/proc_exit's argument (node
// truncates it to 8 bits, as process.exit does: 256 exits 0). A trap (unreachable,
// out-of-bounds access, ...) is an uncaught WebAssembly.RuntimeError in node:wasi; this
// runner prints "RuntimeError: MESSAGE" (no stack) to stderr and exits 1, which is what
// node itself does with an uncaught exception. Exit 2 means the runner itself failed
// (bad arguments, unreadable or invalid module).
//
// node:wasi prints an ExperimentalWarning when loaded; the runner removes the warning
// listener before importing it, so `node node-wasi.mjs ...` needs no --no-warnings.

import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';

process.removeAllListeners('warning');

function usage(message) {
    process.stderr.write(`node-wasi: ${message}\n` +
        'usage: node node-wasi.mjs [--dir HOST::GUEST]... [--ro-dir HOST::GUEST]... ' +
        '[--env K=V]... [--argv0 NAME] [--] FILE.wasm [ARGS...]\n');
    process.exit(2);
}

const preopens = {};
const readOnlyGuests = new Set();
const env = {};
let argv0;
const argv = process.argv.slice(2);
let i = 0;
for (; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
        if (i + 1 >= argv.length) usage(`${a} needs a value`);
        return argv[++i];
    };
    if (a === '--') { i++; break; }
    if (a === '--dir' || a === '--ro-dir') {
        const v = value();
        const sep = v.indexOf('::');
        if (sep <= 0 || sep + 2 >= v.length) usage(`${a} wants HOST::GUEST, got ${v}`);
        const guest = v.slice(sep + 2);
        preopens[guest] = v.slice(0, sep);
        if (a === '--ro-dir') readOnlyGuests.add(guest);
    } else if (a === '--env') {
        const v = value();
        const eq = v.indexOf('=');
        if (eq <= 0) usage(`--env wants K=V, got ${v}`);
        env[v.slice(0, eq)] = v.slice(eq + 1);
    } else if (a === '--argv0') {
        argv0 = value();
    } else if (a.startsWith('--')) {
        usage(`unknown option ${a}`);
    } else {
        break;
    }
}
if (i >= argv.length) usage('no module given');
const file = argv[i];
const args = [argv0 ?? basename(file), ...argv.slice(i + 1)];

const { WASI } = await import('node:wasi');
let wasi;
try {
    wasi = new WASI({
        version: 'preview1',
        args,
        env,
        preopens,
        returnOnExit: true,
        stdin: 0,
        stdout: 1,
        stderr: 2,
    });
} catch (err) {
    usage(`cannot set up WASI (a preopen's host directory missing?): ${err.message}`);
}

let module;
try {
    module = await WebAssembly.compile(await readFile(file));
} catch (err) {
    usage(`cannot load ${file}: ${err.message}`);
}

const imports = wasi.getImportObject();
let memory;
if (readOnlyGuests.size > 0)
    imports.wasi_snapshot_preview1 = readOnly(imports.wasi_snapshot_preview1, () => memory);

const instance = await WebAssembly.instantiate(module, imports);
memory = instance.exports.memory;

let code;
try {
    code = wasi.start(instance);
} catch (err) {
    if (err instanceof WebAssembly.RuntimeError) {
        process.stderr.write(`RuntimeError: ${err.message}\n`);
        process.exit(1);
    }
    throw err;
}
process.exit(code ?? 0);

// Read-only preopen emulation. node:wasi numbers preopens from fd 3 in the order of
// the preopens object's keys; every fd opened (path_open) through a read-only fd is
// read-only too. Denied calls return EROFS without reaching uvwasi.
function readOnly(real, getMemory) {
    const EROFS = 69;
    const OFLAGS_CREAT = 1, OFLAGS_TRUNC = 8;
    const FDFLAGS_APPEND = 1;
    // fd_datasync, fd_write, fd_allocate, fd_filestat_set_size: wasi-libc asks for these only
    // when opening for writing (a read-only open still asks for fd_filestat_set_times)
    const WRITE_RIGHTS = (1n << 0n) | (1n << 6n) | (1n << 8n) | (1n << 22n);
    const ro = new Set();
    Object.keys(preopens).forEach((guest, index) => { if (readOnlyGuests.has(guest)) ro.add(3 + index); });
    const deny = (name, test) => (...a) => (test(...a) ? EROFS : real[name](...a));
    const wrapped = { ...real };
    wrapped.path_open = (fd, dirflags, path, pathLen, oflags, rightsBase, rightsInheriting, fdflags, openedPtr) => {
        if (ro.has(fd)) {
            if ((oflags & (OFLAGS_CREAT | OFLAGS_TRUNC)) !== 0 || (fdflags & FDFLAGS_APPEND) !== 0 ||
                (BigInt.asUintN(64, rightsBase) & WRITE_RIGHTS) !== 0n)
                return EROFS;
        }
        const errno = real.path_open(fd, dirflags, path, pathLen, oflags, rightsBase, rightsInheriting, fdflags, openedPtr);
        if (errno === 0 && ro.has(fd))
            ro.add(new DataView(getMemory().buffer).getUint32(openedPtr, true));
        return errno;
    };
    wrapped.fd_close = (fd) => {
        const errno = real.fd_close(fd);
        if (errno === 0) ro.delete(fd);
        return errno;
    };
    wrapped.fd_renumber = (from, to) => {
        const errno = real.fd_renumber(from, to);
        if (errno === 0) {
            if (ro.has(from)) ro.add(to); else ro.delete(to);
            ro.delete(from);
        }
        return errno;
    };
    for (const name of ['fd_write', 'fd_pwrite', 'fd_allocate', 'fd_filestat_set_size', 'fd_filestat_set_times',
        'path_create_directory', 'path_remove_directory', 'path_unlink_file',
        'path_filestat_set_times'])
        wrapped[name] = deny(name, (fd) => ro.has(fd));
    wrapped.path_symlink = deny('path_symlink', (oldPath, oldLen, fd) => ro.has(fd));
    wrapped.path_rename = deny('path_rename', (fd, p, l, newFd) => ro.has(fd) || ro.has(newFd));
    wrapped.path_link = deny('path_link', (fd, f, p, l, newFd) => ro.has(fd) || ro.has(newFd));
    return wrapped;
}
