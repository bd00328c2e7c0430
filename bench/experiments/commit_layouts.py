"""What a module commit costs on this disk, by file layout (issue 14's write target).

Each variant commits 20 "modules" (300-byte files standing for bytes, manifest and 8
index entries) per round, 7 rounds interleaved, and prints modules/s against `prev`
(the commit path before the two-sync change: every file created, fsynced, renamed).
Run it on the disk the cache lives on: `python3 bench/experiments/commit_layouts.py DIR`.

Measured in session 19 (ext4 on virtio, a build running beside it), ratios to `prev`:
10 files + 2 syncfs 1.4-1.7x, 10 files + 1 syncfs 1.8-2.0x, 2 files + 8 empty files +
1 syncfs 2.3-2.4x, 1 file + 8 hard links + 1 syncfs 2.9-3.9x, 1 file + 1 syncfs 4.4-7.6x. The
number of inodes and directory blocks a commit dirties decides the cost of its sync,
not the number of syncs: five times today's rate needs a commit that creates one or two
files whatever the module's number of functions.
"""
import os, ctypes, time, statistics, shutil, sys

libc = ctypes.CDLL("libc.so.6", use_errno=True)
base = sys.argv[1] if len(sys.argv) > 1 else "/tmp"
root = os.path.join(base, f"commit-layouts-{os.getpid()}")
shutil.rmtree(root, ignore_errors=True)
os.makedirs(root + "/tmp")
D = b"x" * 300
n = [0]


def syncfs():
    fd = os.open(root, os.O_RDONLY)
    libc.syncfs(fd)
    os.close(fd)


def stage(data):
    n[0] += 1
    p = f"{root}/tmp/{n[0]}"
    fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.write(fd, data)
    os.close(fd)
    return p


def place(tmp, dest):
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    os.rename(tmp, dest)


def paths(tag, m):
    out = [f"{root}/{tag}/modules/{m % 256:02x}/{m}.wasm", f"{root}/{tag}/manifests/{m % 256:02x}/{m}.lcmf"]
    for f in range(8):
        h = (m * 8 + f) * 2654435761 % (1 << 32)
        out.append(f"{root}/{tag}/index/{h % 256:02x}/{h:08x}/{m}.lcix")
    return out


def prev(m):
    for p in paths("prev", m):
        t = f"{root}/tmp/x"
        fd = os.open(t, os.O_CREAT | os.O_TRUNC | os.O_WRONLY)
        os.write(fd, D)
        os.fsync(fd)
        os.close(fd)
        place(t, p)


def ten_files_two_syncs(m):
    st = [(stage(D), p) for p in paths("c2", m)]
    for t, p in st[:2]:
        place(t, p)
    syncfs()
    for t, p in st[2:]:
        place(t, p)
    syncfs()


def ten_files_one_sync(m):
    for t, p in [(stage(D), p) for p in paths("c1", m)]:
        place(t, p)
    syncfs()


def two_files_eight_empty_one_sync(m):
    ps = paths("e1", m)
    for t, p in [(stage(D), p) for p in ps[:2]]:
        place(t, p)
    for p in ps[2:]:
        os.makedirs(os.path.dirname(p), exist_ok=True)
        os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    syncfs()


def one_file_eight_links_one_sync(m):
    ps = paths("ln", m)
    t = stage(D * 10)
    place(t, ps[0])
    for p in ps[2:]:
        os.makedirs(os.path.dirname(p), exist_ok=True)
        os.link(ps[0], p)
    syncfs()


def one_file_one_sync(m):
    place(stage(D * 10), paths("one", m)[0])
    syncfs()


variants = [prev, ten_files_two_syncs, ten_files_one_sync, two_files_eight_empty_one_sync,
            one_file_eight_links_one_sync, one_file_one_sync]
rates = {v.__name__: [] for v in variants}
m = 0
for _ in range(7):
    for v in variants:
        t = time.perf_counter()
        for i in range(20):
            v(m + i)
        rates[v.__name__].append(20 / (time.perf_counter() - t))
    m += 20
shutil.rmtree(root, ignore_errors=True)
base_rate = statistics.median(rates["prev"])
for name, r in rates.items():
    med = statistics.median(r)
    print(f"{name:32s} {med:7.0f} modules/s  {med / base_rate:5.2f}x  ({min(r):.0f}-{max(r):.0f})")
